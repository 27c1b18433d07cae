"""OpenAPI documents: `/openapi/v3` (an index and one document per group-version) and `/openapi/v2`.

Why this exists: kubectl's default `--validate=strict` downloads `/openapi/v2` (a 404 fails
`create` and `apply`), then asks the v3 document of the object's group-version whether the PATCH
operation takes the `fieldValidation` query parameter; if it does, kubectl leaves validation to
the server (kubenats checks unknown fields under `fieldValidation=Strict`, schema.py). `kubectl
explain` renders the v3 schemas, found through the `x-kubernetes-group-version-kind` of the
operations and schemas. Everything is derived from the pydantic models (shared/api/models.py)
and the resource table, under Kubernetes' schema names (`io.k8s.api.core.v1.Pod`), and built
once per process.

Deliberate gaps: `/openapi/v2` answers kubectl's protobuf request with an empty document (which
client-go accepts, see the reference notes) and JSON requests with a Swagger 2.0 rendering of the
same schemas; the PATCH operations do not list `application/strategic-merge-patch+json`, because
the schemas carry no patch merge keys and kubectl would compute strategic patches from them that
replace lists wholesale; without it kubectl uses its compiled-in types, which are exact.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import RedirectResponse, Response

from shared.api.models import KINDS, K8sModel
from shared.api.resources import RESOURCES, Resource

from .discovery import VERSION

SCHEMAS = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
PATCH = META + "Patch"
PROTO_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# Types that live in apimachinery's meta/v1, and types first reached from a non-core kind that
# Kubernetes nevertheless defines elsewhere.
META_TYPES = frozenset({"ObjectMeta", "ManagedFieldsEntry", "OwnerReference", "LabelSelector", "LabelSelectorRequirement",
                        "Condition", "ListMeta", "Status", "StatusDetails", "StatusCause", "Preconditions",
                        "DeleteOptions", "FieldSelectorRequirement", "ShardInfo"})
ELSEWHERE = {
    **dict.fromkeys(("PodTemplateSpec", "PersistentVolumeClaim", "PersistentVolumeClaimStatus",
                     "PersistentVolumeClaimCondition", "ModifyVolumeStatus", "VolumeHealthStatus"), "io.k8s.api.core.v1."),
    **dict.fromkeys(("TopologyConstraint", "WorkloadPodGroupDisruptionMode", "WorkloadPodGroupResourceClaim",
                     "WorkloadPodGroupSchedulingConstraints", "WorkloadPodGroupGangSchedulingPolicy",
                     "WorkloadPodGroupSchedulingPolicy"), "io.k8s.api.scheduling.v1alpha3."),
}
_CLIENT_PREFIX = re.compile(r"^[A-Z][a-z]+V\d+(?:(?:alpha|beta)\d+)?(?=[A-Z])")  # CoreV1EndpointPort


def _package(api_version: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"io.k8s.api.{group.split('.')[0] if group else 'core'}.{version}."


def _models_in(annotation: Any) -> list[type[K8sModel]]:
    if isinstance(annotation, type) and issubclass(annotation, K8sModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def schema_names() -> dict[type[K8sModel], str]:
    """Kubernetes' definition name of every model reachable from a kind."""
    names: dict[type[K8sModel], str] = {}
    for (api_version, _kind), root in KINDS.items():
        queue: list[type[K8sModel]] = [root]
        while queue:
            cls = queue.pop(0)
            if cls in names:
                continue
            short = _CLIENT_PREFIX.sub("", cls.__name__)
            prefix = META if short in META_TYPES else ELSEWHERE.get(short, _package(api_version))
            names[cls] = prefix + short
            for f in cls.model_fields.values():
                queue.extend(_models_in(f.annotation))
    return names


def _doc(cls: type) -> str:
    text = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


def _ref(name: str) -> dict[str, Any]:
    return {"allOf": [{"$ref": SCHEMAS + name}], "default": {}}


def _base(t: Any) -> Any:
    return typing.get_args(t)[0] if typing.get_origin(t) is typing.Annotated else t


