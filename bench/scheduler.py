"""Scheduler benchmark: 1,000 hollow nodes, 10,000 pods, placement rate and creation-to-binding latency.

Why this exists: the scheduler's target is >= 300 pods/s at 1,000 nodes with binding kept off the
decision path. This measures the whole service as deployed: etcd, nats-server, the apiserver and
``kubenats scheduler`` as child processes, 1,000 Node objects (32 cpu, 128Gi, 110 pods, Ready)
and pods (100m / 64Mi, 20 ReplicaSet owners) created through the API, binding observed through
the API's watch. Two runs:

* **stream**: the scheduler is running while 10,000 pods are created by ``--clients`` concurrent
  clients; pods bound per second over the run, and creation-to-binding latency per pod (from the
  create request being sent to the bound pod arriving on the watch);
* **backlog**: 10,000 pods are created while no scheduler runs, then one starts; time to its
  first binding (process start, informer lists, Lease) and the drain rate from then on.

Beside them, the scheduler's own figures from its ``scheduler_stats`` log line: time spent
deciding (filter + score + assume, per pod) and so the decision rate the loop could sustain if
the API kept up.

Run: ``.venv/bin/python -m bench.scheduler [--quick] [--nodes 1000] [--pods 10000] [--clients 16]``
(about 5 minutes), or the ``scheduler`` step of ``python -m bench``; rewrites the ``scheduler``
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import httpx
import orjson

from bench import plots
from bench.common import api_client, component, http_kwargs
from bench.report import finish, machine, median, pct, progress
from tests.servers import Cluster, Proc

OWNERS = [f"rs-{i}" for i in range(20)]


def node(i: int) -> dict[str, Any]:
    name = f"hollow-{i:04d}"
    res = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
            "spec": {},
            "status": {"capacity": res, "allocatable": res,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


def pod(name: str, n: int) -> dict[str, Any]:
    owner = OWNERS[n % len(OWNERS)]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": owner},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                              "uid": f"00000000-0000-0000-0000-{n % len(OWNERS):012d}",
                                              "controller": True}]},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.35",
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}


async def fan_out(count: int, clients: int, fn: Any) -> None:
    sem = asyncio.Semaphore(clients)

    async def one(i: int) -> None:
        async with sem:
            await fn(i)
    await asyncio.gather(*(one(i) for i in range(count)))


class BindWatch:
    """Watches pods of one namespace through the API and stamps when each is first seen bound."""

    def __init__(self, c: Cluster, ns: str) -> None:
        self.client = api_client(c, timeout=3600)
        self.ns = ns
        self.bound: dict[str, float] = {}
        self.nodes: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        path = f"/api/v1/namespaces/{self.ns}/pods"
        rv = (await self.client.request("GET", path))["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._run(path, rv))

    async def _run(self, path: str, rv: str) -> None:
        async for ev in self.client.watch_lines(path, {"resourceVersion": rv}):
            obj = ev.get("object") or {}
            node_name = (obj.get("spec") or {}).get("nodeName")
            name = (obj.get("metadata") or {}).get("name")
            if node_name and name and name not in self.bound:
                self.bound[name] = time.perf_counter()
                self.nodes[name] = node_name

    async def wait(self, count: int, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        last = -1
        while len(self.bound) < count:
            if self.task is not None and self.task.done():
                self.task.result()
                raise RuntimeError("the watch ended")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {len(self.bound)}/{count} pods bound")
            if len(self.bound) // 2000 != last:
                last = len(self.bound) // 2000
                progress(f"  {len(self.bound)}/{count} bound")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.client.close()


def scheduler_proc(c: Cluster, tag: str, bind_concurrency: int) -> Proc:
    return component(c, "scheduler", "--bind-concurrency", str(bind_concurrency), tag=f"-{tag}")


def log_records(proc: Proc, name: str) -> list[dict[str, Any]]:
    out = []
    for line in proc.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"event":"{name}"' in line:
            out.append(orjson.loads(line))
    return out


async def wait_log(proc: Proc, name: str, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while not log_records(proc, name):
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{proc.name} did not log {name}")
        await asyncio.sleep(0.05)
    return time.perf_counter()


async def create_pods(api: httpx.AsyncClient, ns: str, count: int, clients: int,
                      sent: dict[str, float]) -> tuple[float, float]:
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        name = f"p-{i:05d}"
        body = orjson.dumps(pod(name, i))
        sent[name] = time.perf_counter()
        r = await api.post(f"/api/v1/namespaces/{ns}/pods", content=body,
                           headers={"Content-Type": "application/json"})
        if r.status_code != 201:
            errors += 1
    t0 = time.perf_counter()
    await fan_out(count, clients, one)
    if errors:
        raise RuntimeError(f"{errors} pod creates failed")
    return t0, time.perf_counter()


def stats_of(proc: Proc) -> dict[str, Any]:
    recs = log_records(proc, "scheduler_stats")
    return recs[-1] if recs else {}


def ms(x: float) -> str:
    return f"{x * 1000:.0f}"


async def step(quick: bool = False, nodes: int | None = None, pods: int | None = None, clients: int = 16,
               bind_concurrency: int = 8) -> dict[str, Any]:
    nodes = nodes or (100 if quick else 1000)
    pods = pods or (1000 if quick else 10000)
    load_before = os.getloadavg()[0]
    c = Cluster().start()
    procs: list[Proc] = []
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    try:
        async with httpx.AsyncClient(**http_kwargs(c, timeout=120, limits=limits)) as api:
            progress(f"creating {nodes} nodes")
            t = time.perf_counter()

            async def mk_node(i: int) -> None:
                r = await api.post("/api/v1/nodes", json=node(i))
                assert r.status_code == 201, r.text
            await fan_out(nodes, clients, mk_node)
            progress(f"  {nodes / (time.perf_counter() - t):.0f} nodes/s")
            for ns in ("bench-stream", "bench-backlog"):
                await api.post("/api/v1/namespaces", json={"metadata": {"name": ns}})

            # ---- stream: the scheduler runs while pods are created
            first = scheduler_proc(c, "stream", bind_concurrency)
            procs.append(first)
            first.start()
            await wait_log(first, "scheduling_started", 60)
            watch = BindWatch(c, "bench-stream")
            await watch.start()
            progress(f"stream: creating {pods} pods with {clients} clients, scheduler running")
            sent: dict[str, float] = {}
            c0, c1 = await create_pods(api, "bench-stream", pods, clients, sent)
            progress(f"  created at {pods / (c1 - c0):.0f} pods/s")
            await watch.wait(pods, 600)
            stream_end = max(watch.bound.values())
            stream_rate = pods / (stream_end - c0)
            lat = [watch.bound[n] - sent[n] for n in sent]
            stream_nodes = len(set(watch.nodes.values()))
            watch_stream_bound = list(watch.bound.values())
            await watch.stop()
            first.stop(30)
            stream_stats = stats_of(first)
            progress(f"  bound {stream_rate:.0f} pods/s, p50 {ms(median(lat))} ms, p99 {ms(pct(lat, 99))} ms")

            # ---- backlog: pods wait for a scheduler that is not running, then one starts
            progress(f"backlog: creating {pods} pods with no scheduler running")
            watch = BindWatch(c, "bench-backlog")
            await watch.start()
            sent2: dict[str, float] = {}
            b0, b1 = await create_pods(api, "bench-backlog", pods, clients, sent2)
            backlog_create_rate = pods / (b1 - b0)
            second = scheduler_proc(c, "backlog", bind_concurrency)
            procs.append(second)
            started = time.perf_counter()
            second.start()
            await watch.wait(pods, 600)
            first_bind = min(watch.bound.values())
            last_bind = max(watch.bound.values())
            drain_rate = (pods - 1) / (last_bind - first_bind)
            drain_curve = sorted(t - first_bind for t in watch.bound.values())
            stream_curve = sorted(t - c0 for t in watch_stream_bound)
            await watch.stop()
            second.stop(30)
            backlog_stats = stats_of(second)
            progress(f"  first binding {first_bind - started:.1f}s after start, drained at {drain_rate:.0f} pods/s")

            r = await api.get("/api/v1/pods")
            per_node: dict[str, int] = {}
            for p in r.json()["items"]:
                nn = p["spec"].get("nodeName")
                if nn:
                    per_node[nn] = per_node.get(nn, 0) + 1
            assert sum(per_node.values()) == 2 * pods, sum(per_node.values())
            assert max(per_node.values()) <= 110
    finally:
        for p in procs:
            p.stop(10)
        c.stop()
    load_after = os.getloadavg()[0]

    def decisions(st: dict[str, Any], key: str) -> str:
        secs = float(st.get(key) or 0)
        attempts = int(st.get("attempts") or 0)
        if not secs:
            return "n/a"
        return f"{attempts / secs:,.0f} ({secs / max(attempts, 1) * 1000:.2f} ms)"

    lines = [
        f"## Scheduler — `python -m bench.scheduler`\n\n{machine()}\n",
        f"{nodes} hollow Node objects (32 cpu, 128Gi, 110 pods, Ready, 3 zones) and {pods} pods per run "
        "(100m / 64Mi, 20 ReplicaSet owners) created through the API by "
        f"{clients} concurrent clients; etcd, nats-server, the apiserver and `kubenats scheduler` "
        f"(default profile, adaptive percentageOfNodesToScore, {bind_concurrency} binds in flight) run as "
        "child processes on the same machine as this client. Bindings are observed through the API's watch.\n",
        "| run | pods | created/s | bound/s | creation→bound p50 ms | p99 ms | max ms "
        "| decisions/s, CPU (ms/pod) | decisions/s, wall (ms/pod) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| stream (scheduler running while pods are created) | {pods} | {pods / (c1 - c0):.0f} | {stream_rate:.0f} | "
        f"{ms(median(lat))} | {ms(pct(lat, 99))} | {ms(max(lat))} | {decisions(stream_stats, 'decision_cpu_seconds')} "
        f"| {decisions(stream_stats, 'decision_seconds')} |",
        f"| backlog ({pods} pending, then the scheduler starts) | {pods} | {backlog_create_rate:.0f} | "
        f"{drain_rate:.0f} | – | – | – | {decisions(backlog_stats, 'decision_cpu_seconds')} "
        f"| {decisions(backlog_stats, 'decision_seconds')} |",
        "",
        f"Stream: bound/s counts from the first create request to the last binding seen; pods landed on "
        f"{stream_nodes} distinct nodes; bind conflicts {stream_stats.get('bind_conflicts', 'n/a')}, "
        f"Events dropped {stream_stats.get('events_dropped', 'n/a')}. "
        f"Backlog: first binding {first_bind - started:.1f} s after the scheduler process started (imports, "
        f"informer lists of {2 * pods} pods and {nodes} nodes, Lease), then drained at {drain_rate:.0f} pods/s; "
        f"bind conflicts {backlog_stats.get('bind_conflicts', 'n/a')}, Events dropped "
        f"{backlog_stats.get('events_dropped', 'n/a')}.",
        "",
        plots.timeline("scheduler_bound.png", f"Pods bound over time at {nodes} nodes",
                       {"stream: bound since the first create": (stream_curve, range(1, len(stream_curve) + 1)),
                        "backlog: bound since the first binding": (drain_curve, range(1, len(drain_curve) + 1))},
                       "pods bound", xlabel="seconds"),
        "",
        "Decisions/s is the scheduler's own time in filter + score + assume per pod (`decision_cpu_seconds` and "
        "`decision_seconds` in its `scheduler_stats` log line): CPU time is the cost of a decision, wall time adds "
        "whatever the machine's other load took from the process meanwhile; it is what the loop sustains when the "
        "API keeps up. "
        "bound/s is limited by the API server, which commits each binding, the pod's create and a Scheduled "
        "Event per pod on the same 2 cores.",
        "",
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after the run (2 cores; anything "
        "beyond what this benchmark starts is other work on the machine, which lowers every end-to-end figure).",
    ]
    metrics = {"nodes": nodes, "pods": pods, "stream_bound_per_s": stream_rate, "backlog_drain_per_s": drain_rate,
               "stream_p50_ms": median(lat) * 1000, "stream_p99_ms": pct(lat, 99) * 1000,
               "created_per_s": pods / (c1 - c0), "first_bind_s": first_bind - started,
               "decisions_cpu_per_s": (int(stream_stats.get("attempts") or 0)
                                       / max(float(stream_stats.get("decision_cpu_seconds") or 0), 1e-9))}
    return {"section": "\n".join(lines), "metrics": metrics}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="100 nodes, 1,000 pods")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--pods", type=int)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--bind-concurrency", type=int, default=8)
    a = ap.parse_args()
    r = asyncio.run(step(a.quick, a.nodes, a.pods, a.clients, a.bind_concurrency))
    finish("scheduler", r["section"], r["metrics"])
    print(r["section"])
