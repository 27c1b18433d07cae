"""API server benchmark: pod creates against raw etcd puts, LIST of 10,000 pods, event latency.

Run: `.venv/bin/python -m bench.api` (about 2 minutes). Starts its own etcd, nats-server and
apiserver on free ports, measures, and rewrites the `api` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import grpc
import httpx
import orjson
from pyetcd.etcdrpc import rpc_pb2, rpc_pb2_grpc

from bench.httpload import Conn
from bench.report import machine, median, pct, progress, write_section
from shared.bus import Bus, Message
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


async def api_creates(url: str, ns: str, clients: int, seconds: float) -> tuple[float, list[float], int]:
    """Pod creates from `clients` keep-alive connections (a lean asyncio HTTP client)."""
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        conn = Conn(url)
        n = 0
        try:
            while time.perf_counter() < stop:
                n += 1
                body = orjson.dumps(dict(POD, metadata={"name": f"c{clients}-{i}-{n}", "labels": {"app": "bench"}}))
                t = time.perf_counter()
                status, _ = await conn.request("POST", f"/api/v1/namespaces/{ns}/pods", body)
                lat.append(time.perf_counter() - t)
                if status != 201:
                    errors += 1
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    return len(lat) / elapsed, lat, errors


async def fill(url: str, ns: str, count: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
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
                if done % 2000 == 0:
                    progress(f"  created {done}/{count} pods")
        await asyncio.gather(*(one(i) for i in range(count)))


async def list_times(url: str, ns: str, runs: int = 5) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for _ in range(runs):
            t = time.perf_counter()
            r = await client.get(f"/api/v1/namespaces/{ns}/pods")
            n = len(r.json()["items"])
            out.append(time.perf_counter() - t)
        assert n >= 10000, n
    return out


async def event_latency(cluster: Cluster, count: int) -> tuple[list[float], list[float]]:
    """Seconds from request start (upper bound of commit) and from response to the subscriber's handler."""
    bus = Bus(cluster.nats.url, "bench")
    await bus.connect()
    seen: dict[str, float] = {}

    async def handler(m: Message) -> None:
        name = orjson.loads(m.data)["object"]["metadata"]["name"]
        seen.setdefault(name, time.perf_counter())

    await bus.subscribe("kube.events.core.configmaps.bench-ev.>", handler)
    await bus.flush()
    starts: dict[str, tuple[float, float]] = {}
    async with httpx.AsyncClient(base_url=cluster.apiserver.url, timeout=30) as client:
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


async def main(seconds: float, list_size: int) -> None:
    c = Cluster().start()
    rows = []
    try:
        for clients in (1, 10, 50):
            progress(f"raw etcd puts, {clients} clients")
            raw_tput, raw_lat = await raw_etcd(c.etcd.url, clients, seconds)
            progress(f"API pod creates, {clients} clients")
            ns = f"bench-{clients}"
            async with httpx.AsyncClient(base_url=c.apiserver.url) as client:
                await client.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            assert c.apiserver.p is not None and c.etcd.p is not None
            a0, e0 = cpu_seconds(c.apiserver.p.pid), cpu_seconds(c.etcd.p.pid)
            tput, lat, errs = await api_creates(c.apiserver.url, ns, clients, seconds)
            n = max(1, len(lat))
            cpu = ((cpu_seconds(c.apiserver.p.pid) - a0) / n, (cpu_seconds(c.etcd.p.pid) - e0) / n)
            rows.append((clients, raw_tput, raw_lat, tput, lat, errs, cpu))
            progress(f"  raw {raw_tput:.0f}/s, api {tput:.0f}/s p99 {ms(pct(lat, 99))} ms")
        progress(f"creating {list_size} pods for LIST")
        await fill(c.apiserver.url, "bench-list", list_size)
        lists = await list_times(c.apiserver.url, "bench-list")
        progress(f"  LIST median {median(lists):.3f}s")
        progress("event latency")
        ev_start, ev_resp = await event_latency(c, 500)
    finally:
        c.stop()

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
    lines += ["", f"What bounds it: one apiserver process spends {top_cpu * 1000:.2f} ms of CPU per create at "
              f"{rows[-1][0]} clients (HTTP parsing, schema check, defaulting, validation, JSON, the etcd gRPC "
              f"call, and publishing the event to NATS from the etcd watch), so it saturates one core at about "
              f"{1 / top_cpu:.0f} creates/s; beyond that, added clients only queue, which is the p99. Raw etcd "
              f"puts use both cores of this 2-core machine. Targets (>= 0.5 of raw at 50 clients, p99 < 50 ms) "
              f"need either less CPU per request or several apiserver processes (the design allows replicas: "
              f"they publish with the same Nats-Msg-Id and JetStream drops duplicates)."]
    lines += ["", f"LIST of {list_size} pods (one namespace, full JSON): median {median(lists):.3f} s, "
                  f"max {max(lists):.3f} s over {len(lists)} runs (target < 1 s).", "",
              f"Event latency, commit to a NATS subscriber's handler ({len(ev_start)} sequential writes): "
              f"from request start p50 {ms(median(ev_start))} ms, p99 {ms(pct(ev_start, 99))} ms; "
              f"after the HTTP response p50 {ms(median(ev_resp))} ms, p99 {ms(pct(ev_resp, 99))} ms (target p99 < 20 ms)."]
    write_section("api", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--list-size", type=int, default=10000)
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.list_size))