def field_schema(annotation: Any, names: dict[type[K8sModel], str]) -> dict[str, Any]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [_base(a) for a in args if a is not type(None)]
        if set(kinds) == {str, int, float}:
            return _ref(QUANTITY)
        if set(kinds) == {int, str}:
            return _ref(INT_OR_STRING)
        if len(kinds) == 1:
            return field_schema(next(a for a in args if a is not type(None)), names)
        return {}
    if origin is typing.Annotated:
        return field_schema(args[0], names)
    if origin is list:
        return {"type": "array", "items": field_schema(args[0], names)}
    if origin is dict:
        return {"type": "object", "additionalProperties": field_schema(args[1], names)}
    if isinstance(annotation, type) and issubclass(annotation, K8sModel):
        return _ref(names[annotation])
    simple = {str: {"type": "string"}, bool: {"type": "boolean"}, int: {"type": "integer", "format": "int64"},
              float: {"type": "number", "format": "double"}}
    return dict(simple.get(annotation, {"type": "object", "x-kubernetes-preserve-unknown-fields": True}))


def _gvk(api_version: str, kind: str) -> dict[str, str]:
    group, _, version = api_version.rpartition("/")
    return {"group": group, "kind": kind, "version": version}


def component_schemas() -> dict[str, dict[str, Any]]:
    names = schema_names()
    out: dict[str, dict[str, Any]] = {
        QUANTITY: {"description": "Quantity is a fixed-point representation of a number (e.g. `500m`, `64Mi`, `2`).",
                   "oneOf": [{"type": "string"}, {"type": "number"}]},
        INT_OR_STRING: {"description": "IntOrString is a type that can hold an int32 or a string.",
                        "format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
        PATCH: {"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request "
                "body.", "type": "object"},
    }
    for cls, name in names.items():
        props = {}
        for attr, f in sorted(cls.model_fields.items(), key=lambda kv: kv[1].alias or kv[0]):
            prop = field_schema(f.annotation, names)
            if f.description:
                prop["description"] = f.description
            props[f.alias or attr] = prop
        out[name] = {"description": _doc(cls), "type": "object", "properties": props}
    for (api_version, kind), cls in KINDS.items():
        out[names[cls]]["x-kubernetes-group-version-kind"] = [_gvk(api_version, kind)]
    for res in RESOURCES:
        item = names[KINDS[(res.api_version, res.kind)]]
        out[item + "List"] = {
            "description": f"{res.kind}List is a list of {res.kind} objects.", "type": "object", "required": ["items"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "items": {"type": "array", "items": _ref(item)}, "metadata": _ref(META + "ListMeta")},
            "x-kubernetes-group-version-kind": [_gvk(res.api_version, res.list_kind)]}
    return out


# ---------------------------------------------------------------------------------- paths
def _param(name: str, where: str, type_: str = "string", description: str = "") -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": where, "description": description or name,
                         "schema": {"type": type_, "uniqueItems": True}}
    if where == "path":
        p["required"] = True
    return p


LIST_PARAMS = [_param("allowWatchBookmarks", "query", "boolean"), _param("continue", "query"),
               _param("fieldSelector", "query"), _param("labelSelector", "query"), _param("limit", "query", "integer"),
               _param("resourceVersion", "query"), _param("resourceVersionMatch", "query"),
               _param("sendInitialEvents", "query", "boolean"), _param("timeoutSeconds", "query", "integer"),
               _param("watch", "query", "boolean")]
WRITE_PARAMS = [_param("dryRun", "query"), _param("fieldManager", "query"),
                _param("fieldValidation", "query", description="fieldValidation instructs the server on how to handle "
                       "objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict.")]
DELETE_PARAMS = [_param("dryRun", "query"), _param("gracePeriodSeconds", "query", "integer"),
                 _param("orphanDependents", "query", "boolean"), _param("propagationPolicy", "query")]
JSON_YAML = ("application/json", "application/yaml")
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")


def _content(schema: str, media: tuple[str, ...] = JSON_YAML) -> dict[str, Any]:
    return {m: {"schema": {"$ref": SCHEMAS + schema}} for m in media}


def _camel(group: str) -> str:
    return "".join(p.capitalize() for p in (group.removesuffix(".k8s.io") or "core").split("."))


