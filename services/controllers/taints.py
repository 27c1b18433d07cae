"""Taints, tolerations and node affinity as the node lifecycle and DaemonSet controllers need them.

Three controllers reason about whether a pod belongs on a node without asking the scheduler:
the node lifecycle controller adds and removes the `node.kubernetes.io/*` taints, the taint
eviction part of it deletes pods whose NoExecute taints they do not tolerate (or tolerate only
for `tolerationSeconds`), and the DaemonSet controller decides on which nodes a daemon pod
should run (nodeSelector, required node affinity, NoSchedule/NoExecute taints). The rules are
upstream's `v1helper` (ToleratesTaint, FindMatchingUntoleratedTaint, GetMatchingTolerations),
`nodeaffinity.GetRequiredNodeAffinity` and `taints.TaintExists`; they are pure functions here so
every rule can be checked from a table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Obj = dict[str, Any]

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"
_INT64 = re.compile(r"[+-]?[0-9]+")


def node_taints(node: Obj) -> list[Obj]:
    return [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]


def pod_tolerations(pod: Obj) -> list[Obj]:
    return [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, dict)]


# ---- tolerations ---------------------------------------------------------------------------
def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Toleration.ToleratesTaint: effect and key match unless empty; Exists, or Equal with the value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    return op == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated_by(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def untolerated_taint(taints: Iterable[Obj], tolerations: Sequence[Mapping[str, Any]],
                      effects: Iterable[str] = (NO_SCHEDULE, NO_EXECUTE)) -> Obj | None:
    """FindMatchingUntoleratedTaint restricted to the given effects: the first taint not tolerated."""
    wanted = set(effects)
    for taint in taints:
        if taint.get("effect") in wanted and not tolerated_by(tolerations, taint):
            return taint
    return None


def matching_tolerations(taints: Sequence[Obj], tolerations: Sequence[Obj]) -> list[Obj] | None:
    """GetMatchingTolerations: the tolerations used to tolerate every taint, None if one is not."""
    used: list[Obj] = []
    for taint in taints:
        found = [t for t in tolerations if tolerates(t, taint)]
        if not found:
            return None
        used.extend(t for t in found if t not in used)
    return used


def min_toleration_seconds(tolerations: Sequence[Obj]) -> float:
    """getMinTolerationTime: the smallest tolerationSeconds (negatives count as 0), -1 for forever."""
    best = -1.0
    for t in tolerations:
        seconds = t.get("tolerationSeconds")
        if seconds is None:
            continue
        value = max(float(seconds), 0.0)
        if best < 0 or value < best:
            best = value
    return best


# ---- taint edits ---------------------------------------------------------------------------
def taint_matches(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Taint.MatchTaint: same key and effect (the value does not matter)."""
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def with_taints(taints: Sequence[Obj], add: Sequence[Obj], remove: Sequence[Obj]) -> list[Obj] | None:
    """The node's taints with `remove` removed and `add` added (keeping an existing timeAdded);
    None when nothing changes (SwapNodeControllerTaint / AddOrUpdateTaintOnNode)."""
    out = [t for t in taints if not any(taint_matches(t, r) for r in remove)]
    for new in add:
        if not any(taint_matches(t, new) and (t.get("value") or "") == (new.get("value") or "") for t in out):
            out = [t for t in out if not taint_matches(t, new)]
            out.append(dict(new))
    return None if out == list(taints) else out


# ---- node affinity -------------------------------------------------------------------------
def _requirement_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = str(expr.get("key") or ""), expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        have, want = labels[key], values[0]
        if not (_INT64.fullmatch(have) and _INT64.fullmatch(want)):
            return False
        return int(have) > int(want) if op == "Gt" else int(have) < int(want)
    return False


def term_matches(term: Mapping[str, Any], node: Obj) -> bool:
    """A NodeSelectorTerm: its expressions and fields are ANDed; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    if not all(_requirement_matches(e, labels) for e in exprs):
        return False
    for f in fields:
        values = [str(v) for v in f.get("values") or []]
        if f.get("key") != "metadata.name" or len(values) != 1 or f.get("operator") not in ("In", "NotIn"):
            return False
        if (meta.get("name") == values[0]) != (f.get("operator") == "In"):
            return False
    return True


def required_affinity_matches(pod: Obj, node: Obj) -> bool:
    """GetRequiredNodeAffinity(pod).Match(node): nodeSelector and the required terms (ORed)."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(term_matches(t, node) for t in required.get("nodeSelectorTerms") or [] if isinstance(t, dict))


def node_name_affinity(affinity: Obj | None, node_name: str) -> Obj:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: require `metadata.name` = node_name, keeping the
    rest of the affinity (the required node selector terms are replaced)."""
    out: Obj = dict(affinity or {})
    node_affinity: Obj = dict(out.get("nodeAffinity") or {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    out["nodeAffinity"] = node_affinity
    return out


def target_node_name(pod: Obj) -> str:
    """GetTargetNodeName: spec.nodeName, or the node a pending pod's `metadata.name` affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution")) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for f in (term or {}).get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return str(f["values"][0])
    return ""


# ---- DaemonSet defaults ----------------------------------------------------------------------
def add_or_update_toleration(tolerations: list[Obj], new: Obj) -> None:
    """AddOrUpdateTolerationInPodSpec: replace a toleration with the same key, operator, value
    and effect, else append."""
    def same(t: Obj) -> bool:
        return all((t.get(k) or "") == (new.get(k) or "") for k in ("key", "operator", "value", "effect"))
    for i, t in enumerate(tolerations):
        if same(t):
            tolerations[i] = dict(new)
            return
    tolerations.append(dict(new))


def add_daemon_pod_tolerations(pod_spec: Obj) -> None:
    """AddOrUpdateDaemonPodTolerations: daemon pods survive node problems and ignore pressure."""
    tolerations: list[Obj] = [t for t in pod_spec.get("tolerations") or [] if isinstance(t, dict)]
    for key in (TAINT_NOT_READY, TAINT_UNREACHABLE):
        add_or_update_toleration(tolerations, {"key": key, "operator": "Exists", "effect": NO_EXECUTE})
    for key in (TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE, TAINT_PID_PRESSURE, TAINT_UNSCHEDULABLE):
        add_or_update_toleration(tolerations, {"key": key, "operator": "Exists", "effect": NO_SCHEDULE})
    if pod_spec.get("hostNetwork"):
        add_or_update_toleration(tolerations, {"key": TAINT_NETWORK_UNAVAILABLE, "operator": "Exists",
                                               "effect": NO_SCHEDULE})
    pod_spec["tolerations"] = tolerations


def should_run_on(pod: Obj, node: Obj) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (should run, should continue running) for a daemon pod on node.

    A node it cannot fit (name or affinity) gets neither; untolerated NoSchedule/NoExecute
    taints stop new pods, and only an untolerated NoExecute one removes a running pod."""
    spec = pod.get("spec") or {}
    name = (node.get("metadata") or {}).get("name")
    if spec.get("nodeName") and spec["nodeName"] != name:
        return False, False
    if not required_affinity_matches(pod, node):
        return False, False
    taints, tolerations = node_taints(node), pod_tolerations(pod)
    if untolerated_taint(taints, tolerations) is None:
        return True, True
    return False, untolerated_taint(taints, tolerations, (NO_EXECUTE,)) is None



def pod_node_index(pod: Obj) -> list[str]:
    """Index pods by `spec.nodeName` (the informer index `node-name`)."""
    node = (pod.get("spec") or {}).get("nodeName")
    return [str(node)] if node else []
