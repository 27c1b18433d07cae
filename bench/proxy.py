"""Proxy benchmark: traffic through a ClusterIP and a NodePort beside the same load straight to the
pod, and the cost of programming 1,000 Services x 10 endpoints.

Why this exists: Service traffic must cost next to nothing beside going straight to the pod (target
>= 0.95x), and programming a cluster's worth of Services must stay fast.

Run as root with Docker: `.venv/bin/python -m bench.proxy [--quick]` (about 3 minutes), or the
`proxy` step of `python -m bench`. Starts its own etcd,
nats-server and apiserver (service range 10.252.0.0/22), one busybox web container, and
`kubenats proxy` as a child process; measures with `wrk` (apt-get install -y wrk) and rewrites the
`proxy` section of docs/benchmarks.md.

Traffic goes only to this machine: the pod on the docker bridge, the node's own address and
service IPs that are routed `local` (checked before any load is sent). The 1,000 benchmark
Services point at fake endpoints on 127.x addresses and carry no traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import plots
from bench.common import component_argv, http_kwargs
from bench.report import finish, machine, median, progress
from services.proxy import dataplane, proxier
from tests.proxy.hostnet import (
    ProxyProcess,
    assert_local,
    ensure_image,
    node_ip,
    remove_containers,
    run_web,
    unique,
)
from tests.servers import Cluster

CIDR = "10.252.0.0/22"
TABLE = "kubenats_bench"
SCALE_TABLE = "kubenats_bench_scale"
NODE_PORT = 30080


# ---- traffic ----------------------------------------------------------------------------------
def wrk(url: str, seconds: float, connections: int, close: bool) -> dict[str, float]:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", url]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout

    def lat(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": lat("50%"), "p99": lat("99%"),
            "errors": float(sum(int(x) for x in errors.groups()) if errors else 0) + float(non2xx.group(1) if non2xx else 0)}


def traffic(targets: dict[str, str], seconds: float, rounds: int, connections: int) -> dict[str, list[dict[str, float]]]:
    """Alternate the targets round by round so that drift hits them all alike."""
    results: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
    for r in range(rounds):
        for name, url in targets.items():
            res = wrk(url, seconds, connections, close=True)
            results[name].append(res)
            progress(f"  round {r + 1} {name}: {res['rps']:.0f} req/s p99 {res['p99']:.2f} ms errors {res['errors']:.0f}")
    return results


def summarize(runs: list[dict[str, float]]) -> tuple[float, float, float, float, float]:
    """(best req/s, median req/s, median p50, median p99, errors)."""
    return (max(r["rps"] for r in runs), median([r["rps"] for r in runs]), median([r["p50"] for r in runs]),
            median([r["p99"] for r in runs]), sum(r["errors"] for r in runs))


# ---- scale ------------------------------------------------------------------------------------
def bench_objects(n: int, m: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    svcs, slices = [], []
    for i in range(n):
        name = f"s{i:04d}"
        svcs.append({"metadata": {"name": name}, "spec": {
            "type": "NodePort" if i % 2 == 0 else "ClusterIP", "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        slices.append({"metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
                       "addressType": "IPv4",
                       "endpoints": [{"addresses": [f"127.{1 + i // 250}.{i % 250}.{j + 1}"], "conditions": {"ready": True}}
                                     for j in range(m)],
                       "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    return svcs, slices


async def create_all(c: Cluster, ns: str, svcs: list[dict[str, Any]],
                     slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(**http_kwargs(c, timeout=60)) as client:
        await client.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
        sem = asyncio.Semaphore(16)
        made: list[dict[str, Any]] = []

        async def one(path: str, body: dict[str, Any]) -> None:
            async with sem:
                r = await client.post(path, json=body)
                assert r.status_code == 201, r.text
                if path.endswith("/services"):
                    made.append(r.json())

        await asyncio.gather(*(one(f"/api/v1/namespaces/{ns}/services", s) for s in svcs))
        await asyncio.gather(*(one(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", s) for s in slices))
        return made


def sync_events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"event":"sync"' in line:
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return out


def ts(event: dict[str, Any]) -> float:
    """Wall-clock seconds of a log line (`2026-01-01T12:00:00.123Z`, UTC)."""
    t = time.strptime(event["ts"][:19], "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) + float("0." + event["ts"][20:23])


async def wait_sync(log: Path, after: int, pred: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evs = sync_events(log)[after:]
        for ev in evs:
            if pred(ev):
                return ev
        await asyncio.sleep(0.1)
    raise TimeoutError("no matching sync in the proxy log")


async def dataplane_scale(n: int, m: int) -> dict[str, float]:
    """Pure build + `nft -f` into a table of its own, without the API (what one sync costs)."""
    cfg = proxier.ProxyConfig(service_cidr=CIDR, table=SCALE_TABLE, node_ips=(node_ip(),))
    svcs, slices = bench_objects(n, m)
    for i, s in enumerate(svcs):
        s["metadata"]["namespace"] = "scale"
        s["spec"]["clusterIP"] = f"10.252.{i // 250}.{i % 250 + 2}"
        if s["spec"]["type"] == "NodePort":
            s["spec"]["ports"][0]["nodePort"] = 30100 + i
    for sl in slices:
        sl["metadata"]["namespace"] = "scale"
    out: dict[str, float] = {}
    proxier._service_fragment.cache_clear()
    t = time.perf_counter()
    ports = proxier.service_ports(svcs, slices)
    rs = proxier.build(ports, cfg)
    text = proxier.full_transaction(rs)
    out["build_s"] = time.perf_counter() - t
    out["rules"], out["chains"], out["bytes"] = rs.rule_count(), len(rs.chains), len(text)
    try:
        t = time.perf_counter()
        await dataplane.nft_apply(text)
        out["full_empty_s"] = time.perf_counter() - t
        t = time.perf_counter()
        contents = await dataplane.nft_table_contents(SCALE_TABLE)
        await dataplane.nft_apply(proxier.full_transaction(rs, contents.chains, contents.sets))
        out["full_replace_s"] = time.perf_counter() - t
        slices[7]["endpoints"] = slices[7]["endpoints"][1:]  # one endpoint of one Service goes away
        t = time.perf_counter()
        rs2 = proxier.build(proxier.service_ports(svcs, slices), cfg)
        diff = proxier.diff_transaction(rs, rs2)
        out["change_build_s"] = time.perf_counter() - t
        t = time.perf_counter()
        await dataplane.nft_apply(diff)
        out["change_apply_s"] = time.perf_counter() - t
        out["change_bytes"] = len(diff)
    finally:
        await dataplane.nft_delete_table(SCALE_TABLE)
    # the iptables fallback at the same size (always a whole restore of our chains)
    if shutil.which("iptables-restore"):
        current = await dataplane.iptables_save("nat") + await dataplane.iptables_save("filter")
        ipt_text, _ = proxier.iptables_restore_text(ports, cfg, current)
        try:
            t = time.perf_counter()
            await dataplane.iptables_restore(ipt_text)
            out["ipt_full_s"] = time.perf_counter() - t
            t = time.perf_counter()
            current = await dataplane.iptables_save("nat") + await dataplane.iptables_save("filter")
            ipt_text, _ = proxier.iptables_restore_text(proxier.service_ports(svcs, slices), cfg, current)
            await dataplane.iptables_restore(ipt_text)
            out["ipt_change_s"] = time.perf_counter() - t
        finally:
            for table in ("nat", "filter"):
                text = proxier.iptables_cleanup_text(table, await dataplane.iptables_save(table))
                if text:
                    await dataplane.iptables_restore(text)
    return out


# ---- main -------------------------------------------------------------------------------------
def proxy_process(c: Cluster) -> ProxyProcess:
    """tests/proxy/hostnet.py's process wrapper, pointed at the cluster with the proxy's own identity."""
    p = ProxyProcess("", "", CIDR, TABLE, c.workdir / "proxy.log")
    p.argv = component_argv(c, "proxy", "--service-cluster-ip-range", CIDR, "--nftables-table", TABLE,
                            "--healthz-bind-address", f"127.0.0.1:{p.healthz}")
    return p


async def step(quick: bool = False, seconds: float | None = None, rounds: int | None = None, connections: int = 16,
               n: int | None = None, m: int = 10) -> dict[str, Any]:
    seconds = seconds or (2.0 if quick else 4.0)
    rounds = rounds or (2 if quick else 5)
    n = n or (100 if quick else 1000)
    load = os.getloadavg()
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    ensure_image()
    c = Cluster()
    c.apiserver.argv += ["--service-cluster-ip-range", CIDR]
    proxy = ProxyProcess("", "", CIDR, TABLE, c.workdir / "proxy.log")
    proxy.cleanup()
    containers: list[str] = []
    try:
        c.start()
        proxy = proxy_process(c)
        api = httpx.AsyncClient(**http_kwargs(c, timeout=30))
        # one identical pod per target: a pod that saw the host both directly and masqueraded (the same
        # source address, two TCP timestamp clocks) drops SYNs that hit its TIME_WAIT sockets (PAWS), and
        # the 1 s retransmits would be charged to the proxy
        pod_ips = {}
        for role in ("direct", "cip", "np"):
            name = unique(f"pxbench-{role}")
            containers.append(name)
            pod_ips[role] = run_web(name)
        cip = ""
        for svc, role, stype, extra in (("web-cip", "cip", "ClusterIP", {}),
                                        ("web-np", "np", "NodePort", {"nodePort": NODE_PORT})):
            r = await api.post("/api/v1/namespaces/default/services", json={"metadata": {"name": svc}, "spec": {
                "type": stype, "ports": [{"name": "http", "port": 80, "targetPort": 80, **extra}]}})
            assert r.status_code == 201, r.text
            if role == "cip":
                cip = r.json()["spec"]["clusterIP"]
            r = await api.post("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", json={
                "metadata": {"name": f"{svc}-1", "labels": {"kubernetes.io/service-name": svc}}, "addressType": "IPv4",
                "endpoints": [{"addresses": [pod_ips[role]], "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]})
            assert r.status_code == 201, r.text
        proxy.start()
        node = node_ip()
        for ip in (cip, node):
            assert_local(ip)
        targets = {"pod IP (direct)": f"http://{pod_ips['direct']}:80/", "ClusterIP": f"http://{cip}:80/",
                   "NodePort (node IP)": f"http://{node}:{NODE_PORT}/"}
        progress(f"traffic, 1 Service programmed ({connections} connections, a new connection per request)")
        small = traffic(targets, seconds, rounds, connections)

        progress(f"creating {n} Services x {m} endpoints through the API")
        before = len(sync_events(proxy.log))
        svcs, slices = bench_objects(n, m)
        t0 = time.time()
        await create_all(c, "bench", svcs, slices)
        created = time.time()
        ev = await wait_sync(proxy.log, before, lambda e: e["endpoints"] >= n * m)
        programmed = ts(ev) - created
        progress(f"  created in {created - t0:.1f}s; proxy programmed all {programmed:.2f}s after the last create")
        for ip in (cip, node):
            assert_local(ip)
        progress(f"traffic with the {n:,} Services programmed")
        big = traffic(targets, seconds, rounds, connections)

        await asyncio.sleep(2)
        progress("one change at that size: one endpoint removed from one Service, API write to rules applied")
        changes = []
        for k in range(5):
            name = f"s{(k * 97) % n:04d}-1"
            cur = (await api.get(f"/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices/{name}")).json()
            cur["endpoints"] = cur["endpoints"][1:]
            await asyncio.sleep(1.5)  # a quiet proxy, as in steady state
            before = len(sync_events(proxy.log))
            t = time.time()
            r = await api.put(f"/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices/{name}", json=cur)
            assert r.status_code == 200, r.text
            ev = await wait_sync(proxy.log, before, lambda e: e["mode"] == "partial")
            changes.append((ts(ev) - t, float(ev["duration_ms"]) / 1000, float(ev["rules_ms"]) / 1000,
                            float(ev["apply_ms"]) / 1000))
            progress(f"  write -> applied {changes[-1][0] * 1000:.0f} ms (sync {changes[-1][1] * 1000:.0f} ms: rules "
                     f"{changes[-1][2] * 1000:.0f}, nft {changes[-1][3] * 1000:.0f})")
        full_syncs = [e for e in sync_events(proxy.log) if e["mode"] == "full" and e["service_ports"] >= n]
        await api.aclose()

        progress("dataplane alone at the same size (build + nft -f, no API)")
        scale = await dataplane_scale(n, m)
    finally:
        proxy.stop()
        proxy.cleanup()
        remove_containers(containers)
        c.stop()

    def rows(res: dict[str, list[dict[str, float]]]) -> list[str]:
        best0, med0 = summarize(res["pod IP (direct)"])[:2]
        out = []
        for name, runs in res.items():
            best, med, p50, p99, errs = summarize(runs)
            out.append(f"| {name} | {best:,.0f} | {best / best0:.2f} | {med:,.0f} | {med / med0:.2f} | {p50:.2f} | "
                       f"{p99:.2f} | {errs:.0f} |")
        return out

    head = ["| target | best req/s | vs pod | median req/s | vs pod | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines = [f"## Proxy — `python -m bench.proxy`\n\n{machine()}\n",
             f"`wrk -t2 -c{connections} --latency -H 'Connection: close'` against busybox httpd containers on the "
             "docker bridge: straight to a pod IP, and through `kubenats proxy` (nftables mode) to an identical pod "
             "behind a ClusterIP (routed `local`, the host's traffic masqueraded) and another behind a NodePort on "
             "the node's own address (masqueraded). A new connection per request (busybox httpd closes each), so "
             f"every request passes the NAT rules. {rounds} rounds of {seconds:.0f} s per target, alternated; best "
             "and median round (latencies: medians). wrk, the proxy, etcd, the apiserver and the pods share the 2 "
             f"cores (1-minute load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; other work on the "
             "machine makes single rounds swing for every target alike): compare the best rounds. One pod per target: a pod that sees the host both directly and "
             "masqueraded (one source address, two TCP timestamp clocks) drops SYNs that land on its TIME_WAIT "
             "sockets (PAWS, `TcpExtPAWSTimewait`) and the 1 s retransmits would be charged to the proxy. The "
             "same effect made the proxy masquerade without `fully-random`: with random source ports, "
             "ClusterIP and NodePort fell to 0.3x of direct after the first few seconds of load.\n",
             "With one Service programmed:\n", *head, *rows(small), "",
             f"With {n:,} Services x {m} endpoints programmed as well ({n // 2} of them NodePorts):\n", *head, *rows(big), "",
             f"Programming {n:,} Services x {m} endpoints ({scale['chains']:,.0f} chains, {scale['rules']:,.0f} rules, "
             f"{scale['bytes'] / 1e6:.1f} MB of `nft` input):\n",
             "| step | seconds |", "|---|---:|",
             f"| through the API: last create until the proxy's sync had all of them in the kernel | {programmed:.2f} |",
             *(f"| proxy full sync at that size (log `duration_ms`) | {float(e['duration_ms']) / 1000:.2f} |"
               for e in full_syncs[-1:]),
             f"| build the rule set from the objects (pure Python, cold) | {scale['build_s']:.2f} |",
             f"| `nft -f` into an empty table | {scale['full_empty_s']:.2f} |",
             f"| `nft -f` replacing the whole table (list + flush + load, the periodic full sync) | {scale['full_replace_s']:.2f} |",
             f"| one change: rebuild + diff (cached per Service) | {scale['change_build_s']:.3f} |",
             f"| one change: `nft -f` of the diff ({scale['change_bytes']:.0f} bytes) | {scale['change_apply_s']:.3f} |",
             *([f"| iptables fallback: `iptables-restore` of the whole rule set | {scale['ipt_full_s']:.2f} |",
                f"| iptables fallback: one change (save + restore of everything) | {scale['ipt_change_s']:.2f} |"]
               if "ipt_full_s" in scale else []),
             "",
             f"One change end to end at that size (an EndpointSlice PUT, NATS event, informer, the proxy's 1 s "
             f"bounded-frequency sync, `nft -f` of the diff), {len(changes)} runs: API write to rules applied median "
             f"{median([c[0] for c in changes]) * 1000:.0f} ms, max {max(c[0] for c in changes) * 1000:.0f} ms; the "
             f"sync itself median {median([c[1] for c in changes]) * 1000:.0f} ms, of which building the rule set "
             f"and its diff {median([c[2] for c in changes]) * 1000:.0f} ms and `nft -f` "
             f"{median([c[3] for c in changes]) * 1000:.0f} ms (the rest: route, hairpin and node address checks "
             "over netlink)."]
    def best(res: dict[str, list[dict[str, float]]], k: str) -> float:
        return summarize(res[k])[0]
    d0, d1 = best(small, "pod IP (direct)"), best(big, "pod IP (direct)")
    fig = plots.lines("proxy_rps.png", "Requests/s by round: Service paths vs direct pod IP (1 Service, then "
                      f"{n:,} Services)", list(range(1, 2 * rounds + 1)),
                      {k: [r["rps"] for r in small[k]] + [r["rps"] for r in big[k]] for k in small},
                      "round (first half: 1 Service; second half: all Services programmed)", "requests/s")
    lines.insert(lines.index("With one Service programmed:\n"), fig + "\n")
    metrics = {"services": n, "direct_rps_best": d0, "cip_rps_best": best(small, "ClusterIP"),
               "np_rps_best": best(small, "NodePort (node IP)"), "cip_ratio_best": best(small, "ClusterIP") / d0,
               "np_ratio_best": best(small, "NodePort (node IP)") / d0,
               "big_cip_ratio_best": best(big, "ClusterIP") / d1, "big_np_ratio_best": best(big, "NodePort (node IP)") / d1,
               "change_median_ms": median([c[0] for c in changes]) * 1000, "programmed_s": programmed}
    return {"section": "\n".join(lines), "metrics": metrics}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2 s, 100 Services")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--services", type=int)
    ap.add_argument("--endpoints", type=int, default=10)
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    r = asyncio.run(step(a.quick, a.seconds, a.rounds, a.connections, a.services, a.endpoints))
    finish("proxy", r["section"], r["metrics"])
    print(r["section"])