def _op(verb: str, action: str, op_id: str, gvk: dict[str, str], response: str, *, params: list[dict[str, Any]],
        body: tuple[str, tuple[str, ...]] | None = None, codes: tuple[str, ...] = ("200",)) -> dict[str, Any]:
    op: dict[str, Any] = {
        "description": f"{verb} {gvk['kind']}", "operationId": op_id, "parameters": params,
        "responses": {**{c: {"description": "OK" if c == "200" else "Created" if c == "201" else "Accepted",
                             "content": _content(response)} for c in codes},
                      "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
    if body is not None:
        op["requestBody"] = {"content": _content(body[0], body[1]), "required": True}
    return op


def resource_paths(res: Resource, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The operations Kubernetes documents for one resource, named as kube-apiserver names them.

    `names` maps each kind (`Pod`, `Scale`, `Binding`) to its schema name."""
    kind_schema, status = names[res.kind], META + "Status"
    gvk = _gvk(res.api_version, res.kind)
    prefix = f"/apis/{res.group}/{res.version}" if res.group else "/api/v1"
    tag = f"{_camel(res.group)}{res.version.capitalize()}"
    scope = "Namespaced" if res.namespaced else ""
    coll = f"{prefix}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{prefix}/{res.plural}"
    ns_param = [_param("namespace", "path")] if res.namespaced else []
    item_params = [_param("name", "path"), *ns_param]
    kind_id = f"{tag}{scope}{res.kind}"
    list_schema = kind_schema + "List"
    paths: dict[str, dict[str, Any]] = {
        coll: {"parameters": ns_param,
               "get": _op("list or watch objects of kind", "list", f"list{kind_id}", gvk, list_schema, params=LIST_PARAMS),
               "post": _op("create a", "post", f"create{kind_id}", gvk, kind_schema, params=WRITE_PARAMS,
                           body=(kind_schema, JSON_YAML), codes=("200", "201", "202")),
               "delete": _op("delete collection of", "deletecollection", f"delete{tag}Collection{scope}{res.kind}", gvk,
                             status, params=[*DELETE_PARAMS, *LIST_PARAMS], body=(META + "DeleteOptions", JSON_YAML))},
        f"{coll}/{{name}}": {
            "parameters": item_params,
            "get": _op("read the specified", "get", f"read{kind_id}", gvk, kind_schema, params=[]),
            "put": _op("replace the specified", "put", f"replace{kind_id}", gvk, kind_schema, params=WRITE_PARAMS,
                       body=(kind_schema, JSON_YAML), codes=("200", "201")),
            "patch": _op("partially update the specified", "patch", f"patch{kind_id}", gvk, kind_schema,
                         params=[*WRITE_PARAMS, _param("force", "query", "boolean")], body=(PATCH, PATCH_TYPES),
                         codes=("200", "201")),
            "delete": _op("delete a", "delete", f"delete{kind_id}", gvk, kind_schema, params=DELETE_PARAMS,
                          body=(META + "DeleteOptions", JSON_YAML), codes=("200", "202"))},
    }
    if res.namespaced:
        paths[f"{prefix}/{res.plural}"] = {"get": _op("list or watch objects of kind", "list",
                                                      f"list{tag}{res.kind}ForAllNamespaces", gvk, list_schema,
                                                      params=LIST_PARAMS)}
    for sub in res.subresources:
        if sub not in ("status", "scale"):
            continue
        sub_gvk, schema = (gvk, kind_schema) if sub == "status" else (_gvk("autoscaling/v1", "Scale"), names["Scale"])
        sub_id = f"{kind_id}{sub.capitalize()}"
        paths[f"{coll}/{{name}}/{sub}"] = {
            "parameters": item_params,
            "get": _op(f"read {sub} of the specified", "get", f"read{sub_id}", sub_gvk, schema, params=[]),
            "put": _op(f"replace {sub} of the specified", "put", f"replace{sub_id}", sub_gvk, schema,
                       params=WRITE_PARAMS, body=(schema, JSON_YAML), codes=("200", "201")),
            "patch": _op(f"partially update {sub} of the specified", "patch", f"patch{sub_id}", sub_gvk, schema,
                         params=[*WRITE_PARAMS, _param("force", "query", "boolean")], body=(PATCH, PATCH_TYPES),
                         codes=("200", "201"))}
    if "binding" in res.subresources:
        paths[f"{coll}/{{name}}/binding"] = {"parameters": item_params, "post": _op(
            "create binding of a", "post", f"create{kind_id}Binding", _gvk("v1", "Binding"), names["Binding"],
            params=WRITE_PARAMS, body=(names["Binding"], JSON_YAML), codes=("200", "201", "202"))}
    return paths


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMAS):
            found.add(ref[len(SCHEMAS):])
        for v in node.values():
            _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


def _closure(start: Any, schemas: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    todo: set[str] = set()
    _refs(start, todo)
    done: dict[str, dict[str, Any]] = {}
    while todo:
        n = todo.pop()
        if n in done:
            continue
        done[n] = schemas[n]
        _refs(schemas[n], todo)
    return dict(sorted(done.items()))


# ------------------------------------------------------------------------------ documents
@dataclass(frozen=True)
class Spec:
    index: bytes
    documents: dict[str, tuple[bytes, str]]  # "api/v1" -> (JSON, hash)
    v2: bytes


def _v2_schema(node: Any) -> Any:
    """A v3 schema as Swagger 2.0 writes it: `$ref` to definitions, no oneOf, no allOf wrappers."""
    if isinstance(node, list):
        return [_v2_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    if "allOf" in node and len(node["allOf"]) == 1:
        out = {k: v for k, v in node.items() if k not in ("allOf", "default")}
        out["$ref"] = node["allOf"][0]["$ref"]
        return _v2_schema(out)
    out = {k: _v2_schema(v) for k, v in node.items() if k != "oneOf"}
    if "oneOf" in node:
        out["type"] = "string"
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace(SCHEMAS, "#/definitions/")
    return out


def _v2_operation(op: dict[str, Any]) -> dict[str, Any]:
    params = [{k: v for k, v in p.items() if k != "schema"} | {"type": p["schema"]["type"]} for p in op["parameters"]]
    out: dict[str, Any] = {k: v for k, v in op.items() if k not in ("parameters", "responses", "requestBody")}
    if "requestBody" in op:
        content = op["requestBody"]["content"]
        params.append({"name": "body", "in": "body", "required": True,
                       "schema": _v2_schema(next(iter(content.values()))["schema"])})
        out["consumes"] = list(content)
    out["parameters"] = params
    out["produces"] = list(JSON_YAML)
    out["schemes"] = ["https"]
    out["responses"] = {code: {"description": r["description"], **(
        {"schema": _v2_schema(next(iter(r["content"].values()))["schema"])} if "content" in r else {})}
        for code, r in op["responses"].items()}
    return out


@functools.cache
def spec() -> Spec:
    """Build every document once per process."""
    schemas = component_schemas()
    model_names = schema_names()
    by_kind = {kind: model_names[cls] for (_av, kind), cls in KINDS.items()}
    by_gv: dict[str, dict[str, Any]] = {}
    for res in RESOURCES:
        key = f"apis/{res.group}/{res.version}" if res.group else "api/v1"
        by_gv.setdefault(key, {}).update(resource_paths(res, by_kind))
    documents: dict[str, tuple[bytes, str]] = {}
    all_paths: dict[str, Any] = {}
    for key, paths in by_gv.items():
        doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
               "paths": dict(sorted(paths.items())), "components": {"schemas": _closure(paths, schemas)}}
        body = orjson.dumps(doc)
        documents[key] = (body, hashlib.sha512(body).hexdigest().upper())
        all_paths.update(paths)
    index = {"paths": {k: {"serverRelativeURL": f"/openapi/v3/{k}?hash={h}"} for k, (_b, h) in sorted(documents.items())}}
    v2 = {"swagger": "2.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
          "paths": {p: {verb: (_v2_operation(op) if verb != "parameters" else
                               [{k: v for k, v in q.items() if k != "schema"} | {"type": "string"} for q in op])
                        for verb, op in item.items()} for p, item in sorted(all_paths.items())},
          "definitions": _v2_schema(copy.deepcopy(schemas))}
    return Spec(orjson.dumps(index), documents, orjson.dumps(v2))


# ------------------------------------------------------------------------------- handlers
def v3_index() -> Response:
    return Response(spec().index, media_type="application/json", headers={"Cache-Control": "no-cache, private"})


def v3_document(path: str, want_hash: str | None) -> Response:
    doc = spec().documents.get(path.strip("/"))
    if doc is None:
        return Response(b"404 page not found\n", status_code=404, media_type="text/plain")
    body, digest = doc
    if want_hash and want_hash != digest:  # an old hash: send the client to the current document
        return RedirectResponse(f"/openapi/v3/{path.strip('/')}?hash={digest}", status_code=301)
    cache = "public, immutable" if want_hash else "no-cache, private"
    return Response(body, media_type="application/json", headers={"Etag": f'"{digest}"', "Cache-Control": cache})


def v2(accept: str) -> Response:
    """JSON for JSON clients; kubectl's protobuf request gets the empty document client-go accepts."""
    for entry in accept.split(","):
        media = entry.split(";")[0].strip().lower()
        if "protobuf" in media:
            return Response(b"", media_type=PROTO_V2)
        if media in ("application/json", "*/*", "application/*", ""):
            break
    return Response(spec().v2, media_type="application/json")
