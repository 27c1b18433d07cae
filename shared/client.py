"""The async API client every kubenats component uses to talk to the apiserver.

Components read through informers and write through this client, always via the REST API
(never etcd). Failures come back as `shared.errors.ApiError` carrying the server's Status, so
callers branch on `code`/`reason` exactly as client-go users do.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import orjson

from shared import http11
from shared.api.resources import Resource
from shared.errors import ApiError

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


def path_of(res: Resource, namespace: str = "", name: str = "", sub: str = "") -> str:
    base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    if res.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{res.plural}"
    if name:
        base += f"/{name}"
        if sub:
            base += f"/{sub}"
    return base


class ApiClient:
    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        cert: tuple[str, str] | None = None,
        user_agent: str = "kubenats",
        timeout: float = 30.0,
    ) -> None:
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        ctx: ssl.SSLContext | None = None
        if server.startswith("https://"):
            ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
            if cert:
                ctx.load_cert_chain(*cert)
        # every open connection may stay idle (for up to 4 s): a burst must not reopen (and
        # re-handshake) TLS. shared/http11.py says why this is not httpx.
        self._pool = http11.Pool(server, ctx, headers, max_connections=100, timeout=timeout)

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        content = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            status, _, raw = await self._pool.request(method, _target(path, params), content, headers)
        except http11.TransportError as e:
            raise ApiError(503, "ServiceUnavailable", f"apiserver unreachable: {e}") from e
        try:
            data: dict[str, Any] = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            data = {"message": raw.decode(errors="replace")}
        if status >= 400:
            raise ApiError(status, str(data.get("reason", "Unknown")),
                           str(data.get("message", raw.decode(errors="replace"))),
                           name=(data.get("details") or {}).get("name"), causes=(data.get("details") or {}).get("causes", []))
        return data

    async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", path_of(res, namespace, name))

    async def list_pages(self, res: Resource, namespace: str = "", *, label_selector: str = "",
                         field_selector: str = "", page_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        """The list's pages as they arrive (following `continue`); every page is at the first one's
        resourceVersion. A caller that consumes each page before the next holds one page at a time."""
        params: dict[str, Any] = {"limit": page_size}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        while True:
            page = await self.request("GET", path_of(res, namespace), params=params)
            token = (page.get("metadata") or {}).get("continue")
            yield page
            if not token:
                return
            params["continue"] = token

    async def list(self, res: Resource, namespace: str = "", *, label_selector: str = "", field_selector: str = "",
                   page_size: int = 500) -> dict[str, Any]:
        """All items (following `continue`), with the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        first: dict[str, Any] | None = None
        async for page in self.list_pages(res, namespace, label_selector=label_selector,
                                          field_selector=field_selector, page_size=page_size):
            if first is None:
                first = page
            items.extend(page.get("items") or [])
        assert first is not None
        first["items"] = items
        first.get("metadata", {}).pop("continue", None)
        first.get("metadata", {}).pop("remainingItemCount", None)
        return first

    async def create(self, res: Resource, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path_of(res, namespace), body=obj)

    async def update(self, res: Resource, obj: dict[str, Any], sub: str = "") -> dict[str, Any]:
        meta = obj["metadata"]
        return await self.request("PUT", path_of(res, meta.get("namespace", ""), meta["name"], sub), body=obj)

    async def update_status(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.update(res, obj, "status")

    async def patch(self, res: Resource, namespace: str, name: str, body: Any, *, patch_type: str = "merge",
                    sub: str = "") -> dict[str, Any]:
        return await self.request("PATCH", path_of(res, namespace, name, sub), body=body,
                                  content_type=PATCH_TYPES[patch_type])

    async def delete(self, res: Resource, namespace: str, name: str, *, grace_period: int | None = None,
                     propagation: str | None = None, uid: str | None = None,
                     resource_version: str | None = None) -> dict[str, Any]:
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            opts["gracePeriodSeconds"] = grace_period
        if propagation:
            opts["propagationPolicy"] = propagation
        pre = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if pre:
            opts["preconditions"] = pre
        return await self.request("DELETE", path_of(res, namespace, name), body=opts)

    async def bind(self, namespace: str, pod: str, node: str, uid: str | None = None) -> None:
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "Binding",
                                "metadata": {"name": pod, "namespace": namespace}, "target": {"kind": "Node", "name": node}}
        if uid:
            body["metadata"]["uid"] = uid
        await self.request("POST", f"/api/v1/namespaces/{namespace}/pods/{pod}/binding", body=body)

    async def watch_lines(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream a `?watch=true` response as decoded events (used by tools and tests), on a
        connection of its own, closed when the generator is; no timeout once the stream is open.
        A failed connection raises ApiError 503 as `request` does."""
        try:
            async with self._pool.stream("GET", _target(path, {**params, "watch": "true"})) as r:
                if r.status >= 400:
                    body = await r.read()
                    raise ApiError(r.status, "Error", body.decode(errors="replace"))
                async with contextlib.aclosing(r.iter_lines()) as lines:
                    async for line in lines:
                        if line.strip():
                            yield orjson.loads(line)
        except http11.TransportError as e:
            raise ApiError(503, "ServiceUnavailable", f"apiserver unreachable: {e}") from e


def _param(value: Any) -> Any:
    if value is True or value is False:
        return "true" if value else "false"
    return "" if value is None else value


def _target(path: str, params: dict[str, Any] | None) -> str:
    """`path` with `params` as its query string (what httpx's `params=` did: true/false for booleans)."""
    if not params:
        return path
    query = urlencode({k: _param(v) for k, v in params.items()}, doseq=True)
    return f"{path}{'&' if '?' in path else '?'}{query}"
