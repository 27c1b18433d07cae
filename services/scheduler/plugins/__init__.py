"""The scheduler's plugins and kube-scheduler's default profile built from them.

Why this exists: the scheduler service and tests need one place that says which filters run, in
which order (the order decides which reason a rejected node reports), and how scores are weighted.
The order and weights are upstream's default ``MultiPoint`` set (pkg/scheduler/apis/config/v1/
default_plugins.go): NodeUnschedulable, NodeName, TaintToleration (3), NodeAffinity (2),
NodePorts, NodeResourcesFit (1), InterPodAffinity (2), NodeResourcesBalancedAllocation (1), with
SelectorSpread (2) in PodTopologySpread's place. Volume, DRA and image-locality plugins are not
part of kubenats.
"""

from __future__ import annotations

from services.scheduler.framework import FilterPlugin, Profile, ScorePlugin
from services.scheduler.plugins.balanced_allocation import BalancedAllocation
from services.scheduler.plugins.inter_pod_affinity import InterPodAffinity
from services.scheduler.plugins.node_affinity import NodeAffinity
from services.scheduler.plugins.node_name import NodeName
from services.scheduler.plugins.node_ports import NodePorts
from services.scheduler.plugins.node_resources_fit import LEAST_ALLOCATED, MOST_ALLOCATED, NodeResourcesFit
from services.scheduler.plugins.node_unschedulable import NodeUnschedulable
from services.scheduler.plugins.spread import SelectorSpread
from services.scheduler.plugins.taint_toleration import TaintToleration

__all__ = [
    "LEAST_ALLOCATED",
    "MOST_ALLOCATED",
    "BalancedAllocation",
    "InterPodAffinity",
    "NodeAffinity",
    "NodeName",
    "NodePorts",
    "NodeResourcesFit",
    "NodeUnschedulable",
    "SelectorSpread",
    "TaintToleration",
    "default_plugins",
    "default_profile",
]


def default_plugins(scoring_strategy: str = LEAST_ALLOCATED) -> tuple[list[FilterPlugin], list[ScorePlugin]]:
    """Fresh (filters, scores) of the default profile; ``scoring_strategy`` is NodeResourcesFit's."""
    taints = TaintToleration(weight=3)
    affinity = NodeAffinity(weight=2)
    fit = NodeResourcesFit(scoring_strategy=scoring_strategy, weight=1)
    pod_affinity = InterPodAffinity(weight=2)
    filters: list[FilterPlugin] = [NodeUnschedulable(), NodeName(), taints, affinity, NodePorts(), fit,
                                   pod_affinity]
    scores: list[ScorePlugin] = [taints, affinity, fit, SelectorSpread(weight=2), pod_affinity,
                                 BalancedAllocation(weight=1)]
    return filters, scores


def default_profile(scoring_strategy: str = LEAST_ALLOCATED, percentage_of_nodes_to_score: int = 0) -> Profile:
    """The default-scheduler profile (``percentage_of_nodes_to_score`` 0 = upstream's adaptive sampling)."""
    filters, scores = default_plugins(scoring_strategy)
    return Profile(filters, scores, percentage_of_nodes_to_score)
