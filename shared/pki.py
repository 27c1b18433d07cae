"""The cluster PKI: a CA, the certificates every component needs, kubeconfigs that carry them, and
the AES-GCM box that encrypts Secrets at rest. THE module that imports `cryptography`.

TLS between the components and x509 client-certificate authentication (the certificate's CN is
the user name, its O values the groups, as in Kubernetes) need a CA and certificates that exist
before anything starts and survive restarts. `ensure_*` functions are idempotent: a file is kept
while it is still right (signed by the CA, not near expiry, same subject, every requested SAN) and
re-issued otherwise; every file is written to a temporary name and renamed into place, keys with
mode 0600 in folders with mode 0700. Keys are ECDSA P-256, so a thousand node certificates take
seconds.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import re
import secrets
import socket
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.kubeconfig import write_kubeconfig

CA_DAYS = 3650
RENEW_BEFORE = dt.timedelta(days=30)
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CertPair:
    cert: Path  # PEM certificate
    key: Path  # PEM private key, file mode 0600


# --- files ------------------------------------------------------------------------------------


def _private_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int, *, durable: bool = False) -> None:
    """Temp file in the same folder, then rename: readers see the old file or the new one.

    Only the CA is fsynced (`durable`): a leaf certificate lost in a crash reads as missing or
    broken and is re-issued, and a thousand fsyncs would make node certificates slow."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(pki_dir: Path) -> Iterator[None]:
    """One writer per PKI folder at a time (`kubenats up` and a component starting together)."""
    _private_dir(pki_dir)
    fd = os.open(pki_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _keep_private(key: Path) -> None:
    if stat.S_IMODE(key.stat().st_mode) != 0o600:
        os.chmod(key, 0o600)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


# --- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Authority:
    """A CA loaded into memory, so issuing many certificates reads its files once."""

    pair: CertPair
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class _Request:
    cn: str
    orgs: tuple[str, ...]
    client: bool
    server: bool
    dns: tuple[str, ...]
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    days: int


def _request(cn: str, orgs: Sequence[str], client: bool, server: bool, dns: Sequence[str],
             ips: Sequence[str], days: int) -> _Request:
    if days < 1:
        raise ValueError(f"certificate lifetime must be at least one day, got {days}")
    return _Request(cn=cn, orgs=tuple(orgs), client=client, server=server,
                    dns=tuple(dict.fromkeys(d.lower() for d in dns if d)),
                    ips=tuple(dict.fromkeys(ipaddress.ip_address(i) for i in ips if i)), days=days)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(cn: str, orgs: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    now = _now()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _new_ca(name: str) -> tuple[bytes, bytes]:
    key = _new_key()
    subject = _name(name)
    cert = (_builder(subject, subject, key.public_key(), CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(ca=True), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _sign(ca: _Authority, req: _Request) -> tuple[bytes, bytes]:
    key = _new_key()
    builder = (_builder(_name(req.cn, req.orgs), ca.cert.subject, key.public_key(), req.days)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_usage(ca=False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    usages = [u for u, on in ((ExtendedKeyUsageOID.CLIENT_AUTH, req.client),
                              (ExtendedKeyUsageOID.SERVER_AUTH, req.server)) if on]
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in req.dns]
    sans += [x509.IPAddress(i) for i in req.ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _load_pair(pair: CertPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and its key, or None when missing, unreadable or not belonging together."""
    cert_pem, key_pem = _read(pair.cert), _read(pair.key)
    if cert_pem is None or key_pem is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _store(pair: CertPair, cert_pem: bytes, key_pem: bytes, *, durable: bool = False) -> None:
    # a crash between the two renames leaves a key that does not match: re-issued next time
    _write_atomic(pair.key, key_pem, 0o600, durable=durable)
    _write_atomic(pair.cert, cert_pem, 0o644, durable=durable)


def _fresh(cert: x509.Certificate, lifetime: dt.timedelta) -> bool:
    """Valid now and not within the renewal window (30 days, less for short-lived certificates)."""
    now = _now()
    window = min(RENEW_BEFORE, lifetime / 2)
    return cert.not_valid_before_utc <= now + CLOCK_SKEW and cert.not_valid_after_utc - now > window


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _load_authority(pair: CertPair) -> _Authority:
    loaded = _load_pair(pair)
    if loaded is None or not _is_ca(loaded[0]):
        raise ValueError(f"{pair.cert}, {pair.key}: not a usable CA certificate and key")
    return _Authority(pair=pair, cert=loaded[0], key=loaded[1])


def _ensure_ca(pki_dir: Path, name: str) -> CertPair:
    pair = CertPair(cert=pki_dir / "ca.crt", key=pki_dir / "ca.key")
    loaded = _load_pair(pair)
    if loaded is None or not _is_ca(loaded[0]) or not _fresh(loaded[0], dt.timedelta(days=CA_DAYS)):
        _store(pair, *_new_ca(name), durable=True)
    else:
        _keep_private(pair.key)
    return pair


def ensure_ca(pki_dir: Path, name: str = "kubenats-ca") -> CertPair:
    """pki_dir/ca.crt + ca.key: created once (10 years), kept while present and valid."""
    with _locked(pki_dir):
        return _ensure_ca(pki_dir, name)


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def _signed_by(cert: x509.Certificate, ca: _Authority) -> bool:
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _satisfies(cert: x509.Certificate, ca: _Authority, req: _Request) -> bool:
    """Keep the certificate: same CA, fresh, same subject, every SAN and usage asked for."""
    if not _signed_by(cert, ca) or not _fresh(cert, dt.timedelta(days=req.days)):
        return False
    if _subject(cert) != (req.cn, req.orgs):
        return False
    dns, ips = _sans(cert)
    wanted_usages = {u for u, on in ((ExtendedKeyUsageOID.CLIENT_AUTH, req.client),
                                     (ExtendedKeyUsageOID.SERVER_AUTH, req.server)) if on}
    return (set(req.dns) <= {d.lower() for d in dns}
            and set(req.ips) <= {ipaddress.ip_address(i) for i in ips}
            and wanted_usages <= _eku(cert))


def _ensure(pki_dir: Path, ca: _Authority, name: str, req: _Request) -> CertPair:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid certificate file name {name!r}")
    pair = CertPair(cert=pki_dir / f"{name}.crt", key=pki_dir / f"{name}.key")
    loaded = _load_pair(pair)
    if loaded is None or not _satisfies(loaded[0], ca, req):
        _store(pair, *_sign(ca, req))
    else:
        _keep_private(pair.key)
    return pair


def ensure_cert(pki_dir: Path, ca: CertPair, name: str, *, cn: str, orgs: Sequence[str] = (),
                client: bool = False, server: bool = False, dns: Sequence[str] = (),
                ips: Sequence[str] = (), days: int = 365) -> CertPair:
    """pki_dir/<name>.crt + <name>.key signed by `ca`; kept while still right, else re-issued."""
    req = _request(cn, orgs, client, server, dns, ips, days)
    with _locked(pki_dir):
        return _ensure(pki_dir, _load_authority(ca), name, req)


def issue_pem(ca: CertPair, *, cn: str, orgs: Sequence[str] = (), client: bool = False,
              server: bool = False, dns: Sequence[str] = (), ips: Sequence[str] = (),
              days: int = 365) -> tuple[bytes, bytes]:
    """A new certificate and key in memory: (certificate PEM, key PEM)."""
    return _sign(_load_authority(ca), _request(cn, orgs, client, server, dns, ips, days))


def _subject(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cns[0].value) if cns else "", tuple(str(o.value) for o in orgs))


def _sans(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    return (tuple(san.get_values_for_type(x509.DNSName)),
            tuple(str(i) for i in san.get_values_for_type(x509.IPAddress)))


def subject_of(cert_pem: bytes) -> tuple[str, tuple[str, ...]]:
    """(CN, O values) of a PEM certificate: the user name and groups a client certificate carries."""
    return _subject(x509.load_pem_x509_certificate(cert_pem))


def sans_of(cert_pem: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IP addresses) of a PEM certificate's subjectAltName."""
    return _sans(x509.load_pem_x509_certificate(cert_pem))


def random_token(nbytes: int = 24) -> str:
    """A URL-safe random string for bearer tokens and NATS passwords."""
    return secrets.token_urlsafe(nbytes)


# --- Secret encryption at rest ----------------------------------------------------------------


class SecretBoxError(ValueError):
    """Sealed data that cannot be opened, or an unusable key file."""


class SecretBox:
    """AES-GCM encryption of Secret data at rest, like Kubernetes' EncryptionConfiguration aesgcm provider."""

    PREFIX = b"k8s:enc:aesgcm:v1:"
    NONCE = 12

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """[(key name, key)]: the first key encrypts, all of them decrypt (rotation)."""
        if not keys:
            raise SecretBoxError("SecretBox needs at least one key")
        self._keys: dict[bytes, AESGCM] = {}
        for name, key in keys:
            if not name or ":" in name or not name.isascii():
                raise SecretBoxError(f"invalid encryption key name {name!r}")
            if len(key) not in (16, 24, 32):
                raise SecretBoxError(f"encryption key {name!r} must be 16, 24 or 32 bytes, got {len(key)}")
            if name.encode() in self._keys:
                raise SecretBoxError(f"duplicate encryption key name {name!r}")
            self._keys[name.encode()] = AESGCM(key)
        self._primary = keys[0][0].encode()

    def seal(self, plaintext: bytes, *, context: bytes = b"") -> bytes:
        """PREFIX + key name + ":" + nonce + ciphertext and tag. `context` (e.g. the storage key)
        is authenticated, not stored: the same context must be given to `open`."""
        nonce = os.urandom(self.NONCE)
        sealed = self._keys[self._primary].encrypt(nonce, plaintext, context or None)
        return self.PREFIX + self._primary + b":" + nonce + sealed

    def open(self, data: bytes, *, context: bytes = b"") -> bytes:
        """The plaintext; data without PREFIX (stored before encryption was on) is returned as is."""
        if not data.startswith(self.PREFIX):
            return data
        name, sep, body = data[len(self.PREFIX):].partition(b":")
        if not sep or len(body) < self.NONCE + 16:
            raise SecretBoxError("sealed data is truncated or malformed")
        aead = self._keys.get(name)
        if aead is None:
            raise SecretBoxError(f"data is sealed with unknown encryption key {name.decode(errors='replace')!r}")
        try:
            return aead.decrypt(body[:self.NONCE], body[self.NONCE:], context or None)
        except InvalidTag:
            raise SecretBoxError(f"sealed data failed authentication with key {name.decode()!r} "
                                 "(tampered data or a different key of the same name)") from None

    @property
    def primary(self) -> str:
        """The name of the key that encrypts."""
        return self._primary.decode()

    @classmethod
    def load_or_create(cls, path: Path) -> SecretBox:
        """Key file, one "name:base64key" per line, first line encrypts (rotation: prepend a line).
        Created with one random key "key1" and mode 0600 when absent."""
        if not path.exists():
            _create_key_file(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise SecretBoxError(f"cannot read encryption key file {path}: {e}") from e
        return cls(_parse_keys(text, path))


def _create_key_file(path: Path) -> None:
    """Create-if-absent atomically: a concurrent creator's file wins and is read back."""
    _private_dir(path.parent)
    line = f"key1:{base64.b64encode(secrets.token_bytes(32)).decode()}\n".encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _parse_keys(text: str, path: Path) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, encoded = line.partition(":")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not sep or not name.strip() or not key:
            raise SecretBoxError(f"{path}:{number}: expected 'name:base64key'")
        keys.append((name.strip(), key))
    if not keys:
        raise SecretBoxError(f"{path}: no encryption keys")
    return keys


# --- the cluster ------------------------------------------------------------------------------

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_APISERVER_DNS = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                  "kubernetes.default.svc.cluster.local")
# identity -> (CN, O values) of the components' client certificates
_IDENTITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "scheduler": ("system:kube-scheduler", ()),
    "controller-manager": ("system:kube-controller-manager", ()),
    "proxy": ("system:kube-proxy", ("system:node-proxier",)),
}


@dataclass(frozen=True)
class ClusterPki:
    ca: CertPair
    apiserver: CertPair
    kubelet_client: CertPair
    etcd_client: CertPair
    etcd_server: CertPair
    nats_server: CertPair
    kubelet_serving: dict[str, CertPair]
    kubeconfigs: dict[str, Path]  # "admin", "scheduler", "controller-manager", "proxy", "kubelet-<node>"
    clients: dict[str, CertPair]  # same keys


def _identities(nodes: Sequence[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    identities = dict(_IDENTITIES)
    for node in nodes:
        identities[f"kubelet-{node}"] = (f"system:node:{node}", ("system:nodes",))
    return identities


def _check_nodes(nodes: Sequence[str]) -> None:
    for node in nodes:
        if len(node) > 253 or not _NODE_NAME.match(node):
            raise ValueError(f"invalid node name {node!r}: must be a DNS subdomain")


def ensure_cluster_pki(data_dir: Path, *, hosts: Sequence[str] = (), ips: Sequence[str] = (),
                       service_ip: str = "10.0.0.1", nodes: Sequence[str] = (),
                       server_url: str) -> ClusterPki:
    """Create or keep every certificate and kubeconfig a cluster needs under `data_dir`."""
    _check_nodes(nodes)
    pki, kubeconfigs = data_dir / "pki", data_dir / "kubeconfigs"
    for folder in (pki, kubeconfigs):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    with _locked(pki):
        ca = _load_authority(_ensure_ca(pki, "kubenats-ca"))
        certs = _cluster_certs(pki, ca, hosts=hosts, ips=ips, service_ip=service_ip, nodes=nodes)
        clients = {identity: _ensure(pki, ca, identity, _request(cn, orgs, True, False, (), (), 365))
                   for identity, (cn, orgs) in _identities(nodes).items()}
        paths = {identity: _kubeconfig(kubeconfigs / f"{identity}.yaml", server_url, identity, ca.pair, pair)
                 for identity, pair in clients.items()}
    return ClusterPki(ca=ca.pair, kubeconfigs=paths, clients=clients, **certs)


class _ClusterCerts(TypedDict):
    apiserver: CertPair
    kubelet_client: CertPair
    etcd_client: CertPair
    etcd_server: CertPair
    nats_server: CertPair
    kubelet_serving: dict[str, CertPair]


def _cluster_certs(pki: Path, ca: _Authority, *, hosts: Sequence[str], ips: Sequence[str],
                   service_ip: str, nodes: Sequence[str]) -> _ClusterCerts:
    """The servers' certificates and the apiserver's client certificates, as ClusterPki fields."""

    def ensure(name: str, cn: str, orgs: Sequence[str] = (), *, client: bool = False,
               server: bool = False, dns: Sequence[str] = (), ip: Sequence[str] = ()) -> CertPair:
        return _ensure(pki, ca, name, _request(cn, orgs, client, server, dns, ip, 365))

    local_dns = ("localhost", socket.gethostname(), *hosts)
    local_ips = ("127.0.0.1", *ips)
    return _ClusterCerts(
        apiserver=ensure("apiserver", "kube-apiserver", server=True,
                         dns=(*_APISERVER_DNS, socket.gethostname(), *hosts),
                         ip=("127.0.0.1", "::1", service_ip, *ips)),
        kubelet_client=ensure("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                              ("system:masters",), client=True),
        etcd_client=ensure("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True),
        etcd_server=ensure("etcd-server", "etcd-server", client=True, server=True,
                           dns=local_dns, ip=local_ips),
        nats_server=ensure("nats-server", "nats-server", client=True, server=True,
                           dns=local_dns, ip=local_ips),
        kubelet_serving={node: ensure(f"kubelet-serving-{node}", f"system:node:{node}", server=True,
                                      dns=(node, "localhost", *hosts), ip=local_ips)
                         for node in nodes},
    )


def _kubeconfig(path: Path, server_url: str, user: str, ca: CertPair, client: CertPair) -> Path:
    write_kubeconfig(path, server_url, user, ca_file=ca.cert.resolve(),
                     cert_file=client.cert.resolve(), key_file=client.key.resolve())
    return path
