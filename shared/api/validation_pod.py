"""PodSpec validation (containers, volumes, probes, resources) in Kubernetes' words.

Why this exists: pods and every workload template (Deployment, ReplicaSet,
DaemonSet, Job, CronJob) share ``ValidatePodSpec`` from
``pkg/apis/core/validation/validation.go``; kubenats needs the same rules and
messages so kubectl users get the errors they know.  Split out of
``shared.api.validation`` only to keep modules small.

The input may or may not have been through ``shared.api.defaults`` yet: fields
that Kubernetes always defaults (imagePullPolicy, restartPolicy, dnsPolicy,
protocols, probe periods, ...) are only checked when present, so a valid object
is never rejected for lacking them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from shared.api.quantity import QUANTITY_REGEX, canonical_quantity, parse_quantity
from shared.api.validation_meta import (
    Errs,
    GoRepr,
    as_int,
    as_list,
    as_map,
    as_str,
    child,
    idx,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
    is_valid_ip,
    key,
    validate_label_selector,
    validate_labels,
    validate_template_meta,
)

__all__ = [
    "UPDATABLE_POD_SPEC_FIELDS",
    "validate_pod_spec",
    "validate_pod_spec_update",
    "validate_pod_template",
]

UPDATABLE_POD_SPEC_FIELDS: Final = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)
PROTOCOLS: Final = ("SCTP", "TCP", "UDP")  # sets.List order
_MAX_INT32: Final = 2**31 - 1
# Order matters: the second source found is the one reported as Forbidden, and two
# of Kubernetes' paths carry typos ("cephFS", "downwarAPI") that we reproduce.
_VOLUME_SOURCES: Final = (
    ("emptyDir", "emptyDir"), ("hostPath", "hostPath"), ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"), ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"), ("nfs", "nfs"), ("iscsi", "iscsi"), ("glusterfs", "glusterfs"),
    ("flocker", "flocker"), ("persistentVolumeClaim", "persistentVolumeClaim"), ("rbd", "rbd"),
    ("cinder", "cinder"), ("cephfs", "cephFS"), ("quobyte", "quobyte"), ("downwardAPI", "downwarAPI"),
    ("fc", "fc"), ("flexVolume", "flexVolume"), ("configMap", "configMap"), ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"), ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"), ("azureDisk", "azureDisk"), ("storageos", "storageos"),
    ("projected", "projected"), ("scaleIO", "scaleIO"), ("csi", "csi"), ("ephemeral", "ephemeral"),
    ("image", "image"),
)
_FILE_MODE_MSG: Final = "must be a number between 0 and 0777 (octal), both inclusive"
_ENV_FIELD_PATHS: Final = (
    "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
    "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
)
_VOLUME_FIELD_PATHS: Final = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                              "metadata.uid")
_STANDARD_CONTAINER_RESOURCES: Final = frozenset({"cpu", "memory", "ephemeral-storage"})
_OTHER_STANDARD_RESOURCES: Final = frozenset({
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "storage", "services.nodeports", "services.loadbalancers",
})
_RESOURCE_FIELD_REFS: Final = ("limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu",
                               "requests.ephemeral-storage", "requests.memory")


_m, _l, _s, _int = as_map, as_list, as_str, as_int


def _port_num_errs(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else ["must be between 1 and 65535, inclusive"]


def port_name_errs(name: str) -> list[str]:
    """IsValidPortName (IANA_SVC_NAME)."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not name or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not any("a" <= c <= "z" for c in name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def validate_port_num_or_name(errs: Errs, port: Any, path: str) -> None:
    """ValidatePortNumOrName for an IntOrString (a missing value is the int 0)."""
    if isinstance(port, str):
        errs.each(path, port, port_name_errs(port))
        return
    num = _int(port) if port is not None else 0
    if num is None:
        errs.type_invalid(path, port, "must be an integer or a string")
    else:
        for msg in _port_num_errs(num):
            errs.invalid(path, num, msg)


def _enum(errs: Errs, value: Any, path: str, valid: tuple[str, ...]) -> None:
    """Check an optional defaulted enum: empty means "will be defaulted"."""
    if value in (None, ""):
        return
    if value not in valid:
        errs.not_supported(path, value, valid)


# ---------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_extended(name: str) -> bool:
    if _is_native(name) or name.startswith("requests."):
        return False
    return not is_qualified_name("requests." + name)


def _overcommit_allowed(name: str) -> bool:
    return _is_native(name) and not name.startswith("hugepages-")


