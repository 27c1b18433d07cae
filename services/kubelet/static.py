"""Static pods: pod manifests in a folder on the node, run with or without an API server, mirrored.

Why this exists: a node must be able to run pods before (or without) any control plane, which is
how kubeadm runs the control plane itself (upstream pkg/kubelet/config/file.go, common.go,
pod/mirror_client.go). `FileSource` polls `--pod-manifest-path` (YAML or JSON, `*.yaml`, `*.yml`,
`*.json`; a file is re-read only when its mtime or size changes) and produces the desired static
pods. Each is defaulted and validated like an API pod, named `<name>-<node>`, bound to the node and
given a UID that is a hash of its content, node and file (upstream: md5 of the decoded pod plus
`host:<node>` and `file:<path>`), so editing a manifest yields a new UID, i.e. a new pod.

Once the API server is reachable the kubelet keeps a *mirror pod* per static pod: same name and
spec, annotation `kubernetes.io/config.mirror` = the static pod's hash, owned by the Node, carrying
the static pod's status. `mirror_pod()` builds it; `is_mirror()` tells mirrors apart from real API
pods (the kubelet never runs a mirror).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from services.kubelet.config import (
    CONFIG_HASH_ANNOTATION,
    CONFIG_MIRROR_ANNOTATION,
    CONFIG_SOURCE_ANNOTATION,
    SOURCE_FILE,
)
from shared.api.defaults import apply_defaults
from shared.api.validation import validate
from shared.log import event

log = logging.getLogger("kubenats.kubelet.static")
Obj = dict[str, Any]
EXTENSIONS = (".yaml", ".yml", ".json")


def full_name(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def is_mirror(pod: Obj) -> bool:
    return CONFIG_MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def is_static(pod: Obj) -> bool:
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(CONFIG_SOURCE_ANNOTATION) == SOURCE_FILE


def static_hash(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("annotations") or {}).get(CONFIG_HASH_ANNOTATION) or "")


def mirror_hash(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("annotations") or {}).get(CONFIG_MIRROR_ANNOTATION) or "")


def static_pod(raw: Obj, node_name: str, source: str) -> Obj:
    """Default, validate and name a decoded manifest (upstream applyDefaults); raises ValueError."""
    if raw.get("kind") != "Pod" or raw.get("apiVersion") not in ("v1", None):
        raise ValueError(f"expected a v1 Pod, got {raw.get('apiVersion')}/{raw.get('kind')}")
    pod = copy.deepcopy(raw)
    pod.setdefault("apiVersion", "v1")
    meta = pod.setdefault("metadata", {})
    if not meta.get("name"):
        raise ValueError("metadata.name is required")
    # the kubelet defaults a manifest but runs no admission: a static pod gets no service account
    # (its mirror could not be created by a node otherwise: NodeRestriction refuses that)
    apply_defaults("pods", pod, create=True)
    raw_spec: dict[str, Any] = raw["spec"] if isinstance(raw.get("spec"), dict) else {}
    for key in ("serviceAccountName", "serviceAccount"):
        if key not in raw_spec:
            pod.get("spec", {}).pop(key, None)
    node = node_name.lower()
    if not meta.get("uid"):
        h = hashlib.md5(usedforsecurity=False)
        h.update(orjson.dumps(pod, option=orjson.OPT_SORT_KEYS))
        h.update(f"host:{node}".encode())
        h.update(f"file:{source}".encode())
        meta["uid"] = h.hexdigest()
    meta["name"] = f"{meta['name']}-{node}"
    meta["namespace"] = meta.get("namespace") or "default"
    spec = pod.setdefault("spec", {})
    spec["nodeName"] = node_name
    tolerations = spec.setdefault("tolerations", [])
    tol = {"operator": "Exists", "effect": "NoExecute"}
    if tol not in tolerations:
        tolerations.append(tol)
    annotations = meta.setdefault("annotations", {})
    annotations[CONFIG_HASH_ANNOTATION] = meta["uid"]
    annotations[CONFIG_SOURCE_ANNOTATION] = SOURCE_FILE
    pod["status"] = {"phase": "Pending"}
    causes = validate("pods", pod)
    if causes:
        raise ValueError("; ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes))
    return pod


def mirror_pod(pod: Obj, node_name: str, node_uid: str) -> Obj:
    """The mirror of a static pod, ready to POST."""
    meta = pod.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    annotations[CONFIG_MIRROR_ANNOTATION] = static_hash(pod)
    out_meta: Obj = {"name": meta["name"], "namespace": meta.get("namespace") or "default",
                     "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid,
                                          "controller": True}]}
    if meta.get("labels"):
        out_meta["labels"] = dict(meta["labels"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": out_meta, "spec": copy.deepcopy(pod.get("spec") or {})}


def _decode(data: bytes, path: str) -> list[Obj]:
    doc = orjson.loads(data) if path.endswith(".json") else yaml.safe_load(data)
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise ValueError("the manifest is not an object")
    if doc.get("kind") in ("PodList", "List"):
        return [i for i in doc.get("items") or [] if isinstance(i, dict)]
    return [doc]


class FileSource:
    """Polls a folder of pod manifests; `on_change(pods by uid)` runs after every scan that differs."""

    def __init__(self, path: str, node_name: str, period: float, on_change: Callable[[dict[str, Obj]], None]) -> None:
        self.path = Path(path)
        self.node_name = node_name
        self.period = period
        self.on_change = on_change
        self._files: dict[str, tuple[tuple[int, int], list[Obj]]] = {}  # path -> ((mtime_ns, size), pods)
        self._bad: dict[str, tuple[int, int]] = {}
        self._last: dict[str, Obj] | None = None
        self.scans = 0

    @property
    def ready(self) -> bool:
        """After the first scan (upstream: the source has sent its first full set)."""
        return self._last is not None

    def scan(self) -> dict[str, Obj]:
        pods: dict[str, Obj] = {}
        seen: set[str] = set()
        try:
            entries = sorted(os.scandir(self.path), key=lambda e: e.name)
        except FileNotFoundError:
            entries = []
        except OSError as e:
            event(log, "static_scan_failed", logging.WARNING, path=str(self.path), error=str(e))
            return dict(self._last or {})
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(EXTENSIONS):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except OSError:
                continue
            key = (st.st_mtime_ns, st.st_size)
            seen.add(entry.path)
            cached = self._files.get(entry.path)
            if cached is None or cached[0] != key:
                if self._bad.get(entry.path) == key:
                    continue
                try:
                    with open(entry.path, "rb") as f:
                        docs = _decode(f.read(), entry.path)
                    parsed = [static_pod(d, self.node_name, entry.path) for d in docs]
                except (OSError, ValueError, yaml.YAMLError, orjson.JSONDecodeError) as e:
                    self._bad[entry.path] = key
                    self._files.pop(entry.path, None)
                    event(log, "static_manifest_invalid", logging.WARNING, file=entry.path, error=str(e))
                    continue
                self._bad.pop(entry.path, None)
                cached = (key, parsed)
                self._files[entry.path] = cached
            for p in cached[1]:
                pods[p["metadata"]["uid"]] = p
        for gone in [p for p in self._files if p not in seen]:
            del self._files[gone]
        self.scans += 1
        return pods

    def poll(self) -> bool:
        pods = self.scan()
        if self._last is not None and pods.keys() == self._last.keys():
            return False
        first = self._last is None
        self._last = pods
        event(log, "static_pods", count=len(pods), initial=first, names=sorted(p["metadata"]["name"] for p in pods.values()))
        self.on_change(pods)
        return True

    async def run(self) -> None:
        while True:
            try:
                self.poll()
            except Exception as e:  # never let a bad file stop the node
                event(log, "static_poll_failed", logging.ERROR, error=f"{type(e).__name__}: {e}")
            await asyncio.sleep(self.period)
