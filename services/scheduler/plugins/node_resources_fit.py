"""NodeResourcesFit: a pod fits a node only if its requests fit the node's unrequested allocatable.

Why this exists: it is kube-scheduler's resource check and its main spreading score. Filter, as
upstream's ``fitsRequest``: one more pod must stay within allocatable ``pods`` ("Too many pods"),
and each requested cpu, memory, ephemeral-storage and extended resource must fit beside what the
node's pods already request ("Insufficient cpu", "Insufficient example.com/gpu", ...); all
failing resources are reported. A node is unresolvable (preemption would not help) when the
request alone exceeds allocatable.

Score, the ``scoringStrategy`` of NodeResourcesFitArgs: ``LeastAllocated`` (default) favours the
emptiest node, ``MostAllocated`` packs; both per resource on 0..100, weighted-averaged, with cpu
and memory counted as "non-zero" requests (containers stating none count 100m / 200Mi) as
upstream does. Quantities are parsed once (on NodeInfo and CycleState), never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from services.scheduler.framework import MAX_NODE_SCORE, CycleState, FilterResult, NodeInfo, Obj, Resources

__all__ = ["LEAST_ALLOCATED", "MOST_ALLOCATED", "NodeResourcesFit", "least_requested_score",
           "most_requested_score"]

LEAST_ALLOCATED: Final = "LeastAllocated"
MOST_ALLOCATED: Final = "MostAllocated"
DEFAULT_RESOURCES: Final = (("cpu", 1), ("memory", 1))
_REQUEST_KEY: Final = "NodeResourcesFit/request"


def least_requested_score(requested: int, capacity: int) -> int:
    """``leastRequestedScore``: unused share of capacity on 0..100 (0 when over capacity)."""
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def most_requested_score(requested: int, capacity: int) -> int:
    """``mostRequestedScore``: used share of capacity on 0..100 (requested capped at capacity)."""
    if capacity == 0:
        return 0
    return min(requested, capacity) * MAX_NODE_SCORE // capacity


def _is_extended(name: str) -> bool:
    return "/" in name and "kubernetes.io/" not in name and not name.startswith("requests.")


class NodeResourcesFit:
    """Resource filter plus the LeastAllocated / MostAllocated score."""

    name = "NodeResourcesFit"

    def __init__(self, scoring_strategy: str = LEAST_ALLOCATED,
                 resources: Sequence[tuple[str, int]] = DEFAULT_RESOURCES, weight: int = 1,
                 ignored_resources: Sequence[str] = (), ignored_resource_groups: Sequence[str] = ()) -> None:
        if scoring_strategy not in (LEAST_ALLOCATED, MOST_ALLOCATED):
            raise ValueError(f"scoring strategy {scoring_strategy} is not supported")
        self.scoring_strategy = scoring_strategy
        self.resources = tuple(resources)
        self.weight = weight
        self.ignored_resources = frozenset(ignored_resources)
        self.ignored_resource_groups = frozenset(ignored_resource_groups)
        self._default_resources = self.resources == DEFAULT_RESOURCES
        self._least = scoring_strategy == LEAST_ALLOCATED

    # -- filter

    def _request(self, state: CycleState) -> Resources:
        req = state.requests
        if req.scalars and (self.ignored_resources or self.ignored_resource_groups):
            cached = state.get(_REQUEST_KEY)
            if isinstance(cached, Resources):
                return cached
            req = req.copy()
            for name in list(req.scalars):
                if _is_extended(name) and (name in self.ignored_resources
                                           or name.split("/", 1)[0] in self.ignored_resource_groups):
                    del req.scalars[name]
            state.write(_REQUEST_KEY, req)
        return req

    def filter(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> FilterResult:
        req = self._request(state)
        # Cheap gate for the common case; the exact (upstream-ordered) reasons only when it fails.
        if (node_info.free_pods > 0 and req.milli_cpu <= node_info.free_milli_cpu
                and req.memory <= node_info.free_memory and not req.scalars):
            return None
        return req.insufficient(node_info.requested, node_info.allocatable) or None

    def filter_all(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> list[FilterResult]:
        """``filter`` for many nodes at once (same answers, fewer Python calls)."""
        req = self._request(state)
        if req.scalars:
            return [self.filter(pod, ni, state) for ni in nodes]
        cpu, mem = req.milli_cpu, req.memory
        return [None if (ni.free_pods > 0 and cpu <= ni.free_milli_cpu and mem <= ni.free_memory)
                else (req.insufficient(ni.requested, ni.allocatable) or None) for ni in nodes]

    # -- score

    def score(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> int:
        alloc = node_info.allocatable
        pi = state.pod_info
        scorer = least_requested_score if self._least else most_requested_score
        if self._default_resources:
            a_cpu, a_mem = alloc.milli_cpu, alloc.memory
            if a_cpu and a_mem:
                return (scorer(node_info.non_zero_cpu + pi.non_zero_cpu, a_cpu)
                        + scorer(node_info.non_zero_memory + pi.non_zero_memory, a_mem)) // 2
        total = weights = 0
        for name, weight in self.resources:
            if name == "cpu":
                capacity, requested = alloc.milli_cpu, node_info.non_zero_cpu + pi.non_zero_cpu
            elif name == "memory":
                capacity, requested = alloc.memory, node_info.non_zero_memory + pi.non_zero_memory
            else:
                pod_request = pi.requests.scalars.get(name, 0)
                if pod_request == 0 and name != "ephemeral-storage":
                    continue  # an extended resource the pod does not ask for is not scored
                capacity = alloc.scalars.get(name, 0)
                requested = node_info.requested.scalars.get(name, 0) + pod_request
            if capacity == 0:
                continue
            total += scorer(requested, capacity) * weight
            weights += weight
        return total // weights if weights else 0

    def score_all(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> list[int]:
        """``score`` for many nodes at once (same answers, fewer Python calls)."""
        if not self._default_resources:
            return [self.score(pod, ni, state) for ni in nodes]
        pi = state.pod_info
        pod_cpu, pod_mem = pi.non_zero_cpu, pi.non_zero_memory
        least = self._least
        out: list[int] = []
        append = out.append
        for ni in nodes:
            alloc = ni.allocatable
            a_cpu, a_mem = alloc.milli_cpu, alloc.memory
            if not a_cpu or not a_mem:
                append(self.score(pod, ni, state))
                continue
            r_cpu = ni.non_zero_cpu + pod_cpu
            r_mem = ni.non_zero_memory + pod_mem
            if least:
                s_cpu = (a_cpu - r_cpu) * MAX_NODE_SCORE // a_cpu if r_cpu <= a_cpu else 0
                s_mem = (a_mem - r_mem) * MAX_NODE_SCORE // a_mem if r_mem <= a_mem else 0
            else:
                s_cpu = min(r_cpu, a_cpu) * MAX_NODE_SCORE // a_cpu
                s_mem = min(r_mem, a_mem) * MAX_NODE_SCORE // a_mem
            append((s_cpu + s_mem) // 2)
        return out
