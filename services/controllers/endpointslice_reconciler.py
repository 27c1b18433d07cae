"""Which EndpointSlices to create, update and delete for one Service (the endpointslice reconciler).

A port of staging/src/k8s.io/endpointslice's reconciler, pure: from the desired endpoints,
grouped by the ports they resolve to (pods of one Service may expose a named port on different
numbers), and the slices that exist, it plans the fewest writes that make them agree, with at
most `max_per_slice` endpoints per slice:

1. every existing slice keeps the endpoints still wanted (updated in place when they changed)
   and drops the others; a slice left empty is deleted;
2. endpoints not placed yet go first into slices that are being updated anyway, then into one
   unchanged slice that has room for all of them, then into new slices;
3. slices of a port set or address family no longer wanted, or not owned by this Service, are
   deleted; a Service with no endpoints at all keeps one empty placeholder slice, so that
   consumers can tell "no endpoints" from "not processed yet".
Slices are named by the apiserver from `generateName: <service>-`, labelled with the service
name and `endpointslice.kubernetes.io/managed-by`, and owned by the Service.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .controller_utils import Obj, is_deleting, is_pod_ready, labels_of, meta, spec, uid_of
from .deployment_util import normalize
from .endpoint_utils import (
    LABEL_HEADLESS,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    LABEL_ZONE,
    find_port,
    pod_ip,
    should_pod_be_in_endpoints,
    should_set_hostname,
    target_ref,
)

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS_PER_SLICE = 100
PortsKey = tuple[tuple[str, int, str, str], ...]


def ports_key(ports: list[Obj] | None) -> PortsKey:
    return tuple(sorted((str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"),
                         str(p.get("appProtocol") or "")) for p in ports or []))


def endpoint_key(ep: Obj) -> tuple[str, str]:
    addrs = ep.get("addresses") or [""]
    return (str(addrs[0]), str((ep.get("targetRef") or {}).get("uid") or ""))


def endpoint_ports(svc: Obj, pod: Obj) -> list[Obj]:
    """getEndpointPorts: the service's ports that resolve in this pod, named as the service names them."""
    out = []
    for sp in spec(svc).get("ports") or []:
        num = find_port(pod, sp)
        if num is None:
            continue
        port: Obj = {"name": sp.get("name") or "", "port": num, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


def pod_to_endpoint(pod: Obj, node: Obj | None, svc: Obj, ip: str) -> Obj:
    """podToEndpoint: `ready` is never true for a terminating pod unless publishNotReadyAddresses."""
    serving = is_pod_ready(pod)
    terminating = is_deleting(pod)
    ready = bool(spec(svc).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: Obj = {"addresses": [ip], "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    if should_set_hostname(pod, svc):
        ep["hostname"] = spec(pod)["hostname"]
    ep["targetRef"] = target_ref(pod)
    if spec(pod).get("nodeName"):
        ep["nodeName"] = spec(pod)["nodeName"]
    zone = labels_of(node).get(LABEL_ZONE) if node is not None else None
    if zone:
        ep["zone"] = zone
    return ep


def slice_labels(svc: Obj) -> dict[str, str]:
    """setEndpointSliceLabels: the service's labels, the service name, managed-by, headless."""
    labels = {k: v for k, v in labels_of(svc).items() if k not in (LABEL_SERVICE_NAME, LABEL_MANAGED_BY)}
    labels[LABEL_SERVICE_NAME] = str(meta(svc).get("name") or "")
    labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
    if spec(svc).get("clusterIP") == "None":
        labels[LABEL_HEADLESS] = ""
    else:
        labels.pop(LABEL_HEADLESS, None)
    return labels


def owned_by(slice_: Obj, svc: Obj) -> bool:
    return any(r.get("uid") == uid_of(svc) and r.get("kind") == "Service"
               for r in meta(slice_).get("ownerReferences") or [])


def new_slice(svc: Obj, family: str, ports: list[Obj], endpoints: list[Obj]) -> Obj:
    name = str(meta(svc).get("name") or "")
    prefix = name + "-" if len(name) <= 62 else name[:62] + "-"
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": prefix, "namespace": meta(svc).get("namespace", ""),
                         "labels": slice_labels(svc),
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": uid_of(svc),
                                              "controller": True, "blockOwnerDeletion": True}]},
            "addressType": family, "endpoints": endpoints, "ports": ports}


