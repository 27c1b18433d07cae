"""The kubelet's HTTP server: container logs and exec, as the real kubelet serves them on :10250.

`kubectl logs` and `kubectl exec` reach a container through the API server, which proxies
`pods/log` and `pods/exec` to the kubelet of the pod's node (`services.apiserver.podproxy`). This
module is that kubelet end. It answers from the container runtime alone (the runtime's labels name
the pod, namespace, uid, container and attempt of every container), so it needs no pod cache and
works on `DockerRuntime` and `HollowRuntime` alike:

- `GET /containerLogs/{namespace}/{pod}/{container}?follow&tailLines&timestamps&previous&
  sinceSeconds&sinceTime&limitBytes` streams the log as chunked `text/plain`; `previous` picks the
  attempt before the current one. Errors are plain text with the kubelet's status codes and words.
- `/exec/{namespace}/{pod}/{container}` (and `/exec/{namespace}/{pod}/{uid}/{container}`) with
  `command=..` (repeated), `stdin|input`, `stdout|output`, `stderr|error`, `tty` over a WebSocket
  speaking the Kubernetes channel protocols: `v5.channel.k8s.io` (v4 plus the client's CLOSE
  signal on channel 255), `v4.channel.k8s.io`, `v4.base64.channel.k8s.io` and the legacy
  `channel.k8s.io` / `base64.channel.k8s.io` (or no subprotocol). Every message starts with its
  channel: 0 stdin, 1 stdout, 2 stderr, 3 error (the final `Status`, JSON from v4 on), 4 resize
  (`{"Width":..,"Height":..}`), 255 close. The server sends an empty frame on the first output
  channel once the process runs, the command's output, then the `Status` on channel 3 (Success,
  or Failure/NonZeroExitCode with the exit code as an `ExitCode` cause) and closes with 1000.
  SPDY is not served: a plain HTTP request gets 400.
- `GET /healthz`.

The server is uvicorn running on the kubelet's own event loop (`start()`/`stop()`), without
uvicorn's signal handlers: the kubelet process owns SIGTERM.

Security (`ServerTLS`, what `kubenats kubelet` always uses): HTTPS, and every request, `/healthz`
included, needs a client certificate signed by `--client-ca-file` (the TLS handshake fails for a
certificate of another CA). Without one the answer is 401; a valid certificate whose CN is not an
authorized client (default `kube-apiserver-kubelet-client`, the API server's) and whose groups
(O) do not include `system:masters` gets 403 Forbidden. Both are `Status` JSON, for HTTP and for
the exec WebSocket upgrade alike. Without a client CA every request gets 401, as the kubelet with
anonymous authentication off. `KubeletServer` built without `tls` serves plain HTTP (tests);
`authenticate` is an extra hook consulted after the certificate check (False answers 401).
`serve_healthz` is the plain-HTTP `/healthz` of `--healthz-port` (10248, loopback), as upstream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.kubelet.runtime_types import (
    STDERR,
    ContainerKind,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    ExecSession,
)
from shared import healthz, tlsserver

log = logging.getLogger("kubenats.kubelet.server")

DEFAULT_PORT = 10250

# ---- the channel protocols (k8s.io/apimachinery/pkg/util/remotecommand, wsstream) ---------------

PROTOCOL_V5 = "v5.channel.k8s.io"
PROTOCOL_V4 = "v4.channel.k8s.io"
PROTOCOL_V4_BASE64 = "v4.base64.channel.k8s.io"
PROTOCOL_V1 = "channel.k8s.io"
PROTOCOL_V1_BASE64 = "base64.channel.k8s.io"
EXEC_PROTOCOLS = (PROTOCOL_V5, PROTOCOL_V4, PROTOCOL_V4_BASE64, PROTOCOL_V1, PROTOCOL_V1_BASE64)

CHANNEL_STDIN = 0
CHANNEL_STDOUT = 1
CHANNEL_STDERR = 2
CHANNEL_ERROR = 3
CHANNEL_RESIZE = 4
CHANNEL_CLOSE = 255

NON_ZERO_EXIT_CODE_REASON = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"

Authenticator = Callable[[HTTPConnection], Awaitable[bool]]

# the API server's client certificate for kubelets (shared/pki.py issues it)
DEFAULT_AUTHORIZED_CLIENTS = ("kube-apiserver-kubelet-client",)
MASTERS_GROUP = "system:masters"


@dataclass(frozen=True)
class ServerTLS:
    """HTTPS with client-certificate authentication and a CN allow-list (see the module doc).

    `client_ca_file` None: no certificate can be verified, so every request is refused (401).
    A certificate is authorized when its CN is in `authorized_clients` or one of its O values
    is in `authorized_groups`."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    authorized_clients: frozenset[str] = frozenset(DEFAULT_AUTHORIZED_CLIENTS)
    authorized_groups: frozenset[str] = frozenset({MASTERS_GROUP})

    def context(self) -> ssl.SSLContext:
        """The server's SSL context (OSError / ssl.SSLError for unusable files)."""
        return tlsserver.server_context(self.cert_file, self.key_file, self.client_ca_file)

    def check(self, conn: HTTPConnection) -> _HttpError | None:
        """None when the caller may use the kubelet API, else the 401/403 to answer."""
        subject = tlsserver.client_subject(conn.scope) if self.client_ca_file else None
        if subject is None:
            return _HttpError(401, "Unauthorized")
        cn, groups = subject
        if cn in self.authorized_clients or not self.authorized_groups.isdisjoint(groups):
            return None
        verb = "create" if conn.scope.get("method") == "POST" else "get"
        return _HttpError(403, f"Forbidden (user={cn}, verb={verb}, resource=nodes, subresource=proxy)")


