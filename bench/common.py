"""How benchmarks reach a cluster, and how they watch its processes.

Why this exists: the cluster is becoming TLS + authenticated, and tests/servers.py's `Cluster` is the
one place that knows how. Every benchmark therefore builds API clients only from
`cluster.admin_kwargs()` (httpx, the lean `Conn`, `shared.client.ApiClient`) and starts components only
with `cluster.component_args(name)`; nothing here reads `cluster.apiserver.url` or passes `--master`.
The process sampler reads /proc (RSS, CPU) for the scale run and the per-step resource figures.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from bench.httpload import Conn
from bench.report import progress
from shared.client import ApiClient
from tests.servers import Cluster, Proc


def http_kwargs(c: Cluster, **extra: Any) -> dict[str, Any]:
    """`httpx.Client(**...)` / `httpx.AsyncClient(**...)` keyword arguments as the cluster admin."""
    kw = dict(c.admin_kwargs())
    kw.update(extra)
    return kw


def base_url(c: Cluster) -> str:
    return str(c.admin_kwargs()["base_url"])


def ssl_context(c: Cluster) -> ssl.SSLContext | None:
    """The TLS client context `admin_kwargs()` describes (None for plain HTTP)."""
    kw = c.admin_kwargs()
    if not str(kw["base_url"]).startswith("https://"):
        return None
    verify = kw.get("verify", True)
    if isinstance(verify, ssl.SSLContext):
        return verify
    ctx = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert = kw.get("cert")
    if isinstance(cert, tuple):
        ctx.load_cert_chain(*cert)
    elif isinstance(cert, str):
        ctx.load_cert_chain(cert)
    return ctx


def conn(c: Cluster) -> Conn:
    """A lean keep-alive HTTP/1.1 connection (bench/httpload.py) as the cluster admin."""
    kw = c.admin_kwargs()
    return Conn(str(kw["base_url"]), ssl=ssl_context(c), headers=dict(kw.get("headers") or {}))


def api_client(c: Cluster, timeout: float = 30.0) -> ApiClient:
    """`shared.client.ApiClient` as the cluster admin (the cluster's own factory when it has one)."""
    make = getattr(c, "api_client", None)
    if make is not None:
        client: ApiClient = make()
        return client
    kw = c.admin_kwargs()
    verify, cert = kw.get("verify"), kw.get("cert")
    token = None
    auth = dict(kw.get("headers") or {}).get("Authorization", "")
    if auth.startswith("Bearer "):
        token = auth.removeprefix("Bearer ")
    return ApiClient(str(kw["base_url"]), token=token, ca_file=verify if isinstance(verify, str) else None,
                     cert=cert if isinstance(cert, tuple) else None, timeout=timeout)


def component_args(c: Cluster, name: str, node: str = "") -> list[str]:
    """The cluster's flags for a component; a kubelet of one named node gets that node's identity."""
    if node:
        try:
            return list(c.component_args(name, node))  # type: ignore[call-arg]
        except TypeError:
            pass
    return list(c.component_args(name))


def component_argv(c: Cluster, name: str, *extra: str, node: str = "") -> list[str]:
    return [sys.executable, "-m", "services.cli", name, *component_args(c, name, node), "--nats-url", c.nats.url,
            *extra]


def component(c: Cluster, name: str, *extra: str, tag: str = "", node: str = "") -> Proc:
    """`kubenats <name>` pointed at the cluster with its own identity (not started)."""
    return Proc(f"{name}{tag}", component_argv(c, name, *extra, node=node), c.workdir / f"{name}{tag}.log")


def deployment(name: str, replicas: int, *, image: str = "kubenats/busybox:test", container: str = "c",
               **spec: Any) -> dict[str, Any]:
    """A Deployment of `replicas` pods labelled app=<name>, one container."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": container, "image": image}]}}, **spec}}


async def wait_nodes(api: httpx.AsyncClient, n: int, alive: Callable[[], bool], timeout: float,
                     detail: Callable[[], str] = lambda: "") -> float:
    """Seconds until `n` hollow Nodes are Ready (progress every 5 s); TimeoutError, with `detail()`,
    after `timeout` or once `alive()` is false."""
    t0, last = time.perf_counter(), 0.0
    while True:
        r = await api.get("/api/v1/nodes", params={"labelSelector": "kubenats.io/hollow=true"})
        ready = sum(1 for x in r.json()["items"] if any(
            c["type"] == "Ready" and c["status"] == "True" for c in (x.get("status") or {}).get("conditions") or []))
        if ready >= n:
            return time.perf_counter() - t0
        if not alive() or time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"only {ready}/{n} hollow nodes Ready" + (f"\n{detail()}" if detail() else ""))
        if time.perf_counter() - last > 5:
            progress(f"  {ready}/{n} nodes Ready")
            last = time.perf_counter()
        await asyncio.sleep(1.0)


def process_tree(pid: int) -> list[int]:
    """pid and its children (an apiserver with --workers is a supervisor and N workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid, *(int(c) for c in f.read().split())]
    except (OSError, ValueError):
        return [pid]


def proc_stats(pid: int) -> dict[str, float]:
    """RSS and peak RSS (VmHWM) in MiB, CPU seconds (user + system) of a process and its children
    (peaks add up: an upper bound for a process tree)."""
    out = {"rss": 0.0, "hwm": 0.0, "cpu": 0.0}
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out["rss"] += int(line.split()[1]) / 1024
                    elif line.startswith("VmHWM:"):
                        out["hwm"] += int(line.split()[1]) / 1024
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out["cpu"] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return out


class Sampler:
    """Samples RSS and CPU of named processes every `interval` s on a thread: a timeline, peaks, deltas."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        self.pids, self.interval = pids, interval
        self.timeline: list[tuple[float, dict[str, dict[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.perf_counter()

    def sample(self) -> dict[str, dict[str, float]]:
        return {k: proc_stats(pid) for k, pid in self.pids.items()}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.timeline.append((time.perf_counter() - self.t0, self.sample()))
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self.t0 = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.timeline.append((time.perf_counter() - self.t0, self.sample()))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per process: first/final/peak RSS MiB (peak of the samples and VmHWM) and CPU s over the window."""
        first, last = self.timeline[0][1], self.timeline[-1][1]
        out = {}
        for k in self.pids:
            out[k] = {"rss_start": first[k]["rss"], "rss_final": last[k]["rss"],
                      "rss_peak": max(max(s[k]["rss"] for _, s in self.timeline), last[k]["hwm"]),
                      "cpu": last[k]["cpu"] - first[k]["cpu"]}
        return out
