"""What a request asks to do, in authorization terms: Kubernetes' RequestInfoFactory.

Authorization runs before any handler, on the verb, API group, resource, subresource,
namespace and name read from the method, the path and the query, exactly as kube-apiserver's
`k8s.io/apiserver/pkg/endpoints/request.RequestInfoFactory` reads them. Paths outside the
resource prefixes (`/healthz`, `/version`, `/openapi/v3`, and discovery such as `/api` or
`/apis/apps/v1`) are non-resource requests, authorized on the path and the lowercased verb.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
NAMESPACE_SUBRESOURCES = {"status", "finalize"}
# since Kubernetes 1.30 (WebSocket streaming) a GET upgrade to these needs `create`
STREAMING_CREATE = {"exec", "attach", "portforward"}


@dataclass(frozen=True)
class RequestInfo:
    resource_request: bool
    verb: str
    path: str
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def request_info(method: str, path: str, query: str = "") -> RequestInfo:
    """Kubernetes' reading of one request (method upper-case, raw query string)."""
    parts = [p for p in path.strip("/").split("/") if p]
    non_resource = RequestInfo(False, method.lower(), path)
    if not parts or parts[0] not in ("api", "apis"):
        return non_resource
    if parts[0] == "api":
        if len(parts) < 3:  # /api, /api/v1
            return non_resource
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:  # /apis, /apis/apps, /apis/apps/v1
            return non_resource
        group, version, rest = parts[1], parts[2], parts[3:]
    verb = VERBS.get(method.upper(), method.lower())
    namespace = ""
    if rest[0] == "namespaces":
        if len(rest) > 1:
            namespace = rest[1]
            if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
                rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    sub = rest[2] if len(rest) >= 3 else ""
    params = parse_qs(query, keep_blank_values=True)
    if not name:
        if verb == "get":
            verb = "watch" if _true(params.get("watch")) else "list"
        elif verb == "delete":
            verb = "deletecollection"
        if verb in ("list", "watch"):  # a field selector on metadata.name narrows to one object
            for selector in params.get("fieldSelector", []):
                for term in selector.split(","):
                    key, sep, value = term.partition("=")
                    if sep and key.strip() == "metadata.name" and not value.startswith("="):
                        name = value.strip()
    if method.upper() == "GET" and resource == "pods" and sub in STREAMING_CREATE:
        verb = "create"
    return RequestInfo(True, verb, path, group, version, namespace, resource, sub, name)


def _true(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("true", "1")  # type: ignore[index]


def long_running(info: RequestInfo, query: str) -> bool:
    """Watches and streams: not counted against the in-flight limits (as kube-apiserver)."""
    if not info.resource_request:
        return False
    if info.verb == "watch":
        return True
    if info.subresource in ("exec", "attach", "portforward", "proxy"):
        return True
    return info.subresource == "log" and _true(parse_qs(query).get("follow"))