def _validate_resources(errs: Errs, res: Any, path: str) -> None:
    res = _m(res)
    parsed: dict[str, dict[str, Any]] = {"limits": {}, "requests": {}}
    has_cpu_mem = has_huge = False
    for part in ("limits", "requests"):
        for name, q in sorted(_m(res.get(part)).items()):
            p = key(child(path, part), name)
            msgs = is_qualified_name(name)
            errs.each(p, name, msgs)
            if not msgs:
                if "/" not in name and name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
                    if not (name in _OTHER_STANDARD_RESOURCES or name.startswith(("requests.", "limits."))):
                        errs.invalid(p, name, "must be a standard resource type or fully qualified")
                    errs.invalid(p, name, "must be a standard resource for containers")
                elif "/" in name and not _is_native(name) and not _is_extended(name):
                    errs.invalid(p, name, "doesn't follow extended resource name standard")
            try:
                value = parse_quantity(q)
            except ValueError:
                errs.invalid(p, q if isinstance(q, str | int | float) else str(q), f"quantities must match the "
                             f"regular expression '{QUANTITY_REGEX}'")
                continue
            text = canonical_quantity(q)
            if value < 0:
                errs.invalid(p, text, "must be greater than or equal to 0")
            if _is_extended(name) and value != value.to_integral_value():
                errs.invalid(p, GoRepr(text), "must be an integer")
            parsed[part][name] = (value, text)
            has_cpu_mem = has_cpu_mem or name in ("cpu", "memory")
            has_huge = has_huge or name.startswith("hugepages-")
    req_path, lim_path = child(path, "requests"), child(path, "limits")
    for name, (value, text) in parsed["requests"].items():
        if name in parsed["limits"]:
            limit, limit_text = parsed["limits"][name]
            if value != limit and not _overcommit_allowed(name):
                errs.invalid(req_path, text, f"must be equal to {name} limit of {limit_text}")
            elif value > limit:
                errs.invalid(req_path, text, f"must be less than or equal to {name} limit of {limit_text}")
        elif not _overcommit_allowed(name):
            errs.required(lim_path, "Limit must be set for non overcommitable resources")
    if has_huge and not has_cpu_mem:
        errs.forbidden(path, "HugePages require cpu or memory")


# ---------------------------------------------------------------------------
# Probes, lifecycle, env, ports, mounts
# ---------------------------------------------------------------------------


def _validate_handler(errs: Errs, h: Mapping[str, Any], path: str, kinds: tuple[str, ...], grace: int | None) -> None:
    count = 0
    for kind in kinds:
        if h.get(kind) is None:
            continue
        p = child(path, kind)
        if count:
            errs.forbidden(p, "may not specify more than 1 handler type")
            continue
        count += 1
        action = _m(h.get(kind))
        if kind == "exec" and not _l(action.get("command")):
            errs.required(child(p, "command"))
        elif kind == "httpGet":
            validate_port_num_or_name(errs, action.get("port"), child(p, "port"))
            _enum(errs, action.get("scheme"), child(p, "scheme"), ("HTTP", "HTTPS"))
            for hdr in _l(action.get("httpHeaders")):
                name = _s(_m(hdr).get("name"))
                if not name or any(not (c.isascii() and (c.isalnum() or c == "-")) for c in name):
                    errs.invalid(child(p, "httpHeaders"), name,
                                 "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. "
                                 "'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')")
        elif kind == "tcpSocket":
            validate_port_num_or_name(errs, action.get("port"), child(p, "port"))
        elif kind == "grpc":
            validate_port_num_or_name(errs, _int(action.get("port")) or 0, child(p, "port"))
        elif kind == "sleep":
            seconds = _int(action.get("seconds")) or 0
            if grace is not None and (seconds < 0 or seconds > grace):
                errs.invalid(p, seconds, f"must be non-negative and less than terminationGracePeriodSeconds ({grace})")
    if count == 0:
        errs.required(path, "must specify a handler type")


def _validate_probe(errs: Errs, probe: Any, path: str, kind: str, grace: int | None) -> None:
    if probe is None:
        return
    probe = _m(probe)
    _validate_handler(errs, probe, path, ("exec", "httpGet", "tcpSocket", "grpc"), grace)
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs.nonnegative(child(path, f), probe.get(f))
    tgps = _int(probe.get("terminationGracePeriodSeconds"))
    if tgps is not None and tgps <= 0:
        errs.invalid(child(path, "terminationGracePeriodSeconds"), tgps, "must be greater than 0")
    success = _int(probe.get("successThreshold"))
    if kind in ("livenessProbe", "startupProbe") and success not in (None, 0, 1):
        errs.invalid(child(path, "successThreshold"), success, "must be 1")
    if kind == "readinessProbe" and probe.get("terminationGracePeriodSeconds") is not None:
        errs.invalid(child(path, "terminationGracePeriodSeconds"), tgps,
                     "must not be set for readinessProbes")


