"""TaintToleration: keep pods off nodes whose NoSchedule/NoExecute taints they do not tolerate.

Why this exists: taints are how nodes repel pods (``node.kubernetes.io/not-ready``, dedicated
nodes, control planes); kube-scheduler's TaintToleration plugin filters on NoSchedule and
NoExecute taints and scores down nodes with untolerated PreferNoSchedule ones. The matching rules
are ``Toleration.ToleratesTaint``: an effect must match unless the toleration's is empty, a key
must match unless the toleration's is empty, ``Exists`` tolerates any value and ``Equal`` (or no
operator) needs the same value. The reason text is upstream's:
``node(s) had untolerated taint {key: value}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from services.scheduler.framework import (
    CycleState,
    FilterResult,
    NodeInfo,
    Obj,
    Taint,
    Unresolvable,
    default_normalize,
)

__all__ = ["TaintToleration", "Toleration", "tolerates", "untolerated_taint"]

Toleration = tuple[str, str, str, str]  # key, operator, value, effect

_CACHE_KEY: Final = "TaintToleration/filter"


def tolerates(tolerations: Iterable[Toleration], taint: Taint) -> bool:
    """True if any toleration tolerates ``taint`` (``TolerationsTolerateTaint``)."""
    key, value, effect = taint
    for t_key, t_op, t_value, t_effect in tolerations:
        if t_effect and t_effect != effect:
            continue
        if t_key and t_key != key:
            continue
        if t_op == "Exists" or ((t_op == "" or t_op == "Equal") and t_value == value):
            return True
    return False


def untolerated_taint(tolerations: Sequence[Toleration], taints: Iterable[Taint]) -> Taint | None:
    """The first taint (in node order) no toleration tolerates (``FindMatchingUntoleratedTaint``)."""
    for taint in taints:
        if not tolerates(tolerations, taint):
            return taint
    return None


class TaintToleration:
    """Filter on NoSchedule/NoExecute taints; score by untolerated PreferNoSchedule taints (fewer is better)."""

    name = "TaintToleration"

    def __init__(self, weight: int = 3) -> None:
        self.weight = weight

    def filter(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> FilterResult:
        taints = node_info.no_schedule_taints
        if not taints:
            return None
        # Nodes mostly share a few taint sets: answer each set once per cycle.
        cache = state.get(_CACHE_KEY)
        if not isinstance(cache, dict):
            cache = {}
            state.write(_CACHE_KEY, cache)
        try:
            result: FilterResult = cache[taints]
        except KeyError:
            bad = untolerated_taint(state.pod_info.tolerations, taints)
            result = None if bad is None else Unresolvable(f"node(s) had untolerated taint {{{bad[0]}: {bad[1]}}}")
            cache[taints] = result
        return result

    def filter_all(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> list[FilterResult]:
        """``filter`` for many nodes at once (same answers, fewer Python calls)."""
        return [self.filter(pod, ni, state) if ni.no_schedule_taints else None for ni in nodes]

    def pre_score(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> bool:
        # Only tolerations with no effect or PreferNoSchedule count when scoring.
        state.write("TaintToleration/prefer", tuple(
            t for t in state.pod_info.tolerations if t[3] in ("", "PreferNoSchedule")))
        return True

    def score(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> int:
        taints = node_info.prefer_no_schedule_taints
        if not taints:
            return 0
        tolerations = state.get("TaintToleration/prefer")
        if not isinstance(tolerations, tuple):
            tolerations = tuple(t for t in state.pod_info.tolerations if t[3] in ("", "PreferNoSchedule"))
        return sum(1 for taint in taints if not tolerates(tolerations, taint))

    def score_all(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> list[int]:
        """``score`` for many nodes at once (same answers, fewer Python calls)."""
        return [self.score(pod, ni, state) if ni.prefer_no_schedule_taints else 0 for ni in nodes]

    def normalize(self, scores: dict[str, int]) -> dict[str, int]:
        return default_normalize(scores, reverse=True)
