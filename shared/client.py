"""The async API client every kubenats component uses to talk to the apiserver.

Components read through informers and write through this client, always via the REST API
(never etcd). Failures come back as `shared.errors.ApiError` carrying the server's Status, so
callers branch on `code`/`reason` exactly as client-go users do.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

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
        verify: ssl.SSLContext | bool = True
        if server.startswith("https://"):
            ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
            if cert:
                ctx.load_cert_chain(*cert)
            verify = ctx
        # as many idle connections kept as may be open: a burst must not reopen (and re-handshake) TLS
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self._http = httpx.AsyncClient(base_url=server, headers=headers, verify=verify, timeout=timeout, limits=limits)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        content = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            r = await self._http.request(method, path, content=content, params=params, headers=headers)
        except httpx.HTTPError as e:
            raise ApiError(503, "ServiceUnavailable", f"apiserver unreachable: {e}") from e
        try:
            data: dict[str, Any] = orjson.loads(r.content) if r.content else {}
        except orjson.JSONDecodeError:
            data = {"message": r.text}
        if r.status_code >= 400:
            raise ApiError(r.status_code, str(data.get("reason", "Unknown")), str(data.get("message", r.text)),
                           name=(data.get("details") or {}).get("name"), causes=(data.get("details") or {}).get("causes", []))
        return data

    async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", path_of(res, namespace, name))

    async def list(self, res: Resource, namespace: str = "", *, label_selector: str = "", field_selector: str = "",
                   page_size: int = 500) -> dict[str, Any]:
        """All items (following `continue`), with the list's resourceVersion."""
        params: dict[str, Any] = {"limit": page_size}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items: list[dict[str, Any]] = []
        first: dict[str, Any] | None = None
        while True:
            page = await self.request("GET", path_of(res, namespace), params=params)
            if first is None:
                first = page
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
            params["continue"] = token
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
        """Stream a `?watch=true` response as decoded events (used by tools and tests)."""
        async with self._http.stream("GET", path, params={**params, "watch": "true"}, timeout=None) as r:
            if r.status_code >= 400:
                body = await r.aread()
                raise ApiError(r.status_code, "Error", body.decode(errors="replace"))
            async for line in r.aiter_lines():
                if line.strip():
                    yield orjson.loads(line)