def negotiate(offered: Sequence[str]) -> str | None:
    """The subprotocol to answer with: the client's first offer that is supported (clients list
    theirs by preference), "" when the client offered none (the raw v1 protocol), None when it
    offered only unsupported ones."""
    if not offered:
        return ""
    for protocol in offered:
        if protocol in EXEC_PROTOCOLS:
            return protocol
    return None


@dataclass(frozen=True)
class ChannelCodec:
    """Framing of one negotiated protocol: a channel byte (binary) or digit (base64) per message."""

    protocol: str

    @property
    def base64(self) -> bool:
        return "base64" in self.protocol

    @property
    def json_status(self) -> bool:
        """v4 and v5 send the final Status as JSON; older protocols send only a failure's text."""
        return self.protocol in (PROTOCOL_V5, PROTOCOL_V4, PROTOCOL_V4_BASE64)

    @property
    def close_signal(self) -> bool:
        return self.protocol == PROTOCOL_V5

    def encode(self, channel: int, data: bytes) -> bytes | str:
        if self.base64:
            return chr(ord("0") + channel) + base64.b64encode(data).decode("ascii")
        return bytes((channel,)) + data

    def decode(self, message: bytes | str) -> tuple[int, bytes] | None:
        """(channel, payload), or None for an empty or undecodable message (ignored, as wsstream does)."""
        raw = message.encode() if isinstance(message, str) else message
        if not raw:
            return None
        if self.base64 and raw[0] != CHANNEL_CLOSE:
            try:
                return raw[0] - ord("0"), base64.b64decode(raw[1:], validate=True)
            except (binascii.Error, ValueError):
                return None
        return raw[0], raw[1:]

    def status_payload(self, status: dict[str, Any]) -> bytes | None:
        """What goes on the error channel for `status` (None: nothing, v1 success)."""
        if self.json_status:
            return json.dumps(status, separators=(",", ":")).encode()
        if status.get("status") == "Success":
            return None
        return str(status.get("message", "")).encode()


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(code: int, command: Sequence[str]) -> dict[str, Any]:
    """The Status for a finished command, worded as the kubelet's remotecommand server does."""
    if code == 0:
        return success_status()
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
                   f"[{' '.join(command)}], exit code {code}",
        "reason": NON_ZERO_EXIT_CODE_REASON,
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]},
    }


def internal_error_status(message: str) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def _q(s: str) -> str:
    """Go's %q for the names in kubelet messages."""
    return json.dumps(s)


class _HttpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_AUTH_REASONS = {401: "Unauthorized", 403: "Forbidden"}


