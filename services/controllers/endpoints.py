"""The Endpoints controller: the core/v1 Endpoints object of every Service with a selector.

A port of pkg/controller/endpoint. Older clients and kube-proxy-like consumers read a Service's
backends from the Endpoints object of the same name; this controller keeps it equal to the
pods the selector picks: ready pods in `addresses`, the others in `notReadyAddresses` (all of
them in `addresses` with `publishNotReadyAddresses`), each with its node and a reference to the
pod, grouped into subsets by the ports they resolve to (a named `targetPort` is looked up in
each pod's container ports, so pods of two versions can serve one Service on different ports).
Pods without an IP, finished, or terminating are left out. Services without a selector, and
ExternalName ones, are not touched: their Endpoints belong to whoever wrote them. An Endpoints
object whose Service is gone is deleted. More than 1000 addresses are truncated and annotated
`endpoints.kubernetes.io/over-capacity: truncated`, as upstream. Writes happen only when the
subsets or labels differ, and a key is skipped while the cache still lags our last write.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from shared.api.resources import BY_PLURAL
from shared.errors import ApiError
from shared.informer import key_of
from shared.log import event
from shared.workqueue import WorkQueue

from .base import ControllerContext, OwnWrites
from .controller_utils import Obj, is_pod_ready, labels_of, meta, spec
from .endpoint_utils import (
    LABEL_HEADLESS,
    endpoint_relevant,
    find_port,
    pod_ip,
    selects,
    service_families,
    service_selector,
    services_for_pod,
    should_pod_be_in_endpoints,
    should_set_hostname,
    target_ref,
)

log = logging.getLogger("kubenats.controllers.endpoint")

SERVICES = BY_PLURAL[("", "services")]
PODS = BY_PLURAL[("", "pods")]
ENDPOINTS = BY_PLURAL[("", "endpoints")]
MAX_CAPACITY = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"


def endpoint_address(pod: Obj, svc: Obj, ip: str) -> Obj:
    """podToEndpointAddressForService."""
    addr: Obj = {"ip": ip}
    if should_set_hostname(pod, svc):
        addr["hostname"] = spec(pod)["hostname"]
    if spec(pod).get("nodeName"):
        addr["nodeName"] = spec(pod)["nodeName"]
    addr["targetRef"] = target_ref(pod)
    return addr


def _port_key(port: Obj) -> tuple[str, int, str, str]:
    return (str(port.get("name") or ""), int(port.get("port") or 0), str(port.get("protocol") or "TCP"),
            str(port.get("appProtocol") or ""))


def _addr_key(addr: Obj) -> tuple[str, str]:
    return (str(addr.get("ip") or ""), str((addr.get("targetRef") or {}).get("uid") or ""))


def repack_subsets(entries: list[tuple[Obj, list[Obj], bool]]) -> list[Obj]:
    """RepackSubsets: one subset per distinct port set, addresses deduplicated and sorted; an
    address ready for a port set is not also listed as not ready for it."""
    groups: dict[tuple[tuple[str, int, str, str], ...], tuple[list[Obj], dict[Any, Obj], dict[Any, Obj]]] = {}
    for addr, ports, ready in entries:
        key = tuple(sorted({_port_key(p) for p in ports}))
        group = groups.setdefault(key, (sorted(ports, key=_port_key), {}, {}))
        (group[1] if ready else group[2])[_addr_key(addr)] = addr
    subsets = []
    for key in sorted(groups):
        ports, ready_addrs, not_ready = groups[key]
        subset: Obj = {}
        if ready_addrs:
            subset["addresses"] = [ready_addrs[k] for k in sorted(ready_addrs)]
        rest = {k: v for k, v in not_ready.items() if k not in ready_addrs}
        if rest:
            subset["notReadyAddresses"] = [rest[k] for k in sorted(rest)]
        if ports:
            subset["ports"] = [{k: v for k, v in p.items() if v not in (None, "")} for p in ports]
        subsets.append(subset)
    return subsets


def truncate(subsets: list[Obj], limit: int = MAX_CAPACITY) -> bool:
    """Keep at most `limit` addresses, ready ones first (truncateEndpoints, simplified to keep
    subsets in order rather than proportionally). Returns True when something was dropped."""
    total = sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or []) for s in subsets)
    if total <= limit:
        return False
    budget = limit
    for field in ("addresses", "notReadyAddresses"):
        for s in subsets:
            addrs = s.get(field) or []
            keep = addrs[:max(budget, 0)]
            budget -= len(keep)
            if keep:
                s[field] = keep
            else:
                s.pop(field, None)
    subsets[:] = [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]
    return True


def compute_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """The subsets of a service for the pods its selector picks (syncService's pod loop)."""
    tolerate_unready = bool(spec(svc).get("publishNotReadyAddresses"))
    family = service_families(svc)[0]
    entries: list[tuple[Obj, list[Obj], bool]] = []
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, tolerate_unready):
            continue
        ip = pod_ip(pod, family)
        if not ip:
            continue
        addr = endpoint_address(pod, svc, ip)
        ready = tolerate_unready or is_pod_ready(pod)
        svc_ports = spec(svc).get("ports") or []
        if not svc_ports:
            if spec(svc).get("clusterIP") == "None":  # headless without ports: addresses only
                entries.append((addr, [], ready))
            continue
        for sp in svc_ports:
            num = find_port(pod, sp)
            if num is None:
                continue
            port: Obj = {"name": sp.get("name") or "", "port": num, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("appProtocol"):
                port["appProtocol"] = sp["appProtocol"]
            entries.append((addr, [port], ready))
    return repack_subsets(entries)


def desired_labels(svc: Obj) -> dict[str, str]:
    labels = dict(labels_of(svc))
    if spec(svc).get("clusterIP") == "None":
        labels[LABEL_HEADLESS] = ""
    else:
        labels.pop(LABEL_HEADLESS, None)
    return labels


def _normal_subsets(subsets: Any) -> list[Obj]:
    out = []
    for s in subsets or []:
        ports = [{"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP",
                  **({"appProtocol": p["appProtocol"]} if p.get("appProtocol") else {})} for p in s.get("ports") or []]
        out.append({k: v for k, v in (("addresses", s.get("addresses")), ("notReadyAddresses", s.get("notReadyAddresses")),
                                      ("ports", sorted(ports, key=_port_key))) if v})
    return out


def endpoints_equal(current: Obj, subsets: list[Obj], labels: dict[str, str], over_capacity: bool) -> bool:
    """endpointSubsetsEqualIgnoreResourceVersion plus labels and the capacity annotation."""
    annotations = meta(current).get("annotations") or {}
    return (_normal_subsets(current.get("subsets")) == _normal_subsets(subsets)
            and (meta(current).get("labels") or {}) == labels
            and (annotations.get(OVER_CAPACITY) == "truncated") == over_capacity)


class EndpointsController:
    name = "endpoint"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.services = ctx.informers.get(SERVICES)
        self.pods = ctx.informers.get(PODS)
        self.endpoints = ctx.informers.get(ENDPOINTS)
        self.recorder = ctx.recorder("endpoint-controller")
        self.queue = WorkQueue("endpoint")
        self.own_writes = OwnWrites()
        self.services.add_handler(self._enqueue, lambda _old, cur: self._enqueue(cur), self._enqueue)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_added)
        # Our own objects: an edited or deleted Endpoints of a managed Service is put back; the
        # first list also finds leftovers whose Service went away while we were not running
        # (checkLeftoverEndpoints). Later additions without a Service are the user's business:
        # Endpoints are often created just before their selectorless Service.
        self.endpoints.add_handler(self._endpoints_added, self._endpoints_updated, self._endpoints_changed)

    def _enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def _managed(self, key: str) -> bool:
        svc = self.services.get(key)
        return svc is not None and service_selector(svc) is not None

    def _endpoints_added(self, ep: Obj) -> None:
        if LEADER_ANNOTATION in (meta(ep).get("annotations") or {}):
            return
        if not self.endpoints.has_synced or self._managed(key_of(ep)):
            self.queue.add(key_of(ep))

    def _endpoints_updated(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") != meta(cur).get("resourceVersion"):
            self._endpoints_changed(cur)

    def _endpoints_changed(self, ep: Obj) -> None:
        if self._managed(key_of(ep)):
            self.queue.add(key_of(ep))

    def _pod_added(self, pod: Obj) -> None:
        for key in services_for_pod(self.services, pod):
            self.queue.add(key)

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if endpoint_relevant(old) == endpoint_relevant(cur):
            return
        for key in {*services_for_pod(self.services, old), *services_for_pod(self.services, cur)}:
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        svc = self.services.get(key)
        current = self.endpoints.get(key)
        if svc is None:
            self.own_writes.forget(key)
            if current is not None:
                await self._delete(current)
            return
        selector = service_selector(svc)
        if selector is None:
            return  # the user manages this service's endpoints
        if self.own_writes.stale(key, current):
            return
        ns = meta(svc).get("namespace", "")
        pods = [p for p in self.pods.by_index("namespace", ns) if selects(selector, p)]
        subsets = compute_subsets(svc, pods)
        over = truncate(subsets)
        labels = desired_labels(svc)
        if current is not None and endpoints_equal(current, subsets, labels, over):
            return
        body: Obj = copy.deepcopy(current) if current is not None else {
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": meta(svc)["name"], "namespace": ns}}
        body["metadata"]["labels"] = labels
        annotations = dict(body["metadata"].get("annotations") or {})
        annotations.pop(TRIGGER_TIME, None)
        if over:
            annotations[OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY, None)
        body["metadata"]["annotations"] = annotations
        if not annotations:
            body["metadata"].pop("annotations")
        body["subsets"] = subsets
        try:
            if current is None:
                written = await self.client.create(ENDPOINTS, ns, body)
            else:
                written = await self.client.update(ENDPOINTS, body)
        except ApiError as e:
            if e.code == 403 and "being terminated" in e.message:
                return  # the namespace is going away
            self.recorder.record(svc, "Warning", "FailedToUpdateEndpoint",
                                 f"Failed to update endpoint {key}: {e.message}")
            raise
        self.own_writes.wrote(key, written)
        ready = sum(len(s.get("addresses") or []) for s in subsets)
        not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
        event(log, "endpoints_updated", logging.DEBUG, service=key, ready=ready, not_ready=not_ready,
              created=current is None)

    async def _delete(self, current: Obj) -> None:
        m = meta(current)
        try:
            await self.client.delete(ENDPOINTS, m.get("namespace", ""), m["name"], uid=m.get("uid"))
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        event(log, "endpoints_deleted", service=key_of(current))
