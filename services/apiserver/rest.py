"""Kubernetes REST paths mapped onto `Objects`.

One handler parses `/api/v1/...` and `/apis/<group>/<version>/...` exactly as the real API
server lays them out (namespaced and cluster-scoped collections, all-namespace lists, objects,
subresources), decodes JSON or YAML bodies, picks the patch type from the Content-Type and
turns every failure into a Kubernetes Status. Nothing here touches etcd or NATS directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shared import errors, patch
from shared.api.resources import Resource, lookup
from shared.errors import ApiError
from shared.log import event

from .objects import Objects, to_scale
from .podproxy import PodProxy
from .watch import Watcher, WatchHub

log = logging.getLogger("kubenats.rest")
JSON = "application/json"
Renderer = Callable[[Request, Resource, dict[str, Any]], dict[str, Any]]


def json_response(body: Any, code: int = 200, warnings: list[str] | None = None) -> Response:
    headers = {}
    if warnings:
        # header values must be Latin-1: escape anything else (field names can be arbitrary text)
        safe = ["".join(c if 32 <= ord(c) < 127 and c != '"' else f"\\u{ord(c):04x}" for c in w) for w in warnings[:10]]
        headers["Warning"] = ", ".join(f'299 - "{w}"' for w in safe)
    return Response(orjson.dumps(body), status_code=code, media_type=JSON, headers=headers)


def status_response(e: ApiError) -> Response:
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
    return Response(orjson.dumps(e.status()), status_code=e.code, media_type=JSON, headers=headers)


# Registries that set ReturnDeletedObject in kube-apiserver: the deleted object is the response.
RETURN_DELETED_OBJECT = frozenset({("", "pods"), ("", "services"), ("", "serviceaccounts"), ("", "namespaces")})


def deleted_status(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    details = {"name": meta.get("name", ""), "group": res.group, "kind": res.plural, "uid": meta.get("uid", "")}
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


@dataclass
class Target:
    res: Resource
    namespace: str
    name: str
    sub: str


def parse_path(group: str, version: str, parts: list[str]) -> Target:
    """Resolve the segments after the group/version prefix."""
    def res_of(plural: str) -> Resource:
        r = lookup(group, version, plural)
        if r is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return r

    if parts and parts[0] == "namespaces" and len(parts) >= 3 and not (group == "" and len(parts) == 3 and parts[2] in ("status", "finalize")):
        ns = parts[1]
        r = res_of(parts[2])
        if not r.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = parts[3] if len(parts) > 3 else ""
        sub = "/".join(parts[4:])
        return _check_sub(Target(r, ns, name, sub))
    if not parts:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    r = res_of(parts[0])
    name = parts[1] if len(parts) > 1 else ""
    if r.namespaced and name:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return _check_sub(Target(r, "", name, "/".join(parts[2:])))


def _check_sub(t: Target) -> Target:
    if t.sub and t.sub not in t.res.subresources:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return t


async def read_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise errors.bad_request("the request body is empty")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/vnd.kubernetes.protobuf", "application/cbor", "application/apply-patch+cbor"):
        # kubectl's typed clients (create deployment/configmap/namespace, run) send protobuf
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                       "media types include: application/json, application/yaml")
    if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error converting YAML to JSON: {e}".splitlines()[0]) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if ctype in ("", "*/*", "text/plain"):
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError:
                pass
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None


def _bool(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("true", "1")


def _int(request: Request, name: str, default: int = 0) -> int:
    v = request.query_params.get(name)
    if v in (None, ""):
        return default
    try:
        return int(v)
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {v!r}") from None


def _field_validation(request: Request) -> str:
    v = request.query_params.get("fieldValidation", "Warn") or "Warn"
    if v not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(f'fieldValidation parameter unsupported: "{v}"; must be "Ignore", "Warn" or "Strict"')
    return v


def _dry_run(request: Request) -> bool:
    values = request.query_params.getlist("dryRun")
    for v in values:
        if v != "All":
            raise errors.bad_request(f'Invalid dryRun "{v}": supported values: "All"')
    return bool(values)


class Rest:
    def __init__(self, objects: Objects, hub: WatchHub, render: Renderer | None = None,
                 pods: PodProxy | None = None) -> None:
        self.objects = objects
        self.hub = hub
        self.render = render
        self.pods = pods or PodProxy(objects)

    async def handle(self, request: Request, group: str, version: str, parts: list[str]) -> Response:
        started = time.perf_counter()
        method = request.method
        try:
            t = parse_path(group, version, parts)
            resp = await self._dispatch(request, t)
        except ApiError as e:
            resp = status_response(e)
        except Exception as e:  # never a traceback to the client
            log.exception("request failed")
            resp = status_response(errors.internal(type(e).__name__ + ": " + str(e)))
        if method != "GET" or resp.status_code >= 400:
            event(log, "request", method=method, path=request.url.path, code=resp.status_code,
                  ms=round((time.perf_counter() - started) * 1000, 2))
        return resp

    async def _dispatch(self, request: Request, t: Target) -> Response:
        if t.res.plural == "pods" and t.sub in ("log", "exec"):
            # proxied to the pod's kubelet (before read_body: a POST exec has no body)
            return await self.pods.handle(request, t.namespace, t.name, t.sub)
        m = request.method
        o = self.objects
        if m == "GET":
            if not t.name:
                if _bool(request, "watch"):
                    return self._watch(request, t)
                body = await o.list(
                    t.res,
                    t.namespace,
                    label_selector=request.query_params.get("labelSelector", ""),
                    field_selector=request.query_params.get("fieldSelector", ""),
                    limit=_int(request, "limit"),
                    continue_token=request.query_params.get("continue", ""),
                )
                return json_response(self._render_list(request, t.res, body))
            if t.sub == "scale":
                return json_response(await o.get_scale(t.res, t.namespace, t.name))
            obj = await o.get(t.res, t.namespace, t.name)
            return json_response(self._render_one(request, t.res, obj))
        if m == "POST":
            body = await read_body(request)
            if t.sub == "binding" and t.res.plural == "pods":
                await o.bind(t.namespace, t.name, body)
                return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)
            if t.name:
                raise errors.method_not_allowed()
            if t.res.namespaced and not t.namespace:
                raise errors.method_not_allowed()
            obj, warnings = await o.create(t.res, t.namespace, body, field_validation=_field_validation(request),
                                           dry_run=_dry_run(request))
            return json_response(self._render_one(request, t.res, obj), 201, warnings)
        if m == "PUT":
            if not t.name:
                raise errors.method_not_allowed()
            body = await read_body(request)
            if t.sub == "scale":
                return json_response(await self._put_scale(t, body))
            obj, warnings = await o.update(t.res, t.namespace, t.name, body, subresource=t.sub,
                                           field_validation=_field_validation(request), dry_run=_dry_run(request))
            return json_response(self._render_one(request, t.res, obj), 200, warnings)
        if m == "PATCH":
            if not t.name:
                raise errors.method_not_allowed()
            body = await read_body(request)
            apply = _patcher(request.headers.get("content-type", ""), body)
            if t.sub == "scale":
                return json_response(await self._patch_scale(t, apply))
            obj, warnings = await o.patch(t.res, t.namespace, t.name, apply, subresource=t.sub,
                                          field_validation=_field_validation(request), dry_run=_dry_run(request))
            return json_response(self._render_one(request, t.res, obj), 200, warnings)
        if m == "DELETE":
            raw = await request.body()
            options: dict[str, Any] = {}
            if raw.strip():
                try:
                    parsed = orjson.loads(raw)
                except orjson.JSONDecodeError as e:
                    raise errors.bad_request(f"invalid DeleteOptions: {e}") from None
                if not isinstance(parsed, dict):
                    raise errors.bad_request("invalid DeleteOptions: not an object")
                options = parsed
            for q in ("gracePeriodSeconds", "propagationPolicy", "orphanDependents"):
                if q in request.query_params and q not in options:
                    v: Any = request.query_params[q]
                    options[q] = int(v) if q == "gracePeriodSeconds" and v.lstrip("-").isdigit() else (
                        v.lower() == "true" if q == "orphanDependents" else v)
            if not t.name:
                return await self._delete_collection(request, t, options)
            obj, gone = await o.delete(t.res, t.namespace, t.name, options, dry_run=_dry_run(request))
            if gone and (t.res.group, t.res.plural) not in RETURN_DELETED_OBJECT:
                # kube-apiserver's Store answers an immediate delete with a Status whose details carry
                # the uid (kubectl delete reads it); a pending delete returns the object
                return json_response(deleted_status(t.res, obj))
            return json_response(self._render_one(request, t.res, obj), 200)
        raise errors.method_not_allowed()

    async def _delete_collection(self, request: Request, t: Target, options: dict[str, Any]) -> Response:
        if t.res.namespaced and not t.namespace:
            raise errors.method_not_allowed()
        listing = await self.objects.list(t.res, t.namespace,
                                          label_selector=request.query_params.get("labelSelector", ""),
                                          field_selector=request.query_params.get("fieldSelector", ""))
        deleted = []
        for item in listing["items"]:
            try:
                obj, _ = await self.objects.delete(t.res, t.namespace, item["metadata"]["name"], options,
                                                   dry_run=_dry_run(request))
                deleted.append(obj)
            except ApiError as e:
                if e.code != 404:
                    raise
        listing["items"] = deleted
        return json_response(listing)

    async def _put_scale(self, t: Target, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise errors.bad_request("a Scale needs spec")
        return await self._scale_to(t, body)

    async def _patch_scale(self, t: Target, apply: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        cur = await self.objects.get_scale(t.res, t.namespace, t.name)
        return await self._scale_to(t, apply(cur))

    async def _scale_to(self, t: Target, scale: dict[str, Any]) -> dict[str, Any]:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid("Scale", t.name, [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                 "message": f"Invalid value: {replicas}: must be greater than or equal to 0"}], "autoscaling")
        pinned = (scale.get("metadata") or {}).get("resourceVersion")

        def mutate(obj: dict[str, Any]) -> None:
            if pinned and str(pinned) != obj["metadata"]["resourceVersion"]:
                raise errors.conflict(t.res.plural, t.name, t.res.group)
            obj.setdefault("spec", {})["replicas"] = replicas

        obj = await self.objects.guaranteed_update(t.res, t.namespace, t.name, mutate, retry=not pinned)
        return to_scale(t.res, obj)

    def _render_one(self, request: Request, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        return self.render(request, res, obj) if self.render else obj

    def _render_list(self, request: Request, res: Resource, body: dict[str, Any]) -> dict[str, Any]:
        return self.render(request, res, body) if self.render else body

    def _watch(self, request: Request, t: Target) -> Response:
        from . import objects as objmod

        label = objmod._label_selector(request.query_params.get("labelSelector", ""))
        fields = objmod._field_selector(t.res, request.query_params.get("fieldSelector", ""))
        if t.name:
            raise errors.bad_request("watch is served on collections; use fieldSelector=metadata.name=<name>")
        rv = request.query_params.get("resourceVersion", "")
        since: int | None = None
        initial = None
        if rv in ("", "0"):
            async def initial_list() -> tuple[list[dict[str, Any]], int]:
                body = await self.objects.list(t.res, t.namespace, label_selector=request.query_params.get("labelSelector", ""),
                                               field_selector=request.query_params.get("fieldSelector", ""))
                return body["items"], int(body["metadata"]["resourceVersion"])
            initial = initial_list
        else:
            since = objmod._parse_rv(rv)
        timeout = float(_int(request, "timeoutSeconds", 1800)) or 1800.0
        w = Watcher(t.res, t.namespace, label, fields)

        def render(etype: str, obj: dict[str, Any], raw: bytes | None) -> bytes:
            if self.render is not None:
                rendered = self.render(request, t.res, obj)
                if rendered is not obj:  # a Table or metadata: the published bytes no longer fit
                    obj, raw = rendered, None
            if raw is not None:
                return raw + b"\n"
            return orjson.dumps({"type": etype, "object": obj}) + b"\n"

        gen = self.hub.stream(w, since, initial, timeout, _bool(request, "allowWatchBookmarks"), render)
        return StreamingResponse(gen, media_type=JSON, headers={"Cache-Control": "no-cache"})


def _patcher(content_type: str, body: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    ctype = content_type.split(";")[0].strip().lower()

    def wrap(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def apply(cur: dict[str, Any]) -> dict[str, Any]:
            try:
                out = fn(cur)
            except patch.PatchError as e:
                raise ApiError(422, "Invalid", str(e)) from None
            if not isinstance(out, dict):
                raise errors.bad_request("the patch produced something that is not an object")
            return out
        return apply

    if ctype == "application/merge-patch+json":
        if not isinstance(body, dict):
            raise errors.bad_request("a merge patch must be a JSON object")
        return wrap(lambda cur: patch.json_merge_patch(cur, body))
    if ctype == "application/json-patch+json":
        if not isinstance(body, list):
            raise errors.bad_request("a JSON patch must be a list of operations")
        return wrap(lambda cur: patch.json_patch(cur, body))
    if ctype == "application/strategic-merge-patch+json":
        if not isinstance(body, dict):
            raise errors.bad_request("a strategic merge patch must be a JSON object")
        return wrap(lambda cur: patch.strategic_merge_patch(cur, body))
    if ctype == "application/apply-patch+yaml":
        if not isinstance(body, dict):
            raise errors.bad_request("an apply patch must be an object")
        # server-side apply approximated by a merge of the applied configuration
        return wrap(lambda cur: patch.json_merge_patch(cur, body))
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: "
                   f"application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
                   f"application/strategic-merge-patch+json (got {ctype!r})")
