"""The node lifecycle controller: notices dead nodes, taints them, and gets their pods evicted.

A port of pkg/controller/nodelifecycle (with the taint manager, `taint_eviction`). Kubelets
prove they are alive by renewing their Lease in `kube-node-lease` (and by posting node status);
every `monitor_period` (--node-monitor-period, 5 s) this controller checks each node, and one it
has not heard from for `grace_period` (--node-monitor-grace-period, 40 s; 60 s for a node that
never posted status) gets its Ready, MemoryPressure, DiskPressure and PIDPressure conditions set
to Unknown ("Kubelet stopped posting node status."), its pods' Ready condition set to False
(MarkPodsNotReady, so Services stop sending them traffic), and, on the next pass, the
`node.kubernetes.io/unreachable:NoExecute` taint; a node reporting Ready=False gets
`node.kubernetes.io/not-ready:NoExecute` instead. The matching NoSchedule taints follow the
conditions on every node update (TaintNodesByCondition). Pods then leave through taint-based
eviction, and their owners recreate them elsewhere. A node that is Ready again loses the
NoExecute taints.

Tainting is rate limited per zone (--node-eviction-rate, 0.1 nodes/s; lower or stopped in a
zone where more than --unhealthy-zone-threshold of the nodes are down), and when every node of
every zone is down the controller assumes a problem on its own side (master disruption mode):
it evicts nothing and removes the NoExecute taints until some node is Ready again.

Queue keys: `monitor` (the periodic pass), `node:<name>` (NoSchedule taints of one node) and
`pod:<ns>/<name>` (taint eviction of one pod).
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from shared.api.resources import BY_PLURAL
from shared.errors import ApiError
from shared.informer import key_of
from shared.log import event
from shared.workqueue import WorkQueue

from .base import ControllerContext, ensure_index
from .controller_utils import Obj, meta, now_rfc3339, pod_condition, uid_of
from .nodelifecycle_util import (
    EXCLUDE_DISRUPTION,
    NOT_READY_NO_EXECUTE,
    STATE_FULL,
    STATE_INITIAL,
    STATE_PARTIAL,
    UNREACHABLE_NO_EXECUTE,
    NodeHealth,
    TokenBucket,
    mark_unknown,
    no_schedule_diff,
    node_condition,
    observe,
    zone_key,
    zone_state,
)
from .taint_eviction import POD_PREFIX, TaintEvictor
from .taints import node_taints, pod_node_index, taint_matches, with_taints

log = logging.getLogger("kubenats.controllers.nodelifecycle")

NODES = BY_PLURAL[("", "nodes")]
PODS = BY_PLURAL[("", "pods")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
NODE_LEASE_NAMESPACE = "kube-node-lease"
MONITOR = "monitor"
NODE_PREFIX = "node:"
STATUS_UPDATE_RETRIES = 5


def _ref(obj: Obj, kind: str) -> Obj:
    """The object with its kind, for the event recorder (cached list items may lack it)."""
    return {**obj, "kind": obj.get("kind") or kind, "apiVersion": obj.get("apiVersion") or "v1"}


class NodeLifecycleController:
    name = "nodelifecycle"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.nodes = ctx.informers.get(NODES)
        self.pods = ctx.informers.get(PODS)
        self.leases = ctx.informers.get(LEASES)
        ensure_index(self.pods, "node-name", pod_node_index)
        self.recorder = ctx.recorder("node-controller")
        self.queue = WorkQueue("nodelifecycle")
        self.evictor = TaintEvictor(self.client, self.pods, self.nodes, self.queue,
                                    ctx.recorder("taint-eviction-controller"))
        # kube-controller-manager's flags (main.CONTROLLER_FLAGS sets them)
        self.monitor_period = 5.0
        self.grace_period = 40.0
        self.startup_grace_period = 60.0
        self.eviction_rate = 0.1
        self.secondary_eviction_rate = 0.01
        self.large_cluster_threshold = 50
        self.unhealthy_zone_threshold = 0.55
        self.clock = time.monotonic
        self.health: dict[str, NodeHealth] = {}
        self.known: dict[str, str] = {}  # node name -> uid, as seen by the monitor pass
        self.zone_states: dict[str, str] = {}
        self.tainters: dict[str, tuple[TokenBucket, list[str]]] = {}
        self.retry: set[str] = set()
        self.nodes.add_handler(self._node_added, self._node_updated, self._node_deleted)
        self.pods.add_handler(self.evictor.pod_added, self.evictor.pod_updated, self.evictor.pod_deleted)

    # ---- event handlers --------------------------------------------------------------------
    def _node_added(self, node: Obj) -> None:
        self.queue.add(MONITOR)
        self.queue.add(NODE_PREFIX + key_of(node))
        self.evictor.node_changed(None, node)

    def _node_updated(self, old: Obj, cur: Obj) -> None:
        self.queue.add(NODE_PREFIX + key_of(cur))
        self.evictor.node_changed(old, cur)

    def _node_deleted(self, node: Obj) -> None:
        self.queue.add(MONITOR)
        for pod in self.pods.by_index("node-name", key_of(node)):
            self.queue.add(POD_PREFIX + key_of(pod))

    # ---- reconcile -------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        if key == MONITOR:
            try:
                wait = await self.monitor()
            finally:
                self.queue.add_after(MONITOR, self.monitor_period)
            if wait is not None:
                self.queue.add_after(MONITOR, max(wait, 0.05))
        elif key.startswith(NODE_PREFIX):
            await self._no_schedule_pass(key[len(NODE_PREFIX):])
        elif key.startswith(POD_PREFIX):
            await self.evictor.sync(key[len(POD_PREFIX):])

    async def monitor(self) -> float | None:
        """monitorNodeHealth, then the rate-limited NoExecute tainting (doNoExecuteTaintingPass).
        Returns when to come back for nodes still waiting for a taint (None: nothing waits)."""
        nodes = self.nodes.list()
        names = {meta(n).get("name", "") for n in nodes}
        for node in nodes:
            name = meta(node).get("name", "")
            if name not in self.known:
                self.known[name] = uid_of(node)
                self._zone_tainter(zone_key(node))
                self.recorder.record(_ref(node, "Node"), "Normal", "RegisteredNode", f"Registered Node {name} in Controller")
                await self._mark_reachable(node)
        for name in [n for n in self.known if n not in names]:
            self.recorder.record({"kind": "Node", "apiVersion": "v1", "metadata": {"name": name, "uid": self.known[name]}},
                                 "Normal", "RemovingNode", f"Removing Node {name} from Controller")
            del self.known[name]
            self.health.pop(name, None)
            self.retry.discard(name)
        zone_conditions: dict[str, list[Obj | None]] = {}
        for cached in nodes:
            node = copy.deepcopy(cached)
            name = meta(node).get("name", "")
            try:
                observed, current = await self._update_health(node)
            except ApiError as e:
                event(log, "node_health_update_failed", logging.WARNING, node=name, error=e.message)
                continue
            if EXCLUDE_DISRUPTION not in (meta(node).get("labels") or {}):
                zone_conditions.setdefault(zone_key(node), []).append(current)
            if current is not None:
                await self._process_taint_based_eviction(node, observed)
                was_ready = observed.get("status") == "True"
                if current.get("status") != "True" and was_ready:
                    self.recorder.record(_ref(node, "Node"), "Normal", "NodeNotReady",
                                         f"Node {name} status is now: NodeNotReady")
                if (current.get("status") != "True" and was_ready) or (name in self.retry and not was_ready):
                    if not await self._mark_pods_not_ready(name):
                        self.retry.add(name)
                        continue
            self.retry.discard(name)
        await self._handle_disruption(zone_conditions, nodes)
        return await self._no_execute_tainting_pass()

    # ---- node health -----------------------------------------------------------------------
    async def _update_health(self, node: Obj) -> tuple[Obj, Obj | None]:
        """tryUpdateNodeHealth: (the Ready condition as observed, as it is now)."""
        name = meta(node).get("name", "")
        ready = node_condition(node, "Ready")
        observed: Obj = dict(ready) if ready is not None else {"type": "Ready", "status": "Unknown"}
        grace = self.startup_grace_period if ready is None else self.grace_period
        lease = self.leases.get(f"{NODE_LEASE_NAMESPACE}/{name}")
        now = self.clock()
        health = observe(self.health.get(name), node, lease, now)
        self.health[name] = health
        if now <= health.probe + grace:
            return observed, ready
        for attempt in range(STATUS_UPDATE_RETRIES):
            changed = mark_unknown(node)
            current = node_condition(node, "Ready")
            if not changed:
                return observed, current
            try:
                await self.client.update_status(NODES, node)
            except ApiError as e:
                if e.code != 409 or attempt == STATUS_UPDATE_RETRIES - 1:
                    raise
                node.clear()
                node.update(await self.client.get(NODES, "", name))
                continue
            event(log, "node_status_unknown", node=name, silent_for_s=round(now - health.probe, 1))
            self.health[name] = NodeHealth(health.probe, dict(current or {}), health.renew_time)
            return observed, current
        return observed, ready

    async def _mark_pods_not_ready(self, node_name: str) -> bool:
        """MarkPodsNotReady: the Ready condition of the node's pods becomes False.

        The cached pods are stripped (`pod_transform`), so the change is a strategic merge patch
        of the Ready condition on the status subresource (conditions merge by type: its reason
        and message and the other conditions stay as they are), guarded by the cached
        resourceVersion as upstream's UpdateStatus of the cached pod is: a pod that changed
        meanwhile is a conflict, and the node is retried on the next monitor pass."""
        ok = True
        for pod in self.pods.by_index("node-name", node_name):
            cond = pod_condition(pod, "Ready")
            if cond is None or cond.get("status") == "False":
                continue
            m = meta(pod)
            patch = {"metadata": {"resourceVersion": m.get("resourceVersion")},
                     "status": {"conditions": [{"type": "Ready", "status": "False",
                                                "lastTransitionTime": now_rfc3339()}]}}
            try:
                await self.client.patch(PODS, m.get("namespace", ""), m["name"], patch, patch_type="strategic",
                                        sub="status")
            except ApiError as e:
                if e.code != 404:
                    event(log, "mark_pod_not_ready_failed", logging.WARNING, pod=key_of(pod), error=e.message)
                    ok = False
                continue
            self.recorder.record(_ref(pod, "Pod"), "Warning", "NodeNotReady", "Node is not ready")
        return ok

    # ---- taints ----------------------------------------------------------------------------
    async def _swap_taints(self, node: Obj, add: list[Obj], remove: list[Obj]) -> bool:
        """SwapNodeControllerTaint: one update of spec.taints (retried on a conflict)."""
        stamp = now_rfc3339()
        for _ in range(STATUS_UPDATE_RETRIES):
            new = with_taints(node_taints(node), [{**t, "timeAdded": stamp} for t in add], remove)
            if new is None:
                return True
            body = copy.deepcopy(node)
            body.setdefault("spec", {})["taints"] = new
            try:
                await self.client.update(NODES, body)
            except ApiError as e:
                if e.code == 404:
                    return False
                if e.code != 409:
                    raise
                node = await self.client.get(NODES, "", meta(node)["name"])
                continue
            event(log, "node_taints_updated", node=meta(node).get("name"),
                  added=[f"{t['key']}:{t['effect']}" for t in add],
                  removed=[f"{t['key']}:{t['effect']}" for t in remove if any(taint_matches(t, h) for h in node_taints(node))])
            return True
        return False

    async def _no_schedule_pass(self, name: str) -> None:
        """doNoScheduleTaintingPass for one node."""
        node = self.nodes.get(name)
        if node is None:
            return
        add, remove = no_schedule_diff(node)
        if (add or remove) and not await self._swap_taints(node, add, remove):
            raise RuntimeError(f"failed to swap taints of node {name}")

    def _zone_tainter(self, zone: str) -> tuple[TokenBucket, list[str]]:
        if zone not in self.tainters:
            self.tainters[zone] = (TokenBucket(self.eviction_rate, self.clock), [])
            self.zone_states.setdefault(zone, STATE_INITIAL)
        return self.tainters[zone]

    def _has(self, node: Obj, taint: Obj) -> bool:
        return any(taint_matches(t, taint) for t in node_taints(node))

    async def _process_taint_based_eviction(self, node: Obj, observed: Obj) -> None:
        name = meta(node).get("name", "")
        queue = self._zone_tainter(zone_key(node))[1]
        state = observed.get("status")
        if state == "False":
            if self._has(node, UNREACHABLE_NO_EXECUTE):
                await self._swap_taints(node, [NOT_READY_NO_EXECUTE], [UNREACHABLE_NO_EXECUTE])
            elif not self._has(node, NOT_READY_NO_EXECUTE) and name not in queue:
                queue.append(name)
        elif state == "Unknown":
            if self._has(node, NOT_READY_NO_EXECUTE):
                await self._swap_taints(node, [UNREACHABLE_NO_EXECUTE], [NOT_READY_NO_EXECUTE])
            elif not self._has(node, UNREACHABLE_NO_EXECUTE) and name not in queue:
                queue.append(name)
        elif state == "True":
            await self._mark_reachable(node)

    async def _mark_reachable(self, node: Obj) -> None:
        name = meta(node).get("name", "")
        for _, queue in self.tainters.values():
            if name in queue:
                queue.remove(name)
        if self._has(node, UNREACHABLE_NO_EXECUTE) or self._has(node, NOT_READY_NO_EXECUTE):
            if await self._swap_taints(node, [], [UNREACHABLE_NO_EXECUTE, NOT_READY_NO_EXECUTE]):
                event(log, "node_reachable", node=name)

    async def _no_execute_tainting_pass(self) -> float | None:
        wait: float | None = None
        for bucket, queue in self.tainters.values():
            while queue:
                if not bucket.try_accept():
                    w = bucket.wait_time()
                    if w != float("inf"):
                        wait = w if wait is None else min(wait, w)
                    break
                name = queue.pop(0)
                node = self.nodes.get(name)
                ready = node_condition(node, "Ready")
                if node is None or ready is None:
                    continue
                if ready.get("status") == "False":
                    add, remove = NOT_READY_NO_EXECUTE, UNREACHABLE_NO_EXECUTE
                elif ready.get("status") == "Unknown":
                    add, remove = UNREACHABLE_NO_EXECUTE, NOT_READY_NO_EXECUTE
                else:
                    continue  # ready again
                if not await self._swap_taints(node, [add], [remove]):
                    queue.append(name)
        return wait

    # ---- disruption ------------------------------------------------------------------------
    def _zone_rate(self, zone_size: int, state: str) -> float:
        if state == STATE_PARTIAL:
            return self.secondary_eviction_rate if zone_size > self.large_cluster_threshold else 0.0
        return self.eviction_rate

    async def _handle_disruption(self, zone_conditions: dict[str, list[Obj | None]], nodes: list[Obj]) -> None:
        new_states = {z: zone_state(c, self.unhealthy_zone_threshold)[1] for z, c in zone_conditions.items()}
        for z in new_states:
            self._zone_tainter(z)
        all_are_full = all(s == STATE_FULL for s in new_states.values())
        for z in [z for z in self.zone_states if z not in zone_conditions]:
            del self.zone_states[z]
            self.tainters.pop(z, None)
        all_were_full = all(s == STATE_FULL for s in self.zone_states.values())
        if all_are_full and all_were_full:
            return
        if all_are_full:
            event(log, "master_disruption_mode", logging.WARNING, entering=True,
                  message="Controller detected that all Nodes are not-Ready. Entering master disruption mode")
            for node in nodes:
                await self._mark_reachable(self.nodes.get(meta(node)["name"]) or node)
            for z, (bucket, _) in self.tainters.items():
                bucket.swap(0.0)
                self.zone_states[z] = STATE_FULL
            return
        if all_were_full:
            event(log, "master_disruption_mode", entering=False,
                  message="Controller detected that some Nodes are Ready. Exiting master disruption mode")
            now = self.clock()
            for h in self.health.values():
                h.probe = now
        for z, state in new_states.items():
            if self.zone_states.get(z) != state or all_were_full:
                if self.zone_states.get(z) not in (state, STATE_INITIAL):
                    event(log, "zone_state_changed", zone=z, state=state)
                self.tainters[z][0].swap(self._zone_rate(len(zone_conditions[z]), state))
                self.zone_states[z] = state

    def describe(self) -> dict[str, Any]:
        """A snapshot for tests and debugging."""
        return {"zones": dict(self.zone_states), "waiting": {z: list(q) for z, (_, q) in self.tainters.items()},
                "evictions": self.evictor.evictions, "known": sorted(self.known)}
