"""`pods/log` and `pods/exec` through the API server to a real kubelet server and real containers.

Nothing is mocked. This module starts its own etcd and nats-server, runs the real API server app
(`create_app`) in-process with uvicorn, and runs `KubeletServer` on `DockerRuntime`. A Node is
created through the API with `status.addresses` [InternalIP 127.0.0.1] and the kubelet's port in
`status.daemonEndpoints.kubeletEndpoint.Port`; Pods are created through the API bound to it, and
their sandbox and containers are started with the uid the API gave them.

The same requests run against two servers (the `front` fixture):
- `standalone`: `PodProxy.routes()` in a plain Starlette app that shares the API server's
  `Objects`;
- `wired`: the API server app itself, with `PodProxy` patched in exactly as the proposed wiring
  does it (`Rest._dispatch` hands pods/log and pods/exec to `PodProxy.handle`; a `WebSocketRoute`
  for exec), which is also where the official Python client runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import docker
import httpx
import pytest
import uvicorn
from kubernetes import client as kclient
from kubernetes.stream import stream
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from services.apiserver.app import create_app
from services.apiserver.config import Config
from services.apiserver.podproxy import PodProxy
from services.kubelet.runtime import DockerRuntime
from services.kubelet.runtime_types import LABEL_NODE, ContainerConfig, ContainerState
from services.kubelet.server import KubeletServer
from tests.kubelet.images import BUSYBOX_IMAGE, PAUSE_IMAGE, ensure_test_images
from tests.servers import Etcd, Nats, free_port

RUN = uuid.uuid4().hex[:8]
NODE = f"pp-{RUN}"
TOKEN = "podproxy-admin-token"  # the in-process app (plain HTTP) authenticates a bearer token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FOREVER = "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"


def _docker_ok() -> str | None:
    try:
        c = docker.DockerClient(base_url="unix:///var/run/docker.sock", version="auto", timeout=5)
        c.ping()
        c.close()
    except Exception as e:
        return f"no Docker engine: {e}"
    if not Path("/bin/busybox").exists():
        return "busybox-static is not installed"
    return None


class _Server(uvicorn.Server):
    """uvicorn on the test's event loop, leaving the test process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(app: Any, port: int, lifespan: Literal["on", "off"]) -> tuple[_Server, asyncio.Task[None]]:
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan=lifespan, log_config=None,
                                   access_log=False, timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped while starting")
        if time.monotonic() > deadline:
            raise TimeoutError("server did not start")
        await asyncio.sleep(0.02)
    return server, task


