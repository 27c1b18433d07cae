"""NodeName: a pod that names its node in ``spec.nodeName`` fits only that node.

Why this exists: kube-scheduler's NodeName filter; the reason text is upstream's and the status
is unresolvable (preemption cannot move a pod to another node name).
"""

from __future__ import annotations

from typing import Final

from services.scheduler.framework import CycleState, FilterResult, NodeInfo, Obj, Unresolvable

__all__ = ["ERR_REASON_NODE_NAME", "NodeName"]

ERR_REASON_NODE_NAME: Final = Unresolvable("node(s) didn't match the requested node name")


class NodeName:
    """Reject every node but the one in ``spec.nodeName`` (when set)."""

    name = "NodeName"

    def pre_filter(self, pod: Obj, state: CycleState) -> bool:
        return bool((pod.get("spec") or {}).get("nodeName"))

    def filter(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> FilterResult:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if not wanted or wanted == node_info.name:
            return None
        return ERR_REASON_NODE_NAME
