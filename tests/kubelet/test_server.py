"""The kubelet's HTTP server (logs, exec) against real Docker containers.

Pods are made directly with `DockerRuntime` (a sandbox plus app containers, labelled as the
kubelet labels them, on a node name unique to this module so cleanup by the `kubenats.io/node`
label removes exactly them). `KubeletServer` serves them on a free loopback port, and the tests
speak to it as the API server does: HTTP for `/containerLogs`, WebSocket with the Kubernetes
channel protocols (v5, v4, base64, legacy) for `/exec`. A last test runs the same server on the
in-memory `HollowRuntime`, which needs no Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import docker
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from services.kubelet.hollow import HollowRuntime
from services.kubelet.runtime import DockerRuntime
from services.kubelet.runtime_types import LABEL_NODE, ContainerConfig, ContainerState
from services.kubelet.server import KubeletServer, exit_status
from tests.kubelet.images import BUSYBOX_IMAGE, PAUSE_IMAGE, ensure_test_images

RUN = uuid.uuid4().hex[:8]
NODE = f"ks-{RUN}"
NAMESPACE = f"ks-{RUN}"
FOREVER = "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"


def _docker_ok() -> str | None:
    try:
        client = docker.DockerClient(base_url="unix:///var/run/docker.sock", version="auto", timeout=5)
        client.ping()
        client.close()
    except Exception as e:
        return f"no Docker engine: {e}"
    if not Path("/bin/busybox").exists():
        return "busybox-static is not installed"
    return None


# ---- fixtures ----------------------------------------------------------------------------------


@dataclass
class Kubelet:
    rt: DockerRuntime
    server: KubeletServer

    @property
    def http(self) -> str:
        return self.server.url

    @property
    def ws(self) -> str:
        return self.server.url.replace("http://", "ws://")

    async def pod(self, name: str, containers: dict[str, str], attempt: int = 0) -> dict[str, str]:
        """A running pod whose containers run `sh -c <script>`; returns container name -> id."""
        uid = str(uuid.uuid4())
        sandbox = await self.rt.run_sandbox(uid, name, NAMESPACE, 0, PAUSE_IMAGE)
        ids = {"POD": sandbox.id, "uid": uid}
        for cname, script in containers.items():
            ids[cname] = await self.start(sandbox.id, cname, script, attempt)
        return ids

    async def start(self, sandbox_id: str, name: str, script: str, attempt: int = 0) -> str:
        spec = ContainerConfig(name=name, image=BUSYBOX_IMAGE, command=["sh", "-c", script], restart_count=attempt)
        cid = await self.rt.create_container(sandbox_id, spec)
        await self.rt.start_container(cid)
        return cid

    def exec_url(self, pod: str, container: str, command: list[str], **flags: str) -> str:
        query = [("command", c) for c in command] + list(flags.items())
        return f"{self.ws}/exec/{NAMESPACE}/{pod}/{container}?{urlencode(query)}"


@pytest.fixture(scope="module")
async def kubelet() -> AsyncIterator[Kubelet]:
    skip = _docker_ok()
    if skip is not None:
        pytest.skip(skip)
    ensure_test_images()
    rt = DockerRuntime(node_name=NODE)
    server = KubeletServer(rt, NODE, "127.0.0.1", 0)
    await server.start()
    try:
        yield Kubelet(rt, server)
    finally:
        await server.stop()
        api = docker.APIClient(base_url="unix:///var/run/docker.sock", version="auto", timeout=60)
        for c in api.containers(all=True, filters={"label": f"{LABEL_NODE}={NODE}"}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                api.remove_container(c["Id"], force=True)
        api.close()
        rt.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def logs(k: Kubelet, pod: str, container: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=k.http, timeout=30, trust_env=False) as c:
        return await c.get(f"/containerLogs/{NAMESPACE}/{pod}/{container}", params=params)


@dataclass
class Session:
    """What an exec WebSocket delivered: output per channel, the raw error channel, the close code."""

    protocol: str | None
    channels: dict[int, bytes]
    frames: list[bytes | str]
    close_code: int | None

    @property
    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.channels.get(3, b"")))


async def drain(ws: ClientConnection, timeout: float = 20) -> Session:
    channels: dict[int, bytes] = {}
    frames: list[bytes | str] = []
    async with asyncio.timeout(timeout):
        async for m in ws:
            frames.append(m)
            raw = m if isinstance(m, bytes) else m.encode()
            channels[raw[0]] = channels.get(raw[0], b"") + raw[1:]
    return Session(ws.subprotocol, channels, frames, ws.close_code)


async def run_exec(url: str, protocols: list[str], stdin: Sequence[bytes | str] = ()) -> Session:
    async with connect(url, subprotocols=[Subprotocol(p) for p in protocols] or None, proxy=None) as ws:
        for frame in stdin:
            await ws.send(frame)
        return await drain(ws)


# ---- logs --------------------------------------------------------------------------------------


async def test_healthz(kubelet: Kubelet) -> None:
    async with httpx.AsyncClient(base_url=kubelet.http, trust_env=False) as c:
        r = await c.get("/healthz")
    assert (r.status_code, r.text) == (200, "ok")


async def test_logs_tail_timestamps_limit_since(kubelet: Kubelet) -> None:
    await kubelet.pod("printer", {"app": f"for i in 1 2 3 4 5; do echo line$i; done; {FOREVER}"})

    async def printed() -> bool:
        return (await logs(kubelet, "printer", "app")).text.endswith("line5\n")

    await eventually(printed, what="the container's output")
    r = await logs(kubelet, "printer", "app")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.headers.get("transfer-encoding") == "chunked"
    assert r.text == "line1\nline2\nline3\nline4\nline5\n"
    assert (await logs(kubelet, "printer", "app", tailLines="2")).text == "line4\nline5\n"
    assert (await logs(kubelet, "printer", "app", tailLines="0")).text == ""
    assert (await logs(kubelet, "printer", "app", tail="1")).text == "line5\n"  # the kubelet's legacy spelling
    stamped = (await logs(kubelet, "printer", "app", timestamps="true", tailLines="1")).text
    stamp, text = stamped.split(" ", 1)
    assert text == "line5\n" and stamp.endswith("Z") and "T" in stamp
    assert (await logs(kubelet, "printer", "app", limitBytes="8")).text == "line1\nli"
    assert (await logs(kubelet, "printer", "app", sinceSeconds="600")).text.startswith("line1")
    assert (await logs(kubelet, "printer", "app", sinceTime="2000-01-01T00:00:00Z")).text.startswith("line1")


async def test_logs_errors_in_kubelet_words(kubelet: Kubelet) -> None:
    await kubelet.pod("quiet", {"app": FOREVER})
    cases = [
        ("absent", "app", {}, 404, 'pod "absent" does not exist'),
        ("quiet", "nope", {}, 400, 'container "nope" in pod "quiet" is not available'),
        ("quiet", "app", {"previous": "true"}, 400, 'previous terminated container "app" in pod "quiet" not found'),
        ("quiet", "app", {"tailLines": "-1"}, 422, "tailLines: Invalid value: -1: must be greater than or equal to 0"),
        ("quiet", "app", {"limitBytes": "0"}, 422, "limitBytes: Invalid value: 0: must be greater than 0"),
        ("quiet", "app", {"sinceSeconds": "0"}, 422, "sinceSeconds: Invalid value: 0: must be greater than 0"),
        ("quiet", "app", {"sinceSeconds": "5", "sinceTime": "2020-01-01T00:00:00Z"}, 422, "at most one of"),
        ("quiet", "app", {"tailLines": "x"}, 400, 'invalid value for tailLines: "x"'),
        ("quiet", "app", {"follow": "maybe"}, 400, 'invalid value for follow: "maybe"'),
    ]
    for pod, container, params, code, words in cases:
        r = await logs(kubelet, pod, container, **params)
        assert r.status_code == code, (pod, container, params, r.text)
        assert words in r.text, (params, r.text)


async def test_logs_previous_is_the_attempt_before(kubelet: Kubelet) -> None:
    ids = await kubelet.pod("restarted", {"app": "echo first attempt; exit 1"})

    async def exited() -> bool:
        return (await kubelet.rt.inspect(ids["app"])).state is ContainerState.EXITED

    await eventually(exited, what="attempt 0 to exit")
    # attempt 0 alone, exited: that is the current container; there is no previous one yet
    assert (await logs(kubelet, "restarted", "app")).text == "first attempt\n"
    assert (await logs(kubelet, "restarted", "app", previous="true")).status_code == 400
    await kubelet.start(ids["POD"], "app", f"echo second attempt; {FOREVER}", attempt=1)

    async def second() -> bool:
        return (await logs(kubelet, "restarted", "app")).text == "second attempt\n"

    await eventually(second, what="attempt 1's output")
    r = await logs(kubelet, "restarted", "app", previous="true")
    assert (r.status_code, r.text) == (200, "first attempt\n")


async def test_logs_follow_streams_and_ends(kubelet: Kubelet) -> None:
    ticker = "i=0; trap 'exit 0' TERM; while :; do i=$((i+1)); echo tick$i; sleep 0.2 & wait; done"
    ids = await kubelet.pod("ticker", {"app": ticker, "short": "sleep 1; echo bye; exit 0"})
    async with httpx.AsyncClient(base_url=kubelet.http, timeout=30, trust_env=False) as c:
        # new lines arrive while the response is open
        got = b""
        started = time.monotonic()
        async with c.stream("GET", f"/containerLogs/{NAMESPACE}/ticker/app", params={"follow": "true"}) as r:
            assert r.status_code == 200 and r.headers.get("transfer-encoding") == "chunked"
            async for chunk in r.aiter_raw():
                got += chunk
                if got.count(b"\n") >= 8:
                    break
        assert got.startswith(b"tick1\ntick2\n")
        assert time.monotonic() - started > 0.8  # streamed over time, not a snapshot

        async def reader_gone() -> bool:  # the client left: the runtime's log reader ends
            return not any(t.name == f"kubenats-logs-{ids['app'][:12]}" for t in threading.enumerate())

        await eventually(reader_gone, 5, "the log reader thread to end")
        # following a container that exits ends the response
        r2 = await asyncio.wait_for(c.get(f"/containerLogs/{NAMESPACE}/ticker/short", params={"follow": "true"}), 15)
        assert r2.text == "bye\n"


# ---- exec --------------------------------------------------------------------------------------


async def test_exec_v5_and_v4_streams_and_exit_codes(kubelet: Kubelet) -> None:
    await kubelet.pod("shell", {"app": FOREVER})
    script = ["sh", "-c", "echo out; sleep 0.1; echo err >&2; exit 3"]
    for protocol in ("v5.channel.k8s.io", "v4.channel.k8s.io"):
        s = await run_exec(kubelet.exec_url("shell", "app", script, output="1", error="1"), [protocol])
        assert s.protocol == protocol
        assert s.frames[0] == b"\x01"  # the "process runs" frame on the first output channel
        assert s.channels[1] == b"out\n" and s.channels[2] == b"err\n"
        assert s.status == {
            "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: error executing command "
                       "[sh -c echo out; sleep 0.1; echo err >&2; exit 3], exit code 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
        }
        assert s.close_code == 1000
    ok = await run_exec(kubelet.exec_url("shell", "app", ["echo", "hi"], stdout="true", stderr="true"),
                        ["v5.channel.k8s.io", "v4.channel.k8s.io"])
    assert ok.protocol == "v5.channel.k8s.io"  # the client's first supported offer wins
    assert ok.channels[1] == b"hi\n" and ok.status == {"metadata": {}, "status": "Success"} == exit_status(0, [])
    only_out = await run_exec(kubelet.exec_url("shell", "app", script, output="1"), ["v4.channel.k8s.io"])
    assert 2 not in only_out.channels and only_out.channels[1] == b"out\n"  # stderr not requested


async def test_exec_stdin_v5_close_and_v4(kubelet: Kubelet) -> None:
    await kubelet.pod("echo", {"app": FOREVER})
    url = kubelet.exec_url("echo", "app", ["cat"], input="1", output="1", error="1")
    # v5: the client's CLOSE signal for stdin (255, 0) ends `cat`
    s = await run_exec(url, ["v5.channel.k8s.io"], [b"\x00hello ", b"\x00world\n", b"\xff\x00"])
    assert s.channels[1] == b"hello world\n" and s.status["status"] == "Success" and s.close_code == 1000
    # text frames carry stdin too (the Python client sends str as text)
    async with connect(url, subprotocols=[Subprotocol("v5.channel.k8s.io")], proxy=None) as ws:
        await ws.send("\x00text frame\n")
        await ws.send(b"\xff\x00")
        t = await drain(ws)
    assert t.channels[1] == b"text frame\n"
    # v4 has no CLOSE signal: a command that reads one line
    read_one = kubelet.exec_url("echo", "app", ["sh", "-c", "read x; echo got-$x"], input="1", output="1")
    v4 = await run_exec(read_one, ["v4.channel.k8s.io"], [b"\x00abc\n"])
    assert v4.channels[1] == b"got-abc\n" and v4.status["status"] == "Success"


async def test_exec_tty_and_resize(kubelet: Kubelet) -> None:
    await kubelet.pod("term", {"app": FOREVER})
    url = kubelet.exec_url("term", "app", ["sh"], input="1", output="1", error="1", tty="1")
    async with connect(url, subprotocols=[Subprotocol("v5.channel.k8s.io")], proxy=None) as ws:
        # one resize split over two messages, and a second one that wins
        await ws.send(b'\x04{"Width":80,')
        await ws.send(b'\x04"Height":20}\n{"Width":100,"Height":40}\n')
        await asyncio.sleep(0.3)
        await ws.send(b"\x00stty size; exit 4\n")
        s = await drain(ws)
    assert b"40 100" in s.channels[1]
    assert 2 not in s.channels  # a terminal has one output stream
    assert s.status["reason"] == "NonZeroExitCode" and s.status["details"]["causes"][0]["message"] == "4"


async def test_exec_base64_and_legacy_protocols(kubelet: Kubelet) -> None:
    await kubelet.pod("legacy", {"app": FOREVER})
    url = kubelet.exec_url("legacy", "app", ["sh", "-c", "cat; exit 2"], input="1", output="1", error="1")
    async with connect(url, subprotocols=[Subprotocol("v4.base64.channel.k8s.io")], proxy=None) as ws:
        await ws.send("0" + "aGVsbG8K")  # base64("hello\n") on stdin
        frames: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                async for m in ws:
                    assert isinstance(m, str)
                    frames.append(m)
        assert frames[:2] == ["1", "1aGVsbG8K"]  # "process runs", then base64 stdout
    # the pre-v4 protocol sends only a failure's message, as text, on channel 3
    legacy = await run_exec(kubelet.exec_url("legacy", "app", ["sh", "-c", "exit 5"], output="1"), ["channel.k8s.io"])
    assert legacy.channels[3].startswith(b"command terminated with non-zero exit code")
    quiet = await run_exec(kubelet.exec_url("legacy", "app", ["true"], output="1"), [])  # no subprotocol: v1
    assert quiet.protocol is None and 3 not in quiet.channels and quiet.close_code == 1000


async def test_exec_refusals(kubelet: Kubelet) -> None:
    await kubelet.pod("refuse", {"app": FOREVER})

    async def refused(url: str, protocols: list[str]) -> tuple[int, str]:
        with pytest.raises(InvalidStatus) as e:
            await run_exec(url, protocols)
        return e.value.response.status_code, (e.value.response.body or b"").decode()

    v5 = ["v5.channel.k8s.io"]
    assert await refused(kubelet.exec_url("refuse", "nope", ["true"], output="1"), v5) == (404, 'container not found ("nope")')
    assert await refused(kubelet.exec_url("absent", "app", ["true"], output="1"), v5) == (404, "pod does not exist")
    assert await refused(kubelet.exec_url("refuse", "app", [], output="1"), v5) == (
        400, "you must specify at least one command for the container")
    assert await refused(kubelet.exec_url("refuse", "app", ["true"]), v5) == (
        400, "you must specify at least 1 of stdin, stdout, stderr")
    code, text = await refused(kubelet.exec_url("refuse", "app", ["true"], output="1"), ["v2.channel.k8s.io"])
    assert code == 400 and text.startswith("requested protocol(s) are not supported")
    async with httpx.AsyncClient(base_url=kubelet.http, trust_env=False) as c:  # SPDY / plain HTTP
        r = await c.post(f"/exec/{NAMESPACE}/refuse/app", params={"command": "true", "output": "1"},
                         headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1"})
    assert r.status_code == 400 and "WebSocket" in r.text
    # a command that cannot start still upgrades, and fails like any command
    s = await run_exec(kubelet.exec_url("refuse", "app", ["/no/such/binary"], output="1", error="1"), v5)
    assert s.status["status"] == "Failure" and s.close_code == 1000


async def test_exec_client_leaving_ends_the_session(kubelet: Kubelet) -> None:
    await kubelet.pod("leave", {"app": FOREVER})
    url = kubelet.exec_url("leave", "app", ["sleep", "3600"], output="1", error="1")
    async with connect(url, subprotocols=[Subprotocol("v5.channel.k8s.io")], proxy=None) as ws:
        assert await ws.recv() == b"\x01"

    async def readers_gone() -> bool:
        return not any(t.name.startswith("kubenats-exec-") for t in threading.enumerate())

    await eventually(readers_gone, 10, "the exec reader threads to end")


# ---- the same server on the hollow runtime ---------------------------------------------------------


async def test_server_on_hollow_runtime() -> None:
    rt = HollowRuntime(node_name=f"hollow-{RUN}", images=[PAUSE_IMAGE, BUSYBOX_IMAGE],
                       exec_handler=lambda c, cmd: (7, b"scripted\n", b""))
    uid = str(uuid.uuid4())
    sb = await rt.run_sandbox(uid, "h", "hollow", 0, PAUSE_IMAGE)
    cid = await rt.create_container(sb.id, ContainerConfig(name="app", image=BUSYBOX_IMAGE))
    await rt.start_container(cid)
    server = KubeletServer(rt, "hollow", "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as c:
            r = await c.get("/containerLogs/hollow/h/app")
        assert r.text == "hollow container running\n"
        url = f"ws://127.0.0.1:{server.port}/exec/hollow/h/{uid}/app?command=x&output=1"
        s = await run_exec(url, ["v4.channel.k8s.io"])
        assert s.channels[1] == b"scripted\n" and s.status["details"]["causes"][0]["message"] == "7"
    finally:
        await server.stop()
