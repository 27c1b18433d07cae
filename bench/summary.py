"""The summary at the top of docs/benchmarks.md: targets met or not, ratios to raw building blocks, anchors.

Why this exists: each step's section explains one measurement; a reader first wants to know where
kubenats stands. This renders that from docs/bench/results.json (every step's headline numbers,
merged), so it is complete after a full run and stays correct when one step is re-run alone.
Published anchors are quoted, not measured here:

- Kubernetes SLOs (sig-scalability): mutating API call latency p99 <= 1 s; pod startup p99 <= 5 s.
- kube-scheduler's scheduler_perf CI gate: 270 pods/s at 5,000 nodes.
- k0s' documented controller memory: 510 MB at 1 node, 2.3 GB at 100 nodes with 10,000 pods.
- kwok: 1,000 nodes and 100,000 pods simulated on a laptop.
"""

from __future__ import annotations

from typing import Any

from bench.report import load_results, set_header, write_section

NA = "not run"


def _f(r: dict[str, Any], key: str) -> float | None:
    v = r.get(key)
    return float(v) if isinstance(v, int | float) and v == v else None


def target_rows(res: dict[str, dict[str, Any]]) -> list[str]:
    rows = []

    def add(name: str, step: str, value: float | None, ok: bool | None, text: str, note: str = "") -> None:
        met = NA if value is None else "–" if ok is None else ("**met**" if ok else "**not met**")
        rows.append(f"| {name} | {text if value is not None else NA} | {met} | `{step}`{note} |")

    api = res.get("api", {})
    clients = int(api.get("clients_max", 50) or 50)
    p99 = _f(api, f"c{clients}_api_p99_ms")
    add(f"mutating API p99 < 50 ms at {clients} clients", "api", p99, p99 is not None and p99 < 50,
        f"{p99:.1f} ms" if p99 is not None else "")
    kl = res.get("kubelet", {})
    ratio, ratio99 = _f(kl, "ratio_p50"), _f(kl, "ratio_p99")
    add("pod startup <= 1.3x raw `docker run` (pause + app)", "kubelet", ratio,
        ratio is not None and ratio <= 1.3 and (ratio99 or 0) <= 1.3,
        f"{ratio:.2f}x at p50, {ratio99 or float('nan'):.2f}x at p99 (one at a time)" if ratio is not None else "")
    sc = res.get("scheduler", {})
    rate, nodes = _f(sc, "stream_bound_per_s"), int(sc.get("nodes", 0) or 0)
    drain = _f(sc, "backlog_drain_per_s") or 0.0
    add(">= 300 pods/s scheduled at 1,000 nodes", "scheduler", rate,
        None if nodes < 1000 else rate is not None and max(rate, drain) >= 300,
        f"{rate:.0f} pods/s streaming, {drain:.0f} pods/s draining a backlog, {nodes:,} nodes" if rate else "",
        " (smaller size than the target's)" if rate and nodes < 1000 else "")
    s = res.get("scale", {})
    rss = _f(s, "cp_rss_peak_mib")
    pods = int(s.get("pods_listed", 0) or 0)  # pods in the cluster (what the caches hold), Running or not
    full = int(s.get("nodes", 0) or 0) >= 1000 and pods >= 30000
    add("apiserver + scheduler + controllers <= 500 MB RSS at 1,000 nodes / 30,000 pods", "scale", rss,
        (rss is not None and rss * 1.048576 <= 500) if full else None,
        f"{rss * 1.048576:.0f} MB peak ({rss:.0f} MiB), final {(_f(s, 'cp_rss_final_mib') or 0) * 1.048576:.0f} MB, "
        f"at {int(s.get('nodes', 0) or 0):,} nodes / {pods:,} pods in the cluster "
        f"({int(s.get('available', 0) or 0):,} Running)" if rss is not None else "",
        "" if full or rss is None else " (smaller size than the target's)")
    px = res.get("proxy", {})
    cip, npr = _f(px, "cip_ratio_best"), _f(px, "np_ratio_best")
    add("Service traffic >= 0.95x direct pod IP", "proxy", cip,
        cip is not None and min(cip, npr or 0) >= 0.95,
        f"ClusterIP {cip:.2f}x, NodePort {npr or float('nan'):.2f}x (best rounds)" if cip is not None else "")
    return rows


