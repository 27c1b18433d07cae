"""The cluster PKI with real keys and certificates: kept while right, re-issued when not, usable for
mutual TLS; and the Secret encryption box."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from shared.kubeconfig import load_client_config
from shared.pki import (
    CertPair,
    SecretBox,
    SecretBoxError,
    ensure_ca,
    ensure_cert,
    ensure_cluster_pki,
    issue_pem,
    random_token,
    sans_of,
    subject_of,
)

SERVER = "https://127.0.0.1:6443"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(pair: CertPair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.cert.read_bytes())


def eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def snapshot(*folders: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes())
            for folder in folders for p in sorted(folder.iterdir())}


# --- CA and certificates ----------------------------------------------------------------------


def test_ca_created_once_and_kept(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    ca = ensure_ca(pki)
    assert ca == CertPair(cert=pki / "ca.crt", key=pki / "ca.key")
    first = (ca.cert.read_bytes(), ca.key.read_bytes())
    assert ensure_ca(pki) == ca
    assert (ca.cert.read_bytes(), ca.key.read_bytes()) == first
    assert mode(ca.key) == 0o600 and mode(pki) == 0o700
    cert = load(ca)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert subject_of(first[0]) == ("kubenats-ca", ())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3650


def test_broken_ca_is_replaced(tmp_path: Path) -> None:
    ca = ensure_ca(tmp_path)
    old = ca.cert.read_bytes()
    ca.key.write_bytes(b"not a key")
    ensure_ca(tmp_path)
    assert ca.cert.read_bytes() != old
    load(ca).verify_directly_issued_by(load(ca))


def test_cert_subject_sans_usage_and_mode(tmp_path: Path) -> None:
    ca = ensure_ca(tmp_path)
    pair = ensure_cert(tmp_path, ca, "both", cn="system:node:n1", orgs=("system:nodes", "extra"),
                       client=True, server=True, dns=("n1", "localhost"), ips=("127.0.0.1", "::1"))
    assert pair == CertPair(cert=tmp_path / "both.crt", key=tmp_path / "both.key")
    pem = pair.cert.read_bytes()
    assert subject_of(pem) == ("system:node:n1", ("system:nodes", "extra"))
    assert sans_of(pem) == (("n1", "localhost"), ("127.0.0.1", "::1"))
    cert = load(pair)
    assert eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(load(ca))
    assert mode(pair.key) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(("client", "server", "usages"), [
    (True, False, {ExtendedKeyUsageOID.CLIENT_AUTH}),
    (False, True, {ExtendedKeyUsageOID.SERVER_AUTH}),
])
def test_extended_key_usage(tmp_path: Path, client: bool, server: bool, usages: set[Any]) -> None:
    ca = ensure_ca(tmp_path)
    assert eku(load(ensure_cert(tmp_path, ca, "c", cn="x", client=client, server=server))) == usages


BASE: dict[str, Any] = {"cn": "svc", "orgs": ("g1",), "server": True, "dns": ("a.example",), "ips": ("10.0.0.1", "fd00::1")}


@pytest.mark.parametrize(("case", "second", "other_ca", "reissued"), [
    ("unchanged", {}, False, False),
    ("fewer SANs requested", {"dns": (), "ips": ()}, False, False),
    ("IPv6 written differently", {"ips": ("fd00:0:0::0001",)}, False, False),
    ("DNS SAN added", {"dns": ("a.example", "b.example")}, False, True),
    ("IP SAN added", {"ips": ("10.0.0.1", "::1")}, False, True),
    ("CN changed", {"cn": "other"}, False, True),
    ("groups changed", {"orgs": ("g1", "g2")}, False, True),
    ("client usage added", {"client": True}, False, True),
    ("signed by another CA", {}, True, True),
])
def test_cert_kept_or_reissued(tmp_path: Path, case: str, second: dict[str, Any], other_ca: bool,
                               reissued: bool) -> None:
    ca = ensure_ca(tmp_path / "ca1")
    pki = tmp_path / "pki"
    first = ensure_cert(pki, ca, "svc", **BASE)
    before = (first.cert.read_bytes(), first.key.read_bytes())
    signer = ensure_ca(tmp_path / "ca2") if other_ca else ca
    again = ensure_cert(pki, signer, "svc", **{**BASE, **second})
    assert again == first
    after = (again.cert.read_bytes(), again.key.read_bytes())
    assert (after != before) == reissued, case
    load(again).verify_directly_issued_by(load(signer))


@pytest.mark.parametrize(("first_days", "second_days", "reissued"), [
    (10, 365, True),  # expires within 30 days
    (60, 365, False),
    (10, 10, False),  # short-lived on purpose: renewed at half its life, not on every call
])
def test_cert_renewed_near_expiry(tmp_path: Path, first_days: int, second_days: int, reissued: bool) -> None:
    ca = ensure_ca(tmp_path)
    pair = ensure_cert(tmp_path, ca, "short", cn="x", client=True, days=first_days)
    before = pair.cert.read_bytes()
    ensure_cert(tmp_path, ca, "short", cn="x", client=True, days=second_days)
    assert (pair.cert.read_bytes() != before) == reissued
    left = load(pair).not_valid_after_utc - load(pair).not_valid_before_utc
    assert left.days == (second_days if reissued else first_days)


@pytest.mark.parametrize("damage", ["missing key", "foreign key", "garbage cert"])
def test_damaged_cert_is_reissued(tmp_path: Path, damage: str) -> None:
    ca = ensure_ca(tmp_path)
    pair = ensure_cert(tmp_path, ca, "c", cn="x", client=True)
    other = ensure_cert(tmp_path, ca, "other", cn="x", client=True)
    if damage == "missing key":
        pair.key.unlink()
    elif damage == "foreign key":
        pair.key.write_bytes(other.key.read_bytes())
    else:
        pair.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    ensure_cert(tmp_path, ca, "c", cn="x", client=True)
    cert_pem, key_pem = pair.cert.read_bytes(), pair.key.read_bytes()
    assert key_pem != other.key.read_bytes()
    ctx = ssl.create_default_context()
    ctx.load_cert_chain(pair.cert, pair.key)  # raises when the key does not match
    assert subject_of(cert_pem) == ("x", ())


def test_issue_pem_in_memory(tmp_path: Path) -> None:
    ca = ensure_ca(tmp_path)
    cert_pem, key_pem = issue_pem(ca, cn="tool", orgs=("system:masters",), client=True, dns=("h",))
    assert cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert subject_of(cert_pem) == ("tool", ("system:masters",))
    assert sans_of(cert_pem) == (("h",), ())
    x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(load(ca))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["ca.crt", "ca.key"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"days": 0}, "at least one day"),
    ({"ips": ("not-an-ip",)}, "does not appear to be an IPv4 or IPv6 address"),
])
def test_bad_requests(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    ca = ensure_ca(tmp_path)
    with pytest.raises(ValueError, match=message):
        ensure_cert(tmp_path, ca, "c", cn="x", **kwargs)


def test_not_a_ca(tmp_path: Path) -> None:
    ca = ensure_ca(tmp_path)
    leaf = ensure_cert(tmp_path, ca, "leaf", cn="x", client=True)
    with pytest.raises(ValueError, match="not a usable CA"):
        ensure_cert(tmp_path, leaf, "c", cn="y")


def test_random_token() -> None:
    tokens = {random_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) == 32 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)
    assert len(random_token(48)) == 64


# --- the cluster ------------------------------------------------------------------------------

IDENTITIES = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "scheduler": ("system:kube-scheduler", ()),
    "controller-manager": ("system:kube-controller-manager", ()),
    "proxy": ("system:kube-proxy", ("system:node-proxier",)),
    "kubelet-n1": ("system:node:n1", ("system:nodes",)),
    "kubelet-n2": ("system:node:n2", ("system:nodes",)),
}


def test_cluster_pki_layout(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pki = ensure_cluster_pki(data, hosts=("api.example",), ips=("192.0.2.10",), nodes=("n1", "n2"),
                             server_url=SERVER)
    d = data / "pki"
    assert pki.ca == CertPair(d / "ca.crt", d / "ca.key")
    assert pki.apiserver == CertPair(d / "apiserver.crt", d / "apiserver.key")
    assert mode(d) == 0o700 and mode(data / "kubeconfigs") == 0o700
    assert all(mode(p) == 0o600 for p in d.glob("*.key"))
    assert sorted(pki.clients) == sorted(pki.kubeconfigs) == sorted(IDENTITIES)
    hostname = socket.gethostname().lower()

    dns, ips = sans_of(pki.apiserver.cert.read_bytes())
    assert set(dns) == {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                        "kubernetes.default.svc.cluster.local", hostname, "api.example"}
    assert set(ips) == {"127.0.0.1", "::1", "10.0.0.1", "192.0.2.10"}
    assert subject_of(pki.apiserver.cert.read_bytes()) == ("kube-apiserver", ())
    assert eku(load(pki.apiserver)) == {ExtendedKeyUsageOID.SERVER_AUTH}

    assert subject_of(pki.kubelet_client.cert.read_bytes()) == ("kube-apiserver-kubelet-client",
                                                                 ("system:masters",))
    assert subject_of(pki.etcd_client.cert.read_bytes()) == ("kube-apiserver-etcd-client", ())
    for pair in (pki.kubelet_client, pki.etcd_client, *pki.clients.values()):
        assert eku(load(pair)) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    for pair in (pki.etcd_server, pki.nats_server):
        assert eku(load(pair)) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
        dns, ips = sans_of(pair.cert.read_bytes())
        assert set(dns) == {"localhost", hostname, "api.example"}
        assert set(ips) == {"127.0.0.1", "192.0.2.10"}

    assert sorted(pki.kubelet_serving) == ["n1", "n2"]
    serving = pki.kubelet_serving["n1"]
    assert serving == CertPair(d / "kubelet-serving-n1.crt", d / "kubelet-serving-n1.key")
    assert subject_of(serving.cert.read_bytes()) == ("system:node:n1", ())
    assert eku(load(serving)) == {ExtendedKeyUsageOID.SERVER_AUTH}
    dns, ips = sans_of(serving.cert.read_bytes())
    assert set(dns) == {"n1", "localhost", "api.example"}
    assert set(ips) == {"127.0.0.1", "192.0.2.10"}

    ca = load(pki.ca)
    for identity, subject in IDENTITIES.items():
        pair = pki.clients[identity]
        assert pair == CertPair(d / f"{identity}.crt", d / f"{identity}.key")
        assert subject_of(pair.cert.read_bytes()) == subject
        load(pair).verify_directly_issued_by(ca)
        path = pki.kubeconfigs[identity]
        assert path == data / "kubeconfigs" / f"{identity}.yaml" and mode(path) == 0o600
        cfg = load_client_config(str(path))
        assert cfg.server == SERVER and cfg.token is None
        assert cfg.ca_file == str(pki.ca.cert.resolve())
        assert cfg.cert == (str(pair.cert.resolve()), str(pair.key.resolve()))
        assert Path(cfg.ca_file).is_absolute()


def test_cluster_pki_idempotent_and_incremental(tmp_path: Path) -> None:
    pki_dir, kc_dir = tmp_path / "pki", tmp_path / "kubeconfigs"
    first = ensure_cluster_pki(tmp_path, nodes=("n1",), server_url=SERVER)
    before = snapshot(pki_dir, kc_dir)
    assert ensure_cluster_pki(tmp_path, nodes=("n1",), server_url=SERVER) == first
    assert snapshot(pki_dir, kc_dir) == before

    # a new node adds its files and touches nothing else
    second = ensure_cluster_pki(tmp_path, nodes=("n1", "n2"), server_url=SERVER)
    after = snapshot(pki_dir, kc_dir)
    added = set(after) - set(before)
    assert added == {str(pki_dir / f"{n}.{ext}") for n in ("kubelet-n2", "kubelet-serving-n2")
                     for ext in ("crt", "key")} | {str(kc_dir / "kubelet-n2.yaml")}
    assert {k: after[k] for k in before} == before
    assert second.clients["kubelet-n2"].cert.exists()

    # a new SAN re-issues the serving certificates only
    ensure_cluster_pki(tmp_path, nodes=("n1", "n2"), hosts=("new.example",), server_url=SERVER)
    final = snapshot(pki_dir, kc_dir)
    changed = {Path(k).name for k in after if final[k] != after[k]}
    assert changed == {f"{n}.{ext}" for n in ("apiserver", "etcd-server", "nats-server",
                                               "kubelet-serving-n1", "kubelet-serving-n2")
                       for ext in ("crt", "key")}

    # a new server URL rewrites the kubeconfigs, not the certificates
    ensure_cluster_pki(tmp_path, nodes=("n1", "n2"), hosts=("new.example",), server_url="https://h:1")
    moved = snapshot(pki_dir, kc_dir)
    assert {Path(k).name for k in final if moved[k] != final[k]} == {f"{i}.yaml" for i in
                                                                      [*IDENTITIES]}
    assert load_client_config(str(kc_dir / "admin.yaml")).server == "https://h:1"


def test_cluster_pki_rejects_bad_node_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid node name"):
        ensure_cluster_pki(tmp_path, nodes=("../escape",), server_url=SERVER)


# --- mutual TLS -------------------------------------------------------------------------------


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[Any, bytes]:
    """One connection on 127.0.0.1: (the server's view: peer certificate or exception, client read)."""
    result: list[Any] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    result.append(tls.getpeercert())
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as e:
                result.append(e)
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        got = b""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            try:
                with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    got = tls.recv(2)
            except (ssl.SSLError, OSError):
                got = b""
        thread.join(10)
    return result[0], got


def contexts(pki_ca: CertPair, server: CertPair, client: CertPair) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki_ca.cert))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_cert_chain(server.cert, server.key)
    client_ctx = ssl.create_default_context(cafile=str(pki_ca.cert))
    client_ctx.load_cert_chain(client.cert, client.key)
    return server_ctx, client_ctx


