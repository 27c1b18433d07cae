"""`pods/log` and `pods/exec`: the API server's half of `kubectl logs` and `kubectl exec`.

Logs and exec are not stored anywhere: the real API server finds the pod's node and proxies the
request to that node's kubelet (`/containerLogs/...`, `/exec/...`), and so does this module,
against `services.kubelet.server`. It does what kube-apiserver's pod `LogLocation` /
`ExecLocation` do before proxying, with their status codes and words:

- the pod (`Objects.get`), its container: the named one (`container X is not valid for pod Y`),
  or the only one, or the `kubectl.kubernetes.io/default-container` annotation; several without a
  name is a 400 `a container name must be specified for pod P, choose one of: [a b]`;
- the node (`spec.nodeName`; none: exec is a 400 `pod P does not have a host assigned`, logs are
  empty), its address (`status.addresses`: InternalIP, then Hostname, ...) and kubelet port
  (`status.daemonEndpoints.kubeletEndpoint.Port`, default 10250);
- `PodLogOptions` validation (`tailLines` >= 0, `limitBytes` > 0, `sinceSeconds` > 0, not both
  `sinceSeconds` and `sinceTime`: 422 Invalid; unparsable values: 400).

Logs are relayed as `text/plain`, chunk by chunk while following, until the kubelet ends the
stream or the client goes away (which closes the kubelet connection, and so the runtime's reader).
Exec is a WebSocket: the client's offered subprotocols (`v5.channel.k8s.io`, `v4.channel.k8s.io`,
...) are offered to the kubelet, the client is accepted with the one the kubelet picked, and frames
are relayed both ways unchanged until one side closes; the other is then closed cleanly (the
kubelet's normal close becomes the client's normal close, which is how clients know that the
Status on channel 3 is complete). Checks that fail before the upgrade refuse it with a Status; a
kubelet that cannot be reached or refuses is reported after the upgrade, as a Failure Status on
the error channel (`unable to upgrade connection: ...`), so that kubectl prints the kubelet's reason
instead of retrying with SPDY. A non-WebSocket exec (SPDY, from kubectl before 1.30 or with
websockets disabled) is a 400 saying that WebSocket is required.

Wiring: `Rest._dispatch` hands `pods/log` and `pods/exec` HTTP requests to `PodProxy.handle`, and
the app routes WebSocket upgrades of `/api/v1/namespaces/{namespace}/pods/{name}/exec` to
`PodProxy.exec_websocket` (plain Starlette `Route`s never see WebSocket scopes). `routes()` gives
both for a standalone app. Traffic to kubelets is plain HTTP for now and ignores proxy settings
from the environment; TLS and the apiserver's client certificate come with the security work
(`kubelet_scheme`, `kubelet_ssl`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import httpx
import orjson
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from shared import errors
from shared.api.resources import BY_PLURAL, Resource
from shared.errors import ApiError

log = logging.getLogger("kubenats.podproxy")

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
DEFAULT_KUBELET_PORT = 10250
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
ADDRESS_PREFERENCE = ("InternalIP", "Hostname", "InternalDNS", "ExternalIP", "ExternalDNS")

# The remote-command WebSocket subprotocols, best first (the kubelet server speaks all of them).
PROTOCOL_V5 = "v5.channel.k8s.io"
EXEC_PROTOCOLS = (PROTOCOL_V5, "v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
                  "base64.channel.k8s.io")
CHANNEL_ERROR = 3
_MAX_ERROR_BODY = 64 * 1024


class PodGetter(Protocol):
    """What the proxy needs from `Objects`: a read of one object."""

    async def get(self, res: Resource, ns: str, name: str) -> dict[str, Any]: ...


Authenticator = Callable[[HTTPConnection], Awaitable[object]]


# ---- request options ---------------------------------------------------------------------------

_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


def _bool(q: QueryParams, name: str, default: bool = False) -> bool:
    """Go's strconv.ParseBool, as the API's parameter codec decodes booleans ("True" from Python too)."""
    v = q.get(name)
    if v is None or v == "":
        return default
    if v.lower() in _TRUE:
        return True
    if v.lower() in _FALSE:
        return False
    raise errors.bad_request(f"invalid value for {name}: {v!r}")


def _int(q: QueryParams, name: str) -> int | None:
    v = q.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {v!r}") from None


@dataclass(frozen=True)
class LogOptions:
    """`PodLogOptions` (core/v1) as the query carries them."""

    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: int | None = None
    since_time: str = ""

    def kubelet_query(self) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        for flag, on in (("follow", self.follow), ("previous", self.previous), ("timestamps", self.timestamps)):
            if on:
                params.append((flag, "true"))
        for key, value in (("tailLines", self.tail_lines), ("limitBytes", self.limit_bytes),
                           ("sinceSeconds", self.since_seconds)):
            if value is not None:
                params.append((key, str(value)))
        if self.since_time:
            params.append(("sinceTime", self.since_time))
        return params


def log_options(q: QueryParams, pod_name: str) -> LogOptions:
    """Decode and validate like the API server: bad syntax 400, bad values 422 PodLogOptions Invalid."""
    since_time = q.get("sinceTime") or ""
    if since_time:
        try:
            datetime.fromisoformat(since_time.replace("Z", "+00:00"))
        except ValueError:
            raise errors.bad_request(f"invalid value for sinceTime: {since_time!r}: must be RFC 3339") from None
    opts = LogOptions(
        container=q.get("container") or "", follow=_bool(q, "follow"), previous=_bool(q, "previous"),
        timestamps=_bool(q, "timestamps"), tail_lines=_int(q, "tailLines"), limit_bytes=_int(q, "limitBytes"),
        since_seconds=_int(q, "sinceSeconds"), since_time=since_time,
    )
    causes: list[dict[str, str]] = []
    if opts.tail_lines is not None and opts.tail_lines < 0:
        causes.append(_invalid("tailLines", opts.tail_lines, "must be greater than or equal to 0"))
    if opts.limit_bytes is not None and opts.limit_bytes < 1:
        causes.append(_invalid("limitBytes", opts.limit_bytes, "must be greater than 0"))
    if opts.since_seconds is not None and opts.since_time:
        causes.append({"reason": "FieldValueForbidden", "field": "",
                       "message": "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"})
    elif opts.since_seconds is not None and opts.since_seconds < 1:
        causes.append(_invalid("sinceSeconds", opts.since_seconds, "must be greater than 0"))
    if causes:
        raise errors.invalid("PodLogOptions", pod_name, causes)
    return opts


def _invalid(field: str, value: int, detail: str) -> dict[str, str]:
    return {"reason": "FieldValueInvalid", "field": field, "message": f"Invalid value: {value}: {detail}"}


@dataclass(frozen=True)
class ExecOptions:
    """`PodExecOptions`; stdout and stderr default to true as in core/v1's defaulting."""

    container: str
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def kubelet_query(self) -> list[tuple[str, str]]:
        """The parameters the API server sends to the kubelet (`input`/`output`/`error`/`tty` = 1)."""
        params = [(key, "1") for key, on in (("input", self.stdin), ("output", self.stdout),
                                              ("error", self.stderr), ("tty", self.tty)) if on]
        return params + [("command", c) for c in self.command]


