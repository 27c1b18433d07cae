"""Who is calling: x509 client certificates and bearer tokens, as kube-apiserver authenticates.

* x509: the TLS layer (`shared/tlsserver.py`) verified the client certificate against the cluster CA
  and put it in the ASGI scope; the subject's CN is the user name, its O values the groups.
* Bearer tokens from `--token-auth-file`, Kubernetes' CSV format
  (`token,user,uid[,"group1,group2"]`). The file is re-read when it changes, so adding or
  revoking a token needs no restart.

Every authenticated caller is also in `system:authenticated`. A request with an invalid bearer
token is refused (401) even when a certificate would have been good, as kube-apiserver's union
authenticator fails on the first authenticator that returns an error. `Caller` is what the
authorizers and the review APIs see.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.log import event

log = logging.getLogger("kubenats.apiserver.auth")

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = field(default_factory=tuple)
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    method: str = ""  # "x509", "token", "impersonation"


ANONYMOUS = Caller("system:anonymous", (UNAUTHENTICATED,), method="anonymous")
# the apiserver itself, for its internal calls (bootstrap); never reachable from a request
SYSTEM = Caller("system:apiserver", ("system:masters", AUTHENTICATED), method="internal")


class Unauthorized(Exception):
    """Credentials were presented and are not valid."""


def with_authenticated(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    out = tuple(g for g in groups if g)
    return out if AUTHENTICATED in out else (*out, AUTHENTICATED)


def caller_from_peercert(cert: Any) -> Caller | None:
    """The caller named by a verified client certificate (`ssl.SSLSocket.getpeercert()` form)."""
    if not isinstance(cert, dict):
        return None
    cn = ""
    orgs: list[str] = []
    for rdn in cert.get("subject") or ():
        for attr in rdn:
            if len(attr) != 2:
                continue
            key, value = attr
            if key == "commonName" and not cn:
                cn = str(value)
            elif key == "organizationName":
                orgs.append(str(value))
    if not cn:
        return None
    return Caller(cn, with_authenticated(orgs), method="x509")


def parse_token_csv(text: str, source: str = "token file") -> dict[str, Caller]:
    """Kubernetes' static token file: `token,user,uid[,"group1,group2"]` per line."""
    tokens: dict[str, Caller] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise ValueError(f"{source}, line {lineno}: want at least 3 columns (token,user,uid), got {len(row)}")
        token, user, uid = (c.strip() for c in row[:3])
        if not token or not user:
            raise ValueError(f"{source}, line {lineno}: empty token or user")
        groups = [g.strip() for g in row[3].split(",")] if len(row) > 3 else []
        if token in tokens:
            event(log, "token_duplicate", logging.WARNING, source=source, line=lineno)
        tokens[token] = Caller(user, with_authenticated(groups), uid, method="token")
    return tokens


class TokenFile:
    """`--token-auth-file`, re-read (at most once a second) when its modification time changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._tokens: dict[str, Caller] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._load(initial=True)

    def _load(self, initial: bool = False) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
            if stamp == self._stamp:
                return
            tokens = parse_token_csv(self.path.read_text(), str(self.path))
        except (OSError, ValueError) as e:
            if initial:
                raise ValueError(f"--token-auth-file: {e}") from None
            event(log, "token_file_reload_failed", logging.ERROR, path=str(self.path), error=str(e))
            return
        self._tokens, self._stamp = tokens, stamp
        event(log, "token_file_loaded", path=str(self.path), tokens=len(tokens))

    def lookup(self, token: str) -> Caller | None:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            self._load()
        return self._tokens.get(token)


class Authenticator:
    """x509 first, then bearer tokens. Returns None when no credentials were presented."""

    def __init__(self, tokens: TokenFile | None = None) -> None:
        self.tokens = tokens

    def authenticate(self, scope: Mapping[str, Any]) -> Caller | None:
        tls = (scope.get("extensions") or {}).get("tls") or {}
        caller = caller_from_peercert(tls.get("client_cert"))
        if caller is not None:
            return caller
        values = headers(scope, b"authorization")
        if not values:
            return None
        header = values[0]
        scheme, _, credential = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None  # Basic and others: not an authenticator kubenats has
        token = credential.strip()
        found = self.tokens.lookup(token) if self.tokens is not None and token else None
        if found is None:
            raise Unauthorized("invalid bearer token")
        return found


def headers(scope: Mapping[str, Any], name: bytes) -> list[str]:
    return [bytes(v).decode("latin-1") for k, v in scope.get("headers") or () if k == name]
