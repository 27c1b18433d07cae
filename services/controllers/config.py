"""Where the controller manager finds the apiserver: `--kubeconfig` and `--master`, as kube-controller-manager.

A kubeconfig's current context names a cluster (server URL, CA) and a user (bearer token or
client certificate); `--master` overrides the server. Inline `*-data` fields are written to
private temporary files because the API client takes paths. Kept small and local; it belongs in
`shared/` once a second component needs it.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MASTER = "http://127.0.0.1:6443"


class ConfigError(ValueError):
    """A kubeconfig that cannot be used."""


@dataclass
class ClientConfig:
    server: str
    token: str | None = None
    ca_file: str | None = None
    cert: tuple[str, str] | None = None


def _named(entries: Any, name: str, what: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(what) or {}
            return body if isinstance(body, dict) else {}
    raise ConfigError(f"kubeconfig has no {what} named {name!r}")


def _file_or_data(section: dict[str, Any], key: str, base: Path) -> str | None:
    path = section.get(key)
    if path:
        p = Path(str(path))
        return str(p if p.is_absolute() else base / p)
    data = section.get(f"{key}-data")
    if not data:
        return None
    fd, tmp = tempfile.mkstemp(prefix="kubenats-", suffix=f"-{key}")
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64decode(data))
    return tmp


def load(kubeconfig: str = "", master: str = "") -> ClientConfig:
    """Resolve the server and credentials; `master` wins over the kubeconfig's server."""
    if not kubeconfig:
        return ClientConfig(server=master or DEFAULT_MASTER)
    path = Path(kubeconfig).expanduser()
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    context_name = doc.get("current-context") or ""
    context = _named(doc.get("contexts"), context_name, "context")
    cluster = _named(doc.get("clusters"), str(context.get("cluster") or ""), "cluster")
    user: dict[str, Any] = {}
    if context.get("user"):
        user = _named(doc.get("users"), str(context["user"]), "user")
    base = path.parent
    server = master or str(cluster.get("server") or "")
    if not server:
        raise ConfigError(f"kubeconfig {path}: cluster {context.get('cluster')!r} has no server")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(str(user["tokenFile"])).read_text().strip()
    cert = _file_or_data(user, "client-certificate", base)
    key = _file_or_data(user, "client-key", base)
    ca = None if cluster.get("insecure-skip-tls-verify") else _file_or_data(cluster, "certificate-authority", base)
    return ClientConfig(server=server, token=str(token) if token else None, ca_file=ca,
                        cert=(cert, key) if cert and key else None)
