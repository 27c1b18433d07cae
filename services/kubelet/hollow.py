"""An in-memory container runtime with the `DockerRuntime` interface, for hollow (kubemark-style) nodes.

Scale tests run thousands of pods on many kubelets in one machine; real containers would make
the test measure Docker, not the control plane. `HollowRuntime` keeps the exact interface and the
observable semantics the kubelet relies on (names, labels, states, pull policies, errors) while
containers "run" at once, every call is O(1) (listing is O(containers of this node)), and a
container costs one small frozen `ContainerStatus`.

Pod IPs come from a pool of LOOPBACK addresses (127.x.y.z; by default one pool over
127.64.0.0/10 shared by every hollow runtime of the process, so pod IPs are unique cluster-wide
for up to 4 million pods; a fleet split over several processes gives each process its own
`shared_pod_cidr` slice of it; or a node's own `pod_cidr` inside 127.0.0.0/8): anything that
connects to a hollow pod IP by mistake, a proxy rule included, stays on this machine. Tests drive
exits with `inject_exit`, script exec results with `exec_handler`, and make pulls fail with
`pull_error`.

`generation` counts every change of the container set or of a container's state, so the PLEG
(`services/kubelet/pleg.py`) can skip relisting a node whose containers did not change: with a
thousand hollow nodes in a process, listing and diffing every node every second was a third of
the process's CPU.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import itertools
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from services.kubelet.runtime_types import (
    LABEL_CONTAINER_HASH,
    LABEL_CONTAINER_NAME,
    LABEL_GRACE_PERIOD,
    LABEL_IMAGE,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_RESTART_COUNT,
    LABEL_SANDBOX_ID,
    LABEL_TERMINATION_MESSAGE_PATH,
    LABEL_TYPE,
    SANDBOX_CONTAINER_NAME,
    STDERR,
    STDOUT,
    TYPE_CONTAINER,
    TYPE_SANDBOX,
    ContainerConfig,
    ContainerKind,
    ContainerNotFound,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    ImagePullError,
    PortMapping,
    PullPolicy,
    SandboxInfo,
    StartError,
    container_name,
    normalize_image,
    rfc3339,
    sandbox_name,
)

if TYPE_CHECKING:
    from services.kubelet.runtime_types import ContainerRuntime

ExecHandler = Callable[[ContainerStatus, Sequence[str]], tuple[int, bytes, bytes]]

_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
SHARED_POD_CIDR = "127.64.0.0/10"


class _IpPool:
    """O(1) allocate/release of host addresses in a loopback CIDR."""

    def __init__(self, cidr: str) -> None:
        try:
            net = ipaddress.IPv4Network(cidr)
        except ValueError as e:
            raise ValueError(f"hollow pod CIDR {cidr!r}: {e}") from None
        if not net.subnet_of(_LOOPBACK) or net.num_addresses < 4:
            raise ValueError(f"hollow pod IPs must be loopback (a 127.0.0.0/8 subnet of /30 or larger), not {cidr}")
        self.network = net
        self._next = int(net.network_address) + 1
        self._end = int(net.broadcast_address)
        self._free: deque[int] = deque()

    def allocate(self) -> str:
        if self._free:
            return str(ipaddress.IPv4Address(self._free.popleft()))
        if self._next >= self._end:
            raise ContainerRuntimeError(f"hollow IP pool {self.network} is exhausted")
        self._next += 1
        return str(ipaddress.IPv4Address(self._next - 1))

    def release(self, ip: str) -> None:
        self._free.append(int(ipaddress.IPv4Address(ip)))


_shared_pools: dict[str, _IpPool] = {}


def shared_pool(cidr: str = SHARED_POD_CIDR) -> _IpPool:
    """The process-wide pool of `cidr`, shared by every hollow runtime of the process that uses it
    (ValueError when `cidr` is not a loopback network)."""
    try:
        key = str(ipaddress.IPv4Network(cidr))  # one pool per network, however it is spelt
    except ValueError:
        key = cidr  # _IpPool says what is wrong with it
    pool = _shared_pools.get(key)
    if pool is None:
        pool = _shared_pools[key] = _IpPool(cidr)
    return pool


_shared_pool = shared_pool(SHARED_POD_CIDR)


def _now() -> str:
    return rfc3339(time.time()) or ""


class HollowRuntime:
    """A fake container runtime; see the module docstring. Same interface as `DockerRuntime`."""

    def __init__(
        self,
        *,
        node_name: str | None = None,
        pod_cidr: str | None = None,
        shared_pod_cidr: str = SHARED_POD_CIDR,
        images: Iterable[str] = (),
        pull_error: Callable[[str], str | None] | None = None,
        exec_handler: ExecHandler | None = None,
        log_line: bytes = b"hollow container running\n",
    ) -> None:
        self.node_name = node_name
        # a node's own pool (`pod_cidr`), else the process-wide one over `shared_pod_cidr`
        self._ips = _IpPool(pod_cidr) if pod_cidr else shared_pool(shared_pod_cidr)
        self._images = {normalize_image(i) for i in images}
        self._pull_error = pull_error
        self.exec_handler = exec_handler
        self.log_line = log_line
        self.pulls = 0  # how many pulls were attempted (tests check IfNotPresent does not pull)
        self._containers: dict[str, ContainerStatus] = {}
        self._by_name: dict[str, str] = {}
        self._host_ports: dict[tuple[str, int, str], str] = {}
        self._ports_of: dict[str, list[tuple[str, int, str]]] = {}
        self._exit_events: dict[str, asyncio.Event] = {}
        self._seq = itertools.count(1)
        self._id_suffix = secrets.token_hex(26)
        # bumped by every change of `_containers` (a container added, removed or replaced by a
        # new status): equal generations mean `list_containers` would answer the same
        self.generation = 0

    @property
    def pod_cidr(self) -> str:
        return str(self._ips.network)

    # ---- images ------------------------------------------------------------------------------

    async def version(self) -> str:
        return "hollow://1.0.0"

    async def image_present(self, image: str) -> str | None:
        ref = normalize_image(image)
        return _image_id(ref) if ref in self._images else None

    async def ensure_image(self, image: str, pull_policy: str | PullPolicy) -> str:
        policy = PullPolicy(pull_policy)
        ref = normalize_image(image)
        if policy is not PullPolicy.ALWAYS and ref in self._images:
            return _image_id(ref)
        if policy is PullPolicy.NEVER:
            raise ImagePullError("ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never')
        self.pulls += 1
        error = self._pull_error(ref) if self._pull_error else None
        if error:
            raise ImagePullError("ErrImagePull", error)
        self._images.add(ref)
        return _image_id(ref)

    async def remove_image(self, image: str) -> None:
        self._images.discard(normalize_image(image))

    # ---- containers --------------------------------------------------------------------------

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
    ) -> SandboxInfo:
        wanted = [(p.host_ip or "0.0.0.0", p.host_port, p.protocol.upper()) for p in port_mappings if p.host_port]
        for key in wanted:
            if key in self._host_ports:
                raise StartError(f"Bind for {key[0]}:{key[1]} failed: port is already allocated")
        cid = self._new(sandbox_name(name, namespace, pod_uid, attempt))
        all_labels = {**(labels or {}), **self._pod_labels(pod_uid, name, namespace),
                      LABEL_TYPE: TYPE_SANDBOX, LABEL_IMAGE: pause_image}
        ip = self._ips.allocate()
        for key in wanted:
            self._host_ports[key] = cid
        if wanted:
            self._ports_of[cid] = wanted
        now = _now()
        self._put(cid, ContainerStatus(
            id=cid, name=sandbox_name(name, namespace, pod_uid, attempt), kind=ContainerKind.SANDBOX,
            pod_uid=pod_uid, pod_name=name, pod_namespace=namespace, container_name=SANDBOX_CONTAINER_NAME,
            attempt=attempt, state=ContainerState.RUNNING, created_at=now, started_at=now, image=pause_image,
            image_id=_image_id(normalize_image(pause_image)), ip=ip, labels=all_labels,
        ))
        return SandboxInfo(cid, ip)

    async def sandbox_ip(self, sandbox_id: str) -> str:
        return self._get(sandbox_id).ip

    async def create_container(self, sandbox_id: str, spec: ContainerConfig) -> str:
        sb = self._get(sandbox_id)
        if sb.kind is not ContainerKind.SANDBOX:
            raise ContainerRuntimeError(f"{sandbox_id} is not a pod sandbox")
        ref = normalize_image(spec.image)
        if ref not in self._images:
            raise ContainerRuntimeError(f"No such image: {spec.image}")
        name = container_name(spec.name, sb.pod_name, sb.pod_namespace, sb.pod_uid, spec.restart_count)
        cid = self._new(name)
        labels = {
            **spec.labels, **self._pod_labels(sb.pod_uid, sb.pod_name, sb.pod_namespace), LABEL_TYPE: TYPE_CONTAINER,
            LABEL_SANDBOX_ID: sb.id, LABEL_CONTAINER_NAME: spec.name, LABEL_CONTAINER_HASH: spec.hash(),
            LABEL_RESTART_COUNT: str(spec.restart_count), LABEL_GRACE_PERIOD: str(spec.termination_grace_seconds),
            LABEL_TERMINATION_MESSAGE_PATH: spec.termination_message_path, LABEL_IMAGE: spec.image,
        }
        self._put(cid, ContainerStatus(
            id=cid, name=name, kind=ContainerKind.CONTAINER, pod_uid=sb.pod_uid, pod_name=sb.pod_name,
            pod_namespace=sb.pod_namespace, container_name=spec.name, attempt=spec.restart_count,
            state=ContainerState.CREATED, created_at=_now(), image=spec.image, image_id=_image_id(ref),
            sandbox_id=sb.id, labels=labels,
        ))
        return cid

    async def start_container(self, container_id: str) -> None:
        c = self._get(container_id)
        if c.state is not ContainerState.CREATED:
            raise StartError(f"container {container_id} is {c.state.value}, not created")
        sb = self._containers.get(c.sandbox_id)
        if sb is None or sb.state is not ContainerState.RUNNING:
            raise StartError(f"cannot join network of a non running container: {c.sandbox_id}")
        self._put(container_id, dataclasses.replace(c, state=ContainerState.RUNNING, started_at=_now()))

    async def list_containers(self, all: bool = True) -> list[ContainerStatus]:
        if all:
            return list(self._containers.values())
        return [c for c in self._containers.values() if c.state is ContainerState.RUNNING]

    async def inspect(self, container_id: str) -> ContainerStatus:
        return self._get(container_id)

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        """A hollow process handles SIGTERM: it exits at once with code 0."""
        if self._get(container_id).state is ContainerState.RUNNING:
            self.inject_exit(container_id, 0)

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        """SIGKILL ends a running container with 137, SIGTERM with 0; other signals are ignored."""
        if self._get(container_id).state is ContainerState.RUNNING:
            code = {"SIGKILL": 137, "KILL": 137, "9": 137, "SIGTERM": 0, "TERM": 0, "15": 0}.get(signal)
            if code is not None:
                self.inject_exit(container_id, code)

    async def remove_container(self, container_id: str) -> None:
        self._remove(container_id)

    def _remove(self, container_id: str) -> None:
        c = self._containers.pop(container_id, None)
        if c is None:
            return
        self.generation += 1
        self._by_name.pop(c.name, None)
        if c.kind is ContainerKind.SANDBOX and c.ip:
            self._ips.release(c.ip)
        for key in self._ports_of.pop(container_id, ()):
            self._host_ports.pop(key, None)
        self._wake(container_id)

    # ---- test hooks --------------------------------------------------------------------------

    def inject_exit(self, container_id: str, exit_code: int, oom_killed: bool = False) -> None:
        """Make a running (or created) container exit now, as if its process ended."""
        c = self._get(container_id)
        self._put(container_id, dataclasses.replace(
            c, state=ContainerState.EXITED, exit_code=exit_code, oom_killed=oom_killed, finished_at=_now(),
            started_at=c.started_at or _now(),
        ))
        self._wake(container_id)

    def add_image(self, image: str) -> None:
        self._images.add(normalize_image(image))

    # ---- streams -----------------------------------------------------------------------------

    async def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail_lines: int | None = None,
        timestamps: bool = False,
        since_seconds: float | None = None,
        limit_bytes: int | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """One fixed line (`log_line`); `follow` then waits until the container stops running."""
        c = self._get(container_id)
        line = self.log_line
        if timestamps:
            line = f"{c.started_at or c.created_at} ".encode() + line
        if tail_lines != 0 and c.state is not ContainerState.CREATED:
            yield line[:limit_bytes] if limit_bytes is not None else line
        if follow and self._get(container_id).state is ContainerState.RUNNING:
            await self._exit_events.setdefault(container_id, asyncio.Event()).wait()

    async def exec(
        self, container_id: str, cmd: Sequence[str], stdin: bool = False, tty: bool = False
    ) -> HollowExecSession:
        c = self._get(container_id)
        if c.state is not ContainerState.RUNNING:
            raise ContainerRuntimeError(f"Container {container_id} is not running")
        session = HollowExecSession(stdin, tty)
        if self.exec_handler is not None:
            code, out, err = self.exec_handler(c, cmd)
            session.finish(code, out, err)
        elif not stdin:
            session.finish(0, b"", b"")
        return session

    # ---- internals ---------------------------------------------------------------------------

    def _new(self, name: str) -> str:
        old = self._by_name.get(name)
        if old is not None:  # same recovery as DockerRuntime: a leftover of the same name goes
            self._remove(old)
        cid = f"{next(self._seq):012x}{self._id_suffix}"
        self._by_name[name] = cid
        return cid

    def _put(self, container_id: str, status: ContainerStatus) -> None:
        """The one way a container is added or changes (keeps `generation` honest)."""
        self._containers[container_id] = status
        self.generation += 1

    def _get(self, container_id: str) -> ContainerStatus:
        c = self._containers.get(container_id)
        if c is None:
            raise ContainerNotFound(f"No such container: {container_id}")
        return c

    def _pod_labels(self, pod_uid: str, name: str, namespace: str) -> dict[str, str]:
        labels = {LABEL_POD_UID: pod_uid, LABEL_POD_NAME: name, LABEL_POD_NAMESPACE: namespace}
        if self.node_name:
            labels[LABEL_NODE] = self.node_name
        return labels

    def _wake(self, container_id: str) -> None:
        event = self._exit_events.pop(container_id, None)
        if event is not None:
            event.set()


def _image_id(ref: str) -> str:
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


class HollowExecSession:
    """An exec that finishes at once (scripted by `exec_handler`), or echoes stdin like `cat`."""

    def __init__(self, stdin: bool, tty: bool) -> None:
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._code: int | None = None
        self._done = asyncio.Event()
        self._stdin_open = stdin
        self.size: tuple[int, int] | None = None

    def finish(self, code: int, out: bytes, err: bytes) -> None:
        if self._done.is_set():
            return
        if out:
            self._queue.put_nowait((STDOUT, out))
        if err:
            self._queue.put_nowait((STDERR, err))
        self._queue.put_nowait(None)
        self._code = code
        self._stdin_open = False
        self._done.set()

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._output()

    async def _output(self) -> AsyncIterator[tuple[str, bytes]]:
        while (item := await self._queue.get()) is not None:
            yield item
        self._queue.put_nowait(None)  # later iterations end too

    async def write_stdin(self, data: bytes) -> None:
        if not self._stdin_open:
            raise ContainerRuntimeError("stdin is closed")
        self._queue.put_nowait((STDOUT, data))

    async def close_stdin(self) -> None:
        self.finish(0, b"", b"")

    async def resize(self, width: int, height: int) -> None:
        self.size = (width, height)

    async def exit_code(self) -> int | None:
        return self._code

    async def wait(self, timeout: float | None = None) -> int:
        async with asyncio.timeout(timeout):
            await self._done.wait()
        return self._code if self._code is not None else 0

    async def close(self) -> None:
        self.finish(self._code if self._code is not None else 0, b"", b"")


if TYPE_CHECKING:
    _conforms: type[ContainerRuntime] = HollowRuntime
