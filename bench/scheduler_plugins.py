"""Micro-benchmark of the scheduler's pure core: schedule_one over 1,000 nodes holding 30 pods each.

Why this exists: the scheduler's target is >= 300 pods/s at 1,000 nodes, i.e. filtering and
scoring one pod over every node in about 3 ms of Python. This times the default profile on
synthetic nodes (32 cpu, 128Gi, 110 pods, a few tainted or cordoned) filled with 30 pods from a
handful of ReplicaSets, assuming each placed pod onto its node as the real scheduler does.

Run: ``.venv/bin/python -m bench.scheduler_plugins [--nodes 1000] [--pods-per-node 30] [--pods 2000]
[--write-docs]``, or the ``scheduler-core`` step of ``python -m bench``.
It prints pods/s for a full scan of every node (percentageOfNodesToScore 100) and for upstream's
adaptive node sampling (percentageOfNodesToScore 0, the kube-scheduler default).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.report import finish, machine, progress
from services.scheduler.framework import NodeInfo, PodInfo, Profile, failure_message
from services.scheduler.plugins import default_plugins

OWNERS = [f"rs-{i}" for i in range(20)]


def make_node(i: int) -> dict[str, Any]:
    node: dict[str, Any] = {
        "metadata": {"name": f"node-{i:04d}", "labels": {"kubernetes.io/hostname": f"node-{i:04d}",
                                                         "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
        "spec": {},
        "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "100Gi"}},
    }
    if i % 50 == 0:
        node["spec"]["taints"] = [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]
    if i % 97 == 0:
        node["spec"]["unschedulable"] = True
    return node


def make_pod(n: int, node: str | None = None) -> dict[str, Any]:
    owner = OWNERS[n % len(OWNERS)]
    pod: dict[str, Any] = {
        "metadata": {"name": f"p-{n}", "namespace": "bench", "uid": f"uid-{n}",
                     "labels": {"app": owner},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                          "uid": f"uid-{owner}", "controller": True}]},
        "spec": {"containers": [{"name": "app", "image": "nginx",
                                 "resources": {"requests": {"cpu": f"{100 + 50 * (n % 5)}m",
                                                            "memory": f"{128 * (1 + n % 4)}Mi"}}}],
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}]},
    }
    if node is not None:
        pod["spec"]["nodeName"] = node
    return pod


def build(nodes: int, pods_per_node: int) -> list[NodeInfo]:
    infos = []
    n = 0
    for i in range(nodes):
        ni = NodeInfo(make_node(i))
        for _ in range(pods_per_node):
            ni.add_pod(make_pod(n, ni.name))
            n += 1
        infos.append(ni)
    return infos


def run(nodes: int, pods_per_node: int, pods: int, percentage: int) -> float:
    infos = build(nodes, pods_per_node)
    by_name = {ni.name: ni for ni in infos}
    filters, scores = default_plugins()
    profile = Profile(filters, scores, percentage_of_nodes_to_score=percentage)
    incoming = [make_pod(10_000_000 + k) for k in range(pods)]
    start = time.perf_counter()
    for pod in incoming:
        info = PodInfo(pod)
        result = profile.schedule(pod, infos, pod_info=info)
        if result.node is None:
            raise SystemExit(failure_message(result, len(infos), pod=pod))
        by_name[result.node].add_pod(info)  # assume, as the scheduler does before binding
    return pods / (time.perf_counter() - start)


async def step(quick: bool = False, nodes: int = 1000, pods_per_node: int = 30, pods: int | None = None) -> dict[str, Any]:
    """The `scheduler-core` step of `python -m bench`: the decision rate without any API in the way."""
    pods = pods or (500 if quick else 2000)
    rates = {}
    for key, percentage in (("full_scan_per_s", 100), ("adaptive_per_s", 0)):
        progress(f"scheduler core: {pods} pods over {nodes} nodes, percentageOfNodesToScore={percentage}")
        rates[key] = run(nodes, pods_per_node, pods, percentage)
    body = "\n".join([
        "## Scheduler core (no API) — `python -m bench.scheduler_plugins`\n", f"{machine()}\n",
        f"`schedule_one` of the default profile over {nodes} synthetic nodes holding {pods_per_node} pods each, "
        f"{pods} pods placed and assumed in one process: the decision rate the scheduler's loop could sustain if "
        "the API kept up (the end-to-end rate is in the Scheduler section).\n",
        "| node sampling | pods/s | ms/pod |", "|---|---:|---:|",
        f"| every node scored (percentageOfNodesToScore=100) | {rates['full_scan_per_s']:,.0f} | "
        f"{1000 / rates['full_scan_per_s']:.2f} |",
        f"| upstream adaptive sampling (percentageOfNodesToScore=0) | {rates['adaptive_per_s']:,.0f} | "
        f"{1000 / rates['adaptive_per_s']:.2f} |"])
    return {"section": body, "metrics": {"nodes": nodes, "pods": pods, **rates}}


def main() -> None:
    import asyncio

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="500 pods")
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods-per-node", type=int, default=30)
    ap.add_argument("--pods", type=int, help="pods to schedule (2,000)")
    ap.add_argument("--write-docs", action="store_true", help="store the section in docs/benchmarks.md")
    args = ap.parse_args()
    r = asyncio.run(step(args.quick, args.nodes, args.pods_per_node, args.pods))
    print(r["section"])
    if args.write_docs:
        finish("scheduler-core", r["section"], r["metrics"])


if __name__ == "__main__":
    main()
