"""Scale run: 1,000 hollow nodes and 30,000 pods from 300 Deployments x 100 replicas, on one machine.

Why this exists: the per-component benchmarks say how fast each piece is; this says whether the
whole control plane holds together at cluster size, and what it costs. etcd, nats-server, the
apiserver, the hollow kubelets, `kubenats scheduler` and `kubenats controllers` run as child
processes; once every Node is Ready, the Deployments are created and the run lasts until every
replica is available (or `--timeout`). The hollow nodes are split kubemark-style over
`--kubelet-procs` P processes (default 4 from 200 nodes, else 1): process j runs
`kubenats kubelet --runtime hollow --hollow-nodes N/P --hollow-first-index K_j --hollow-pod-cidr <j-th
slice of 127.64.0.0/10>`, because one process of 1,000 nodes was CPU-bound and renewed its leases
late. Measured meanwhile:

- pods created / available over time (the Deployments' status, polled every 2 s), time to all
  Running (confirmed by a paged LIST at the end), pods/s;
- RSS (VmRSS, peak also VmHWM) and CPU seconds (utime + stime) of every process (each kubelet
  process `kubelet-<j>`), sampled every 1 s; the kubelets' `fleet_stats` (lease renewals, late ones,
  event-loop lag) summed over the processes;
- etcd's db size (`etcd_mvcc_db_total_size_in_bytes`) and the JetStream store (monitoring /jsz);
- usability: the real `kubectl get pods -A --chunk-size=500` (the cluster's admin kubeconfig) run
  again and again while pods are created (duration, success, rows), and a loop of ConfigMap creates
  and updates (2 mutating calls every 0.25 s) whose latencies are the API's p50/p99 under load;
- with `--profile`, `py-spy record --format raw` on the apiserver, scheduler, controllers and the
  hollow kubelet process 0 (bench/profile.py): top functions by own time in the doc, raw stacks under
  docs/bench/profiles/.

Run: `.venv/bin/python -m bench.scale [--nodes 1000 --deployments 300 --replicas 100] [--kubelet-procs 4]
[--profile]` or as the `scale` step of `python -m bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import plots
from bench.common import Sampler, component, conn, deployment, http_kwargs, wait_nodes
from bench.profile import Profiler
from bench.report import finish, machine, median, pct, progress
from services.kubelet.hollow import SHARED_POD_CIDR
from shared.bus import Bus, Message
from tests.servers import Cluster, Proc

NS = "scale"
DEPLOYS = f"/apis/apps/v1/namespaces/{NS}/deployments"
CONTROL_PLANE = ("apiserver", "scheduler", "controllers")


class Background:
    """A loop that runs beside the scale run (`_run(t0)`) until stopped."""

    task: asyncio.Task[None] | None = None

    async def _run(self, t0: float) -> None:
        raise NotImplementedError

    def start(self, t0: float) -> None:
        self.task = asyncio.create_task(self._run(t0))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class Probe(Background):
    """ConfigMap create + update every `period` s: the latency of mutating calls while the run goes on, and
    how long each write takes to reach a NATS subscriber (what every informer waits for) under that load."""

    def __init__(self, c: Cluster, period: float = 0.25) -> None:
        self.c, self.period = c, period
        self.samples: list[tuple[float, float, bool]] = []  # (t, seconds, ok)
        self.sent: dict[str, float] = {}  # "name/rv-less op" -> perf_counter at request start
        self.delivery: list[tuple[float, float]] = []  # (t, seconds from request start to the subscriber)
        self.task: asyncio.Task[None] | None = None
        self._t0 = 0.0

    def _on_event(self, msg: Message) -> None:
        obj = (orjson.loads(msg.data).get("object") or {})
        key = f"{(obj.get('metadata') or {}).get('name')}/{(obj.get('data') or {}).get('v')}"
        start = self.sent.pop(key, None)
        if start is not None:
            now = time.perf_counter()
            self.delivery.append((now - self._t0, now - start))

    async def _run(self, t0: float) -> None:
        self._t0 = t0
        cn = conn(self.c)
        bus = Bus(self.c.nats.url, "bench-scale-probe", self.c.bus_options("admin"))
        await bus.connect()

        async def handler(msg: Message) -> None:
            self._on_event(msg)
        await bus.subscribe(f"kube.events.core.configmaps.{NS}.>", handler)
        i = 0
        try:
            while True:
                i += 1
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"probe-{i}"}, "data": {"v": "1"}}
                t = time.perf_counter()
                self.sent[f"probe-{i}/1"] = t
                status, data = await cn.request("POST", f"/api/v1/namespaces/{NS}/configmaps", orjson.dumps(body))
                self.samples.append((t - t0, time.perf_counter() - t, status == 201))
                if status == 201:
                    obj = orjson.loads(data)
                    obj["data"] = {"v": "2"}
                    t = time.perf_counter()
                    self.sent[f"probe-{i}/2"] = t
                    status, _ = await cn.request("PUT", f"/api/v1/namespaces/{NS}/configmaps/probe-{i}",
                                                 orjson.dumps(obj))
                    self.samples.append((t - t0, time.perf_counter() - t, status == 200))
                await asyncio.sleep(self.period)
        finally:
            await cn.close()
            await bus.close()


class PodWatch(Background):
    """One `?watch=true` on the namespace's pods (lean client): when each pod was first seen, and first seen
    Running. Deployment status lags the pods while the controllers are busy, so this is the pods' own clock."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.seen: dict[bytes, float] = {}
        self.running: dict[bytes, float] = {}
        self.task: asyncio.Task[None] | None = None
        self.error = ""

    async def _run(self, t0: float) -> None:
        cn = conn(self.c)
        try:
            _, data = await cn.request("GET", f"/api/v1/namespaces/{NS}/pods?limit=1")
            rv = orjson.loads(data)["metadata"]["resourceVersion"]
            await cn.open()
            assert cn.writer is not None and cn.reader is not None
            cn.writer.write(f"GET /api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=7200 "
                            f"HTTP/1.1\r\nHost: {cn.host}\r\nAccept: application/json\r\n{cn.extra}\r\n".encode())
            reader = cn.reader
            if b" 200 " not in await reader.readline():
                raise RuntimeError("watch refused")
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            buf = b""
            while True:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    break
                buf += (await reader.readexactly(size + 2))[:-2]
                *lines, buf = buf.split(b"\n")
                now = time.perf_counter() - t0
                for line in lines:
                    if not line.strip():
                        continue
                    ev = orjson.loads(line)
                    obj = ev.get("object") or {}
                    name = (obj.get("metadata") or {}).get("name", "").encode()
                    if ev.get("type") == "DELETED" or not name:
                        continue
                    self.seen.setdefault(name, now)
                    if (obj.get("status") or {}).get("phase") == "Running":
                        self.running.setdefault(name, now)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            progress(f"  pod watch ended: {self.error}")
        finally:
            await cn.close()



