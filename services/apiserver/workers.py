"""Several apiserver processes on one port: a Python process is one core, a machine has more.

`kubenats apiserver --workers N` starts N copies of itself (`--worker i`), each binding the same
port with SO_REUSEPORT so the kernel spreads connections across them. They share nothing but
etcd and NATS, which is what replicas already share: writes are guarded etcd transactions and
each worker's watch hub has its own NATS subscription. The etcd -> NATS publisher and the
compactor run in one more process (`publishproc`, started and ready before any worker), or in
worker 0 with `--no-publisher-process` (other replicas would publish the same revisions,
deduplicated by `Nats-Msg-Id`, for no gain). The supervisor forwards SIGTERM/SIGINT and, when
one child dies, stops the others and exits with its code, so a process manager restarts the set.
`--max-requests-inflight` and friends apply per worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from shared.log import event

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("kubenats.apiserver.workers")


def supervise(workers: int, argv: list[str], *, publisher: bool = False) -> int:
    """Run `workers` copies of `kubenats apiserver <argv> --worker i` (and, with `publisher`, the
    publisher process first) until one ends or a signal."""
    from . import publishproc  # imports the app: only the supervisor and its publisher need it

    children: list[subprocess.Popen[bytes]] = []
    if publisher:
        try:
            children.append(publishproc.start(argv))
        except (OSError, RuntimeError) as e:
            event(log, "apiserver_publisher_failed", logging.ERROR, error=str(e))
            return 1
    children += [subprocess.Popen([sys.executable, "-m", "services.cli", *argv, "--worker", str(i),
                                   *(["--no-publish"] if publisher else [])]) for i in range(workers)]
    event(log, "apiserver_workers_started", workers=workers, pids=[c.pid for c in children])
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for c in children:
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while True:
        ended = [c for c in children if c.poll() is not None]
        if ended and not stopping:
            code = ended[0].returncode or 1
            event(log, "apiserver_worker_exited", logging.ERROR, pid=ended[0].pid, code=ended[0].returncode)
            stop(signal.SIGTERM, None)
        if all(c.poll() is not None for c in children):
            return code
        time.sleep(0.2)


def exit_with(child: subprocess.Popen[bytes]) -> threading.Event:
    """If `child` (this process's publisher) ends on its own, SIGTERM this process: a process
    manager then restarts the apiserver whole, instead of it serving with no events flowing.
    Set the returned event before stopping the child on purpose."""
    expected = threading.Event()

    def watch() -> None:
        code = child.wait()
        if not expected.is_set():
            event(log, "apiserver_publisher_exited", logging.ERROR, pid=child.pid, code=code)
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="publisher-watch", daemon=True).start()
    return expected


def bound_socket(host: str, port: int) -> socket.socket:
    """A socket bound to the shared port (SO_REUSEPORT) but not listening yet: uvicorn listens on it
    once the lifespan startup is done, so the kernel hands no connection to a worker still starting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host or "0.0.0.0", port))
    sock.setblocking(False)
    return sock


def serve(config: uvicorn.Config, host: str, port: int) -> None:
    import uvicorn

    uvicorn.Server(config).run(sockets=[bound_socket(host, port)])
