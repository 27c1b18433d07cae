"""Running a component process: logging, signals, and an orderly shutdown.

Every component's `run(args)` calls `run_component(name, main)`: structured logging is set up,
SIGTERM and SIGINT cancel `main`, and whatever `main` opened in its `async with`/`finally`
blocks (NATS subscriptions drained, HTTP clients closed) is closed before the process exits.

The event loop is uvloop's (as uvicorn already picks for the apiserver): its sockets, TLS and
timers cost a fraction of the pure-Python loop's CPU, which is what a scheduler, a controller
manager or a thousand hollow nodes spend their time on. `KUBENATS_EVENT_LOOP=asyncio` opts out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from shared.log import event, setup

log = logging.getLogger("kubenats.runner")


def run_component(name: str, main: Callable[[], Awaitable[None]], level: str = "INFO") -> int:
    setup(name, level)

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopping = False

        def stop(sig: signal.Signals) -> None:
            nonlocal stopping
            if not stopping:
                stopping = True
                event(log, "stopping", signal=sig.name)
                task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig)
        with contextlib.suppress(asyncio.CancelledError):
            await main()
        event(log, "stopped")

    with asyncio.Runner(loop_factory=loop_factory()) as r:
        r.run(runner())
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop unless KUBENATS_EVENT_LOOP=asyncio (or uvloop is missing): None means asyncio's."""
    if os.environ.get("KUBENATS_EVENT_LOOP", "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
