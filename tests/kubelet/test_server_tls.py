"""The kubelet server on HTTPS with client-certificate authentication (no Docker: `HollowRuntime`).

A real `KubeletServer` on a free loopback port, with a CA and certificates from `shared.pki` in a
temporary folder. Logs over HTTP and exec over WebSocket are each tried with: the API server's
kubelet-client certificate (allowed), an admin certificate of group system:masters (allowed), no
certificate (401), a node's certificate (403 Forbidden), a certificate of another CA (the TLS
handshake fails). Also: a server without a client CA refuses everyone, and `kubenats kubelet`'s
flag handling (self-signed serving certificate, `--authorized-client`).
"""

from __future__ import annotations

import argparse
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.typing import Subprotocol

from services.kubelet import main as kubelet_main
from services.kubelet.config import KubeletConfig
from services.kubelet.hollow import HollowRuntime
from services.kubelet.runtime_types import ContainerConfig
from services.kubelet.server import KubeletServer, ServerTLS
from shared import pki

PAUSE = "registry.k8s.io/pause:3.10"
IMAGE = "busybox:1.36"


@dataclass
class Pki:
    ca: pki.CertPair
    serving: pki.CertPair
    clients: dict[str, pki.CertPair]  # apiserver, admin, node, other-ca, plain (CN allowed, no group)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("kubelet-tls") / "pki"
    ca = pki.ensure_ca(folder)
    other = pki.ensure_ca(folder / "other", "another-ca")
    serving = pki.ensure_cert(folder, ca, "kubelet-serving", cn="system:node:tls", server=True,
                              dns=["localhost"], ips=["127.0.0.1"])
    clients = {
        "apiserver": pki.ensure_cert(folder, ca, "apiserver-kubelet-client", cn="kube-apiserver-kubelet-client",
                                     orgs=["system:masters"], client=True),
        "plain": pki.ensure_cert(folder, ca, "plain", cn="kube-apiserver-kubelet-client", client=True),
        "admin": pki.ensure_cert(folder, ca, "admin", cn="kubernetes-admin", orgs=["system:masters"], client=True),
        "node": pki.ensure_cert(folder, ca, "node", cn="system:node:x", orgs=["system:nodes"], client=True),
        "custom": pki.ensure_cert(folder, ca, "custom", cn="log-reader", client=True),
        "other-ca": pki.ensure_cert(folder / "other", other, "intruder", cn="kube-apiserver-kubelet-client",
                                    orgs=["system:masters"], client=True),
    }
    return Pki(ca, serving, clients)


@dataclass
class Served:
    server: KubeletServer
    uid: str
    certs: Pki

    def ctx(self, who: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca.cert))
        if who is not None:
            pair = self.certs.clients[who]
            ctx.load_cert_chain(str(pair.cert), str(pair.key))
        return ctx

    async def logs(self, who: str | None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.server.url, verify=self.ctx(who), trust_env=False, timeout=10) as c:
            return await c.get("/containerLogs/tls/p/app")

    def exec_url(self) -> str:
        return f"wss://127.0.0.1:{self.server.port}/exec/tls/p/{self.uid}/app?command=id&output=1"

    async def exec(self, who: str | None) -> tuple[str | None, bytes]:
        """(negotiated subprotocol, stdout) of an exec that was let in."""
        out = b""
        async with connect(self.exec_url(), ssl=self.ctx(who), subprotocols=[Subprotocol("v4.channel.k8s.io")],
                           proxy=None, open_timeout=10) as ws:
            async for m in ws:
                raw = m if isinstance(m, bytes) else m.encode()
                if raw[:1] == b"\x01":
                    out += raw[1:]
            return ws.subprotocol, out

    async def exec_refused(self, who: str | None) -> tuple[int, dict[str, object]]:
        with pytest.raises(InvalidStatus) as info:
            await self.exec(who)
        response = info.value.response
        return response.status_code, json.loads(response.body or b"{}")


