"""Taint-based eviction: pods on a node with NoExecute taints they do not tolerate are deleted.

A port of the NoExecuteTaintManager (pkg/controller/tainteviction), run by the node lifecycle
controller. A pod that tolerates none of a node's NoExecute taints is deleted at once; one that
tolerates them all for a limited time (`tolerationSeconds`: the apiserver gives every pod 300 s
for not-ready and unreachable) is deleted when the shortest of those tolerations runs out,
counted from when this controller first saw the pod under the taints; a pod whose taints go away
meanwhile (the node came back) is spared, with a "Cancelling deletion" event. Before the delete
the pod gets the `DisruptionTarget` condition (reason DeletionByTaintManager), so its owner and
users can tell an eviction from a crash.

The schedule is in memory, as upstream's timed workers: a restarted controller starts the
timers over. Work is keyed `pod:<namespace>/<name>` in the node lifecycle controller's queue;
the delayed re-add of the key is the timer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from shared.informer import Informer, key_of, split_key
from shared.log import event
from shared.recorder import EventRecorder
from shared.workqueue import WorkQueue

from .controller_utils import Obj, is_deleting, meta, now_rfc3339, spec, status
from .taints import NO_EXECUTE, matching_tolerations, min_toleration_seconds, node_taints, pod_tolerations

log = logging.getLogger("kubenats.controllers.tainteviction")

PODS = BY_PLURAL[("", "pods")]
POD_PREFIX = "pod:"


def no_execute_taints(node: Obj | None) -> list[Obj]:
    return [t for t in node_taints(node or {}) if t.get("effect") == NO_EXECUTE]


def eviction_delay(pod: Obj, taints: list[Obj]) -> float | None:
    """Seconds the pod may stay under these NoExecute taints: 0 when one is not tolerated, None
    when it tolerates them forever (or there are none)."""
    if not taints:
        return None
    used = matching_tolerations(taints, pod_tolerations(pod))
    if used is None:
        return 0.0
    seconds = min_toleration_seconds(used)
    return None if seconds < 0 else seconds


class TaintEvictor:
    def __init__(self, client: ApiClient, pods: Informer, nodes: Informer, queue: WorkQueue,
                 recorder: EventRecorder, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.pods = pods
        self.nodes = nodes
        self.queue = queue
        self.recorder = recorder
        self.clock = clock
        self._scheduled: dict[str, float] = {}  # pod key -> when we first saw it under the taints
        self.evictions = 0

    # ---- event handlers --------------------------------------------------------------------
    def pod_added(self, pod: Obj) -> None:
        if spec(pod).get("nodeName"):
            self.queue.add(POD_PREFIX + key_of(pod))

    def pod_updated(self, old: Obj, cur: Obj) -> None:
        if (spec(old).get("nodeName") != spec(cur).get("nodeName")
                or spec(old).get("tolerations") != spec(cur).get("tolerations")
                or is_deleting(old) != is_deleting(cur)):
            self.pod_added(cur)

    def pod_deleted(self, pod: Obj) -> None:
        self._scheduled.pop(key_of(pod), None)

    def node_changed(self, old: Obj | None, cur: Obj) -> None:
        if old is not None and no_execute_taints(old) == no_execute_taints(cur):
            return
        for pod in self.pods.by_index("node-name", str(meta(cur).get("name") or "")):
            self.queue.add(POD_PREFIX + key_of(pod))

    # ---- work ------------------------------------------------------------------------------
    async def sync(self, pod_key: str) -> None:
        """processPodOnNode, then the deletion when its time has come."""
        pod = self.pods.get(pod_key)
        if pod is None or is_deleting(pod) or status(pod).get("phase") in ("Succeeded", "Failed"):
            self._scheduled.pop(pod_key, None)
            return
        node = self.nodes.get(str(spec(pod).get("nodeName") or ""))
        delay = eviction_delay(pod, no_execute_taints(node))
        now = self.clock()
        if delay is None:
            self._cancel(pod_key, pod)
            return
        start = self._scheduled.setdefault(pod_key, now)
        due = start + delay
        if due > now:
            self.queue.add_after(POD_PREFIX + pod_key, due - now + 0.01)
            return
        await self._evict(pod_key, pod)

    def _cancel(self, pod_key: str, pod: Obj) -> None:
        if self._scheduled.pop(pod_key, None) is not None:
            self.recorder.record(pod, "Normal", "TaintManagerEviction", f"Cancelling deletion of Pod {pod_key}")
            event(log, "eviction_cancelled", pod=pod_key)

    async def _evict(self, pod_key: str, pod: Obj) -> None:
        ns, name = split_key(pod_key)
        self.recorder.record(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {pod_key}")
        condition = {"type": "DisruptionTarget", "status": "True", "lastTransitionTime": now_rfc3339(),
                     "reason": "DeletionByTaintManager", "message": "Taint manager: deleting due to NoExecute taint"}
        try:
            await self.client.patch(PODS, ns, name, {"status": {"conditions": [condition]}},
                                    patch_type="strategic", sub="status")
            await self.client.delete(PODS, ns, name, uid=meta(pod).get("uid"))
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        self._scheduled.pop(pod_key, None)
        self.evictions += 1
        event(log, "pod_evicted", pod=pod_key, node=spec(pod).get("nodeName"))
