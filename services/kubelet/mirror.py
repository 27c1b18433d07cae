"""Mirror pods: the API's view of this node's static pods (upstream pod/mirror_client.go).

Why this exists: a static pod runs from a file, but users and controllers look at pods through
the API; its mirror pod (same name and spec, `kubernetes.io/config.mirror` = the static pod's
hash, owned by the Node) shows it there and carries its status. The kubelet never runs a mirror
and the API cannot stop a static pod: a mirror that is deleted (it gets a deletionTimestamp, since
it is bound and running) or no longer matches its static pod (the manifest changed) is deleted for
good — grace 0, UID precondition — and created again; a mirror whose static pod is gone is deleted.
`MirrorPods` keeps the mirrors the pod informer reports (plus the ones it just created, so a slow
event never causes a duplicate create) and makes those calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from services.kubelet.static import full_name, mirror_hash, mirror_pod
from services.kubelet.status import Target
from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from shared.log import event

log = logging.getLogger("kubenats.kubelet.mirror")
PODS = BY_PLURAL[("", "pods")]
Obj = dict[str, Any]


def _deleting(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def target_of(mirror: Obj) -> Target:
    m = mirror.get("metadata") or {}
    return Target(str(m.get("namespace")), str(m.get("name")), str(m.get("uid")))


class MirrorPods:
    def __init__(self, client: ApiClient | None, node_name: str) -> None:
        self.client = client
        self.node_name = node_name
        self.by_name: dict[str, Obj] = {}  # full name -> mirror pod

    def get(self, name: str) -> Obj | None:
        return self.by_name.get(name)

    def matching(self, static: Obj) -> Obj | None:
        """The live mirror of this exact static pod, if the API has one."""
        mirror = self.by_name.get(full_name(static))
        uid = str((static.get("metadata") or {}).get("uid"))
        if mirror is None or mirror_hash(mirror) != uid or _deleting(mirror):
            return None
        return mirror

    def seen(self, mirror: Obj) -> None:
        """The informer added or updated a mirror."""
        self.by_name[full_name(mirror)] = mirror

    def gone(self, mirror: Obj) -> None:
        """The informer saw a mirror deleted (only forget it if it is still the one we know)."""
        name = full_name(mirror)
        current = self.by_name.get(name)
        if current is not None and (current.get("metadata") or {}).get("uid") == (mirror.get("metadata") or {}).get("uid"):
            del self.by_name[name]

    async def ensure(self, static: Obj, node_uid: str) -> Obj | None:
        """Make the static pod's mirror exist and match; returns the new mirror when one was made."""
        if self.client is None:
            return None
        uid = str(static["metadata"]["uid"])
        name = full_name(static)
        mirror = self.by_name.get(name)
        if mirror is not None and (_deleting(mirror) or mirror_hash(mirror) != uid):
            await self.delete(mirror)
            mirror = None
        if mirror is not None:
            return None
        try:
            created = await self.client.create(PODS, str(static["metadata"]["namespace"]),
                                               mirror_pod(static, self.node_name, node_uid))
            event(log, "mirror_pod_created", pod=name, static_uid=uid, mirror_uid=created["metadata"].get("uid"))
        except ApiError as e:
            if e.code != 409:
                raise
            ns, _, n = name.partition("/")
            created = await self.client.get(PODS, ns, n)  # an older mirror still there: next sync sorts it out
        self.by_name[name] = created
        return created

    async def delete(self, mirror: Obj) -> None:
        if self.client is None:
            return
        m = mirror["metadata"]
        try:
            await self.client.delete(PODS, str(m.get("namespace")), str(m.get("name")), grace_period=0,
                                     uid=str(m.get("uid")))
            event(log, "mirror_pod_deleted", pod=full_name(mirror), mirror_uid=m.get("uid"))
        except ApiError as e:
            if e.code not in (404, 409):  # gone already, or it is another object by now
                raise
        self.gone(mirror)

    async def delete_for(self, static: Obj) -> None:
        """The static pod was removed: delete its mirror (only if it is that pod's mirror)."""
        mirror = self.by_name.get(full_name(static))
        if mirror is not None and mirror_hash(mirror) == str((static.get("metadata") or {}).get("uid")):
            await self.delete(mirror)

    async def delete_orphans(self, statics: Iterable[Obj]) -> None:
        """Delete mirrors whose static pod no longer exists under that name."""
        names = {full_name(p) for p in statics}
        for mirror in list(self.by_name.values()):
            if full_name(mirror) not in names:
                try:
                    await self.delete(mirror)
                except ApiError as e:
                    event(log, "orphan_mirror_delete_failed", logging.DEBUG, pod=full_name(mirror), error=e.message)