async def shutdown(server: _Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    try:
        await asyncio.wait_for(task, 15)
    except TimeoutError:
        task.cancel()


def wire(app: Any) -> PodProxy:
    """What the proposed lines in rest.py and app.py do, applied to a built app."""
    state = app.state.kn
    proxy = PodProxy(state.objects)
    original = state.rest._dispatch

    async def dispatch(request: Any, t: Any) -> Any:
        if t.res.plural == "pods" and t.sub in ("log", "exec"):
            return await proxy.handle(request, t.namespace, t.name, t.sub)
        return await original(request, t)

    state.rest._dispatch = dispatch
    app.router.routes.append(WebSocketRoute("/api/v1/namespaces/{namespace}/pods/{name}/exec", proxy.exec_websocket))
    return proxy


# ---- the environment -------------------------------------------------------------------------------


@dataclass
class Env:
    api: str  # the wired API server
    standalone: str  # PodProxy routes alone, on the same Objects
    kubelet: KubeletServer
    rt: DockerRuntime
    node: str


@pytest.fixture(scope="module")
def stores() -> Iterator[tuple[Etcd, Nats]]:
    skip = _docker_ok()
    if skip is not None:
        pytest.skip(skip)
    ensure_test_images()
    workdir = Path(tempfile.mkdtemp(prefix="kubenats-podproxy-"))
    etcd, nats = Etcd(workdir), Nats(workdir)
    try:
        etcd.start()
        nats.start()
        yield etcd, nats
    finally:
        nats.stop()
        etcd.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
async def env(stores: tuple[Etcd, Nats]) -> AsyncIterator[Env]:
    etcd, nats = stores
    port = free_port()
    tokens = etcd.log.parent / "tokens.csv"
    tokens.write_text(f'{TOKEN},podproxy-admin,1,"system:masters"\n')
    app = create_app(Config(etcd_servers=[etcd.url], nats_url=nats.url, port=port, token_auth_file=str(tokens)))
    wired_proxy = wire(app)
    api_server = await serve(app, port, "on")
    standalone_proxy = PodProxy(app.state.kn.objects)
    side_port = free_port()
    side_server = await serve(Starlette(routes=standalone_proxy.routes()), side_port, "off")
    rt = DockerRuntime(node_name=NODE)
    kubelet = KubeletServer(rt, NODE, "127.0.0.1", 0)
    await kubelet.start()
    api = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(headers=AUTH, base_url=api, trust_env=False) as c:
        node = {"metadata": {"name": NODE}, "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}}
        r = await c.post("/api/v1/nodes", json=node)
        assert r.status_code == 201, r.text
        if (r.json().get("status") or {}).get("daemonEndpoints") is None:  # status is the kubelet's to write
            current = r.json()
            current["status"] = node["status"]
            r = await c.put(f"/api/v1/nodes/{NODE}/status", json=current)
            assert r.status_code == 200, r.text
    try:
        yield Env(api, f"http://127.0.0.1:{side_port}", kubelet, rt, NODE)
    finally:
        await kubelet.stop()
        for proxy in (wired_proxy, standalone_proxy):
            await proxy.aclose()
        await shutdown(*side_server)
        await shutdown(*api_server)
        api_client = docker.APIClient(base_url="unix:///var/run/docker.sock", version="auto", timeout=60)
        for ctr in api_client.containers(all=True, filters={"label": f"{LABEL_NODE}={NODE}"}):
            with contextlib.suppress(docker.errors.APIError):
                api_client.remove_container(ctr["Id"], force=True)
        api_client.close()
        rt.close()


@pytest.fixture(params=["standalone", "wired"])
def front(request: pytest.FixtureRequest, env: Env) -> str:
    """The base URL that serves pods/log and pods/exec in this run."""
    return env.standalone if request.param == "standalone" else env.api


@pytest.fixture
async def ns(env: Env) -> str:
    name = "pp-" + uuid.uuid4().hex[:10]
    async with httpx.AsyncClient(headers=AUTH, base_url=env.api, trust_env=False) as c:
        r = await c.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return name


async def make_pod(env: Env, ns: str, name: str, scripts: dict[str, str], *, node: str | None = "",
                   annotations: dict[str, str] | None = None, start: Sequence[str] | None = None,
                   sandbox: bool = True) -> dict[str, str]:
    """Create the Pod through the API (bound to `node`, default this module's node), then start its
    sandbox and the containers named in `start` (default all) with the API's uid."""
    containers = [{"name": c, "image": BUSYBOX_IMAGE, "command": ["sh", "-c", s]} for c, s in scripts.items()]
    spec: dict[str, Any] = {"containers": containers}
    if node is not None:
        spec["nodeName"] = node or env.node
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    async with httpx.AsyncClient(headers=AUTH, base_url=env.api, trust_env=False) as c:
        r = await c.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": meta, "spec": spec})
    assert r.status_code == 201, r.text
    uid = r.json()["metadata"]["uid"]
    ids = {"uid": uid}
    if sandbox and node is not None and (node == "" or node == env.node):
        info = await env.rt.run_sandbox(uid, name, ns, 0, PAUSE_IMAGE)
        ids["POD"] = info.id
        for cname in scripts if start is None else start:
            spec_ = ContainerConfig(name=cname, image=BUSYBOX_IMAGE, command=["sh", "-c", scripts[cname]])
            ids[cname] = await env.rt.create_container(info.id, spec_)
            await env.rt.start_container(ids[cname])
    return ids


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def get_log(base: str, ns: str, pod: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(headers=AUTH, base_url=base, timeout=30, trust_env=False) as c:
        return await c.get(f"/api/v1/namespaces/{ns}/pods/{pod}/log", params=params)


def status_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert body["kind"] == "Status" and body["code"] == r.status_code, body
    return dict(body)


def exec_url(base: str, ns: str, pod: str, command: list[str], **flags: str) -> str:
    query = [("command", c) for c in command] + list(flags.items())
    return f"{base.replace('http://', 'ws://')}/api/v1/namespaces/{ns}/pods/{pod}/exec?{urlencode(query)}"


@dataclass
class Session:
    protocol: str | None
    channels: dict[int, bytes]
    close_code: int | None

    @property
    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.channels.get(3, b"")))


async def drain(ws: ClientConnection, timeout: float = 20) -> Session:
    channels: dict[int, bytes] = {}
    async with asyncio.timeout(timeout):
        async for m in ws:
            raw = m if isinstance(m, bytes) else m.encode()
            channels[raw[0]] = channels.get(raw[0], b"") + raw[1:]
    return Session(ws.subprotocol, channels, ws.close_code)


async def run_exec(url: str, protocols: Sequence[str], stdin: Sequence[bytes] = ()) -> Session:
    async with connect(url, subprotocols=[Subprotocol(p) for p in protocols], proxy=None, additional_headers=AUTH) as ws:
        for frame in stdin:
            await ws.send(frame)
        return await drain(ws)


# ---- logs --------------------------------------------------------------------------------------


async def test_logs_relayed_with_options(env: Env, front: str, ns: str) -> None:
    await make_pod(env, ns, "web", {"app": f"for i in 1 2 3 4 5; do echo line$i; done; {FOREVER}"})

    async def printed() -> bool:
        return (await get_log(front, ns, "web")).text.endswith("line5\n")

    await eventually(printed, what="the container's output")
    r = await get_log(front, ns, "web")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "line1\nline2\nline3\nline4\nline5\n"
    assert (await get_log(front, ns, "web", container="app", tailLines="2")).text == "line4\nline5\n"
    assert (await get_log(front, ns, "web", limitBytes="3")).text == "lin"
    stamped = (await get_log(front, ns, "web", timestamps="true", tailLines="1")).text
    assert stamped.split(" ", 1)[1] == "line5\n" and stamped.split(" ", 1)[0].endswith("Z")
    assert (await get_log(front, ns, "web", sinceSeconds="3600")).text.startswith("line1")


async def test_logs_follow_streams_until_the_client_leaves(env: Env, front: str, ns: str) -> None:
    ids = await make_pod(env, ns, "ticker", {
        "app": "i=0; trap 'exit 0' TERM; while :; do i=$((i+1)); echo tick$i; sleep 0.2 & wait; done"})
    got = b""
    started = time.monotonic()
    async with httpx.AsyncClient(headers=AUTH, base_url=front, timeout=30, trust_env=False) as c:
        async with c.stream("GET", f"/api/v1/namespaces/{ns}/pods/ticker/log", params={"follow": "true"}) as r:
            assert r.status_code == 200 and r.headers.get("transfer-encoding") == "chunked"
            async for chunk in r.aiter_raw():
                got += chunk
                if got.count(b"\n") >= 6:
                    break
    assert got.startswith(b"tick1\ntick2\n") and time.monotonic() - started > 0.6

    async def reader_gone() -> bool:  # client gone -> API server drops the kubelet stream -> runtime reader ends
        return not any(t.name == f"kubenats-logs-{ids['app'][:12]}" for t in threading.enumerate())

    await eventually(reader_gone, 10, "the kubelet's log reader to end")


async def test_logs_previous_and_default_container(env: Env, front: str, ns: str) -> None:
    ids = await make_pod(env, ns, "multi", {"app": "echo first; exit 1", "side": FOREVER},
                         annotations={"kubectl.kubernetes.io/default-container": "app"})

    async def exited() -> bool:
        return (await env.rt.inspect(ids["app"])).state is ContainerState.EXITED

    await eventually(exited, what="attempt 0 to exit")
    second = ContainerConfig(name="app", image=BUSYBOX_IMAGE, command=["sh", "-c", f"echo second; {FOREVER}"],
                             restart_count=1)
    cid = await env.rt.create_container(ids["POD"], second)
    await env.rt.start_container(cid)

    async def restarted() -> bool:
        return (await get_log(front, ns, "multi")).text == "second\n"  # the annotation picks `app`

    await eventually(restarted, what="attempt 1's output")
    r = await get_log(front, ns, "multi", previous="true")
    assert (r.status_code, r.text) == (200, "first\n")
    r = await get_log(front, ns, "multi", container="side", previous="true")
    assert r.status_code == 400
    assert status_of(r)["message"] == 'previous terminated container "side" in pod "multi" not found'


async def test_logs_errors_as_kubernetes_says_them(env: Env, front: str, ns: str) -> None:
    await make_pod(env, ns, "two", {"a": FOREVER, "b": FOREVER})
    await make_pod(env, ns, "pending", {"app": FOREVER}, node=None)
    await make_pod(env, ns, "lost", {"app": FOREVER}, node="no-such-node")
    await make_pod(env, ns, "notyet", {"app": FOREVER}, start=())  # sandbox only
    await make_pod(env, ns, "unborn", {"app": FOREVER}, sandbox=False)  # bound, nothing created yet

    r = await get_log(front, ns, "two")
    assert r.status_code == 400 and status_of(r)["reason"] == "BadRequest"
    assert status_of(r)["message"] == "a container name must be specified for pod two, choose one of: [a b]"
    r = await get_log(front, ns, "two", container="c")
    assert status_of(r)["message"] == "container c is not valid for pod two" and r.status_code == 400
    r = await get_log(front, ns, "two", container="a", tailLines="-1")
    body = status_of(r)
    assert r.status_code == 422 and body["reason"] == "Invalid" and body["details"]["kind"] == "PodLogOptions"
    assert body["message"] == 'PodLogOptions "two" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0'
    assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "tailLines",
                                          "message": "Invalid value: -1: must be greater than or equal to 0"}]
    for params in ({"limitBytes": "0"}, {"sinceSeconds": "0"}, {"sinceSeconds": "5", "sinceTime": "2020-01-01T00:00:00Z"}):
        assert (await get_log(front, ns, "two", container="a", **params)).status_code == 422, params
    for params in ({"tailLines": "ten"}, {"follow": "maybe"}, {"sinceTime": "yesterday"}):
        assert (await get_log(front, ns, "two", container="a", **params)).status_code == 400, params
    r = await get_log(front, ns, "absent")
    assert r.status_code == 404 and status_of(r)["message"] == 'pods "absent" not found'
    r = await get_log(front, ns, "pending")  # not scheduled: an empty log, as kube-apiserver answers
    assert (r.status_code, r.text) == (200, "")
    r = await get_log(front, ns, "lost")
    assert r.status_code == 404 and status_of(r)["message"] == 'nodes "no-such-node" not found'
    r = await get_log(front, ns, "notyet")
    assert r.status_code == 400
    assert status_of(r)["message"] == 'container "app" in pod "notyet" is not available'
    r = await get_log(front, ns, "unborn")
    assert r.status_code == 400
    assert status_of(r)["message"] == 'container "app" in pod "unborn" is waiting to start: ContainerCreating'


