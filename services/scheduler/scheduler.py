"""The scheduler's control loop: pending pod -> filter and score -> assume -> bind, driven by events.

Why this exists: this is the service that turns ``spec.nodeName == ""`` into a placement. The pure
parts live elsewhere (plugins and :mod:`framework` decide, :mod:`queue` orders the attempts,
:mod:`cache` keeps node state); this module wires them to the cluster the kubenats way:

* informers for pods, nodes and namespaces (NATS events + relists) feed the cache and the queue;
  the pod informer caches pods stripped to what scheduling reads (:mod:`pod_transform`).
  A pod with no ``spec.nodeName``, no ``deletionTimestamp`` and ``spec.schedulerName``
  ``default-scheduler`` (or empty) is queued; a bound pod is accounted on its node; node and pod
  events that may make a parked pod schedulable move it back (node added or changed in
  allocatable, labels, taints or ``unschedulable``; a bound pod deleted, finished or relabelled),
  narrowed by a cheap "could it fit on that node" pre-check so a busy cluster does not retry every
  parked pod on every event.
* the loop (:meth:`Scheduler.run`, only while this replica leads) pops one pod at a time, runs
  ``Profile.schedule`` over the cache's NodeInfos (the list itself, never a copy), assumes the
  pod onto the chosen node and starts the bind (``POST pods/<name>/binding`` with the pod's uid)
  in the background, so a decision never waits for the API. At most ``bind_concurrency`` binds
  are in flight; when they are all busy the loop waits, which is the backpressure.
* a bind that fails forgets the assumption; a 409 means the pod was bound elsewhere, deleted or
  replaced, so the informer's view decides whether it is still pending (then it is retried after
  backoff); other errors retry after backoff with a ``FailedScheduling`` "Binding rejected" Event.
* a pod no node fits gets ``PodScheduled=False`` / ``Unschedulable`` with kube-scheduler's message
  (written through the ``status`` subresource only when it changed, as a strategic merge patch
  guarded by the pod's resourceVersion so a stale "unschedulable" can never overwrite a binding
  that happened meanwhile), a ``FailedScheduling`` Event with the same message, and is parked.

Events (``Scheduled``, ``FailedScheduling``) go through a bounded queue drained by a few workers:
they never slow a decision, and under overload the surplus is dropped and counted, as client-go's
event broadcaster drops when its queue is full.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from services.scheduler.cache import SchedulerCache
from services.scheduler.framework import (
    CycleState,
    FilterPlugin,
    NodeInfo,
    Obj,
    PodInfo,
    Profile,
    failure_message,
    pod_key,
    schedule_one,
)
from services.scheduler.plugins import default_profile
from services.scheduler.pod_transform import strip_pod
from services.scheduler.queue import PreCheck, QueueClosed, QueuedPodInfo, SchedulingQueue
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from shared.errors import ApiError
from shared.informer import DEFAULT_RESYNC_PERIOD, Informer
from shared.log import event
from shared.recorder import EventRecorder

__all__ = ["DEFAULT_SCHEDULER_NAME", "Scheduler", "SchedulerStats", "is_assigned", "node_scheduling_properties_changed"]

log = logging.getLogger("kubenats.scheduler")

PODS: Final = BY_PLURAL[("", "pods")]
NODES: Final = BY_PLURAL[("", "nodes")]
NAMESPACES: Final = BY_PLURAL[("", "namespaces")]
DEFAULT_SCHEDULER_NAME: Final = "default-scheduler"
_AFFINITY_PLUGIN: Final = "InterPodAffinity"


# ------------------------------------------------------------------ pod and node predicates


def is_assigned(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _deleting(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _ns_name(pod: Mapping[str, Any]) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def node_scheduling_properties_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Upstream's ``nodeSchedulingPropertiesChange``: a change that may let a parked pod fit.

    ``spec.unschedulable``, allocatable, labels or taints; heartbeats and conditions do not count.
    """
    os_, ns_ = old.get("spec") or {}, new.get("spec") or {}
    if bool(os_.get("unschedulable")) != bool(ns_.get("unschedulable")):
        return True
    if (os_.get("taints") or []) != (ns_.get("taints") or []):
        return True
    if ((old.get("metadata") or {}).get("labels") or {}) != ((new.get("metadata") or {}).get("labels") or {}):
        return True
    ost, nst = old.get("status") or {}, new.get("status") or {}
    return (ost.get("allocatable") or ost.get("capacity")) != (nst.get("allocatable") or nst.get("capacity"))


