"""InterPodAffinity: place pods near, or away from, pods matching label selectors per topology domain.

Why this exists: ``podAffinity`` / ``podAntiAffinity`` are how workloads co-locate or spread
(one replica per node with ``topologyKey: kubernetes.io/hostname``, one per zone with
``topology.kubernetes.io/zone``). This follows kube-scheduler's plugin, for any topology key:

Filter (PreFilter counts per (topologyKey, value) pair once per cycle, Filter only looks up):

1. the pod's required affinity: every term's topology key must be on the node and some pod
   matching the term must run in the node's domain, except the first pod of a group that matches
   its own terms when nothing else matches ("node(s) didn't match pod affinity rules",
   unresolvable);
2. the pod's required anti-affinity: no matching pod in the node's domain for any term
   ("node(s) didn't match pod anti-affinity rules");
3. existing pods' required anti-affinity: no pod whose term matches the incoming pod in the same
   domain ("node(s) didn't satisfy existing pods anti-affinity rules").

Score: the incoming pod's preferred (anti-)affinity weights, existing pods' preferred terms that
match the incoming pod, and existing pods' required affinity terms (hardPodAffinityWeight 1),
summed per domain and normalized min..max to 0..100.

Terms select namespaces as upstream: listed ``namespaces``, or ``namespaceSelector`` over the
labels in :attr:`CycleState.namespace_labels` (``{}`` selects all), or the owner's namespace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from services.scheduler.framework import (
    MAX_NODE_SCORE,
    AffinityTerm,
    CycleState,
    FilterResult,
    NodeInfo,
    Obj,
    PodInfo,
    Unresolvable,
)

__all__ = [
    "ERR_REASON_AFFINITY_RULES_NOT_MATCH",
    "ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH",
    "ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH",
    "InterPodAffinity",
]

ERR_REASON_AFFINITY_RULES_NOT_MATCH: Final = Unresolvable("node(s) didn't match pod affinity rules")
ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: Final = "node(s) didn't match pod anti-affinity rules"
ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: Final = "node(s) didn't satisfy existing pods anti-affinity rules"

_FILTER_KEY: Final = "InterPodAffinity/filter"
_SCORE_KEY: Final = "InterPodAffinity/score"

Pair = tuple[str, str]


class _FilterState:
    __slots__ = ("affinity_counts", "anti_affinity_counts", "existing_anti_affinity_counts")

    def __init__(self) -> None:
        self.existing_anti_affinity_counts: dict[Pair, int] = {}
        self.affinity_counts: dict[Pair, int] = {}
        self.anti_affinity_counts: dict[Pair, int] = {}


def _bump(counts: dict[Pair, int], labels: Mapping[str, str], key: str, value: int) -> None:
    tv = labels.get(key)
    if tv is not None:
        pair = (key, tv)
        counts[pair] = counts.get(pair, 0) + value


def _matches_all(terms: Sequence[AffinityTerm], pi: PodInfo, ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
    if not terms:
        return False
    return all(t.matches(pi.namespace, pi.labels, ns_labels) for t in terms)


class InterPodAffinity:
    """Required pod (anti-)affinity filter and preferred pod (anti-)affinity score."""

    name = "InterPodAffinity"

    def __init__(self, weight: int = 2, hard_pod_affinity_weight: int = 1,
                 ignore_preferred_terms_of_existing_pods: bool = False) -> None:
        self.weight = weight
        self.hard_pod_affinity_weight = hard_pod_affinity_weight
        self.ignore_preferred_terms_of_existing_pods = ignore_preferred_terms_of_existing_pods

    # -- filter

    def pre_filter(self, pod: Obj, state: CycleState) -> bool:
        pi = state.pod_info
        ns_labels = state.namespace_labels
        s = _FilterState()
        for ni in state.all_nodes:
            if not ni.pods_with_required_anti_affinity:
                continue
            labels = ni.labels
            for existing in ni.pods_with_required_anti_affinity.values():
                if existing.key == pi.key:
                    continue
                for t in existing.required_anti_affinity_terms:
                    if t.matches(pi.namespace, pi.labels, ns_labels):
                        _bump(s.existing_anti_affinity_counts, labels, t.topology_key, 1)
        affinity, anti = pi.required_affinity_terms, pi.required_anti_affinity_terms
        if affinity or anti:
            for ni in state.all_nodes:
                labels = ni.labels
                for existing in ni.pod_infos.values():
                    if existing.key == pi.key:
                        continue
                    if _matches_all(affinity, existing, ns_labels):
                        for t in affinity:
                            _bump(s.affinity_counts, labels, t.topology_key, 1)
                    for t in anti:
                        if t.matches(existing.namespace, existing.labels, ns_labels):
                            _bump(s.anti_affinity_counts, labels, t.topology_key, 1)
        if not s.existing_anti_affinity_counts and not affinity and not anti:
            return False
        state.write(_FILTER_KEY, s)
        return True

    def filter(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> FilterResult:
        s = state.get(_FILTER_KEY)
        if not isinstance(s, _FilterState):
            if not self.pre_filter(pod, state):
                return None
            s = state.read(_FILTER_KEY)
            assert isinstance(s, _FilterState)
        pi = state.pod_info
        labels = node_info.labels
        if not _satisfies_affinity(s, pi, labels, state.namespace_labels):
            return ERR_REASON_AFFINITY_RULES_NOT_MATCH
        if s.anti_affinity_counts:
            for t in pi.required_anti_affinity_terms:
                tv = labels.get(t.topology_key)
                if tv is not None and s.anti_affinity_counts.get((t.topology_key, tv), 0) > 0:
                    return ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH
        for (key, value), count in s.existing_anti_affinity_counts.items():
            if count > 0 and labels.get(key) == value:
                return ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH
        return None

    # -- score

    def pre_score(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> bool:
        pi = state.pod_info
        has_constraints = bool(pi.preferred_affinity_terms or pi.preferred_anti_affinity_terms)
        if self.ignore_preferred_terms_of_existing_pods and not has_constraints:
            return False
        ns_labels = state.namespace_labels
        topology_score: dict[str, dict[str, int]] = {}

        def process(term: AffinityTerm, weight: int, target: PodInfo, node_labels: Mapping[str, str]) -> None:
            if term.matches(target.namespace, target.labels, ns_labels):
                tv = node_labels.get(term.topology_key)
                if tv is not None:
                    by_value = topology_score.setdefault(term.topology_key, {})
                    by_value[tv] = by_value.get(tv, 0) + weight

        for ni in state.all_nodes:
            existing_pods = ni.pod_infos if has_constraints else ni.pods_with_affinity
            if not existing_pods or not ni.labels:
                continue
            node_labels = ni.labels
            for existing in existing_pods.values():
                if existing.key == pi.key:
                    continue
                for t in pi.preferred_affinity_terms:
                    process(t, t.weight, existing, node_labels)
                for t in pi.preferred_anti_affinity_terms:
                    process(t, -t.weight, existing, node_labels)
                if not existing.has_affinity:
                    continue
                if self.hard_pod_affinity_weight > 0:
                    for t in existing.required_affinity_terms:
                        process(t, self.hard_pod_affinity_weight, pi, node_labels)
                for t in existing.preferred_affinity_terms:
                    process(t, t.weight, pi, node_labels)
                for t in existing.preferred_anti_affinity_terms:
                    process(t, -t.weight, pi, node_labels)
        if not topology_score:
            return False  # every node would score 0
        state.write(_SCORE_KEY, topology_score)
        return True

    def score(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> int:
        topology_score = state.get(_SCORE_KEY)
        if not isinstance(topology_score, dict):
            return 0
        labels = node_info.labels
        total = 0
        for key, by_value in topology_score.items():
            tv = labels.get(key)
            if tv is not None:
                total += by_value.get(tv, 0)
        return total

    def normalize(self, scores: dict[str, int]) -> dict[str, int]:
        if not scores:
            return {}
        lo, hi = min(scores.values()), max(scores.values())
        diff = hi - lo
        if diff <= 0:
            return dict.fromkeys(scores, 0)
        return {k: int(MAX_NODE_SCORE * ((v - lo) / diff)) for k, v in scores.items()}


def _satisfies_affinity(s: _FilterState, pi: PodInfo, labels: Mapping[str, str],
                        ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
    terms = pi.required_affinity_terms
    if not terms:
        return True
    pods_exist = True
    for t in terms:
        tv = labels.get(t.topology_key)
        if tv is None:
            return False  # every topology key must be on the node
        if s.affinity_counts.get((t.topology_key, tv), 0) <= 0:
            pods_exist = False
    if pods_exist:
        return True
    # The first pod of a group with affinity to itself may go anywhere its topology keys exist.
    return not s.affinity_counts and _matches_all(terms, pi, ns_labels)
