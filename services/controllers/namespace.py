"""The namespace controller: empties a namespace being deleted, then lets it go (pkg/controller/namespace).

Deleting a namespace only marks it: the apiserver sets deletionTimestamp and phase Terminating
and keeps the object while `spec.finalizers` holds `kubernetes`, and refuses new content in it.
This controller then deletes every namespaced object in it (every namespaced resource of the
table, with deletecollection and background propagation, as upstream), lists again to see what
remains, reports it in the namespace's status conditions, and only when nothing is left removes
`kubernetes` through `PUT /api/v1/namespaces/<ns>/finalize`, after which the apiserver deletes
the namespace. Like upstream it does not force anything: pods bound to a node are left to their
kubelet's graceful termination and the controller comes back when their grace period should be
over; objects held by finalizers are waited for.

Two refinements over upstream: the graceful-termination estimate is taken from the pods still
present after the delete (seconds until their deletionTimestamp) rather than from every pod's
terminationGracePeriodSeconds before it, so a namespace of unbound or already-gone pods is
finalized at once instead of after a fixed wait; and the deletion of any remaining object
(seen by the shared informers, Events excepted) wakes the namespace up again at once instead
of after the estimate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from shared.api.resources import BY_PLURAL, RESOURCES, Resource
from shared.client import path_of
from shared.errors import ApiError
from shared.informer import key_of
from shared.log import event
from shared.workqueue import ExponentialBackoff, WorkQueue

from .base import ControllerContext
from .controller_utils import Obj, is_deleting, meta, now_rfc3339, parse_time, spec, status

log = logging.getLogger("kubenats.controllers.namespace")

NAMESPACES = BY_PLURAL[("", "namespaces")]
FINALIZER = "kubernetes"
FINALIZER_ESTIMATE_SECONDS = 15
FINALIZE_RETRIES = 5
CONTENT_WAKEUP_DELAY = 0.1

CONDITION_TYPES = ("NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
                   "NamespaceDeletionContentFailure", "NamespaceContentRemaining", "NamespaceFinalizersRemaining")
OK_REASONS = dict(zip(CONDITION_TYPES, ("ResourcesDiscovered", "ParsedGroupVersions", "ContentDeleted",
                                        "ContentRemoved", "ContentHasNoFinalizers"), strict=True))
OK_MESSAGES = dict(zip(CONDITION_TYPES, (
    "All resources successfully discovered", "All legacy kube types successfully parsed",
    "All content successfully deleted, may be waiting on finalization", "All content successfully removed",
    "All content-preserving finalizers finished"), strict=True))


def namespaced_resources() -> list[Resource]:
    return [r for r in RESOURCES if r.namespaced and "delete" in r.verbs and "list" in r.verbs]


@dataclass
class Remaining:
    """What a deletion pass left behind."""

    estimate: int = 0
    by_resource: dict[str, int] = field(default_factory=dict)
    by_finalizer: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def conditions(self) -> dict[str, Obj]:
        """The failing conditions; the other types get their ok variant in `update_conditions`."""
        out: dict[str, Obj] = {}
        if self.errors:
            out["NamespaceDeletionContentFailure"] = {
                "status": "True", "reason": "ContentDeletionFailed",
                "message": f"Failed to delete all resource types, {len(self.errors)} remaining: {'; '.join(self.errors)}"}
        if self.by_resource:
            parts = sorted(f"{res} has {n} resource instances" for res, n in self.by_resource.items() if n)
            out["NamespaceContentRemaining"] = {"status": "True", "reason": "SomeResourcesRemain",
                                                "message": f"Some resources are remaining: {', '.join(parts)}"}
        if self.by_finalizer:
            parts = sorted(f"{f} in {n} resource instances" for f, n in self.by_finalizer.items() if n)
            out["NamespaceFinalizersRemaining"] = {
                "status": "True", "reason": "SomeFinalizersRemain",
                "message": f"Some content in the namespace has finalizers remaining: {', '.join(parts)}"}
        return out


def update_conditions(ns_status: Obj, failing: dict[str, Obj]) -> bool:
    """Set all five deletion conditions; True when anything changed (updateConditions)."""
    conditions: list[Obj] = list(ns_status.get("conditions") or [])
    changed = False
    for ctype in CONDITION_TYPES:
        want = failing.get(ctype) or {"status": "False", "reason": OK_REASONS[ctype], "message": OK_MESSAGES[ctype]}
        old = next((c for c in conditions if c.get("type") == ctype), None)
        if old is None:
            conditions.append({"type": ctype, **want, "lastTransitionTime": now_rfc3339()})
            changed = True
        elif any(old.get(k) != want[k] for k in ("status", "reason", "message")):
            if old.get("status") != want["status"]:
                old["lastTransitionTime"] = now_rfc3339()
            old.update(want)
            changed = True
    ns_status["conditions"] = conditions
    return changed


class NamespaceController:
    name = "namespace"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.informer = ctx.informers.get(NAMESPACES)
        # upstream's rate limiter for this queue: 5 ms doubling up to 60 s
        self.queue = WorkQueue("namespace", backoff=ExponentialBackoff(0.005, 60.0))
        self.informer.add_handler(self._enqueue, lambda old, new: self._enqueue(new), None)
        for res in namespaced_resources():
            if res.plural != "events":  # never cached: too many; a timed requeue covers them
                ctx.informers.get(res).add_handler(None, None, self._content_deleted)

    def _enqueue(self, ns: Obj) -> None:
        if is_deleting(ns):
            self.queue.add(key_of(ns))

    def _content_deleted(self, obj: Obj) -> None:
        """Content of a terminating namespace went away: look again soon (coalesced), rather than
        only when the estimate says so as upstream does."""
        ns = self.informer.get(meta(obj).get("namespace") or "")
        if ns is not None and is_deleting(ns):
            self.queue.add_after(key_of(ns), CONTENT_WAKEUP_DELAY)

    async def reconcile(self, key: str) -> None:
        if self.informer.get(key) is None:
            return
        try:
            ns: Obj = await self.client.get(NAMESPACES, "", key)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        if not is_deleting(ns) or FINALIZER not in (spec(ns).get("finalizers") or []):
            return
        if status(ns).get("phase") != "Terminating":
            ns["status"] = {**status(ns), "phase": "Terminating"}
            ns = await self.client.update_status(NAMESPACES, ns)
        remaining = await self._delete_all_content(key)
        ns = await self._write_conditions(ns, remaining)
        if remaining.errors:
            raise RuntimeError(f"deleting the content of namespace {key}: {'; '.join(remaining.errors)}")
        if remaining.by_resource:
            estimate = remaining.estimate or (FINALIZER_ESTIMATE_SECONDS if remaining.by_finalizer else 0)
            event(log, "namespace_content_remaining", namespace=key, remaining=remaining.by_resource,
                  finalizers=remaining.by_finalizer, estimate_s=estimate)
            if estimate <= 0:
                raise RuntimeError(f"unexpected items still remain in namespace {key}: {remaining.by_resource}")
            self.queue.add_after(key, estimate / 2 + 1)
            return
        await self._finalize(key)

    async def _delete_all_content(self, namespace: str) -> Remaining:
        remaining = Remaining()
        for res in namespaced_resources():
            try:
                await self.client.request("DELETE", path_of(res, namespace),
                                          body={"kind": "DeleteOptions", "apiVersion": "v1",
                                                "propagationPolicy": "Background"})
                left = (await self.client.list(res, namespace)).get("items") or []
            except ApiError as e:
                if e.code == 404:
                    continue
                remaining.errors.append(f"{res.key}: {e.message}")
                continue
            if not left:
                continue
            remaining.by_resource[f"{res.plural}.{res.group}"] = len(left)
            for item in left:
                for f in meta(item).get("finalizers") or []:
                    remaining.by_finalizer[f] = remaining.by_finalizer.get(f, 0) + 1
                if res.plural == "pods" and not res.group:
                    remaining.estimate = max(remaining.estimate, _grace_left(item))
        if remaining.estimate == 0 and remaining.by_resource.get("pods.") and not remaining.by_finalizer:
            remaining.estimate = 1  # pods whose grace is over but whose kubelet has not confirmed yet
        return remaining

    async def _write_conditions(self, ns: Obj, remaining: Remaining) -> Obj:
        st = dict(status(ns))
        if not update_conditions(st, remaining.conditions()):
            return ns
        try:
            updated: Obj = await self.client.update_status(NAMESPACES, {**ns, "status": st})
            return updated
        except ApiError as e:
            event(log, "namespace_status_update_failed", logging.WARNING, namespace=meta(ns)["name"], error=e.message)
            return ns

    async def _finalize(self, name: str) -> None:
        """Remove our finalizer through the finalize subresource; the apiserver then deletes."""
        for attempt in range(FINALIZE_RETRIES):
            try:
                ns: Obj = await self.client.get(NAMESPACES, "", name)
            except ApiError as e:
                if e.code == 404:
                    return
                raise
            finalizers = spec(ns).get("finalizers") or []
            if FINALIZER not in finalizers:
                return
            body = {**ns, "spec": {**spec(ns), "finalizers": sorted(f for f in set(finalizers) if f != FINALIZER)}}
            try:
                await self.client.update(NAMESPACES, body, "finalize")
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code == 409 and attempt + 1 < FINALIZE_RETRIES:
                    continue
                raise
            event(log, "namespace_finalized", namespace=name)
            return


def _grace_left(pod: Obj) -> int:
    """Seconds until a terminating pod's deletionTimestamp (its grace period's end)."""
    if status(pod).get("phase") in ("Succeeded", "Failed"):
        return 0
    deadline = parse_time(meta(pod).get("deletionTimestamp"))
    if deadline is None:
        return int(spec(pod).get("terminationGracePeriodSeconds") or 0)
    return max(int(deadline - time.time()), 0)
