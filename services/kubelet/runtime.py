"""The kubelet's gateway to the Docker engine: pods as a pause container plus app containers.

This is the one module in the project that imports docker (an import-linter contract enforces
it), so Docker's API, its errors and its quirks stop here; the kubelet sees only the types in
`services.kubelet.runtime_types`. The design is dockershim's: a pod is a *sandbox* (a pause
container on the default bridge that owns the pod's network and IPC namespaces and publishes its
hostPorts) and app containers that join it with `container:<sandbox>` modes, all named and
labelled as dockershim did, so the kubelet can rebuild every pod from `docker ps` after a restart.

docker-py is blocking. Every public method is async and runs its Docker call on this runtime's
own thread pool (`asyncio.to_thread` semantics, but a pool of its own: a `docker stop` holds a
thread for the whole grace period, and the loop's default pool has only cpu+4 threads that DNS
lookups and everything else share). Streams (logs, exec output) get one dedicated reader thread
each, bridged to the event loop by a bounded queue (`_Pump`), and are torn down by closing their
socket when the consumer goes away.
"""

from __future__ import annotations

import asyncio
import calendar
import contextvars
import functools
import math
import os
import select
import socket
import struct
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import docker
import docker.errors

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
    exit_code_from_status,
    normalize_image,
    parse_name,
    rfc3339,
    sandbox_name,
    split_image,
)

if TYPE_CHECKING:
    from services.kubelet.runtime_types import ContainerRuntime, ExecSession

T = TypeVar("T")
_STATES = {"created": ContainerState.CREATED, "running": ContainerState.RUNNING, "paused": ContainerState.RUNNING,
           "restarting": ContainerState.RUNNING, "exited": ContainerState.EXITED, "dead": ContainerState.EXITED}


def _message(e: BaseException) -> str:
    return str(getattr(e, "explanation", None) or e)


def _translate(e: Exception) -> ContainerRuntimeError:
    if isinstance(e, ContainerRuntimeError):
        return e
    if isinstance(e, docker.errors.ImageNotFound):  # e.g. create with an image that is not present
        return ContainerRuntimeError(_message(e))
    if isinstance(e, docker.errors.NotFound):
        return ContainerNotFound(_message(e))
    return ContainerRuntimeError(_message(e))  # APIError, DockerException, OSError (requests)


def _status_code(e: Exception) -> int | None:
    return getattr(e, "status_code", None)


