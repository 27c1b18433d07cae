"""Adoption and release of children by controller reference (controller_ref_manager.go).

A ReplicaSet owns the pods whose ownerReferences name it as controller; a Deployment owns its
ReplicaSets the same way. Labels decide what *should* be owned: an orphan that matches the
selector is adopted, an owned child that stopped matching is released, and a child controlled
by someone else is never touched. Adoption first re-reads the owner from the API (a quorum
read, not the cache) and refuses when it is gone or being deleted, so a controller that is
going away cannot grab children; both writes are strategic merge patches on
`metadata.ownerReferences` keyed by uid, so other owners' references are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from shared.api.resources import Resource
from shared.client import ApiClient
from shared.errors import ApiError
from shared.log import event
from shared.selectors import LabelSelector

from .controller_utils import Obj, controller_ref, is_deleting, labels_of, meta, new_controller_ref, uid_of

log = logging.getLogger("kubenats.controllers.refs")


class CannotAdopt(Exception):
    """The owner is gone or being deleted: it must not adopt anything."""


def adopt_patch(owner: Obj, api_version: str, kind: str, child_uid: str) -> Obj:
    return {"metadata": {"ownerReferences": [new_controller_ref(owner, api_version, kind)], "uid": child_uid}}


def release_patch(owner_uid: str, child_uid: str) -> Obj:
    return {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": child_uid}}


class RefManager:
    """Claims children for one owner (BaseControllerRefManager.ClaimObject)."""

    def __init__(self, client: ApiClient, owner: Obj, owner_res: Resource, selector: LabelSelector,
                 child_res: Resource, recheck: Callable[[], Awaitable[Obj]]) -> None:
        self.client = client
        self.owner = owner
        self.owner_res = owner_res
        self.selector = selector
        self.child_res = child_res
        self._recheck = recheck
        self._can_adopt: bool | None = None

    async def can_adopt(self) -> None:
        """RecheckDeletionTimestamp, once per claim: a fresh read of the owner."""
        if self._can_adopt is None:
            try:
                fresh = await self._recheck()
            except ApiError as e:
                self._can_adopt = False
                raise CannotAdopt(f"cannot read {self.owner_res.kind} {meta(self.owner).get('name')}: {e.message}") from e
            self._can_adopt = uid_of(fresh) == uid_of(self.owner) and not is_deleting(fresh)
        if not self._can_adopt:
            raise CannotAdopt(f"{self.owner_res.kind} {meta(self.owner).get('name')} is gone or being deleted")

    async def claim(self, children: Sequence[Obj]) -> list[Obj]:
        """The children this owner controls after adopting and releasing; raises the first error
        after trying every child (the caller requeues)."""
        claimed: list[Obj] = []
        first_error: Exception | None = None
        for child in children:
            try:
                if await self._claim_one(child):
                    claimed.append(child)
            except (ApiError, CannotAdopt) as e:
                first_error = first_error or e
        if first_error is not None:
            raise first_error
        return claimed

    async def _claim_one(self, child: Obj) -> bool:
        owner_uid = uid_of(self.owner)
        ref = controller_ref(child)
        matches = self.selector.matches(labels_of(child))
        if ref is not None:
            if ref.get("uid") != owner_uid:
                return False  # someone else's
            if matches:
                return True
            if is_deleting(self.owner):
                return False
            await self._release(child)
            return False
        if is_deleting(self.owner) or not matches or is_deleting(child):
            return False
        if meta(self.owner).get("namespace", "") != meta(child).get("namespace", ""):
            return False
        return await self._adopt(child)

    async def _adopt(self, child: Obj) -> bool:
        await self.can_adopt()
        cm = meta(child)
        body = adopt_patch(self.owner, self.owner_res.api_version, self.owner_res.kind, uid_of(child))
        try:
            await self.client.patch(self.child_res, cm.get("namespace", ""), cm["name"], body, patch_type="strategic")
        except ApiError as e:
            if e.code == 404:
                return False
            raise
        event(log, "adopted", owner=f"{self.owner_res.kind}/{meta(self.owner).get('name')}",
              child=f"{self.child_res.kind}/{cm.get('namespace')}/{cm['name']}")
        return True

    async def _release(self, child: Obj) -> None:
        cm = meta(child)
        try:
            await self.client.patch(self.child_res, cm.get("namespace", ""), cm["name"],
                                    release_patch(uid_of(self.owner), uid_of(child)), patch_type="strategic")
        except ApiError as e:
            if e.code in (404, 422):  # gone, or no longer carries our reference
                return
            raise
        event(log, "released", owner=f"{self.owner_res.kind}/{meta(self.owner).get('name')}",
              child=f"{self.child_res.kind}/{cm.get('namespace')}/{cm['name']}")