def test_mutual_tls_accepts_cluster_clients_only(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path / "cluster", server_url=SERVER)
    server_ctx, client_ctx = contexts(pki.ca, pki.apiserver, pki.clients["admin"])
    peer, got = handshake(server_ctx, client_ctx)
    assert got == b"ok"
    assert dict(x[0] for x in peer["subject"]) == {"commonName": "kubernetes-admin",
                                                   "organizationName": "system:masters"}

    foreign_ca = ensure_ca(tmp_path / "foreign")
    foreign = ensure_cert(tmp_path / "foreign", foreign_ca, "admin", cn="kubernetes-admin",
                          orgs=("system:masters",), client=True)
    _, foreign_client_ctx = contexts(pki.ca, pki.apiserver, foreign)
    peer, got = handshake(server_ctx, foreign_client_ctx)
    assert isinstance(peer, ssl.SSLError) and "certificate verify failed" in str(peer)
    assert got == b""


# --- Secret encryption ------------------------------------------------------------------------

KEY1, KEY2 = os.urandom(32), os.urandom(32)


def test_secretbox_round_trip() -> None:
    box = SecretBox([("key1", KEY1)])
    sealed = box.seal(b"s3cret")
    assert sealed.startswith(b"k8s:enc:aesgcm:v1:key1:")
    assert b"s3cret" not in sealed
    assert len(sealed) == len(SecretBox.PREFIX) + len(b"key1:") + 12 + len(b"s3cret") + 16
    assert box.open(sealed) == b"s3cret"
    assert box.seal(b"s3cret") != sealed  # a fresh nonce each time
    assert box.open(box.seal(b"")) == b""
    assert box.primary == "key1"