class KubectlLoop(Background):
    """The real `kubectl get pods -A --chunk-size=500`, again and again, `gap` s apart."""

    def __init__(self, kubeconfig: str, gap: float = 15.0) -> None:
        self.kubeconfig, self.gap = kubeconfig, gap
        self.home = tempfile.mkdtemp(prefix="kubenats-bench-kubectl-")
        self.runs: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None

    async def once(self, t0: float) -> dict[str, Any]:
        env = {**os.environ, "HOME": self.home, "KUBECONFIG": self.kubeconfig}
        t = time.perf_counter()
        p = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", self.kubeconfig, "get", "pods", "-A", "--chunk-size=500", "--no-headers",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await p.communicate()
        run = {"t": t - t0, "s": time.perf_counter() - t, "ok": p.returncode == 0, "rows": out.count(b"\n"),
               "err": err.decode(errors="replace").strip()[:200]}
        self.runs.append(run)
        return run

    async def _run(self, t0: float) -> None:
        while True:
            run = await self.once(t0)
            progress(f"  kubectl get pods -A: {run['rows']} rows in {run['s']:.1f} s"
                     + ("" if run["ok"] else f" FAILED: {run['err']}"))
            await asyncio.sleep(self.gap)



async def store_sizes(c: Cluster) -> dict[str, float]:
    out: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=10) as h:
        try:
            for line in (await h.get(f"{c.etcd.url}/metrics")).text.splitlines():
                if line.startswith("etcd_mvcc_db_total_size_in_bytes "):
                    out["etcd_db_bytes"] = float(line.split()[1])
                elif line.startswith("etcd_mvcc_db_total_size_in_use_in_bytes "):
                    out["etcd_db_in_use_bytes"] = float(line.split()[1])
        except httpx.HTTPError:
            pass
        try:
            jsz = (await h.get(f"http://127.0.0.1:{c.nats.monitor}/jsz")).json()
            out["js_bytes"], out["js_messages"] = float(jsz.get("bytes", 0)), float(jsz.get("messages", 0))
        except (httpx.HTTPError, ValueError):
            pass
    return out


