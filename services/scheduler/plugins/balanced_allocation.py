"""NodeResourcesBalancedAllocation: favour nodes whose cpu and memory would be used evenly.

Why this exists: a node at 90% cpu and 10% memory strands its memory; kube-scheduler's
BalancedAllocation scores ``(1 - std) * 100`` where std is the standard deviation of the
requested/allocatable fractions (each capped at 1) of the configured resources, with the pod's
actual requests added (not the 100m/200Mi defaults LeastAllocated uses). Best-effort pods (no
requests at all) are skipped, as upstream does since kubernetes#129138, so they do not pile up
on one node.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from services.scheduler.framework import MAX_NODE_SCORE, CycleState, NodeInfo, Obj, Resources

__all__ = ["BalancedAllocation", "balanced_score"]

DEFAULT_RESOURCES: Final = (("cpu", 1), ("memory", 1))


def balanced_score(fractions: Sequence[float]) -> int:
    """``balancedResourceScorer`` on already-computed fractions (each capped at 1)."""
    std = 0.0
    if len(fractions) == 2:
        std = abs((fractions[0] - fractions[1]) / 2)
    elif len(fractions) > 2:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) * (f - mean) for f in fractions) / len(fractions))
    return int((1 - std) * MAX_NODE_SCORE)


def _pod_amount(req: Resources, name: str) -> int:
    if name == "cpu":
        return req.milli_cpu
    if name == "memory":
        return req.memory
    return req.scalars.get(name, 0)


class BalancedAllocation:
    """Score nodes by how balanced their resource fractions would be with the pod on them."""

    name = "NodeResourcesBalancedAllocation"

    def __init__(self, weight: int = 1, resources: Sequence[tuple[str, int]] = DEFAULT_RESOURCES) -> None:
        self.weight = weight
        self.resources = tuple(name for name, _ in resources)
        self._default_resources = self.resources == ("cpu", "memory")

    def pre_score(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> bool:
        req = state.requests
        return any(_pod_amount(req, name) for name in self.resources)

    def score(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> int:
        alloc = node_info.allocatable
        used = node_info.requested
        req = state.requests
        if self._default_resources:
            a_cpu, a_mem = alloc.milli_cpu, alloc.memory
            if a_cpu and a_mem:
                f_cpu = min((used.milli_cpu + req.milli_cpu) / a_cpu, 1.0)
                f_mem = min((used.memory + req.memory) / a_mem, 1.0)
                return int((1 - abs((f_cpu - f_mem) / 2)) * MAX_NODE_SCORE)
        fractions: list[float] = []
        for name in self.resources:
            pod_request = _pod_amount(req, name)
            if name == "cpu":
                capacity, requested = alloc.milli_cpu, used.milli_cpu + pod_request
            elif name == "memory":
                capacity, requested = alloc.memory, used.memory + pod_request
            else:
                if pod_request == 0 and name != "ephemeral-storage":
                    continue
                capacity = alloc.scalars.get(name, 0)
                requested = used.scalars.get(name, 0) + pod_request
            if capacity == 0:
                continue
            fractions.append(min(requested / capacity, 1.0))
        return balanced_score(fractions)

    def score_all(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> list[int]:
        """``score`` for many nodes at once (same answers, fewer Python calls)."""
        if not self._default_resources:
            return [self.score(pod, ni, state) for ni in nodes]
        req = state.requests
        pod_cpu, pod_mem = req.milli_cpu, req.memory
        out: list[int] = []
        append = out.append
        for ni in nodes:
            alloc = ni.allocatable
            a_cpu, a_mem = alloc.milli_cpu, alloc.memory
            if not a_cpu or not a_mem:
                append(self.score(pod, ni, state))
                continue
            used = ni.requested
            f_cpu = (used.milli_cpu + pod_cpu) / a_cpu
            f_mem = (used.memory + pod_mem) / a_mem
            if f_cpu > 1.0:
                f_cpu = 1.0
            if f_mem > 1.0:
                f_mem = 1.0
            append(int((1 - abs((f_cpu - f_mem) / 2)) * MAX_NODE_SCORE))
        return out
