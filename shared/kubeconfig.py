"""Reading and writing kubeconfig files, so every component and `kubenats up` agree on them.

Writing: one cluster, one user, one context, with a bearer token and/or file paths to the CA and
a client certificate (`shared.pki` issues those). Reading: `load_client_config` resolves what a
component needs to reach the apiserver from `--kubeconfig` and `--master`, as Kubernetes
components do: the current context names a cluster (server URL, CA) and a user (bearer token,
token file or client certificate); `--master` overrides the server. Inline `*-data` fields are
written to private temporary files because the API client takes paths; relative paths are
resolved against the kubeconfig's folder.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MASTER = "https://127.0.0.1:6443"

PathLike = str | os.PathLike[str]


class ConfigError(ValueError):
    """A kubeconfig that cannot be used."""


@dataclass
class ClientConfig:
    server: str
    token: str | None = None
    ca_file: str | None = None
    cert: tuple[str, str] | None = None  # (client certificate file, client key file)


# --- writing ----------------------------------------------------------------------------------


def kubeconfig_dict(server: str, user: str = "admin", token: str | None = None, *,
                    ca_file: PathLike | None = None, cert_file: PathLike | None = None,
                    key_file: PathLike | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server}
    if ca_file:
        cluster["certificate-authority"] = os.fspath(ca_file)
    user_entry: dict[str, Any] = {"token": token} if token else {}
    if cert_file:
        user_entry["client-certificate"] = os.fspath(cert_file)
    if key_file:
        user_entry["client-key"] = os.fspath(key_file)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubenats", "cluster": cluster}],
        "contexts": [{"name": "kubenats", "context": {"cluster": "kubenats", "user": user}}],
        "current-context": "kubenats",
        "users": [{"name": user, "user": user_entry}],
    }


def write_kubeconfig(path: Path, server: str, user: str = "admin", token: str | None = None, *,
                     ca_file: PathLike | None = None, cert_file: PathLike | None = None,
                     key_file: PathLike | None = None) -> bool:
    """Write atomically with mode 0600; an identical file is left alone. True when written."""
    text = yaml.safe_dump(kubeconfig_dict(server, user, token, ca_file=ca_file, cert_file=cert_file,
                                          key_file=key_file), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            if path.stat().st_mode & 0o777 != 0o600:
                os.chmod(path, 0o600)
            return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def server_from_kubeconfig(path: str) -> str:
    """The API server URL of the current context."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    ctx_name = data.get("current-context")
    ctx = next((c["context"] for c in data.get("contexts", []) if c.get("name") == ctx_name), None)
    cluster_name = ctx.get("cluster") if ctx else None
    for c in data.get("clusters", []):
        if c.get("name") == cluster_name or cluster_name is None:
            return str(c["cluster"]["server"])
    raise ValueError(f"{path}: no cluster for the current context")


# --- reading ----------------------------------------------------------------------------------

_temp_files: list[str] = []


@atexit.register
def _remove_temp_files() -> None:
    for name in _temp_files:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _named(entries: Any, name: str, what: str, path: Path) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(what) or {}
            if not isinstance(body, dict):
                raise ConfigError(f"kubeconfig {path}: {what} {name!r} is not a mapping")
            return body
    raise ConfigError(f"kubeconfig {path} has no {what} named {name!r}")


def _resolve(value: Any, base: Path) -> str:
    p = Path(str(value)).expanduser()
    return str(p if p.is_absolute() else base / p)


def _private_file(data: Any, key: str, path: Path) -> str:
    try:
        content = base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ConfigError(f"kubeconfig {path}: {key}-data is not valid base64: {e}") from e
    fd, tmp = tempfile.mkstemp(prefix="kubenats-", suffix=f"-{key}")  # mkstemp: mode 0600
    _temp_files.append(tmp)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    return tmp


def _file_or_data(section: dict[str, Any], key: str, base: Path, path: Path) -> str | None:
    if section.get(key):
        return _resolve(section[key], base)
    data = section.get(f"{key}-data")
    return _private_file(data, key, path) if data else None


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    return doc


def _token(user: dict[str, Any], base: Path, path: Path) -> str | None:
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token_path = _resolve(user["tokenFile"], base)
        try:
            token = Path(token_path).read_text().strip()
        except OSError as e:
            raise ConfigError(f"kubeconfig {path}: cannot read tokenFile {token_path}: {e}") from e
    return str(token) if token else None


def load_client_config(kubeconfig: str = "", master: str = "") -> ClientConfig:
    """Resolve the server and credentials; `master` wins over the kubeconfig's server."""
    if not kubeconfig:
        return ClientConfig(server=master or DEFAULT_MASTER)
    path = Path(kubeconfig).expanduser()
    doc = _read_doc(path)
    context_name = str(doc.get("current-context") or "")
    if not context_name:
        raise ConfigError(f"kubeconfig {path} has no current-context")
    context = _named(doc.get("contexts"), context_name, "context", path)
    cluster = _named(doc.get("clusters"), str(context.get("cluster") or ""), "cluster", path)
    user: dict[str, Any] = {}
    if context.get("user"):
        user = _named(doc.get("users"), str(context["user"]), "user", path)
    server = master or str(cluster.get("server") or "")
    if not server:
        raise ConfigError(f"kubeconfig {path}: cluster {context.get('cluster')!r} has no server")
    base = path.parent
    cert = _file_or_data(user, "client-certificate", base, path)
    key = _file_or_data(user, "client-key", base, path)
    if bool(cert) != bool(key):
        raise ConfigError(f"kubeconfig {path}: user {context.get('user')!r} needs both "
                          "client-certificate and client-key")
    ca = None
    if not cluster.get("insecure-skip-tls-verify"):
        ca = _file_or_data(cluster, "certificate-authority", base, path)
    return ClientConfig(server=server, token=_token(user, base, path), ca_file=ca,
                        cert=(cert, key) if cert and key else None)