async def count_running(c: Cluster) -> tuple[int, int]:
    """(pods, Running pods) in the namespace by a paged LIST."""
    cn = conn(c)
    total = running = 0
    token = ""
    try:
        while True:
            path = f"/api/v1/namespaces/{NS}/pods?limit=500" + (f"&continue={token}" if token else "")
            _, data = await cn.request("GET", path)
            page = orjson.loads(data)
            for p in page["items"]:
                if not p["metadata"]["name"].startswith("d"):
                    continue
                total += 1
                running += (p.get("status") or {}).get("phase") == "Running"
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return total, running
    finally:
        await cn.close()


def records(log: Path, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event name from a component's log."""
    out = []
    try:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"event":"{name}"' in line:
                out.append(orjson.loads(line))
    except (OSError, orjson.JSONDecodeError):
        pass
    return out


def taint_summary(log: Path) -> dict[str, Any]:
    """What the node lifecycle controller did: taint changes by taint, nodes it saw go silent and for how long,
    and when (UTC) the first and last of these happened."""
    changes = records(log, "node_taints_updated")
    unknown = records(log, "node_status_unknown")
    added: dict[str, int] = {}
    for r in changes:
        for t in r.get("added") or ():
            added[t] = added.get(t, 0) + 1
    times = sorted(str(r.get("ts", ""))[11:19] for r in (*changes, *unknown))
    return {"taints": len(changes), "taints_added": added, "nodes_unknown": len(unknown),
            "max_silent_s": max((float(r.get("silent_for_s") or 0) for r in unknown), default=0.0),
            "taint_times": f"{times[0]}-{times[-1]} UTC" if times else ""}


def last_record(log: Path, name: str) -> dict[str, Any]:
    recs = records(log, name)
    return recs[-1] if recs else {}


def kubelet_split(nodes: int, procs: int) -> list[tuple[int, int, str]]:
    """(first node index, node count, pod CIDR) of each kubelet process: nodes as even as can be,
    and each process its own slice of 127.64.0.0/10 (pod IP pools live in the process, so only
    disjoint ranges keep pod IPs unique; 4 processes get a /12, a million addresses, each)."""
    procs = max(1, min(procs, nodes))
    size, extra = divmod(nodes, procs)
    cidrs = ipaddress.IPv4Network(SHARED_POD_CIDR).subnets(prefixlen_diff=(procs - 1).bit_length())
    out, first = [], 0
    for j, cidr in zip(range(procs), cidrs, strict=False):
        n = size + (j < extra)
        out.append((first, n, str(cidr)))
        first += n
    return out


SUMMED = ("nodes", "renewals", "renew_failures", "late_renewals", "status_posts", "status_writes", "pods",
          "pleg_lists", "pleg_reuses")


def fleet_totals(logs: list[Path]) -> dict[str, Any]:
    """The kubelet processes' `fleet_stats`: counters of each one's last line summed, the longest
    renewal gap and event-loop lag (the lag is per minute: the worst line of any process)."""
    out: dict[str, Any] = {}
    for log in logs:
        recs = records(log, "fleet_stats")
        if not recs:
            continue
        last = recs[-1]
        out["procs"] = out.get("procs", 0) + 1
        for k in SUMMED:
            out[k] = out.get(k, 0) + (last.get(k) or 0)
        out["max_renew_gap_s"] = max(out.get("max_renew_gap_s", 0.0), last.get("max_renew_gap_s") or 0.0)
        out["max_loop_lag_s"] = max(out.get("max_loop_lag_s", 0.0),
                                    *(r.get("max_loop_lag_s") or 0.0 for r in recs))
    return out


async def step(quick: bool = False, nodes: int | None = None, deployments: int | None = None,
               replicas: int | None = None, profile: bool = False, timeout: float | None = None,
               kubelet_procs: int | None = None) -> dict[str, Any]:
    nodes = nodes or (100 if quick else 1000)
    deployments = deployments or (30 if quick else 300)
    replicas = replicas or (10 if quick else 100)
    timeout = timeout or (300.0 if quick else 1800.0)
    total = deployments * replicas
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    c = Cluster().start()
    split = kubelet_split(nodes, kubelet_procs or (4 if nodes >= 200 else 1))
    hollow = ["--runtime", "hollow", "--node-name", "hollow", "--root-dir", str(c.workdir / "kubelet-root"),
              "--address", "127.0.0.1", "--port", "0"]
    kubelets: dict[str, Proc] = (
        {"kubelet": component(c, "kubelet", *hollow, "--hollow-nodes", str(nodes))} if len(split) == 1 else
        {f"kubelet-{j}": component(c, "kubelet", *hollow, "--hollow-nodes", str(n), "--hollow-first-index", str(first),
                                   "--hollow-pod-cidr", cidr, tag=f"-{j}")
         for j, (first, n, cidr) in enumerate(split)})
    procs = {"apiserver": c.apiserver, "etcd": c.etcd, "nats-server": c.nats, **kubelets,
             "scheduler": component(c, "scheduler"), "controllers": component(c, "controllers")}
    profiler: Profiler | None = None
    load = [os.getloadavg()[0]]
    out: dict[str, Any] = {"nodes": nodes, "deployments": deployments, "replicas": replicas, "pods_target": total,
                           "kubelet_procs": len(split), "kubelet_sizes": [n for _, n, _ in split]}
    try:
        async with httpx.AsyncClient(**http_kwargs(c, timeout=60)) as api:
            progress(f"scale: starting {nodes} hollow nodes in {len(split)} kubelet process(es), the scheduler and "
                     "the controller manager")
            for k in (*kubelets, "scheduler", "controllers"):
                procs[k].start()
            out["nodes_ready_s"] = await wait_nodes(api, nodes, lambda: all(p.alive() for p in kubelets.values()), 600)
            progress(f"  {nodes} nodes Ready after {out['nodes_ready_s']:.1f} s")
            r = await api.post("/api/v1/namespaces", json={"metadata": {"name": NS}})
            assert r.status_code in (201, 409), r.text
            await asyncio.sleep(2.0)
            sampler = Sampler({k: p.p.pid for k, p in procs.items() if p.p}).start()
            if profile:
                profiler = Profiler({k: procs[k].p.pid for k in (*CONTROL_PLANE, next(iter(kubelets)))  # type: ignore[union-attr]
                                     if procs[k].p})
                profiler.start()
            t0 = time.perf_counter()
            probe, kubectl = Probe(c), KubectlLoop(str(c.kubeconfig()), gap=5.0 if quick else 15.0)
            watch = PodWatch(c)
            watch.start(t0)
            await asyncio.sleep(0.5)
            probe.start(t0)
            kubectl.start(t0)
            progress(f"scale: creating {deployments} Deployments x {replicas} replicas ({total} pods)")
            sem = asyncio.Semaphore(16)

            async def create(i: int) -> None:
                async with sem:
                    r = await api.post(DEPLOYS, json=deployment(f"d{i:03d}", replicas))
                    assert r.status_code == 201, r.text
            await asyncio.gather(*(create(i) for i in range(deployments)))
            out["deploys_created_s"] = time.perf_counter() - t0
            timeline: list[tuple[float, int, int, int, int]] = []  # t, status.replicas, available, pods, Running
            poll = conn(c)
            last_log, last_change = 0.0, time.perf_counter()
            best: tuple[int, ...] = (-1, -1, -1)
            while True:
                _, data = await poll.request("GET", DEPLOYS)
                items = orjson.loads(data)["items"]
                made = sum((d.get("status") or {}).get("replicas", 0) for d in items)
                avail = sum((d.get("status") or {}).get("availableReplicas", 0) for d in items)
                now = time.perf_counter() - t0
                pods, running = len(watch.seen), len(watch.running)
                timeline.append((now, made, avail, pods, running))
                if pods >= total:
                    out.setdefault("all_created_s", now)
                if running >= total:
                    out.setdefault("all_running_s", now)
                cur = (avail, pods, running)
                if any(x > y for x, y in zip(cur, best, strict=True)):
                    best, last_change = tuple(max(x, y) for x, y in zip(cur, best, strict=True)), time.perf_counter()
                if avail >= total and (running >= total or watch.error):
                    break
                if now > timeout or time.perf_counter() - last_change > 240:
                    progress(f"  stopping: {running}/{total} Running, {avail} available after {now:.0f} s")
                    break
                if time.perf_counter() - last_log > 10:
                    progress(f"  {now:6.0f} s: pods {pods}/{total} created, {running} Running ({running / now:.0f}/s); "
                             f"Deployments: {made} counted, {avail} available; load {os.getloadavg()[0]:.1f}")
                    load.append(os.getloadavg()[0])
                    last_log = time.perf_counter()
                await asyncio.sleep(2.0)
            await poll.close()
            out["elapsed_s"] = time.perf_counter() - t0
            out["deploy_available"] = timeline[-1][2]
            out["available"] = max(timeline[-1][4], min(timeline[-1][2], total))  # pods Running (watch)
            out["reached"] = out["available"] >= total
            out["running_s"] = out.get("all_running_s", out["elapsed_s"])
            out["watch_error"] = watch.error
            await watch.stop()
            await probe.stop()
            await kubectl.stop()
            if profiler is not None:
                profiler.stop()
            sampler.stop()
            load.append(os.getloadavg()[0])
            progress("scale: final checks (paged LIST, store sizes, one more kubectl)")
            out["pods_listed"], out["pods_running"] = await count_running(c)
            final_kubectl = await kubectl.once(t0)
            out.update(await store_sizes(c))
    finally:
        for k in ("controllers", "scheduler", *kubelets):
            procs[k].stop(20)
        out["fleet"] = fleet_totals([p.log for p in kubelets.values()])
        out.update(taint_summary(procs["controllers"].log))
        c.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    res = sampler.summary()
    out["procs"] = res
    out["cp_rss_peak_mib"] = sum(res[k]["rss_peak"] for k in CONTROL_PLANE)
    out["cp_rss_final_mib"] = sum(res[k]["rss_final"] for k in CONTROL_PLANE)
    out["kubelets_cpu_s"] = sum(res[k]["cpu"] for k in kubelets)
    out["kubelets_rss_peak_mib"] = sum(res[k]["rss_peak"] for k in kubelets)
    f = out["fleet"]
    out.update({f"fleet_{k}": f[k] for k in ("renewals", "late_renewals", "max_renew_gap_s", "max_loop_lag_s")
                if k in f})
    out["pods_per_s"] = out["available"] / out["running_s"]
    lat = [s for _, s, _ in probe.samples]
    out["probe_n"], out["probe_errors"] = len(lat), sum(1 for *_, ok in probe.samples if not ok)
    dl = [d for _, d in probe.delivery]
    out["delivery_n"], out["delivery_lost"] = len(dl), len(probe.sent)
    out["delivery_p50_ms"], out["delivery_p99_ms"], out["delivery_max_ms"] = (
        median(dl) * 1000, pct(dl, 99) * 1000, max(dl, default=float("nan")) * 1000)
    out["probe_p50_ms"], out["probe_p99_ms"], out["probe_max_ms"] = (
        median(lat) * 1000, pct(lat, 99) * 1000, max(lat, default=float("nan")) * 1000)
    during = [r for r in kubectl.runs if r is not final_kubectl]
    out["kubectl_runs"], out["kubectl_ok"] = len(during), sum(1 for r in during if r["ok"])
    out["kubectl_median_s"] = median([r["s"] for r in during])
    out["kubectl_max_s"] = max((r["s"] for r in during), default=float("nan"))
    out["kubectl_final_s"], out["kubectl_final_rows"] = final_kubectl["s"], final_kubectl["rows"]
    out["load"] = load
    body = render(out, timeline, sampler, probe, kubectl.runs, profiler)
    return {"section": body, "metrics": {k: v for k, v in out.items() if k not in ("procs", "fleet", "kubelet_sizes")} | {
        f"{k}_{m}": v for k, d in res.items() for m, v in d.items()}}


def render(o: dict[str, Any], timeline: list[tuple[float, int, int, int, int]], sampler: Sampler, probe: Probe,
           runs: list[dict[str, Any]], profiler: Profiler | None) -> str:
    ts = [t for t, *_ in timeline]
    fig1 = plots.timeline("scale_pods.png", f"{o['nodes']} hollow nodes: pods over time",
                          {"pods created (watch)": (ts, [x[3] for x in timeline]),
                           "pods Running (watch)": (ts, [x[4] for x in timeline]),
                           "Deployments' status.replicas": (ts, [x[1] for x in timeline]),
                           "Deployments' availableReplicas": (ts, [x[2] for x in timeline])}, "pods",
                          right={f"{k} RSS MiB": ([t for t, _ in sampler.timeline],
                                                  [s[k]["rss"] for _, s in sampler.timeline]) for k in CONTROL_PLANE},
                          right_label="RSS MiB")
    fig2 = plots.cdf("scale_api_latency.png", "Mutating API calls (ConfigMap create/update) during the scale run",
                     {"create + update under load": [s for _, s, _ in probe.samples],
                      "write request → NATS subscriber": [d for _, d in probe.delivery]})
    p = o["procs"]
    reached = (f"all {o['pods_target']:,} pods Running after **{o['running_s']:.0f} s** ({o['pods_per_s']:.0f} pods/s), "
               f"every Deployment available after {o['elapsed_s']:.0f} s"
               if o["reached"] else f"**not reached**: {o['available']:,} of {o['pods_target']:,} pods Running after "
               f"{o['elapsed_s']:.0f} s ({o['pods_per_s']:.0f} pods/s; Deployments reported {o['deploy_available']:,} "
               "available)")
    kubelets = [k for k in p if k == "kubelet" or k.startswith("kubelet-")]
    n_procs = int(o.get("kubelet_procs", 1))
    sizes = sorted(set(o.get("kubelet_sizes") or [o["nodes"]]))
    if n_procs == 1:
        kubelet_text = f"one `kubenats kubelet --runtime hollow --hollow-nodes {o['nodes']}` process"
    else:
        each = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}–{sizes[-1]:,}"
        kubelet_text = (f"{n_procs} `kubenats kubelet --runtime hollow` processes of {each} nodes each "
                        "(`--hollow-first-index` apart, each with its own pod IP range; `kubelet-<j>` below)")
    lines = [
        f"## Scale run: {o['nodes']:,} hollow nodes, {o['pods_target']:,} pods — `python -m bench.scale` (step `scale`)\n",
        "The target size is 1,000 nodes and 30,000 pods (300 Deployments x 100 replicas); `--quick` runs 100 x 30 x 10.\n"
        if o["pods_target"] < 30000 else "",
        f"{machine()}\n",
        f"etcd, nats-server, the apiserver, {kubelet_text} "
        "(pods Running at once on loopback IPs, no Docker; leases every 10 s), `kubenats scheduler` and "
        "`kubenats controllers` as child processes on this machine; all Nodes Ready "
        f"{o['nodes_ready_s']:.1f} s after start. Then {o['deployments']} Deployments x {o['replicas']} replicas "
        f"created by 16 clients (POSTs answered in {o['deploys_created_s']:.1f} s), their status polled every 2 s. "
        f"Pods are timed by one watch on the namespace (first seen, first seen Running). "
        f"Result: {reached}; all pods existed after {o.get('all_created_s', float('nan')):.0f} s. A paged LIST at the end found {o['pods_listed']:,} pods, "
        f"{o['pods_running']:,} Running. 1-minute load average during the run: "
        f"{', '.join(f'{x:.1f}' for x in o['load'][:1] + o['load'][1:-1][::max(1, len(o['load']) // 6)] + o['load'][-1:])}"
        f" (2 cores).\n",
        fig1, "",
        "| process | RSS start MiB | RSS peak MiB | RSS final MiB | CPU s | CPU % of one core |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {k} | {d['rss_start']:.0f} | {d['rss_peak']:.0f} | {d['rss_final']:.0f} | {d['cpu']:.0f} | "
          f"{100 * d['cpu'] / o['elapsed_s']:.0f} |" for k, d in p.items()),
        f"| **apiserver + scheduler + controllers** | | **{o['cp_rss_peak_mib']:.0f}** | "
        f"**{o['cp_rss_final_mib']:.0f}** | {sum(p[k]['cpu'] for k in CONTROL_PLANE):.0f} | |",
        *([f"| **hollow kubelets ({n_procs} processes)** | | {sum(p[k]['rss_peak'] for k in kubelets):.0f} | "
           f"{sum(p[k]['rss_final'] for k in kubelets):.0f} | {sum(p[k]['cpu'] for k in kubelets):.0f} | "
           f"{100 * sum(p[k]['cpu'] for k in kubelets) / o['elapsed_s']:.0f} |"] if len(kubelets) > 1 else []),
        "",
        f"Stores at the end: etcd db {o.get('etcd_db_bytes', float('nan')) / 2**20:.0f} MiB "
        f"(in use {o.get('etcd_db_in_use_bytes', float('nan')) / 2**20:.0f} MiB); JetStream "
        f"{o.get('js_bytes', float('nan')) / 2**20:.0f} MiB in {o.get('js_messages', 0):,.0f} messages.\n",
        "Usability during the run:\n",
        "| measure | value |", "|---|---:|",
        f"| mutating calls (ConfigMap create/update every 0.25 s): n / errors | {o['probe_n']} / {o['probe_errors']} |",
        f"| ↳ latency p50 / p99 / max | {o['probe_p50_ms']:.0f} / {o['probe_p99_ms']:.0f} / {o['probe_max_ms']:.0f} ms |",
        f"| ↳ write request → a NATS subscriber has the event (what informers wait for): p50 / p99 / max "
        f"(n, not seen) | {o['delivery_p50_ms']:.0f} / {o['delivery_p99_ms']:.0f} / {o['delivery_max_ms']:.0f} ms "
        f"({o['delivery_n']}, {o['delivery_lost']}) |",
        f"| real `kubectl get pods -A --chunk-size=500` while pods were created: runs ok / runs | "
        f"{o['kubectl_ok']} / {o['kubectl_runs']} |",
        f"| ↳ duration median / max | {o['kubectl_median_s']:.1f} / {o['kubectl_max_s']:.1f} s |",
        f"| ↳ at the end ({o['kubectl_final_rows']:,} rows) | {o['kubectl_final_s']:.1f} s |",
        "", fig2, "",
    ]
    f = o.get("fleet") or {}
    if f:
        whose = ("The hollow kubelet's own counters at the end (`fleet_stats`)" if n_procs == 1 else
                 f"The hollow kubelets' own counters at the end (`fleet_stats`, summed over the {f.get('procs', 0)} "
                 "processes; longest gap and lag: the worst of any)")
        lines += [f"{whose}: {f.get('pods', 0):,} pods' containers "
                  f"started, {f.get('status_writes', 0):,} pod status writes, {f.get('renewals', 0):,} lease renewals of "
                  f"which {f.get('late_renewals', 0):,} late (longest gap {f.get('max_renew_gap_s', 0):.0f} s; a lease "
                  f"expires after 40 s), event-loop lag up to {f.get('max_loop_lag_s', 0):.1f} s; the node lifecycle "
                  f"controller changed node taints {o.get('taints', 0):,} times"
                  + (f" (added: {', '.join(f'{k} x{v}' for k, v in o.get('taints_added', {}).items())}; "
                     f"{o.get('nodes_unknown', 0)} nodes marked Unknown, silent up to {o.get('max_silent_s', 0):.0f} s; "
                     f"{o.get('taint_times', '')})" if o.get("taints") else "")
                  + f". The PLEGs listed a runtime "
                  f"{f.get('pleg_lists', 0):,} times and found {f.get('pleg_reuses', 0):,} views unchanged "
                  "(not listed).\n"]
    bad = [r for r in runs if not r["ok"]]
    if bad:
        lines.append(f"kubectl failures: {bad[0]['err']}\n")
    if profiler is not None:
        lines += profiler.render()
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="100 nodes x 30 deployments x 10 replicas")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--deployments", type=int)
    ap.add_argument("--replicas", type=int)
    ap.add_argument("--timeout", type=float)
    ap.add_argument("--kubelet-procs", type=int,
                    help="hollow kubelet processes the nodes are split over (default 4 from 200 nodes, else 1)")
    ap.add_argument("--profile", action="store_true", help="py-spy the apiserver, scheduler, controllers and kubelet process 0")
    a = ap.parse_args()
    r = asyncio.run(step(a.quick, a.nodes, a.deployments, a.replicas, a.profile, a.timeout, a.kubelet_procs))
    finish("scale", r["section"], r["metrics"])
    print(r["section"])


if __name__ == "__main__":
    main()
