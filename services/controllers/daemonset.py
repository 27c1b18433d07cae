"""The DaemonSet controller: one pod of each DaemonSet on every node that should run it.

A port of pkg/controller/daemon. Events (DaemonSets, their pods, nodes joining, changing labels
or taints, leaving) only enqueue DaemonSet keys. `reconcile(key)` claims the pods (adoption and
release as for ReplicaSets), maps them to nodes, and for each node creates the missing pod,
deletes failed pods (with a growing per-node backoff, so a kubelet that keeps rejecting the pod
is not hammered) and surplus ones, and deletes pods from nodes that no longer fit (nodeSelector,
required node affinity, or a NoExecute taint the pod does not tolerate). New pods carry the
upstream daemon tolerations (not-ready/unreachable NoExecute forever, the pressure and
unschedulable NoSchedule taints) and a required node affinity on `metadata.name`, so the
scheduler binds each to its node. Then, once the expectations of those writes are met, the
RollingUpdate strategy replaces outdated pods (maxUnavailable, or maxSurge new pods first);
OnDelete leaves them until someone deletes them. Finally the status counts are written.

Deviations: the revision is the `controller-revision-hash` label computed from the template (no
ControllerRevision objects, see daemonset_util), and since kubenats has no pod garbage collector
yet, daemon pods on a node that no longer exists are deleted by this controller (force-deleted
when bound: no kubelet is left to confirm).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Sequence

from shared.api.resources import BY_PLURAL
from shared.errors import ApiError
from shared.informer import key_of
from shared.log import event
from shared.selectors import LabelSelector, SelectorError
from shared.workqueue import WorkQueue

from .base import ControllerContext, OwnWrites, ensure_index
from .controller_utils import (
    SLOW_START_INITIAL_BATCH_SIZE,
    Obj,
    controller_ref,
    is_deleting,
    labels_of,
    matching_owners,
    meta,
    new_controller_ref,
    pod_from_template,
    resolve_controller,
    selector_of,
    slow_start_batch,
    spec,
    status,
    uid_of,
)
from .daemonset_util import (
    FailedBackoff,
    calculate_status,
    is_rolling_update,
    node_actions,
    nodes_to_pods,
    pod_template,
    rolling_update,
    surge_count,
    template_for_node,
    template_hash,
)
from .expectations import ControllerExpectations
from .ref_manager import RefManager
from .replicaset import CONTROLLER_UID_INDEX, controller_uid_index, namespace_terminating

log = logging.getLogger("kubenats.controllers.daemonset")

DS = BY_PLURAL[("apps", "daemonsets")]
PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
BURST_REPLICAS = 250
STATUS_KEYS = ("desiredNumberScheduled", "currentNumberScheduled", "numberMisscheduled", "numberReady",
               "numberAvailable", "updatedNumberScheduled", "numberUnavailable", "observedGeneration")


class DaemonSetController:
    name = "daemonset"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.ds_informer = ctx.informers.get(DS)
        self.pod_informer = ctx.informers.get(PODS)
        self.node_informer = ctx.informers.get(NODES)
        ensure_index(self.pod_informer, CONTROLLER_UID_INDEX, controller_uid_index)
        self.recorder = ctx.recorder("daemonset-controller")
        self.queue = WorkQueue("daemonset")
        self.expectations = ControllerExpectations()
        self.own_writes = OwnWrites()
        self.failed_backoff = FailedBackoff()
        self.ds_informer.add_handler(self._ds_added, self._ds_updated, self._ds_deleted)
        self.pod_informer.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.node_informer.add_handler(self._node_changed, self._node_updated, self._node_changed)

    # ---- event handlers --------------------------------------------------------------------
    def _ds_added(self, ds: Obj) -> None:
        self.queue.add(key_of(ds))

    def _ds_updated(self, old: Obj, cur: Obj) -> None:
        if uid_of(old) != uid_of(cur):
            self.expectations.delete(key_of(old))
        self.queue.add(key_of(cur))

    def _ds_deleted(self, ds: Obj) -> None:
        self.expectations.delete(key_of(ds))
        self.own_writes.forget(key_of(ds))

    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        return resolve_controller(self.ds_informer, DS.kind, namespace, ref)

    def _matching(self, pod: Obj) -> list[Obj]:
        return matching_owners(self.ds_informer, pod)

    def _pod_added(self, pod: Obj) -> None:
        if is_deleting(pod):
            self._pod_deleted(pod)
            return
        ds = self._resolve(meta(pod).get("namespace", ""), controller_ref(pod))
        if ds is not None:
            self.expectations.creation_observed(key_of(ds))
            self.queue.add(key_of(ds))
        elif controller_ref(pod) is None:
            for candidate in self._matching(pod):
                self.queue.add(key_of(candidate))

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        if is_deleting(cur) and not is_deleting(old):
            self._pod_deleted(cur)
            return
        ns = meta(cur).get("namespace", "")
        old_ref, cur_ref = controller_ref(old), controller_ref(cur)
        if old_ref != cur_ref and (prev := self._resolve(ns, old_ref)) is not None:
            self.queue.add(key_of(prev))
        if cur_ref is not None:
            if (ds := self._resolve(ns, cur_ref)) is not None:
                self.queue.add(key_of(ds))
        elif labels_of(old) != labels_of(cur) or old_ref != cur_ref:
            for candidate in self._matching(cur):
                self.queue.add(key_of(candidate))

    def _pod_deleted(self, pod: Obj) -> None:
        ds = self._resolve(meta(pod).get("namespace", ""), controller_ref(pod))
        if ds is not None:
            self.expectations.deletion_observed(key_of(ds), key_of(pod))
            self.queue.add(key_of(ds))

    def _node_changed(self, node: Obj) -> None:
        for ds in self.ds_informer.list():
            self.queue.add(key_of(ds))

    def _node_updated(self, old: Obj, cur: Obj) -> None:
        if (labels_of(old) != labels_of(cur) or spec(old).get("taints") != spec(cur).get("taints")
                or spec(old).get("unschedulable") != spec(cur).get("unschedulable")):
            self._node_changed(cur)

    # ---- reconcile -------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        cached = self.ds_informer.get(key)
        if cached is None:
            self.expectations.delete(key)
            return
        if self.own_writes.stale(key, cached) or is_deleting(cached):
            return
        ds = copy.deepcopy(cached)
        sel = spec(ds).get("selector")
        if sel == {} or (isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get("matchExpressions")):
            self.recorder.record(ds, "Warning", "SelectingAll",
                                 "This daemon set is selecting all pods. A non-empty selector is required.")
            return
        try:
            selector = selector_of(ds)
        except SelectorError as e:
            event(log, "invalid_selector", logging.WARNING, daemonset=key, error=str(e))
            return
        ns = meta(ds).get("namespace", "")

        async def recheck() -> Obj:
            return await self.client.get(DS, ns, meta(ds)["name"])

        pods = await RefManager(self.client, ds, DS, selector, PODS, recheck).claim(
            self.pod_informer.by_index("namespace", ns))
        nodes = self.node_informer.list()
        hash_ = template_hash(ds)
        now = time.time()
        error: BaseException | None = None
        synced = self.expectations.satisfied(key)
        if synced:
            try:
                await self._manage(key, ds, pods, nodes, hash_, now)
                # the cache, not the list above: the events of our own writes may be in already
                # (then the expectations are met and the rolling update must see those pods)
                if self.expectations.satisfied(key) and is_rolling_update(ds):
                    await self._rolling_update(key, ds, self._owned(ds, selector), nodes, hash_, now)
            except Exception as e:  # the status is still written; the key is retried
                error = e
        await self._update_status(key, ds, nodes, nodes_to_pods(self._owned(ds, selector), True), hash_, now, synced)
        if error is not None:
            raise error

    def _owned(self, ds: Obj, selector: LabelSelector) -> list[Obj]:
        """The pods claimed by ds, as the cache has them now."""
        return [p for p in self.pod_informer.by_index(CONTROLLER_UID_INDEX, uid_of(ds)) if selector.matches(labels_of(p))]

    async def _manage(self, key: str, ds: Obj, pods: list[Obj], nodes: list[Obj], hash_: str, now: float) -> None:
        by_node = nodes_to_pods(pods, False)
        surge = surge_count(ds, 1) > 0
        create: list[str] = []
        delete: list[Obj] = []
        force: list[Obj] = []
        failed = 0
        retry: float | None = None
        names = set()
        for node in nodes:
            name = meta(node).get("name", "")
            names.add(name)
            acts = node_actions(ds, node, by_node.get(name, []), hash_, surge, self.failed_backoff, now)
            if acts.create:
                create.append(name)
            delete.extend(acts.delete)
            failed += acts.failed
            for message in acts.events:
                self.recorder.record(ds, "Warning", "FailedDaemonPod", message)
            if acts.retry_after is not None:
                retry = acts.retry_after if retry is None else min(retry, acts.retry_after)
        for name, gone in by_node.items():
            if name not in names:  # the node left: its kubelet will never confirm
                for pod in gone:
                    (force if spec(pod).get("nodeName") else delete).append(pod)
        await self._sync_nodes(key, ds, delete, force, create, hash_)
        if retry is not None:
            self.queue.add_after(key, retry)
        if failed:
            event(log, "failed_daemon_pods", daemonset=key, count=failed)

    async def _rolling_update(self, key: str, ds: Obj, pods: list[Obj], nodes: list[Obj], hash_: str,
                              now: float) -> None:
        by_node = nodes_to_pods(pods, False)
        node_map = {meta(n).get("name", ""): n for n in nodes}
        desired = calculate_status(ds, nodes, nodes_to_pods(pods, True), hash_, now)["desiredNumberScheduled"]
        old, new_nodes = rolling_update(ds, by_node, node_map, hash_, desired, now)
        if old or new_nodes:
            event(log, "rolling_update", daemonset=key, deleting=len(old), surging=len(new_nodes))
            await self._sync_nodes(key, ds, old, [], new_nodes, hash_)
        elif int(spec(ds).get("minReadySeconds") or 0) > 0:
            self.queue.add_after(key, float(spec(ds)["minReadySeconds"]))

    async def _sync_nodes(self, key: str, ds: Obj, delete: Sequence[Obj], force: Sequence[Obj],
                          create: Sequence[str], hash_: str) -> None:
        """syncNodes: expectations first, creations in slow-start batches, deletions at once."""
        create = list(create)[:BURST_REPLICAS]
        victims = [*delete, *force][:BURST_REPLICAS]
        if not create and not victims:
            return
        self.expectations.expect_deletions(key, [key_of(p) for p in victims])
        self.expectations.lower(key, add=-len(create))
        template = pod_template(ds, hash_)
        pending = iter(create)
        successes, error = await slow_start_batch(len(create), SLOW_START_INITIAL_BATCH_SIZE,
                                                  lambda: self._create_pod(ds, template, next(pending)))
        if len(create) - successes > 0:
            self.expectations.lower(key, add=len(create) - successes)
        forced = {key_of(p) for p in force}
        results = await asyncio.gather(*(self._delete_pod(ds, p, key_of(p) in forced) for p in victims),
                                       return_exceptions=True)
        for pod, result in zip(victims, results, strict=True):
            if isinstance(result, BaseException):
                self.expectations.deletion_observed(key, key_of(pod))
                if not (isinstance(result, ApiError) and result.code == 404):
                    error = error or result
        if error is not None:
            raise error

    async def _create_pod(self, ds: Obj, template: Obj, node_name: str) -> None:
        pod = pod_from_template(template_for_node(template, node_name), ds, new_controller_ref(ds, DS.api_version, DS.kind))
        ns = meta(ds).get("namespace", "")
        try:
            created = await self.client.create(PODS, ns, pod)
        except ApiError as e:
            if namespace_terminating(e):
                return
            self.recorder.record(ds, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        self.recorder.record(ds, "Normal", "SuccessfulCreate", f"Created pod: {meta(created).get('name')}")
        event(log, "pod_created", daemonset=key_of(ds), pod=f"{ns}/{meta(created).get('name')}", node=node_name)

    async def _delete_pod(self, ds: Obj, pod: Obj, force: bool) -> None:
        pm = meta(pod)
        try:
            await self.client.delete(PODS, pm.get("namespace", ""), pm["name"], uid=uid_of(pod),
                                     grace_period=0 if force else None)
        except ApiError as e:
            if e.code != 404:
                self.recorder.record(ds, "Warning", "FailedDelete", f"Error deleting: {e.message}")
            raise
        self.recorder.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pm['name']}")
        event(log, "pod_deleted", daemonset=key_of(ds), pod=key_of(pod), node=spec(pod).get("nodeName"), force=force)

    async def _update_status(self, key: str, ds: Obj, nodes: list[Obj], by_node: dict[str, list[Obj]], hash_: str,
                             now: float, synced: bool) -> None:
        """storeDaemonSetStatus; observedGeneration only moves when this sync acted on the spec."""
        counts = calculate_status(ds, nodes, by_node, hash_, now)
        current = status(ds)
        generation = int(meta(ds).get("generation") or 0)
        counts["observedGeneration"] = generation if synced else int(current.get("observedGeneration") or 0)
        if all(int(current.get(k) or 0) == int(counts[k]) for k in STATUS_KEYS):
            return
        body = {**ds, "status": {**current, **counts}}
        try:
            updated = await self.client.update_status(DS, body)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        self.own_writes.wrote(key, updated)
        min_ready = int(spec(ds).get("minReadySeconds") or 0)
        if min_ready > 0 and counts["numberReady"] != counts["numberAvailable"]:
            self.queue.add_after(key, float(min_ready))
