"""A rate-limited work queue of object keys, with the semantics of client-go's workqueue.

Every reconciling component (controllers, scheduler, kubelet, proxy) turns events into keys and
reconciles keys, never events. The queue is what makes that safe and cheap:

- a key queued several times before a worker takes it is processed once (dedup);
- a key is never handed to two workers at once; a key added while it is being processed is
  queued again when its worker calls `done`, so the newest state is always reconciled;
- a failing key is retried with per-key exponential backoff (`add_rate_limited`) until the
  reconcile succeeds and the worker calls `forget`.

`run_workers` is the standard loop around it: get, reconcile, forget on success or requeue with
backoff on failure, done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from shared.log import event

log = logging.getLogger("kubenats.workqueue")


class ShutDown(Exception):
    """Raised by `WorkQueue.get` once the queue is shut down and holds no more keys."""


class ExponentialBackoff:
    """Per-key exponential backoff: `base * 2**failures`, capped at `max_delay`.

    The defaults are client-go's `ItemExponentialFailureRateLimiter(5ms, 1000s)`."""

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0) -> None:
        if base <= 0 or max_delay < base:
            raise ValueError("backoff needs 0 < base <= max_delay")
        self.base = base
        self.max_delay = max_delay
        self._failures: dict[str, int] = {}

    def when(self, key: str) -> float:
        """The delay before the next retry of key; each call counts one more failure."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        if n >= 64:  # 2**64 * base overflows any sane cap; avoid huge floats
            return self.max_delay
        return float(min(self.base * (2**n), self.max_delay))

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)


class WorkQueue:
    """A FIFO of distinct keys with processing exclusion, delayed adds and per-key backoff.

    All methods except `get` are synchronous and must be called from the event loop's thread
    (informer handlers call `add` directly)."""

    def __init__(self, name: str = "", *, backoff: ExponentialBackoff | None = None) -> None:
        self.name = name
        self.backoff = backoff or ExponentialBackoff()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()  # keys that need processing (queued, or re-added while processing)
        self._processing: set[str] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._delayed: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False
        self.adds = 0
        self.retries = 0

    # ---- adding ---------------------------------------------------------------------------
    def add(self, key: str) -> None:
        """Queue key for processing (no-op when it is already queued, or after shutdown)."""
        if self._shutting_down or key in self._dirty:
            return
        self.adds += 1
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        """Queue key once delay seconds have passed; an earlier pending deadline for key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready = loop.time() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= ready:
                return
            pending[1].cancel()
        handle = loop.call_at(ready, self._fire, key)
        self._delayed[key] = (ready, handle)

    def add_rate_limited(self, key: str) -> None:
        """Queue key after its backoff delay; each call doubles the next delay until `forget`."""
        if self._shutting_down:
            return
        self.retries += 1
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: str) -> None:
        """Reset key's backoff (call after a successful reconcile)."""
        self.backoff.forget(key)

    def num_requeues(self, key: str) -> int:
        return self.backoff.failures(key)

    def _fire(self, key: str) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    # ---- processing -----------------------------------------------------------------------
    async def get(self) -> str:
        """Wait for a key and mark it processing; the caller must call `done(key)` afterwards.

        After `shutdown` the keys still queued are handed out, then `ShutDown` is raised."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake_one()  # we were woken for a key we will not take: pass it on
                else:
                    self._discard_waiter(fut)
                raise
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        """Mark key processed; if it was added meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def shutdown(self) -> None:
        """Stop accepting keys, cancel delayed adds and wake idle `get` callers (they raise ShutDown)."""
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self._wake_all()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        """Keys waiting to be handed out (not those processing or delayed)."""
        return len(self._queue)

    @property
    def processing(self) -> int:
        return len(self._processing)

    @property
    def delayed(self) -> int:
        return len(self._delayed)

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _discard_waiter(self, fut: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(fut)
        except ValueError:
            pass


async def run_workers(queue: WorkQueue, reconcile: Callable[[str], Awaitable[None]], workers: int = 1) -> None:
    """Run `workers` concurrent loops of get -> reconcile -> forget/requeue -> done.

    A reconcile that raises is logged as one structured line and retried with the key's backoff.
    Returns when the queue is shut down and drained; cancelling it cancels the workers."""
    if workers < 1:
        raise ValueError("workers must be >= 1")

    async def worker(n: int) -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            started = time.monotonic()
            try:
                await reconcile(key)
            except asyncio.CancelledError:
                queue.add(key)  # not reconciled: leave it for whoever runs the queue next
                raise
            except Exception as e:
                event(log, "reconcile_failed", logging.WARNING, queue=queue.name, key=key, worker=n,
                      error=f"{type(e).__name__}: {e}", requeues=queue.num_requeues(key),
                      duration_ms=round((time.monotonic() - started) * 1000, 1))
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)

    tasks = [asyncio.create_task(worker(i), name=f"{queue.name or 'queue'}-worker-{i}") for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
