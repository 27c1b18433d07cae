"""A container's environment, command and args as Kubernetes computes them.

Why this exists: `env`, `envFrom`, the downward API (`fieldRef`, `resourceFieldRef`), ConfigMap
and Secret references and `$(VAR)` expansion have exact upstream semantics (kubelet_pods.go
makeEnvironmentVariables, third_party/forked/golang/expansion) that workloads depend on: envFrom
first (with its prefix), then `env` in order, each value expanded against what was defined before
it; a missing non-optional reference fails the start with CreateContainerConfigError. Keeping it
a pure module over a small `ObjectSource` makes it testable without an API server.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from shared.api.quantity import parse_quantity

Obj = dict[str, Any]


class ConfigError(Exception):
    """The container's configuration cannot be built (CreateContainerConfigError)."""


class ObjectSource(Protocol):
    """ConfigMaps and Secrets of the pod's namespace; None when the object does not exist
    (any other failure, e.g. the API server being down, raises)."""

    async def configmap(self, namespace: str, name: str) -> Obj | None: ...

    async def secret(self, namespace: str, name: str) -> Obj | None: ...


# ---- $(VAR) expansion --------------------------------------------------------------------------


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Kubernetes' expansion: `$(NAME)` -> mapping(NAME); `$$` -> `$`; anything else is kept."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    out.append(mapping(text[cursor + 2:close]))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    def lookup(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"

    return lookup


