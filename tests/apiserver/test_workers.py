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


def cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def split_children(pid: int) -> tuple[list[int], list[int]]:
    """(publisher processes, HTTP workers) among pid's children."""
    kids = children(pid)
    pubs = [k for k in kids if "--role publisher" in cmdline(k)]
    return pubs, [k for k in kids if k not in pubs]


def gone(pid: int) -> bool:
    try:
        return "zombie" in open(f"/proc/{pid}/status").read().lower()
    except OSError:
        return True


def listeners(port: int) -> int:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
    return len([line for line in out.splitlines() if line.strip()])


def test_two_workers_share_the_port_and_the_event_stream() -> None:
    c = Cluster()
    c.apiserver = Apiserver(c.workdir, c.etcd, c.nats, port=c.apiserver.port, extra=["--workers", "2"])
    c.start()
    try:
        assert c.apiserver.p is not None
        pubs, workers = split_children(c.apiserver.p.pid)
        assert len(workers) == 2 and len(pubs) == 1, (pubs, workers)  # the publisher has a process of its own
        assert all("--no-publish" in cmdline(w) for w in workers)
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
        assert all(gone(w) for w in [*workers, *pubs])
    finally:
        c.stop()


def test_the_publisher_process_lives_and_dies_with_its_apiserver() -> None:
    """One apiserver process serves HTTP and has one publisher child: events flow; the publisher
    ending takes the apiserver down (to be restarted whole); SIGKILL of the apiserver kills it too."""
    c = Cluster().start()
    try:
        assert c.apiserver.p is not None
        pubs, others = split_children(c.apiserver.p.pid)
        assert len(pubs) == 1 and not others, (pubs, others)
        with httpx.Client(**c.admin_kwargs(), timeout=30) as api:
            since = api.get("/api/v1/namespaces/default/configmaps").json()["metadata"]["resourceVersion"]
            with api.stream("GET", "/api/v1/namespaces/default/configmaps",
                            params={"watch": "true", "timeoutSeconds": "20", "resourceVersion": since}) as stream:
                assert api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "p1"}}).status_code == 201
                line = next(iter(stream.iter_lines()))
                assert json.loads(line)["object"]["metadata"]["name"] == "p1"
        os.kill(pubs[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while c.apiserver.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not c.apiserver.alive(), "an apiserver without its publisher must exit"

        c.apiserver.start()  # same data: resumes publishing where the stream ends
        assert c.apiserver.p is not None
        deadline = time.monotonic() + 30
        while not split_children(c.apiserver.p.pid)[0] and time.monotonic() < deadline:
            time.sleep(0.2)
        pubs, _ = split_children(c.apiserver.p.pid)
        assert len(pubs) == 1
        os.kill(c.apiserver.p.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not gone(pubs[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(pubs[0]), "the publisher must not outlive a SIGKILLed apiserver"
    finally:
        c.stop()
