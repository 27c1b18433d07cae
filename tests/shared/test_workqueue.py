"""The work queue: dedup, one worker per key, re-queue after done, backoff, delays, shutdown."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

import pytest

from shared.workqueue import ExponentialBackoff, ShutDown, WorkQueue, run_workers


async def eventually(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_duplicate_adds_while_queued_are_deduped() -> None:
    q = WorkQueue("t")
    for k in ("a", "b", "a", "a", "c", "b"):
        q.add(k)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0


async def test_key_added_while_processing_is_requeued_once_done() -> None:
    q = WorkQueue("t")
    q.add("a")
    key = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0, "a key being processed must not be handed out again"
    q.done(key)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_done_without_readd_does_not_requeue() -> None:
    q = WorkQueue("t")
    q.add("a")
    q.done(await q.get())
    assert len(q) == 0 and q.processing == 0


async def test_never_processed_by_two_workers_at_once() -> None:
    q = WorkQueue("t")
    running: set[str] = set()
    overlaps: list[str] = []
    calls: dict[str, int] = {}

    async def reconcile(key: str) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        calls[key] = calls.get(key, 0) + 1
        await asyncio.sleep(0.05)
        running.discard(key)

    runner = asyncio.create_task(run_workers(q, reconcile, workers=8))
    for _ in range(20):  # keep adding the same keys while they are being reconciled
        for k in ("a", "b"):
            q.add(k)
        await asyncio.sleep(0.005)
    await eventually(lambda: len(q) == 0 and q.processing == 0)
    q.shutdown()
    await asyncio.wait_for(runner, 5)
    assert overlaps == []
    # dedup: 20 adds of each over ~100 ms of 50 ms reconciles is a handful of runs, not 20
    assert 2 <= calls["a"] <= 6 and 2 <= calls["b"] <= 6, calls


async def test_latest_add_is_always_reconciled() -> None:
    """An add that lands during a reconcile must lead to one more reconcile after it."""
    q = WorkQueue("t")
    seen: list[int] = []
    state = {"v": 0}
    started = asyncio.Event()

    async def reconcile(key: str) -> None:
        started.set()
        await asyncio.sleep(0.03)
        seen.append(state["v"])

    runner = asyncio.create_task(run_workers(q, reconcile, workers=2))
    q.add("k")
    await started.wait()
    state["v"] = 1
    q.add("k")
    await eventually(lambda: len(seen) >= 2)
    await asyncio.sleep(0.05)
    q.shutdown()
    await asyncio.wait_for(runner, 5)
    assert seen[-1] == 1 and len(seen) == 2


def test_backoff_grows_exponentially_to_a_cap_and_forget_resets() -> None:
    b = ExponentialBackoff(base=0.005, max_delay=1.0)
    delays = [b.when("k") for _ in range(10)]
    assert delays[:5] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert delays[-1] == 1.0 and max(delays) == 1.0
    assert b.failures("k") == 10
    assert b.when("other") == pytest.approx(0.005), "backoff is per key"
    b.forget("k")
    assert b.failures("k") == 0
    assert b.when("k") == pytest.approx(0.005)
    for _ in range(200):  # no overflow after many failures
        assert b.when("k") <= 1.0
    assert ExponentialBackoff().max_delay == 1000.0


async def test_add_rate_limited_delays_grow_and_forget_resets() -> None:
    q = WorkQueue("t", backoff=ExponentialBackoff(base=0.02, max_delay=10))
    waits = []
    for _ in range(3):
        t0 = time.monotonic()
        q.add_rate_limited("k")
        assert len(q) == 0 and q.delayed == 1
        key = await asyncio.wait_for(q.get(), 5)
        waits.append(time.monotonic() - t0)
        q.done(key)
    assert q.num_requeues("k") == 3
    assert waits[0] >= 0.015 and waits[1] >= 0.035 and waits[2] >= 0.075, waits
    q.forget("k")
    assert q.num_requeues("k") == 0


async def test_add_after_and_earliest_deadline_wins() -> None:
    q = WorkQueue("t")
    t0 = time.monotonic()
    q.add_after("a", 0.3)
    q.add_after("a", 0.05)  # earlier: replaces
    q.add_after("a", 0.5)  # later: ignored
    q.add_after("b", 0)  # immediate
    assert await q.get() == "b"
    assert await asyncio.wait_for(q.get(), 5) == "a"
    elapsed = time.monotonic() - t0
    assert 0.04 <= elapsed < 0.3, elapsed
    q.done("a")
    await asyncio.sleep(0.6)
    assert len(q) == 0, "the replaced timers must not fire"


async def test_delayed_add_of_a_queued_key_is_deduped() -> None:
    q = WorkQueue("t")
    q.add("a")
    q.add_after("a", 0.02)
    await asyncio.sleep(0.06)
    assert len(q) == 1


async def test_shutdown_wakes_waiters_drains_and_ignores_adds() -> None:
    q = WorkQueue("t")
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    q.add_after("later", 0.05)
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiter, 1)
    q.add("x")
    q.add_rate_limited("y")
    assert len(q) == 0 and q.delayed == 0
    await asyncio.sleep(0.08)
    assert len(q) == 0

    q2 = WorkQueue("t2")
    q2.add("a")
    q2.add("b")
    q2.shutdown()
    assert [await q2.get(), await q2.get()] == ["a", "b"], "queued keys are still handed out"
    with pytest.raises(ShutDown):
        await q2.get()


async def test_cancelled_getter_does_not_swallow_a_wakeup() -> None:
    q = WorkQueue("t")
    g1 = asyncio.create_task(q.get())
    g2 = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    q.add("a")  # wakes g1 ...
    g1.cancel()  # ... which is cancelled before it runs
    assert await asyncio.wait_for(g2, 1) == "a"


async def test_run_workers_retries_with_backoff_then_forgets(caplog: pytest.LogCaptureFixture) -> None:
    q = WorkQueue("retry", backoff=ExponentialBackoff(base=0.01, max_delay=1))
    attempts: list[float] = []

    async def reconcile(key: str) -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            raise RuntimeError("not yet")

    caplog.set_level(logging.WARNING, logger="kubenats.workqueue")
    runner = asyncio.create_task(run_workers(q, reconcile, workers=3))
    q.add("k")
    await eventually(lambda: len(attempts) == 4 and q.processing == 0)
    assert q.num_requeues("k") == 0, "success forgets the backoff"
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.008 and gaps[1] >= 0.018 and gaps[2] >= 0.038, gaps
    lines = [r.getMessage() for r in caplog.records if "reconcile_failed" in r.getMessage()]
    assert len(lines) == 3
    assert '"key":"k"' in lines[0] and '"queue":"retry"' in lines[0] and "not yet" in lines[0]
    q.shutdown()
    await asyncio.wait_for(runner, 5)


async def test_run_workers_cancel_stops_workers() -> None:
    q = WorkQueue("t")
    started = asyncio.Event()

    async def reconcile(key: str) -> None:
        started.set()
        await asyncio.sleep(10)

    runner = asyncio.create_task(run_workers(q, reconcile, workers=2))
    q.add("a")
    await started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert q.processing == 0
    assert len(q) == 1, "an interrupted key stays queued"
