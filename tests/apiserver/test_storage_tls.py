"""The etcd gateway over TLS against a real etcd that requires client certificates
(`--client-cert-auth`): the cluster CA's client certificate works, no certificate or one from
another CA is refused quickly and clearly, and plain http:// stays as it was."""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.apiserver.storage import Store, StoreError
from shared import pki
from tests.servers import Proc, free_port, wait_for


@dataclass
class TlsEtcd:
    url: str
    ca: pki.CertPair
    client: pki.CertPair
    other_ca: pki.CertPair
    other_client: pki.CertPair


@pytest.fixture(scope="module")
def etcd() -> Iterator[TlsEtcd]:
    workdir = Path(tempfile.mkdtemp(prefix="kubenats-etcdtls-"))
    ca = pki.ensure_ca(workdir / "pki")
    server = pki.ensure_cert(workdir / "pki", ca, "etcd-server", cn="etcd", server=True,
                             dns=["localhost"], ips=["127.0.0.1"])
    client = pki.ensure_cert(workdir / "pki", ca, "apiserver-etcd-client", cn="kube-apiserver-etcd-client", client=True)
    other_ca = pki.ensure_ca(workdir / "other", name="other-ca")
    other_client = pki.ensure_cert(workdir / "other", other_ca, "intruder", cn="kube-apiserver-etcd-client", client=True)
    port, peer = free_port(), free_port()
    url = f"https://127.0.0.1:{port}"
    proc = Proc("etcd-tls", [
        shutil.which("etcd") or "/usr/bin/etcd", "--name", "tls", "--data-dir", str(workdir / "etcd"),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"tls=http://127.0.0.1:{peer}", "--log-level", "warn",
        "--client-cert-auth", "--trusted-ca-file", str(ca.cert),
        "--cert-file", str(server.cert), "--key-file", str(server.key),
    ], workdir / "etcd.log", env={**os.environ, "ETCD_UNSUPPORTED_ARCH": os.environ.get("ETCD_UNSUPPORTED_ARCH", "")})
    proc.start()
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    ctx.load_cert_chain(str(client.cert), str(client.key))

    def healthy() -> bool:
        if not proc.alive():
            raise RuntimeError(f"etcd exited:\n{proc.tail()}")
        return httpx.get(url + "/health", verify=ctx, timeout=1).status_code == 200
    try:
        wait_for(healthy, 30, "etcd with TLS")
        yield TlsEtcd(url, ca, client, other_ca, other_client)
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_client_certificate_of_the_cluster_ca_works(etcd: TlsEtcd) -> None:
    store = Store([etcd.url], ca_file=str(etcd.ca.cert), cert_file=str(etcd.client.cert), key_file=str(etcd.client.key))
    await store.open()
    try:
        rev = await store.create("/registry/configmaps/tls/a", b'{"x":1}')
        kv = await store.get("/registry/configmaps/tls/a")
        assert kv is not None and kv.value == b'{"x":1}' and kv.mod_revision == rev
        rev2 = await store.update("/registry/configmaps/tls/a", b'{"x":2}', rev)
        kvs, read_rev, _ = await store.list("/registry/configmaps/tls/")
        assert [k.value for k in kvs] == [b'{"x":2}'] and read_rev >= rev2
        # the watch stream runs over the same TLS channel
        async for batch in store.watch("/registry/configmaps/tls/", rev):
            assert batch[0].revision == rev
            break
        assert await store.healthy()
    finally:
        await store.close()


@pytest.mark.parametrize("which", ["no client certificate", "certificate of another CA", "server not trusted"])
async def test_refused_quickly_and_clearly(which: str, etcd: TlsEtcd) -> None:
    if which == "no client certificate":
        store = Store([etcd.url], ca_file=str(etcd.ca.cert))
    elif which == "certificate of another CA":
        store = Store([etcd.url], ca_file=str(etcd.ca.cert), cert_file=str(etcd.other_client.cert),
                      key_file=str(etcd.other_client.key))
    else:  # the client does not trust etcd's serving certificate
        store = Store([etcd.url], ca_file=str(etcd.other_ca.cert), cert_file=str(etcd.client.cert),
                      key_file=str(etcd.client.key))
    await store.open()
    try:
        t = time.monotonic()
        with pytest.raises(StoreError) as e:
            await store.create("/registry/configmaps/tls/intruder", b"{}")
        assert time.monotonic() - t < 10  # an answer, not a hang (the call's own deadline is 10 s)
        text = str(e.value)
        assert "UNAVAILABLE" in text and "--etcd-certfile" in text, text
        assert not await store.healthy()
    finally:
        await store.close()


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mix"):
        Store(["https://127.0.0.1:2379", "http://127.0.0.1:2380"])
    with pytest.raises(ValueError, match="go together"):
        Store(["https://127.0.0.1:2379"], cert_file="/x.crt")


async def test_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(["https://127.0.0.1:1"], ca_file=str(tmp_path / "nope.crt"))
    with pytest.raises(StoreError, match=r"cannot read the etcd CA file \(--etcd-cafile\)"):
        await store.open()


async def test_plain_http_is_unchanged() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="kubenats-etcdplain-"))
    from tests.servers import Etcd

    plain = Etcd(workdir)
    try:
        plain.start()
        store = Store([plain.url], ca_file="/ignored/for/http.crt")
        await store.open()
        try:
            rev = await store.create("/registry/configmaps/plain/a", b"{}")
            kv = await store.get("/registry/configmaps/plain/a")
            assert kv is not None and kv.mod_revision == rev
        finally:
            await store.close()
    finally:
        plain.stop()
        shutil.rmtree(workdir, ignore_errors=True)