def _pod_resources(pod: Mapping[str, Any]) -> list[Any]:
    spec = pod.get("spec") or {}
    return [[c.get("resources") for c in spec.get(k) or ()] for k in ("containers", "initContainers")] + [
        spec.get("resources"), spec.get("overhead")]


def _rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_ref(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = pod.get("metadata") or {}
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta}}


def _scheduled_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "PodScheduled":
            return c  # type: ignore[no-any-return]
    return None


@dataclass
class SchedulerStats:
    """Counters, logged periodically as ``scheduler_stats``."""

    attempts: int = 0
    scheduled: int = 0
    unschedulable: int = 0
    bind_conflicts: int = 0
    bind_errors: int = 0
    status_writes: int = 0
    status_write_conflicts: int = 0
    events_dropped: int = 0
    assumed_expired: int = 0
    decision_seconds: float = 0.0  # wall time in filter + score + assume
    decision_cpu_seconds: float = 0.0  # the same in CPU time (excludes time the process was not running)


class Scheduler:
    """Informers + cache + queue + the scheduling loop of one scheduler replica."""

    def __init__(self, client: ApiClient, bus: Bus, *, profile: Profile | None = None,
                 scheduler_name: str = DEFAULT_SCHEDULER_NAME, bind_concurrency: int = 8,
                 status_concurrency: int = 8, event_workers: int = 2, event_queue_size: int = 1000,
                 recorder: EventRecorder | None = None, clock: Callable[[], float] = time.monotonic,
                 resync_period: float = DEFAULT_RESYNC_PERIOD, stats_period: float = 10.0,
                 identity: str = "") -> None:
        if bind_concurrency < 1 or status_concurrency < 1 or event_workers < 1:
            raise ValueError("concurrency limits must be >= 1")
        self.client = client
        self.bus = bus
        self.profile = profile or default_profile()
        self.scheduler_name = scheduler_name
        self.clock = clock
        self.recorder = recorder or EventRecorder(client, DEFAULT_SCHEDULER_NAME, identity)
        self.cache = SchedulerCache(clock=clock)
        self.queue = SchedulingQueue(clock=clock)
        self.stats = SchedulerStats()
        self.stats_period = stats_period
        # the pod cache keeps only what scheduling reads (pod_transform): pods are most of the memory
        self.pods = Informer(bus, client, PODS, resync_period=resync_period, transform=strip_pod)
        self.nodes = Informer(bus, client, NODES, resync_period=resync_period)
        self.namespaces = Informer(bus, client, NAMESPACES, resync_period=resync_period)
        self._ns_labels: dict[str, dict[str, str]] = {}
        self._precheck_filters: list[FilterPlugin] = [f for f in self.profile.filters if f.name != _AFFINITY_PLUGIN]
        self._bind_slots = asyncio.Semaphore(bind_concurrency)
        self._status_slots = asyncio.Semaphore(status_concurrency)
        self._binds: dict[str, asyncio.Task[None]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._written: dict[str, str] = {}  # pod key -> the Unschedulable message we last wrote
        self._events: asyncio.Queue[tuple[dict[str, Any], str, str, str]] = asyncio.Queue(event_queue_size)
        self._event_workers = event_workers
        self._background: list[asyncio.Task[None]] = []
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Register handlers, start the informers and the background work (not the scheduling loop)."""
        if self._started:
            raise RuntimeError("the scheduler is already started")
        self._started = True
        self.namespaces.add_handler(self._on_namespace, lambda _o, n: self._on_namespace(n), self._on_namespace_delete)
        self.nodes.add_handler(self._on_node_add, self._on_node_update, self._on_node_delete)
        self.pods.add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        for inf in (self.namespaces, self.nodes, self.pods):
            await inf.start()
        self._background = [
            asyncio.create_task(self.queue.run(), name="scheduler-queue-flush"),
            asyncio.create_task(self._cache_cleanup(), name="scheduler-cache-cleanup"),
            asyncio.create_task(self._stats_loop(), name="scheduler-stats"),
            *(asyncio.create_task(self._event_worker(), name=f"scheduler-events-{i}")
              for i in range(self._event_workers)),
        ]

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait for the first list of every informer."""
        await asyncio.wait_for(asyncio.gather(self.namespaces.wait_synced(), self.nodes.wait_synced(),
                                              self.pods.wait_synced()), timeout)

    async def stop(self) -> None:
        """Stop everything started by :meth:`start`; pending Events get a few seconds to be written."""
        self.queue.close()
        await self._abort_binds()
        self.log_stats()
        for t in self._background:
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        for t in list(self._side_tasks):
            t.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self.recorder.flush(), 5)
        except TimeoutError:
            pass
        for inf in (self.pods, self.nodes, self.namespaces):
            await inf.stop()

    # ------------------------------------------------------------------ the scheduling loop

    async def run(self) -> None:
        """Schedule pods until cancelled (run it only while leading). In-flight binds are abandoned on exit."""
        await self.wait_synced()
        event(log, "scheduling_started", nodes=len(self.cache), pending=len(self.queue))
        try:
            while True:
                await self._bind_slots.acquire()
                try:
                    qpi, _cycle = await self.queue.pop()
                except BaseException:
                    self._bind_slots.release()
                    raise
                binding = False
                try:
                    binding = self.schedule_one(qpi)
                except Exception as e:  # a plugin bug must not kill the loop: retry after backoff
                    event(log, "scheduling_error", logging.ERROR, pod="/".join(_ns_name(qpi.pod)),
                          error=f"{type(e).__name__}: {e}")
                    self.queue.add_unschedulable_if_not_present(qpi, unschedulable=False)
                    self.queue.done(qpi.key)
                finally:
                    if not binding:
                        self._bind_slots.release()
                await asyncio.sleep(0)  # let informer events and bind responses in between decisions
        except QueueClosed:
            return
        finally:
            await self._abort_binds()
            event(log, "scheduling_stopped", pending=len(self.queue))

    def _current(self, qpi: QueuedPodInfo) -> Obj | None:
        """The informer's object for a queued pod, or None if it is no longer ours to schedule."""
        ns, name = _ns_name(qpi.pod)
        pod = self.pods.get(f"{ns}/{name}")
        if pod is None or pod_key(pod) != qpi.key or is_assigned(pod) or _deleting(pod) or not self._responsible(pod):
            return None
        return pod

    def schedule_one(self, qpi: QueuedPodInfo) -> bool:
        """One scheduling cycle for a popped pod; True when a bind was started (it owns a bind slot)."""
        key = qpi.key
        pod = self._current(qpi)
        if pod is None or self.cache.has_pod(key):
            self.queue.done(key)
            return False
        qpi.pod = pod
        self.stats.attempts += 1
        nodes = self.cache.node_infos()
        t0, c0 = time.perf_counter(), time.thread_time()
        info = PodInfo(pod)
        result = self.profile.schedule(pod, nodes, self._ns_labels, pod_info=info)
        if result.node is not None:
            self.cache.assume(info, result.node)
        self.stats.decision_seconds += time.perf_counter() - t0
        self.stats.decision_cpu_seconds += time.thread_time() - c0
        if result.node is None:
            message = failure_message(result, len(nodes), pod=pod)
            self.queue.add_unschedulable_if_not_present(qpi)
            self.queue.done(key)
            self._record_unschedulable(pod, qpi, message)
            return False
        task = asyncio.create_task(self._bind(qpi, pod, result.node), name=f"bind {key}")
        self._binds[key] = task
        return True

    async def _bind(self, qpi: QueuedPodInfo, pod: Obj, node: str) -> None:
        key = qpi.key
        ns, name = _ns_name(pod)
        try:
            await self.client.bind(ns, name, node, (pod.get("metadata") or {}).get("uid"))
        except asyncio.CancelledError:
            # abandoned (leadership lost or stopping): the informer will show whether it landed
            self.cache.forget(key)
            self.queue.requeue_now(qpi)
            raise
        except Exception as e:
            self.cache.forget(key)
            message = e.message if isinstance(e, ApiError) else f"{type(e).__name__}: {e}"
            if isinstance(e, ApiError) and e.code in (404, 409):
                self.stats.bind_conflicts += 1
                event(log, "bind_conflict", pod=f"{ns}/{name}", node=node, code=e.code, error=message)
                if self._still_pending(qpi):
                    self.queue.add_unschedulable_if_not_present(qpi, unschedulable=False)
            else:
                self.stats.bind_errors += 1
                event(log, "bind_failed", logging.WARNING, pod=f"{ns}/{name}", node=node, error=message)
                self._emit(pod, "Warning", "FailedScheduling", f"Binding rejected: {message}")
                self.queue.add_unschedulable_if_not_present(qpi, unschedulable=False)
        else:
            self.cache.finish_binding(key)
            self.stats.scheduled += 1
            self._written.pop(key, None)
            event(log, "pod_scheduled", pod=f"{ns}/{name}", node=node, attempts=qpi.attempts,
                  latency_ms=round((self.clock() - qpi.initial_timestamp) * 1000, 1))
            self._emit(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}")
        finally:
            self._binds.pop(key, None)
            self.queue.done(key)
            self._bind_slots.release()

    def _still_pending(self, qpi: QueuedPodInfo) -> bool:
        return self._current(qpi) is not None

    async def _abort_binds(self) -> None:
        tasks = list(self._binds.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def binds_in_flight(self) -> int:
        return len(self._binds)

    # ------------------------------------------------------------------ unschedulable pods

    def _record_unschedulable(self, pod: Obj, qpi: QueuedPodInfo, message: str) -> None:
        ns, name = _ns_name(pod)
        self.stats.unschedulable += 1
        event(log, "pod_unschedulable", pod=f"{ns}/{name}", attempts=qpi.attempts, message=message)
        self._emit(pod, "Warning", "FailedScheduling", message)
        cond = _scheduled_condition(pod)
        if cond is not None and cond.get("status") == "False" and cond.get("reason") == "Unschedulable" and \
                cond.get("message") == message:
            return
        if self._written.get(qpi.key) == message:
            return  # already sent; the informer has not shown it yet
        self._written[qpi.key] = message
        self._spawn(self._write_unschedulable(qpi.key, ns, name, message))

    async def _write_unschedulable(self, key: str, ns: str, name: str, message: str) -> None:
        async with self._status_slots:
            pod = self.pods.get(f"{ns}/{name}")
            if pod is None or pod_key(pod) != key or is_assigned(pod) or _deleting(pod):
                self._written.pop(key, None)
                return
            cond = _scheduled_condition(pod)
            now = _rfc3339()
            since = cond.get("lastTransitionTime") if cond is not None and cond.get("status") == "False" else None
            patch = {"metadata": {"resourceVersion": (pod.get("metadata") or {}).get("resourceVersion")},
                     "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                "message": message, "lastTransitionTime": since or now}]}}
            try:
                await self.client.patch(PODS, ns, name, patch, patch_type="strategic", sub="status")
                self.stats.status_writes += 1
            except ApiError as e:
                if self._written.get(key) == message:
                    self._written.pop(key, None)
                if e.code == 409:
                    self.stats.status_write_conflicts += 1  # the pod changed (maybe bound): the next attempt rewrites
                    event(log, "pod_status_conflict", logging.DEBUG, pod=f"{ns}/{name}")
                else:
                    event(log, "pod_status_failed", logging.WARNING, pod=f"{ns}/{name}", error=e.message)

    # ------------------------------------------------------------------ events

    def _emit(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        try:
            self._events.put_nowait((_pod_ref(pod), type_, reason, message))
        except asyncio.QueueFull:
            self.stats.events_dropped += 1

    async def _event_worker(self) -> None:
        while True:
            ref, type_, reason, message = await self._events.get()
            self.recorder.record(ref, type_, reason, message)
            await self.recorder.flush()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # ------------------------------------------------------------------ background

    async def _cache_cleanup(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for key in self.cache.cleanup_expired():
                self.stats.assumed_expired += 1
                event(log, "assumed_pod_expired", logging.WARNING, pod=key)

    def log_stats(self) -> dict[str, Any]:
        """Log the counters as one ``scheduler_stats`` line; returns them."""
        now: dict[str, Any] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self.stats).items()}
        event(log, "scheduler_stats", **now, active=self.queue.active_count, backoff=self.queue.backoff_count,
              parked=self.queue.unschedulable_count, binds_in_flight=len(self._binds), nodes=len(self.cache),
              assumed=self.cache.assumed_count)
        return now

    async def _stats_loop(self) -> None:
        last: dict[str, Any] = {}
        while True:
            await asyncio.sleep(self.stats_period)
            if asdict(self.stats) != last:
                last = asdict(self.stats)
                self.log_stats()

    # ------------------------------------------------------------------ informer handlers

    def _responsible(self, pod: Mapping[str, Any]) -> bool:
        name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER_NAME
        return bool(name == self.scheduler_name)

    def _on_namespace(self, ns: Obj) -> None:
        meta = ns.get("metadata") or {}
        self._ns_labels[str(meta.get("name") or "")] = dict(meta.get("labels") or {})

    def _on_namespace_delete(self, ns: Obj) -> None:
        self._ns_labels.pop(str((ns.get("metadata") or {}).get("name") or ""), None)

    def _fits_node(self, ni: NodeInfo) -> PreCheck:
        """Pre-check for node events: could the pod pass the filters on this node alone?

        InterPodAffinity is left out (it needs every node), so a pod with pod (anti-)affinity is
        always moved: the check may let too many pods through, never too few.
        """
        filters = self._precheck_filters
        labels = self._ns_labels

        def check(pod: Obj) -> bool:
            spec = pod.get("spec") or {}
            aff = spec.get("affinity") or {}
            if aff.get("podAffinity") or aff.get("podAntiAffinity"):
                return True
            try:
                state = CycleState(pod, (ni,), labels)
                return schedule_one(pod, [ni], filters, (), state=state).node is not None
            except Exception:
                return True
        return check

    def _on_node_add(self, node: Obj) -> None:
        ni = self.cache.add_node(node)
        self._move("NodeAdd", self._fits_node(ni), node=ni.name)

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        ni = self.cache.update_node(new)
        if node_scheduling_properties_changed(old, new):
            self._move("NodeUpdate", self._fits_node(ni), node=ni.name)

    def _on_node_delete(self, node: Obj) -> None:
        self.cache.remove_node(node)

    def _move(self, cause: str, pre_check: PreCheck | None, **fields: Any) -> None:
        if not self.queue.unschedulable_count and not self.queue.in_flight_count:
            return
        moved = self.queue.move_all_to_active_or_backoff(cause, pre_check)
        if moved:
            event(log, "pods_requeued", cause=cause, moved=moved, **fields)

    def _freed(self, pod: Obj) -> None:
        """A bound pod left its node: parked pods that could now fit there are retried."""
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        ni = self.cache.node_info(node)
        if ni is not None:
            self._move("AssignedPodDelete", self._fits_node(ni), pod="/".join(_ns_name(pod)))

    def _on_pod_add(self, pod: Obj) -> None:
        if is_assigned(pod):
            self.queue.delete(pod)
            self._written.pop(pod_key(pod), None)
            if _terminal(pod):
                return
            self.cache.add_pod(pod)
            self._assigned_pod_added(pod)
        elif _deleting(pod) or not self._responsible(pod):
            return
        elif not self.cache.is_assumed(pod_key(pod)):
            self.queue.add(pod)

    def _assigned_pod_added(self, pod: Obj) -> None:
        """Upstream's ``AssignedPodAdded``: retry parked pods whose required pod affinity this pod may satisfy."""
        if not self.queue.unschedulable_count and not self.queue.in_flight_count:
            return
        added = PodInfo(pod)
        labels = self._ns_labels

        def check(pending: Obj) -> bool:
            aff = ((pending.get("spec") or {}).get("affinity") or {}).get("podAffinity") or {}
            if not aff.get("requiredDuringSchedulingIgnoredDuringExecution"):
                return False
            terms = PodInfo(pending).required_affinity_terms
            return any(t.matches(added.namespace, added.labels, labels) for t in terms)

        self._move("AssignedPodAdd", check, pod="/".join(_ns_name(pod)))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if pod_key(old) != pod_key(new):  # replaced under the same name (seen across a relist)
            self._on_pod_delete(old)
            self._on_pod_add(new)
            return
        key = pod_key(new)
        if is_assigned(new):
            self.queue.delete(new)
            self._written.pop(key, None)
            if _terminal(new):
                if self.cache.remove_pod(new):
                    self._freed(new)
                return
            if not is_assigned(old) or not self.cache.has_pod(key) or self.cache.is_assumed(key):
                self.cache.add_pod(new)  # bound (confirms our assumption, or someone else bound it)
                self._assigned_pod_added(new)
                return
            self.cache.update_pod(old, new)
            if ((old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels")
                    or _pod_resources(old) != _pod_resources(new)):
                self._move("AssignedPodUpdate", None, pod="/".join(_ns_name(new)))
            return
        if _deleting(new) or not self._responsible(new):
            self.queue.delete(new)
            self._written.pop(key, None)
            return
        if self.cache.is_assumed(key):
            return  # our bind is in flight; its outcome decides
        self.queue.update(old, new)

    def _on_pod_delete(self, pod: Obj) -> None:
        key = pod_key(pod)
        self._written.pop(key, None)
        self.queue.delete(pod)
        if is_assigned(pod) and self.cache.remove_pod(pod):
            self._freed(pod)