def _validate_env(errs: Errs, env: Any, path: str) -> None:
    for i, ev in enumerate(_l(env)):
        ev, p = _m(ev), idx(path, i)
        name = _s(ev.get("name"))
        if not name:
            errs.required(child(p, "name"))
        elif any(not c.isascii() or not c.isprintable() or c == "=" for c in name):
            # RelaxedEnvironmentVariableValidation is on by default since v1.32.
            errs.invalid(child(p, "name"), name,
                         "a valid environment variable name must consist only of printable ASCII characters other "
                         "than '='")
        vf = ev.get("valueFrom")
        if vf is None:
            continue
        vf, vp = _m(vf), child(p, "valueFrom")
        sources = [s for s in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if vf.get(s)]
        for s in sources:
            src, sp = _m(vf.get(s)), child(vp, s)
            if s == "fieldRef":
                fp = _s(src.get("fieldPath"))
                if src.get("apiVersion") == "":
                    errs.required(child(sp, "apiVersion"))
                elif not fp:
                    errs.required(child(sp, "fieldPath"))
                elif "[" in fp:
                    base = fp.split("[", 1)[0]
                    if base not in ("metadata.annotations", "metadata.labels"):
                        errs.invalid(sp, base, "does not support subscript")
                elif fp not in _ENV_FIELD_PATHS:
                    errs.not_supported(child(sp, "fieldPath"), fp, sorted(_ENV_FIELD_PATHS))
            elif s == "resourceFieldRef":
                res = _s(src.get("resource"))
                if not res:
                    errs.required(child(sp, "resource"))
                elif res not in _RESOURCE_FIELD_REFS and not res.startswith(("requests.hugepages-",
                                                                             "limits.hugepages-")):
                    errs.not_supported(child(sp, "resource"), res, _RESOURCE_FIELD_REFS)
            else:
                errs.each(child(sp, "name"), _s(src.get("name")), is_dns1123_subdomain(_s(src.get("name"))))
                k = _s(src.get("key"))
                if not k:
                    errs.required(child(sp, "key"))
                else:
                    errs.each(child(sp, "key"), k, is_config_map_key(k))
        if not sources:
            errs.invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                         "`secretKeyRef`")
        elif ev.get("value"):
            errs.invalid(vp, "", "may not be specified when `value` is not empty")
        elif len(sources) > 1:
            errs.invalid(vp, "", "may not have more than one field specified at a time")


def _validate_env_from(errs: Errs, env_from: Any, path: str) -> None:
    for i, ef in enumerate(_l(env_from)):
        ef, p = _m(ef), idx(path, i)
        prefix = _s(ef.get("prefix"))
        if prefix and any(not c.isascii() or not c.isprintable() or c == "=" for c in prefix):
            errs.invalid(child(p, "prefix"), prefix, "a valid environment variable name must consist only of "
                         "printable ASCII characters other than '='")
        sources = [s for s in ("configMapRef", "secretRef") if ef.get(s) is not None]
        for s in sources:
            name = _s(_m(ef.get(s)).get("name"))
            if not name:
                errs.required(child(p, s, "name"))
            else:
                masked = name[:-2] + "a" if name.endswith("-") else name
                errs.each(child(p, s, "name"), name, is_dns1123_subdomain(masked))
        if not sources:
            errs.invalid(path, "", "must specify one of: `configMapRef` or `secretRef`")
        elif len(sources) > 1:
            errs.invalid(path, "", "may not have more than one field specified at a time")


def _validate_ports(errs: Errs, ports: Any, path: str) -> None:
    names: set[str] = set()
    for i, port in enumerate(_l(ports)):
        port, p = _m(port), idx(path, i)
        name = _s(port.get("name"))
        if name:
            msgs = port_name_errs(name)
            if msgs:
                errs.each(child(p, "name"), name, msgs)
            elif name in names:
                errs.duplicate(child(p, "name"), name)
            names.add(name)
        cp = port.get("containerPort")
        if not cp:
            errs.required(child(p, "containerPort"))
        elif _int(cp) is None:
            errs.type_invalid(child(p, "containerPort"), cp, "must be of type int32")
        else:
            for msg in _port_num_errs(cp):
                errs.invalid(child(p, "containerPort"), cp, msg)
        hp = port.get("hostPort")
        if hp and _int(hp) is not None:
            for msg in _port_num_errs(hp):
                errs.invalid(child(p, "hostPort"), hp, msg)
        _enum(errs, port.get("protocol"), child(p, "protocol"), PROTOCOLS)


