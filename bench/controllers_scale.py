"""Controller manager at scale: 100 Deployments x 10 replicas on 100 hollow nodes, and a rolling update.

Why this exists: the controller manager's cost per pod and its memory beside k0s' published
controller memory, on a cluster small enough to run in every full benchmark pass.

Run: `.venv/bin/python -m bench.controllers_scale [--quick] [--nodes 100] [--deployments 100]
[--replicas 10] [--rollout-replicas 100]` (about 3 minutes), or the `controllers` step of
`python -m bench`. Starts its own etcd, nats-server and apiserver, one
`kubenats kubelet --runtime hollow --hollow-nodes N` process, `kubenats scheduler` and
`kubenats controllers` as child processes, observes everything through the API and rewrites the
`controllers` section of docs/benchmarks.md.

1. Fan-out: once all hollow Nodes are Ready, the Deployments (one container, `kubenats/busybox:test`;
   hollow runtime, so no Docker) are created concurrently; the Deployments list is polled every
   0.5 s until every one reports availableReplicas == replicas. CPU seconds (utime + stime from
   /proc/<pid>/stat) and RSS (VmRSS, VmHWM from /proc/<pid>/status) of the controller manager, the
   apiserver, the scheduler and the kubelet are read before and after.
2. Rolling update: one Deployment of 100 replicas (default strategy: maxSurge 25%, maxUnavailable
   25%) created and waited available; its pod template is patched (an annotation) and the time
   until `kubectl rollout status` would be satisfied is taken: observedGeneration >= generation,
   updatedReplicas == replicas == availableReplicas, status.replicas == replicas (no old pods).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import httpx

from bench.common import component as bench_component
from bench.common import deployment, http_kwargs, proc_stats, wait_nodes
from bench.report import finish, machine, progress
from tests.servers import Cluster, Proc

NS = "bench-scale"
DEPLOYS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def component(c: Cluster, name: str, *extra: str) -> Proc:
    return bench_component(c, name, *extra)


def available(d: dict[str, Any]) -> bool:
    return (d.get("status") or {}).get("availableReplicas", 0) == d["spec"]["replicas"]


def rolled_out(d: dict[str, Any]) -> bool:
    st, want = d.get("status") or {}, d["spec"]["replicas"]
    return (st.get("observedGeneration", 0) >= d["metadata"].get("generation", 1)
            and st.get("updatedReplicas", 0) == want and st.get("replicas", 0) == want
            and st.get("availableReplicas", 0) == want)


async def pod_count(api: httpx.AsyncClient) -> tuple[int, int]:
    items = (await api.get(f"/api/v1/namespaces/{NS}/pods")).json()["items"]
    return len(items), sum(1 for p in items if (p.get("status") or {}).get("phase") == "Running")


async def fan_out(api: httpx.AsyncClient, procs: dict[str, Proc], count: int, replicas: int,
                  timeout: float) -> dict[str, Any]:
    before = {k: proc_stats(p.p.pid) for k, p in procs.items() if p.p}
    sem = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        async with sem:
            r = await api.post(DEPLOYS, json=deployment(f"d{i:03d}", replicas))
            assert r.status_code == 201, r.text

    progress(f"fan-out: creating {count} Deployments x {replicas} replicas")
    t0 = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(count)))
    created = time.perf_counter() - t0
    progress(f"  created in {created:.1f} s; polling every 0.5 s")
    last = 0.0
    marks: dict[str, float] = {}
    while True:
        items = [d for d in (await api.get(DEPLOYS)).json()["items"] if d["metadata"]["name"].startswith("d")]
        done = sum(1 for d in items if available(d))
        pods_avail = sum((d.get("status") or {}).get("availableReplicas", 0) for d in items)
        pods_made = sum((d.get("status") or {}).get("replicas", 0) for d in items)
        now = time.perf_counter() - t0
        if pods_made >= count * replicas:
            marks.setdefault("all_created", now)
        if pods_avail >= count * replicas // 2:
            marks.setdefault("half_available", now)
        if done:
            marks.setdefault("first_deploy", now)
        if done >= count:
            break
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"only {done}/{count} Deployments available")
        if time.perf_counter() - last > 5:
            progress(f"  {time.perf_counter() - t0:5.1f} s: {done}/{count} Deployments available, "
                     f"pods: {pods_made} counted in status.replicas, {pods_avail} available")
            last = time.perf_counter()
        await asyncio.sleep(0.5)
    elapsed = time.perf_counter() - t0
    after = {k: proc_stats(p.p.pid) for k, p in procs.items() if p.p}
    progress(f"  all available after {elapsed:.1f} s")
    events = len((await api.get(f"/api/v1/namespaces/{NS}/events")).json()["items"])
    return {"elapsed": elapsed, "created": created, "before": before, "after": after, "events": events,
            "marks": marks}


async def rollout(api: httpx.AsyncClient, procs: dict[str, Proc], replicas: int, timeout: float) -> dict[str, Any]:
    name = "big"
    path = f"{DEPLOYS}/{name}"
    progress(f"rolling update: creating a {replicas}-replica Deployment")
    t0 = time.perf_counter()
    r = await api.post(DEPLOYS, json=deployment(name, replicas))
    assert r.status_code == 201, r.text
    while not available((await api.get(path)).json()):
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the rollout Deployment did not become available")
        await asyncio.sleep(0.5)
    scale_up = time.perf_counter() - t0
    progress(f"  available after {scale_up:.1f} s; patching the template")
    await asyncio.sleep(1.0)
    before = {k: proc_stats(p.p.pid) for k, p in procs.items() if p.p}
    patch = {"spec": {"template": {"metadata": {"annotations": {"bench/rev": "2"}}}}}
    t0 = time.perf_counter()
    r = await api.patch(path, content=json.dumps(patch),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    last = 0.0
    while True:
        d = (await api.get(path)).json()
        if rolled_out(d):
            break
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"rollout not complete: {d.get('status')}")
        if time.perf_counter() - last > 5:
            st = d.get("status") or {}
            progress(f"  {time.perf_counter() - t0:5.1f} s: updated {st.get('updatedReplicas', 0)}, "
                     f"total {st.get('replicas', 0)}, available {st.get('availableReplicas', 0)}")
            last = time.perf_counter()
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - t0
    after = {k: proc_stats(p.p.pid) for k, p in procs.items() if p.p}
    rs = (await api.get(f"/apis/apps/v1/namespaces/{NS}/replicasets",
                        params={"labelSelector": f"app={name}"})).json()["items"]
    old = sum((x.get("status") or {}).get("replicas", 0) for x in rs
              if x["spec"].get("template", {}).get("metadata", {}).get("annotations", {}).get("bench/rev") != "2")
    progress(f"  rollout complete after {elapsed:.1f} s ({len(rs)} ReplicaSets, {old} old pods left)")
    return {"scale_up": scale_up, "elapsed": elapsed, "before": before, "after": after, "replicasets": len(rs),
            "old": old}


async def step(quick: bool = False, nodes: int | None = None, count: int | None = None, replicas: int = 10,
               big: int | None = None, timeout: float = 420.0) -> dict[str, Any]:
    nodes = nodes or (30 if quick else 100)
    count = count or (20 if quick else 100)
    big = big or (30 if quick else 100)
    c = Cluster().start()
    kubelet = component(c, "kubelet", "--runtime", "hollow", "--hollow-nodes", str(nodes), "--node-name", "hollow",
                        "--root-dir", str(c.workdir / "kubelet-root"), "--address", "127.0.0.1", "--port", "0")
    scheduler = component(c, "scheduler")
    controllers = component(c, "controllers")
    procs = {"controllers": controllers, "apiserver": c.apiserver, "scheduler": scheduler, "kubelet": kubelet,
             "etcd": c.etcd, "nats-server": c.nats}
    try:
        async with httpx.AsyncClient(**http_kwargs(c, timeout=60, limits=httpx.Limits(max_connections=64))) as api:
            progress(f"starting {nodes} hollow nodes, the scheduler and the controller manager")
            for p in (kubelet, scheduler, controllers):
                p.start()
            ready_s = await wait_nodes(api, nodes, kubelet.alive, 300, kubelet.tail)
            progress(f"  {nodes} nodes Ready after {ready_s:.1f} s")
            r = await api.post("/api/v1/namespaces", json={"metadata": {"name": NS}})
            assert r.status_code in (200, 201, 409), r.text
            await asyncio.sleep(2.0)
            idle = {k: proc_stats(p.p.pid) for k, p in procs.items() if p.p}
            load0 = os.getloadavg()[0]
            fan = await fan_out(api, procs, count, replicas, timeout)
            load1 = os.getloadavg()[0]
            roll = await rollout(api, procs, big, timeout)
            pods_total, pods_running = await pod_count(api)
    finally:
        for p in (controllers, scheduler, kubelet):
            p.stop(20)
        c.stop()

    def row(k: str) -> str:
        i, b, a = idle[k], fan["before"][k], fan["after"][k]
        rb, ra = roll["before"][k], roll["after"][k]
        return (f"| {k} | {i['rss']:.0f} | {a['cpu'] - b['cpu']:.1f} | {a['rss']:.0f} | {a['hwm']:.0f} | "
                f"{ra['cpu'] - rb['cpu']:.1f} | {ra['rss']:.0f} | {ra['hwm']:.0f} |")

    total = count * replicas
    cores = os.cpu_count() or 1

    def cpu(k: str) -> float:
        return fan["after"][k]["cpu"] - fan["before"][k]["cpu"]

    ours = sum(cpu(k) for k in procs)
    busiest = max(procs, key=cpu)
    plane = sum(roll["after"][k]["rss"] for k in ("controllers", "apiserver", "scheduler", "etcd", "nats-server"))
    m = fan["marks"]
    lines = [
        "## Controller manager at scale — `python -m bench.controllers_scale`\n",
        f"{machine()}\n",
        f"etcd, nats-server, the apiserver, one `kubenats kubelet --runtime hollow --hollow-nodes {nodes}` process "
        f"(pods Running at once, loopback IPs, no Docker), `kubenats scheduler` and `kubenats controllers` as child "
        f"processes on the one machine, everything observed through the API. All {nodes} Nodes Ready "
        f"{ready_s:.1f} s after start. 1-minute load average {load0:.1f} before the fan-out, {load1:.1f} after "
        f"(on {cores} cores; anything above what these processes explain is other work on the machine).\n",
        f"- **Fan-out**: {count} Deployments x {replicas} replicas (one container `kubenats/busybox:test`) created "
        f"by 32 concurrent clients (all POSTs answered in {fan['created']:.1f} s); the Deployments list polled "
        f"every 0.5 s until every one reported availableReplicas == {replicas}.",
        f"- **Rolling update**: one {big}-replica Deployment (default strategy: maxSurge 25%, maxUnavailable 25%) "
        f"created and waited available ({roll['scale_up']:.1f} s), then an annotation patched onto its pod "
        "template; time until `kubectl rollout status` would be satisfied (observedGeneration >= generation, "
        "updatedReplicas == replicas == availableReplicas, status.replicas == replicas so no old pods).",
        "- CPU seconds are utime + stime from /proc/<pid>/stat over the phase; RSS is VmRSS, peak is VmHWM "
        "(since process start) from /proc/<pid>/status, at the end of the phase.\n",
        "| | time s | pods |",
        "|---|---:|---:|",
        f"| {count} Deployments x {replicas} replicas, create → all available | {fan['elapsed']:.1f} | {total} "
        f"({total / fan['elapsed']:.0f}/s) |",
        f"| ↳ first Deployment available / half the pods available / all {total} pods counted in "
        f"Deployment status.replicas | {m.get('first_deploy', float('nan')):.1f} / "
        f"{m.get('half_available', float('nan')):.1f} / {m.get('all_created', float('nan')):.1f} | |",
        f"| {big}-replica rolling update, patch → rollout complete | {roll['elapsed']:.1f} | {big} replaced "
        f"({roll['replicasets']} ReplicaSets, {roll['old']} old pods left) |",
        "",
        "| process | idle RSS MiB | fan-out CPU s | RSS after MiB | peak RSS MiB | rollout CPU s | RSS after MiB | "
        "peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *(row(k) for k in procs),
        "",
        f"At the end {pods_total} pods existed in the namespace ({pods_running} Running); the fan-out left "
        f"{fan['events']} Events ({fan['events'] / total:.1f} a pod).\n",
        f"Reading: the controller manager spent {cpu('controllers'):.1f} CPU s on {total} pods "
        f"({cpu('controllers') / total * 1000:.1f} ms a pod); the busiest process was the {busiest} "
        f"({cpu(busiest):.1f} s). Each pod costs the apiserver a create (ReplicaSet controller), a binding "
        "(scheduler), status writes (kubelet), Events, and its share of ReplicaSet/Deployment status writes, "
        f"each an etcd write and a NATS fan-out. Over the {fan['elapsed']:.1f} s fan-out the six processes used "
        f"{ours:.1f} CPU s, {100 * ours / (fan['elapsed'] * cores):.0f}% of the {cores} cores; "
        + ("so the run was CPU-bound on the shared cores, and the apiserver's write path (the largest consumer) "
           "sets the rate. " if ours > 0.75 * fan["elapsed"] * cores else
           "so the cores were not saturated by these processes alone: the rest of the time is pipeline latency "
           "between stages (ReplicaSet slow-start batches of 1, 2, 4, ..., queue hand-offs, watch delivery, "
           "status-sync of the Deployment after its pods turn Ready) and any other load on the machine (see the "
           "load average). ")
        + "Beside the published anchor, k0s' controller memory — 510 MB at 1 node, 2.3 GB at 100 nodes with "
        f"10,000 pods — the controller manager here held {fan['after']['controllers']['rss']:.0f} MiB (peak "
        f"{roll['after']['controllers']['hwm']:.0f} MiB) with {pods_total} pods on {nodes} nodes, and the whole "
        f"control plane (controller manager, apiserver, scheduler, etcd, nats-server) {plane:.0f} MiB. A k0s "
        "'controller' is its control-plane node, so the second figure is the closer comparison; this run has a "
        "tenth of those pods, so compare magnitudes, not like for like.",
    ]
    metrics = {"nodes": nodes, "pods": total, "fanout_s": fan["elapsed"], "pods_per_s": total / fan["elapsed"],
               "rollout_s": roll["elapsed"], "controllers_rss_mib": fan["after"]["controllers"]["rss"],
               "controllers_ms_per_pod": cpu("controllers") / total * 1000, "plane_rss_mib": plane}
    return {"section": "\n".join(lines), "metrics": metrics}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="30 nodes, 20 Deployments x 10, a 30-replica rollout")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--deployments", type=int)
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--rollout-replicas", type=int)
    ap.add_argument("--timeout", type=float, default=420.0)
    a = ap.parse_args()
    r = asyncio.run(step(a.quick, a.nodes, a.deployments, a.replicas, a.rollout_replicas, a.timeout))
    finish("controllers", r["section"], r["metrics"])
    print(r["section"])
