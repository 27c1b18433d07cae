"""Pod volumes materialised on the node and turned into bind mounts.

Why this exists: containers see volumes as directories the kubelet prepares under
`<root-dir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>` (upstream's layout) and bind-mounts
into them. emptyDir is a directory that lives as long as the pod; hostPath is the node's own path
(checked or created per its `type`); configMap, secret, downwardAPI and projected volumes are
files written with upstream's atomic-writer layout (`..data` -> a timestamped directory, one
symlink per top-level entry), so an update swaps every file at once and containers never see a
half-written volume. A volume that cannot be set up raises `MountError`: the pod stays in
ContainerCreating with a FailedMount event and is retried, as upstream.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.kubelet.env import ConfigError, ObjectSource, field_value, resource_value
from services.kubelet.runtime_types import Mount

Obj = dict[str, Any]
READ_ONLY_KINDS = ("configMap", "secret", "downwardAPI", "projected")


class MountError(Exception):
    """A volume could not be set up (FailedMount)."""


@dataclass(frozen=True, slots=True)
class Volume:
    host_path: str
    read_only: bool = False


def _plugin_dir(kind: str) -> str:
    return {"emptyDir": "kubernetes.io~empty-dir", "configMap": "kubernetes.io~configmap",
            "secret": "kubernetes.io~secret", "downwardAPI": "kubernetes.io~downward-api",
            "projected": "kubernetes.io~projected"}[kind]


def _kind_of(vol: Mapping[str, Any]) -> str:
    for kind in ("emptyDir", "hostPath", "configMap", "secret", "downwardAPI", "projected"):
        if vol.get(kind) is not None:
            return kind
    other = next((k for k in vol if k != "name"), "unknown")
    return other


class VolumeManager:
    """Sets up and tears down the volumes of the pods of one node."""

    def __init__(self, pods_dir: Path, source: ObjectSource, *, enabled: bool = True) -> None:
        self.pods_dir = pods_dir
        self.source = source
        self.enabled = enabled  # hollow nodes touch no files
        self._written: dict[str, str] = {}  # target dir -> digest of what is in it

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    async def setup(self, pod: Mapping[str, Any], *, pod_ips: Sequence[str], host_ips: Sequence[str],
                    allocatable: Mapping[str, str]) -> dict[str, Volume]:
        """Make every volume of the pod exist and be current; returns name -> host path."""
        if not self.enabled:
            return {}
        meta = pod.get("metadata") or {}
        uid, ns = str(meta.get("uid")), str(meta.get("namespace") or "default")
        spec = pod.get("spec") or {}
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        out: dict[str, Volume] = {}
        for vol in spec.get("volumes") or []:
            name = str(vol.get("name"))
            kind = _kind_of(vol)
            if kind == "hostPath":
                out[name] = Volume(self._host_path(vol["hostPath"], name))
                continue
            if kind not in ("emptyDir", *READ_ONLY_KINDS):
                raise MountError(f'volume "{name}": {kind} volumes are not supported by this kubelet')
            target = self.pod_dir(uid) / "volumes" / _plugin_dir(kind) / name
            if kind == "emptyDir":
                if not target.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    os.chmod(target, 0o777)
                    if fs_group is not None:
                        os.chown(target, -1, int(fs_group))
                        os.chmod(target, 0o2777)
                out[name] = Volume(str(target))
                continue
            files = await self._files(pod, ns, vol, kind, pod_ips, host_ips, allocatable)
            self._write_atomic(target, files, fs_group)
            out[name] = Volume(str(target), read_only=True)
        return out

    def mounts(self, container: Mapping[str, Any], volumes: Mapping[str, Volume]) -> list[Mount]:
        if not self.enabled:
            return []
        result: list[Mount] = []
        for m in container.get("volumeMounts") or []:
            vol = volumes.get(str(m.get("name")))
            if vol is None:
                raise MountError(f'volume "{m.get("name")}" is not set up')
            host = vol.host_path
            sub = str(m.get("subPath") or "")
            if sub:
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise MountError(f"subPath {sub!r} must be a relative path inside the volume")
                path = Path(host) / sub
                if not path.exists() and not path.is_symlink():
                    path.mkdir(parents=True, exist_ok=True)
                host = os.path.realpath(path)
            result.append(Mount(host, str(m.get("mountPath")), bool(m.get("readOnly")) or vol.read_only))
        return result

    def termination_log(self, uid: str, container: str, restart_count: int) -> str:
        """A fresh file to bind-mount at the container's terminationMessagePath."""
        d = self.pod_dir(uid) / "containers" / container
        d.mkdir(parents=True, exist_ok=True)
        path = d / str(restart_count)
        path.write_bytes(b"")
        os.chmod(path, 0o666)
        return str(path)

    def termination_message(self, uid: str, container: str, restart_count: int) -> str:
        if not self.enabled:
            return ""
        try:
            with open(self.pod_dir(uid) / "containers" / container / str(restart_count), "rb") as f:
                return f.read(4096).decode(errors="replace")
        except OSError:
            return ""

    def cleanup(self, uid: str) -> None:
        """Remove everything of the pod (its containers are gone)."""
        d = self.pod_dir(uid)
        prefix = str(d) + "/"
        for k in [k for k in self._written if k.startswith(prefix)]:
            del self._written[k]
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)

    def known_pod_dirs(self) -> list[str]:
        try:
            return [p.name for p in self.pods_dir.iterdir() if p.is_dir()]
        except OSError:
            return []

    # ---- plugins ----------------------------------------------------------------------------

    @staticmethod
    def _host_path(src: Mapping[str, Any], name: str) -> str:
        path = str(src.get("path") or "")
        kind = str(src.get("type") or "")
        p = Path(path)
        try:
            if kind == "DirectoryOrCreate":
                p.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate":
                if not p.exists():
                    p.touch(mode=0o644)
            checks = {"Directory": p.is_dir, "DirectoryOrCreate": p.is_dir, "File": p.is_file,
                      "FileOrCreate": p.is_file}
            if kind in checks and not checks[kind]():
                raise MountError(f'hostPath type check failed: {path} is not a {kind.removesuffix("OrCreate").lower()}')
            if kind in ("Socket", "CharDevice", "BlockDevice"):
                mode = os.stat(path).st_mode
                ok = {"Socket": stat.S_ISSOCK, "CharDevice": stat.S_ISCHR, "BlockDevice": stat.S_ISBLK}[kind](mode)
                if not ok:
                    raise MountError(f"hostPath type check failed: {path} is not a {kind}")
        except OSError as e:
            raise MountError(f'volume "{name}": hostPath {path}: {e}') from None
        return path

    async def _files(self, pod: Mapping[str, Any], ns: str, vol: Mapping[str, Any], kind: str,
                     pod_ips: Sequence[str], host_ips: Sequence[str],
                     allocatable: Mapping[str, str]) -> dict[str, tuple[bytes, int]]:
        src = vol[kind]
        default_mode = int(src.get("defaultMode") if src.get("defaultMode") is not None else 0o644)
        if kind == "projected":
            files: dict[str, tuple[bytes, int]] = {}
            for source in src.get("sources") or []:
                for sub in ("configMap", "secret", "downwardAPI"):
                    if isinstance(source.get(sub), dict):
                        files.update(await self._source_files(pod, ns, sub, source[sub], default_mode, pod_ips,
                                                              host_ips, allocatable, str(vol.get("name"))))
            return files
        return await self._source_files(pod, ns, kind, src, default_mode, pod_ips, host_ips, allocatable,
                                        str(vol.get("name")))

    async def _source_files(self, pod: Mapping[str, Any], ns: str, kind: str, src: Mapping[str, Any],
                            default_mode: int, pod_ips: Sequence[str], host_ips: Sequence[str],
                            allocatable: Mapping[str, str], vol_name: str) -> dict[str, tuple[bytes, int]]:
        if kind == "downwardAPI":
            out: dict[str, tuple[bytes, int]] = {}
            for item in src.get("items") or []:
                mode = int(item.get("mode") if item.get("mode") is not None else default_mode)
                try:
                    if isinstance(item.get("fieldRef"), dict):
                        value = field_value(pod, str(item["fieldRef"].get("fieldPath")), pod_ips, host_ips)
                    elif isinstance(item.get("resourceFieldRef"), dict):
                        ref = item["resourceFieldRef"]
                        spec = pod.get("spec") or {}
                        container: Obj = next((c for c in spec.get("containers") or []
                                          if c.get("name") == ref.get("containerName")), {})
                        value = resource_value(container, ref, allocatable)
                    else:
                        continue
                except ConfigError as e:
                    raise MountError(f'volume "{vol_name}": {e}') from None
                out[_clean(str(item.get("path")))] = (value.encode(), mode)
            return out
        secret = kind == "secret"
        name = str(src.get("secretName") if secret and "secretName" in src else src.get("name") or "")
        try:
            obj = await (self.source.secret(ns, name) if secret else self.source.configmap(ns, name))
        except Exception as e:
            raise MountError(f'volume "{vol_name}": couldn\'t get {kind} {ns}/{name}: {e}') from None
        if obj is None:
            if src.get("optional"):
                return {}
            raise MountError(f'{"secret" if secret else "configmap"} "{name}" not found')
        data: dict[str, bytes] = {}
        if secret:
            for k, v in (obj.get("data") or {}).items():
                data[k] = base64.b64decode(v or "")
            for k, v in (obj.get("stringData") or {}).items():
                data[k] = str(v).encode()
        else:
            data.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
            data.update({k: base64.b64decode(v or "") for k, v in (obj.get("binaryData") or {}).items()})
        items = src.get("items")
        if not items:
            return {k: (v, default_mode) for k, v in data.items()}
        out = {}
        for item in items:
            key = str(item.get("key"))
            if key not in data:
                if src.get("optional"):
                    continue
                label = "secret" if secret else "configmap"
                raise MountError(f'volume "{vol_name}": configuration of {label} {ns}/{name} has no key {key}')
            mode = int(item.get("mode") if item.get("mode") is not None else default_mode)
            out[_clean(str(item.get("path") or key))] = (data[key], mode)
        return out

    # ---- atomic writer ----------------------------------------------------------------------

    def _write_atomic(self, target: Path, files: Mapping[str, tuple[bytes, int]], fs_group: Any = None) -> None:
        """Write `files` (relative path -> (content, mode)); with an fsGroup, files belong to that
        group and are group-readable (upstream SetVolumeOwnership on read-only volumes)."""
        digest = hashlib.sha256(repr((sorted((k, v[0], v[1]) for k, v in files.items()), fs_group)).encode()).hexdigest()
        key = str(target)
        if self._written.get(key) == digest and (target / "..data").exists():
            return
        target.mkdir(parents=True, exist_ok=True)
        stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{secrets.token_hex(4)}"
        ts_dir = target / stamp
        ts_dir.mkdir(mode=0o755)
        if fs_group is not None:
            os.chown(ts_dir, -1, int(fs_group))
        for rel, (content, mode) in files.items():
            path = ts_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            if fs_group is not None:
                os.chown(path, -1, int(fs_group))
                mode |= 0o440
            os.chmod(path, mode & 0o777)
        tmp = target / "..data_tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(stamp, tmp)
        os.replace(tmp, target / "..data")
        tops = {rel.split("/")[0] for rel in files}
        for entry in target.iterdir():
            if entry.name.startswith(".."):
                if entry.name not in ("..data", stamp) and entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                continue
            if entry.name not in tops and entry.is_symlink():
                entry.unlink()
        for top in tops:
            link = target / top
            if not link.is_symlink():
                os.symlink(f"..data/{top}", link)
        self._written[key] = digest


def _clean(path: str) -> str:
    parts = [p for p in Path(path).parts if p not in ("", ".", "/")]
    if not parts or ".." in parts:
        raise MountError(f"invalid volume item path {path!r}")
    return "/".join(parts)
