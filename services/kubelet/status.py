"""The status manager: pod statuses written through `pods/<name>/status`, only when they changed.

Why this exists: pod workers recompute a pod's status after every sync, many times a minute; the
API must see a write only when something a client can observe changed (upstream status_manager.go
does the same). Writes go through a work queue keyed by pod UID, so a burst of changes to one pod
becomes one write of the newest status, a write never races another write of the same pod, and
failures (the API server down) are retried with capped back-off while the kubelet carries on.

Each write is a JSON patch that first *tests* `metadata.uid`: a pod deleted and recreated under
the same name never receives the old pod's status, and no resourceVersion read is needed. Static
pods write to their mirror pod (`Target` names it); until the mirror exists the newest status
waits here. One manager can serve many hollow nodes in one process: it is keyed by UID only.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from typing import Any

from services.kubelet.apiclient import PRIORITY
from services.kubelet.podstatus import comparable
from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from shared.log import event
from shared.workqueue import ExponentialBackoff, WorkQueue, run_workers

log = logging.getLogger("kubenats.kubelet.status")
PODS = BY_PLURAL[("", "pods")]
Obj = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """The API object that carries a pod's status (the pod itself, or a static pod's mirror)."""

    namespace: str
    name: str
    uid: str


@dataclass
class _Written:
    target_uid: str
    status: Any  # comparable() form
    revision: int


class StatusManager:
    def __init__(self, client: ApiClient | None, *, workers: int = 4, retry_max: float = 10.0) -> None:
        self.client = client
        self.queue = WorkQueue("kubelet-status", backoff=ExponentialBackoff(0.2, retry_max))
        self.workers = workers
        self._desired: dict[str, tuple[Target | None, Obj]] = {}
        self._written: dict[str, _Written] = {}
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        self.write_failures = 0

    def start(self) -> None:
        if self._task is None:
            # pod status goes ahead of Events and other bulk writes in the kubelet's API lane: a
            # fleet of hollow nodes under load otherwise reports Running minutes late
            ctx = contextvars.copy_context()
            ctx.run(PRIORITY.set, 1)
            self._task = asyncio.get_running_loop().create_task(
                run_workers(self.queue, self._reconcile, self.workers), name="kubelet status manager", context=ctx)

    async def stop(self) -> None:
        self.queue.shutdown()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    # ---- the pod workers' side -------------------------------------------------------------

    def last(self, uid: str) -> Obj | None:
        """The newest status set for the pod (the basis for the next one), if any."""
        d = self._desired.get(uid)
        return d[1] if d else None

    def observe(self, uid: str, target: Target, status: Obj | None, revision: int) -> None:
        """What the API holds for the pod (from the informer). The first observation seeds the
        baseline, so a restarted kubelet writes nothing when its status is unchanged; a newer
        revision that differs from our last write (someone else wrote) makes us write again."""
        written = self._written.get(uid)
        if written is not None and written.target_uid == target.uid and revision <= written.revision:
            return
        cmp = comparable(status)
        if written is None or written.target_uid != target.uid or written.status != cmp:
            self._written[uid] = _Written(target.uid, cmp, revision)
            if uid not in self._desired and status:
                self._desired[uid] = (target, dict(status))
            if uid in self._desired:
                self.queue.add(uid)
        else:
            written.revision = revision

    def set(self, uid: str, target: Target | None, status: Obj) -> None:
        """The newest status of the pod; written if it differs from what the API has."""
        self._desired[uid] = (target, status)
        written = self._written.get(uid)
        if target is None:
            return
        if written is None or written.target_uid != target.uid or written.status != comparable(status):
            self.queue.add(uid)

    def forget(self, uid: str) -> None:
        self._desired.pop(uid, None)
        self._written.pop(uid, None)

    # ---- the writer --------------------------------------------------------------------------

    async def _reconcile(self, uid: str) -> None:
        desired = self._desired.get(uid)
        if desired is None:
            return
        target, status = desired
        if target is None or self.client is None:
            return
        cmp = comparable(status)
        written = self._written.get(uid)
        if written is not None and written.target_uid == target.uid and written.status == cmp:
            return
        ops = [{"op": "test", "path": "/metadata/uid", "value": target.uid},
               {"op": "add", "path": "/status", "value": status}]
        try:
            result = await self.client.patch(PODS, target.namespace, target.name, ops, patch_type="json", sub="status")
        except ApiError as e:
            if e.code in (404, 409, 422) or (400 <= e.code < 500 and e.code != 429):
                # gone, or replaced by another pod of the same name: nothing to write to
                event(log, "pod_status_dropped", logging.DEBUG, pod=f"{target.namespace}/{target.name}",
                      code=e.code, error=e.message)
                return
            self.write_failures += 1
            raise
        self.writes += 1
        rv = int((result.get("metadata") or {}).get("resourceVersion") or 0)
        self._written[uid] = _Written(target.uid, cmp, rv)
        event(log, "pod_status_written", logging.DEBUG, pod=f"{target.namespace}/{target.name}",
              phase=status.get("phase"), revision=rv)
