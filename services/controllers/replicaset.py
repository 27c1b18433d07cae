"""The ReplicaSet controller: keeps `spec.replicas` pods running for every ReplicaSet.

A port of pkg/controller/replicaset. Events from the pod and replica set informers only enqueue
replica set keys (and lower expectations); `reconcile(key)` re-reads everything from the caches:
it claims the active pods in the namespace (adopting matching orphans, releasing owned pods
whose labels stopped matching), creates the missing pods from the template in slow-start
batches or deletes the surplus in Kubernetes' scale-down order, and writes the status
(replicas, fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration and the
ReplicaFailure condition). Creations and deletions are recorded as expectations before they are
issued and the key is left alone until the informer has seen them, so a slow event never yields
an extra pod, and a restarted controller simply counts again from a fresh list.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from shared.api.resources import BY_PLURAL
from shared.errors import ApiError
from shared.informer import key_of
from shared.log import event
from shared.selectors import SelectorError
from shared.workqueue import WorkQueue

from .base import ControllerContext, OwnWrites, ensure_index
from .controller_utils import (
    SLOW_START_INITIAL_BATCH_SIZE,
    Obj,
    controller_ref,
    is_deleting,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    labels_of,
    matching_owners,
    meta,
    new_controller_ref,
    now_rfc3339,
    pod_available_at,
    pod_from_template,
    pods_to_delete,
    resolve_controller,
    selector_of,
    slow_start_batch,
    spec,
    spec_replicas,
    status,
    uid_of,
)
from .expectations import ControllerExpectations
from .ref_manager import RefManager

log = logging.getLogger("kubenats.controllers.replicaset")

RS = BY_PLURAL[("apps", "replicasets")]
PODS = BY_PLURAL[("", "pods")]
CONTROLLER_UID_INDEX = "controller-uid"
ORPHAN_INDEX = "orphans-by-namespace"  # pods without a controller, the only ones a ReplicaSet may adopt
BURST_REPLICAS = 500
STATUS_UPDATE_RETRIES = 1


def controller_uid_index(obj: Obj) -> list[str]:
    ref = controller_ref(obj)
    return [str(ref.get("uid"))] if ref is not None and ref.get("uid") else []


def orphan_index(obj: Obj) -> list[str]:
    return [str(meta(obj).get("namespace", ""))] if controller_ref(obj) is None else []


def namespace_terminating(e: ApiError) -> bool:
    """The apiserver refuses creations in a namespace being deleted (NamespaceTerminatingCause)."""
    return e.code == 403 and "being terminated" in e.message


def calculate_status(rs: Obj, pods: list[Obj], manage_error: BaseException | None, now: float) -> Obj:
    """The new ReplicaSetStatus for the claimed active pods (zero counts omitted as the API does)."""
    new: Obj = copy.deepcopy(status(rs))
    template_labels = (spec(rs).get("template") or {}).get("metadata", {}).get("labels") or {}
    min_ready = int(spec(rs).get("minReadySeconds") or 0)
    fully = ready = available = 0
    for pod in pods:
        labels = labels_of(pod)
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully += 1
        if is_pod_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready, now):
                available += 1
    conditions = [c for c in new.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
    failure = next((c for c in new.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
    if manage_error is not None and failure is None:
        diff = len(pods) - spec_replicas(rs)
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        message = manage_error.message if isinstance(manage_error, ApiError) else str(manage_error)
        failure = {"type": "ReplicaFailure", "status": "True", "lastTransitionTime": now_rfc3339(),
                   "reason": reason, "message": message}
    if manage_error is not None and failure is not None:
        conditions.append(failure)
    if conditions:
        new["conditions"] = conditions
    else:
        new.pop("conditions", None)
    new["replicas"] = len(pods)
    for name, value in (("fullyLabeledReplicas", fully), ("readyReplicas", ready), ("availableReplicas", available)):
        if value:
            new[name] = value
        else:
            new.pop(name, None)
    return new


def _same_status(a: Obj, b: Obj) -> bool:
    keys = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration")
    return all(int(a.get(k) or 0) == int(b.get(k) or 0) for k in keys) and \
        (a.get("conditions") or []) == (b.get("conditions") or [])


class ReplicaSetController:
    name = "replicaset"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.rs_informer = ctx.informers.get(RS)
        self.pod_informer = ctx.informers.get(PODS)
        ensure_index(self.rs_informer, CONTROLLER_UID_INDEX, controller_uid_index)
        ensure_index(self.pod_informer, CONTROLLER_UID_INDEX, controller_uid_index)
        ensure_index(self.pod_informer, ORPHAN_INDEX, orphan_index)
        self.recorder = ctx.recorder("replicaset-controller")
        self.queue = WorkQueue("replicaset")
        self.expectations = ControllerExpectations()
        self.own_writes = OwnWrites()
        self.rs_informer.add_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pod_informer.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # ---- event handlers: only enqueue keys and lower expectations ---------------------------
    def _rs_added(self, rs: Obj) -> None:
        self.queue.add(key_of(rs))

    def _rs_updated(self, old: Obj, cur: Obj) -> None:
        if uid_of(old) != uid_of(cur):
            self.expectations.delete(key_of(old))
        self.queue.add(key_of(cur))

    def _rs_deleted(self, rs: Obj) -> None:
        self.expectations.delete(key_of(rs))
        self.own_writes.forget(key_of(rs))
        self.queue.add(key_of(rs))

    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        return resolve_controller(self.rs_informer, RS.kind, namespace, ref)

    def _matching_replica_sets(self, pod: Obj) -> list[Obj]:
        return matching_owners(self.rs_informer, pod)

    def _pod_added(self, pod: Obj) -> None:
        if is_deleting(pod):
            # a restarted controller may first see a pod already being deleted: not a creation
            self._pod_deleted(pod)
            return
        rs = self._resolve(meta(pod).get("namespace", ""), controller_ref(pod))
        if rs is not None:
            self.expectations.creation_observed(key_of(rs))
            self.queue.add(key_of(rs))
            return
        if controller_ref(pod) is None:
            for candidate in self._matching_replica_sets(pod):
                self.queue.add(key_of(candidate))

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        labels_changed = labels_of(old) != labels_of(cur)
        if is_deleting(cur):
            self._pod_deleted(cur)
            if labels_changed:
                self._pod_deleted(old)
            return
        ns = meta(cur).get("namespace", "")
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        if cur_ref != old_ref and old_ref is not None:
            prev = self._resolve(ns, old_ref)
            if prev is not None:
                self.queue.add(key_of(prev))
        if cur_ref is not None:
            rs = self._resolve(ns, cur_ref)
            if rs is not None:
                self.queue.add(key_of(rs))
            return
        if labels_changed or cur_ref != old_ref:
            for candidate in self._matching_replica_sets(cur):
                self.queue.add(key_of(candidate))

    def _pod_deleted(self, pod: Obj) -> None:
        rs = self._resolve(meta(pod).get("namespace", ""), controller_ref(pod))
        if rs is None:
            return
        self.expectations.deletion_observed(key_of(rs), key_of(pod))
        self.queue.add(key_of(rs))

    # ---- reconcile ----------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        cached = self.rs_informer.get(key)
        if cached is None:
            self.expectations.delete(key)
            return
        if self.own_writes.stale(key, cached):
            return
        rs = copy.deepcopy(cached)
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = selector_of(rs)
        except SelectorError as e:
            event(log, "invalid_selector", logging.WARNING, replicaset=key, error=str(e))
            return
        ns = meta(rs).get("namespace", "")
        # its own pods and the namespace's orphans: pods of other controllers are never claimed,
        # and walking all of them made every sync O(pods in the namespace)
        candidates = [*self.pod_informer.by_index(CONTROLLER_UID_INDEX, uid_of(rs)),
                      *self.pod_informer.by_index(ORPHAN_INDEX, ns)]
        active = [p for p in candidates if is_pod_active(p)]

        async def recheck() -> Obj:
            return await self.client.get(RS, ns, meta(rs)["name"])

        pods = await RefManager(self.client, rs, RS, selector, PODS, recheck).claim(active)
        manage_error: BaseException | None = None
        deleted: set[str] = set()
        if needs_sync and not is_deleting(rs):
            try:
                deleted = await self._manage_replicas(key, pods, rs)
            except ApiError as e:
                manage_error = e
        # pods just asked to go are not counted: a reader of this status must not rely on them
        counted = [p for p in pods if key_of(p) not in deleted]
        now = time.time()
        updated = await self._update_status(rs, calculate_status(rs, counted, manage_error, now))
        if manage_error is not None:
            raise manage_error
        self._requeue_for_availability(key, updated, counted, now)

    def _requeue_for_availability(self, key: str, rs: Obj, pods: list[Obj], now: float) -> None:
        """minReadySeconds: come back when the next ready pod becomes available."""
        min_ready = int(spec(rs).get("minReadySeconds") or 0)
        if min_ready <= 0:
            return
        pending = [at for p in pods if (at := pod_available_at(p, min_ready)) is not None and at >= now]
        if pending:
            self.queue.add_after(key, min(pending) - now + 0.05)

    async def _manage_replicas(self, key: str, pods: list[Obj], rs: Obj) -> set[str]:
        diff = len(pods) - spec_replicas(rs)
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, count)
            event(log, "scaling_up", replicaset=key, creating=count, have=len(pods), want=spec_replicas(rs))
            successes, error = await slow_start_batch(count, SLOW_START_INITIAL_BATCH_SIZE, lambda: self._create_pod(rs))
            if count - successes > 0:
                self.expectations.lower(key, add=count - successes)  # never attempted or failed
            if error is not None:
                raise error
            return set()
        if diff > 0:
            count = min(diff, BURST_REPLICAS)
            related = self._related_pods(rs)
            victims = pods_to_delete(pods, related, count, time.time())
            self.expectations.expect_deletions(key, [key_of(p) for p in victims])
            event(log, "scaling_down", replicaset=key, deleting=count, have=len(pods), want=spec_replicas(rs))
            results = await asyncio.gather(*(self._delete_pod(rs, p) for p in victims), return_exceptions=True)
            first: BaseException | None = None
            deleted: set[str] = set()
            for pod, result in zip(victims, results, strict=True):
                if isinstance(result, BaseException):
                    self.expectations.deletion_observed(key, key_of(pod))
                    if isinstance(result, ApiError) and result.code == 404:
                        deleted.add(key_of(pod))
                    else:
                        first = first or result
                else:
                    deleted.add(key_of(pod))
            if first is not None:
                raise first
            return deleted
        return set()

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """Pods of every replica set with the same controller (a Deployment's other revisions)."""
        ref = controller_ref(rs)
        if ref is None:
            return []
        seen: set[str] = set()
        out: list[Obj] = []
        for related in self.rs_informer.by_index(CONTROLLER_UID_INDEX, str(ref.get("uid"))):
            for pod in self.pod_informer.by_index(CONTROLLER_UID_INDEX, uid_of(related)):
                if uid_of(pod) not in seen:
                    seen.add(uid_of(pod))
                    out.append(pod)
        return out

    async def _create_pod(self, rs: Obj) -> None:
        template = spec(rs).get("template") or {}
        if not (template.get("metadata") or {}).get("labels"):
            raise ApiError(422, "Invalid", "unable to create pods, no labels")
        pod = pod_from_template(template, rs, new_controller_ref(rs, RS.api_version, RS.kind))
        ns = meta(rs).get("namespace", "")
        try:
            created = await self.client.create(PODS, ns, pod)
        except ApiError as e:
            if namespace_terminating(e):
                return  # every creation will fail from now on; nothing to do
            self.recorder.record(rs, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        name = meta(created).get("name")
        self.recorder.record(rs, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        event(log, "pod_created", replicaset=key_of(rs), pod=f"{ns}/{name}")

    async def _delete_pod(self, rs: Obj, pod: Obj) -> None:
        pm = meta(pod)
        try:
            await self.client.delete(PODS, pm.get("namespace", ""), pm["name"], uid=uid_of(pod))
        except ApiError as e:
            if e.code != 404:
                self.recorder.record(rs, "Warning", "FailedDelete", f"Error deleting: {e.message}")
            raise
        self.recorder.record(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pm['name']}")
        event(log, "pod_deleted", replicaset=key_of(rs), pod=key_of(pod))

    async def _update_status(self, rs: Obj, new_status: Obj) -> Obj:
        generation = int(meta(rs).get("generation") or 0)
        if _same_status(status(rs), new_status) and int(status(rs).get("observedGeneration") or 0) == generation:
            return rs
        if generation:
            new_status["observedGeneration"] = generation
        body: dict[str, Any] = rs
        for attempt in range(STATUS_UPDATE_RETRIES + 1):
            body = {**body, "status": new_status}
            try:
                updated = await self.client.update_status(RS, body)
            except ApiError as e:
                if e.code == 404:
                    return rs  # deleted meanwhile: nothing left to report on
                if e.code != 409 or attempt >= STATUS_UPDATE_RETRIES:
                    raise
                m = meta(rs)
                body = await self.client.get(RS, m.get("namespace", ""), m["name"])
                continue
            self.own_writes.wrote(key_of(rs), updated)
            event(log, "status_updated", logging.DEBUG, replicaset=key_of(rs), replicas=new_status.get("replicas"),
                  ready=new_status.get("readyReplicas", 0), available=new_status.get("availableReplicas", 0))
            return updated
        return rs
