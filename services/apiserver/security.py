"""The request filter chain in front of every handler, in kube-apiserver's order.

1. request body limit (3 MiB: 413) and in-flight limits (429 with Retry-After), as
   `--max-requests-inflight` / `--max-mutating-requests-inflight`; watches and streams are
   long-running and not counted;
2. authentication (`auth.py`): no credentials is 401 except on `/healthz`, `/livez`,
   `/readyz` and `/version`; a bad token is 401;
3. impersonation (`Impersonate-User` / `Impersonate-Group` headers, `kubectl --as`), itself
   authorized with the `impersonate` verb;
4. authorization: the Node authorizer for kubelets, then RBAC; 403 in Kubernetes' words;
5. the caller's admission checker (NodeRestriction for kubelets) installed for `Objects`.

A plain ASGI middleware, so the checks run in the request's own task and cover HTTP and
WebSocket (exec) alike.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import orjson

from shared.errors import ApiError
from shared.log import event

from . import admission
from .auth import ANONYMOUS, Authenticator, Caller, Unauthorized, headers, with_authenticated
from .rbac import Attributes, Decision, forbidden_message
from .requestinfo import RequestInfo, long_running, request_info

log = logging.getLogger("kubenats.apiserver.security")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
MAX_BODY = 3 * 1024 * 1024
CALLER_KEY = "kubenats.caller"


class Authorizer(Protocol):
    def authorize(self, a: Attributes) -> Decision: ...


AdmissionFactory = Callable[[Caller], admission.Checker | None]


def caller_of(scope: Scope) -> Caller:
    """The authenticated caller of a request that passed the chain (the apiserver itself otherwise)."""
    caller = scope.get(CALLER_KEY)
    return caller if isinstance(caller, Caller) else ANONYMOUS


def attributes(caller: Caller, info: RequestInfo) -> Attributes:
    return Attributes(user=caller.user, groups=caller.groups, verb=info.verb, resource_request=info.resource_request,
                      api_group=info.api_group, resource=info.resource, subresource=info.subresource,
                      namespace=info.namespace, name=info.name, path=info.path)


def _public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


class Security:
    def __init__(self, app: ASGIApp, authn: Authenticator, authz: Authorizer, *,
                 admission_for: AdmissionFactory | None = None, max_inflight: int = 400,
                 max_mutating_inflight: int = 200, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.authn = authn
        self.authz = authz
        self.admission_for = admission_for
        self.max_inflight = max_inflight
        self.max_mutating = max_mutating_inflight
        self.max_body = max_body
        self.inflight = 0
        self.mutating = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path") or "/")
        method = str(scope.get("method") or "GET").upper()
        query = bytes(scope.get("query_string") or b"").decode("latin-1")
        try:
            caller = self.authn.authenticate(scope)
        except Unauthorized:
            caller = None
        if caller is None:
            if not _public(path):
                await self._deny(scope, send, ApiError(401, "Unauthorized", "Unauthorized"))
                return
            caller = ANONYMOUS
        info = request_info(method, path, query)
        if not _public(path):
            impersonated = self._impersonate(scope, caller)
            if isinstance(impersonated, str):
                await self._deny(scope, send, ApiError(403, "Forbidden", impersonated))
                return
            caller = impersonated
            a = attributes(caller, info)
            decision = self.authz.authorize(a)
            if not decision.allowed:
                event(log, "forbidden", user=caller.user, verb=info.verb, resource=info.resource,
                      subresource=info.subresource, namespace=info.namespace, name=info.name, path=path)
                err = ApiError(403, "Forbidden", forbidden_message(a, decision.reason))
                if info.resource_request:
                    err.name, err.group, err.kind = info.name, info.api_group, info.resource
                await self._deny(scope, send, err)
                return
        scope[CALLER_KEY] = caller
        if scope["type"] == "http":
            length = _content_length(scope)
            if length is not None and length > self.max_body:
                await self._deny(scope, send, ApiError(413, "RequestEntityTooLarge",
                                                       f"Request entity too large: limit is {self.max_body}"))
                return
            receive = self._limited(receive)
        counted = not long_running(info, query) and scope["type"] == "http"
        mutating = method in ("POST", "PUT", "PATCH", "DELETE")
        if counted:
            if (mutating and self.mutating >= self.max_mutating) or (not mutating and self.inflight >= self.max_inflight):
                event(log, "too_many_requests", user=caller.user, mutating=mutating)
                await self._deny(scope, send, ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                                                       retry_after=1), [(b"retry-after", b"1")])
                return
            if mutating:
                self.mutating += 1
            else:
                self.inflight += 1
        checker = self.admission_for(caller) if self.admission_for is not None else None
        token = admission.install(checker)
        try:
            await self.app(scope, receive, send)
        finally:
            admission.reset(token)
            if counted:
                if mutating:
                    self.mutating -= 1
                else:
                    self.inflight -= 1

    def _impersonate(self, scope: Scope, caller: Caller) -> Caller | str:
        user = headers(scope, b"impersonate-user")
        groups = headers(scope, b"impersonate-group")
        uid = headers(scope, b"impersonate-uid")
        if not user:
            if groups or uid:
                return "requested impersonation without Impersonate-User"
            return caller
        target = user[0]
        checks = [("users", target, "")]
        if target.startswith("system:serviceaccount:") and target.count(":") == 3:
            _, _, ns, sa = target.split(":")
            checks = [("serviceaccounts", sa, ns)]
        checks += [("groups", g, "") for g in groups]
        checks += [("uids", u, "") for u in uid[:1]]
        for resource, name, ns in checks:
            a = Attributes(user=caller.user, groups=caller.groups, verb="impersonate", resource_request=True,
                           api_group="authentication.k8s.io" if resource == "uids" else "", resource=resource,
                           namespace=ns, name=name)
            if not self.authz.authorize(a).allowed:
                return forbidden_message(a, "")
        event(log, "impersonation", user=caller.user, as_user=target, as_groups=",".join(groups))
        return Caller(target, with_authenticated(groups), uid[0] if uid else "", method="impersonation")

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body

        async def wrapped() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body") or b"")
                if seen > limit:  # a chunked body that grew too large: the handler sees a disconnect
                    return {"type": "http.disconnect"}
            return message
        return wrapped

    @staticmethod
    async def _deny(scope: Scope, send: Send, err: ApiError, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        code = err.code
        body = orjson.dumps(err.status())
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
        if scope["type"] == "websocket":
            if "websocket.http.response" in (scope.get("extensions") or {}):
                await send({"type": "websocket.http.response.start", "status": code, "headers": hdrs})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": code, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers") or ():
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
