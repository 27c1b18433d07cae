"""The pod lifecycle event generator: relist the runtime, wake the workers of pods that changed.

Why this exists: containers die, get OOM-killed or are removed (`docker rm -f`) behind the
kubelet's back, and nothing tells it; upstream's generic PLEG (pleg/generic.go) relists the runtime
every second and turns differences into per-pod events. Here one `RuntimeCache` serves both the
PLEG and the pod workers: at most one `list_containers` call is in flight per runtime and every
caller that asks for "a view newer than T" shares it, so 30 pod workers syncing at once cost one
Docker call, not thirty. `Pleg` compares consecutive views and calls back with the set of pod UIDs
whose containers appeared, disappeared or changed state.

A runtime that counts its changes (`Generational`: `HollowRuntime.generation`) is not listed again
while its count stands still: the cache renews the latest view's time stamp (same containers, same
`by_pod`) and the PLEG skips the diff. A thousand idle hollow nodes then cost a thousand integer
comparisons a second instead of a thousand lists, groupings and diffs. `DockerRuntime` has no such
count (Docker changes behind our back), so it is listed every time, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from services.kubelet.runtime_types import ContainerRuntime, ContainerStatus
from shared.log import event

log = logging.getLogger("kubenats.kubelet.pleg")


class Generational(Protocol):
    """A runtime whose `generation` changes whenever `list_containers` could answer differently
    (a container added, removed, or changed state). Only runtimes that see every change themselves
    can promise that: `HollowRuntime` can, `DockerRuntime` cannot (containers die on their own)."""

    generation: int


def runtime_generation(runtime: object) -> int | None:
    """The runtime's change count, or None when it keeps none (then every view is a fresh list).
    A getattr, not an isinstance on a runtime-checkable Protocol: this runs every second per node."""
    gen = getattr(runtime, "generation", None)
    return gen if isinstance(gen, int) and not isinstance(gen, bool) else None


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic() when the list was requested (or found still current)
    containers: list[ContainerStatus]
    by_pod: dict[str, list[ContainerStatus]] = field(default_factory=dict)
    generation: int | None = None  # the runtime's generation when listed (None: it keeps none)

    @staticmethod
    def of(at: float, containers: list[ContainerStatus], generation: int | None = None) -> Snapshot:
        by_pod: dict[str, list[ContainerStatus]] = {}
        for c in containers:
            by_pod.setdefault(c.pod_uid, []).append(c)
        return Snapshot(at, containers, by_pod, generation)

    def renewed(self, at: float) -> Snapshot:
        """The same view, known to be current at `at` (shares the lists: nobody mutates them)."""
        return Snapshot(at, self.containers, self.by_pod, self.generation)


class RuntimeCache:
    """Coalesced, time-stamped views of the runtime's containers."""

    def __init__(self, runtime: ContainerRuntime) -> None:
        self.runtime = runtime
        self.latest: Snapshot | None = None
        self._task: asyncio.Task[Snapshot] | None = None
        self.lists = 0  # list_containers calls
        self.reuses = 0  # views served without one (the runtime's generation had not moved)

    async def get(self, newer_than: float) -> Snapshot:
        """A view requested at or after `newer_than` (monotonic seconds)."""
        while True:
            snap = self.latest
            if snap is not None and snap.at < newer_than and snap.generation is not None \
                    and snap.generation == runtime_generation(self.runtime):
                # nothing changed since that list: it is also the view of now
                snap = self.latest = snap.renewed(time.monotonic())
                self.reuses += 1
            if snap is not None and snap.at >= newer_than:
                return snap
            task = self._task
            if task is None:
                task = self._task = asyncio.get_running_loop().create_task(self._fetch(time.monotonic()))
            await asyncio.shield(task)

    async def _fetch(self, at: float) -> Snapshot:
        try:
            # read before listing: a change during the list leaves an older count on the view, so
            # the next `get` lists again (never a newer count on an older list)
            generation = runtime_generation(self.runtime)
            containers = await self.runtime.list_containers(all=True)
            self.lists += 1
            snap = Snapshot.of(at, containers, generation)
            if self.latest is None or snap.at >= self.latest.at:
                self.latest = snap
            return snap
        finally:
            self._task = None

    def fresh(self) -> float:
        """A `newer_than` value meaning "after everything done so far"."""
        return time.monotonic()


def _fingerprint(c: ContainerStatus) -> tuple[str, str, int | None]:
    return (c.pod_uid, c.state.value, c.exit_code)


class Pleg:
    def __init__(self, cache: RuntimeCache, period: float, on_changed: Callable[[set[str]], None]) -> None:
        self.cache = cache
        self.period = period
        self.on_changed = on_changed
        self._last: dict[str, tuple[str, str, int | None]] | None = None
        self._last_generation: int | None = None  # the runtime's generation `_last` was built from
        self.last_relist = 0.0
        self.relists = 0
        self.errors = 0

    def healthy(self, threshold: float = 180.0) -> bool:
        """Upstream's PLEG health: the last successful relist is recent."""
        return self.last_relist > 0 and time.monotonic() - self.last_relist < threshold

    async def relist(self) -> set[str]:
        snap = await self.cache.get(time.monotonic())
        if self._last is not None and snap.generation is not None and snap.generation == self._last_generation:
            # the runtime says nothing changed since the last diff: a successful relist, no events
            self.last_relist = time.monotonic()
            self.relists += 1
            return set()
        now = {c.id: _fingerprint(c) for c in snap.containers}
        changed: set[str] = set()
        if self._last is not None:
            for cid, fp in now.items():
                if self._last.get(cid) != fp:
                    changed.add(fp[0])
            for cid, fp in self._last.items():
                if cid not in now:
                    changed.add(fp[0])
        self._last = now
        self._last_generation = snap.generation
        self.last_relist = time.monotonic()
        self.relists += 1
        if changed:
            self.on_changed(changed)
        return changed

    async def run(self) -> None:
        while True:
            try:
                await self.relist()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.errors += 1
                event(log, "pleg_relist_failed", logging.WARNING, error=f"{type(e).__name__}: {e}")
            await asyncio.sleep(self.period)