async def test_logs_waiting_reason_from_pod_status(env: Env, front: str, ns: str) -> None:
    await make_pod(env, ns, "pulling", {"app": FOREVER}, start=())
    async with httpx.AsyncClient(headers=AUTH, base_url=env.api, trust_env=False) as c:
        pod = (await c.get(f"/api/v1/namespaces/{ns}/pods/pulling")).json()
        pod["status"]["containerStatuses"] = [{
            "name": "app", "image": BUSYBOX_IMAGE, "imageID": "", "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": "pull failed"}}}]
        r = await c.put(f"/api/v1/namespaces/{ns}/pods/pulling/status", json=pod)
        assert r.status_code == 200, r.text
    r = await get_log(front, ns, "pulling")
    assert r.status_code == 400
    assert status_of(r)["message"] == 'container "app" in pod "pulling" is waiting to start: image can\'t be pulled'


async def test_logs_unreachable_kubelet(env: Env, front: str, ns: str) -> None:
    dead = f"dead-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(headers=AUTH, base_url=env.api, trust_env=False) as c:
        body = {"metadata": {"name": dead}, "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": free_port()}}}}
        r = await c.post("/api/v1/nodes", json=body)
        assert r.status_code == 201, r.text
        if (r.json().get("status") or {}).get("daemonEndpoints") is None:
            cur = r.json()
            cur["status"] = body["status"]
            assert (await c.put(f"/api/v1/nodes/{dead}/status", json=cur)).status_code == 200
    await make_pod(env, ns, "orphan", {"app": FOREVER}, node=dead)
    r = await get_log(front, ns, "orphan")
    assert r.status_code == 500 and "containerLogs" in status_of(r)["message"]
    s = await run_exec(exec_url(front, ns, "orphan", ["true"]), [V5])
    assert s.status["status"] == "Failure" and s.status["message"].startswith("error dialing backend")
    assert s.close_code == 1000


