"""The etcd -> NATS publisher in a process of its own, beside the process(es) serving HTTP.

Why this exists: every informer in the cluster waits on the publisher, and in the HTTP process it
shared one event loop with request handling. Under load that loop runs hundreds of ready callbacks
per turn and the publisher's etcd watch advanced one turn at a time: in the 30,000-pod run a write
reached NATS subscribers after 12 s (p50) to 42 s (p99), long enough for the node lifecycle
controller to see leases as expired. In its own process the publisher (a few % of a core) is
scheduled by the kernel as soon as it has work, whatever the HTTP side is doing.

`start()` runs `kubenats apiserver <same flags> --role publisher`, waits until the child has
decided where to resume (`Publisher.prepare`: before anything else writes, so a fresh cluster
misses nothing) and returns it. The child runs the publisher, the compactor and the pods-by-node
index backfill; it is killed with its parent (PR_SET_PDEATHSIG), even by SIGKILL, so a restarted
apiserver never finds a stale publisher still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import time

from shared.bus import Bus
from shared.log import event
from shared.runner import run_component

from .config import Config, build_node_index, make_store
from .objects import Objects
from .publisher import Compactor, Publisher

log = logging.getLogger("kubenats.apiserver.publisher")
READY_TIMEOUT = 60.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def publisher_argv(argv: list[str]) -> list[str]:
    """The flags of this apiserver for its publisher process (without --workers/--worker)."""
    out: list[str] = []
    skip = False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a in ("--workers", "--worker"):
            skip = i + 1 < len(argv)
            continue
        if a.startswith(("--workers=", "--worker=")):
            continue
        out.append(a)
    return out


def start(argv: list[str], timeout: float = READY_TIMEOUT) -> subprocess.Popen[bytes]:
    """Start the publisher process for an apiserver run with `argv` and wait until it is ready."""
    read_fd, write_fd = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-m", "services.cli", *publisher_argv(argv), "--role", "publisher",
                                  "--ready-fd", str(write_fd)], pass_fds=(write_fd,), preexec_fn=_die_with_parent)
    finally:
        os.close(write_fd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the publisher process was not ready within {timeout:.0f}s")
            ready, _, _ = select.select([read_fd], [], [], min(left, 0.5))
            if ready:
                if os.read(read_fd, 1) == b"1":
                    event(log, "publisher_process_ready", pid=child.pid)
                    return child
                raise RuntimeError(f"the publisher process exited with code {child.wait()} before it was ready")
    except BaseException:
        stop(child)
        raise
    finally:
        os.close(read_fd)


def stop(child: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(cfg: Config, ready_fd: int, log_level: str = "INFO") -> int:
    """The publisher process's main: publisher, compactor and index backfill until SIGTERM."""

    async def main() -> None:
        store = make_store(cfg)
        bus = Bus(cfg.nats_url, "kubenats-apiserver-publisher", cfg.bus_options)
        await store.open()
        await bus.connect()
        await bus.ensure_stream()
        publisher = Publisher(store, bus)
        await publisher.prepare()
        os.write(ready_fd, b"1")
        os.close(ready_fd)
        try:
            async with asyncio.TaskGroup() as tg:  # cancelled together, on SIGTERM or when one fails
                tg.create_task(publisher.run(), name="publisher")
                tg.create_task(Compactor(store, publisher).run(), name="compactor")
                if cfg.build_indexes:
                    tg.create_task(build_node_index(Objects(store)), name="node-index")
        finally:
            await bus.close()
            await store.close()

    return run_component("apiserver-publisher", main, log_level)