class DockerRuntime:
    """The container runtime of one kubelet, on the local Docker engine.

    `node_name` labels every container this runtime creates and scopes `list_containers` to them,
    so several kubelets (or test runs) can share one Docker engine without seeing each other's pods.
    `pull_timeout` bounds a whole pull; a pull that reports no progress for a minute fails sooner.
    """

    def __init__(
        self,
        *,
        node_name: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        pull_timeout: float = 300.0,
        max_workers: int = 32,
    ) -> None:
        self.node_name = node_name
        self._base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self._timeout = timeout
        self._pull_timeout = pull_timeout
        self._max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="kubenats-docker")
        self._lock = threading.Lock()
        self._api_client: Any = None
        self._pull_client: Any = None
        self._details: dict[str, tuple[tuple[str, int | None], ContainerStatus]] = {}
        self._filters = [LABEL_TYPE] + ([f"{LABEL_NODE}={node_name}"] if node_name else [])

    # ---- plumbing ----------------------------------------------------------------------------

    def _client(self, pull: bool = False) -> Any:
        """docker-py clients, made on first use in a worker thread (`version="auto"` asks the daemon)."""
        with self._lock:
            if self._api_client is None:
                self._api_client = docker.APIClient(
                    base_url=self._base_url, version="auto", timeout=self._timeout, max_pool_size=self._max_workers
                )
            if pull and self._pull_client is None:  # a pull stalled for a minute (no progress message) fails
                self._pull_client = docker.APIClient(
                    base_url=self._base_url, version=self._api_client.api_version, timeout=min(self._pull_timeout, 60)
                )
            return self._pull_client if pull else self._api_client

    def _guarded(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (docker.errors.DockerException, OSError) as e:
            raise _translate(e) from None

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, self._guarded, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """Release the thread pool and connections (not needed before process exit)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for c in (self._api_client, self._pull_client):
            if c is not None:
                c.close()

    # ---- images ------------------------------------------------------------------------------

    async def version(self) -> str:
        """`docker://<engine version>`, for nodeInfo.containerRuntimeVersion."""
        v = await self._run(lambda: self._client().version())
        return f"docker://{v['Version']}"

    async def image_present(self, image: str) -> str | None:
        """The image ID if `image` is present locally (any spelling of the same reference)."""
        ref = normalize_image(image)

        def inspect() -> str | None:
            try:
                return str(self._client().inspect_image(ref)["Id"])
            except docker.errors.NotFound:
                return None

        return await self._run(inspect)

    async def ensure_image(self, image: str, pull_policy: str | PullPolicy) -> str:
        """Make `image` present as the pull policy says and return its ID.

        Never and IfNotPresent never pull a present image; Always always pulls. Failures raise
        ImagePullError with reason ErrImageNeverPull, ErrImagePull (Docker's message) or
        InvalidImageName."""
        policy = PullPolicy(pull_policy)
        ref = normalize_image(image)
        if policy is not PullPolicy.ALWAYS:
            image_id = await self.image_present(ref)
            if image_id:
                return image_id
            if policy is PullPolicy.NEVER:
                raise ImagePullError(
                    "ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never'
                )
        try:
            await self._run(self._pull_sync, ref)
        except ImagePullError:
            raise
        except ContainerRuntimeError as e:
            raise ImagePullError("ErrImagePull", e.message) from None
        image_id = await self.image_present(ref)
        if not image_id:
            raise ImagePullError("ErrImagePull", f'image "{image}" is not present after a successful pull')
        return image_id

    def _pull_sync(self, ref: str) -> None:
        repo, tag = split_image(ref)
        deadline = time.monotonic() + self._pull_timeout
        # Errors after the response started arrive as messages in the stream, not as exceptions.
        for msg in self._client(pull=True).pull(repo, tag=tag, stream=True, decode=True):
            if isinstance(msg, dict) and msg.get("error"):
                raise ImagePullError("ErrImagePull", str(msg.get("errorDetail", {}).get("message") or msg["error"]))
            if time.monotonic() > deadline:
                raise ImagePullError("ErrImagePull", f"pulling {ref} took longer than {self._pull_timeout:.0f}s")

    async def remove_image(self, image: str) -> None:
        """Remove the image (this tag of it); an absent image is not an error."""
        ref = normalize_image(image)

        def remove() -> None:
            try:
                self._client().remove_image(ref)
            except docker.errors.NotFound:
                pass

        await self._run(remove)

    # ---- sandboxes ---------------------------------------------------------------------------

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
        """Create and start the pod's pause container on the default bridge; return (id, pod IP).

        hostPorts are published here because the app containers live in this network namespace."""
        all_labels = {**(labels or {}), **self._pod_labels(pod_uid, name, namespace), LABEL_TYPE: TYPE_SANDBOX,
                      LABEL_IMAGE: pause_image}
        ports: list[tuple[int, str]] = []
        bindings: dict[str, list[tuple[str, int]]] = {}
        for p in port_mappings:
            proto = p.protocol.lower()
            ports.append((p.container_port, proto))
            bindings.setdefault(f"{p.container_port}/{proto}", []).append((p.host_ip or "0.0.0.0", p.host_port))

        def run() -> SandboxInfo:
            api = self._client()
            host_config = api.create_host_config(
                network_mode="bridge", ipc_mode="shareable", port_bindings=bindings or None,
                dns=list(dns_servers) or None, dns_search=list(dns_searches) or None, dns_opt=list(dns_options) or None,
            )
            config = api.create_container_config(
                pause_image, None, hostname=(hostname or name)[:63], labels=all_labels, ports=ports or None,
                host_config=host_config, detach=True,
            )
            cid = self._create_sync(config, sandbox_name(name, namespace, pod_uid, attempt))
            try:
                api.start(cid)
            except docker.errors.APIError as e:
                self._remove_sync(cid)
                raise StartError(_message(e)) from None
            return SandboxInfo(cid, self._ip_of(api.inspect_container(cid)))

        return await self._run(run)

    async def sandbox_ip(self, sandbox_id: str) -> str:
        return self._ip_of(await self._run(lambda: self._client().inspect_container(sandbox_id)))

    @staticmethod
    def _ip_of(info: Mapping[str, Any]) -> str:
        net = info.get("NetworkSettings") or {}
        if net.get("IPAddress"):
            return str(net["IPAddress"])
        for n in (net.get("Networks") or {}).values():
            if n.get("IPAddress"):
                return str(n["IPAddress"])
        return ""

    def _pod_labels(self, pod_uid: str, name: str, namespace: str) -> dict[str, str]:
        labels = {LABEL_POD_UID: pod_uid, LABEL_POD_NAME: name, LABEL_POD_NAMESPACE: namespace}
        if self.node_name:
            labels[LABEL_NODE] = self.node_name
        return labels

    def _create_sync(self, config: dict[str, Any], name: str) -> str:
        """Create; a leftover container of the same name (a kubelet crash mid-way) is removed first."""
        api = self._client()
        try:
            return str(api.create_container_from_config(config, name)["Id"])
        except docker.errors.APIError as e:
            if _status_code(e) != 409:
                raise
        self._remove_sync(name)
        return str(api.create_container_from_config(config, name)["Id"])

    # ---- app containers ----------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, spec: ContainerConfig) -> str:
        """Create (not start) an app container in the sandbox's network, IPC (and, when the pod
        shares it, PID) namespaces; named k8s_<container>_<pod>_<ns>_<uid>_<restartCount>."""

        def create() -> str:
            api = self._client()
            sandbox = api.inspect_container(sandbox_id)
            sb_labels: dict[str, str] = sandbox["Config"].get("Labels") or {}
            if sb_labels.get(LABEL_TYPE) != TYPE_SANDBOX:
                raise ContainerRuntimeError(f"{sandbox_id} is not a pod sandbox")
            uid, pod, ns = sb_labels[LABEL_POD_UID], sb_labels[LABEL_POD_NAME], sb_labels[LABEL_POD_NAMESPACE]
            mode = f"container:{sandbox['Id']}"
            labels = {
                **spec.labels, **self._pod_labels(uid, pod, ns), LABEL_TYPE: TYPE_CONTAINER,
                LABEL_SANDBOX_ID: sandbox["Id"], LABEL_CONTAINER_NAME: spec.name, LABEL_CONTAINER_HASH: spec.hash(),
                LABEL_RESTART_COUNT: str(spec.restart_count), LABEL_GRACE_PERIOD: str(spec.termination_grace_seconds),
                LABEL_TERMINATION_MESSAGE_PATH: spec.termination_message_path, LABEL_IMAGE: spec.image,
            }
            host_config = api.create_host_config(
                network_mode=mode, ipc_mode=mode, pid_mode=mode if spec.share_process_namespace else None,
                binds=[f"{m.host_path}:{m.container_path}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts] or None,
                privileged=spec.privileged, read_only=spec.read_only_rootfs or None,
                nano_cpus=spec.nano_cpus, cpu_shares=spec.cpu_shares,
                mem_limit=spec.memory_limit, memswap_limit=spec.memory_limit,
                cap_add=list(spec.cap_add) or None, cap_drop=list(spec.cap_drop) or None,
                group_add=[str(g) for g in spec.supplemental_groups] or None,
            )
            user = None
            if spec.run_as_user is not None:
                user = str(spec.run_as_user) + (f":{spec.run_as_group}" if spec.run_as_group is not None else "")
            config = api.create_container_config(
                spec.image, command=list(spec.args) or None, entrypoint=list(spec.command) or None,
                environment=[f"{k}={v}" for k, v in spec.env] or None, working_dir=spec.working_dir or None,
                user=user, tty=spec.tty, stdin_open=spec.stdin, labels=labels, host_config=host_config, detach=True,
            )
            config["StdinOnce"] = spec.stdin_once
            return self._create_sync(config, container_name(spec.name, pod, ns, uid, spec.restart_count))

        return await self._run(create)

    async def start_container(self, container_id: str) -> None:
        """Start a created container; a process that cannot start raises StartError."""

        def start() -> None:
            try:
                self._client().start(container_id)
            except docker.errors.NotFound as e:
                if "No such container" in _message(e):
                    raise
                raise StartError(_message(e)) from None
            except docker.errors.APIError as e:
                raise StartError(_message(e)) from None

        await self._run(start)

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM (the image's stop signal), then SIGKILL once `grace_seconds` have passed."""
        grace = max(0, math.ceil(grace_seconds))
        await self._run(lambda: self._client().stop(container_id, timeout=grace))

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        """Send a signal; a container that is not running is left alone."""

        def kill() -> None:
            try:
                self._client().kill(container_id, signal=signal)
            except docker.errors.APIError as e:
                if _status_code(e) != 409:  # "is not running"
                    raise

        await self._run(kill)

    async def remove_container(self, container_id: str) -> None:
        """Remove (forcibly: a running container is killed); a missing container is not an error."""
        await self._run(self._remove_sync, container_id)

    def _remove_sync(self, container_id: str) -> None:
        try:
            self._client().remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if _status_code(e) != 409 or "already in progress" not in _message(e):
                raise
        self._details.pop(container_id, None)

    # ---- status ------------------------------------------------------------------------------

    async def list_containers(self, all: bool = True) -> list[ContainerStatus]:
        """Every sandbox and app container of this runtime (`all=False`: running ones only).

        One Docker list call; a container is inspected only when it is new or its state changed
        since the previous list, so a steady node costs one API call per relist while every status
        still carries start/finish times, OOMKilled and the exit code."""
        return await self._run(self._list_sync, all)

    def _list_sync(self, all: bool) -> list[ContainerStatus]:
        items = self._client().containers(all=all, filters={"label": self._filters})
        out: list[ContainerStatus] = []
        fresh: dict[str, tuple[tuple[str, int | None], ContainerStatus]] = {}
        for item in items:
            brief = self._from_list(item)
            if brief is None:
                continue
            key = (brief.state.value, brief.exit_code)
            cached = self._details.get(brief.id)
            if cached is None or cached[0] != key:
                try:
                    status = self._from_inspect(self._client().inspect_container(brief.id))
                except docker.errors.NotFound:  # removed since the list call
                    continue
                cached = (key, status or brief)
            fresh[brief.id] = cached
            out.append(cached[1])
        if all:
            self._details = fresh
        else:
            self._details.update(fresh)
        return out

    async def inspect(self, container_id: str) -> ContainerStatus:
        """Full status of one container (ContainerNotFound if it does not exist)."""
        status = await self._run(lambda: self._from_inspect(self._client().inspect_container(container_id)))
        if status is None:
            raise ContainerNotFound(f"{container_id} is not a kubenats container")
        return status

    @staticmethod
    def _from_list(item: Mapping[str, Any]) -> ContainerStatus | None:
        labels: dict[str, str] = item.get("Labels") or {}
        names = item.get("Names") or [""]
        state = _STATES.get(item.get("State", ""), ContainerState.UNKNOWN)
        exit_code = exit_code_from_status(item.get("Status", "")) if state is ContainerState.EXITED else None
        return _status(str(item["Id"]), names[0], labels, state, exit_code=exit_code,
                       created_at=rfc3339(item.get("Created")), image=str(item.get("Image", "")),
                       image_id=str(item.get("ImageID", "")))

    def _from_inspect(self, info: Mapping[str, Any]) -> ContainerStatus | None:
        labels: dict[str, str] = (info.get("Config") or {}).get("Labels") or {}
        st = info.get("State") or {}
        state = _STATES.get(st.get("Status", ""), ContainerState.UNKNOWN)
        error = str(st.get("Error") or "")
        exit_code = st.get("ExitCode") if state is ContainerState.EXITED or error else None
        oom_killed = bool(st.get("OOMKilled")) or (exit_code == 137 and self._lost_oom_kill(info))
        return _status(str(info["Id"]), str(info.get("Name", "")), labels, state, exit_code=exit_code,
                       created_at=rfc3339(info.get("Created")), started_at=rfc3339(st.get("StartedAt")),
                       finished_at=rfc3339(st.get("FinishedAt")), oom_killed=oom_killed, error=error,
                       image=str((info.get("Config") or {}).get("Image", "")), image_id=str(info.get("Image", "")),
                       ip=DockerRuntime._ip_of(info) if labels.get(LABEL_TYPE) == TYPE_SANDBOX else "")

    def _lost_oom_kill(self, info: Mapping[str, Any]) -> bool:
        """Whether a container that exited 137 with OOMKilled=false was OOM-killed after all.

        Docker 20.10 (cgroup v1) loses OOM kills in two races, measured here under load: an OOM in
        the first milliseconds, before containerd watches the cgroup (no event at all), and an OOM
        event handled after the exit event (OOMKilled stays false, but Docker's event log has an
        `oom` event). The kernel log catches both unless its OOM report was rate-limited (10 per
        5 s); Docker's event log catches the second. Runs once per container (the list cache)."""
        cid = str(info["Id"])
        if _kernel_oom_killed(cid):
            return True
        created = rfc3339(info.get("Created"))
        since = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) - 1 if created else 0
        try:
            events = self._client().events(
                since=since, until=f"{time.time():.9f}", filters={"container": cid, "event": "oom"}, decode=True
            )
            return any(True for _ in events)
        except (docker.errors.DockerException, OSError):
            return False

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
        """The container's stdout+stderr as chunks; `follow` keeps streaming until the container
        exits or the consumer stops iterating (use `contextlib.aclosing` for prompt cleanup)."""

        def open_stream() -> tuple[Iterator[bytes], Callable[[], None]]:
            stream = self._client().logs(
                container_id, stream=True, follow=follow, timestamps=timestamps,
                tail=tail_lines if tail_lines is not None else "all",
                since=time.time() - since_seconds if since_seconds is not None else None,
            )
            return stream, stream.close

        pump: _Pump[bytes] = _Pump(functools.partial(self._guarded, open_stream), f"logs-{container_id[:12]}")
        remaining = limit_bytes
        try:
            async for chunk in pump:
                if remaining is not None:
                    chunk = chunk[:remaining]
                    remaining -= len(chunk)
                if chunk:
                    yield chunk
                if remaining is not None and remaining <= 0:
                    break
        finally:
            pump.close()

    async def exec(
        self, container_id: str, cmd: Sequence[str], stdin: bool = False, tty: bool = False
    ) -> ExecSession:
        """Start `cmd` in a running container; see `ExecSession`."""

        def start() -> tuple[str, Any]:
            api = self._client()
            exec_id = str(api.exec_create(container_id, list(cmd), stdin=stdin, tty=tty)["Id"])
            sock = api.exec_start(exec_id, socket=True, tty=tty)
            raw = getattr(sock, "_sock", sock)
            raw.settimeout(None)
            return exec_id, sock

        exec_id, sock = await self._run(start)
        return _DockerExecSession(self, exec_id, sock, tty)