def _check_host_ports(errs: Errs, containers: list[Any], path: str) -> None:
    seen: set[str] = set()
    for ci, c in enumerate(containers):
        for pi, port in enumerate(_l(_m(c).get("ports"))):
            port = _m(port)
            hp = _int(port.get("hostPort"))
            if not hp:
                continue
            text = f"{port.get('protocol') or 'TCP'}/{_s(port.get('hostIP'))}/{hp}"
            if text in seen:
                errs.duplicate(child(idx(child(idx(path, ci), "ports"), pi), "hostPort"), text)
            seen.add(text)


def _validate_local_descending_path(errs: Errs, value: str, path: str) -> None:
    if value.startswith("/"):
        errs.invalid(path, value, "must be a relative path")
    if ".." in value.replace("\\", "/").split("/"):
        errs.invalid(path, value, "must not contain '..'")


def _validate_mounts(errs: Errs, mounts: Any, volumes: Mapping[str, Any], path: str) -> None:
    mount_paths: set[str] = set()
    for i, m in enumerate(_l(mounts)):
        m, p = _m(m), idx(path, i)
        name, mount_path = _s(m.get("name")), _s(m.get("mountPath"))
        if not name:
            errs.required(child(p, "name"))
        if name not in volumes:
            errs.not_found(child(p, "name"), name)
        if not mount_path:
            errs.required(child(p, "mountPath"))
        if mount_path in mount_paths:
            errs.invalid(child(p, "mountPath"), mount_path, "must be unique")
        mount_paths.add(mount_path)
        if m.get("subPath"):
            _validate_local_descending_path(errs, _s(m.get("subPath")), child(path, "subPath"))
        if m.get("subPathExpr"):
            if m.get("subPath"):
                errs.invalid(child(p, "subPathExpr"), m.get("subPathExpr"), "subPathExpr and subPath are mutually "
                             "exclusive")
            _validate_local_descending_path(errs, _s(m.get("subPathExpr")), child(path, "subPathExpr"))
        prop = m.get("mountPropagation")
        if prop is not None:
            _enum(errs, prop, child(path, "mountPropagation"), ("Bidirectional", "HostToContainer", "None"))


# ---------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------


def _validate_container_common(errs: Errs, c: Mapping[str, Any], volumes: Mapping[str, Any], p: str,
                               for_pod: bool) -> None:
    name = c.get("name")
    if not name:
        errs.required(child(p, "name"))
    elif not isinstance(name, str):
        errs.type_invalid(child(p, "name"), name, "must be a string")
    else:
        errs.each(child(p, "name"), name, is_dns1123_label(name))
    image = c.get("image")
    if not image:
        errs.required(child(p, "image"))
    elif for_pod and isinstance(image, str) and image != image.strip():
        errs.invalid(child(p, "image"), image, "must not have leading or trailing whitespace")
    _enum(errs, c.get("terminationMessagePolicy"), child(p, "terminationMessagePolicy"),
          ("File", "FallbackToLogsOnError"))
    _validate_ports(errs, c.get("ports"), child(p, "ports"))
    _validate_env(errs, c.get("env"), child(p, "env"))
    _validate_env_from(errs, c.get("envFrom"), child(p, "envFrom"))
    _validate_mounts(errs, c.get("volumeMounts"), volumes, child(p, "volumeMounts"))
    _enum(errs, c.get("imagePullPolicy"), child(p, "imagePullPolicy"), ("Always", "IfNotPresent", "Never"))
    _validate_resources(errs, c.get("resources"), child(p, "resources"))
    sc = _m(c.get("securityContext"))
    for f in ("runAsUser", "runAsGroup"):
        v = _int(sc.get(f))
        if v is not None and not 0 <= v <= 0xFFFFFFFF:
            errs.invalid(child(p, "securityContext", f), v, "must be between 0 and 4294967295, inclusive")


def _validate_lifecycle(errs: Errs, lc: Any, p: str, grace: int | None) -> None:
    for hook in ("postStart", "preStop"):
        h = _m(lc).get(hook)
        if h is not None:
            _validate_handler(errs, _m(h), child(p, hook), ("exec", "httpGet", "tcpSocket", "sleep"), grace)


