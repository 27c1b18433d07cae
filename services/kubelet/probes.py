"""Liveness, readiness and startup probes: one small worker per (pod, container, probe).

Why this exists: probes are how a workload tells the kubelet it is alive and ready, with
upstream's exact thresholds (prober/worker.go): a probe runs every `periodSeconds` once
`initialDelaySeconds` have passed since the container started; its result flips only after
`failureThreshold` consecutive failures or `successThreshold` consecutive successes; readiness
starts as failed, liveness as succeeded; while a startup probe has not succeeded the other two do
not run. Results are keyed by container ID, so a restarted container starts over. A result change
wakes the pod's worker (`on_change`), which restarts a container whose liveness or startup probe
failed and recomputes `ready`. httpGet and tcpSocket connect to the pod IP (a container this node
created); exec goes through the runtime. Hollow nodes (`network=False`) pass network probes without
connecting, since their pod IPs are fake loopback addresses.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx

from services.kubelet.runtime_types import ContainerRuntime, ContainerStatus
from shared.log import event

log = logging.getLogger("kubenats.kubelet.probes")

LIVENESS = "Liveness"
READINESS = "Readiness"
STARTUP = "Startup"
_SPEC_KEY = {LIVENESS: "livenessProbe", READINESS: "readinessProbe", STARTUP: "startupProbe"}


class Result(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


@dataclass
class _State:
    result: Result
    on_hold: bool = False  # liveness/startup failed: stop probing until the container changes


EventFn = Callable[[str, str, str, str, str], None]  # (pod uid, container, type, reason, message)


def _epoch(ts: str | None) -> float:
    if not ts:
        return time.time()
    try:
        return float(calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return time.time()


class ProbeManager:
    def __init__(self, runtime: ContainerRuntime, on_change: Callable[[str], None], record: EventFn, *,
                 network: bool = True) -> None:
        self.runtime = runtime
        self.on_change = on_change
        self.record = record
        self.network = network
        self._http: httpx.AsyncClient | None = None
        # (uid, container name, kind) -> (container id, task)
        self._workers: dict[tuple[str, str, str], tuple[str, asyncio.Task[None]]] = {}
        self._results: dict[tuple[str, str], _State] = {}  # (container id, kind) -> state
        self.probes_run = 0

    # ---- queries for the pod worker ----------------------------------------------------------

    def ready(self, container_id: str) -> bool:
        st = self._results.get((container_id, READINESS))
        return st is not None and st.result is Result.SUCCESS

    def started(self, container_id: str) -> bool:
        st = self._results.get((container_id, STARTUP))
        return st is not None and st.result is Result.SUCCESS

    def failed(self, container_id: str, kind: str) -> bool:
        st = self._results.get((container_id, kind))
        return st is not None and st.result is Result.FAILURE

    # ---- workers ---------------------------------------------------------------------------

    def sync(self, pod: Mapping[str, Any], running: Mapping[str, ContainerStatus], pod_ip: str,
             prior: Mapping[str, tuple[bool, bool]] | None = None) -> None:
        """Have one worker per probe of each running container; `prior` maps container ID to the
        (ready, started) the API status last said, seeded as the first result after a restart of
        the kubelet so an adopted pod does not flap to unready."""
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid"))
        spec_containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        wanted: set[tuple[str, str, str]] = set()
        for name, status in running.items():
            container = spec_containers.get(name)
            if container is None:
                continue
            for kind, spec_key in _SPEC_KEY.items():
                probe = container.get(spec_key)
                if not isinstance(probe, dict):
                    continue
                key = (uid, str(name), kind)
                wanted.add(key)
                current = self._workers.get(key)
                if current is not None and current[0] == status.id:
                    continue
                if current is not None:
                    current[1].cancel()
                self._seed(status.id, kind, (prior or {}).get(status.id))
                task = asyncio.get_running_loop().create_task(
                    self._worker(pod, container, probe, kind, status, pod_ip), name=f"probe {kind} {name} {uid}")
                self._workers[key] = (status.id, task)
        for key in [k for k in self._workers if k[0] == uid and k not in wanted]:
            self._stop(key)

    def _seed(self, cid: str, kind: str, prior: tuple[bool, bool] | None) -> None:
        if (cid, kind) in self._results:
            return
        if kind == READINESS:
            ok = prior is not None and prior[0]
            self._results[(cid, kind)] = _State(Result.SUCCESS if ok else Result.FAILURE)
        elif kind == STARTUP:
            ok = prior is not None and prior[1]
            self._results[(cid, kind)] = _State(Result.SUCCESS if ok else Result.UNKNOWN)
        else:
            self._results[(cid, kind)] = _State(Result.SUCCESS)

    def remove_pod(self, uid: str) -> None:
        for key in [k for k in self._workers if k[0] == uid]:
            self._stop(key)

    def _stop(self, key: tuple[str, str, str]) -> None:
        cid, task = self._workers.pop(key)
        task.cancel()
        self._results.pop((cid, key[2]), None)

    async def close(self) -> None:
        for key in list(self._workers):
            self._stop(key)
        if self._http is not None:
            await self._http.aclose()

    async def _worker(self, pod: Mapping[str, Any], container: Mapping[str, Any], probe: Mapping[str, Any],
                      kind: str, status: ContainerStatus, pod_ip: str) -> None:
        uid = str((pod.get("metadata") or {}).get("uid"))
        name = str(container.get("name"))
        period = max(1, int(probe.get("periodSeconds") or 10))
        delay = int(probe.get("initialDelaySeconds") or 0)
        failure_threshold = max(1, int(probe.get("failureThreshold") or 3))
        success_threshold = max(1, int(probe.get("successThreshold") or 1))
        has_startup = isinstance(container.get("startupProbe"), dict)
        started_at = _epoch(status.started_at)
        last: Result | None = None
        streak = 0
        key = (status.id, kind)
        try:
            while True:
                state = self._results.get(key)
                if state is None:
                    return
                wait_delay = started_at + delay - time.time()
                gated = kind != STARTUP and has_startup and not self.started(status.id)
                if state.on_hold or gated or (kind == STARTUP and state.result is Result.SUCCESS):
                    await asyncio.sleep(period)
                    continue
                if wait_delay > 0:
                    await asyncio.sleep(min(wait_delay, period))
                    continue
                result, message = await self.run_probe(probe, container, status, pod_ip)
                self.probes_run += 1
                streak = streak + 1 if result is last else 1
                last = result
                if result is Result.FAILURE:
                    self.record(uid, name, "Warning", "Unhealthy", f"{kind} probe failed: {message}")  # each, as upstream
                    if streak >= failure_threshold and state.result is not Result.FAILURE:
                        state.result = Result.FAILURE
                        if kind in (LIVENESS, STARTUP):
                            state.on_hold = True
                        self.on_change(uid)
                elif result is Result.SUCCESS and streak >= success_threshold and state.result is not Result.SUCCESS:
                    state.result = Result.SUCCESS
                    self.on_change(uid)
                await asyncio.sleep(period)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not kill the node: log it, the next sync restarts the worker
            event(log, "probe_worker_failed", logging.ERROR, pod_uid=uid, container=name, kind=kind,
                  error=f"{type(e).__name__}: {e}")
            self._workers.pop((uid, name, kind), None)

    # ---- probing ---------------------------------------------------------------------------

    async def run_probe(self, probe: Mapping[str, Any], container: Mapping[str, Any], status: ContainerStatus,
                        pod_ip: str) -> tuple[Result, str]:
        timeout = max(1, int(probe.get("timeoutSeconds") or 1))
        try:
            if isinstance(probe.get("exec"), dict):
                return await self._exec(status.id, [str(c) for c in probe["exec"].get("command") or []], timeout)
            if isinstance(probe.get("httpGet"), dict):
                return await self._http_get(probe["httpGet"], container, pod_ip, timeout)
            if isinstance(probe.get("tcpSocket"), dict):
                return await self._tcp(probe["tcpSocket"], container, pod_ip, timeout)
            return Result.SUCCESS, ""  # grpc and unknown handlers are not probed here
        except Exception as e:
            return Result.FAILURE, f"{type(e).__name__}: {e}"

    @staticmethod
    def _port(port: Any, container: Mapping[str, Any]) -> int:
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            return int(port)
        for p in container.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"couldn't find port {port!r} in the container's ports")

    async def _exec(self, cid: str, cmd: list[str], timeout: int) -> tuple[Result, str]:
        session = await self.runtime.exec(cid, cmd)
        out = b""
        try:
            async with asyncio.timeout(timeout):
                async for _stream, data in session:
                    if len(out) < 10240:
                        out += data
                code = await session.wait()
        except TimeoutError:
            return Result.FAILURE, f"command {cmd!r} timed out"
        finally:
            with contextlib.suppress(Exception):
                await session.close()
        if code == 0:
            return Result.SUCCESS, ""
        text = out.decode(errors="replace").strip()
        return Result.FAILURE, f"command {cmd!r} exited with {code}: {text}"

    async def _http_get(self, action: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str,
                        timeout: int) -> tuple[Result, str]:
        if not self.network:
            return Result.SUCCESS, ""
        port = self._port(action.get("port"), container)
        host = str(action.get("host") or pod_ip)
        scheme = str(action.get("scheme") or "HTTP").lower()
        path = str(action.get("path") or "/")
        if not path.startswith("/"):
            path = "/" + path
        url = f"{scheme}://{host}:{port}{path}"
        headers = {"User-Agent": "kube-probe/1.31"}
        for h in action.get("httpHeaders") or []:
            headers[str(h.get("name"))] = str(h.get("value"))
        if self._http is None:  # trust_env=False: never through a proxy from the environment
            self._http = httpx.AsyncClient(verify=False, trust_env=False, follow_redirects=False)
        try:
            r = await self._http.get(url, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return Result.FAILURE, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        except httpx.HTTPError as e:
            return Result.FAILURE, f'Get "{url}": {e or type(e).__name__}'
        if 200 <= r.status_code < 400:
            return Result.SUCCESS, ""
        return Result.FAILURE, f"HTTP probe failed with statuscode: {r.status_code}"

    async def _tcp(self, action: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str,
                   timeout: int) -> tuple[Result, str]:
        if not self.network:
            return Result.SUCCESS, ""
        port = self._port(action.get("port"), container)
        host = str(action.get("host") or pod_ip)
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as e:
            return Result.FAILURE, f"dial tcp {host}:{port}: {e or 'i/o timeout'}"
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return Result.SUCCESS, ""
