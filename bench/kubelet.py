"""Kubelet benchmark: pod startup latency on Docker beside plain `docker run`, and 1,000 hollow nodes.

Why this exists: pod startup is the user-visible latency of the node side; it stands beside plain
`docker run` of the same pause + app pair (the raw building block, target <= 1.3x), and the hollow
fleet shows one process can carry 1,000 nodes' heartbeats for the scale run.

Run: `.venv/bin/python -m bench.kubelet [--quick]` (about 4 minutes), or the `kubelet` step of
`python -m bench`. Starts its own etcd, nats-server and
apiserver on free ports and `kubenats kubelet` child processes, measures, cleans up every
container it made (by node label) and rewrites the `kubelet` section of docs/benchmarks.md.

1. Startup latency: pods of the local test images (a pause sandbox + one busybox app container)
   from the POST to the first time a watch on the API shows them Running, one at a time and 30 at
   once; beside it, in the same run, the same pause + app pair started with plain `docker run`
   (`--network container:<pause>`), one at a time and 30 at once.
2. Hollow nodes: one `--runtime hollow --hollow-nodes 1000` process with the default 10 s lease
   renewal; time until all 1,000 Nodes are Ready, then a watch window in which every lease is
   listed every 2 s: a heartbeat is *missed* when a lease's renewTime gap exceeds 1.5 x the
   interval, *expired* when it exceeds the 40 s lease duration. Midway, pods are created on the
   hollow nodes to load the process. RSS and CPU of the process come from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
import uuid
from datetime import datetime
from typing import Any

import httpx

from bench import plots
from bench.common import component_argv, http_kwargs
from bench.report import finish, machine, median, pct, progress
from tests.kubelet.images import BUSYBOX_IMAGE, PAUSE_IMAGE, ensure_test_images
from tests.servers import ROOT, Cluster

APP = "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


def kubelet(cluster: Cluster, node: str, *extra: str) -> subprocess.Popen[bytes]:
    hollow = "--hollow-nodes" in extra  # many nodes in one process: the cluster's shared kubelet identity
    argv = component_argv(cluster, "kubelet", "--node-name", node, "--root-dir", str(cluster.workdir / f"root-{node}"),
                          "--pod-infra-container-image", PAUSE_IMAGE, "--address", "127.0.0.1", "--port", "0",
                          *extra, node="" if hollow else node)
    with open(cluster.workdir / f"kubelet-{node}.log", "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)


def remove_containers(node: str) -> None:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=kubenats.io/node={node}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def pod(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "app", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", APP]}]}}


class RunningWatch:
    """A `?watch=true` on a namespace's pods: the first moment each pod was seen Running."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.cluster, self.ns = cluster, ns
        self.running: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(**http_kwargs(self.cluster, timeout=None)) as c, \
                c.stream("GET", f"/api/v1/namespaces/{self.ns}/pods", params={"watch": "true"}) as r:
            async for line in r.aiter_lines():
                if not line.strip():
                    continue
                ev = httpx.Response(200, content=line).json()
                obj = ev.get("object") or {}
                if (obj.get("status") or {}).get("phase") == "Running":
                    self.running.setdefault(obj["metadata"]["name"], time.perf_counter())

    async def __aenter__(self) -> RunningWatch:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.3)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self, names: list[str], timeout: float = 120) -> None:
        deadline = time.perf_counter() + timeout
        while not all(n in self.running for n in names):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"pods not Running: {[n for n in names if n not in self.running]}")
            await asyncio.sleep(0.005)


