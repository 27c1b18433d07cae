"""Leader election on a Lease, against an in-memory Lease store with resourceVersion checks and fake clocks.

The child-process test in test_scheduler_processes.py covers the same against the real apiserver;
this drives the timing rules (expiry, clock skew, races, release, fencing) exactly.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from services.scheduler.leader import LeaderElector
from shared.api.resources import Resource
from shared.errors import ApiError

START = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    """One true time; each replica reads a monotonic clock and a wall clock (possibly skewed)."""

    def __init__(self) -> None:
        self.t = 0.0

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def mono(self, offset: float = 0.0) -> Clock:
        world = self

        class Mono(Clock):
            def __call__(self) -> float:
                return world.t + offset
        return Mono(0)

    def wall(self, skew: float = 0.0) -> Clock:
        world = self

        class Wall(Clock):
            def __call__(self) -> float:
                return START + world.t + skew
        return Wall(0)


class FakeLeases:
    """A Lease store with the apiserver's create / update-with-resourceVersion semantics."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.rv = 0
        self.fail: ApiError | None = None

    async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        if self.fail:
            raise self.fail
        if self.obj is None:
            raise ApiError(404, "NotFound", "not found")
        return copy.deepcopy(self.obj)

    async def create(self, res: Resource, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        if self.fail:
            raise self.fail
        if self.obj is not None:
            raise ApiError(409, "AlreadyExists", "exists")
        self.rv += 1
        self.obj = copy.deepcopy(obj)
        self.obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.obj)

    async def update(self, res: Resource, obj: dict[str, Any], sub: str = "") -> dict[str, Any]:
        await asyncio.sleep(0)
        if self.fail:
            raise self.fail
        assert self.obj is not None
        if obj["metadata"].get("resourceVersion") != str(self.rv):
            raise ApiError(409, "Conflict", "the object has been modified")
        self.rv += 1
        self.obj = copy.deepcopy(obj)
        self.obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.obj)

    @property
    def spec(self) -> dict[str, Any]:
        assert self.obj is not None
        spec: dict[str, Any] = self.obj["spec"]
        return spec


def elector(store: FakeLeases, world: World, name: str, *, skew: float = 0.0) -> LeaderElector:
    return LeaderElector(store, identity=name, clock=world.mono(offset=ord(name[0]) * 13.0), wall=world.wall(skew))


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def store() -> FakeLeases:
    return FakeLeases()


async def test_first_candidate_creates_the_lease(store: FakeLeases, world: World) -> None:
    a = elector(store, world, "a")
    assert await a.try_acquire_or_renew()
    spec = store.spec
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["renewTime"] == spec["acquireTime"]
    assert spec["renewTime"].endswith("Z") and len(spec["renewTime"]) == len("2006-01-02T15:04:05.000000Z")


async def test_standby_never_acquires_a_lease_that_is_renewed(store: FakeLeases, world: World) -> None:
    a, b = elector(store, world, "a"), elector(store, world, "b")
    await a.try_acquire_or_renew()
    a._leading = True
    acquired = store.spec["acquireTime"]
    for _ in range(60):
        world.advance(2.0)
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
    assert store.spec["holderIdentity"] == "a"
    assert store.spec["acquireTime"] == acquired  # renewals keep the acquisition time
    assert store.spec["leaseTransitions"] == 0


async def poll_until_acquired(b: LeaderElector, world: World, step: float = 0.1, limit: float = 60) -> float:
    waited = 0.0
    while not await b.try_acquire_or_renew():
        world.advance(step)
        waited += step
        assert waited < limit
    return world.t


@pytest.mark.parametrize("skew", [0.0, 30.0, -30.0, 4.0, -4.0])
async def test_dead_holder_is_replaced_after_the_lease_duration_whatever_the_clocks(
        store: FakeLeases, world: World, skew: float) -> None:
    a, b = elector(store, world, "a"), elector(store, world, "b", skew=skew)
    await a.try_acquire_or_renew()
    a._leading = True
    assert not await b.try_acquire_or_renew()
    for _ in range(5):  # a renews every 2 s, b polls every 2 s in between
        world.advance(1.0)
        assert await a.try_acquire_or_renew()
        renewed = world.t
        world.advance(1.0)
        assert not await b.try_acquire_or_renew()
    took = await poll_until_acquired(b, world)  # a died right after its last renewal
    # a fences itself renew_deadline (10 s) after its last renewal: a margin of >= 2.5 s always
    assert took - renewed >= 10 + 2.5 - 1e-9
    # never later than client-go would (seen + 15 s), and right at renewTime + 15 s when clocks agree
    assert took - renewed <= 15 + 1.0 + 0.1
    if skew == 0:
        assert 15 - 1e-9 <= took - renewed <= 15.1
    assert store.spec["holderIdentity"] == "b"
    assert store.spec["leaseTransitions"] == 1