def _validate_containers(errs: Errs, spec: Mapping[str, Any], volumes: Mapping[str, Any], path: str,
                         grace: int | None, for_pod: bool) -> None:
    containers = _l(spec.get("containers"))
    cpath = child(path, "containers")
    if not containers:
        errs.required(cpath)
    names: set[str] = set()
    for i, c in enumerate(containers):
        c, p = _m(c), idx(cpath, i)
        _validate_container_common(errs, c, volumes, p, for_pod)
        name = _s(c.get("name"))
        if name in names:
            errs.duplicate(child(p, "name"), name)
        names.add(name)
        if c.get("lifecycle") is not None:
            _validate_lifecycle(errs, c.get("lifecycle"), child(p, "lifecycle"), grace)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            _validate_probe(errs, c.get(probe), child(p, probe), probe, grace)
        if c.get("restartPolicy") is not None:
            errs.forbidden(child(p, "restartPolicy"), "may not be set for non-init containers")
    _check_host_ports(errs, containers, cpath)
    ipath = child(path, "initContainers")
    for i, c in enumerate(_l(spec.get("initContainers"))):
        c, p = _m(c), idx(ipath, i)
        _validate_container_common(errs, c, volumes, p, for_pod)
        restart = c.get("restartPolicy")
        if restart is not None and restart != "Always":
            errs.not_supported(child(p, "restartPolicy"), restart, ("Always",))
        name = _s(c.get("name"))
        if name in names:
            errs.duplicate(child(p, "name"), name)
        elif name:
            names.add(name)
        _check_host_ports(errs, [c], ipath)
        if restart == "Always":
            if c.get("lifecycle") is not None:
                _validate_lifecycle(errs, c.get("lifecycle"), child(p, "lifecycle"), grace)
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                _validate_probe(errs, c.get(probe), child(p, probe), probe, grace)
        else:
            for f in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(f) is not None:
                    errs.forbidden(child(p, f), "may not be set for init containers without restartPolicy=Always")


# ---------------------------------------------------------------------------
# Volumes
# ---------------------------------------------------------------------------


def _validate_mode(errs: Errs, value: Any, path: str) -> None:
    mode = _int(value)
    if mode is not None and not 0 <= mode <= 0o777:
        errs.invalid(path, mode, _FILE_MODE_MSG)


def _validate_items(errs: Errs, items: Any, path: str) -> None:
    for i, kp in enumerate(_l(items)):
        kp, p = _m(kp), idx(path, i)
        if not kp.get("key"):
            errs.required(child(p, "key"))
        item_path = _s(kp.get("path"))
        if not item_path:
            errs.required(child(p, "path"))
        _validate_local_descending_path(errs, item_path, child(p, "path"))
        if item_path.startswith("..") and not item_path.startswith("../"):
            errs.invalid(child(p, "path"), item_path, "must not start with '..'")
        _validate_mode(errs, kp.get("mode"), child(p, "mode"))


def _validate_volume_source(errs: Errs, vol: Mapping[str, Any], p: str) -> None:
    count = 0
    for field_name, err_name in _VOLUME_SOURCES:
        if vol.get(field_name) is None:
            continue
        if count:
            errs.forbidden(child(p, err_name), "may not specify more than 1 volume type")
            continue
        count += 1
        src, sp = _m(vol.get(field_name)), child(p, field_name)
        if field_name == "hostPath":
            if not src.get("path"):
                errs.required(child(sp, "path"))
            elif ".." in _s(src.get("path")).split("/"):
                errs.invalid(child(sp, "path"), src.get("path"), "must not contain '..'")
            _enum(errs, src.get("type"), child(sp, "type"), ("BlockDevice", "CharDevice", "Directory",
                  "DirectoryOrCreate", "File", "FileOrCreate", "Socket"))
        elif field_name == "secret":
            if not src.get("secretName"):
                errs.required(child(sp, "secretName"))
        elif field_name == "configMap":
            if not src.get("name"):
                errs.required(child(sp, "name"))
        elif field_name == "persistentVolumeClaim":
            if not src.get("claimName"):
                errs.required(child(sp, "claimName"))
        elif field_name == "nfs":
            if not src.get("server"):
                errs.required(child(sp, "server"))
            if not src.get("path"):
                errs.required(child(sp, "path"))
            if not _s(src.get("path")).startswith("/"):
                errs.invalid(child(sp, "path"), _s(src.get("path")), "must be an absolute path")
        elif field_name == "emptyDir" and src.get("sizeLimit") is not None:
            size = src.get("sizeLimit")
            try:
                negative = not isinstance(size, str | int | float) or parse_quantity(size) < 0
            except ValueError:
                negative = True
            if negative:
                errs.forbidden(child(sp, "sizeLimit"), "SizeLimit field must be a valid resource quantity")
        if field_name in ("secret", "configMap", "downwardAPI", "projected"):
            _validate_mode(errs, src.get("defaultMode"), child(sp, "defaultMode"))
        if field_name in ("secret", "configMap"):
            _validate_items(errs, src.get("items"), child(sp, "items"))


def _validate_volumes(errs: Errs, volumes: Any, path: str) -> dict[str, Any]:
    valid: dict[str, Any] = {}
    for i, vol in enumerate(_l(volumes)):
        vol, p = _m(vol), idx(path, i)
        local = Errs()
        _validate_volume_source(local, vol, p)
        name = vol.get("name")
        if not name:
            local.required(child(p, "name"))
        elif isinstance(name, str):
            local.each(child(p, "name"), name, is_dns1123_label(name))
            if name in valid:
                local.duplicate(child(p, "name"), name)
        if local:
            errs.extend(local)
        else:
            valid[_s(name)] = vol
    return valid