async def _serve(certs: Pki, tls: ServerTLS) -> AsyncIterator[Served]:
    rt = HollowRuntime(node_name=f"tls-{uuid.uuid4().hex[:6]}", images=[PAUSE, IMAGE],
                       exec_handler=lambda c, cmd: (0, b"uid=0(root)\n", b""))
    uid = str(uuid.uuid4())
    sandbox = await rt.run_sandbox(uid, "p", "tls", 0, PAUSE)
    cid = await rt.create_container(sandbox.id, ContainerConfig(name="app", image=IMAGE))
    await rt.start_container(cid)
    server = KubeletServer(rt, "tls", "127.0.0.1", 0, tls=tls)
    await server.start()
    try:
        yield Served(server, uid, certs)
    finally:
        await server.stop()


@pytest.fixture
async def served(certs: Pki) -> AsyncIterator[Served]:
    tls = ServerTLS(str(certs.serving.cert), str(certs.serving.key), str(certs.ca.cert))
    async for s in _serve(certs, tls):
        yield s


def _status(body: dict[str, object], code: int, reason: str) -> None:
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert (body["code"], body["reason"]) == (code, reason)


async def test_url_is_https(served: Served) -> None:
    assert served.server.url == f"https://127.0.0.1:{served.server.port}"


@pytest.mark.parametrize("who", ["apiserver", "plain", "admin"])
async def test_logs_allowed(served: Served, who: str) -> None:
    r = await served.logs(who)
    assert (r.status_code, r.text) == (200, "hollow container running\n")


async def test_logs_without_certificate_401(served: Served) -> None:
    r = await served.logs(None)
    assert r.status_code == 401
    _status(r.json(), 401, "Unauthorized")


async def test_logs_node_certificate_403(served: Served) -> None:
    r = await served.logs("node")
    assert r.status_code == 403
    body = r.json()
    _status(body, 403, "Forbidden")
    assert "user=system:node:x" in str(body["message"])


async def test_other_ca_fails_the_handshake(served: Served) -> None:
    with pytest.raises(httpx.TransportError):  # TLS 1.3: the alert arrives with the first read
        await served.logs("other-ca")
    ctx = served.ctx("other-ca")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2: the handshake itself fails
    async with httpx.AsyncClient(base_url=served.server.url, verify=ctx, trust_env=False, timeout=10) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get("/containerLogs/tls/p/app")


async def test_healthz_needs_a_certificate_too(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.server.url, verify=served.ctx(None), trust_env=False) as c:
        assert (await c.get("/healthz")).status_code == 401
    async with httpx.AsyncClient(base_url=served.server.url, verify=served.ctx("apiserver"), trust_env=False) as c:
        r = await c.get("/healthz")
    assert (r.status_code, r.text) == (200, "ok")


async def test_plain_http_is_not_served(served: Served) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as c:
        with pytest.raises(httpx.TransportError):
            await c.get(f"http://127.0.0.1:{served.server.port}/containerLogs/tls/p/app")


@pytest.mark.parametrize("who", ["apiserver", "admin"])
async def test_exec_allowed(served: Served, who: str) -> None:
    assert await served.exec(who) == ("v4.channel.k8s.io", b"uid=0(root)\n")


async def test_exec_without_certificate_401(served: Served) -> None:
    code, body = await served.exec_refused(None)
    assert code == 401
    _status(body, 401, "Unauthorized")


async def test_exec_node_certificate_403(served: Served) -> None:
    code, body = await served.exec_refused("node")
    assert code == 403
    _status(body, 403, "Forbidden")


async def test_exec_other_ca_fails(served: Served) -> None:
    with pytest.raises((ssl.SSLError, OSError, InvalidMessage)):  # the TLS alert ends it: no HTTP response
        await served.exec("other-ca")


async def test_exec_without_upgrade_is_checked_first(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.server.url, verify=served.ctx(None), trust_env=False) as c:
        assert (await c.post(f"/exec/tls/p/{served.uid}/app?command=id")).status_code == 401


async def test_no_client_ca_refuses_everyone(certs: Pki) -> None:
    tls = ServerTLS(str(certs.serving.cert), str(certs.serving.key), None)
    async for s in _serve(certs, tls):
        for who in ("apiserver", "admin", None):
            assert (await s.logs(who)).status_code == 401
        code, _ = await s.exec_refused("apiserver")
        assert code == 401


