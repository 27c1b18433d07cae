"""The scheduling queue: which pending pod the scheduler tries next, and when a failed one is retried.

Why this exists: a scheduler that retried every unschedulable pod in a tight loop would burn its
CPU on pods that cannot fit, and one that only retried on a timer would leave a pod pending long
after a node that fits it joined. This is kube-scheduler's ``PriorityQueue``
(pkg/scheduler/internal/queue/scheduling_queue.go), in three parts:

* **activeQ**: pods ready to be tried, highest ``spec.priority`` first, then by the time they were
  queued (FIFO for equal priorities);
* **backoffQ**: pods that failed and wait out their backoff (1 s doubling per attempt up to 10 s)
  before going back to activeQ;
* **unschedulablePods**: pods no node could take. They stay parked until a cluster event that may
  make them schedulable (node added or changed, a bound pod deleted or changed) moves them to
  activeQ, or to backoffQ while still backing off; a pod parked longer than
  ``max_unschedulable_duration`` (60 s) is moved regardless, so a missed event costs a minute,
  never forever.

A pod popped for scheduling is *in flight* until :meth:`SchedulingQueue.done`. An event that may
concern it while in flight marks it, and a failed attempt then goes to backoffQ instead of
unschedulablePods (upstream's in-flight event tracking), so an event arriving during the attempt
is never lost.

Keys are pod UIDs (``framework.pod_key``), so a pod deleted and recreated under the same name is
a new entry. The clock is injectable: tests drive backoff and the flushes without sleeping; the
service runs :meth:`SchedulingQueue.run` for them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from services.scheduler.framework import Obj, pod_key

__all__ = [
    "DEFAULT_INITIAL_BACKOFF",
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_MAX_UNSCHEDULABLE_DURATION",
    "QueueClosed",
    "QueuedPodInfo",
    "SchedulingQueue",
    "is_pod_updated",
]

DEFAULT_INITIAL_BACKOFF: Final = 1.0
DEFAULT_MAX_BACKOFF: Final = 10.0
DEFAULT_MAX_UNSCHEDULABLE_DURATION: Final = 60.0
# How often run() looks at the unschedulable pods for ones parked too long.
_LEFTOVER_FLUSH_PERIOD: Final = 1.0

PreCheck = Callable[[Obj], bool]


class QueueClosed(Exception):
    """Raised by :meth:`SchedulingQueue.pop` once the queue is closed."""


@dataclass(slots=True, eq=False)
class QueuedPodInfo:
    """A pending pod and its scheduling history (upstream's ``framework.QueuedPodInfo``).

    ``timestamp`` is when it was last queued (or last failed); ``initial_timestamp`` when it
    first entered the queue (for the creation-to-bind latency); ``attempts`` counts pops.
    """

    pod: Obj
    key: str
    timestamp: float
    initial_timestamp: float
    attempts: int = 0
    # set while in flight when an event that may make it schedulable arrives
    moved_while_in_flight: bool = False
    # set while in flight when the pod was deleted, bound elsewhere, or left our responsibility
    gone: bool = False
    _seq: int = field(default=0, repr=False)

    @property
    def priority(self) -> int:
        return pod_priority(self.pod)

    @property
    def namespace(self) -> str:
        return str((self.pod.get("metadata") or {}).get("namespace") or "default")

    @property
    def name(self) -> str:
        return str((self.pod.get("metadata") or {}).get("name") or "")


def pod_priority(pod: Mapping[str, Any]) -> int:
    prio = (pod.get("spec") or {}).get("priority")
    return prio if isinstance(prio, int) and not isinstance(prio, bool) else 0


_IGNORED_META: Final = ("resourceVersion", "generation", "managedFields")


def _strip(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (pod.get("metadata") or {}).items() if k not in _IGNORED_META}
    return {**{k: v for k, v in pod.items() if k not in ("metadata", "status")}, "metadata": meta}


def is_pod_updated(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Upstream's ``isPodUpdated``: did anything change besides status, resourceVersion and generation?

    The scheduler's own status write (PodScheduled=False) must not count, or every failed attempt
    would immediately retry itself.
    """
    return _strip(old) != _strip(new)


class SchedulingQueue:
    """activeQ + backoffQ + unschedulablePods, as kube-scheduler's ``PriorityQueue``.

    Every method except :meth:`pop` and :meth:`run` is synchronous; call them from the event loop
    (informer handlers do).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 initial_backoff: float = DEFAULT_INITIAL_BACKOFF, max_backoff: float = DEFAULT_MAX_BACKOFF,
                 max_unschedulable_duration: float = DEFAULT_MAX_UNSCHEDULABLE_DURATION) -> None:
        self.clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable_duration = max_unschedulable_duration
        self._seq = itertools.count(1)
        self._active: dict[str, QueuedPodInfo] = {}
        self._active_heap: list[tuple[int, float, int, str]] = []  # (-priority, timestamp, seq, key)
        self._backoff: dict[str, QueuedPodInfo] = {}
        self._backoff_heap: list[tuple[float, int, str]] = []  # (backoff expiry, seq, key)
        self._unschedulable: dict[str, QueuedPodInfo] = {}
        self._in_flight: dict[str, QueuedPodInfo] = {}
        self._wakeup = asyncio.Event()
        self._backoff_changed = asyncio.Event()
        self._closed = False
        self.scheduling_cycle = 0
        self.moves = 0  # pods moved out of unschedulablePods

    # ------------------------------------------------------------------ sizes

    def __len__(self) -> int:
        """Pods waiting anywhere in the queue (not those in flight)."""
        return len(self._active) + len(self._backoff) + len(self._unschedulable)

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def backoff_count(self) -> int:
        return len(self._backoff)

    @property
    def unschedulable_count(self) -> int:
        return len(self._unschedulable)

    @property
    def in_flight_count(self) -> int:
        return len(self._in_flight)

    def where(self, key: str) -> str | None:
        """Which sub-queue holds ``key``: "active", "backoff", "unschedulable", "in_flight" or None."""
        for name, d in (("active", self._active), ("backoff", self._backoff),
                        ("unschedulable", self._unschedulable), ("in_flight", self._in_flight)):
            if key in d:
                return name
        return None

    def get(self, key: str) -> QueuedPodInfo | None:
        return (self._active.get(key) or self._backoff.get(key) or self._unschedulable.get(key)
                or self._in_flight.get(key))

    # ------------------------------------------------------------------ backoff

    def backoff_duration(self, qpi: QueuedPodInfo) -> float:
        """``calculateBackoffDuration``: initial * 2^(attempts-1), capped at max."""
        duration = self.initial_backoff
        for _ in range(1, qpi.attempts):
            duration *= 2
            if duration >= self.max_backoff:
                return self.max_backoff
        return min(duration, self.max_backoff)

    def backoff_expiry(self, qpi: QueuedPodInfo) -> float:
        return qpi.timestamp + self.backoff_duration(qpi)

    def is_backing_off(self, qpi: QueuedPodInfo) -> bool:
        return qpi.attempts > 0 and self.backoff_expiry(qpi) > self.clock()

    # ------------------------------------------------------------------ internal moves

    def _push_active(self, qpi: QueuedPodInfo) -> None:
        qpi._seq = next(self._seq)
        self._active[qpi.key] = qpi
        heapq.heappush(self._active_heap, (-qpi.priority, qpi.timestamp, qpi._seq, qpi.key))
        self._wakeup.set()

    def _push_backoff(self, qpi: QueuedPodInfo) -> None:
        qpi._seq = next(self._seq)
        self._backoff[qpi.key] = qpi
        expiry = self.backoff_expiry(qpi)
        if not self._backoff_heap or expiry < self._backoff_heap[0][0]:
            self._backoff_changed.set()
        heapq.heappush(self._backoff_heap, (expiry, qpi._seq, qpi.key))

    def _discard(self, key: str) -> QueuedPodInfo | None:
        """Take ``key`` out of whichever waiting sub-queue holds it (heap entries die lazily)."""
        return self._active.pop(key, None) or self._backoff.pop(key, None) or self._unschedulable.pop(key, None)

    def _requeue(self, qpi: QueuedPodInfo) -> None:
        """To backoffQ while backing off, else activeQ (``requeuePodViaQueueingHint`` without hints)."""
        if self.is_backing_off(qpi):
            self._push_backoff(qpi)
        else:
            self._push_active(qpi)

    # ------------------------------------------------------------------ informer-driven changes

    def add(self, pod: Obj) -> None:
        """A new pending pod: to activeQ. A pod already known is treated as an update."""
        key = pod_key(pod)
        if self.get(key) is not None:
            self.update(None, pod)
            return
        now = self.clock()
        self._push_active(QueuedPodInfo(pod, key, now, now))

    def update(self, old: Obj | None, new: Obj) -> None:
        """A pending pod changed: keep the newest object; a real change retries an unschedulable pod."""
        key = pod_key(new)
        changed = old is None or is_pod_updated(old, new)
        qpi = self._in_flight.get(key)
        if qpi is not None:
            qpi.pod = new
            if changed:
                qpi.moved_while_in_flight = True
            return
        qpi = self._active.get(key)
        if qpi is not None:
            prio = qpi.priority
            qpi.pod = new
            if qpi.priority != prio:
                self._push_active(qpi)  # re-sort; the old heap entry dies lazily
            return
        qpi = self._backoff.get(key)
        if qpi is not None:
            qpi.pod = new
            if changed and not self.is_backing_off(qpi):
                del self._backoff[key]
                self._push_active(qpi)
            return
        qpi = self._unschedulable.get(key)
        if qpi is not None:
            qpi.pod = new
            if changed:
                del self._unschedulable[key]
                self.moves += 1
                self._requeue(qpi)
            return
        now = self.clock()
        self._push_active(QueuedPodInfo(new, key, now, now))

    def delete(self, pod_or_key: Mapping[str, Any] | str) -> bool:
        """The pod is gone, bound, or no longer ours: forget it (an in-flight one is marked gone)."""
        key = pod_or_key if isinstance(pod_or_key, str) else pod_key(pod_or_key)
        found = self._discard(key) is not None
        qpi = self._in_flight.get(key)
        if qpi is not None:
            qpi.gone = True
            found = True
        return found

    def move_all_to_active_or_backoff(self, event: str, pre_check: PreCheck | None = None) -> int:
        """A cluster event may have made pods schedulable: move the unschedulable ones it concerns.

        ``pre_check(pod)`` narrows the move (e.g. "could fit on the node that was just added");
        in-flight pods it concerns are marked so that a failure sends them to backoffQ. Returns
        how many pods left unschedulablePods. ``event`` names the cause for logs.
        """
        moved = 0
        for key, qpi in list(self._unschedulable.items()):
            if pre_check is None or pre_check(qpi.pod):
                del self._unschedulable[key]
                self._requeue(qpi)
                moved += 1
        for qpi in self._in_flight.values():
            if pre_check is None or pre_check(qpi.pod):
                qpi.moved_while_in_flight = True
        self.moves += moved
        return moved

    # ------------------------------------------------------------------ the scheduling loop's side

    async def pop(self) -> tuple[QueuedPodInfo, int]:
        """Wait for the next pod in activeQ; it is in flight until :meth:`done`. Returns (pod, cycle)."""
        while True:
            if self._closed:
                raise QueueClosed()
            qpi = self._pop_active()
            if qpi is not None:
                break
            self._wakeup.clear()
            await self._wakeup.wait()
        self.scheduling_cycle += 1
        qpi.attempts += 1
        qpi.moved_while_in_flight = False
        qpi.gone = False
        self._in_flight[qpi.key] = qpi
        return qpi, self.scheduling_cycle

    def _pop_active(self) -> QueuedPodInfo | None:
        heap = self._active_heap
        while heap:
            _, _, seq, key = heapq.heappop(heap)
            qpi = self._active.get(key)
            if qpi is not None and qpi._seq == seq:
                del self._active[key]
                return qpi
        return None

    def add_unschedulable_if_not_present(self, qpi: QueuedPodInfo, *, unschedulable: bool = True) -> bool:
        """Park a pod whose attempt failed (call before :meth:`done`).

        ``unschedulable`` False means the attempt failed for another reason (a bind error): the
        pod goes to backoffQ. So does one that an event concerned while it was in flight. A pod
        gone meanwhile, or already queued again (re-added by the informer), is not parked.
        Returns whether it was queued.
        """
        if qpi.gone or self._in_flight.get(qpi.key) not in (qpi, None):
            return False
        if qpi.key in self._active or qpi.key in self._backoff or qpi.key in self._unschedulable:
            return False
        qpi.timestamp = self.clock()
        if not unschedulable or qpi.moved_while_in_flight:
            self._push_backoff(qpi)
        else:
            self._unschedulable[qpi.key] = qpi
        return True

    def requeue_now(self, qpi: QueuedPodInfo) -> bool:
        """Give an in-flight pod back to activeQ without counting a failure (e.g. leadership lost)."""
        if qpi.gone or qpi.key in self._active or qpi.key in self._backoff or qpi.key in self._unschedulable:
            return False
        qpi.attempts = max(0, qpi.attempts - 1)
        self._push_active(qpi)
        return True

    def done(self, key: str) -> None:
        """The attempt for ``key`` is over (scheduled, parked or dropped)."""
        self._in_flight.pop(key, None)

    # ------------------------------------------------------------------ periodic flushes

    def flush_backoff_completed(self) -> int:
        """Move pods whose backoff has expired to activeQ; returns how many."""
        now = self.clock()
        heap = self._backoff_heap
        moved = 0
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            qpi = self._backoff.get(key)
            if qpi is None or qpi._seq != seq:
                continue
            del self._backoff[key]
            self._push_active(qpi)
            moved += 1
        return moved

    def flush_unschedulable_left_over(self) -> int:
        """Move pods parked longer than ``max_unschedulable_duration`` to activeQ/backoffQ."""
        now = self.clock()
        stale = [qpi for qpi in self._unschedulable.values() if now - qpi.timestamp >= self.max_unschedulable_duration]
        for qpi in stale:
            del self._unschedulable[qpi.key]
            self._requeue(qpi)
        self.moves += len(stale)
        return len(stale)

    def next_backoff_expiry(self) -> float | None:
        heap = self._backoff_heap
        while heap:
            expiry, seq, key = heap[0]
            qpi = self._backoff.get(key)
            if qpi is not None and qpi._seq == seq:
                return expiry
            heapq.heappop(heap)
        return None

    async def run(self) -> None:
        """Flush backoffQ when pods' backoff expires and unschedulablePods every second, until cancelled."""
        last_leftover = self.clock()
        while not self._closed:
            self.flush_backoff_completed()
            now = self.clock()
            if now - last_leftover >= _LEFTOVER_FLUSH_PERIOD:
                self.flush_unschedulable_left_over()
                last_leftover = now
            expiry = self.next_backoff_expiry()
            delay = _LEFTOVER_FLUSH_PERIOD if expiry is None else min(max(expiry - self.clock(), 0.005),
                                                                     _LEFTOVER_FLUSH_PERIOD)
            self._backoff_changed.clear()
            try:
                await asyncio.wait_for(self._backoff_changed.wait(), delay)
            except TimeoutError:
                pass

    def close(self) -> None:
        """Wake every :meth:`pop` caller with :class:`QueueClosed`."""
        self._closed = True
        self._wakeup.set()
        self._backoff_changed.set()

    def pending(self) -> Iterable[QueuedPodInfo]:
        """Every waiting pod (active, backoff, unschedulable), for debugging and tests."""
        return [*self._active.values(), *self._backoff.values(), *self._unschedulable.values()]
