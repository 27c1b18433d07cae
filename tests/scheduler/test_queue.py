"""The scheduling queue orders, backs off, parks and moves pods as kube-scheduler's PriorityQueue."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from services.scheduler.queue import QueueClosed, QueuedPodInfo, SchedulingQueue, is_pod_updated


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pod(name: str, *, priority: int | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if priority is not None:
        spec["priority"] = priority
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1",
                         "labels": labels or {}},
            "spec": spec, "status": {"phase": "Pending"}}


def names(items: list[QueuedPodInfo]) -> list[str]:
    return [q.name for q in items]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def q(clock: Clock) -> SchedulingQueue:
    return SchedulingQueue(clock=clock)


async def pop_all(q: SchedulingQueue) -> list[QueuedPodInfo]:
    out = []
    while q.active_count:
        qpi, _ = await q.pop()
        out.append(qpi)
    return out


async def fail(q: SchedulingQueue, name: str, *, unschedulable: bool = True) -> QueuedPodInfo:
    """Pop ``name`` (it must be next) and report the attempt failed."""
    qpi, _ = await q.pop()
    assert qpi.name == name
    assert q.add_unschedulable_if_not_present(qpi, unschedulable=unschedulable)
    q.done(qpi.key)
    return qpi


async def test_active_queue_is_fifo_within_a_priority_and_higher_priority_first(q: SchedulingQueue,
                                                                                 clock: Clock) -> None:
    for i, prio in enumerate([None, 10, None, 10, 5]):
        q.add(pod(f"p{i}", priority=prio))
        clock.advance(0.001)
    assert names(await pop_all(q)) == ["p1", "p3", "p4", "p0", "p2"]
    assert q.in_flight_count == 5


async def test_adding_a_known_pod_keeps_one_entry(q: SchedulingQueue) -> None:
    q.add(pod("a"))
    q.add(pod("a"))
    q.update(pod("a"), pod("a", labels={"x": "y"}))
    assert len(q) == 1
    got = await pop_all(q)
    assert names(got) == ["a"]
    assert got[0].pod["metadata"]["labels"] == {"x": "y"}  # the newest object is scheduled


async def test_backoff_doubles_from_one_second_to_ten(q: SchedulingQueue) -> None:
    qpi = QueuedPodInfo(pod("a"), "uid-a", 0.0, 0.0)
    got = []
    for attempts in range(1, 8):
        qpi.attempts = attempts
        got.append(q.backoff_duration(qpi))
    assert got == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


async def test_failed_pod_is_parked_until_an_event_moves_it(q: SchedulingQueue, clock: Clock) -> None:
    q.add(pod("a"))
    await fail(q, "a")
    assert q.where("uid-a") == "unschedulable"
    clock.advance(30)
    assert q.flush_backoff_completed() == 0
    assert q.where("uid-a") == "unschedulable"  # parked pods are not retried on a timer (before 60 s)
    assert q.move_all_to_active_or_backoff("NodeAdd") == 1
    assert q.where("uid-a") == "active"  # its 1 s backoff is long over


async def test_event_during_backoff_sends_pod_to_backoff_queue_then_active(q: SchedulingQueue, clock: Clock) -> None:
    q.add(pod("a"))
    await fail(q, "a")
    clock.advance(0.5)
    q.move_all_to_active_or_backoff("NodeAdd")
    assert q.where("uid-a") == "backoff"
    assert q.flush_backoff_completed() == 0
    clock.advance(0.5)
    assert q.flush_backoff_completed() == 1
    assert q.where("uid-a") == "active"


async def test_each_failure_lengthens_the_backoff(q: SchedulingQueue, clock: Clock) -> None:
    q.add(pod("a"))
    waits = []
    for _ in range(6):
        await fail(q, "a", unschedulable=False)  # errors go straight to backoffQ
        assert q.where("uid-a") == "backoff"
        waited = 0.0
        while not q.flush_backoff_completed():
            clock.advance(0.25)
            waited += 0.25
        waits.append(waited)
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_pre_check_narrows_a_move(q: SchedulingQueue, clock: Clock) -> None:
    for n in ("small", "big"):
        q.add(pod(n))
    for n in ("small", "big"):
        await fail(q, n)
    clock.advance(5)
    moved = q.move_all_to_active_or_backoff("NodeAdd", lambda p: p["metadata"]["name"] == "small")
    assert moved == 1
    assert q.where("uid-small") == "active"
    assert q.where("uid-big") == "unschedulable"


async def test_unschedulable_pods_are_flushed_after_sixty_seconds(q: SchedulingQueue, clock: Clock) -> None:
    q.add(pod("a"))
    await fail(q, "a")
    clock.advance(59.9)
    assert q.flush_unschedulable_left_over() == 0
    clock.advance(0.1)
    assert q.flush_unschedulable_left_over() == 1
    assert q.where("uid-a") == "active"


async def test_event_while_in_flight_sends_the_failed_pod_to_backoff_not_parking(q: SchedulingQueue,
                                                                                 clock: Clock) -> None:
    q.add(pod("a"))
    qpi, _ = await q.pop()
    q.move_all_to_active_or_backoff("NodeAdd")  # a node joined while "a" was being scheduled
    assert q.add_unschedulable_if_not_present(qpi)
    q.done(qpi.key)
    assert q.where("uid-a") == "backoff"
    clock.advance(1)
    q.flush_backoff_completed()
    assert q.where("uid-a") == "active"


async def test_in_flight_event_outside_pre_check_still_parks(q: SchedulingQueue) -> None:
    q.add(pod("a"))
    qpi, _ = await q.pop()
    q.move_all_to_active_or_backoff("NodeAdd", lambda p: False)
    q.add_unschedulable_if_not_present(qpi)
    assert q.where("uid-a") == "unschedulable"


async def test_status_only_update_does_not_retry_a_parked_pod(q: SchedulingQueue, clock: Clock) -> None:
    old = pod("a")
    q.add(old)
    await fail(q, "a")
    clock.advance(5)
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "2"
    new["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    assert not is_pod_updated(old, new)
    q.update(old, new)
    assert q.where("uid-a") == "unschedulable"
    assert q.get("uid-a") is not None and q.get("uid-a").pod is new  # type: ignore[union-attr]
    newer = copy.deepcopy(new)
    newer["metadata"]["labels"] = {"tier": "web"}
    q.update(new, newer)
    assert q.where("uid-a") == "active"


async def test_update_while_in_flight_is_kept_and_counts_as_a_move(q: SchedulingQueue) -> None:
    old = pod("a")
    q.add(old)
    qpi, _ = await q.pop()
    new = copy.deepcopy(old)
    new["spec"]["nodeSelector"] = {"disk": "ssd"}
    q.update(old, new)
    assert qpi.pod is new
    assert q.where("uid-a") == "in_flight"  # not queued twice
    q.add_unschedulable_if_not_present(qpi)
    assert q.where("uid-a") == "backoff"


async def test_delete_forgets_waiting_and_in_flight_pods(q: SchedulingQueue) -> None:
    for n in ("a", "b", "c"):
        q.add(pod(n))
    qpi, _ = await q.pop()
    await fail(q, "b")
    assert q.delete(pod("a"))  # in flight
    assert q.delete("uid-b")  # parked
    assert q.delete(pod("c"))  # active
    assert not q.add_unschedulable_if_not_present(qpi)
    q.done(qpi.key)
    assert len(q) == 0 and q.in_flight_count == 0
    assert not q.delete(pod("zzz"))


async def test_pod_recreated_during_its_attempt_is_not_parked_twice(q: SchedulingQueue) -> None:
    q.add(pod("a"))
    qpi, _ = await q.pop()
    q.requeue_now(qpi)
    assert q.where("uid-a") == "active"
    assert not q.add_unschedulable_if_not_present(qpi)  # already queued again


async def test_pop_waits_for_an_add_and_close_wakes_it(q: SchedulingQueue) -> None:
    waiter = asyncio.create_task(q.pop())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    q.add(pod("a"))
    qpi, cycle = await asyncio.wait_for(waiter, 1)
    assert qpi.name == "a" and cycle == 1 and qpi.attempts == 1
    waiter = asyncio.create_task(q.pop())
    await asyncio.sleep(0.01)
    q.close()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(waiter, 1)


async def test_run_moves_expired_backoff_to_active_without_polling_delay() -> None:
    q = SchedulingQueue(initial_backoff=0.05, max_backoff=0.2)
    runner = asyncio.create_task(q.run())
    try:
        q.add(pod("a"))
        qpi, _ = await q.pop()
        q.add_unschedulable_if_not_present(qpi, unschedulable=False)
        q.done(qpi.key)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        again, _ = await asyncio.wait_for(q.pop(), 2)
        assert again is qpi and again.attempts == 2
        assert 0.04 <= loop.time() - t0 < 0.5
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
