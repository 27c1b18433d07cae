"""Reading and writing kubeconfig files, so every component and `kubenats up` agree on them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def kubeconfig_dict(server: str, user: str = "admin", token: str | None = None) -> dict[str, Any]:
    user_entry: dict[str, Any] = {"token": token} if token else {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubenats", "cluster": {"server": server}}],
        "contexts": [{"name": "kubenats", "context": {"cluster": "kubenats", "user": user}}],
        "current-context": "kubenats",
        "users": [{"name": user, "user": user_entry}],
    }


def write_kubeconfig(path: Path, server: str, user: str = "admin", token: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(kubeconfig_dict(server, user, token), sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


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