async def test_authorized_clients(certs: Pki) -> None:
    tls = ServerTLS(str(certs.serving.cert), str(certs.serving.key), str(certs.ca.cert),
                    authorized_clients=frozenset({"log-reader"}))
    async for s in _serve(certs, tls):
        assert (await s.logs("custom")).status_code == 200
        assert (await s.logs("plain")).status_code == 403  # the default CN is no longer listed
        assert (await s.logs("admin")).status_code == 200  # system:masters always is
        code, _ = await s.exec_refused("plain")
        assert code == 403


# ---- `kubenats kubelet` flags ------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    kubelet_main.add_arguments(p)
    return p.parse_args(list(argv))


def test_authorized_client_flag() -> None:
    assert kubelet_main.authorized_clients(_args().authorized_client) == {"kube-apiserver-kubelet-client"}
    args = _args("--authorized-client", "a,b", "--authorized-client", " c ")
    assert kubelet_main.authorized_clients(args.authorized_client) == {"a", "b", "c"}


def test_tls_flags(certs: Pki, tmp_path: Path) -> None:
    cfg = KubeletConfig(node_name="n1", root_dir=tmp_path / "root", hollow=True)
    tls = kubelet_main.server_tls(_args("--tls-cert-file", str(certs.serving.cert), "--tls-private-key-file",
                                        str(certs.serving.key), "--client-ca-file", str(certs.ca.cert),
                                        "--authorized-client", "x"), cfg)
    assert tls == ServerTLS(str(certs.serving.cert), str(certs.serving.key), str(certs.ca.cert), frozenset({"x"}))
    with pytest.raises(ValueError, match="must be given together"):
        kubelet_main.server_tls(_args("--tls-cert-file", str(certs.serving.cert)), cfg)
    with pytest.raises(ValueError, match=r"--client-ca-file /nonexistent/ca\.crt does not exist"):
        kubelet_main.server_tls(_args("--client-ca-file", "/nonexistent/ca.crt"), cfg)
    with pytest.raises(ValueError, match="cannot use the kubelet server's TLS files"):
        kubelet_main.server_tls(_args("--tls-cert-file", str(certs.ca.key), "--tls-private-key-file",
                                      str(certs.serving.key)), cfg)


def _self_signed(certs: Pki, root: Path) -> ServerTLS:
    """server_tls without --tls-cert-file, twice: the certificate is created once, then kept."""
    cfg = KubeletConfig(node_name="n1", root_dir=root, hollow=True)
    tls = kubelet_main.server_tls(_args("--client-ca-file", str(certs.ca.cert)), cfg)
    assert tls.cert_file == str(root / "pki" / "kubelet.crt")
    first = Path(tls.cert_file).read_bytes()
    assert pki.subject_of(first) == ("n1", ())
    assert kubelet_main.server_tls(_args("--client-ca-file", str(certs.ca.cert)), cfg) == tls
    assert Path(tls.cert_file).read_bytes() == first
    return tls


async def test_self_signed_serving_certificate(certs: Pki, tmp_path: Path) -> None:
    """Without --tls-cert-file: a certificate of the kubelet's own CA in <root-dir>/pki."""
    tls = _self_signed(certs, tmp_path / "root")
    async for s in _serve(certs, tls):
        ctx = ssl.create_default_context(cafile=str(tmp_path / "root" / "pki" / "ca.crt"))
        pair = certs.clients["apiserver"]
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
        async with httpx.AsyncClient(base_url=s.server.url, verify=ctx, trust_env=False) as c:
            assert (await c.get("/containerLogs/tls/p/app")).status_code == 200
        with pytest.raises(httpx.ConnectError):  # the cluster CA does not vouch for it
            await s.logs("apiserver")


async def test_plain_healthz_port() -> None:
    from services.kubelet.server import serve_healthz

    server = await serve_healthz("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as c:
            r = await c.get("/healthz")
            assert (r.status_code, r.text) == (200, "ok")
            assert (await c.get("/containerLogs/a/b/c")).status_code == 404
    finally:
        server.close()
