"""Shared helpers for the kubelet tests (no tests here): a kubelet child process, pod builders,
polling, and Docker clean-up by node label.

Every test kubelet gets a unique node name; every container it creates carries
`kubenats.io/node=<node>`, so `remove_node_containers` can clean up even after a failure. Test
kubelets run as real `kubenats kubelet` processes (so SIGKILL and restart are real), on the test
images from images.py, with small back-off and loop periods so the suite stays fast. The kubelet
server binds port 0 on loopback, so test kubelets never collide on 10250.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.kubelet.images import BUSYBOX_IMAGE, PAUSE_IMAGE
from tests.servers import ROOT

T = TypeVar("T")
UNPULLABLE = "127.0.0.1:1/kubenats/nope:1"  # a closed loopback registry: the pull fails at once, no DNS
SERVE = "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"
SLEEP = "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"

FAST_FLAGS = [
    "--pleg-relist-period", "0.25", "--node-lease-renew-interval", "1", "--node-status-update-frequency", "1",
    "--file-check-frequency", "0.25", "--housekeeping-interval", "0.5", "--sync-frequency", "10",
    "--crash-loop-backoff-base", "0.5", "--crash-loop-backoff-max", "4", "--image-pull-backoff-base", "2",
    "--image-pull-backoff-max", "8", "--api-retry-max", "1",
]


def unique_node(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class KubeletProc:
    """`kubenats kubelet` as a child process, logging to a file in `workdir`."""

    def __init__(self, node: str, conn: list[str], nats_url: str, workdir: Path, extra: list[str] | None = None,
                 runtime: str = "docker") -> None:
        self.node = node
        self.workdir = workdir
        self.log = workdir / f"kubelet-{node}.log"
        self.root = workdir / f"root-{node}"
        self.argv = [sys.executable, "-m", "services.cli", "kubelet", *conn, "--nats-url", nats_url,
                     "--node-name", node, "--runtime", runtime, "--root-dir", str(self.root),
                     "--pod-infra-container-image", PAUSE_IMAGE, "--address", "127.0.0.1", "--port", "0",
                     *FAST_FLAGS, *(extra or [])]
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> KubeletProc:
        with open(self.log, "ab") as fh:
            self.p = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.p is not None
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.p is not None
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if f'"event":"{name}"' in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


# ---- docker ------------------------------------------------------------------------------------


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout


def node_containers(node: str, *filters: str, all: bool = True) -> list[str]:
    """IDs of the containers a test kubelet made (optionally filtered by more labels)."""
    argv = ["ps", "-q", "--no-trunc", "--filter", f"label=kubenats.io/node={node}"]
    if all:
        argv.insert(1, "-a")
    for f in filters:
        argv += ["--filter", f"label={f}"]
    return docker(*argv).split()


def container_names(node: str) -> list[str]:
    return docker("ps", "-a", "--filter", f"label=kubenats.io/node={node}", "--format", "{{.Names}}").split()


def remove_node_containers(node: str) -> None:
    ids = node_containers(node)
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True, check=False)


def inspect(cid: str) -> dict[str, Any]:
    data = json.loads(docker("inspect", cid) or "[]")
    return data[0] if data else {}


# ---- API -------------------------------------------------------------------------------------


def pod_manifest(name: str, node: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": name}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5, "containers": containers, **spec}}


def container(name: str, script: str = SLEEP, image: str = BUSYBOX_IMAGE, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "command": ["sh", "-c", script], **extra}


async def create_pod(api: httpx.AsyncClient, ns: str, pod: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(f"/api/v1/namespaces/{ns}/pods", json=pod)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def get_pod(api: httpx.AsyncClient, ns: str, name: str) -> dict[str, Any] | None:
    r = await api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    pod: dict[str, Any] = r.json()
    return pod


async def wait_for(check: Callable[[], Awaitable[T | None]], timeout: float, what: str,
                   interval: float = 0.1, kubelet: KubeletProc | None = None) -> T:
    """Poll `check` until it returns something truthy; fail with the kubelet's log tail."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    tail = kubelet.tail() if kubelet is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{tail}")


async def wait_pod(api: httpx.AsyncClient, ns: str, name: str, pred: Callable[[dict[str, Any]], bool],
                   timeout: float, what: str, kubelet: KubeletProc | None = None) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        pod = await get_pod(api, ns, name)
        return pod if pod is not None and pred(pod) else None

    return await wait_for(check, timeout, f"{ns}/{name}: {what}", kubelet=kubelet)


def phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def cstatus(pod: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    for cs in (pod.get("status") or {}).get(key) or []:
        if cs.get("name") == name:
            return dict(cs)
    return {}


def condition(pod: dict[str, Any], ctype: str) -> str:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return str(c.get("status"))
    return ""


def running_and_ready(pod: dict[str, Any]) -> bool:
    return phase(pod) == "Running" and condition(pod, "Ready") == "True"


async def waiting_reasons(api: httpx.AsyncClient, ns: str, name: str, container: str, until: Callable[[list[str]], bool],
                          timeout: float) -> list[str]:
    """Every waiting reason the container's status went through (from a watch: no write is missed),
    until `until(reasons)` holds or `timeout` passes."""
    reasons: list[str] = []
    params = {"watch": "true", "fieldSelector": f"metadata.name={name}"}

    async def follow() -> None:
        async with api.stream("GET", f"/api/v1/namespaces/{ns}/pods", params=params, timeout=None) as r:
            async for line in r.aiter_lines():
                if not line.strip():
                    continue
                pod = json.loads(line).get("object") or {}
                reason = ((cstatus(pod, container).get("state") or {}).get("waiting") or {}).get("reason")
                if reason and (not reasons or reasons[-1] != reason):
                    reasons.append(reason)
                    if until(reasons):
                        return

    try:
        await asyncio.wait_for(follow(), timeout)
    except TimeoutError:
        pass
    return reasons


async def pod_events(api: httpx.AsyncClient, ns: str, name: str) -> list[dict[str, Any]]:
    r = await api.get(f"/api/v1/namespaces/{ns}/events")
    return [e for e in r.json().get("items") or [] if (e.get("involvedObject") or {}).get("name") == name]