async def kubelet_startup(cluster: Cluster, count: int) -> tuple[list[float], list[float], float]:
    node = f"bench-{uuid.uuid4().hex[:6]}"
    proc = kubelet(cluster, node)
    ns = "bench-start"
    try:
        async with httpx.AsyncClient(**http_kwargs(cluster, timeout=60)) as api:
            await api.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            deadline = time.monotonic() + 30
            while (await api.get(f"/api/v1/nodes/{node}")).status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError("the kubelet did not register")
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            async with RunningWatch(cluster, ns) as watch:
                progress(f"kubelet: {count} pods one at a time")
                sequential = []
                for i in range(count):
                    t = time.perf_counter()
                    r = await api.post(f"/api/v1/namespaces/{ns}/pods", json=pod(f"s{i}", node))
                    assert r.status_code == 201, r.text
                    await watch.wait([f"s{i}"])
                    sequential.append(watch.running[f"s{i}"] - t)
                progress(f"  p50 {median(sequential) * 1000:.0f} ms; cleaning up")
                await asyncio.gather(*(api.delete(f"/api/v1/namespaces/{ns}/pods/s{i}") for i in range(count)))
                while (await api.get(f"/api/v1/namespaces/{ns}/pods")).json()["items"]:
                    await asyncio.sleep(0.2)
                progress(f"kubelet: {count} pods at once")
                starts: dict[str, float] = {}

                async def create(i: int) -> None:
                    starts[f"b{i}"] = time.perf_counter()
                    r = await api.post(f"/api/v1/namespaces/{ns}/pods", json=pod(f"b{i}", node))
                    assert r.status_code == 201, r.text

                t0 = time.perf_counter()
                await asyncio.gather(*(create(i) for i in range(count)))
                await watch.wait(list(starts))
                burst = [watch.running[n] - s for n, s in starts.items()]
                burst_total = max(watch.running[n] for n in starts) - t0
            await asyncio.gather(*(api.delete(f"/api/v1/namespaces/{ns}/pods/b{i}") for i in range(count)))
            deadline = time.monotonic() + 60
            while (await api.get(f"/api/v1/namespaces/{ns}/pods")).json()["items"] and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
        remove_containers(node)
    return sequential, burst, burst_total


async def docker_pair(label: str, i: int) -> float:
    t = time.perf_counter()
    name = f"bench-docker-{label}-{i}"
    for argv in (["docker", "run", "-d", "--name", name, "--label", f"kubenats.io/node={label}", "--ipc", "shareable",
                  PAUSE_IMAGE],
                 ["docker", "run", "-d", "--label", f"kubenats.io/node={label}", "--network", f"container:{name}",
                  "--ipc", f"container:{name}", BUSYBOX_IMAGE, "sh", "-c", APP]):
        p = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                 stderr=asyncio.subprocess.PIPE)
        _, err = await p.communicate()
        if p.returncode != 0:
            raise RuntimeError(err.decode())
    return time.perf_counter() - t


async def docker_startup(count: int) -> tuple[list[float], list[float], float]:
    label = f"bench-docker-{uuid.uuid4().hex[:6]}"
    try:
        progress(f"docker run: {count} pairs one at a time")
        sequential = [await docker_pair(label, i) for i in range(count)]
        remove_containers(label)
        progress(f"docker run: {count} pairs at once")
        t0 = time.perf_counter()
        burst = list(await asyncio.gather(*(docker_pair(label, count + i) for i in range(count))))
        total = time.perf_counter() - t0
    finally:
        remove_containers(label)
    return sequential, burst, total


async def create_pods(api: httpx.AsyncClient, ns: str, prefix: str, nodes: int, count: int) -> None:
    sem = asyncio.Semaphore(20)

    async def create(i: int) -> None:
        async with sem:
            await api.post(f"/api/v1/namespaces/{ns}/pods", json=pod(f"h{i}", f"{prefix}-{i % nodes}"))

    await asyncio.gather(*(create(i) for i in range(count)))