def auth_status(code: int, message: str) -> dict[str, Any]:
    """The Status of a refused caller (401 Unauthorized, 403 Forbidden)."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": _AUTH_REASONS.get(code, "Unknown"), "code": code}


def _error_response(e: _HttpError) -> Response:
    """Authentication and authorization failures as Status JSON; other errors as plain text."""
    if e.code in _AUTH_REASONS:
        return JSONResponse(auth_status(e.code, e.message), e.code)
    return PlainTextResponse(e.message, e.code)


# ---- query parameters ---------------------------------------------------------------------------

_TRUE = {"1", "t", "true"}
_FALSE = {"", "0", "f", "false"}


def _bool(q: QueryParams, *names: str) -> bool:
    for name in names:
        v = q.get(name)
        if v is None:
            continue
        v = v.lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise _HttpError(400, f"invalid value for {name}: {_q(v)}")
    return False


def _int(q: QueryParams, name: str) -> int | None:
    v = q.get(name)
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError:
        raise _HttpError(400, f"invalid value for {name}: {_q(v)}") from None


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: float | None = None


def log_options(q: QueryParams) -> LogOptions:
    """PodLogOptions from the query, validated as the kubelet does (bad syntax 400, bad values 422)."""
    tail = q.get("tail")  # the kubelet's legacy spelling; "all" means no limit
    tail_lines = _int(q, "tailLines")
    if tail_lines is None and tail not in (None, "", "all"):
        tail_lines = _int(QueryParams({"tail": tail}), "tail")
    limit_bytes = _int(q, "limitBytes")
    since_seconds = _int(q, "sinceSeconds")
    since_time = q.get("sinceTime")
    since: float | None = None
    problems = []
    if tail_lines is not None and tail_lines < 0:
        problems.append(f"tailLines: Invalid value: {tail_lines}: must be greater than or equal to 0")
    if limit_bytes is not None and limit_bytes < 1:
        problems.append(f"limitBytes: Invalid value: {limit_bytes}: must be greater than 0")
    if since_seconds is not None and since_time:
        problems.append("at most one of `sinceTime` or `sinceSeconds` may be specified")
    elif since_seconds is not None:
        if since_seconds < 1:
            problems.append(f"sinceSeconds: Invalid value: {since_seconds}: must be greater than 0")
        since = float(since_seconds)
    elif since_time:
        try:
            t = datetime.fromisoformat(since_time.replace("Z", "+00:00"))
        except ValueError:
            raise _HttpError(400, f"invalid value for sinceTime: {_q(since_time)}") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        since = max(time.time() - t.timestamp(), 0.001)
    if problems:
        raise _HttpError(422, "Invalid request: " + "; ".join(problems))
    return LogOptions(
        follow=_bool(q, "follow"), previous=_bool(q, "previous"), timestamps=_bool(q, "timestamps"),
        tail_lines=tail_lines, limit_bytes=limit_bytes, since_seconds=since,
    )


@dataclass(frozen=True)
class ExecOptions:
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def exec_options(q: QueryParams) -> ExecOptions:
    """The exec request: the apiserver's spelling (input/output/error) or the API's (stdin/...)."""
    command = tuple(q.getlist("command"))
    stdin = _bool(q, "input", "stdin")
    stdout = _bool(q, "output", "stdout")
    stderr = _bool(q, "error", "stderr")
    tty = _bool(q, "tty")
    if tty and stderr:  # a terminal has one output stream; the kubelet drops stderr too
        stderr = False
    if not (stdin or stdout or stderr):
        raise _HttpError(400, "you must specify at least 1 of stdin, stdout, stderr")
    if not command:
        raise _HttpError(400, "you must specify at least one command for the container")
    return ExecOptions(command, stdin, stdout, stderr, tty)


# ---- finding containers ------------------------------------------------------------------------


def _pod_instance(statuses: Sequence[ContainerStatus], namespace: str, pod: str, uid: str = "") -> list[ContainerStatus]:
    """The runtime's containers of one pod. A pod deleted and created again under the same name
    can leave containers of the old uid behind: the instance with a running sandbox, then the
    newest, wins."""
    groups: dict[str, list[ContainerStatus]] = {}
    for s in statuses:
        if s.pod_namespace == namespace and s.pod_name == pod and (not uid or s.pod_uid == uid):
            groups.setdefault(s.pod_uid, []).append(s)
    if not groups:
        return []

    def rank(group: list[ContainerStatus]) -> tuple[bool, str, int]:
        live = any(s.kind is ContainerKind.SANDBOX and s.state is ContainerState.RUNNING for s in group)
        return live, max(s.created_at or "" for s in group), max(s.attempt for s in group)

    return max(groups.values(), key=rank)


def _attempts(group: Sequence[ContainerStatus], container: str) -> list[ContainerStatus]:
    """The app container's attempts, oldest first."""
    apps = [s for s in group if s.kind is ContainerKind.CONTAINER and s.container_name == container]
    return sorted(apps, key=lambda s: (s.attempt, s.created_at or ""))


