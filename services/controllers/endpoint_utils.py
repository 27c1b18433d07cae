"""What the Endpoints and EndpointSlice controllers agree on about services and their pods.

Both controllers answer the same questions before they build their different objects: which
services select a pod, whether a pod belongs in a service's endpoints at all (an IP, not
finished, not terminating unless asked), which address of the pod fits an address family, what
a named `targetPort` resolves to in this pod, and whether the pod's hostname is published. These
are upstream's `endpointutil`/`endpointsliceutil` and `podutil.FindPort`, pure functions here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.informer import Informer

from .controller_utils import Obj, is_deleting, is_pod_ready, labels_of, meta, spec, status

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_ZONE = "topology.kubernetes.io/zone"


def service_selector(svc: Obj) -> dict[str, str] | None:
    """The selector of a Service the controllers manage, None when they must leave it alone:
    no selector (the user manages its endpoints) or type ExternalName (issue 105986).

    A Service's selector is a plain map; an empty one is dropped on the wire (omitempty), so it
    counts as no selector, as it does after a round trip through a real apiserver."""
    sp = spec(svc)
    if sp.get("type") == "ExternalName":
        return None
    sel = sp.get("selector")
    if not isinstance(sel, dict) or not sel:
        return None
    return {str(k): str(v) for k, v in sel.items()}


def selects(selector: dict[str, str], pod: Obj) -> bool:
    labels = labels_of(pod)
    return all(labels.get(k) == v for k, v in selector.items())


def services_for_pod(services: Informer, pod: Obj) -> list[str]:
    """GetPodServiceMemberships: keys of the services in the pod's namespace selecting it."""
    out = []
    for svc in services.by_index("namespace", meta(pod).get("namespace", "")):
        sel = service_selector(svc)
        if sel is not None and selects(sel, pod):
            out.append(f"{meta(svc).get('namespace')}/{meta(svc).get('name')}")
    return out


def should_pod_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """ShouldPodBeInEndpoints: an IP, not finished for its restart policy, not terminating
    (unless include_terminating)."""
    st = status(pod)
    if not st.get("podIP") and not st.get("podIPs"):
        return False
    if not include_terminating and is_deleting(pod):
        return False
    policy = spec(pod).get("restartPolicy") or "Always"
    phase = st.get("phase")
    if policy == "Never":
        return phase not in ("Failed", "Succeeded")
    if policy == "OnFailure":
        return phase != "Succeeded"
    return True


def pod_ip(pod: Obj, family: str) -> str:
    """The pod's address of the family (IPv4 or IPv6), "" when it has none."""
    want_v6 = family == "IPv6"
    st = status(pod)
    ips = [str(p.get("ip") or "") for p in st.get("podIPs") or [] if isinstance(p, dict)]
    if not ips and st.get("podIP"):
        ips = [str(st["podIP"])]
    for ip in ips:
        if ip and (":" in ip) == want_v6:
            return ip
    return ""


def service_families(svc: Obj) -> list[str]:
    """The address families of the service (spec.ipFamilies, IPv4 when unset)."""
    fams = [f for f in spec(svc).get("ipFamilies") or [] if f in ("IPv4", "IPv6")]
    if fams:
        return fams
    ip = str(spec(svc).get("clusterIP") or "")
    return ["IPv6"] if ":" in ip else ["IPv4"]


def find_port(pod: Obj, svc_port: Obj) -> int | None:
    """podutil.FindPort: an int targetPort as is; a named one from the pod's container ports
    (and restartable init containers) with the same protocol; None when it cannot resolve."""
    target = svc_port.get("targetPort")
    if target is None or target == "" or target == 0:
        target = svc_port.get("port")
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    name, proto = str(target), svc_port.get("protocol") or "TCP"
    sp = spec(pod)
    containers: Iterable[Any] = [*(sp.get("containers") or []),
                                 *(c for c in sp.get("initContainers") or [] if c.get("restartPolicy") == "Always")]
    for c in containers:
        for port in c.get("ports") or []:
            if port.get("name") == name and (port.get("protocol") or "TCP") == proto:
                return int(port.get("containerPort") or 0) or None
    return None


def should_set_hostname(pod: Obj, svc: Obj) -> bool:
    """ShouldSetHostname: the pod has a hostname and its subdomain is this service's name."""
    sp = spec(pod)
    return bool(sp.get("hostname")) and sp.get("subdomain") == meta(svc).get("name") and \
        meta(svc).get("namespace") == meta(pod).get("namespace")


def target_ref(pod: Obj) -> Obj:
    m = meta(pod)
    return {"kind": "Pod", "namespace": m.get("namespace", ""), "name": m.get("name", ""), "uid": m.get("uid", "")}


def endpoint_relevant(pod: Obj) -> tuple[Any, ...]:
    """What of a pod the endpoints depend on: an update changing none of it needs no sync."""
    st, sp = status(pod), spec(pod)
    return (st.get("podIP"), str(st.get("podIPs")), is_pod_ready(pod), is_deleting(pod), st.get("phase"),
            sp.get("nodeName"), sp.get("hostname"), sp.get("subdomain"), str(labels_of(pod)),
            str([c.get("ports") for c in sp.get("containers") or []]))
