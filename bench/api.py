"""API server benchmark: pod creates against raw etcd puts, LIST of 10,000 pods, event latency.

Why this exists: the API write path (HTTP, validation, etcd transaction, NATS publish) is the cost
every component pays; it is measured beside its raw building blocks in the same run: etcd puts of
a same-sized value from the same kind of asyncio client, and NATS publish-to-receive (core and
JetStream) of a same-sized message beside the API's commit-to-subscriber event delivery.

Run: `.venv/bin/python -m bench.api [--quick]` (about 2 minutes), or the `api` step of
`python -m bench`. Starts its own etcd, nats-server and apiserver on free ports, measures, and
rewrites the `api` section of docs/benchmarks.md with a latency CDF and throughput against clients.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import grpc
import httpx
import orjson
from pyetcd.etcdrpc import rpc_pb2, rpc_pb2_grpc

from bench import plots
from bench.common import conn, http_kwargs, proc_stats
from bench.report import finish, machine, median, pct, progress
from shared.bus import Bus, BusOptions, Message
from tests.servers import Cluster

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "", "labels": {"app": "bench"}},
       "spec": {"containers": [{"name": "main", "image": "busybox:1.35", "ports": [{"containerPort": 80}],
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}


async def raw_etcd(url: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    """Puts of a pod-sized value through one asyncio gRPC channel, `clients` in flight."""
    channel = grpc.aio.insecure_channel(url.removeprefix("http://"))
    kv = rpc_pb2_grpc.KVStub(channel)
    value = orjson.dumps(POD) * 2
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            n += 1
            t = time.perf_counter()
            await kv.Put(rpc_pb2.PutRequest(key=f"/bench/raw/{clients}/{i}/{n}".encode(), value=value))
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    await channel.close(None)
    return len(lat) / elapsed, lat


async def api_creates(c: Cluster, ns: str, clients: int, seconds: float) -> tuple[float, list[float], int]:
    """Pod creates from `clients` keep-alive connections (a lean asyncio HTTP client)."""
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        cn = conn(c)
        n = 0
        try:
            while time.perf_counter() < stop:
                n += 1
                body = orjson.dumps(dict(POD, metadata={"name": f"c{clients}-{i}-{n}", "labels": {"app": "bench"}}))
                t = time.perf_counter()
                status, _ = await cn.request("POST", f"/api/v1/namespaces/{ns}/pods", body)
                lat.append(time.perf_counter() - t)
                if status != 201:
                    errors += 1
        finally:
            await cn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    return len(lat) / elapsed, lat, errors


async def fill(c: Cluster, ns: str, count: int) -> None:
    async with httpx.AsyncClient(**http_kwargs(c, timeout=60)) as client:
        await client.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
        sem = asyncio.Semaphore(32)
        done = 0

        async def one(i: int) -> None:
            nonlocal done
            async with sem:
                body = dict(POD, metadata={"name": f"l-{i:05d}", "labels": {"app": "bench"}})
                r = await client.post(f"/api/v1/namespaces/{ns}/pods", json=body)
                assert r.status_code == 201, r.text
                done += 1
                if done % 2000 == 0 or done == count:
                    progress(f"  created {done}/{count} pods")
        await asyncio.gather(*(one(i) for i in range(count)))


async def list_times(c: Cluster, ns: str, size: int, runs: int = 5) -> list[float]:
    out = []
    async with httpx.AsyncClient(**http_kwargs(c, timeout=120)) as client:
        for _ in range(runs):
            t = time.perf_counter()
            r = await client.get(f"/api/v1/namespaces/{ns}/pods")
            n = len(r.json()["items"])
            out.append(time.perf_counter() - t)
        assert n >= size, n
    return out


async def event_latency(cluster: Cluster, count: int) -> tuple[list[float], list[float]]:
    """Seconds from request start (upper bound of commit) and from response to the subscriber's handler."""
    bus = Bus(cluster.nats.url, "bench", bus_options(cluster, "admin"))
    await bus.connect()
    seen: dict[str, float] = {}

    async def handler(m: Message) -> None:
        name = orjson.loads(m.data)["object"]["metadata"]["name"]
        seen.setdefault(name, time.perf_counter())

    await bus.subscribe("kube.events.core.configmaps.bench-ev.>", handler)
    await bus.flush()
    starts: dict[str, tuple[float, float]] = {}
    async with httpx.AsyncClient(**http_kwargs(cluster, timeout=30)) as client:
        await client.post("/api/v1/namespaces", json={"metadata": {"name": "bench-ev"}})
        for i in range(count):
            name = f"e{i}"
            t = time.perf_counter()
            await client.post("/api/v1/namespaces/bench-ev/configmaps", json={"metadata": {"name": name}})
            starts[name] = (t, time.perf_counter())
            await asyncio.sleep(0.01)
    deadline = time.perf_counter() + 10
    while len(seen) < count and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await bus.close()
    from_start = [seen[n] - s for n, (s, _e) in starts.items() if n in seen]
    from_resp = [max(0.0, seen[n] - e) for n, (_s, e) in starts.items() if n in seen]
    return from_start, from_resp


