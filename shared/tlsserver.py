"""HTTPS servers on uvicorn that can see the caller's client certificate (apiserver, kubelet).

uvicorn terminates TLS but does not put the peer certificate in the ASGI scope. The protocol
classes here add it as the ASGI TLS extension (`scope["extensions"]["tls"]["client_cert"]`, in
`ssl.SSLSocket.getpeercert()` form: a dict for a certificate the CA verified, None or {} for none),
for HTTP requests and WebSocket upgrades alike, so an app authenticates the caller from the scope
whatever the connection carried. HTTP is parsed by httptools (C, uvicorn's fastest protocol; the
pure-Python h11 protocol cost ~8% of the apiserver's CPU at scale). Use them together:

    ctx = server_context(cert, key, client_ca)
    uvicorn.Config(app, **uvicorn_options(ctx), ...)
    ...
    subject = client_subject(scope)   # (CN, O values) or None

With a client CA, client certificates are optional (`CERT_OPTIONAL`: the app answers 401 itself,
so it can say why) but a presented certificate must be signed by that CA, or the TLS handshake
fails, as with Kubernetes' `--client-ca-file`. `require_client_cert=True` makes the handshake
itself refuse callers without one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

PeerCert = dict[str, Any]


def server_context(cert_file: str, key_file: str, client_ca_file: str | None = None, *,
                   require_client_cert: bool = False) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving `cert_file`; with `client_ca_file`, client certificates
    signed by that CA are verified (optional unless `require_client_cert`). Raises OSError or
    ssl.SSLError for unreadable or mismatched files."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        ctx.load_verify_locations(cafile=client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("require_client_cert needs a client CA file")
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class _PeerCertScope:
    """Adds the TLS extension to every scope the protocol creates (`self.scope = {...}`)."""

    _kn_peer: Any = None
    _kn_scope: Any = None

    def _kn_remember(self, transport: asyncio.BaseTransport) -> None:
        self._kn_peer = transport.get_extra_info("peercert")

    @property
    def scope(self) -> Any:
        return self._kn_scope

    @scope.setter
    def scope(self, value: Any) -> None:
        if isinstance(value, dict):
            extensions = value.get("extensions")
            if not isinstance(extensions, dict):
                extensions = value["extensions"] = {}
            extensions["tls"] = {"client_cert": self._kn_peer}
        self._kn_scope = value


class TlsHttpProtocol(_PeerCertScope, HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._kn_remember(transport)
        super().connection_made(transport)


class TlsWebSocketProtocol(_PeerCertScope, WebSocketsSansIOProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._kn_remember(transport)
        super().connection_made(transport)


def uvicorn_options(ctx: ssl.SSLContext) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` / `uvicorn.run`: serve with `ctx` and the protocol
    classes that put the client certificate in the scope."""
    return {"http": TlsHttpProtocol, "ws": TlsWebSocketProtocol,
            "ssl_context_factory": lambda _config, _default: ctx}


def peer_cert(scope: Mapping[str, Any]) -> PeerCert | None:
    """The verified client certificate of the connection (getpeercert() form), or None."""
    tls = (scope.get("extensions") or {}).get("tls")
    cert = tls.get("client_cert") if isinstance(tls, dict) else None
    return cert if isinstance(cert, dict) and cert else None


def cert_subject(cert: PeerCert) -> tuple[str, tuple[str, ...]]:
    """(CN, O values) of a certificate in getpeercert() form."""
    cn, orgs = "", []
    for rdn in cert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName" and not cn:
                cn = str(value)
            elif key == "organizationName":
                orgs.append(str(value))
    return cn, tuple(orgs)


def client_subject(scope: Mapping[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """(CN, O values) of the verified client certificate, None without one: in Kubernetes terms
    the user name and groups the certificate authenticates."""
    cert = peer_cert(scope)
    return None if cert is None else cert_subject(cert)