# ---------------------------------------------------------------------------
# Pod spec
# ---------------------------------------------------------------------------


def validate_tolerations(errs: Errs, tolerations: Any, path: str) -> None:
    for i, t in enumerate(_l(tolerations)):
        t, p = _m(t), idx(path, i)
        k, op, value, effect = _s(t.get("key")), _s(t.get("operator")), _s(t.get("value")), _s(t.get("effect"))
        if k:
            errs.each(child(p, "key"), k, is_qualified_name(k))
        if not k and op != "Exists":
            errs.invalid(child(p, "operator"), op,
                         'operator must be Exists when `key` is empty, which means "match all values and all keys"')
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.invalid(child(p, "effect"), effect, "effect must be 'NoExecute' when `tolerationSeconds` is set")
        if op in ("Equal", ""):
            msgs = is_label_value(value)
            if msgs:
                errs.invalid(child(p, "operator"), value, ";".join(msgs))
        elif op == "Exists":
            if value:
                errs.invalid(child(p, "operator"), value, "value must be empty when `operator` is 'Exists'")
        else:
            errs.not_supported(child(p, "operator"), op, ("Equal", "Exists"))
        if effect:
            _enum(errs, effect, child(p, "effect"), ("NoSchedule", "PreferNoSchedule", "NoExecute"))