def exec_options(q: QueryParams) -> ExecOptions:
    opts = ExecOptions(
        container=q.get("container") or "", command=tuple(q.getlist("command")), stdin=_bool(q, "stdin"),
        stdout=_bool(q, "stdout", True), stderr=_bool(q, "stderr", True), tty=_bool(q, "tty"),
    )
    if not (opts.stdin or opts.stdout or opts.stderr):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if not opts.command:
        raise errors.bad_request("you must specify at least one command for the container")
    return opts


# ---- pod, container, node ----------------------------------------------------------------------


def _names(containers: Any) -> list[str]:
    return [str(c.get("name", "")) for c in containers or [] if isinstance(c, Mapping)]


def pod_container(pod: Mapping[str, Any], requested: str) -> str:
    """The container a request is about, as kube-apiserver's LogLocation/streamLocation pick it."""
    name = (pod.get("metadata") or {}).get("name", "")
    spec = pod.get("spec") or {}
    containers, init = _names(spec.get("containers")), _names(spec.get("initContainers"))
    if requested:
        if requested not in containers and requested not in init:
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    default = ((pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if default and default in containers:
        return str(default)
    if len(containers) == 1:
        return containers[0]
    if not containers:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
    if init:
        message += f" or one of the init containers: [{' '.join(init)}]"
    raise errors.bad_request(message)


def waiting_message(pod: Mapping[str, Any], container: str, previous: bool) -> str | None:
    """The kubelet's words for a container that has not run yet, from the status it reported
    (validateContainerLogStatus); None when the kubelet should be asked."""
    if previous:
        return None
    name = (pod.get("metadata") or {}).get("name", "")
    status = pod.get("status") or {}
    for cs in [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]:
        if not isinstance(cs, Mapping) or cs.get("name") != container:
            continue
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated")
        if "waiting" not in state or "running" in state or "terminated" in state or last:
            return None
        reason = (state.get("waiting") or {}).get("reason") or ""
        prefix = f"container {json.dumps(container)} in pod {json.dumps(name)} is waiting to start"
        if reason == "ErrImagePull":
            return f"{prefix}: image can't be pulled"
        if reason == "ImagePullBackOff":
            return f"{prefix}: trying and failing to pull image"
        return f"{prefix}: {reason}" if reason else f"{prefix} - no logs yet"
    return None


def kubelet_endpoint(node: Mapping[str, Any]) -> tuple[str, int]:
    """(address, port) of the node's kubelet."""
    status = node.get("status") or {}
    addresses = [a for a in status.get("addresses") or [] if isinstance(a, Mapping) and a.get("address")]
    host = next((str(a["address"]) for kind in ADDRESS_PREFERENCE for a in addresses if a.get("type") == kind), None)
    if host is None:
        known = " ".join(f"{{{a.get('type')} {a.get('address')}}}" for a in addresses)
        raise ApiError(503, "ServiceUnavailable", f"no preferred addresses found; known addresses: [{known}]")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if port == 0:
        # the kubelet runs but its server could not start (it advertises port 0 then)
        name = (node.get("metadata") or {}).get("name", "")
        raise ApiError(503, "ServiceUnavailable", f"the kubelet on node {name} serves no logs/exec endpoint")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        port = DEFAULT_KUBELET_PORT
    return host, port


def _status_response(e: ApiError) -> Response:
    return Response(orjson.dumps(e.status()), status_code=e.code, media_type="application/json")


def _kubelet_error(code: int, body: bytes, pod: str) -> ApiError:
    """A kubelet error response as the API server's response checker turns it into a Status."""
    text = body.decode("utf-8", "replace").strip() or f"the kubelet answered {code}"
    if text.startswith("{"):  # a Status from the kubelet's authentication layer: its message
        try:
            parsed = orjson.loads(text)
            if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
                text = parsed["message"]
        except orjson.JSONDecodeError:
            pass
    if code == 400:
        return errors.bad_request(text)
    if code == 404:
        return ApiError(404, "NotFound", text, name=pod, kind="pods/log")
    if code == 500:
        return ApiError(500, "InternalError", f"Internal error occurred: {text}")
    return ApiError(code if 400 <= code < 600 else 500, "Unknown" if code != 401 else "Unauthorized", text)


# ---- the proxy ---------------------------------------------------------------------------------


class PodProxy:
    """Serves `pods/log` and `pods/exec` by relaying to the pod's kubelet; see the module docstring."""

    def __init__(
        self,
        objects: PodGetter,
        *,
        kubelet_scheme: str = "http",
        kubelet_ssl: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        authenticate: Authenticator | None = None,
    ) -> None:
        self.objects = objects
        self.kubelet_scheme = kubelet_scheme
        self.kubelet_ssl = kubelet_ssl
        self.connect_timeout = connect_timeout
        self._authenticate = authenticate
        self._http: httpx.AsyncClient | None = None

    def routes(self, prefix: str = "/api/v1") -> list[BaseRoute]:
        """Routes for a standalone Starlette app (the API server wires `handle` through `Rest`)."""
        base = prefix + "/namespaces/{namespace}/pods/{name}"

        def http(sub: str) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                pp = request.path_params
                try:
                    return await self.handle(request, pp["namespace"], pp["name"], sub)
                except ApiError as e:
                    return _status_response(e)
            return endpoint

        return [
            Route(base + "/log", http("log"), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            Route(base + "/exec", http("exec"), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            WebSocketRoute(base + "/exec", self.exec_websocket),
        ]

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(connect=self.connect_timeout, read=None, write=30.0, pool=30.0),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
                trust_env=False,  # kubelets are reached directly, never through an environment proxy
                verify=self.kubelet_ssl if self.kubelet_ssl is not None else True,
            )
        return self._http

    # ---- HTTP ---------------------------------------------------------------------------------

    async def handle(self, request: Request, namespace: str, name: str, sub: str) -> Response:
        """`pods/log` (GET) and non-WebSocket `pods/exec` (GET/POST) requests; raises ApiError."""
        if self._authenticate is not None:
            await self._authenticate(request)
        if sub == "log":
            if request.method != "GET":
                raise errors.method_not_allowed()
            return await self.logs(request, namespace, name)
        if sub == "exec":
            if request.method not in ("GET", "POST"):
                raise errors.method_not_allowed()
            await self._exec_target(namespace, name, request.query_params)
            raise errors.bad_request(
                "Upgrade request required: kubenats serves pods/exec over WebSocket only (subprotocols "
                + ", ".join(EXEC_PROTOCOLS[:2]) + "); SPDY is not supported, use kubectl 1.30 or newer"
            )
        raise errors.not_found("pods", name)

    async def logs(self, request: Request, namespace: str, name: str) -> Response:
        opts = log_options(request.query_params, name)
        pod = await self.objects.get(PODS, namespace, name)
        container = pod_container(pod, opts.container)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:  # kube-apiserver: no location, an empty log
            return Response(b"", media_type="text/plain")
        waiting = waiting_message(pod, container, opts.previous)
        if waiting is not None:
            raise errors.bad_request(waiting)
        base = await self._kubelet_base(str(node_name), "http")
        url = f"{base}/containerLogs/{quote(namespace)}/{quote(name)}/{quote(container)}"
        query = opts.kubelet_query()
        client = self._client()
        try:
            resp = await client.send(client.build_request("GET", url, params=urlencode(query)), stream=True)
        except httpx.HTTPError as e:
            raise ApiError(500, "InternalError", f'Get "{url}": {e or type(e).__name__}') from None
        if resp.status_code != 200:
            try:
                body = await _read_limited(resp)
            finally:
                await resp.aclose()
            if resp.status_code == 404:  # bound here, but the kubelet has not created it yet
                raise errors.bad_request(
                    f"container {json.dumps(container)} in pod {json.dumps(name)} is waiting to start: ContainerCreating"
                    if body.startswith(b"pod ") else body.decode("utf-8", "replace"))
            raise _kubelet_error(resp.status_code, body, name)
        return StreamingResponse(_relay_body(resp), media_type="text/plain",
                                 headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    # ---- WebSocket exec -----------------------------------------------------------------------

    async def exec_websocket(self, websocket: WebSocket) -> None:
        """The WebSocket endpoint of `pods/exec` (path parameters `namespace` and `name`)."""
        ns, name = websocket.path_params["namespace"], websocket.path_params["name"]
        offered = [str(p) for p in websocket.scope.get("subprotocols") or []]
        protocols = [p for p in offered if p in EXEC_PROTOCOLS]
        try:
            if self._authenticate is not None:
                await self._authenticate(websocket)
            if offered and not protocols:
                raise errors.bad_request(f"requested protocol(s) are not supported: [{' '.join(offered)}]; "
                                         f"supports [{' '.join(EXEC_PROTOCOLS)}]")
            url = await self._exec_target(ns, name, websocket.query_params)
        except ApiError as e:
            await _deny(websocket, e)
            return
        try:
            upstream = await connect(
                url, subprotocols=[Subprotocol(p) for p in protocols] or None, proxy=None, compression=None,
                open_timeout=self.connect_timeout, max_size=None, ping_interval=30, ping_timeout=60,
                user_agent_header="kubenats-apiserver", ssl=self.kubelet_ssl if url.startswith("wss:") else None,
            )
        except InvalidStatus as e:
            body = e.response.body or b""
            reason = body.decode("utf-8", "replace").strip() or f"{e.response.status_code} {e.response.reason_phrase}"
            await _fail_after_upgrade(websocket, protocols, f"unable to upgrade connection: {reason}")
            return
        except (OSError, TimeoutError, InvalidHandshake) as e:
            await _fail_after_upgrade(websocket, protocols, f"error dialing backend: {e or type(e).__name__}")
            return
        try:
            await websocket.accept(subprotocol=upstream.subprotocol)
        except BaseException:
            await upstream.close()
            raise
        await _relay_frames(websocket, upstream)

    async def _exec_target(self, namespace: str, name: str, q: QueryParams) -> str:
        """The kubelet's exec URL for a validated request (ApiError otherwise)."""
        opts = exec_options(q)
        pod = await self.objects.get(PODS, namespace, name)
        container = pod_container(pod, opts.container)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise errors.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        base = await self._kubelet_base(str(node_name), "ws")
        return (f"{base}/exec/{quote(namespace)}/{quote(name)}/{quote(container)}?"
                + urlencode(opts.kubelet_query()))

    async def _kubelet_base(self, node_name: str, kind: str) -> str:
        node = await self.objects.get(NODES, "", node_name)
        host, port = kubelet_endpoint(node)
        host = f"[{host}]" if ":" in host else host
        scheme = self.kubelet_scheme if kind == "http" else ("wss" if self.kubelet_scheme == "https" else "ws")
        return f"{scheme}://{host}:{port}"


async def _read_limited(resp: httpx.Response) -> bytes:
    body = b""
    async for chunk in resp.aiter_raw():
        body += chunk
        if len(body) >= _MAX_ERROR_BODY:
            break
    return body[:_MAX_ERROR_BODY]


async def _relay_body(resp: httpx.Response) -> AsyncIterator[bytes]:
    """The kubelet's log chunks as they arrive; the kubelet connection closes with the client's."""
    try:
        async for chunk in resp.aiter_raw():
            if chunk:
                yield chunk
    except httpx.HTTPError as e:  # the kubelet went away mid-stream: end the log
        log.info("log stream from the kubelet ended: %s", e)
    finally:
        await resp.aclose()


async def _deny(ws: WebSocket, e: ApiError) -> None:
    """Refuse the upgrade with the Status (where the server supports it), as kube-apiserver answers."""
    if "websocket.http.response" in (ws.scope.get("extensions") or {}):
        await ws.send_denial_response(_status_response(e))
    else:
        await ws.close(1008, e.message[:120])


async def _fail_after_upgrade(ws: WebSocket, protocols: list[str], message: str) -> None:
    """Accept, report `message` as a Failure Status on the error channel, close normally."""
    protocol = protocols[0] if protocols else ""
    await ws.accept(subprotocol=protocol or None)
    status = {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError",
              "details": {"causes": [{"message": message}]}, "code": 500}
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        if protocol.startswith(("v4.", "v5.")):
            payload = json.dumps(status, separators=(",", ":")).encode()
        else:
            payload = message.encode()
        if "base64" in protocol:
            await ws.send_text(chr(ord("0") + CHANNEL_ERROR) + base64.b64encode(payload).decode("ascii"))
        else:
            await ws.send_bytes(bytes((CHANNEL_ERROR,)) + payload)
        await ws.close(1000)


async def _relay_frames(ws: WebSocket, upstream: ClientConnection) -> None:
    """Relay messages both ways until one side closes; then close the other side cleanly."""
    client_left = False

    async def client_to_kubelet() -> None:
        nonlocal client_left
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                client_left = True
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is not None:
                await upstream.send(data)

    async def kubelet_to_client() -> None:
        async for data in upstream:
            if isinstance(data, str):
                await ws.send_text(data)
            else:
                await ws.send_bytes(data)

    up = asyncio.create_task(client_to_kubelet(), name="exec-client-to-kubelet")
    down = asyncio.create_task(kubelet_to_client(), name="exec-kubelet-to-client")
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            if not task.done():
                task.cancel()
        for task in (up, down):
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect, OSError, RuntimeError):
                await task
    if client_left or upstream.close_code is None:
        # the client went away (or relaying to it failed): end the kubelet side, which ends the command's input
        await upstream.close()
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await ws.close(1000)
        return
    # the kubelet finished: its normal close means the Status on the error channel is complete
    normal = upstream.close_code in (1000, 1001)
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await ws.close(1000 if normal else 1011, None if normal else "the kubelet connection was lost")
