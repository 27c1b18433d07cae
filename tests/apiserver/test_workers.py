"""`kubenats apiserver --workers 2`: two processes on one port behave as one apiserver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import httpx
import pytest

from tests.servers import Apiserver, Cluster

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


def listeners(port: int) -> int:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
    return len([line for line in out.splitlines() if line.strip()])


def test_two_workers_share_the_port_and_the_event_stream() -> None:
    c = Cluster()
    c.apiserver = Apiserver(c.workdir, c.etcd, c.nats, port=c.apiserver.port, extra=["--workers", "2"])
    c.start()
    try:
        assert c.apiserver.p is not None
        workers = children(c.apiserver.p.pid)
        assert len(workers) == 2, workers
        # a worker listens only once started: wait for both, so either may serve the watch below
        deadline = time.monotonic() + 60
        while listeners(c.apiserver.port) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert listeners(c.apiserver.port) == 2
        ns = "w-" + uuid.uuid4().hex[:8]
        with httpx.Client(**c.admin_kwargs(), timeout=30) as api:
            r = api.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            assert r.status_code == 201, r.text
            since = r.json()["metadata"]["resourceVersion"]  # whichever worker serves the watch, from here on
            with httpx.Client(**c.admin_kwargs(), timeout=30) as watcher, \
                    watcher.stream("GET", f"/api/v1/namespaces/{ns}/configmaps",
                                   params={"watch": "true", "timeoutSeconds": "20", "resourceVersion": since}) as stream:
                for i in range(30):  # a new connection each: the kernel spreads them over the workers
                    with httpx.Client(**c.admin_kwargs(), timeout=30) as one:
                        r = one.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": f"cm{i}"}})
                        assert r.status_code == 201, r.text
                seen = set()
                for line in stream.iter_lines():
                    ev = json.loads(line)
                    seen.add(ev["object"]["metadata"]["name"])
                    if len(seen) == 30:
                        break
            assert seen == {f"cm{i}" for i in range(30)}
        # a worker that dies takes the set down, so that a process manager restarts it whole
        os.kill(workers[1], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while c.apiserver.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not c.apiserver.alive()
        assert not [w for w in workers if os.path.exists(f"/proc/{w}") and
                    "zombie" not in open(f"/proc/{w}/status").read().lower()]
    finally:
        c.stop()