def proc_stats(pid: int) -> tuple[int, int, float]:
    """(RSS KiB, peak RSS KiB, CPU seconds) of a process."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, hwm, cpu


def _micro(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


async def hollow_fleet(cluster: Cluster, nodes: int, window: float, pods: int) -> dict[str, Any]:
    prefix = f"hollow-{uuid.uuid4().hex[:4]}"
    interval = 10.0
    proc = kubelet(cluster, prefix, "--runtime", "hollow", "--hollow-nodes", str(nodes))
    out: dict[str, Any] = {"nodes": nodes, "window": window, "pods": pods}
    try:
        async with httpx.AsyncClient(**http_kwargs(cluster, timeout=60)) as api:
            t0 = time.perf_counter()
            progress(f"hollow: waiting for {nodes} nodes")
            while True:
                r = await api.get("/api/v1/nodes", params={"labelSelector": "kubenats.io/hollow=true"})
                ready = sum(1 for n in r.json()["items"] if n["metadata"]["name"].startswith(prefix) and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions") or []))
                if ready >= nodes:
                    break
                if time.perf_counter() - t0 > 300 or proc.poll() is not None:
                    raise TimeoutError(f"only {ready} hollow nodes Ready")
                await asyncio.sleep(1.0)
            out["ready_s"] = time.perf_counter() - t0
            progress(f"  all Ready after {out['ready_s']:.1f} s; watching leases for {window:.0f} s")
            last: dict[str, float] = {}
            gaps: list[float] = []
            renewals: list[float] = []
            max_gap: dict[str, float] = {}
            _, _, cpu0 = proc_stats(proc.pid)
            w0 = time.perf_counter()
            ns = "bench-hollow"
            await api.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            pods_started = False
            pod_t0 = 0.0
            creator: asyncio.Task[None] | None = None
            while time.perf_counter() - w0 < window:
                if not pods_started and time.perf_counter() - w0 > window / 3 and pods:
                    pods_started = True
                    pod_t0 = time.perf_counter()
                    creator = asyncio.create_task(create_pods(api, ns, prefix, nodes, pods))
                items = (await api.get(LEASES)).json()["items"]
                for item in items:
                    name = item["metadata"]["name"]
                    if not name.startswith(prefix):
                        continue
                    t = _micro(item["spec"]["renewTime"])
                    prev = last.get(name)
                    if prev is not None and t > prev:
                        gaps.append(t - prev)
                        renewals.append(t)
                        max_gap[name] = max(max_gap.get(name, 0.0), t - prev)
                    last[name] = t
                if pods_started and "pods_running_s" not in out:
                    r = await api.get(f"/api/v1/namespaces/{ns}/pods")
                    running = sum(1 for p in r.json()["items"] if (p.get("status") or {}).get("phase") == "Running")
                    if running >= pods:
                        out["pods_running_s"] = time.perf_counter() - pod_t0
                await asyncio.sleep(2.0)
            elapsed = time.perf_counter() - w0
            if creator is not None:
                await creator
            rss, hwm, cpu1 = proc_stats(proc.pid)
            out.update(rss_mib=rss / 1024, hwm_mib=hwm / 1024, cpu_pct=100 * (cpu1 - cpu0) / elapsed,
                       leases=len(last), renewals=len(gaps), gap_p50=median(gaps), gap_p99=pct(gaps, 99),
                       gap_max=max(gaps) if gaps else float("nan"),
                       missed=sum(1 for g in gaps if g > 1.5 * interval), expired=sum(1 for g in gaps if g > 40),
                       never_renewed=nodes - len(max_gap))
            # spread: renewals per second over the window (100/s is the even rate for 1,000 nodes)
            if renewals:
                lo = min(renewals)
                buckets: dict[int, int] = {}
                for t in renewals:
                    buckets[int(t - lo)] = buckets.get(int(t - lo), 0) + 1
                full = [buckets.get(s, 0) for s in range(1, int(max(renewals) - lo))]
                out["per_s_median"] = median([float(x) for x in full]) if full else float("nan")
                out["per_s_max"] = max(full) if full else 0
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def ms(x: float) -> str:
    return f"{x * 1000:.0f}"


async def step(quick: bool = False, count: int | None = None, nodes: int | None = None, window: float | None = None,
               hollow_pods: int | None = None) -> dict[str, Any]:
    count = count or (10 if quick else 30)
    nodes = nodes or (100 if quick else 1000)
    window = window or (30.0 if quick else 90.0)
    hollow_pods = hollow_pods if hollow_pods is not None else (100 if quick else 500)
    ensure_test_images()
    c = Cluster().start()
    try:
        k_seq, k_burst, k_total = await kubelet_startup(c, count)
        d_seq, d_burst, d_total = await docker_startup(count)
        fleet = await hollow_fleet(c, nodes, window, hollow_pods)
    finally:
        c.stop()

    fig = plots.cdf("pod_startup.png", "Pod startup: kubelet (POST → Running) vs raw docker run of pause + app",
                    {"kubelet, one at a time": k_seq, "docker run, one at a time": d_seq,
                     f"kubelet, {count} at once": k_burst, f"docker run, {count} at once": d_burst},
                    paired=True)
    lines = [f"## Kubelet — `python -m bench.kubelet`\n\n{machine()}\n",
             f"Pod startup on Docker: a pod of the local test images (pause sandbox + one busybox container) "
             f"from the POST to the first moment a watch on the API shows it Running; beside it, the same "
             f"pause + app pair started with plain `docker run` (CLI, `--network container:`), in the same run. "
             f"{count} pods one at a time, then {count} at once.\n",
             "| | kubelet p50 ms | kubelet p99 ms | docker run p50 ms | docker run p99 ms | ratio p50 | "
             "all done (kubelet / docker) s |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| one at a time | {ms(median(k_seq))} | {ms(pct(k_seq, 99))} | {ms(median(d_seq))} | "
             f"{ms(pct(d_seq, 99))} | {median(k_seq) / median(d_seq):.2f} | {sum(k_seq):.1f} / {sum(d_seq):.1f} |",
             f"| {count} at once | {ms(median(k_burst))} | {ms(pct(k_burst, 99))} | {ms(median(d_burst))} | "
             f"{ms(pct(d_burst, 99))} | {median(k_burst) / median(d_burst):.2f} | {k_total:.1f} / {d_total:.1f} |",
             "", fig, "",
             f"Hollow nodes: {fleet['nodes']} in one `kubenats kubelet --runtime hollow --hollow-nodes "
             f"{fleet['nodes']}` process, leases renewed every 10 s (default). All Nodes Ready "
             f"{fleet['ready_s']:.1f} s after the process started. Over a {fleet['window']:.0f} s window "
             f"(every lease listed every 2 s; {fleet['pods']} pods created on the hollow nodes a third of the way in"
             + (f", all Running {fleet['pods_running_s']:.1f} s later" if "pods_running_s" in fleet else "") + "):",
             "",
             "| RSS MiB | peak RSS MiB | CPU % of one core | renewals seen | gap p50 s | gap p99 s | gap max s | "
             "missed (gap > 15 s) | expired (gap > 40 s) | renewals/s median / max |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {fleet['rss_mib']:.0f} | {fleet['hwm_mib']:.0f} | {fleet['cpu_pct']:.0f} | {fleet['renewals']} | "
             f"{fleet['gap_p50']:.2f} | {fleet['gap_p99']:.2f} | {fleet['gap_max']:.2f} | {fleet['missed']} | "
             f"{fleet['expired']} | {fleet.get('per_s_median', float('nan')):.0f} / {fleet.get('per_s_max', 0)} |",
             ]
    if fleet["never_renewed"]:
        lines.append(f"\n{fleet['never_renewed']} leases were never seen renewed in the window.")
    metrics = {"count": count, "seq_p50_ms": median(k_seq) * 1000, "seq_p99_ms": pct(k_seq, 99) * 1000,
               "docker_seq_p50_ms": median(d_seq) * 1000, "docker_seq_p99_ms": pct(d_seq, 99) * 1000,
               "ratio_p50": median(k_seq) / median(d_seq), "ratio_p99": pct(k_seq, 99) / pct(d_seq, 99),
               "burst_p50_ms": median(k_burst) * 1000, "burst_p99_ms": pct(k_burst, 99) * 1000,
               "docker_burst_p50_ms": median(d_burst) * 1000, "burst_ratio_p50": median(k_burst) / median(d_burst),
               "hollow_nodes": nodes, "hollow_ready_s": fleet["ready_s"], "hollow_rss_mib": fleet["rss_mib"],
               "hollow_missed": fleet["missed"], "hollow_expired": fleet["expired"]}
    return {"section": "\n".join(lines), "metrics": metrics}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pods", type=int)
    ap.add_argument("--hollow-nodes", type=int)
    ap.add_argument("--window", type=float)
    ap.add_argument("--hollow-pods", type=int)
    a = ap.parse_args()
    r = asyncio.run(step(a.quick, a.pods, a.hollow_nodes, a.window, a.hollow_pods))
    finish("kubelet", r["section"], r["metrics"])
    print(r["section"])