# ---- exec --------------------------------------------------------------------------------------


async def test_exec_relays_v5_and_v4(env: Env, front: str, ns: str) -> None:
    await make_pod(env, ns, "sh", {"app": FOREVER})
    script = ["sh", "-c", "echo out; sleep 0.1; echo err >&2; exit 3"]
    for offered in ([V5, V4], [V4]):
        s = await run_exec(exec_url(front, ns, "sh", script, stdout="true", stderr="true"), offered)
        assert s.protocol == offered[0]
        assert s.channels[1] == b"out\n" and s.channels[2] == b"err\n"
        assert s.status["reason"] == "NonZeroExitCode"
        assert s.status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
        assert s.close_code == 1000
    ok = await run_exec(exec_url(front, ns, "sh", ["echo", "hi"], container="app"), [V5])  # stdout/stderr default on
    assert ok.channels[1] == b"hi\n" and ok.status == {"metadata": {}, "status": "Success"}


async def test_exec_stdin_and_tty(env: Env, front: str, ns: str) -> None:
    await make_pod(env, ns, "io", {"app": FOREVER})
    cat = exec_url(front, ns, "io", ["cat"], stdin="true", stdout="true", stderr="true")
    s = await run_exec(cat, [V5], [b"\x00hello\n", b"\xff\x00"])  # v5 CLOSE of stdin ends cat
    assert s.channels[1] == b"hello\n" and s.status["status"] == "Success" and s.close_code == 1000
    tty = exec_url(front, ns, "io", ["sh"], stdin="true", stdout="true", stderr="false", tty="true")
    async with connect(tty, subprotocols=[Subprotocol(V5)], proxy=None, additional_headers=AUTH) as ws:
        await ws.send(b'\x04{"Width":100,"Height":40}\n')
        await asyncio.sleep(0.3)
        await ws.send(b"\x00stty size; exit 4\n")
        t = await drain(ws)
    assert b"40 100" in t.channels[1] and t.status["details"]["causes"][0]["message"] == "4"