def _validate_node_selector_term(errs: Errs, term: Mapping[str, Any], path: str, check_values: bool) -> None:
    for j, req in enumerate(_l(term.get("matchExpressions"))):
        req, p = _m(req), idx(child(path, "matchExpressions"), j)
        op, values = _s(req.get("operator")), _l(req.get("values"))
        if op in ("In", "NotIn") and not values:
            errs.required(child(p, "values"), "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist") and values:
            errs.forbidden(child(p, "values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        elif op in ("Gt", "Lt") and len(values) != 1:
            errs.required(child(p, "values"), "must be specified single value when `operator` is 'Lt' or 'Gt'")
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"):
            errs.invalid(child(p, "operator"), op, "not a valid selector operator")
        errs.each(child(p, "key"), _s(req.get("key")), is_qualified_name(_s(req.get("key"))))
        if check_values:
            for k, v in enumerate(values):
                errs.each(idx(child(p, "values"), k), str(v), is_label_value(str(v)))


def _validate_affinity(errs: Errs, affinity: Any, path: str) -> None:
    na = _m(_m(affinity).get("nodeAffinity"))
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if req is not None:
        tpath = child(path, "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
        terms = _l(_m(req).get("nodeSelectorTerms"))
        if not terms:
            errs.required(tpath, "must have at least one node selector term")
        for i, term in enumerate(terms):
            _validate_node_selector_term(errs, _m(term), idx(tpath, i), True)
    ppath = child(path, "nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution")
    for i, pref in enumerate(_l(na.get("preferredDuringSchedulingIgnoredDuringExecution"))):
        weight = _int(_m(pref).get("weight")) or 0
        if not 1 <= weight <= 100:
            errs.invalid(child(idx(ppath, i), "weight"), weight, "must be in the range 1-100")
        _validate_node_selector_term(errs, _m(_m(pref).get("preference")), child(idx(ppath, i), "preference"), False)
    for kind in ("podAffinity", "podAntiAffinity"):
        pa = _m(_m(affinity).get(kind))
        rpath = child(path, kind, "requiredDuringSchedulingIgnoredDuringExecution")
        terms = [(idx(rpath, i), _m(t)) for i, t in enumerate(_l(pa.get("requiredDuringSchedulingIgnoredDuringExecution")))]
        wpath = child(path, kind, "preferredDuringSchedulingIgnoredDuringExecution")
        for i, wt in enumerate(_l(pa.get("preferredDuringSchedulingIgnoredDuringExecution"))):
            weight = _int(_m(wt).get("weight")) or 0
            if not 1 <= weight <= 100:
                errs.invalid(child(idx(wpath, i), "weight"), weight, "must be in the range 1-100")
            terms.append((child(idx(wpath, i), "podAffinityTerm"), _m(_m(wt).get("podAffinityTerm"))))
        for p, term in terms:
            validate_label_selector(errs, term.get("labelSelector"), child(p, "labelSelector"))
            validate_label_selector(errs, term.get("namespaceSelector"), child(p, "namespaceSelector"))
            topology_key = _s(term.get("topologyKey"))
            if not topology_key:
                errs.required(child(p, "topologyKey"), "can not be empty")
            errs.each(child(p, "topologyKey"), topology_key, is_qualified_name(topology_key))


def _validate_topology_spread(errs: Errs, constraints: Any, path: str) -> None:
    items = [_m(c) for c in _l(constraints)]
    for i, c in enumerate(items):
        p = idx(path, i)
        skew = _int(c.get("maxSkew")) or 0
        if skew <= 0:
            errs.invalid(child(p, "maxSkew"), skew, "must be greater than zero")
        topology_key = _s(c.get("topologyKey"))
        if not topology_key:
            errs.required(child(p, "topologyKey"), "can not be empty")
        else:
            errs.each(child(p, "topologyKey"), topology_key, is_qualified_name(topology_key))
        when = _s(c.get("whenUnsatisfiable"))
        if when not in ("DoNotSchedule", "ScheduleAnyway"):
            errs.not_supported(child(p, "whenUnsatisfiable"), when, ("DoNotSchedule", "ScheduleAnyway"))
        for later in items[i + 1:]:
            if later.get("topologyKey") == topology_key and later.get("whenUnsatisfiable") == when:
                errs.duplicate(child(p, "{topologyKey, whenUnsatisfiable}"), f"{{{topology_key}, {when}}}")
        validate_label_selector(errs, c.get("labelSelector"), child(p, "labelSelector"))


def validate_pod_spec(errs: Errs, spec: Any, path: str, *, for_pod: bool, create: bool = True) -> None:
    """ValidatePodSpec (plus the pod-only rules when ``for_pod``; ``create`` False on updates)."""
    spec = _m(spec)
    grace = _int(spec.get("terminationGracePeriodSeconds"))
    if grace is None:
        grace = 30
    volumes = _validate_volumes(errs, spec.get("volumes"), child(path, "volumes"))
    _validate_containers(errs, spec, volumes, path, grace, for_pod)
    if spec.get("ephemeralContainers") and (create or not for_pod):
        errs.forbidden(child(path, "ephemeralContainers"),
                       "cannot be set on create" if for_pod else "ephemeral containers not allowed in pod template")
    if spec.get("hostNetwork") is True:
        for i, c in enumerate(_l(spec.get("containers"))):
            for j, port in enumerate(_l(_m(c).get("ports"))):
                # For pods a zero hostPort is defaulted to containerPort, so only a mismatch counts.
                hp, cp = _int(_m(port).get("hostPort")) or 0, _int(_m(port).get("containerPort")) or 0
                if hp not in (0, cp):
                    errs.invalid(child(idx(child(idx(child(path, "containers"), i), "ports"), j), "hostPort"), hp,
                                 "must match `containerPort` when `hostNetwork` is true")
    _enum(errs, spec.get("restartPolicy"), child(path, "restartPolicy"), ("Always", "OnFailure", "Never"))
    _enum(errs, spec.get("dnsPolicy"), child(path, "dnsPolicy"),
          ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"))
    if spec.get("dnsPolicy") == "None":
        cfg = spec.get("dnsConfig")
        if cfg is None:
            errs.required(child(path, "dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None")
        elif not _l(_m(cfg).get("nameservers")):
            errs.required(child(path, "dnsConfig", "nameservers"),
                          "must provide at least one DNS nameserver when `dnsPolicy` is None")
    for i, ns in enumerate(_l(_m(spec.get("dnsConfig")).get("nameservers"))):
        if not is_valid_ip(str(ns)):
            errs.invalid(idx(child(path, "dnsConfig", "nameservers"), i), str(ns),
                         "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    validate_labels(errs, spec.get("nodeSelector"), child(path, "nodeSelector"))
    sc = _m(spec.get("securityContext"))
    for f in ("runAsUser", "runAsGroup", "fsGroup"):
        v = _int(sc.get(f))
        if v is not None and not 0 <= v <= 0xFFFFFFFF:
            errs.invalid(child(path, "securityContext", f), v, "must be between 0 and 4294967295, inclusive")
    _validate_affinity(errs, spec.get("affinity"), child(path, "affinity"))
    _validate_topology_spread(errs, spec.get("topologySpreadConstraints"), child(path, "topologySpreadConstraints"))
    for f in ("serviceAccountName", "nodeName", "priorityClassName"):
        text = _s(spec.get(f))
        if text:
            errs.each(child(path, f), text, is_dns1123_subdomain(text))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (_int(ads) is None or not 1 <= ads <= _MAX_INT32):
        errs.invalid(child(path, "activeDeadlineSeconds"), ads, f"must be between 1 and {_MAX_INT32}, inclusive")
    for f in ("hostname", "subdomain"):
        text = _s(spec.get(f))
        if text:
            errs.each(child(path, f), text, is_dns1123_label(text))
    validate_tolerations(errs, spec.get("tolerations"), child(path, "tolerations"))
    for i, alias in enumerate(_l(spec.get("hostAliases"))):
        ip = _s(_m(alias).get("ip"))
        if not is_valid_ip(ip):
            errs.invalid(child(idx(child(path, "hostAliases"), i), "ip"), ip,
                         "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    pp = spec.get("preemptionPolicy")
    if pp is not None:
        if pp == "":
            errs.required(child(path, "preemptionPolicy"))
        elif pp not in ("PreemptLowerPriority", "Never"):
            errs.not_supported(child(path, "preemptionPolicy"), pp, ("PreemptLowerPriority", "Never"))
    for i, gate in enumerate(_l(spec.get("schedulingGates"))):
        name = _s(_m(gate).get("name"))
        errs.each(idx(child(path, "schedulingGates"), i), name, is_qualified_name(name))


def validate_pod_template(errs: Errs, template: Any, path: str) -> None:
    """ValidatePodTemplateSpec: template labels/annotations and its pod spec."""
    template = _m(template)
    validate_template_meta(errs, template.get("metadata"), path)
    validate_pod_spec(errs, template.get("spec"), child(path, "spec"), for_pod=False)


# ---------------------------------------------------------------------------
# Pod update (ValidatePodUpdate)
# ---------------------------------------------------------------------------


def _normalize(v: Any) -> Any:
    """Semantic equality: nulls and empty lists compare equal to absent fields."""
    if isinstance(v, Mapping):
        return {k: _normalize(x) for k, x in v.items() if x is not None and x != []}
    if isinstance(v, list):
        return [_normalize(x) for x in v]
    return v


def _diff(old: Any, new: Any, path: str, out: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for k in sorted(set(old) | set(new)):
            _diff(old.get(k), new.get(k), child(path, k), out)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(a, b, idx(path, i), out)
    elif old != new:
        out.append(f"- {path}: {json.dumps(old)}")
        out.append(f"+ {path}: {json.dumps(new)}")


def validate_pod_spec_update(errs: Errs, spec: Any, old_spec: Any) -> None:
    spec, old_spec = _m(spec), _m(old_spec)
    for kind in ("containers", "initContainers"):
        new_c, old_c = _l(spec.get(kind)), _l(old_spec.get(kind))
        if len(new_c) != len(old_c):
            errs.forbidden(child("spec", kind), "pod updates may not add or remove containers")
            return
    new_ads, old_ads = _int(spec.get("activeDeadlineSeconds")), _int(old_spec.get("activeDeadlineSeconds"))
    if new_ads is not None:
        if not 0 <= new_ads <= _MAX_INT32:
            errs.invalid("spec.activeDeadlineSeconds", new_ads, f"must be between 0 and {_MAX_INT32}, inclusive")
            return
        if old_ads is not None and old_ads < new_ads:
            errs.invalid("spec.activeDeadlineSeconds", new_ads, "must be less than or equal to previous value")
            return
    elif old_ads is not None:
        errs.invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value")
    new_tol = [_normalize(t) for t in _l(spec.get("tolerations"))]
    for old in _l(old_spec.get("tolerations")):
        old = {k: v for k, v in _normalize(old).items() if k != "tolerationSeconds"}
        if not any({k: v for k, v in t.items() if k != "tolerationSeconds"} == old for t in new_tol):
            errs.forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")
            break
    old_gates = {_m(g).get("name") for g in _l(old_spec.get("schedulingGates"))}
    for i, gate in enumerate(_l(spec.get("schedulingGates"))):
        name = _m(gate).get("name")
        if name not in old_gates:
            errs.forbidden(child(idx("spec.schedulingGates", i), "name"),
                           f"only deletion is allowed, but found new scheduling gate '{name}'")
    munged = dict(_normalize(spec))
    old_n = _normalize(old_spec)
    for kind in ("containers", "initContainers"):
        munged[kind] = [dict(c, image=o.get("image")) for c, o in
                        zip(_l(munged.get(kind)), _l(old_n.get(kind)), strict=False)]
        if not munged[kind]:
            del munged[kind]
    for f in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        munged.pop(f, None)
        if f in old_n:
            munged[f] = old_n[f]
    old_tgps, new_tgps = _int(old_n.get("terminationGracePeriodSeconds")), _int(munged.get("terminationGracePeriodSeconds"))
    if old_tgps is not None and old_tgps < 0 and new_tgps == 1:
        munged["terminationGracePeriodSeconds"] = old_tgps
    if munged != old_n:
        lines: list[str] = []
        _diff(old_n, munged, "spec", lines)
        errs.forbidden("spec", "pod updates may not change fields other than " + ",".join(UPDATABLE_POD_SPEC_FIELDS)
                       + "\n" + "\n".join(lines))