def test_secretbox_plaintext_passes_through() -> None:
    assert SecretBox([("key1", KEY1)]).open(b'{"kind":"Secret"}') == b'{"kind":"Secret"}'


def test_secretbox_rotation() -> None:
    old = SecretBox([("key1", KEY1)])
    rotated = SecretBox([("key2", KEY2), ("key1", KEY1)])
    sealed_old = old.seal(b"before")
    assert rotated.open(sealed_old) == b"before"
    sealed_new = rotated.seal(b"after")
    assert sealed_new.startswith(SecretBox.PREFIX + b"key2:")
    assert rotated.open(sealed_new) == b"after"
    with pytest.raises(SecretBoxError, match="unknown encryption key 'key2'"):
        old.open(sealed_new)


def flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


@pytest.mark.parametrize(("damage", "message"), [
    (flip_last, "failed authentication"),
    (lambda d: d[:30], "truncated or malformed"),
    (lambda d: SecretBox.PREFIX + b"nocolon", "truncated or malformed"),
    (lambda d: d.replace(b"key1:", b"key9:", 1), "unknown encryption key 'key9'"),
])
def test_secretbox_rejects_damaged_data(damage: Any, message: str) -> None:
    box = SecretBox([("key1", KEY1)])
    with pytest.raises(SecretBoxError, match=message):
        box.open(damage(box.seal(b"payload")))


