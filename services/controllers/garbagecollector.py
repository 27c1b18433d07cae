"""The garbage collector: cascading deletion driven by ownerReferences (pkg/controller/garbagecollector).

The apiserver only records how an owner is to be deleted; this controller carries it out:

- Background (kubectl's default): the owner goes at once; its dependents then point at an owner
  that no longer exists and are deleted here, with their own dependents following the same way.
- Foreground: the apiserver keeps the owner, with deletionTimestamp and the `foregroundDeletion`
  finalizer. Its dependents are deleted (those that have dependents themselves in the
  foreground too); when no dependent whose reference has blockOwnerDeletion=true is left, the
  finalizer is removed and the apiserver completes the deletion.
- Orphan: the owner carries the `orphan` finalizer; the references to it are removed from every
  dependent, then the finalizer.

It is informer-driven: every deletable resource but Events (which nothing owns) gets an index
"owner uid -> dependents" on its shared informer, so "the dependents of X" is a lookup, not a
list. A reference counts as dangling only after a live read of the owner confirms it is absent
(or has another uid), because a cache may simply not have seen a new owner yet; confirmed
absences are remembered, as upstream's absentOwnerCache. Deletes carry the dependent's uid as a
precondition, so a recreated object of the same name is never collected by mistake.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from shared.api.resources import RESOURCES, Resource
from shared.errors import ApiError
from shared.informer import Informer, key_of, split_key
from shared.log import event
from shared.workqueue import WorkQueue

from .base import ControllerContext, ensure_index
from .controller_utils import Obj, is_deleting, meta, uid_of

log = logging.getLogger("kubenats.controllers.gc")

OWNER_UID_INDEX = "owner-uid"
ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
ABSENT_CACHE_SIZE = 4096
FINALIZER_RETRIES = 5


def owner_uids(obj: Obj) -> list[str]:
    return [str(r.get("uid")) for r in meta(obj).get("ownerReferences") or [] if isinstance(r, dict) and r.get("uid")]


def collected_resources() -> list[Resource]:
    """Everything that can be deleted, except Events (never owned, and the busiest kind)."""
    return [r for r in RESOURCES if "delete" in r.verbs and not (r.group == "" and r.plural == "events")]


def deleting_dependents(obj: Obj) -> bool:
    return is_deleting(obj) and FOREGROUND in (meta(obj).get("finalizers") or [])


def _gc_relevant(old: Obj, new: Obj) -> bool:
    om, nm = meta(old), meta(new)
    return any(om.get(f) != nm.get(f) for f in ("ownerReferences", "deletionTimestamp", "finalizers", "uid"))


class _AbsentOwners:
    """Owner uids confirmed gone (uids are never reused): a bounded LRU set."""

    def __init__(self, size: int = ABSENT_CACHE_SIZE) -> None:
        self._size = size
        self._uids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, uid: object) -> bool:
        if uid in self._uids:
            self._uids.move_to_end(str(uid))
            return True
        return False

    def add(self, uid: str) -> None:
        self._uids[uid] = None
        self._uids.move_to_end(uid)
        while len(self._uids) > self._size:
            self._uids.popitem(last=False)


class GarbageCollector:
    name = "garbagecollector"

    def __init__(self, ctx: ControllerContext, resources: list[Resource] | None = None) -> None:
        self.client = ctx.client
        self.queue = WorkQueue("garbagecollector")
        self.absent = _AbsentOwners()
        self.informers: dict[str, tuple[Resource, Informer]] = {}
        self._by_group_kind: dict[tuple[str, str], Resource] = {}
        for res in resources or collected_resources():
            inf = ctx.informers.get(res)
            ensure_index(inf, OWNER_UID_INDEX, owner_uids)
            self.informers[res.key] = (res, inf)
            self._by_group_kind[(res.group, res.kind)] = res
            self._watch(res, inf)

    def _watch(self, res: Resource, inf: Informer) -> None:
        def added(obj: Obj) -> None:
            self._added(res, obj)

        def updated(old: Obj, new: Obj) -> None:
            self._updated(res, old, new)

        def deleted(obj: Obj) -> None:
            self._deleted(res, obj)

        inf.add_handler(added, updated, deleted)

    # ---- keys and lookups ----------------------------------------------------------------------
    @staticmethod
    def key(res: Resource, obj: Obj) -> str:
        return f"{res.key}:{key_of(obj)}"

    def _parse(self, key: str) -> tuple[Resource, Informer, str]:
        res_key, _, obj_key = key.partition(":")
        res, inf = self.informers[res_key]
        return res, inf, obj_key

    def _owner_resource(self, ref: Obj) -> Resource | None:
        group = str(ref.get("apiVersion") or "").rpartition("/")[0]
        return self._by_group_kind.get((group, str(ref.get("kind") or "")))

    def _owner_key(self, ref: Obj, dependent_ns: str) -> tuple[Resource, str] | None:
        res = self._owner_resource(ref)
        if res is None or res.key not in self.informers:
            return None
        name = str(ref.get("name") or "")
        return res, f"{dependent_ns}/{name}" if res.namespaced else name

    def dependents(self, owner_uid: str) -> list[tuple[Resource, Obj]]:
        return [(res, dep) for res, inf in self.informers.values() for dep in inf.by_index(OWNER_UID_INDEX, owner_uid)]

    def _enqueue_owners(self, obj: Obj) -> None:
        ns = meta(obj).get("namespace", "")
        for ref in meta(obj).get("ownerReferences") or []:
            found = self._owner_key(ref, ns)
            if found is not None:
                self.queue.add(f"{found[0].key}:{found[1]}")

    # ---- event handlers ------------------------------------------------------------------------
    def _added(self, res: Resource, obj: Obj) -> None:
        if meta(obj).get("ownerReferences") or (is_deleting(obj) and self._gc_finalizer(obj)):
            self.queue.add(self.key(res, obj))

    def _updated(self, res: Resource, old: Obj, new: Obj) -> None:
        if not _gc_relevant(old, new):
            return
        self._added(res, new)
        if deleting_dependents(new) and not deleting_dependents(old):
            for dep_res, dep in self.dependents(uid_of(new)):
                self.queue.add(self.key(dep_res, dep))
        # an owner waiting for its dependents may be unblocked by this change
        self._enqueue_owners(old)
        self._enqueue_owners(new)

    def _deleted(self, res: Resource, obj: Obj) -> None:
        for dep_res, dep in self.dependents(uid_of(obj)):
            self.queue.add(self.key(dep_res, dep))
        self._enqueue_owners(obj)

    @staticmethod
    def _gc_finalizer(obj: Obj) -> bool:
        finalizers = meta(obj).get("finalizers") or []
        return ORPHAN in finalizers or FOREGROUND in finalizers

    # ---- reconcile -----------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        res, inf, obj_key = self._parse(key)
        obj = inf.get(obj_key)
        if obj is None:
            return
        finalizers = meta(obj).get("finalizers") or []
        if is_deleting(obj):
            if ORPHAN in finalizers:
                await self._orphan_dependents(obj)
                await self._remove_finalizer(res, obj, ORPHAN)
            elif FOREGROUND in finalizers:
                await self._process_deleting_dependents(res, obj)
            return
        if meta(obj).get("ownerReferences"):
            await self._attempt_to_delete(res, obj)

    async def _process_deleting_dependents(self, res: Resource, owner: Obj) -> None:
        uid = uid_of(owner)
        blocking = [(r, d) for r, d in self.dependents(uid)
                    if any(ref.get("uid") == uid and ref.get("blockOwnerDeletion") is True
                           for ref in meta(d).get("ownerReferences") or [])]
        if not blocking:
            await self._remove_finalizer(res, owner, FOREGROUND)
            return
        for dep_res, dep in blocking:
            if not deleting_dependents(dep):
                self.queue.add(self.key(dep_res, dep))

    async def _attempt_to_delete(self, res: Resource, obj: Obj) -> None:
        solid, dangling, waiting = await self._classify(obj)
        if solid and not dangling and not waiting:
            return
        fresh = await self._fresh(res, obj)
        if fresh is None or owner_uids(fresh) != owner_uids(obj):
            return  # gone or changed under us: the informer event brings the new state back here
        name = f"{res.kind} {key_of(obj)}"
        if solid:
            gone = {str(r.get("uid")) for r in dangling + waiting}
            body = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": u} for u in sorted(gone)],
                                 "uid": uid_of(obj)}}
            try:
                await self.client.patch(res, meta(obj).get("namespace", ""), meta(obj)["name"], body,
                                        patch_type="strategic")
            except ApiError as e:
                if e.code != 404:
                    raise
            event(log, "owner_references_removed", object=name, owners=sorted(gone))
            return
        finalizers = meta(fresh).get("finalizers") or []
        if waiting and self.dependents(uid_of(obj)):
            policy = "Foreground"
        elif ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        try:
            await self.client.delete(res, meta(obj).get("namespace", ""), meta(obj)["name"],
                                     propagation=policy, uid=uid_of(obj))
        except ApiError as e:
            if e.code not in (404, 409):  # gone, or replaced by another object of that name
                raise
            return
        event(log, "dependent_deleted", object=name, propagation=policy,
              dangling=[r.get("uid") for r in dangling], waiting=[r.get("uid") for r in waiting])

    async def _classify(self, obj: Obj) -> tuple[list[Obj], list[Obj], list[Obj]]:
        """(solid, dangling, waitingForDependentsDeletion) owner references."""
        solid: list[Obj] = []
        dangling: list[Obj] = []
        waiting: list[Obj] = []
        ns = meta(obj).get("namespace", "")
        for ref in meta(obj).get("ownerReferences") or []:
            uid = str(ref.get("uid") or "")
            if uid in self.absent:
                dangling.append(ref)
                continue
            found = self._owner_key(ref, ns)
            if found is None:
                solid.append(ref)  # a kind we do not watch: never collect what we cannot verify
                continue
            owner_res, owner_key = found
            owner = self.informers[owner_res.key][1].get(owner_key)
            if owner is None or uid_of(owner) != uid:
                owner = await self._live_owner(owner_res, owner_key, uid)
            if owner is None:
                self.absent.add(uid)
                dangling.append(ref)
            elif deleting_dependents(owner):
                waiting.append(ref)
            else:
                solid.append(ref)
        return solid, dangling, waiting

    async def _live_owner(self, res: Resource, key: str, uid: str) -> Obj | None:
        """A quorum read: the cache may just not have seen a new owner yet."""
        ns, name = split_key(key)
        try:
            owner: Obj = await self.client.get(res, ns, name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        return owner if uid_of(owner) == uid else None

    async def _fresh(self, res: Resource, obj: Obj) -> Obj | None:
        try:
            fresh: Obj = await self.client.get(res, meta(obj).get("namespace", ""), meta(obj)["name"])
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        return fresh if uid_of(fresh) == uid_of(obj) else None

    async def _orphan_dependents(self, owner: Obj) -> None:
        uid = uid_of(owner)
        for dep_res, dep in self.dependents(uid):
            body = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": uid_of(dep)}}
            try:
                await self.client.patch(dep_res, meta(dep).get("namespace", ""), meta(dep)["name"], body,
                                        patch_type="strategic")
            except ApiError as e:
                if e.code not in (404, 422):
                    raise
            event(log, "dependent_orphaned", owner=uid, object=f"{dep_res.kind} {key_of(dep)}")

    async def _remove_finalizer(self, res: Resource, obj: Obj, finalizer: str) -> None:
        """Read, drop the finalizer, write guarded by resourceVersion; retry on conflict."""
        ns, name = meta(obj).get("namespace", ""), meta(obj)["name"]
        for attempt in range(FINALIZER_RETRIES):
            try:
                cur: Obj = await self.client.get(res, ns, name)
            except ApiError as e:
                if e.code == 404:
                    return
                raise
            if uid_of(cur) != uid_of(obj):
                return
            finalizers = meta(cur).get("finalizers") or []
            if finalizer not in finalizers:
                return
            rest: Any = [f for f in finalizers if f != finalizer] or None
            body = {"metadata": {"resourceVersion": meta(cur)["resourceVersion"], "finalizers": rest}}
            try:
                await self.client.patch(res, ns, name, body, patch_type="merge")
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code == 409 and attempt + 1 < FINALIZER_RETRIES:
                    continue
                raise
            event(log, "finalizer_removed", object=f"{res.kind} {key_of(obj)}", finalizer=finalizer)
            return
