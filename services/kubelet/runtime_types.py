"""The kubelet's container-runtime interface: plain types, names and labels, no Docker.

The kubelet's control loop talks to a container runtime only through the types here, so it can
run on the real Docker gateway (`services.kubelet.runtime.DockerRuntime`) or on the in-memory
`services.kubelet.hollow.HollowRuntime` used by scale tests, and no docker-py type ever leaks
into it (only `services.kubelet.runtime` may import docker). The naming and labelling scheme is
dockershim's, so `docker ps` on a node reads like a classic Kubernetes node and the kubelet can
rebuild its view of every pod from the containers alone after a restart.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

# Labels: the io.kubernetes.* ones are dockershim's / kuberuntime's; kubenats.io/* are ours.
LABEL_TYPE = "io.kubernetes.docker.type"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_SANDBOX_ID = "io.kubernetes.sandbox.id"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
LABEL_CONTAINER_HASH = "io.kubernetes.container.hash"
LABEL_RESTART_COUNT = "io.kubernetes.container.restartCount"
LABEL_TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
LABEL_GRACE_PERIOD = "io.kubernetes.pod.terminationGracePeriod"
LABEL_NODE = "kubenats.io/node"
LABEL_IMAGE = "kubenats.io/image"  # the image reference as the pod spec wrote it
TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"
SANDBOX_CONTAINER_NAME = "POD"  # dockershim's container-name slot for the sandbox

STDOUT = "stdout"
STDERR = "stderr"


class PullPolicy(StrEnum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class ContainerState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


class ContainerKind(StrEnum):
    SANDBOX = "sandbox"
    CONTAINER = "container"


class ContainerRuntimeError(Exception):
    """A runtime call failed; `message` is the runtime's own wording."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ContainerNotFound(ContainerRuntimeError):
    """The container (or sandbox) does not exist (any more)."""


class StartError(ContainerRuntimeError):
    """The container was created but its process could not be started (Kubernetes: RunContainerError)."""


class ImagePullError(ContainerRuntimeError):
    """The image is not usable; `reason` is the Kubernetes waiting reason to show on the pod:
    `ErrImagePull`, `ErrImageNeverPull` or `InvalidImageName`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True, slots=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A hostPort published on the sandbox (app containers share its network namespace)."""

    container_port: int
    host_port: int
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass(frozen=True, slots=True)
class SandboxInfo:
    id: str
    ip: str


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """One app container of a pod, in runtime terms (the kubelet translates the pod spec)."""

    name: str
    image: str
    command: Sequence[str] = ()  # Kubernetes `command` -> Docker entrypoint
    args: Sequence[str] = ()  # Kubernetes `args` -> Docker cmd
    env: Sequence[tuple[str, str]] = ()
    working_dir: str = ""
    mounts: Sequence[Mount] = ()
    nano_cpus: int | None = None  # CPU limit in 1e-9 CPUs
    cpu_shares: int | None = None  # CPU request as cgroup shares
    memory_limit: int | None = None  # bytes; swap is capped at the same value, as the kubelet does
    privileged: bool = False
    run_as_user: int | None = None
    run_as_group: int | None = None  # applied together with run_as_user (Docker "uid:gid"), as dockershim did
    supplemental_groups: Sequence[int] = ()
    read_only_rootfs: bool = False
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    share_process_namespace: bool = False  # pid namespace of the sandbox
    restart_count: int = 0  # the attempt number in the container name
    termination_grace_seconds: int = 30
    termination_message_path: str = "/dev/termination-log"
    spec_hash: str = ""  # the kubelet's hash of the pod-spec container; computed here when empty
    labels: Mapping[str, str] = field(default_factory=dict)

    def hash(self) -> str:
        """`spec_hash`, or a stable hash of everything that defines the container, leaving out the
        attempt and the pod-level grace period (changing those must not look like a new spec)."""
        if self.spec_hash:
            return self.spec_hash
        d = asdict(self)
        for volatile in ("restart_count", "termination_grace_seconds", "spec_hash"):
            d.pop(volatile)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """A sandbox or app container as the runtime reports it (times are RFC 3339, UTC, seconds)."""

    id: str
    name: str  # the runtime's name, k8s_<container>_<pod>_<namespace>_<uid>_<attempt>
    kind: ContainerKind
    pod_uid: str
    pod_name: str
    pod_namespace: str
    container_name: str  # "POD" for a sandbox
    attempt: int
    state: ContainerState
    exit_code: int | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    oom_killed: bool = False
    error: str = ""  # why the process could not start, if it could not
    image: str = ""
    image_id: str = ""
    sandbox_id: str = ""  # app containers: the sandbox they joined
    ip: str = ""  # sandboxes: the pod IP
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def spec_hash(self) -> str:
        return self.labels.get(LABEL_CONTAINER_HASH, "")

    @property
    def restart_count(self) -> int:
        return _int(self.labels.get(LABEL_RESTART_COUNT), self.attempt)

    @property
    def termination_grace_seconds(self) -> int | None:
        v = self.labels.get(LABEL_GRACE_PERIOD)
        return _int(v, 0) if v is not None else None


