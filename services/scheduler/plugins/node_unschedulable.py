"""NodeUnschedulable: keep pods off cordoned nodes (``spec.unschedulable: true``).

Why this exists: ``kubectl cordon`` sets ``spec.unschedulable`` and expects the scheduler to stop
placing pods there, unless the pod tolerates the ``node.kubernetes.io/unschedulable:NoSchedule``
taint (DaemonSet pods do). Same reason text and status as kube-scheduler's plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from services.scheduler.framework import CycleState, FilterResult, NodeInfo, Obj, Unresolvable
from services.scheduler.plugins.taint_toleration import tolerates

__all__ = ["ERR_REASON_UNSCHEDULABLE", "NodeUnschedulable"]

ERR_REASON_UNSCHEDULABLE: Final = Unresolvable("node(s) were unschedulable")
_UNSCHEDULABLE_TAINT: Final = ("node.kubernetes.io/unschedulable", "", "NoSchedule")


class NodeUnschedulable:
    """Reject unschedulable nodes unless the pod tolerates the unschedulable taint."""

    name = "NodeUnschedulable"

    def pre_filter(self, pod: Obj, state: CycleState) -> bool:
        # A pod tolerating the taint passes every node: skip the plugin for this cycle.
        return not tolerates(state.pod_info.tolerations, _UNSCHEDULABLE_TAINT)

    def filter(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> FilterResult:
        if not node_info.unschedulable:
            return None
        if tolerates(state.pod_info.tolerations, _UNSCHEDULABLE_TAINT):
            return None
        return ERR_REASON_UNSCHEDULABLE

    def filter_all(self, pod: Obj, nodes: Sequence[NodeInfo], state: CycleState) -> list[FilterResult]:
        """``filter`` for many nodes at once (same answers, fewer Python calls)."""
        if tolerates(state.pod_info.tolerations, _UNSCHEDULABLE_TAINT):
            return [None] * len(nodes)
        return [ERR_REASON_UNSCHEDULABLE if ni.unschedulable else None for ni in nodes]
