"""Run every benchmark, print a summary table, and write docs/benchmarks.md with its figures.

Why this exists: one command that says where kubenats stands, each figure beside its raw building
block (etcd puts, NATS publish-to-receive, `docker run`, direct pod IP) and beside published anchors,
with targets marked met or not. Every step starts its own cluster (etcd, nats-server, apiserver on
free ports, components as child processes), returns its section and headline numbers, and writes
them at once: a step that fails leaves the others' sections in place, and the summary at the top is
re-rendered from docs/bench/results.json after each step.

    .venv/bin/python -m bench                      # everything, full sizes (about an hour with `scale`)
    .venv/bin/python -m bench --quick              # small sizes: a smoke run in minutes
    .venv/bin/python -m bench --only api,kubelet   # some steps (sections of the others are kept)
    .venv/bin/python -m bench --skip scale         # all but some
    .venv/bin/python -m bench --only scale --scale 1000,300,100 --profile   # nodes,deployments,replicas

Steps: api, scheduler-core, scheduler, kubelet, proxy, kubectl, controllers, controllers-scenarios,
scale. Needs root, Docker, etcd, nats-server, kubectl and wrk (proxy), and `pip install -e .[bench]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
import traceback
from typing import Any

from bench.report import DOC, finish, progress
from bench.summary import write_summary

# step name -> (module, what it measures)
STEPS: dict[str, tuple[str, str]] = {
    "api": ("bench.api", "pod creates vs raw etcd puts at 1/10/50 clients, LIST 10k, event delivery vs raw NATS"),
    "scheduler-core": ("bench.scheduler_plugins", "pure filter/score decision rate at 1,000 nodes (no API)"),
    "scheduler": ("bench.scheduler", "pods bound/s at 1,000 nodes, streaming and backlog"),
    "kubelet": ("bench.kubelet", "pod startup on Docker vs raw docker run; 1,000 hollow nodes' leases"),
    "proxy": ("bench.proxy", "ClusterIP/NodePort traffic vs direct pod IP; programming 1,000 Services"),
    "kubectl": ("bench.kubectl_watch", "kubectl get pods -A at 5,000 pods; 1,000 watchers x 1,000 writes"),
    "controllers": ("bench.controllers_scale", "100 Deployments x 10 on 100 hollow nodes; rolling update; RSS"),
    "controllers-scenarios": ("bench.controllers", "scale-up, rollout, cascading delete vs raw pod creates"),
    "scale": ("bench.scale", "1,000 hollow nodes, 30,000 pods: time, RSS, CPU, stores, usability"),
}


def run_step(name: str, opts: argparse.Namespace) -> dict[str, Any]:
    mod = importlib.import_module(STEPS[name][0])
    kwargs: dict[str, Any] = {"quick": opts.quick}
    if name == "scale":
        if opts.scale:
            nodes, deployments, replicas = (int(x) for x in opts.scale.split(","))
            kwargs.update(nodes=nodes, deployments=deployments, replicas=replicas)
        kwargs.update(profile=opts.profile, timeout=opts.scale_timeout, kubelet_procs=opts.kubelet_procs)
    result: dict[str, Any] = asyncio.run(mod.step(**kwargs))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(f"  {k:22} {v[1]}" for k, v in STEPS.items()))
    ap.add_argument("--only", default="", help="comma-separated steps to run")
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out")
    ap.add_argument("--quick", action="store_true", help="small sizes everywhere (scale: 100 nodes x 30 x 10)")
    ap.add_argument("--scale", default="", metavar="NODES,DEPLOYMENTS,REPLICAS",
                    help="sizes of the scale step (default 1000,300,100; --quick 100,30,10)")
    ap.add_argument("--scale-timeout", type=float, default=None, help="seconds the scale step waits (1800)")
    ap.add_argument("--kubelet-procs", type=int, default=None,
                    help="hollow kubelet processes the scale step splits its nodes over (default 4 from 200 nodes)")
    ap.add_argument("--apiserver-workers", type=int, default=1,
                    help="apiserver processes (`kubenats apiserver --workers N`) in every step's cluster")
    ap.add_argument("--profile", action="store_true", help="py-spy the control plane and the hollow kubelet during the scale step")
    opts = ap.parse_args()
    if opts.apiserver_workers > 1:  # every Cluster() of every step reads this (tests/servers.py)
        os.environ["KUBENATS_APISERVER_ARGS"] = f"--workers {opts.apiserver_workers}"
    names = [s for s in opts.only.split(",") if s] or list(STEPS)
    skip = {s for s in opts.skip.split(",") if s}
    unknown = [s for s in [*names, *skip] if s not in STEPS]
    if unknown:
        ap.error(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    names = [n for n in names if n not in skip]
    outcome: list[tuple[str, str, float]] = []
    t_all = time.perf_counter()
    for i, name in enumerate(names, 1):
        progress(f"=== step {i}/{len(names)}: {name} — {STEPS[name][1]}")
        t = time.perf_counter()
        try:
            r = run_step(name, opts)
            finish(name, r["section"], r["metrics"])
            outcome.append((name, "ok", time.perf_counter() - t))
        except KeyboardInterrupt:
            outcome.append((name, "interrupted", time.perf_counter() - t))
            break
        except Exception as e:  # one failed step must not lose the others
            traceback.print_exc()
            outcome.append((name, f"FAILED: {type(e).__name__}: {str(e)[:200]}", time.perf_counter() - t))
        progress(f"=== step {name}: {outcome[-1][1]} in {outcome[-1][2]:.0f} s")
    summary = write_summary()
    print(summary)
    print("\n| step | result | seconds |\n|---|---|---:|")
    for name, status, secs in outcome:
        print(f"| {name} | {status} | {secs:.0f} |")
    print(f"\nwrote {DOC} (all steps: {time.perf_counter() - t_all:.0f} s)")
    if any(status != "ok" for _, status, _ in outcome):
        sys.exit(1)


if __name__ == "__main__":
    main()
