"""Server-side Tables (`kubectl get`'s columns) and partial-object-metadata responses.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...,application/json`
and prints exactly the columns and cells the server returns; a plain object or list would make
it fall back to NAME/AGE. `render` is the hook `rest.Rest` calls for every GET, list, watch
event and write response: it negotiates the Accept header like the real API server (first
acceptable media type wins) and answers a `meta.k8s.io` Table, a `PartialObjectMetadata(List)`,
or the body unchanged. Watches get one Table per event; only the first carries the
columnDefinitions, as kube-apiserver's watch encoder does. Kinds without a printer get
Kubernetes' default table (NAME, CREATED AT). The printers themselves live here and in
`tables_workloads`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from shared.api.resources import Resource
from shared.errors import ApiError, bad_request

from .tables_workloads import (
    AGE,
    NAME,
    NAME_DOC,
    WORKLOAD_PRINTERS,
    Cell,
    Column,
    Obj,
    Printer,
    Row,
    age,
    col,
    format_labels,
    items,
    meta,
    name,
    num,
    since,
    sub,
)

META_GROUP = "meta.k8s.io"


@dataclass(frozen=True)
class Wanted:
    """What the client negotiated: `as` kind (Table, PartialObjectMetadata[List]) and meta version."""

    kind: str
    version: str


def negotiate(accept: str) -> Wanted | None:
    """The first acceptable entry of the Accept header; None means the plain JSON object."""
    for entry in accept.split(","):
        parts = [p.strip() for p in entry.split(";")]
        media = parts[0].lower()
        params = {}
        for p in parts[1:]:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip()
        if media not in ("application/json", "application/*", "*/*", ""):
            continue  # protobuf, yaml, cbor...: not served, try the next one
        as_kind = params.get("as", "")
        if not as_kind:
            return None
        if params.get("g") == META_GROUP and params.get("v") in ("v1", "v1beta1") and as_kind in (
                "Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
            return Wanted(as_kind, params["v"])
    return None


# ------------------------------------------------------------------------- other printers
NODE_COLUMNS = [
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    col("Internal-IP", "string", "List of addresses reachable to the node.", priority=1),
    col("External-IP", "string", "List of addresses reachable to the node.", priority=1),
    col("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        priority=1),
    col("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        priority=1),
    col("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API "
        "(e.g. containerd://1.4.2).", priority=1),
]


def _node_address(node: Obj, kind: str) -> str:
    for a in items(sub(node, "status").get("addresses")):
        if isinstance(a, Mapping) and a.get("type") == kind:
            return str(a.get("address") or "")
    return "<none>"


def print_node(node: Obj) -> Row:
    status_parts = []
    for c in items(sub(node, "status").get("conditions")):
        if isinstance(c, Mapping) and c.get("type") == "Ready":
            status_parts = ["Ready" if c.get("status") == "True" else "NotReady"]
    if not status_parts:
        status_parts = ["Unknown"]
    if sub(node, "spec").get("unschedulable") is True:
        status_parts.append("SchedulingDisabled")
    roles: set[str] = set()
    labels = meta(node).get("labels")
    for k, v in (labels.items() if isinstance(labels, Mapping) else ()):
        if k.startswith("node-role.kubernetes.io/") and k[len("node-role.kubernetes.io/"):]:
            roles.add(k[len("node-role.kubernetes.io/"):])
        elif k == "kubernetes.io/role" and v:
            roles.add(str(v))
    info = sub(node, "status", "nodeInfo")
    return Row([name(node), ",".join(status_parts), ",".join(sorted(roles)) or "<none>", age(node),
                str(info.get("kubeletVersion") or ""), _node_address(node, "InternalIP"),
                _node_address(node, "ExternalIP"), str(info.get("osImage") or "") or "<unknown>",
                str(info.get("kernelVersion") or "") or "<unknown>",
                str(info.get("containerRuntimeVersion") or "") or "<unknown>"])


NAMESPACE_COLUMNS = [NAME, col("Status", "string", "The status of the namespace"), AGE]


def print_namespace(obj: Obj) -> Row:
    return Row([name(obj), str(sub(obj, "status").get("phase") or ""), age(obj)])


SERVICE_COLUMNS = [
    NAME,
    col("Type", "string", "type determines how the Service is exposed."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also "
        "accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    col("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.",
        priority=1),
]


def _external_ip(svc: Obj) -> str:
    spec = sub(svc, "spec")
    external = [str(ip) for ip in items(spec.get("externalIPs"))]
    stype = spec.get("type")
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if stype == "LoadBalancer":
        found = set()
        for ing in items(sub(svc, "status", "loadBalancer").get("ingress")):
            if isinstance(ing, Mapping) and (ing.get("ip") or ing.get("hostname")):
                found.add(str(ing.get("ip") or ing.get("hostname")))
        lb = ",".join(sorted(found))
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if stype == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def print_service(svc: Obj) -> Row:
    spec = sub(svc, "spec")
    ips = items(spec.get("clusterIPs")) or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = []
    for p in items(spec.get("ports")):
        if not isinstance(p, Mapping):
            continue
        node_port = num(p.get("nodePort"))
        port, proto = num(p.get("port")), p.get("protocol") or ""
        ports.append(f"{port}:{node_port}/{proto}" if node_port > 0 else f"{port}/{proto}")
    return Row([name(svc), str(spec.get("type") or ""), str(ips[0]) if ips else "<none>", _external_ip(svc),
                ",".join(ports) or "<none>", age(svc), format_labels(spec.get("selector"))])


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _more(shown: list[str], count: int, limit: int, empty: str) -> str:
    text = ",".join(shown)
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or empty


ENDPOINTS_COLUMNS = [NAME, col("Endpoints", "string", "The set of all endpoints is the union of all subsets."), AGE]


def print_endpoints(obj: Obj) -> Row:
    subsets = [s for s in items(obj.get("subsets")) if isinstance(s, Mapping)]
    shown: list[str] = []
    count = 0
    for ss in subsets:
        addrs = [str(a.get("ip") or "") for a in items(ss.get("addresses")) if isinstance(a, Mapping)]
        ports = [p for p in items(ss.get("ports")) if isinstance(p, Mapping)]
        if not ports:
            count += len(addrs)
            shown.extend(addrs[: max(0, 3 - len(shown))])
            continue
        for p in ports:
            count += len(addrs)
            for ip in addrs:
                if len(shown) < 3:
                    shown.append(_host_port(ip, num(p.get("port"))))
    return Row([name(obj), _more(shown, count, 3, "") if subsets else "<none>", age(obj)])


ENDPOINTSLICE_COLUMNS = [
    NAME,
    col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
    col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
    col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
    AGE,
]


def print_endpointslice(obj: Obj) -> Row:
    ports = [p for p in items(obj.get("ports")) if isinstance(p, Mapping)]
    port_text = [str(p["port"]) if isinstance(p.get("port"), int) else str(p.get("name")) if p.get("name") is not None
                 else "*" for p in ports]
    addresses = [str(a) for e in items(obj.get("endpoints")) if isinstance(e, Mapping) for a in items(e.get("addresses"))]
    return Row([name(obj), str(obj.get("addressType") or ""), _more(port_text[:3], len(port_text), 3, "<unset>"),
                _more(addresses[:3], len(addresses), 3, "<unset>"), age(obj)])


CONFIGMAP_COLUMNS = [NAME, col("Data", "string", "Data contains the configuration data."), AGE]


def print_configmap(obj: Obj) -> Row:
    data, binary = obj.get("data"), obj.get("binaryData")
    return Row([name(obj), len(data if isinstance(data, Mapping) else {}) + len(binary if isinstance(binary, Mapping) else {}),
                age(obj)])


SECRET_COLUMNS = [
    NAME,
    col("Type", "string", "Used to facilitate programmatic handling of secret data."),
    col("Data", "string", "Data contains the secret data."),
    AGE,
]


def print_secret(obj: Obj) -> Row:
    data = obj.get("data")
    return Row([name(obj), str(obj.get("type") or ""), len(data if isinstance(data, Mapping) else {}), age(obj)])


SERVICEACCOUNT_COLUMNS = [NAME, col("Secrets", "string", "Secrets is a list of the secrets in the same namespace "
                                    "that pods running using this ServiceAccount are allowed to use."), AGE]


def print_serviceaccount(obj: Obj) -> Row:
    return Row([name(obj), len(items(obj.get("secrets"))), age(obj)])


EVENT_COLUMNS = [
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the "
        "transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    col("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string "
        "should contain a valid JSON/Go field access statement.", priority=1),
    col("Source", "string", "The component reporting this event. Should be a short machine understandable string.",
        priority=1),
    col("Message", "string", "A human-readable description of the status of this operation."),
    col("First Seen", "string", "The time at which the event was first recorded.", priority=1),
    col("Count", "string", "The number of times this event has occurred.", priority=1),
    col("Name", "string", NAME_DOC, priority=1, fmt="name"),
]


def print_event(ev: Obj) -> Row:
    first = since(ev["firstTimestamp"]) if ev.get("firstTimestamp") else since(ev.get("eventTime"))
    last = since(ev["lastTimestamp"]) if ev.get("lastTimestamp") else first
    count = num(ev.get("count"))
    series = ev.get("series")
    if isinstance(series, Mapping):
        last, count = since(series.get("lastObservedTime")), num(series.get("count"))
    elif count == 0:
        count = 1
    involved = sub(ev, "involvedObject")
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = sub(ev, "source")
    component = str(source.get("component") or ev.get("reportingComponent") or "")
    instance = str(source.get("host") or ev.get("reportingInstance") or "")
    return Row([last, str(ev.get("type") or ""), str(ev.get("reason") or ""), target,
                str(involved.get("fieldPath") or ""), f"{component}, {instance}" if instance else component,
                str(ev.get("message") or "").strip(), first, count, name(ev)])


LEASE_COLUMNS = [NAME, col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."),
                 AGE]


def print_lease(obj: Obj) -> Row:
    holder = sub(obj, "spec").get("holderIdentity")
    return Row([name(obj), holder if isinstance(holder, str) else "", age(obj)])


def _binding_columns(what: str) -> list[Column]:
    return [NAME, col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in "
                      "the global namespace."), AGE,
            col("Users", "string", f"Users in the {what}", priority=1),
            col("Groups", "string", f"Groups in the {what}", priority=1),
            col("ServiceAccounts", "string", f"ServiceAccounts in the {what}", priority=1)]


def print_rolebinding(obj: Obj) -> Row:
    ref = sub(obj, "roleRef")
    users, groups, sas = [], [], []
    for s in items(obj.get("subjects")):
        if not isinstance(s, Mapping):
            continue
        if s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace') or ''}/{s.get('name') or ''}")
        elif s.get("kind") == "User":
            users.append(str(s.get("name") or ""))
        elif s.get("kind") == "Group":
            groups.append(str(s.get("name") or ""))
    return Row([name(obj), f"{ref.get('kind') or ''}/{ref.get('name') or ''}", age(obj),
                ", ".join(users), ", ".join(groups), ", ".join(sas)])


DEFAULT_COLUMNS = [NAME, col("Created At", "date", "CreationTimestamp is a timestamp representing the server time "
                             "when this object was created.")]


def print_default(obj: Obj) -> Row:
    """rest.defaultTableConvertor: the name and the creation time in RFC 3339."""
    created = meta(obj).get("creationTimestamp")
    return Row([name(obj), created if isinstance(created, str) else "0001-01-01T00:00:00Z"])


RBAC = "rbac.authorization.k8s.io"
PRINTERS: dict[tuple[str, str], tuple[list[Column], Printer]] = {
    **WORKLOAD_PRINTERS,
    ("", "nodes"): (NODE_COLUMNS, print_node),
    ("", "namespaces"): (NAMESPACE_COLUMNS, print_namespace),
    ("", "services"): (SERVICE_COLUMNS, print_service),
    ("", "endpoints"): (ENDPOINTS_COLUMNS, print_endpoints),
    ("", "configmaps"): (CONFIGMAP_COLUMNS, print_configmap),
    ("", "secrets"): (SECRET_COLUMNS, print_secret),
    ("", "serviceaccounts"): (SERVICEACCOUNT_COLUMNS, print_serviceaccount),
    ("", "events"): (EVENT_COLUMNS, print_event),
    ("coordination.k8s.io", "leases"): (LEASE_COLUMNS, print_lease),
    ("discovery.k8s.io", "endpointslices"): (ENDPOINTSLICE_COLUMNS, print_endpointslice),
    (RBAC, "rolebindings"): (_binding_columns("roleBinding"), print_rolebinding),
    (RBAC, "clusterrolebindings"): (_binding_columns("clusterRoleBinding"), print_rolebinding),
}


def printer_for(res: Resource) -> tuple[list[Column], Printer]:
    return PRINTERS.get((res.group, res.plural), (DEFAULT_COLUMNS, print_default))


# ------------------------------------------------------------------------------ rendering
def _is_list(body: Mapping[str, Any]) -> bool:
    return isinstance(body.get("items"), list) and str(body.get("kind") or "").endswith("List")


def _partial(obj: Obj, version: str) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"{META_GROUP}/{version}", "metadata": dict(meta(obj))}


def _row_object(obj: Obj, include: str, version: str) -> dict[str, Any] | None:
    if include == "Object":
        return dict(obj)
    if include == "None":
        return None
    return _partial(obj, version)


def _include_object(request: Request) -> str:
    value = request.query_params.get("includeObject", "") or "Metadata"
    if value not in ("Metadata", "Object", "None"):
        raise bad_request(f'unrecognized includeObject value: "{value}"')
    return value


def table(res: Resource, body: Mapping[str, Any], *, version: str = "v1", include: str = "Metadata",
          headers: bool = True) -> dict[str, Any]:
    """The meta.k8s.io Table for one object or a list."""
    columns, printer = printer_for(res)
    objs: list[Obj] = [i for i in body["items"] if isinstance(i, Mapping)] if _is_list(body) else [body]
    list_meta = meta(body)
    out_meta: dict[str, Any] = {}
    if list_meta.get("resourceVersion"):
        out_meta["resourceVersion"] = list_meta["resourceVersion"]
    if _is_list(body):
        for key in ("continue", "remainingItemCount"):
            if list_meta.get(key) not in (None, ""):
                out_meta[key] = list_meta[key]
    elif not meta(body).get("name"):
        objs = []  # a watch BOOKMARK: only its resourceVersion matters
    rows = []
    for obj in objs:
        r = printer(obj)
        row: dict[str, Any] = {"cells": r.cells}
        if r.conditions:
            row["conditions"] = r.conditions
        embedded = _row_object(obj, include, version)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {"kind": "Table", "apiVersion": f"{META_GROUP}/{version}", "metadata": out_meta,
            "columnDefinitions": columns if headers else None, "rows": rows}


def render(request: Request, res: Resource, body: dict[str, Any]) -> dict[str, Any]:
    """The `Rest` render hook: the response body the request's Accept header asks for."""
    wanted = negotiate(request.headers.get("accept", ""))
    if wanted is None or not isinstance(body, Mapping) or body.get("kind") == "Status":
        return body
    if wanted.kind == "Table":
        headers = True
        if request.query_params.get("watch", "").lower() in ("true", "1"):
            # one Table per event; kube-apiserver sends the column definitions only once
            headers = not getattr(request.state, "table_headers_sent", False)
            if meta(body).get("name"):
                request.state.table_headers_sent = True
            else:
                headers = False
        return table(res, body, version=wanted.version, include=_include_object(request), headers=headers)
    if wanted.kind == "PartialObjectMetadataList" and _is_list(body):
        return {"kind": "PartialObjectMetadataList", "apiVersion": f"{META_GROUP}/{wanted.version}",
                "metadata": dict(meta(body)), "items": [_partial(i, wanted.version) for i in body["items"]]}
    if wanted.kind == "PartialObjectMetadata" and not _is_list(body):
        return _partial(body, wanted.version)
    raise ApiError(406, "NotAcceptable", f"only the following media types are accepted: application/json, "
                   f"application/json;as=Table;v=v1;g=meta.k8s.io (not as={wanted.kind} for this request)")


__all__ = ["PRINTERS", "Cell", "Row", "negotiate", "printer_for", "render", "table"]