@dataclass
class Plan:
    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


Desired = dict[PortsKey, tuple[list[Obj], dict[tuple[str, str], Obj]]]


def _same(a: Any, b: Any) -> bool:
    return bool(normalize(copy.deepcopy(a)) == normalize(copy.deepcopy(b)))


def _is_placeholder(s: Obj) -> bool:
    return not (s.get("endpoints") or []) and not (s.get("ports") or [])


def reconcile_family(svc: Obj, family: str, desired: Desired, existing: list[Obj],
                     max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> Plan:
    """The plan for one address family (reconcileByAddressType); `existing` are the managed
    slices of this family owned by the Service."""
    plan = Plan()
    labels = slice_labels(svc)
    by_ports: dict[PortsKey, list[Obj]] = {}
    for s in existing:
        by_ports.setdefault(ports_key(s.get("ports")), []).append(s)
    for key, slices in by_ports.items():
        if key not in desired or not desired[key][1]:
            plan.delete.extend(slices)
    for key, (ports, wanted) in desired.items():
        if not wanted:
            continue
        placed: set[tuple[str, str]] = set()
        updating: list[Obj] = []
        unchanged: list[Obj] = []
        for s in by_ports.get(key, []):
            kept, changed = [], False
            for ep in s.get("endpoints") or []:
                k = endpoint_key(ep)
                if k in wanted and k not in placed:
                    placed.add(k)
                    kept.append(wanted[k])
                    changed = changed or not _same(ep, wanted[k])
                else:
                    changed = True
            if not kept:
                plan.delete.append(s)
                continue
            if changed or (meta(s).get("labels") or {}) != labels:
                s = copy.deepcopy(s)
                s["endpoints"] = kept
                s["metadata"]["labels"] = labels
                updating.append(s)
            else:
                unchanged.append(s)
        remaining = [wanted[k] for k in sorted(wanted) if k not in placed]
        for s in updating:  # 2a. slices we write anyway
            room = max_per_slice - len(s["endpoints"])
            if room > 0 and remaining:
                s["endpoints"].extend(remaining[:room])
                remaining = remaining[room:]
        if remaining:  # 2b. one unchanged slice that takes all of them, the fullest first
            fits = [s for s in unchanged if max_per_slice - len(s.get("endpoints") or []) >= len(remaining)]
            if fits:
                target = copy.deepcopy(max(fits, key=lambda s: len(s.get("endpoints") or [])))
                target["endpoints"] = [*(target.get("endpoints") or []), *remaining]
                updating.append(target)
                remaining = []
        while remaining:  # 2c. new slices
            plan.create.append(new_slice(svc, family, [dict(p) for p in ports], remaining[:max_per_slice]))
            remaining = remaining[max_per_slice:]
        plan.update.extend(updating)
    if not plan.create and len(plan.delete) == len(existing):
        # no endpoints at all: one placeholder slice
        placeholders = [s for s in plan.delete if _is_placeholder(s) and (meta(s).get("labels") or {}) == labels]
        if placeholders:
            plan.delete.remove(placeholders[0])
        else:
            plan.create.append(new_slice(svc, family, [], []))
    return plan


def desired_endpoints(svc: Obj, pods: list[Obj], nodes: dict[str, Obj | None], family: str) -> tuple[Desired, list[str]]:
    """The endpoints per port set for one family, and the pods skipped because their node is
    unknown (the caller retries later; upstream's "skipping Pod for Service, Node not found")."""
    desired: Desired = {}
    missing: list[str] = []
    publish = bool(spec(svc).get("publishNotReadyAddresses"))
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ip = pod_ip(pod, family)
        if not ip:
            continue
        node_name = spec(pod).get("nodeName") or ""
        node = nodes.get(node_name) if node_name else None
        if node_name and node is None and not publish:
            missing.append(f"{meta(pod).get('namespace')}/{meta(pod).get('name')}")
            continue
        ports = endpoint_ports(svc, pod)
        key = ports_key(ports)
        entry = desired.setdefault(key, (ports, {}))
        ep = pod_to_endpoint(pod, node, svc, ip)
        entry[1][endpoint_key(ep)] = ep
    return desired, missing
