"""The pod lifecycle event generator: relist the runtime, wake the workers of pods that changed.

Why this exists: containers die, get OOM-killed or are removed (`docker rm -f`) behind the
kubelet's back, and nothing tells it; upstream's generic PLEG (pleg/generic.go) relists the runtime
every second and turns differences into per-pod events. Here one `RuntimeCache` serves both the
PLEG and the pod workers: at most one `list_containers` call is in flight per runtime and every
caller that asks for "a view newer than T" shares it, so 30 pod workers syncing at once cost one
Docker call, not thirty. `Pleg` compares consecutive views and calls back with the set of pod UIDs
whose containers appeared, disappeared or changed state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.kubelet.runtime_types import ContainerRuntime, ContainerStatus
from shared.log import event

log = logging.getLogger("kubenats.kubelet.pleg")


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic() when the list was requested
    containers: list[ContainerStatus]
    by_pod: dict[str, list[ContainerStatus]] = field(default_factory=dict)

    @staticmethod
    def of(at: float, containers: list[ContainerStatus]) -> Snapshot:
        by_pod: dict[str, list[ContainerStatus]] = {}
        for c in containers:
            by_pod.setdefault(c.pod_uid, []).append(c)
        return Snapshot(at, containers, by_pod)


class RuntimeCache:
    """Coalesced, time-stamped views of the runtime's containers."""

    def __init__(self, runtime: ContainerRuntime) -> None:
        self.runtime = runtime
        self.latest: Snapshot | None = None
        self._task: asyncio.Task[Snapshot] | None = None
        self.lists = 0

    async def get(self, newer_than: float) -> Snapshot:
        """A view requested at or after `newer_than` (monotonic seconds)."""
        while True:
            snap = self.latest
            if snap is not None and snap.at >= newer_than:
                return snap
            task = self._task
            if task is None:
                task = self._task = asyncio.get_running_loop().create_task(self._fetch(time.monotonic()))
            await asyncio.shield(task)

    async def _fetch(self, at: float) -> Snapshot:
        try:
            containers = await self.runtime.list_containers(all=True)
            self.lists += 1
            snap = Snapshot.of(at, containers)
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
        self.last_relist = 0.0
        self.relists = 0
        self.errors = 0

    def healthy(self, threshold: float = 180.0) -> bool:
        """Upstream's PLEG health: the last successful relist is recent."""
        return self.last_relist > 0 and time.monotonic() - self.last_relist < threshold

    async def relist(self) -> set[str]:
        snap = await self.cache.get(time.monotonic())
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
