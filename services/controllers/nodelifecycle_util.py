"""The decisions of the node lifecycle controller that need no API: pure, so tests drive them from tables.

- `NodeHealth` / `observe`: when the controller last heard from a node. Like upstream's
  nodeHealthMap the clock is local: a node's probe time moves to *now* whenever its Ready
  condition's heartbeat changes or its Lease's renewTime advances, so clock skew between
  kubelet and controller does not matter, and a restarted controller gives every node a fresh
  grace period.
- `mark_unknown`: the conditions a silent node gets (Ready, MemoryPressure, DiskPressure and
  PIDPressure become Unknown, "Kubelet stopped posting node status.").
- `no_schedule_taints`: the NoSchedule taints a node's conditions and `spec.unschedulable`
  call for (TaintNodesByCondition).
- `zone_state` and `TokenBucket`: disruption handling, so that a network partition that makes
  a whole zone (or cluster) look dead does not evict everything at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .controller_utils import Obj, meta, now_rfc3339, parse_time, status
from .taints import (
    NO_EXECUTE,
    NO_SCHEDULE,
    TAINT_DISK_PRESSURE,
    TAINT_MEMORY_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE,
    TAINT_NOT_READY,
    TAINT_PID_PRESSURE,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
)

UNREACHABLE_NO_EXECUTE: Obj = {"key": TAINT_UNREACHABLE, "effect": NO_EXECUTE}
NOT_READY_NO_EXECUTE: Obj = {"key": TAINT_NOT_READY, "effect": NO_EXECUTE}
CONDITION_TAINTS: dict[str, dict[str, str]] = {
    "Ready": {"False": TAINT_NOT_READY, "Unknown": TAINT_UNREACHABLE},
    "MemoryPressure": {"True": TAINT_MEMORY_PRESSURE},
    "DiskPressure": {"True": TAINT_DISK_PRESSURE},
    "NetworkUnavailable": {"True": TAINT_NETWORK_UNAVAILABLE},
    "PIDPressure": {"True": TAINT_PID_PRESSURE},
}
CONDITION_TAINT_KEYS = frozenset(k for m in CONDITION_TAINTS.values() for k in m.values()) | {TAINT_UNSCHEDULABLE}
UNKNOWN_CONDITION_TYPES = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
EXCLUDE_DISRUPTION = "node.kubernetes.io/exclude-disruption"
STATE_INITIAL, STATE_NORMAL, STATE_PARTIAL, STATE_FULL = "Initial", "Normal", "PartialDisruption", "FullDisruption"


def node_condition(node: Obj | None, ctype: str) -> Obj | None:
    for c in status(node or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def zone_key(node: Obj) -> str:
    """nodetopology.GetZoneKey: region and zone labels, "" when neither is set."""
    labels = meta(node).get("labels") or {}
    region = labels.get("topology.kubernetes.io/region") or labels.get("failure-domain.beta.kubernetes.io/region") or ""
    zone = labels.get("topology.kubernetes.io/zone") or labels.get("failure-domain.beta.kubernetes.io/zone") or ""
    return f"{region}:\x00:{zone}" if region or zone else ""


@dataclass
class NodeHealth:
    probe: float  # local (monotonic) time we last heard from the node
    ready: Obj | None  # the Ready condition as last seen
    renew_time: float | None  # the Lease's renewTime as last seen (epoch seconds)


def observe(prev: NodeHealth | None, node: Obj, lease: Obj | None, now: float,
            wall: Callable[[], float] = time.time) -> NodeHealth:
    """tryUpdateNodeHealth's bookkeeping: the node's new health record."""
    ready = node_condition(node, "Ready")
    if ready is None:
        if prev is not None:
            health = NodeHealth(prev.probe, None, prev.renew_time)
        else:  # never posted: the startup grace period runs from the creation time
            created = parse_time(meta(node).get("creationTimestamp")) or wall()
            health = NodeHealth(now - max(wall() - created, 0.0), None, None)
    elif prev is None or prev.ready is None:
        health = NodeHealth(now, dict(ready), prev.renew_time if prev else None)
    elif prev.ready.get("lastHeartbeatTime") != ready.get("lastHeartbeatTime"):
        health = NodeHealth(now, dict(ready), prev.renew_time)
    else:
        health = NodeHealth(prev.probe, dict(ready), prev.renew_time)
    renew = parse_time(((lease or {}).get("spec") or {}).get("renewTime"))
    if renew is not None and (health.renew_time is None or renew > health.renew_time):
        health.renew_time = renew
        health.probe = now
    return health


def mark_unknown(node: Obj, stamp: str | None = None) -> bool:
    """Set the kubelet-owned conditions to Unknown in place; True when the Ready one changed."""
    now = stamp or now_rfc3339()
    st = node.setdefault("status", {})
    conditions = st.setdefault("conditions", [])
    before = dict(node_condition(node, "Ready") or {})
    for ctype in UNKNOWN_CONDITION_TYPES:
        c = node_condition(node, ctype)
        if c is None:
            conditions.append({"type": ctype, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                               "message": "Kubelet never posted node status.",
                               "lastHeartbeatTime": meta(node).get("creationTimestamp"), "lastTransitionTime": now})
        elif c.get("status") != "Unknown":
            c.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                     lastTransitionTime=now)
    return before != (node_condition(node, "Ready") or {})


def no_schedule_taints(node: Obj) -> list[Obj]:
    """The NoSchedule taints the node's conditions and unschedulable flag call for."""
    out = []
    for c in status(node).get("conditions") or []:
        key = CONDITION_TAINTS.get(str(c.get("type")), {}).get(str(c.get("status")))
        if key:
            out.append({"key": key, "effect": NO_SCHEDULE})
    if (node.get("spec") or {}).get("unschedulable"):
        out.append({"key": TAINT_UNSCHEDULABLE, "effect": NO_SCHEDULE})
    return out


