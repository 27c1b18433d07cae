"""SelectorSpread: spread the replicas of one controller across nodes.

Why this exists: without it, replicas of a Deployment land wherever resources look best, often
together, and one node failure takes several down. kube-scheduler does this with
PodTopologySpread's system-default constraints (formerly the SelectorSpread plugin); kubenats
keeps SelectorSpread's per-node rule, keyed by the controller owner: a node scores the number of
pods there with the same controller ``ownerReference`` uid, normalized as upstream
``100 * (max - count) / max`` so the node with the fewest siblings scores 100. Counts are kept
incrementally on :class:`NodeInfo` (``owner_counts``), so scoring a node is one dict lookup.
Pods without a controller are not scored.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.scheduler.framework import MAX_NODE_SCORE, CycleState, NodeInfo, Obj

__all__ = ["SelectorSpread"]


class SelectorSpread:
    """Fewer pods of the same controller on a node = higher score."""

    name = "SelectorSpread"

    def __init__(self, weight: int = 2) -> None:
        self.weight = weight

    def pre_score(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> bool:
        return state.pod_info.controller_uid is not None

    def score(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> int:
        uid = state.pod_info.controller_uid
        if uid is None:
            return 0
        return node_info.owner_counts.get(uid, 0)

    def score_all(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> list[int]:
        """``score`` for many nodes at once (same answers, fewer Python calls)."""
        uid = state.pod_info.controller_uid
        if uid is None:
            return [0] * len(nodes)
        return [ni.owner_counts.get(uid, 0) for ni in nodes]

    def normalize(self, scores: dict[str, int]) -> dict[str, int]:
        max_count = max(scores.values(), default=0)
        if max_count <= 0:
            return dict.fromkeys(scores, MAX_NODE_SCORE)
        return {k: int(MAX_NODE_SCORE * ((max_count - v) / max_count)) for k, v in scores.items()}