def log_container(statuses: Sequence[ContainerStatus], namespace: str, pod: str, container: str,
                  previous: bool) -> ContainerStatus:
    """The container whose log to serve: the current attempt, or with `previous` the one before it."""
    group = _pod_instance(statuses, namespace, pod)
    if not group:
        raise _HttpError(404, f"pod {_q(pod)} does not exist")
    attempts = _attempts(group, container)
    if not attempts:
        raise _HttpError(400, f"container {_q(container)} in pod {_q(pod)} is not available")
    if previous:
        older = [s for s in attempts[:-1] if s.state is ContainerState.EXITED]
        if not older:
            raise _HttpError(400, f"previous terminated container {_q(container)} in pod {_q(pod)} not found")
        return older[-1]
    return attempts[-1]


def exec_container(statuses: Sequence[ContainerStatus], namespace: str, pod: str, uid: str,
                   container: str) -> ContainerStatus:
    """The running container to exec in (the kubelet looks among running containers only)."""
    group = _pod_instance(statuses, namespace, pod, uid)
    if not group:
        raise _HttpError(404, "pod does not exist")
    running = [s for s in _attempts(group, container) if s.state is ContainerState.RUNNING]
    if not running:
        raise _HttpError(404, f"container not found ({_q(container)})")
    return running[-1]


# ---- exec streams ------------------------------------------------------------------------------


class _ExecStream:
    """One exec session relayed over one accepted WebSocket."""

    def __init__(self, ws: WebSocket, codec: ChannelCodec, session: ExecSession, opts: ExecOptions) -> None:
        self.ws = ws
        self.codec = codec
        self.session = session
        self.opts = opts
        self.client_gone = False
        self._stdin_closed = not opts.stdin
        self._resize_buffer = ""

    async def send(self, channel: int, data: bytes) -> None:
        if self.client_gone:
            return
        frame = self.codec.encode(channel, data)
        try:
            if isinstance(frame, str):
                await self.ws.send_text(frame)
            else:
                await self.ws.send_bytes(frame)
        except (WebSocketDisconnect, OSError, RuntimeError):
            self.client_gone = True

    async def run(self) -> None:
        first = CHANNEL_STDOUT if self.opts.stdout else CHANNEL_STDERR if self.opts.stderr else CHANNEL_ERROR
        await self.send(first, b"")  # "the process runs": clients wait for the lowest output channel
        receiver = asyncio.create_task(self._receive(), name="exec-stdin")
        try:
            try:
                async for stream, data in self.session:
                    channel = CHANNEL_STDERR if stream == STDERR and not self.opts.tty else CHANNEL_STDOUT
                    if (channel == CHANNEL_STDOUT and self.opts.stdout) or (channel == CHANNEL_STDERR and self.opts.stderr):
                        await self.send(channel, data)
                    if self.client_gone:
                        return
            except (ContainerRuntimeError, OSError) as e:  # the output stream broke: the exit status still tells
                log.warning("exec output stream failed: %s", e)
            if self.client_gone:
                return
            status = await self._exit_status()
            if status is None:  # the client left while the process was finishing
                return
            payload = self.codec.status_payload(status)
            if payload is not None:
                await self.send(CHANNEL_ERROR, payload)
            await self.close()
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
            await self.session.close()

    async def _exit_status(self) -> dict[str, Any] | None:
        """The Status once the process has exited (its output can end a little before that)."""
        while True:
            try:
                return exit_status(await self.session.wait(timeout=1.0), self.opts.command)
            except TimeoutError:
                if self.client_gone:
                    return None
            except ContainerRuntimeError as e:
                return internal_error_status(f"error executing command in container: {e.message}")

    async def close(self, code: int = 1000) -> None:
        if self.client_gone:
            return
        self.client_gone = True
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await self.ws.close(code)

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, OSError, RuntimeError):
                message = {"type": "websocket.disconnect"}
            if message["type"] == "websocket.disconnect":
                # the client went away: stdin ends (as wsstream closes its pipes) and output stops
                self.client_gone = True
                await self._close_stdin()
                await self.session.close()
                return
            data = message.get("bytes")
            decoded = self.codec.decode(data if data is not None else message.get("text") or "")
            if decoded is None:
                continue
            channel, payload = decoded
            try:
                if channel == CHANNEL_STDIN and payload and not self._stdin_closed:
                    await self.session.write_stdin(payload)
                elif channel == CHANNEL_RESIZE:
                    await self._resize(payload)
                elif channel == CHANNEL_CLOSE and self.codec.close_signal and payload[:1] == bytes((CHANNEL_STDIN,)):
                    await self._close_stdin()
            except ContainerRuntimeError as e:  # the process is gone: its end arrives on the output side
                log.debug("exec input dropped: %s", e)

    async def _close_stdin(self) -> None:
        if not self._stdin_closed:
            self._stdin_closed = True
            with contextlib.suppress(ContainerRuntimeError):
                await self.session.close_stdin()

    async def _resize(self, payload: bytes) -> None:
        """Resize events are a stream of JSON objects that may be split across or share messages."""
        self._resize_buffer += payload.decode("utf-8", "replace")
        decoder = json.JSONDecoder()
        while True:
            text = self._resize_buffer.lstrip()
            if not text:
                self._resize_buffer = ""
                return
            try:
                size, end = decoder.raw_decode(text)
            except json.JSONDecodeError:
                self._resize_buffer = text if len(text) < 4096 else ""
                return
            self._resize_buffer = text[end:]
            if isinstance(size, dict) and self.opts.tty:
                width, height = size.get("Width"), size.get("Height")
                if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
                    await self.session.resize(width, height)