class ExecSession(Protocol):
    """A process started inside a running container (kubectl exec / probes)."""

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        """Output chunks as (STDOUT | STDERR, data); with a tty everything is STDOUT."""
        ...

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, width: int, height: int) -> None: ...

    async def exit_code(self) -> int | None:
        """The exit code, or None while the process runs."""
        ...

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end and return its exit code."""
        ...

    async def close(self) -> None: ...


class ContainerRuntime(Protocol):
    """What the kubelet needs from a container runtime; see `DockerRuntime` for the semantics."""

    async def version(self) -> str: ...

    async def image_present(self, image: str) -> str | None: ...

    async def ensure_image(self, image: str, pull_policy: str | PullPolicy) -> str: ...

    async def remove_image(self, image: str) -> None: ...

    async def run_sandbox(
        self,
        pod_uid: str,
        name: str,
        namespace: str,
        attempt: int,
        pause_image: str,
        hostname: str = "",
        *,
        dns_servers: Sequence[str] = (),
        dns_searches: Sequence[str] = (),
        dns_options: Sequence[str] = (),
        port_mappings: Sequence[PortMapping] = (),
        labels: Mapping[str, str] | None = None,
    ) -> SandboxInfo: ...

    async def sandbox_ip(self, sandbox_id: str) -> str: ...

    async def create_container(self, sandbox_id: str, spec: ContainerConfig) -> str: ...

    async def start_container(self, container_id: str) -> None: ...

    async def list_containers(self, all: bool = True) -> list[ContainerStatus]: ...

    async def inspect(self, container_id: str) -> ContainerStatus: ...

    async def stop_container(self, container_id: str, grace_seconds: float) -> None: ...

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None: ...

    async def remove_container(self, container_id: str) -> None: ...

    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail_lines: int | None = None,
        timestamps: bool = False,
        since_seconds: float | None = None,
        limit_bytes: int | None = None,
    ) -> AsyncGenerator[bytes, None]: ...

    async def exec(
        self, container_id: str, cmd: Sequence[str], stdin: bool = False, tty: bool = False
    ) -> ExecSession: ...


# ---- names -------------------------------------------------------------------------------------


def sandbox_name(pod_name: str, namespace: str, pod_uid: str, attempt: int) -> str:
    return f"k8s_{SANDBOX_CONTAINER_NAME}_{pod_name}_{namespace}_{pod_uid}_{attempt}"


def container_name(container: str, pod_name: str, namespace: str, pod_uid: str, attempt: int) -> str:
    return f"k8s_{container}_{pod_name}_{namespace}_{pod_uid}_{attempt}"


def parse_name(name: str) -> tuple[str, str, str, str, int] | None:
    """(container, pod, namespace, uid, attempt) from a k8s_ name, None for anything else."""
    parts = name.lstrip("/").split("_")
    if len(parts) != 6 or parts[0] != "k8s":
        return None
    try:
        attempt = int(parts[5])
    except ValueError:
        return None
    return parts[1], parts[2], parts[3], parts[4], attempt


# ---- images ------------------------------------------------------------------------------------

_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?$")
_TAG = re.compile(r"^\w[\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")


def split_image(image: str) -> tuple[str, str]:
    """(repository, tag-or-digest) of a fully normalised reference, e.g.
    `busybox` -> (`docker.io/library/busybox`, `latest`); a digest reference keeps `sha256:...`."""
    ref = normalize_image(image)
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    repo, tag = ref.rsplit(":", 1)
    return repo, tag


def normalize_image(image: str) -> str:
    """The fully qualified reference Docker resolves `image` to, as Docker's own reference parser
    does: `busybox`, `busybox:latest` and `docker.io/library/busybox:latest` are one image, and
    `kubenats/busybox:test` is `docker.io/kubenats/busybox:test`. Raises ImagePullError(InvalidImageName)."""
    name, _, digest = image.strip().partition("@")
    tag = ""
    if name.rfind(":") > name.rfind("/"):
        name, _, tag = name.rpartition(":")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if (
        not _DOMAIN.match(domain)
        or not all(_PATH_COMPONENT.match(c) for c in path.split("/"))
        or (tag and not _TAG.match(tag))
        or (digest and not _DIGEST.match(digest))
        or (not tag and ":" in image.partition("@")[0].rpartition("/")[2])
    ):
        raise ImagePullError("InvalidImageName", f'Failed to apply default image tag "{image}": invalid reference format')
    if digest:
        return f"{domain}/{path}" + (f":{tag}" if tag else "") + f"@{digest}"
    return f"{domain}/{path}:{tag or 'latest'}"


def default_pull_policy(image: str) -> PullPolicy:
    """Kubernetes' default: Always for `:latest` or an untagged image, else IfNotPresent."""
    try:
        ref = normalize_image(image)
    except ImagePullError:
        return PullPolicy.IF_NOT_PRESENT
    if "@" not in ref and ref.endswith(":latest"):
        return PullPolicy.ALWAYS
    return PullPolicy.IF_NOT_PRESENT


# ---- small parsers -----------------------------------------------------------------------------


def rfc3339(value: str | float | None) -> str | None:
    """Docker's RFC 3339 nano times (or Unix seconds) as Kubernetes writes times; None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if value.startswith("0001-01-01"):
        return None
    if len(value) >= 19 and value[10] == "T" and value.endswith("Z"):
        return value[:19] + "Z"
    try:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


_EXITED = re.compile(r"^Exited \((-?\d+)\)")


def exit_code_from_status(status: str) -> int | None:
    """The exit code in Docker's list-API status text (`Exited (3) 2 seconds ago`)."""
    m = _EXITED.match(status)
    return int(m.group(1)) if m else None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
