"""Kubernetes-compatible validation of raw API objects, per resource.

Why this exists: kubenats stores objects as raw camelCase JSON, but clients
(kubectl, the official Python client) expect the apiserver to reject bad input
exactly as Kubernetes does: HTTP 422 with a Status whose ``details.causes`` carry
``reason``/``message``/``field`` such as ``FieldValueRequired`` /
``Required value`` / ``spec.containers[0].image``.  ``validate()`` returns those
causes; the apiserver wraps them into the Status.

Rules and messages come from Kubernetes' ``pkg/apis/{core,apps,batch,rbac,
coordination,discovery}/validation`` and the registry strategies (selector
immutability).  Objects are validated as Kubernetes does *after* defaulting,
but fields that defaulting always fills in are tolerated when missing, so the
result is the same whether or not ``shared.api.defaults`` ran first.
Callers must resolve ``generateName`` and set ``metadata.namespace`` first.

Pod specs are checked in ``validation_pod``, apps/batch controllers in
``validation_workloads``, names/labels/metadata in ``validation_meta``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from shared.api.validation_meta import (
    Cause,
    Errs,
    GoRepr,
    as_int,
    as_list,
    as_map,
    as_str,
    child,
    go_strings,
    idx,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_path_segment_name,
    is_qualified_name,
    is_valid_ip,
    key,
    validate_label_selector,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
)
from shared.api.validation_pod import (
    PROTOCOLS,
    validate_pod_spec,
    validate_pod_spec_update,
    validate_port_num_or_name,
)
from shared.api.validation_workloads import WORKLOAD_VALIDATORS

__all__ = ["NAMESPACED", "Cause", "validate"]

_Validator = Callable[[Errs, Mapping[str, Any], Mapping[str, Any] | None], None]

NAMESPACED: Final[dict[str, bool]] = {
    "pods": True, "services": True, "endpoints": True, "configmaps": True, "secrets": True, "events": True,
    "serviceaccounts": True, "deployments": True, "replicasets": True, "daemonsets": True, "statefulsets": True,
    "jobs": True, "cronjobs": True, "leases": True, "endpointslices": True, "roles": True, "rolebindings": True,
    "namespaces": False, "nodes": False, "clusterroles": False, "clusterrolebindings": False,
}
_NAME_FNS: Final[dict[str, Callable[[str], list[str]] | None]] = {
    "namespaces": is_dns1123_label, "statefulsets": is_dns1123_label, "services": is_dns1035_label,
    "roles": is_path_segment_name, "clusterroles": is_path_segment_name, "rolebindings": is_path_segment_name,
    "clusterrolebindings": is_path_segment_name, "events": None,
}
_MAX_SECRET_SIZE: Final = 1024 * 1024
_RBAC_GROUP: Final = "rbac.authorization.k8s.io"
_IP_MSG: Final = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


_m, _l, _s, _int = as_map, as_list, as_str, as_int


# ---------------------------------------------------------------------------
# core/v1
# ---------------------------------------------------------------------------


def _pods(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    validate_pod_spec(errs, obj.get("spec"), "spec", for_pod=True, create=old is None)
    if old is None:
        spec = _m(obj.get("spec"))
        if spec.get("nodeName") and _l(spec.get("schedulingGates")):
            errs.forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared")
    else:
        validate_pod_spec_update(errs, obj.get("spec"), old.get("spec"))


def _effective_cluster_ips(spec: Mapping[str, Any]) -> list[Any]:
    ips = _l(spec.get("clusterIPs"))
    if not ips and spec.get("clusterIP"):
        ips = [spec.get("clusterIP")]
    return ips


def _services(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = _m(obj.get("spec"))
    stype = spec.get("type") or "ClusterIP"
    ips = _effective_cluster_ips(spec)
    headless = ips == ["None"]
    ports = _l(spec.get("ports"))
    if not ports and not headless and stype != "ExternalName":
        errs.required("spec.ports")
    if stype in ("LoadBalancer", "NodePort") and headless:
        errs.invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {stype} services")
    if stype == "ExternalName":
        if ips:
            errs.forbidden("spec.clusterIPs", "may not be set for ExternalName services")
        if spec.get("ipFamilies"):
            errs.forbidden("spec.ipFamilies", "may not be set for ExternalName services")
        if spec.get("ipFamilyPolicy") is not None:
            errs.forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services")
        cname = _s(spec.get("externalName")).removesuffix(".")
        if cname:
            errs.each("spec.externalName", cname, is_dns1123_subdomain(cname))
        else:
            errs.required("spec.externalName")
    names: set[str] = set()
    seen_ports: set[tuple[str, Any]] = set()
    seen_node_ports: set[tuple[str, Any]] = set()
    for i, port in enumerate(ports):
        port, p = _m(port), idx("spec.ports", i)
        name = _s(port.get("name"))
        if len(ports) > 1 and not name:
            errs.required(child(p, "name"))
        elif name:
            errs.each(child(p, "name"), name, is_dns1123_label(name))
            if name in names:
                errs.duplicate(child(p, "name"), name)
            names.add(name)
        num = _int(port.get("port"))
        if num is None:
            errs.invalid(child(p, "port"), port.get("port") or 0, "must be between 1 and 65535, inclusive")
        elif not 1 <= num <= 65535:
            errs.invalid(child(p, "port"), num, "must be between 1 and 65535, inclusive")
        proto = port.get("protocol") or "TCP"
        if proto not in PROTOCOLS:
            errs.not_supported(child(p, "protocol"), proto, PROTOCOLS)
        target = port.get("targetPort")
        if target not in (None, 0, ""):
            validate_port_num_or_name(errs, target, child(p, "targetPort"))
        if port.get("appProtocol") is not None:
            app = _s(port.get("appProtocol"))
            errs.each(child(p, "appProtocol"), app, is_qualified_name(app))
        node_port = port.get("nodePort")
        if node_port:
            if stype == "ClusterIP":
                errs.forbidden(child(p, "nodePort"), "may not be used when `type` is 'ClusterIP'")
            elif _int(node_port) is not None and not 30000 <= node_port <= 32767:
                errs.invalid(child(p, "nodePort"), node_port,
                             "provided port is not in the valid range. The range of valid ports is 30000-32767")
            if (proto, node_port) in seen_node_ports:
                errs.duplicate(child(p, "nodePort"), node_port)
            seen_node_ports.add((proto, node_port))
        if (proto, num) in seen_ports:
            errs.duplicate(p, GoRepr(f'core.ServicePort{{Name:"", Protocol:{json.dumps(proto)}, '
                                     f"AppProtocol:(*string)(nil), Port:{num}, TargetPort:intstr.IntOrString{{"
                                     f'Type:0, IntVal:0, StrVal:""}}, NodePort:0}}'))
        seen_ports.add((proto, num))
    if spec.get("selector") is not None:
        validate_labels(errs, spec.get("selector"), "spec.selector")
    affinity = spec.get("sessionAffinity") or "None"
    if affinity not in ("ClientIP", "None"):
        errs.not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None"))
    elif affinity == "ClientIP":
        cfg = _m(_m(spec.get("sessionAffinityConfig")).get("clientIP"))
        timeout = _int(cfg.get("timeoutSeconds"))
        if timeout is not None and not 0 < timeout <= 86400:
            errs.invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                         "must be greater than 0 and less than 86400")
    elif spec.get("sessionAffinityConfig") is not None:
        errs.forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None")
    if stype != "ExternalName":
        if spec.get("clusterIP") and _l(spec.get("clusterIPs")) and spec["clusterIPs"][0] != spec["clusterIP"]:
            errs.invalid("spec.clusterIPs", go_strings(spec["clusterIPs"]), "first value must match `clusterIP`")
        for i, ip in enumerate(ips):
            if i == 0 and ip == "None":
                if len(ips) > 1:
                    errs.invalid("spec.clusterIPs", go_strings(ips), "'None' must be the first and only value")
                continue
            if not is_valid_ip(str(ip)):
                errs.invalid(idx("spec.clusterIPs", i), str(ip), _IP_MSG)
        if len(ips) > 2:
            errs.invalid("spec.clusterIPs", go_strings(ips), "may only hold up to 2 values")
        seen_families: set[str] = set()
        for i, fam in enumerate(_l(spec.get("ipFamilies"))):
            if fam not in ("IPv4", "IPv6"):
                errs.not_supported(idx("spec.ipFamilies", i), fam, ("IPv4", "IPv6"))
            if fam in seen_families:
                errs.duplicate(idx("spec.ipFamilies", i), fam)
            seen_families.add(str(fam))
        policy = spec.get("ipFamilyPolicy")
        if policy is not None and policy not in ("PreferDualStack", "RequireDualStack", "SingleStack"):
            errs.not_supported("spec.ipFamilyPolicy", policy, ("PreferDualStack", "RequireDualStack", "SingleStack"))
    for i, ip in enumerate(_l(spec.get("externalIPs"))):
        if not is_valid_ip(str(ip)):
            errs.invalid(idx("spec.externalIPs", i), str(ip), _IP_MSG)
    if stype not in ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort"):
        errs.not_supported("spec.type", stype, ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort"))
    for f in ("externalTrafficPolicy", "internalTrafficPolicy"):
        v = spec.get(f)
        if v not in (None, "") and v not in ("Cluster", "Local"):
            errs.not_supported(child("spec", f), v, ("Cluster", "Local"))
    if spec.get("externalTrafficPolicy") and stype not in ("NodePort", "LoadBalancer") and not spec.get("externalIPs"):
        errs.invalid("spec.externalTrafficPolicy", spec["externalTrafficPolicy"],
                     "may only be set for externally-accessible services")
    if spec.get("loadBalancerSourceRanges") and stype != "LoadBalancer":
        errs.forbidden("spec.LoadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'")
    if spec.get("allocateLoadBalancerNodePorts") is not None and stype != "LoadBalancer":
        errs.forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'")
    if spec.get("loadBalancerClass") is not None and stype != "LoadBalancer":
        errs.forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'")
    if old is not None:
        old_spec = _m(old.get("spec"))
        old_ips = _effective_cluster_ips(old_spec)
        if ips and old_ips and stype != "ExternalName" and old_spec.get("type") != "ExternalName":
            if not (ips == ["None"] and old_ips == ["None"]):
                for i, ip in enumerate(old_ips[: len(ips)]):
                    if ips[i] != ip:
                        errs.invalid(idx("spec.clusterIPs", i), go_strings(ips), "may not change once set")


def _namespaces(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    for f in _l(_m(obj.get("spec")).get("finalizers")):
        f = str(f)
        errs.each("spec.finalizers", f, is_qualified_name(f))
        if "/" not in f and f not in ("kubernetes", "orphan", "foregroundDeletion"):
            errs.invalid("spec.finalizers", f, "name is neither a standard finalizer name nor is it fully qualified")


def _nodes(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = _m(obj.get("spec"))
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(_l(spec.get("taints"))):
        # Kubernetes reports node taint errors under "metadata.taints" (sic).
        taint, p = _m(taint), idx("metadata.taints", i)
        k, v, effect = _s(taint.get("key")), _s(taint.get("value")), _s(taint.get("effect"))
        errs.each(child(p, "key"), k, is_qualified_name(k))
        msgs = is_label_value(v)
        if msgs:
            errs.invalid(child(p, "value"), v, ";".join(msgs))
        if not effect:
            errs.required(child(p, "effect"))
        elif effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.not_supported(child(p, "effect"), effect, ("NoSchedule", "PreferNoSchedule", "NoExecute"))
        if (k, effect) in seen:
            added = taint.get("timeAdded")
            rendered = f"&v1.Time{{{added}}}" if added else "(*v1.Time)(nil)"
            errs.duplicate(p, GoRepr(f"core.Taint{{Key:{json.dumps(k)}, Value:{json.dumps(v)}, "
                                     f"Effect:{json.dumps(effect)}, TimeAdded:{rendered}}}"),
                           "taints must be unique by key and effect pair")
            continue
        seen.add((k, effect))
    cidrs = _l(spec.get("podCIDRs")) or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    for i, cidr in enumerate(cidrs):
        if not _is_cidr(str(cidr)):
            errs.invalid(idx("spec.podCIDRs", i), str(cidr), "must be a valid CIDR value, (e.g. 10.9.8.0/24 or "
                         "2001:db8::/64)")
    if old is not None:
        old_spec = _m(old.get("spec"))
        old_cidrs = _l(old_spec.get("podCIDRs")) or ([old_spec["podCIDR"]] if old_spec.get("podCIDR") else [])
        if old_cidrs and old_cidrs != cidrs:
            errs.forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid')
        if old_spec.get("providerID") and old_spec.get("providerID") != spec.get("providerID"):
            errs.forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid')


def _is_cidr(value: str) -> bool:
    ip, sep, bits = value.partition("/")
    if not sep or not bits.isdigit():
        return False
    limit = 128 if ":" in ip else 32
    return is_valid_ip(ip) and int(bits) <= limit


def _data_keys(errs: Errs, data: Any, path: str) -> None:
    for k in sorted(_m(data)):
        errs.each(key(path, k), k, is_config_map_key(k))


def _b64_size(errs: Errs, data: Any, path: str) -> int:
    """Decode base64 values the way Go's encoding/json does for []byte; return total bytes."""
    total = 0
    for k, v in sorted(_m(data).items()):
        text = re.sub(r"[\r\n]", "", _s(v))
        try:
            total += len(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            bad = next((i for i, c in enumerate(text) if not (c.isalnum() or c in "+/=")), len(text) - len(text) % 4)
            errs.invalid(key(path, k), "<secret contents redacted>", f"illegal base64 data at input byte {bad}")
    return total


def _configmaps(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    data, binary = _m(obj.get("data")), _m(obj.get("binaryData"))
    total = 0
    for k in sorted(data):
        errs.each(key("data", k), k, is_config_map_key(k))
        if k in binary:
            errs.invalid(key("data", k), k, "duplicate of key present in binaryData")
        total += len(_s(data[k]).encode())
    _data_keys(errs, binary, "binaryData")
    total += _b64_size(errs, binary, "binaryData")
    if total > _MAX_SECRET_SIZE:
        errs.too_long("", _MAX_SECRET_SIZE)
    if old is not None and old.get("immutable") is True:
        if obj.get("immutable") is not True:
            errs.forbidden("immutable", "field is immutable when `immutable` is set")
        for f in ("data", "binaryData"):
            if (obj.get(f) or {}) != (old.get(f) or {}):
                errs.forbidden(f, "field is immutable when `immutable` is set")


def _secrets(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    data = dict(_m(obj.get("data")))
    _data_keys(errs, data, "data")
    string_data = _m(obj.get("stringData"))
    _data_keys(errs, {k: v for k, v in string_data.items() if k not in data}, "data")
    total = _b64_size(errs, data, "data") + sum(len(_s(v).encode()) for v in string_data.values())
    if total > _MAX_SECRET_SIZE:
        errs.too_long("data", _MAX_SECRET_SIZE)
    keys = set(data) | set(string_data)
    stype = obj.get("type") or "Opaque"
    required: dict[str, tuple[str, ...]] = {
        "kubernetes.io/dockercfg": (".dockercfg",), "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
        "kubernetes.io/ssh-auth": ("ssh-privatekey",), "kubernetes.io/tls": ("tls.crt", "tls.key"),
    }
    if stype == "kubernetes.io/service-account-token":
        if not _m(_m(obj.get("metadata")).get("annotations")).get("kubernetes.io/service-account.name"):
            errs.required("metadata.annotations[kubernetes.io/service-account.name]")
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in keys and "password" not in keys:
            errs.required("data[username]")
            errs.required("data[password]")
    for k in required.get(str(stype), ()):
        if k not in keys:
            errs.required(key("data", k))
    if old is not None:
        old_type = old.get("type") or "Opaque"
        if stype != old_type:
            errs.invalid("type", stype, "field is immutable")
        if old.get("immutable") is True:
            if obj.get("immutable") is not True:
                errs.forbidden("immutable", "field is immutable when `immutable` is set")
            if (obj.get("data") or {}) != (old.get("data") or {}) or string_data:
                errs.forbidden("data", "field is immutable when `immutable` is set")


_CLUSTER_SCOPED_KINDS: Final = frozenset({"Node", "Namespace", "PersistentVolume", "ClusterRole",
                                          "ClusterRoleBinding", "StorageClass", "CustomResourceDefinition"})
_NAMESPACED_KINDS: Final = frozenset({"Pod", "Service", "Endpoints", "ConfigMap", "Secret", "ServiceAccount",
                                      "Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "CronJob",
                                      "Lease", "EndpointSlice", "Role", "RoleBinding", "PersistentVolumeClaim",
                                      "ReplicationController", "Event", "HorizontalPodAutoscaler"})


def _events(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    ns = _s(_m(obj.get("metadata")).get("namespace"))
    involved = _m(obj.get("involvedObject"))
    io_ns = _s(involved.get("namespace"))
    if not obj.get("eventTime"):
        if (not io_ns and ns not in ("", "default")) or (io_ns and ns != io_ns):
            errs.invalid("involvedObject.namespace", io_ns, "does not match event.namespace")
    else:
        if not io_ns and ns not in ("default", "kube-system"):
            errs.invalid("involvedObject.namespace", io_ns, "does not match event.namespace")
        controller = _s(obj.get("reportingComponent"))
        if not controller:
            errs.required("source")
        errs.each("source", controller, is_qualified_name(controller))
        for f, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128), ("message", 1024)):
            if len(_s(obj.get(f))) > limit:
                errs.invalid("repotingIntance" if f == "reportingInstance" else f, "",
                             f"can have at most {limit} characters")
    kind_ = _s(involved.get("kind"))
    if kind_ in _NAMESPACED_KINDS and not io_ns:
        errs.required("involvedObject.namespace", f"required for kind {kind_}")
    if kind_ in _CLUSTER_SCOPED_KINDS and io_ns:
        errs.invalid("involvedObject.namespace", io_ns, f"not allowed for kind {kind_}")
    errs.each("namespace", ns, is_dns1123_subdomain(ns))


def _endpoints(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    for i, subset in enumerate(_l(obj.get("subsets"))):
        subset, p = _m(subset), idx("subsets", i)
        if not _l(subset.get("addresses")) and not _l(subset.get("notReadyAddresses")):
            errs.required(p, "must specify `addresses` or `notReadyAddresses`")
        for kind_ in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(_l(subset.get(kind_))):
                addr, ap = _m(addr), idx(child(p, kind_), j)
                ip = _s(addr.get("ip"))
                if not is_valid_ip(ip):
                    errs.invalid(child(ap, "ip"), ip, _IP_MSG)
                    errs.invalid(child(ap, "ip"), ip, "must be a valid IP address")
                # Deliberate deviation: Kubernetes refuses loopback endpoints, but kubenats' hollow pods
                # live on 127.x addresses (the network rule: fake addresses must stay on this machine).
                elif ip.startswith(("0.0.0.0", "169.254.", "224.0.0.")) or ip == "::":
                    errs.invalid(child(ap, "ip"), ip, _special_ip_msg(ip))
                if addr.get("hostname"):
                    errs.each(child(ap, "hostname"), _s(addr.get("hostname")), is_dns1123_label(_s(addr.get("hostname"))))
                if addr.get("nodeName") is not None:
                    errs.each(child(ap, "nodeName"), _s(addr.get("nodeName")),
                              is_dns1123_subdomain(_s(addr.get("nodeName"))))
        ports = _l(subset.get("ports"))
        for j, port in enumerate(ports):
            port, pp = _m(port), idx(child(p, "ports"), j)
            name = _s(port.get("name"))
            if len(ports) > 1 and not name:
                errs.required(child(pp, "name"))
            elif name:
                errs.each(child(pp, "name"), name, is_dns1123_label(name))
            num = _int(port.get("port")) or 0
            if not 1 <= num <= 65535:
                errs.invalid(child(pp, "port"), num, "must be between 1 and 65535, inclusive")
            proto = port.get("protocol") or "TCP"
            if proto not in PROTOCOLS:
                errs.not_supported(child(pp, "protocol"), proto, PROTOCOLS)


def _special_ip_msg(ip: str) -> str:
    if ip in ("0.0.0.0", "::"):
        return f"may not be unspecified ({ip})"
    if ip.startswith("127.") or ip == "::1":
        return "may not be in the loopback range (127.0.0.0/8, ::1/128)"
    if ip.startswith("169.254."):
        return "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
    return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"


# ---------------------------------------------------------------------------
# coordination, discovery, rbac
# ---------------------------------------------------------------------------


def _leases(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = _m(obj.get("spec"))
    duration = _int(spec.get("leaseDurationSeconds"))
    if duration is not None and duration <= 0:
        errs.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0")
    transitions = _int(spec.get("leaseTransitions"))
    if transitions is not None and transitions < 0:
        errs.invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0")


def _endpointslices(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    atype = obj.get("addressType")
    if not atype:
        errs.required("addressType")
    elif atype not in ("FQDN", "IPv4", "IPv6"):
        errs.not_supported("addressType", atype, ("FQDN", "IPv4", "IPv6"))
    endpoints = _l(obj.get("endpoints"))
    if len(endpoints) > 1000:
        errs.too_many("endpoints", len(endpoints), 1000)
        endpoints = []
    for i, ep in enumerate(endpoints):
        ep, p = _m(ep), idx("endpoints", i)
        addrs = _l(ep.get("addresses"))
        if not addrs:
            errs.required(child(p, "addresses"), "must contain at least 1 address")
        elif len(addrs) > 100:
            errs.too_many(child(p, "addresses"), len(addrs), 100)
        for j, addr in enumerate(addrs):
            ap, addr = idx(child(p, "addresses"), j), str(addr)
            if atype == "IPv4" and not (is_valid_ip(addr) and ":" not in addr):
                errs.invalid(ap, addr, "must be a valid IPv4 address")
            elif atype == "IPv6" and not (is_valid_ip(addr) and ":" in addr):
                errs.invalid(ap, addr, "must be a valid IPv6 address")
            elif atype == "FQDN":
                errs.each(ap, addr, is_dns1123_subdomain(addr.removesuffix(".")))
        if ep.get("nodeName") is not None:
            errs.each(child(p, "nodeName"), _s(ep.get("nodeName")), is_dns1123_subdomain(_s(ep.get("nodeName"))))
        if ep.get("hostname") is not None:
            errs.each(child(p, "hostname"), _s(ep.get("hostname")), is_dns1123_label(_s(ep.get("hostname"))))
        validate_labels(errs, ep.get("deprecatedTopology"), child(p, "deprecatedTopology"))
    names: set[str] = set()
    for i, port in enumerate(_l(obj.get("ports"))):
        port, p = _m(port), idx("ports", i)
        name = _s(port.get("name"))
        if name:
            errs.each(child(p, "name"), name, is_dns1123_label(name))
        if name in names:
            errs.duplicate(child(p, "name"), name)
        names.add(name)
        proto = port.get("protocol") or "TCP"
        if proto not in PROTOCOLS:
            errs.not_supported(child(p, "protocol"), proto, PROTOCOLS)
        if port.get("appProtocol") is not None:
            errs.each(child(p, "appProtocol"), _s(port.get("appProtocol")), is_qualified_name(_s(port.get("appProtocol"))))


def _policy_rules(errs: Errs, rules: Any, namespaced: bool) -> None:
    for i, rule in enumerate(_l(rules)):
        rule, p = _m(rule), idx("rules", i)
        if not _l(rule.get("verbs")):
            errs.required(child(p, "verbs"), "verbs must contain at least one value")
        urls = _l(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                errs.invalid(child(p, "nonResourceURLs"), go_strings(urls),
                             "namespaced rules cannot apply to non-resource URLs")
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                errs.invalid(child(p, "nonResourceURLs"), go_strings(urls),
                             "rules cannot apply to both regular resources and non-resource URLs")
            continue
        if not _l(rule.get("apiGroups")):
            errs.required(child(p, "apiGroups"), "resource rules must supply at least one api group")
        if not _l(rule.get("resources")):
            errs.required(child(p, "resources"), "resource rules must supply at least one resource")


def _roles(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    _policy_rules(errs, obj.get("rules"), True)


def _clusterroles(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    _policy_rules(errs, obj.get("rules"), False)
    agg = obj.get("aggregationRule")
    if agg is not None:
        selectors = _l(_m(agg).get("clusterRoleSelectors"))
        if not selectors:
            errs.required("aggregationRule.clusterRoleSelectors",
                          "at least one clusterRoleSelector required if aggregationRule is non-nil")
        for i, sel in enumerate(selectors):
            validate_label_selector(errs, sel, idx("aggregationRule.clusterRoleSelectors", i))


def _bindings(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None, namespaced: bool) -> None:
    ref = _m(obj.get("roleRef"))
    group = ref.get("apiGroup") if ref.get("apiGroup") is not None else _RBAC_GROUP
    if group != _RBAC_GROUP:
        errs.not_supported("roleRef.apiGroup", group, (_RBAC_GROUP,))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("kind") not in kinds:
        errs.not_supported("roleRef.kind", _s(ref.get("kind")), kinds)
    name = _s(ref.get("name"))
    if not name:
        errs.required("roleRef.name")
    else:
        errs.each("roleRef.name", name, is_path_segment_name(name))
    for i, subj in enumerate(_l(obj.get("subjects"))):
        subj, p = _m(subj), idx("subjects", i)
        sname, skind = _s(subj.get("name")), subj.get("kind")
        sgroup = subj.get("apiGroup")
        if not sname:
            errs.required(child(p, "name"))
        if skind == "ServiceAccount":
            if sname:
                errs.each(child(p, "name"), sname, is_dns1123_subdomain(sname))
            if sgroup:
                errs.not_supported(child(p, "apiGroup"), sgroup, ("",))
            if not namespaced and not subj.get("namespace"):
                errs.required(child(p, "namespace"))
        elif skind in ("User", "Group"):
            if (sgroup if sgroup is not None else _RBAC_GROUP) != _RBAC_GROUP:
                errs.not_supported(child(p, "apiGroup"), sgroup, (_RBAC_GROUP,))
        else:
            errs.not_supported(child(p, "kind"), _s(skind), ("ServiceAccount", "User", "Group"))
    if old is not None:
        old_ref = dict(_m(old.get("roleRef")))
        new_ref = {"apiGroup": group, "kind": ref.get("kind"), "name": ref.get("name")}
        old_ref.setdefault("apiGroup", _RBAC_GROUP)
        if {k: old_ref.get(k) for k in new_ref} != new_ref:
            errs.invalid("roleRef", GoRepr(f"rbac.RoleRef{{APIGroup:{json.dumps(group)}, Kind:"
                                           f"{json.dumps(_s(ref.get('kind')))}, Name:{json.dumps(name)}}}"),
                         "cannot change roleRef")


def _no_spec(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    return None


_VALIDATORS: Final[dict[str, _Validator]] = {
    "pods": _pods, "services": _services, "namespaces": _namespaces, "nodes": _nodes, "endpoints": _endpoints,
    "configmaps": _configmaps, "secrets": _secrets, "events": _events, "serviceaccounts": _no_spec,
    **WORKLOAD_VALIDATORS, "leases": _leases,
    "endpointslices": _endpointslices, "roles": _roles, "clusterroles": _clusterroles,
    "rolebindings": lambda e, o, old: _bindings(e, o, old, True),
    "clusterrolebindings": lambda e, o, old: _bindings(e, o, old, False),
}


def validate(resource: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[Cause]:
    """Validate ``obj`` (a create, or an update of ``old``) as Kubernetes would for ``resource``.

    ``resource`` is the plural resource name ("pods", "deployments", ...); unknown
    resources only get ObjectMeta validation.  Returns the causes in the order
    Kubernetes reports them (mostly: metadata first, then spec); empty means valid.
    """
    errs = Errs()
    if not isinstance(obj, Mapping):
        errs.type_invalid("", GoRepr(type(obj).__name__), "object must be a JSON object")
        return list(errs)
    if old is not None:
        validate_object_meta_update(errs, obj.get("metadata"), old.get("metadata"))
    validate_object_meta(errs, obj.get("metadata"), namespaced=NAMESPACED.get(resource, True),
                         name_fn=_NAME_FNS.get(resource, is_dns1123_subdomain))
    _VALIDATORS.get(resource, _no_spec)(errs, obj, old)
    return list(errs)