async def test_exec_refusals(env: Env, front: str, ns: str) -> None:
    await make_pod(env, ns, "two", {"a": FOREVER, "b": FOREVER}, start=["a"])
    await make_pod(env, ns, "pending", {"app": FOREVER}, node=None)

    async def refused(url: str, protocols: Sequence[str] = (V5,)) -> tuple[int, dict[str, Any]]:
        with pytest.raises(InvalidStatus) as e:
            await run_exec(url, protocols)
        body = json.loads(e.value.response.body or b"{}")
        assert body["kind"] == "Status" and body["code"] == e.value.response.status_code
        return e.value.response.status_code, body

    code, body = await refused(exec_url(front, ns, "two", ["true"]))
    assert code == 400 and body["message"] == "a container name must be specified for pod two, choose one of: [a b]"
    code, body = await refused(exec_url(front, ns, "two", ["true"], container="z"))
    assert code == 400 and body["message"] == "container z is not valid for pod two"
    code, body = await refused(exec_url(front, ns, "pending", ["true"]))
    assert code == 400 and body["message"] == "pod pending does not have a host assigned"
    code, body = await refused(exec_url(front, ns, "absent", ["true"]))
    assert code == 404 and body["message"] == 'pods "absent" not found'
    code, body = await refused(exec_url(front, ns, "two", [], container="a"))
    assert code == 400 and "command" in body["message"]
    code, body = await refused(exec_url(front, ns, "two", ["true"], container="a"), ["v2.channel.k8s.io"])
    assert code == 400 and body["message"].startswith("requested protocol(s) are not supported")
    # known to the API, but not running on the kubelet: the kubelet's refusal arrives as a Status
    s = await run_exec(exec_url(front, ns, "two", ["true"], container="b"), [V5])
    assert s.status["message"] == 'unable to upgrade connection: container not found ("b")' and s.close_code == 1000
    # an old client's SPDY upgrade (or a plain request) is told that WebSocket is required
    async with httpx.AsyncClient(headers=AUTH, base_url=front, trust_env=False) as c:
        r = await c.post(f"/api/v1/namespaces/{ns}/pods/two/exec", params={"command": "true", "container": "a"},
                         headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": V4})
    assert r.status_code == 400 and "WebSocket" in status_of(r)["message"]


async def test_exec_client_leaving_ends_the_kubelet_session(env: Env, front: str, ns: str) -> None:
    await make_pod(env, ns, "leave", {"app": FOREVER})
    async with connect(exec_url(front, ns, "leave", ["sleep", "3600"]), subprotocols=[Subprotocol(V5)], proxy=None, additional_headers=AUTH) as ws:
        assert await ws.recv() == b"\x01"

    async def readers_gone() -> bool:
        return not any(t.name.startswith("kubenats-exec-") for t in threading.enumerate())

    await eventually(readers_gone, 10, "the kubelet's exec reader to end")


# ---- the official Python client (wired API server) ------------------------------------------------


def _core(env: Env) -> kclient.CoreV1Api:
    cfg = kclient.Configuration()
    cfg.host = env.api
    cfg.api_key = {"authorization": TOKEN}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return kclient.CoreV1Api(kclient.ApiClient(cfg))


async def test_python_client_logs_and_exec(env: Env, ns: str) -> None:
    await make_pod(env, ns, "py", {"app": f"echo hello from py; {FOREVER}"})
    core = _core(env)

    async def printed() -> bool:
        return await asyncio.to_thread(core.read_namespaced_pod_log, "py", ns) == "hello from py\n"

    await eventually(printed, what="the log through the Python client")

    def one_shot() -> str:
        return str(stream(core.connect_get_namespaced_pod_exec, "py", ns, command=["sh", "-c", "echo out; echo err >&2"],
                          stderr=True, stdin=False, stdout=True, tty=False))

    out = await asyncio.to_thread(one_shot)
    assert "out\n" in out and "err\n" in out

    def interactive() -> tuple[str, str, int | None]:
        ws = stream(core.connect_get_namespaced_pod_exec, "py", ns, command=["sh", "-c", "read x; echo got-$x; exit 6"],
                    stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
        ws.write_stdin("abc\n")
        out = ""
        ws.run_forever(timeout=20)
        out = ws.read_stdout() or ""
        return ws.subprotocol, out, ws.returncode

    protocol, out, code = await asyncio.to_thread(interactive)
    assert (protocol, out, code) == (V5, "got-abc\n", 6)

    def v5_close() -> tuple[str, int | None]:
        ws = stream(core.connect_get_namespaced_pod_exec, "py", ns, command=["cat"],
                    stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
        ws.write_stdin("through cat\n")
        ws.close_channel(0)
        ws.run_forever(timeout=20)
        return ws.read_stdout() or "", ws.returncode

    assert await asyncio.to_thread(v5_close) == ("through cat\n", 0)


def test_kubelet_without_server_is_a_clear_503() -> None:
    """A kubelet whose server could not bind advertises port 0; nothing is proxied to a stranger."""
    from services.apiserver.podproxy import kubelet_endpoint
    from shared.errors import ApiError

    node = {"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}}}
    with pytest.raises(ApiError) as e:
        kubelet_endpoint(node)
    assert e.value.code == 503 and "serves no logs/exec endpoint" in e.value.message
    node["status"]["daemonEndpoints"] = {}
    assert kubelet_endpoint(node) == ("127.0.0.1", 10250)