def _status(cid: str, name: str, labels: dict[str, str], state: ContainerState, **kw: Any) -> ContainerStatus | None:
    parsed = parse_name(name)
    kind_label = labels.get(LABEL_TYPE)
    if kind_label not in (TYPE_SANDBOX, TYPE_CONTAINER) or parsed is None:
        return None
    cname, pod, ns, uid, attempt = parsed
    kind = ContainerKind.SANDBOX if kind_label == TYPE_SANDBOX else ContainerKind.CONTAINER
    image = kw.pop("image", "")
    image = labels.get(LABEL_IMAGE) or image
    return ContainerStatus(
        id=cid, name=name.lstrip("/"), kind=kind, pod_uid=labels.get(LABEL_POD_UID, uid),
        pod_name=labels.get(LABEL_POD_NAME, pod), pod_namespace=labels.get(LABEL_POD_NAMESPACE, ns),
        container_name=SANDBOX_CONTAINER_NAME if kind is ContainerKind.SANDBOX else labels.get(LABEL_CONTAINER_NAME, cname),
        attempt=attempt, state=state, image=image, sandbox_id=labels.get(LABEL_SANDBOX_ID, ""), labels=labels, **kw,
    )


def _kernel_oom_killed(container_id: str) -> bool:
    """Whether the kernel log (/dev/kmsg) reports an OOM kill in the container's memory cgroup
    (`oom-kill:... task_memcg=/docker/<id>`). Best effort: no access means False."""
    needle = container_id.encode()
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:  # read everything there is
                return False
            except BrokenPipeError:  # records were overwritten while reading: go on
                continue
            except OSError:
                return False
            if not record:
                return False
            if b"oom-kill:" in record and needle in record:
                return True
    finally:
        os.close(fd)


