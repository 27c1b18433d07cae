"""Per-component NATS users against a real nats-server started with a config from shared.natsconf:
who may publish and subscribe where, JetStream for the apiserver and admin, refused passwords,
and TLS with the cluster CA."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from shared import pki
from shared.bus import STREAM, Bus, BusOptions, Message, options_from_args
from shared.natsconf import NatsUser, component_users, ensure_passwords, render_config, user_names
from tests.servers import Proc, free_port, wait_for

NODES = ("n1", "n2")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


@dataclass
class Server:
    url: str
    passwords: dict[str, str]
    workdir: Path
    proc: Proc


def start_nats(workdir: Path, conf: str, name: str = "nats") -> Proc:
    path = workdir / f"{name}.conf"
    path.write_text(conf)
    port = int(next(line for line in conf.splitlines() if line.startswith("listen:")).rsplit(":", 1)[1].strip('"'))
    proc = Proc(name, [NATS_SERVER, "-c", str(path)], workdir / f"{name}.log")
    proc.start()

    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"nats-server exited:\n{proc.tail()}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    wait_for(up, 20, "nats-server")
    return proc


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix="kubenats-natsconf-"))
    passwords = ensure_passwords(workdir / "nats-passwords.json", user_names(NODES, hollow=True))
    port = free_port()
    conf = render_config(port=port, users=component_users(passwords, NODES, hollow=True),
                         store_dir=str(workdir / "js"), http_port=free_port(), host="127.0.0.1")
    proc = start_nats(workdir, conf)
    try:
        yield Server(f"nats://127.0.0.1:{port}", passwords, workdir, proc)
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
async def buses(server: Server) -> AsyncIterator[dict[str, Bus]]:
    """One connection per user, kept for the module."""
    out: dict[str, Bus] = {}
    try:
        for user in user_names(NODES, hollow=True):
            b = Bus(server.url, f"test-{user}", BusOptions(user=user, password=server.passwords[user]))
            await b.connect(timeout=5)
            out[user] = b
        await out["apiserver"].ensure_stream()
        yield out
    finally:
        for b in out.values():
            await b.close()


@contextlib.asynccontextmanager
async def connected(server: Server, user: str) -> AsyncIterator[Bus]:
    """A fresh connection as `user`, so each case sees only its own permission violations."""
    b = Bus(server.url, f"test-{user}", BusOptions(user=user, password=server.passwords[user]))
    await b.connect(timeout=5)
    try:
        yield b
    finally:
        await b.close()


async def eventually(cond: object, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout}s")
        await asyncio.sleep(0.02)


def violations(bus: Bus, operation: str) -> set[str]:
    return {v.subject for v in bus.permission_violations if v.operation == operation}


# ---- pure functions ---------------------------------------------------------------------------

def test_users_and_permissions_table() -> None:
    pw = {n: "p-" + n for n in user_names(["n1", "a.b"], hollow=True)}
    users = {u.name: u for u in component_users(pw, ["n1", "a.b", "n1"], hollow=True)}
    assert list(users) == ["apiserver", "scheduler", "controllers", "proxy", "kubelet-n1", "kubelet-a.b",
                           "kubelet-hollow", "admin"]
    assert users["apiserver"].publish[0] == "kube.>"
    for name, u in users.items():
        assert u.password == "p-" + name
        if name != "apiserver":
            assert not any(s.startswith("kube.") or s == ">" for s in u.publish), name
    assert users["kubelet-n1"].subscribe == ("kube.nodes.n1.>", "kube.events.core.nodes._.n1", "kube.control.resync")
    assert users["kubelet-a.b"].subscribe[0] == "kube.nodes.a_b.>"  # subject tokens are escaped
    assert "kube.nodes.>" in users["kubelet-hollow"].subscribe
    assert users["admin"].subscribe == (">",)
    assert "_INBOX.>" in users["admin"].publish


def test_missing_password_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError, match="no NATS password for user 'kubelet-n9'"):
        component_users({n: "x" for n in user_names()}, ["n9"])


def test_render_quotes_and_nats_server_accepts_it(tmp_path: Path) -> None:
    tricky = 'a"b\\c$HOME-_~.'
    users = [NatsUser("apiserver", tricky, ("kube.>", "$JS.API.INFO"), ("_INBOX.>",)),
             NatsUser("scheduler", "x", (), ("kube.events.>",))]
    conf = render_config(port=4222, users=users, store_dir=str(tmp_path / "my js"), http_port=8222,
                         tls_cert=str(tmp_path / "c.crt"), tls_key=str(tmp_path / "c.key"), tls_ca=str(tmp_path / "ca.crt"))
    assert 'password: "a\\"b\\\\c$HOME-_~."' in conf
    assert 'listen: "0.0.0.0:4222"' in conf and 'http: "0.0.0.0:8222"' in conf
    assert "max_payload: 8388608" in conf
    assert 'publish: { deny: [">"] }' in conf  # the scheduler publishes nothing
    assert 'ca_file: "' in conf
    with pytest.raises(ValueError, match="control character"):
        render_config(port=1, users=[NatsUser("a", "x\ny", (), ())], store_dir="/x")
    # nats-server parses it (without TLS: the files above do not exist)
    path = tmp_path / "t.conf"
    path.write_text(render_config(port=4222, users=users, store_dir=str(tmp_path / "my js")))
    r = subprocess.run([NATS_SERVER, "-c", str(path), "-t"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ensure_passwords_creates_extends_and_keeps(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "pw.json"
    first = ensure_passwords(path, ["a", "b"])
    assert set(first) == {"a", "b"} and len(first["a"]) >= 32 and first["a"] != first["b"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = ensure_passwords(path, ["b", "c"])
    assert second["a"] == first["a"] and second["b"] == first["b"] and set(second) == {"a", "b", "c"}
    assert json.loads(path.read_text()) == second
    os.chmod(path, 0o644)
    assert ensure_passwords(path, ["a"]) == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_options_from_args(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("  secret-1_x \n")
    (tmp_path / "ca.crt").write_text("x")
    o = options_from_args("scheduler", str(tmp_path / "pw"), str(tmp_path / "ca.crt"))
    assert (o.user, o.password, o.tls_ca) == ("scheduler", "secret-1_x", str(tmp_path / "ca.crt"))
    assert options_from_args("", "", "") == BusOptions()
    with pytest.raises(ValueError, match="password file"):
        options_from_args("scheduler", str(tmp_path / "missing"), "")
    with pytest.raises(ValueError, match="CA file"):
        options_from_args("scheduler", str(tmp_path / "pw"), str(tmp_path / "nope.crt"))


# ---- against the server -----------------------------------------------------------------------

async def test_wrong_password_is_refused_at_connect(server: Server) -> None:
    for opts in (BusOptions(user="scheduler", password="wrong"), BusOptions(user="nobody", password="x"), BusOptions()):
        b = Bus(server.url, "test-wrong", opts)
        t = time.monotonic()
        with pytest.raises(ConnectionError, match="Authorization Violation"):
            await b.connect(timeout=10)
        assert time.monotonic() - t < 5  # refused at once, not retried until the deadline
        assert not b.connected


async def test_unreachable_server_gives_up_at_the_deadline() -> None:
    b = Bus(f"nats://127.0.0.1:{free_port()}", "test-unreachable")
    t = time.monotonic()
    with pytest.raises(ConnectionError, match="cannot reach NATS"):
        await b.connect(timeout=1.5)
    assert 1.4 < time.monotonic() - t < 5


async def test_apiserver_publishes_core_and_jetstream(server: Server, buses: dict[str, Bus]) -> None:
    api, admin = buses["apiserver"], buses["admin"]
    got: list[Message] = []

    async def handler(m: Message) -> None:
        got.append(m)
    await admin.subscribe("kube.events.core.pods.ns.>", handler)
    await admin.flush()
    await api.publish("kube.events.core.pods.ns.core", b"{}")
    ack = await asyncio.wait_for(await api.js_publish("kube.events.core.pods.ns.x", b'{"type":"ADDED"}', 7), 5)
    assert ack.stream == STREAM
    last = await api.last_published()
    assert last is not None and last.subject == "kube.events.core.pods.ns.x" and last.revision == 7
    await eventually(lambda: {m.subject for m in got} == {"kube.events.core.pods.ns.core", "kube.events.core.pods.ns.x"},
                     what="admin receives both")
    assert not api.permission_violations


READERS = ["scheduler", "controllers", "proxy", "kubelet-n1", "kubelet-n2", "kubelet-hollow", "admin"]


@pytest.mark.parametrize("user", READERS)
async def test_only_the_apiserver_publishes_under_kube(user: str, server: Server, buses: dict[str, Bus]) -> None:
    got: list[Message] = []

    async def handler(m: Message) -> None:
        got.append(m)
    async with connected(server, user) as bus, connected(server, "admin") as witness:
        await witness.subscribe("kube.>", handler)
        await witness.flush()
        subjects = [f"kube.events.x.{user}", "kube.nodes.n1.pods.default.p", "kube.control.resync"]
        for s in subjects:
            await bus.publish(s, b"{}")
        await bus.flush()
        await eventually(lambda: set(subjects) <= violations(bus, "publish"), what=f"{user}: violations reported")
        await buses["apiserver"].publish("kube.events.x.witness", b"{}")
        await eventually(lambda: any(m.subject == "kube.events.x.witness" for m in got), what="witness works")
        assert [m.subject for m in got if m.subject in subjects] == []
        assert bus.connected  # a violation does not cost the connection


SUBSCRIPTIONS = [
    # (user, subscription, what the apiserver publishes, allowed)
    ("kubelet-n1", "kube.nodes.n1.pods.>", "kube.nodes.n1.pods.default.a", True),
    ("kubelet-n1", "kube.events.core.nodes._.n1", "kube.events.core.nodes._.n1", True),
    ("kubelet-n1", "kube.control.resync", "kube.control.resync", True),
    ("kubelet-n1", "kube.nodes.n2.>", "kube.nodes.n2.pods.default.b", False),
    ("kubelet-n1", "kube.events.>", "kube.events.core.pods.default.c", False),
    ("kubelet-n1", "kube.events.core.nodes._.*", "kube.events.core.nodes._.n2", False),
    ("kubelet-n2", "kube.nodes.n2.pods.>", "kube.nodes.n2.pods.default.d", True),
    ("kubelet-hollow", "kube.nodes.n7-3.pods.>", "kube.nodes.n7-3.pods.default.e", True),
    ("kubelet-hollow", "kube.events.core.nodes._.*", "kube.events.core.nodes._.n7-3", True),
    ("kubelet-hollow", "kube.events.core.pods.*.*", "kube.events.core.pods.default.f", False),
    ("scheduler", "kube.events.core.pods.*.*", "kube.events.core.pods.default.g", True),
    ("scheduler", "kube.events.core.nodes.*.*", "kube.events.core.nodes._.n1", True),
    ("scheduler", "kube.events.core.namespaces.*.*", "kube.events.core.namespaces._.ns1", True),
    ("scheduler", "kube.events.apps.deployments.*.*", "kube.events.apps.deployments.default.h", False),
    ("scheduler", "kube.nodes.>", "kube.nodes.n1.pods.default.i", False),
    ("controllers", "kube.events.>", "kube.events.apps.replicasets.default.j", True),
    ("controllers", "kube.events.core.pods.*.*", "kube.events.core.pods.default.k", True),
    ("controllers", "kube.control.resync", "kube.control.resync", True),
    ("controllers", "kube.nodes.>", "kube.nodes.n1.pods.default.l", False),
    ("proxy", "kube.events.core.services.*.*", "kube.events.core.services.default.m", True),
    ("proxy", "kube.events.discovery_k8s_io.endpointslices.*.*", "kube.events.discovery_k8s_io.endpointslices.default.n", True),
    ("proxy", "kube.events.core.endpoints.*.*", "kube.events.core.endpoints.default.o", True),
    ("proxy", "kube.events.core.pods.*.*", "kube.events.core.pods.default.p", False),
    ("proxy", "kube.events.>", "kube.events.core.services.default.q", False),
    ("apiserver", "kube.events.>", "kube.events.core.pods.default.r", True),
    ("admin", ">", "kube.nodes.n2.pods.default.s", True),
]


@pytest.mark.parametrize(("user", "subject", "published", "allowed"), SUBSCRIPTIONS,
                         ids=[f"{u}:{s}" for u, s, _, _ in SUBSCRIPTIONS])
async def test_subscribe_permissions(user: str, subject: str, published: str, allowed: bool,
                                     server: Server, buses: dict[str, Bus]) -> None:
    api = buses["apiserver"]
    got: list[Message] = []
    marker = os.urandom(6).hex().encode()

    async def handler(m: Message) -> None:
        if m.data == marker:
            got.append(m)
    async with connected(server, user) as bus:
        await bus.subscribe(subject, handler)
        await bus.flush()  # the server answers SUB (or its refusal) before the PONG
        await api.publish(published, marker)
        await api.flush()
        if allowed:
            await eventually(lambda: len(got) == 1, what=f"{user} receives {published}")
            assert not bus.permission_violations
        else:
            await eventually(lambda: subject in violations(bus, "subscribe"), what=f"{user}: violation on {subject}")
            await asyncio.sleep(0.2)
            assert got == []
            assert bus.connected


async def test_admin_replays_through_jetstream_but_cannot_manage_it(buses: dict[str, Bus]) -> None:
    api, admin = buses["apiserver"], buses["admin"]
    subjects = [f"kube.events.core.configmaps.replay.c{i}" for i in range(3)]
    acks = [await api.js_publish(s, orjson.dumps({"type": "ADDED", "i": i}), 100 + i) for i, s in enumerate(subjects)]
    await asyncio.wait_for(asyncio.gather(*acks), 5)
    admin.permission_violations.clear()
    got = [m async for m in admin.replay("kube.events.core.configmaps.replay.>", since_s=60, idle_s=0.5)]
    assert [m.subject for m in got] == subjects and all(m.seq > 0 for m in got)
    assert not admin.permission_violations
    # managing the stream is the apiserver's: the request is refused, the stream stays as it is
    with pytest.raises(Exception):  # noqa: B017 - a JetStream timeout, whatever nats-py calls it
        await asyncio.wait_for(admin.ensure_stream(), 3)
    await eventually(lambda: "$js.api.stream.create.kube" in violations(admin, "publish"), what="admin refused")


async def test_a_component_cannot_replay_the_stream(buses: dict[str, Bus]) -> None:
    sched = buses["scheduler"]
    with pytest.raises(Exception):  # noqa: B017 - JetStream API request refused (times out)
        await asyncio.wait_for(anext(sched.replay("kube.events.>", since_s=60)), 3)
    # (nats-py lowercases the server's error line)
    assert "$js.api.stream.names" in violations(sched, "publish")


# ---- TLS --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[str, dict[str, str], pki.CertPair, pki.CertPair]]:
    workdir = Path(tempfile.mkdtemp(prefix="kubenats-natstls-"))
    ca = pki.ensure_ca(workdir / "pki")
    cert = pki.ensure_cert(workdir / "pki", ca, "nats", cn="nats", server=True, dns=["localhost"], ips=["127.0.0.1"])
    other_ca = pki.ensure_ca(workdir / "other", name="other-ca")
    passwords = ensure_passwords(workdir / "pw.json", ["apiserver", "admin"])
    users = [u for u in component_users({**{n: "unused" for n in user_names()}, **passwords}) if u.name in passwords]
    port = free_port()
    conf = render_config(port=port, users=users, store_dir=str(workdir / "js"), host="127.0.0.1",
                         tls_cert=str(cert.cert), tls_key=str(cert.key), tls_ca=str(ca.cert))
    proc = start_nats(workdir, conf, "nats-tls")
    try:
        yield f"nats://127.0.0.1:{port}", passwords, ca, other_ca
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_tls_with_the_ca_works(tls_server: tuple[str, dict[str, str], pki.CertPair, pki.CertPair]) -> None:
    url, passwords, ca, _ = tls_server
    pw_file = Path(tempfile.mkdtemp()) / "pw"
    pw_file.write_text(passwords["apiserver"] + "\n")
    api = Bus(url, "test-tls-api", options_from_args("apiserver", str(pw_file), str(ca.cert)))
    admin = Bus(url, "test-tls-admin", BusOptions(user="admin", password=passwords["admin"], tls_ca=str(ca.cert)))
    await api.connect(timeout=5)
    await admin.connect(timeout=5)
    try:
        got: list[Message] = []

        async def handler(m: Message) -> None:
            got.append(m)
        await admin.subscribe("kube.>", handler)
        await admin.flush()
        await api.ensure_stream()
        await asyncio.wait_for(await api.js_publish("kube.events.core.pods.tls.a", b"{}", 1), 5)
        await eventually(lambda: [m.subject for m in got] == ["kube.events.core.pods.tls.a"], what="over TLS")
    finally:
        await api.close()
        await admin.close()
        shutil.rmtree(pw_file.parent, ignore_errors=True)


@pytest.mark.parametrize("which", ["no CA", "another CA"])
async def test_tls_without_the_right_ca_fails(which: str,
                                              tls_server: tuple[str, dict[str, str], pki.CertPair, pki.CertPair]) -> None:
    url, passwords, _, other_ca = tls_server
    ca_file = str(other_ca.cert) if which == "another CA" else None
    b = Bus(url, "test-tls-bad", BusOptions(user="admin", password=passwords["admin"], tls_ca=ca_file))
    t = time.monotonic()
    with pytest.raises(ConnectionError, match="certificate"):
        await b.connect(timeout=10)
    assert time.monotonic() - t < 5
    assert not b.connected
