"""Pod-spec containers translated into the runtime's `ContainerConfig` and sandbox port mappings.

Why this exists: the runtime speaks Docker-ish terms (nano CPUs, cgroup shares, bind mounts,
uid:gid), the pod speaks Kubernetes (quantities, security contexts at pod and container level,
volumeMounts). The translation follows kuberuntime (kuberuntime_container.go generateContainerConfig,
helpers_linux.go milliCPUToShares) and is kept pure so it is cheap to test and the pod worker
stays about decisions, not formats. The spec hash that decides "this running container is no
longer what the pod asks for" is computed here from the pod-spec container itself, never from
resolved values like the pod IP, so a restarted kubelet computes the same hash and adopts.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from services.kubelet.env import ConfigError
from services.kubelet.runtime_types import ContainerConfig, Mount, PortMapping
from shared.api.quantity import parse_quantity

MIN_SHARES = 2
SHARES_PER_CPU = 1024


def spec_hash(container: Mapping[str, Any]) -> str:
    """A stable hash of the pod-spec container (what upstream's HashContainer is for)."""
    return hashlib.sha256(orjson.dumps(container, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _quantity(res: Mapping[str, Any], kind: str, name: str) -> float | None:
    q = (res.get(kind) or {}).get(name)
    if q is None:
        return None
    try:
        return float(parse_quantity(q))
    except ValueError as e:
        raise ConfigError(f"invalid {kind}.{name} {q!r}: {e}") from None


def milli_cpu_to_shares(milli: int) -> int:
    if milli <= 0:
        return MIN_SHARES
    return max(MIN_SHARES, milli * SHARES_PER_CPU // 1000)


def port_mappings(pod: Mapping[str, Any]) -> list[PortMapping]:
    """hostPorts of every container, published on the sandbox."""
    spec = pod.get("spec") or {}
    out: list[PortMapping] = []
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append(PortMapping(int(p["containerPort"]), int(p["hostPort"]), str(p.get("protocol") or "TCP"),
                                       str(p.get("hostIP") or "")))
    return out


def _caps(names: Sequence[Any]) -> list[str]:
    return [str(n).upper().removeprefix("CAP_") for n in names]


def build_config(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    env: Sequence[tuple[str, str]],
    command: Sequence[str],
    args: Sequence[str],
    mounts: Sequence[Mount],
    restart_count: int,
) -> ContainerConfig:
    spec = pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    res = container.get("resources") or {}

    cpu_limit = _quantity(res, "limits", "cpu")
    cpu_request = _quantity(res, "requests", "cpu")
    if cpu_request is None:
        cpu_request = cpu_limit
    mem_limit = _quantity(res, "limits", "memory")

    def pick(name: str) -> Any:
        v = sc.get(name)
        return v if v is not None else pod_sc.get(name)

    run_as_user = pick("runAsUser")
    run_as_group = pick("runAsGroup")
    if pick("runAsNonRoot") and run_as_user is not None and int(run_as_user) == 0:
        raise ConfigError("container's runAsUser breaks non-root policy")
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    caps = sc.get("capabilities") or {}
    return ContainerConfig(
        name=str(container["name"]),
        image=str(container.get("image") or ""),
        command=list(command),
        args=list(args),
        env=list(env),
        working_dir=str(container.get("workingDir") or ""),
        mounts=list(mounts),
        nano_cpus=math.ceil(cpu_limit * 1e9) if cpu_limit else None,
        cpu_shares=milli_cpu_to_shares(math.ceil((cpu_request or 0) * 1000)),
        memory_limit=math.ceil(mem_limit) if mem_limit else None,
        privileged=bool(sc.get("privileged")),
        run_as_user=int(run_as_user) if run_as_user is not None else None,
        run_as_group=int(run_as_group) if run_as_group is not None else None,
        supplemental_groups=groups,
        read_only_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        cap_add=_caps(caps.get("add") or []),
        cap_drop=_caps(caps.get("drop") or []),
        tty=bool(container.get("tty")),
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        share_process_namespace=bool(spec.get("shareProcessNamespace")),
        restart_count=restart_count,
        termination_grace_seconds=int(spec.get("terminationGracePeriodSeconds") or 0)
        if spec.get("terminationGracePeriodSeconds") is not None else 30,
        termination_message_path=str(container.get("terminationMessagePath") or "/dev/termination-log"),
        spec_hash=spec_hash(container),
    )