def bus_options(c: Cluster, user: str) -> BusOptions | None:
    make = getattr(c, "bus_options", None)  # NATS users arrive with the cluster's authentication
    return make(user) if make is not None else None


async def raw_nats(c: Cluster, count: int, jetstream: bool) -> list[float]:
    """Publish-to-receive of an event-sized message, 10 ms apart, from a second connection: core NATS, or a
    JetStream publish into the cluster's own KUBE stream (`kube.control.` subjects) that waits for the
    stream's ack, as the apiserver's publisher does. Connections are shared.bus's (credentials, TLS);
    the publishing and receiving are nats-py's own calls."""
    pub, sub = Bus(c.nats.url, "bench-raw-pub", bus_options(c, "apiserver")), Bus(c.nats.url, "bench-raw-sub",
                                                                                 bus_options(c, "admin"))
    await pub.connect()
    await sub.connect()
    seen: dict[int, float] = {}
    subject = "kube.control.bench-raw." + ("js" if jetstream else "core")

    async def handler(m: Any) -> None:
        seen.setdefault(int(m.headers["n"]), time.perf_counter())

    await sub.nc.subscribe(subject, cb=handler)
    await sub.nc.flush()
    js = pub.nc.jetstream()
    payload = orjson.dumps({"type": "ADDED", "object": POD}) * 2
    sent: dict[int, float] = {}
    for i in range(count):
        sent[i] = time.perf_counter()
        if jetstream:
            await js.publish(subject, payload, headers={"n": str(i)})
        else:
            await pub.nc.publish(subject, payload, headers={"n": str(i)})
            await pub.nc.flush()
        await asyncio.sleep(0.01)
    deadline = time.perf_counter() + 5
    while len(seen) < count and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await pub.close()
    await sub.close()
    return [seen[i] - t for i, t in sent.items() if i in seen]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (apiserver workers), from /proc."""
    return proc_stats(pid)["cpu"]


def what_bounds(cpu_per_create: float, clients: int) -> str:
    workers = 1
    args = os.environ.get("KUBENATS_APISERVER_ARGS", "").split()
    if "--workers" in args:
        workers = int(args[args.index("--workers") + 1])
    who = "one apiserver process" if workers == 1 else f"the apiserver ({workers} worker processes)"
    return (f"What bounds it: {who} spends {cpu_per_create * 1000:.2f} ms of CPU per create at {clients} clients "
            f"(TLS, HTTP parsing, authentication and authorization, schema check, defaulting, validation, JSON, the "
            f"etcd gRPC call, and publishing the event to NATS from the etcd watch). On this 2-core machine the "
            f"apiserver, etcd, nats-server and the load generator share two cores: by Little's law 50 clients at "
            f"X creates/s wait 50/X s on average, so p99 < 50 ms needs well over 1,000 creates/s with little "
            f"variance, more than two shared cores give. `--workers` (SO_REUSEPORT) spreads the apiserver over "
            f"cores; this run used {workers}.")


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


async def step(quick: bool = False, seconds: float | None = None, list_size: int | None = None) -> dict[str, Any]:
    seconds = seconds or (2.0 if quick else 8.0)
    list_size = list_size or (2000 if quick else 10000)
    levels = (1, 10, 50)
    events = 200 if quick else 500
    c = Cluster().start()
    rows = []
    try:
        for clients in levels:
            progress(f"raw etcd puts, {clients} clients")
            raw_tput, raw_lat = await raw_etcd(c.etcd.url, clients, seconds)
            progress(f"API pod creates, {clients} clients")
            ns = f"bench-{clients}"
            async with httpx.AsyncClient(**http_kwargs(c)) as client:
                await client.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            assert c.apiserver.p is not None and c.etcd.p is not None
            a0, e0 = cpu_seconds(c.apiserver.p.pid), cpu_seconds(c.etcd.p.pid)
            tput, lat, errs = await api_creates(c, ns, clients, seconds)
            n = max(1, len(lat))
            cpu = ((cpu_seconds(c.apiserver.p.pid) - a0) / n, (cpu_seconds(c.etcd.p.pid) - e0) / n)
            rows.append((clients, raw_tput, raw_lat, tput, lat, errs, cpu))
            progress(f"  raw {raw_tput:.0f}/s, api {tput:.0f}/s p99 {ms(pct(lat, 99))} ms")
        progress(f"creating {list_size} pods for LIST")
        await fill(c, "bench-list", list_size)
        lists = await list_times(c, "bench-list", list_size)
        progress(f"  LIST median {median(lists):.3f}s")
        progress("event latency through the API, then raw NATS publish-to-receive (core, JetStream)")
        ev_start, ev_resp = await event_latency(c, events)
        raw_core = await raw_nats(c, events, jetstream=False)
        raw_js = await raw_nats(c, events, jetstream=True)
        progress(f"  event p50 {ms(median(ev_start))} ms; raw NATS core {ms(median(raw_core))} ms, "
                 f"JetStream {ms(median(raw_js))} ms")
    finally:
        c.stop()

    fig_cdf = plots.cdf("api_write_latency.png", "Pod create latency through the API vs raw etcd put, by clients",
                        {label: v for cl, _, rl, _, lat, _, _ in rows
                         for label, v in ((f"API, {cl} clients", lat), (f"raw etcd, {cl} clients", rl))},
                        paired=True)
    fig_tput = plots.lines("api_throughput.png", "Throughput against concurrency", [r[0] for r in rows],
                           {"API pod creates/s": [r[3] for r in rows], "raw etcd puts/s": [r[1] for r in rows]},
                           "concurrent clients", "operations/s", logx=True)
    fig_ev = plots.cdf("event_latency.png", "Event delivery: API write to NATS subscriber vs raw NATS",
                       {"API: request start → subscriber": ev_start, "API: response → subscriber": ev_resp,
                        "raw NATS core publish → receive": raw_core, "raw JetStream publish → receive": raw_js})
    lines = [f"## API server — `python -m bench.api`\n\n{machine()}\n",
             "Pod creates through the API (JSON POST, validation, defaulting, etcd txn) against raw etcd puts "
             "of a same-sized value from the same kind of asyncio client, in the same run. Each level runs "
             f"{seconds:.0f} s.\n",
             "| clients | raw etcd puts/s | API creates/s | ratio | API p50 ms | API p99 ms | raw p99 ms | errors "
             "| apiserver CPU ms/create | etcd CPU ms/create |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for clients, raw_tput, raw_lat, tput, lat, errs, cpu in rows:
        lines.append(f"| {clients} | {raw_tput:.0f} | {tput:.0f} | {tput / raw_tput:.2f} | {ms(median(lat))} | "
                     f"{ms(pct(lat, 99))} | {ms(pct(raw_lat, 99))} | {errs} | {cpu[0] * 1000:.2f} | {cpu[1] * 1000:.2f} |")
    top_cpu = rows[-1][6][0]
    lines += ["", fig_tput, "", fig_cdf, "",
              what_bounds(top_cpu, rows[-1][0])]
    lines += ["", f"LIST of {list_size} pods (one namespace, full JSON): median {median(lists):.3f} s, "
                  f"max {max(lists):.3f} s over {len(lists)} runs (target < 1 s).", "",
              f"Event delivery ({len(ev_start)} sequential ConfigMap writes, 10 ms apart, a NATS subscriber on "
              "`kube.events.core.configmaps.<ns>.>`), beside raw NATS publish-to-receive of an event-sized "
              "message from a second connection in the same run:\n",
              "| path | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|",
              *(f"| {label} | {ms(median(v))} | {ms(pct(v, 99))} | {ms(max(v, default=float('nan')))} |"
                for label, v in (("API: write request start → subscriber (HTTP + etcd + watch + JetStream)", ev_start),
                                 ("API: write response → subscriber", ev_resp),
                                 ("raw NATS: core publish → receive", raw_core),
                                 ("raw NATS: JetStream publish (acked) → receive", raw_js))),
              "", fig_ev, "",
              f"The API's write-request-to-subscriber path costs {median(ev_start) / max(median(raw_js), 1e-9):.1f}x a raw "
              f"JetStream publish at p50 (target: event p99 < 20 ms after commit: "
              f"{'met' if pct(ev_resp, 99) < 0.02 else 'not met'}, {ms(pct(ev_resp, 99))} ms after the response)."]
    metrics: dict[str, Any] = {"clients_max": levels[-1], "seconds": seconds, "list_size": list_size,
                               "list_median_s": median(lists),
                               "ev_p50_ms": median(ev_start) * 1000, "ev_p99_ms": pct(ev_start, 99) * 1000,
                               "ev_resp_p99_ms": pct(ev_resp, 99) * 1000,
                               "nats_p50_ms": median(raw_js) * 1000, "nats_p99_ms": pct(raw_js, 99) * 1000,
                               "nats_core_p50_ms": median(raw_core) * 1000, "nats_core_p99_ms": pct(raw_core, 99) * 1000}
    for clients, raw_tput, raw_lat, tput, lat, errs, cpu in rows:
        metrics.update({f"c{clients}_api_rps": tput, f"c{clients}_raw_rps": raw_tput,
                        f"c{clients}_api_p50_ms": median(lat) * 1000, f"c{clients}_api_p99_ms": pct(lat, 99) * 1000,
                        f"c{clients}_raw_p99_ms": pct(raw_lat, 99) * 1000, f"c{clients}_errors": errs,
                        f"c{clients}_apiserver_cpu_ms": cpu[0] * 1000})
    return {"section": "\n".join(lines), "metrics": metrics}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--list-size", type=int)
    a = ap.parse_args()
    r = asyncio.run(step(a.quick, a.seconds, a.list_size))
    finish("api", r["section"], r["metrics"])
    print(r["section"])