def test_secretbox_same_name_other_key_fails_authentication() -> None:
    sealed = SecretBox([("key1", KEY1)]).seal(b"x")
    with pytest.raises(SecretBoxError, match="failed authentication"):
        SecretBox([("key1", KEY2)]).open(sealed)


def test_secretbox_context_is_authenticated() -> None:
    box = SecretBox([("key1", KEY1)])
    sealed = box.seal(b"x", context=b"/registry/secrets/default/a")
    assert box.open(sealed, context=b"/registry/secrets/default/a") == b"x"
    with pytest.raises(SecretBoxError, match="failed authentication"):
        box.open(sealed, context=b"/registry/secrets/default/b")


@pytest.mark.parametrize(("keys", "message"), [
    ([], "at least one key"),
    ([("key1", b"short")], "must be 16, 24 or 32 bytes"),
    ([("a:b", KEY1)], "invalid encryption key name"),
    ([("", KEY1)], "invalid encryption key name"),
    ([("key1", KEY1), ("key1", KEY2)], "duplicate"),
])
def test_secretbox_bad_keys(keys: list[tuple[str, bytes]], message: str) -> None:
    with pytest.raises(SecretBoxError, match=message):
        SecretBox(keys)


def test_secretbox_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "encryption.key"
    box = SecretBox.load_or_create(path)
    assert mode(path) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("key1:")
    sealed = box.seal(b"kept")
    content = path.read_bytes()
    again = SecretBox.load_or_create(path)
    assert path.read_bytes() == content
    assert again.open(sealed) == b"kept"

    # rotation: a new key line goes first; old data still opens
    path.write_text(f"# rotated\nkey2:{base64.b64encode(KEY2).decode()}\n\n{content.decode()}")
    rotated = SecretBox.load_or_create(path)
    assert rotated.primary == "key2"
    assert rotated.open(sealed) == b"kept"


@pytest.mark.parametrize(("text", "message"), [
    ("", "no encryption keys"),
    ("# only a comment\n", "no encryption keys"),
    ("key1\n", r":1: expected 'name:base64key'"),
    ("key1:AAAA\nkey2:not base64!\n", r":2: expected 'name:base64key'"),
    ("key1:AAAA\n", "must be 16, 24 or 32 bytes"),
])
def test_secretbox_bad_key_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "enc.key"
    path.write_text(text)
    with pytest.raises(SecretBoxError, match=message):
        SecretBox.load_or_create(path)