def ratio_rows(res: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    api = res.get("api", {})
    c = int(api.get("clients_max", 50) or 50)
    a, r = _f(api, f"c{c}_api_rps"), _f(api, f"c{c}_raw_rps")
    if a and r:
        rows.append(f"| API writes (pod creates/s, {c} clients) | {a:,.0f}/s | raw etcd puts {r:,.0f}/s | "
                    f"{a / r:.2f} |")
        a99, r99 = _f(api, f"c{c}_api_p99_ms"), _f(api, f"c{c}_raw_p99_ms")
        if a99 and r99:
            rows.append(f"| API write p99 ({c} clients) | {a99:.1f} ms | raw etcd put p99 {r99:.1f} ms | "
                        f"{a99 / r99:.1f}x |")
    e, n = _f(api, "ev_p50_ms"), _f(api, "nats_p50_ms")
    if e is not None and n:
        rows.append(f"| event delivery, write request → NATS subscriber (p50 / p99) | {e:.2f} / "
                    f"{_f(api, 'ev_p99_ms') or 0:.2f} ms | raw NATS publish → receive {n:.2f} / "
                    f"{_f(api, 'nats_p99_ms') or 0:.2f} ms | {e / n:.1f}x |")
    kl = res.get("kubelet", {})
    k, d = _f(kl, "seq_p50_ms"), _f(kl, "docker_seq_p50_ms")
    if k and d:
        rows.append(f"| pod startup, POST → Running (p50, one at a time) | {k:.0f} ms | `docker run` pause + app "
                    f"{d:.0f} ms | {k / d:.2f} |")
    px = res.get("proxy", {})
    if _f(px, "cip_rps_best"):
        rows.append(f"| Service traffic, ClusterIP (best round) | {_f(px, 'cip_rps_best'):,.0f} req/s | direct pod IP "
                    f"{_f(px, 'direct_rps_best'):,.0f} req/s | {_f(px, 'cip_ratio_best'):.2f} |")
        rows.append(f"| Service traffic, NodePort (best round) | {_f(px, 'np_rps_best'):,.0f} req/s | direct pod IP "
                    f"{_f(px, 'direct_rps_best'):,.0f} req/s | {_f(px, 'np_ratio_best'):.2f} |")
    sc, core = res.get("scheduler", {}), res.get("scheduler-core", {})
    if _f(sc, "stream_bound_per_s") and _f(core, "adaptive_per_s"):
        rows.append(f"| scheduling, end to end (streaming) | {_f(sc, 'stream_bound_per_s'):.0f} pods/s | the pure "
                    f"scheduling core (no API) {_f(core, 'adaptive_per_s'):,.0f} pods/s | "
                    f"{_f(sc, 'stream_bound_per_s') / _f(core, 'adaptive_per_s'):.2f} |")  # type: ignore[operator]
    return rows


def anchor_rows(res: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    s, api, kl, sc = res.get("scale", {}), res.get("api", {}), res.get("kubelet", {}), res.get("scheduler", {})
    c = int(api.get("clients_max", 50) or 50)
    here = []
    if _f(api, f"c{c}_api_p99_ms") is not None:
        here.append(f"{_f(api, f'c{c}_api_p99_ms'):.0f} ms at {c} clients")
    if _f(s, "probe_p99_ms") is not None:
        here.append(f"{_f(s, 'probe_p99_ms'):.0f} ms during the scale run")
    rows.append(f"| Kubernetes SLO: mutating API call p99 <= 1 s | {'; '.join(here) or NA} |")
    here = []
    if _f(kl, "seq_p99_ms") is not None:
        here.append(f"{_f(kl, 'seq_p99_ms'):.0f} ms one at a time, {_f(kl, 'burst_p99_ms') or 0:.0f} ms for "
                    f"{int(kl.get('count', 0) or 0)} at once (real Docker)")
    rows.append(f"| Kubernetes SLO: pod startup p99 <= 5 s | {'; '.join(here) or NA} |")
    here = []
    if _f(sc, "stream_bound_per_s"):
        here.append(f"{_f(sc, 'stream_bound_per_s'):.0f} pods/s bound at {int(sc.get('nodes', 0)):,} nodes "
                    f"(streaming), {_f(sc, 'backlog_drain_per_s') or 0:.0f} pods/s draining a backlog")
    if s.get("reached") and _f(s, "pods_per_s"):
        here.append(f"{_f(s, 'pods_per_s'):.0f} pods/s to Running through Deployments at {int(s.get('nodes', 0)):,} "
                    "nodes (scale run)")
    elif _f(s, "all_created_s"):
        here.append(f"{int(s.get('pods_target', 0)) / _f(s, 'all_created_s'):.0f} pods/s created through "  # type: ignore[operator]
                    f"Deployments at {int(s.get('nodes', 0)):,} nodes, but only {int(s.get('available', 0)):,} Running "
                    "(scale run)")
    rows.append(f"| kube-scheduler scheduler_perf gate: 270 pods/s at 5,000 nodes | {'; '.join(here) or NA} |")
    if _f(s, "cp_rss_peak_mib") is not None:
        plane = sum((_f(s, f"{k}_rss_peak") or 0) for k in ("apiserver", "scheduler", "controllers", "etcd",
                                                              "nats-server"))
        rows.append(f"| k0s controller memory: 510 MB at 1 node, 2.3 GB at 100 nodes / 10,000 pods | "
                    f"apiserver + scheduler + controllers {_f(s, 'cp_rss_peak_mib') * 1.048576:.0f} MB peak, with "  # type: ignore[operator]
                    f"etcd and nats-server {plane * 1.048576:.0f} MB, at {int(s.get('nodes', 0)):,} nodes / "
                    f"{int(s.get('pods_listed', 0)):,} pods |")
        rows.append(f"| kwok: 1,000 nodes and 100,000 pods on a laptop | {int(s.get('nodes', 0)):,} hollow nodes and "
                    f"{int(s.get('available', 0)):,} of {int(s.get('pods_target', 0)):,} pods Running in "
                    f"{_f(s, 'elapsed_s') or 0:.0f} s on 2 cores, with a real scheduler, controllers and kubelet "
                    "logic (kwok, too, runs the real control plane and fakes only the nodes; hollow nodes run the kubelet's own "
                    "code without containers) |")
    else:
        rows.append(f"| k0s controller memory: 510 MB at 1 node, 2.3 GB at 100 nodes / 10,000 pods | {NA} |")
        rows.append(f"| kwok: 1,000 nodes and 100,000 pods on a laptop | {NA} |")
    return rows


def render(res: dict[str, dict[str, Any]]) -> str:
    when = sorted({part for r in res.values() for part in str(r.get("_when", "")).split(" · ")
                   if part.endswith(" UTC")})
    lines = ["## Summary — `python -m bench`\n",
             "Re-rendered after every step from `docs/bench/results.json`; each row names the step that measured "
             f"it (steps ran {when[0] if when else '?'} – {when[-1] if when else '?'}; each section carries its "
             "own machine, date and commit). Why missed targets are missed — profiles, hot spots and fixes — is in the "
             "hand-written section after the scale run, when present.\n",
             "### Targets\n", "| target | measured | | step |", "|---|---|---|---|", *target_rows(res), "",
             "### Beside the raw building block, measured in the same run\n",
             "| figure | kubenats | raw building block | ratio |", "|---|---:|---:|---:|", *ratio_rows(res), "",
             "### Beside published anchors (quoted, not measured here)\n",
             "| anchor | kubenats on this 2-core machine |", "|---|---|", *anchor_rows(res)]
    return "\n".join(lines)


def write_summary() -> str:
    body = render(load_results())
    write_section("summary", body, first=True)
    set_header()
    return body
