"""What the controller manager hands every controller: one informer per resource, shared.

kube-controller-manager runs a SharedInformerFactory so that twenty controllers watching pods
hold one cache and one watch, not twenty. This module is that factory for kubenats: a resource's
`Informer` (one NATS subscription, one LIST) is created the first time any controller asks for
it, every controller adds its handlers and indexes to the same instance, and the manager starts
them all and waits for their first list before any worker runs, so no controller ever acts on
a half-filled cache.

Some caches are transformed (client-go's `SetTransform`): the pod informer keeps only the
fields some controller reads (`pod_transform.strip_pod`), because the pods of a large cluster
are most of the manager's memory. Cached objects are read-only; a controller that must write a
cached object back patches the fields it changes instead (see `pod_transform`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.api.resources import Resource
from shared.bus import Bus
from shared.client import ApiClient
from shared.informer import DEFAULT_RESYNC_PERIOD, IndexFunc, Informer, Transform
from shared.recorder import EventRecorder
from shared.workqueue import WorkQueue

from .pod_transform import strip_pod

Obj = dict[str, Any]

# resource key -> the transform of its shared informer
TRANSFORMS: dict[str, Transform] = {"pods": strip_pod}


class SharedInformers:
    """One `Informer` per resource, created on demand and shared by all controllers."""

    def __init__(self, bus: Bus, client: ApiClient, resync_period: float = DEFAULT_RESYNC_PERIOD,
                 transforms: dict[str, Transform] | None = None) -> None:
        self.bus = bus
        self.client = client
        self.resync_period = resync_period
        self.transforms = TRANSFORMS if transforms is None else transforms
        self._informers: dict[str, Informer] = {}
        self._started = False

    def get(self, res: Resource) -> Informer:
        inf = self._informers.get(res.key)
        if inf is None:
            if self._started:
                raise RuntimeError(f"informer for {res.key} requested after start")
            inf = Informer(self.bus, self.client, res, resync_period=self.resync_period,
                           transform=self.transforms.get(res.key))
            self._informers[res.key] = inf
        return inf

    def all(self) -> list[Informer]:
        return list(self._informers.values())

    async def start(self) -> None:
        self._started = True
        for inf in self._informers.values():
            await inf.start()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(inf.wait_synced(timeout) for inf in self._informers.values()))

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()


def ensure_index(inf: Informer, name: str, fn: IndexFunc) -> None:
    """Add an index unless another controller already added one under that name."""
    try:
        inf.add_index(name, fn)
    except ValueError:
        pass


@dataclass
class ControllerContext:
    client: ApiClient
    informers: SharedInformers
    workers: dict[str, int] = field(default_factory=dict)
    default_workers: int = 5
    _recorders: dict[str, EventRecorder] = field(default_factory=dict)

    def recorder(self, component: str) -> EventRecorder:
        rec = self._recorders.get(component)
        if rec is None:
            rec = self._recorders[component] = EventRecorder(self.client, component)
        return rec

    def workers_for(self, name: str) -> int:
        return self.workers.get(name) or self.default_workers

    async def flush_events(self) -> None:
        for rec in self._recorders.values():
            await rec.flush()


class OwnWrites:
    """The resourceVersion of each object this controller last wrote, until its cache catches up.

    Right after a write the informer still holds the previous version (or, after a create, no
    object at all); a reconcile started then would decide on it and its next write would fail
    with a conflict or an AlreadyExists. Such a key can simply be skipped: the event of our own
    write is on its way and enqueues the key again (a lost event makes the informer relist,
    which does the same). Entries expire after `ttl` seconds so that nothing waits forever on
    an event that can no longer come (an object deleted before the cache saw it)."""

    def __init__(self, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._rv: dict[str, tuple[int, float]] = {}

    def wrote(self, key: str, obj: Obj) -> None:
        rv = _rv(obj)
        if rv > self._rv.get(key, (0, 0.0))[0]:
            self._rv[key] = (rv, self._clock())

    def stale(self, key: str, cached: Obj | None) -> bool:
        """True while the cached object (None: not cached yet) is older than our last write."""
        entry = self._rv.get(key)
        if entry is None:
            return False
        if self._clock() - entry[1] > self._ttl or (cached is not None and _rv(cached) >= entry[0]):
            del self._rv[key]
            return False
        return True

    def forget(self, key: str) -> None:
        self._rv.pop(key, None)

    def __len__(self) -> int:
        return len(self._rv)


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


class Controller(Protocol):
    """A reconciling controller: events only enqueue keys, `reconcile(key)` does the work."""

    name: str
    queue: WorkQueue

    async def reconcile(self, key: str) -> None: ...


ControllerFactory = Callable[[ControllerContext], Controller]
Reconcile = Callable[[str], Awaitable[None]]