def expand_command(container: Mapping[str, Any], env: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(command, args) with `$(VAR)` references expanded against the final environment."""
    mapping = mapping_for(dict(env))
    command = [expand(str(c), mapping) for c in container.get("command") or []]
    args = [expand(str(a), mapping) for a in container.get("args") or []]
    return command, args


# ---- downward API --------------------------------------------------------------------------------


def _format_map(m: Mapping[str, Any]) -> str:
    """fieldpath.FormatMap: sorted `key="value"` lines (values quoted like Go's %q)."""
    import json

    return "\n".join(f"{k}={json.dumps(str(m[k]))}" for k in sorted(m))


def _subscript(path: str, prefix: str) -> str | None:
    if path.startswith(prefix + "['") and path.endswith("']"):
        return path[len(prefix) + 2:-2]
    return None


def field_value(pod: Mapping[str, Any], path: str, pod_ips: Sequence[str], host_ips: Sequence[str]) -> str:
    """The value of a `fieldRef.fieldPath` (podFieldSelectorRuntimeValue + ExtractFieldPathAsString)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple: dict[str, Callable[[], str]] = {
        "spec.nodeName": lambda: str(spec.get("nodeName") or ""),
        "spec.serviceAccountName": lambda: str(spec.get("serviceAccountName") or ""),
        "status.hostIP": lambda: host_ips[0] if host_ips else "",
        "status.hostIPs": lambda: ",".join(host_ips),
        "status.podIP": lambda: pod_ips[0] if pod_ips else "",
        "status.podIPs": lambda: ",".join(pod_ips),
        "metadata.name": lambda: str(meta.get("name") or ""),
        "metadata.namespace": lambda: str(meta.get("namespace") or ""),
        "metadata.uid": lambda: str(meta.get("uid") or ""),
        "metadata.labels": lambda: _format_map(meta.get("labels") or {}),
        "metadata.annotations": lambda: _format_map(meta.get("annotations") or {}),
    }
    if path in simple:
        return simple[path]()
    for prefix in ("metadata.labels", "metadata.annotations"):
        key = _subscript(path, prefix)
        if key is not None:
            return str((meta.get(prefix.split(".")[1]) or {}).get(key, ""))
    raise ConfigError(f"unsupported fieldPath: {path}")


def resource_value(container: Mapping[str, Any], ref: Mapping[str, Any], allocatable: Mapping[str, str]) -> str:
    """The value of a `resourceFieldRef` (ExtractContainerResourceValue); a limit that is not set
    is the node's allocatable amount, as the kubelet defaults it for the downward API."""
    resource = str(ref.get("resource") or "")
    divisor_text = ref.get("divisor")
    try:
        divisor = parse_quantity(divisor_text) if divisor_text not in (None, "", "0") else Decimal(1)
    except ValueError as e:
        raise ConfigError(f"invalid divisor {divisor_text!r}: {e}") from None
    if divisor == 0:
        divisor = Decimal(1)
    kind, _, name = resource.partition(".")
    res = container.get("resources") or {}
    amounts = res.get(kind) or {}
    q = amounts.get(name)
    if q is None and kind == "requests":
        q = (res.get("limits") or {}).get(name)  # requests default to limits
    if q is None and kind == "limits":
        q = allocatable.get(name)
    if kind not in ("limits", "requests") or (name not in ("cpu", "memory", "ephemeral-storage") and not name.startswith(
            "hugepages-")):
        raise ConfigError(f"unsupported container resource: {resource}")
    try:
        value = parse_quantity(q) if q is not None else Decimal(0)
    except ValueError as e:
        raise ConfigError(f"invalid quantity for {resource}: {e}") from None
    if name == "cpu":
        # ceil(milli(value) / milli(divisor)); milli values round up like Quantity.MilliValue
        return str(math.ceil(math.ceil(value * 1000) / math.ceil(divisor * 1000)))
    return str(math.ceil(math.ceil(value) / math.ceil(divisor)))


# ---- the environment -------------------------------------------------------------------------------


def _data_of(obj: Obj, secret: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    if secret:
        for k, v in (obj.get("data") or {}).items():
            try:
                out[k] = base64.b64decode(v).decode("utf-8", errors="replace")
            except (ValueError, TypeError):
                out[k] = ""
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v)
    else:
        out.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
    return out


def _valid_env_name(name: str) -> bool:
    return bool(name) and "=" not in name and "\x00" not in name


async def make_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    source: ObjectSource,
    *,
    pod_ips: Sequence[str],
    host_ips: Sequence[str],
    allocatable: Mapping[str, str],
) -> list[tuple[str, str]]:
    """The container's environment in definition order (envFrom, then env)."""
    ns = str((pod.get("metadata") or {}).get("namespace") or "default")
    env: dict[str, str] = {}
    mapping = mapping_for(env)
    cache: dict[tuple[str, str], Obj | None] = {}

    async def fetch(kind: str, name: str) -> Obj | None:
        key = (kind, name)
        if key not in cache:
            try:
                cache[key] = await (source.secret(ns, name) if kind == "secret" else source.configmap(ns, name))
            except ConfigError:
                raise
            except Exception as e:
                raise ConfigError(f"couldn't get {kind} {ns}/{name}: {e}") from None
        return cache[key]

    for env_from in container.get("envFrom") or []:
        prefix = str(env_from.get("prefix") or "")
        for kind, ref_key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = env_from.get(ref_key)
            if not isinstance(ref, dict):
                continue
            name = str(ref.get("name") or "")
            obj = await fetch(kind, name)
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{name}" not found')
            for k, v in _data_of(obj, kind == "secret").items():
                if _valid_env_name(prefix + k):
                    env[prefix + k] = v

    for var in container.get("env") or []:
        name = str(var.get("name") or "")
        value = var.get("value")
        value_from = var.get("valueFrom")
        if value:
            env[name] = expand(str(value), mapping)
            continue
        if not isinstance(value_from, dict):
            env[name] = ""
            continue
        if isinstance(value_from.get("fieldRef"), dict):
            env[name] = field_value(pod, str(value_from["fieldRef"].get("fieldPath") or ""), pod_ips, host_ips)
        elif isinstance(value_from.get("resourceFieldRef"), dict):
            ref = value_from["resourceFieldRef"]
            target = container
            if ref.get("containerName"):
                spec = pod.get("spec") or {}
                target = next((c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                               if c.get("name") == ref["containerName"]), container)
            env[name] = resource_value(target, ref, allocatable)
        else:
            for kind, ref_key, label in (("configmap", "configMapKeyRef", "ConfigMap"),
                                         ("secret", "secretKeyRef", "Secret")):
                ref = value_from.get(ref_key)
                if not isinstance(ref, dict):
                    continue
                obj_name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
                optional = bool(ref.get("optional"))
                obj = await fetch(kind, obj_name)
                if obj is None:
                    if optional:
                        break
                    raise ConfigError(f'{kind} "{obj_name}" not found')
                data = _data_of(obj, kind == "secret")
                if key not in data:
                    if optional:
                        break
                    raise ConfigError(f"couldn't find key {key} in {label} {ns}/{obj_name}")
                env[name] = data[key]
                break
    return list(env.items())