def no_schedule_diff(node: Obj) -> tuple[list[Obj], list[Obj]]:
    """(taints to add, taints to remove) among the controller-owned NoSchedule taints."""
    want = no_schedule_taints(node)
    have = [t for t in (node.get("spec") or {}).get("taints") or []
            if t.get("effect") == NO_SCHEDULE and t.get("key") in CONDITION_TAINT_KEYS]
    add = [t for t in want if not any(h.get("key") == t["key"] for h in have)]
    remove = [h for h in have if not any(h.get("key") == t["key"] for t in want)]
    return add, remove


def zone_state(ready_conditions: list[Obj | None], unhealthy_threshold: float) -> tuple[int, str]:
    """ComputeZoneState: (not ready nodes, state)."""
    ready = sum(1 for c in ready_conditions if c is not None and c.get("status") == "True")
    not_ready = len(ready_conditions) - ready
    if ready == 0 and not_ready > 0:
        return not_ready, STATE_FULL
    if not_ready > 2 and not_ready / (not_ready + ready) >= unhealthy_threshold:
        return not_ready, STATE_PARTIAL
    return not_ready, STATE_NORMAL


class TokenBucket:
    """flowcontrol's token bucket with burst 1 (qps <= 0: never admits), on an injectable clock."""

    def __init__(self, qps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.qps = qps
        self._tokens = 1.0
        self._at = clock()

    def swap(self, qps: float) -> None:
        self._refill()
        self.qps = qps

    def _refill(self) -> None:
        now = self._clock()
        if self.qps > 0:
            self._tokens = min(1.0, self._tokens + (now - self._at) * self.qps)
        self._at = now

    def try_accept(self) -> bool:
        self._refill()
        if self.qps > 0 and self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until a token is available (inf when the bucket is closed)."""
        self._refill()
        if self.qps <= 0:
            return float("inf")
        return max(0.0, (1.0 - self._tokens) / self.qps)