# ---- the server --------------------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM handlers: the kubelet process owns its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class KubeletServer:
    """The kubelet's API (logs, exec, healthz) for one node, served on the running event loop.

    `port=0` binds a free port; `port` and `url` tell the bound one after `start()`.
    `tls`: HTTPS with client-certificate authentication (`ServerTLS`); without it, plain HTTP
    open to everyone. `authenticate` (an extra hook) sees every request after the certificate
    check; False answers 401."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        node_name: str,
        bind_address: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        *,
        authenticate: Authenticator | None = None,
        tls: ServerTLS | None = None,
        shutdown_grace: float = 2.0,
    ) -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.bind_address = bind_address
        self._port = port
        self._authenticate = authenticate
        self.tls = tls
        self._shutdown_grace = shutdown_grace
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        exec_paths = ("/exec/{namespace}/{pod}/{container}", "/exec/{namespace}/{pod}/{uid}/{container}")
        self.app = Starlette(routes=[
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/containerLogs/{namespace}/{pod}/{container}", self._container_logs, methods=["GET"]),
            *(WebSocketRoute(p, self._exec) for p in exec_paths),
            *(Route(p, self._exec_without_upgrade, methods=["GET", "POST"]) for p in exec_paths),
        ])

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.bind_address in ("", "0.0.0.0") else self.bind_address
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self._port}"

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the kubelet server is already running")
        # load the certificates first: unusable files fail here, before the port is taken
        tls_options = tlsserver.uvicorn_options(self.tls.context()) if self.tls else {"ws": "auto"}
        family = socket.AF_INET6 if ":" in self.bind_address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.bind_address, self._port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, lifespan="off", log_config=None, access_log=False,
            timeout_graceful_shutdown=max(int(self._shutdown_grace), 1), server_header=False, **tls_options,
        )
        server = self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name=f"kubelet-server-{self.node_name}")
        while not server.started:
            if self._task.done():
                self._task.result()  # raises the startup failure
                raise RuntimeError("the kubelet server stopped while starting")
            await asyncio.sleep(0.01)
        log.info("kubelet server for node %s listening on %s:%d (%s)", self.node_name, self.bind_address, self._port,
                 "https" if self.tls else "http")

    async def stop(self) -> None:
        """Stop listening and end open streams (after `shutdown_grace` seconds at most)."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), self._shutdown_grace + 5)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---- handlers ----------------------------------------------------------------------------

    async def _refusal(self, conn: HTTPConnection) -> _HttpError | None:
        """None when the caller may proceed, else the 401/403 to answer."""
        if self.tls is not None:
            refused = self.tls.check(conn)
            if refused is not None:
                return refused
        if self._authenticate is not None and not await self._authenticate(conn):
            return _HttpError(401, "Unauthorized")
        return None

    async def _healthz(self, request: Request) -> Response:
        refused = await self._refusal(request)
        if refused is not None:
            return _error_response(refused)
        return PlainTextResponse("ok")

    async def _container_logs(self, request: Request) -> Response:
        refused = await self._refusal(request)
        if refused is not None:
            return _error_response(refused)
        pp = request.path_params
        try:
            opts = log_options(request.query_params)
            statuses = await self.runtime.list_containers(all=True)
            target = log_container(statuses, pp["namespace"], pp["pod"], pp["container"], opts.previous)
        except _HttpError as e:
            return PlainTextResponse(e.message, e.code)
        except ContainerRuntimeError as e:
            return PlainTextResponse(e.message, 500)
        return StreamingResponse(self._log_stream(target.id, opts), media_type="text/plain",
                                 headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    async def _log_stream(self, container_id: str, opts: LogOptions) -> AsyncIterator[bytes]:
        """The runtime's log chunks; the runtime's reader ends as soon as the client goes away."""
        stream = self.runtime.logs(
            container_id, follow=opts.follow, tail_lines=opts.tail_lines, timestamps=opts.timestamps,
            since_seconds=opts.since_seconds, limit_bytes=opts.limit_bytes,
        )
        async with contextlib.aclosing(stream) as chunks:
            try:
                async for chunk in chunks:
                    yield chunk
            except ContainerRuntimeError as e:  # the container went away mid-stream: end the stream
                log.info("log stream of %s ended: %s", container_id[:12], e.message)

    async def _exec_without_upgrade(self, request: Request) -> Response:
        refused = await self._refusal(request)
        if refused is not None:
            return _error_response(refused)
        return PlainTextResponse(
            "Upgrade request required: this kubelet serves exec over WebSocket (" + ", ".join(EXEC_PROTOCOLS) + ")",
            400,
        )

    async def _exec(self, ws: WebSocket) -> None:
        pp = ws.path_params
        try:
            refused = await self._refusal(ws)
            if refused is not None:
                raise refused
            opts = exec_options(ws.query_params)
            offered = [str(p) for p in ws.scope.get("subprotocols") or []]
            protocol = negotiate(offered)
            if protocol is None:
                raise _HttpError(400, f"requested protocol(s) are not supported: [{' '.join(offered)}]; "
                                      f"supports [{' '.join(EXEC_PROTOCOLS)}]")
            statuses = await self.runtime.list_containers(all=True)
            target = exec_container(statuses, pp["namespace"], pp["pod"], pp.get("uid", ""), pp["container"])
        except _HttpError as e:
            await _deny(ws, e)
            return
        except ContainerRuntimeError as e:
            await _deny(ws, _HttpError(500, e.message))
            return
        await ws.accept(subprotocol=protocol or None)
        codec = ChannelCodec(protocol or PROTOCOL_V1)
        try:
            session = await self.runtime.exec(target.id, opts.command, stdin=opts.stdin, tty=opts.tty)
        except ContainerRuntimeError as e:
            payload = codec.status_payload(internal_error_status(f"error executing command in container: {e.message}"))
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                if payload is not None:
                    frame = codec.encode(CHANNEL_ERROR, payload)
                    await (ws.send_text(frame) if isinstance(frame, str) else ws.send_bytes(frame))
                await ws.close(1000)
            return
        await _ExecStream(ws, codec, session, opts).run()


async def _deny(ws: WebSocket, error: _HttpError) -> None:
    """Refuse the upgrade with an HTTP response (where the server supports it), as the kubelet does."""
    if "websocket.http.response" in (ws.scope.get("extensions") or {}):
        await ws.send_denial_response(_error_response(error))
    else:
        await ws.close(1008, error.message[:120])


async def serve_healthz(bind_address: str, port: int) -> asyncio.Server:
    """The kubelet's plain-HTTP health endpoint (`--healthz-port`, upstream 10248 on loopback):
    `GET /healthz` answers 200 `ok`, anything else 404. No credentials: it tells only that the
    process runs, for liveness checks that hold no client certificate."""
    return await healthz.serve(bind_address, port,
                               lambda path: (200, b"ok", "text/plain; charset=utf-8") if path == "/healthz" else None)