async def test_a_fresh_candidate_waits_a_full_duration_from_its_first_look(store: FakeLeases, world: World) -> None:
    a = elector(store, world, "a")
    await a.try_acquire_or_renew()
    world.advance(100)  # the lease is long dead...
    b = elector(store, world, "b", skew=-200)  # ...but b's wall clock says it was just renewed
    took = await poll_until_acquired(b, world)
    assert 100 + 15 - 2.5 - 1e-9 <= took <= 100 + 15 + 0.1


async def test_only_one_of_two_racing_candidates_wins(store: FakeLeases, world: World) -> None:
    a = elector(store, world, "a")
    await a.try_acquire_or_renew()
    b, c = elector(store, world, "b"), elector(store, world, "c")
    await b.try_acquire_or_renew()
    await c.try_acquire_or_renew()
    world.advance(30)
    results = await asyncio.gather(b.try_acquire_or_renew(), c.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    assert store.spec["holderIdentity"] == ("b" if results[0] else "c")
    assert store.spec["leaseTransitions"] == 1


async def test_two_first_candidates_race_to_create(store: FakeLeases, world: World) -> None:
    a, b = elector(store, world, "a"), elector(store, world, "b")
    results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    assert sorted(results) == [False, True]


async def test_release_lets_a_standby_in_after_one_second(store: FakeLeases, world: World) -> None:
    a, b = elector(store, world, "a"), elector(store, world, "b")
    await a.try_acquire_or_renew()
    a._leading = True
    assert not await b.try_acquire_or_renew()
    assert await a.release()
    assert store.spec["holderIdentity"] == ""
    assert store.spec["leaseDurationSeconds"] == 1
    took = await poll_until_acquired(b, world)
    assert took <= 1.0 + 0.1
    assert store.spec["leaseTransitions"] == 1


async def test_leader_loses_at_once_when_another_holder_appears() -> None:
    store = FakeLeases()
    a = LeaderElector(store, identity="a", lease_duration=1.5, renew_deadline=1.0, retry_period=0.05)
    await a.acquire()
    assert a.is_leader
    hold = asyncio.create_task(a.hold())
    await asyncio.sleep(0.12)
    assert not hold.done()
    store.spec["holderIdentity"] = "usurper"
    store.rv += 1
    reason = await asyncio.wait_for(hold, 1)
    assert "usurper" in reason
    assert not a.is_leader


async def test_leader_gives_up_when_it_cannot_renew_within_the_deadline() -> None:
    store = FakeLeases()
    a = LeaderElector(store, identity="a", lease_duration=1.5, renew_deadline=0.5, retry_period=0.1)
    await a.acquire()
    loop = asyncio.get_running_loop()
    store.fail = ApiError(503, "ServiceUnavailable", "apiserver unreachable")
    t0 = loop.time()
    reason = await asyncio.wait_for(a.hold(), 3)
    assert "deadline" in reason
    assert 0.35 <= loop.time() - t0 <= 0.8  # fenced from the start of the last successful renewal


async def test_run_cancels_the_leader_work_when_leadership_is_lost() -> None:
    store = FakeLeases()
    a = LeaderElector(store, identity="a", lease_duration=1.5, renew_deadline=1.0, retry_period=0.05)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def lead() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runner = asyncio.create_task(a.run(lead))
    await asyncio.wait_for(started.wait(), 2)
    store.spec["holderIdentity"] = "other"
    store.rv += 1
    await asyncio.wait_for(cancelled.wait(), 1)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert store.spec["holderIdentity"] == "other"  # never released a lease it no longer holds


async def test_run_releases_the_lease_on_shutdown() -> None:
    store = FakeLeases()
    a = LeaderElector(store, identity="a", lease_duration=1.5, renew_deadline=1.0, retry_period=0.05)
    started = asyncio.Event()

    async def lead() -> None:
        started.set()
        await asyncio.sleep(3600)

    runner = asyncio.create_task(a.run(lead))
    await asyncio.wait_for(started.wait(), 2)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert store.spec["holderIdentity"] == ""
    assert store.spec["leaseDurationSeconds"] == 1