# ---- thread -> event loop streaming ---------------------------------------------------------------


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_EOF = object()


class _Pump(Generic[T]):
    """One dedicated daemon thread drains a blocking iterator into an asyncio queue.

    `open_fn` runs in that thread and returns (iterator, close function). At most `window` items
    wait in the queue (backpressure: the thread blocks, so a slow consumer does not buffer a whole
    log). `close()` (consumer gone) calls the close function, which must unblock the iterator
    (shut its socket down), and the thread ends."""

    def __init__(self, open_fn: Callable[[], tuple[Iterator[T], Callable[[], None]]], name: str, window: int = 64) -> None:
        self._open = open_fn
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._slots = threading.Semaphore(window)
        self._lock = threading.Lock()
        self._closed = False
        self._close_fn: Callable[[], None] | None = None
        self._done = False
        self.thread = threading.Thread(target=self._pump, name=f"kubenats-{name}", daemon=True)
        self.thread.start()

    def _deliver(self, item: object) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
            return True
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False

    def _pump(self) -> None:
        iterator: Iterator[T] | None = None
        try:
            iterator, close_fn = self._open()
            with self._lock:
                self._close_fn = close_fn
                closed = self._closed
            if closed:
                close_fn()
                return
            for item in iterator:
                while not self._slots.acquire(timeout=0.5):
                    if self._closed:
                        return
                if self._closed or not self._deliver(item):
                    return
            self._deliver(_EOF)
        except BaseException as e:
            if not self._closed:
                self._deliver(_Failure(e))
        finally:
            self.close()
            end = getattr(iterator, "close", None)  # a generator's cleanup runs in this thread, now
            if end is not None:
                try:
                    end()
                except Exception:
                    pass

    def __aiter__(self) -> _Pump[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _EOF:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.exc
        self._slots.release()
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Idempotent, thread-safe, non-blocking: stop the reader by closing its source (a task
        still iterating sees the end of the stream)."""
        with self._lock:
            was_closed, self._closed = self._closed, True
            close_fn, self._close_fn = self._close_fn, None
        if not was_closed:
            self._deliver(_EOF)
        if close_fn is not None:
            try:
                close_fn()
            except (OSError, docker.errors.DockerException):
                pass


def _exec_frames(raw: socket.socket, tty: bool, closed: Callable[[], bool]) -> Iterator[tuple[str, bytes]]:
    """Docker's hijacked exec stream as (stream, bytes): 8-byte headers (stream id, size) then the
    payload, or raw bytes with a tty. Polls with a timeout so that a reader whose socket was shut
    down, or whose session was closed, always notices (docker-py's reader polls without one)."""
    poller = select.poll()
    poller.register(raw, select.POLLIN | select.POLLPRI)

    def read(n: int) -> bytes:
        while not closed():
            if poller.poll(500):
                return raw.recv(n)
        return b""

    def exactly(n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = read(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    while True:
        if tty:
            chunk = read(65536)
            if not chunk:
                return
            yield STDOUT, chunk
            continue
        header = exactly(8)
        if header is None:
            return
        stream, size = struct.unpack(">BxxxL", header)
        if size == 0:
            continue
        payload = exactly(size)
        if payload is None:
            return
        yield (STDERR if stream == 2 else STDOUT), payload


class _DockerExecSession:
    """`ExecSession` over a hijacked Docker exec connection; one reader thread demultiplexes the
    8-byte-framed stdout/stderr stream (raw bytes with a tty). The reader thread owns the socket:
    closing the session only shuts it down, and the thread releases the descriptor when it ends,
    so a descriptor number can never be reused under a reader still polling it."""

    def __init__(self, runtime: DockerRuntime, exec_id: str, sock: Any, tty: bool) -> None:
        self._rt = runtime
        self.exec_id = exec_id
        self._sock = sock
        self._raw: socket.socket = getattr(sock, "_sock", sock)
        self._tty = tty
        self._stopping = False
        self._pump: _Pump[tuple[str, bytes]] = _Pump(self._open, f"exec-{exec_id[:12]}")

    def _open(self) -> tuple[Iterator[tuple[str, bytes]], Callable[[], None]]:
        return self._frames(), self._shutdown

    def _frames(self) -> Iterator[tuple[str, bytes]]:
        try:
            yield from _exec_frames(self._raw, self._tty, lambda: self._stopping)
        finally:
            for release in (self._raw.close, self._sock.close):
                try:
                    release()
                except OSError:
                    pass

    def _shutdown(self) -> None:
        self._stopping = True
        try:
            self._raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._pump

    async def write_stdin(self, data: bytes) -> None:
        await self._rt._run(self._raw.sendall, data)

    async def close_stdin(self) -> None:
        """Half-close: the process sees EOF on stdin, its output keeps flowing."""
        await self._rt._run(self._raw.shutdown, socket.SHUT_WR)

    async def resize(self, width: int, height: int) -> None:
        await self._rt._run(lambda: self._rt._client().exec_resize(self.exec_id, height=height, width=width))

    async def exit_code(self) -> int | None:
        info = await self._rt._run(lambda: self._rt._client().exec_inspect(self.exec_id))
        return None if info.get("Running") else info.get("ExitCode")

    async def wait(self, timeout: float | None = None) -> int:
        async with asyncio.timeout(timeout):
            delay = 0.01
            while (code := await self.exit_code()) is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
            return code

    async def close(self) -> None:
        self._pump.close()


if TYPE_CHECKING:
    _conforms: type[ContainerRuntime] = DockerRuntime
