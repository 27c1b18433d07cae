"""The three PATCH bodies kubectl sends: JSON merge patch, JSON patch and strategic merge patch.

The apiserver stores objects as plain JSON dicts, so it cannot lean on Go struct tags the way
kube-apiserver does. This module applies the patches to dicts: RFC 7386 merge patch, RFC 6902
JSON patch, and a port of apimachinery's ``strategicpatch`` apply half (``mergeMap`` and
friends) driven by a table of the patch strategies and merge keys declared in k8s.io/api, looked
up by the path of field names instead of by Go type. Keeping it pure lets the apiserver, the
controllers and the tests share one implementation. Nothing here mutates its inputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class PatchError(ValueError):
    """A patch that is malformed or cannot be applied to the object."""


def _to_json(value: Any) -> Any:
    """A deep copy with every mapping a dict and every sequence a list."""
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _cat(v: Any) -> str:
    """The Go type a JSON value decodes to; ints and floats are both float64."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    return type(v).__name__


def _same(a: Any, b: Any) -> bool:
    """JSON equality that, like Go's, never takes ``true`` for ``1``."""
    if _cat(a) != _cat(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _go(v: Any) -> str:
    """Render a value as Go's ``%v`` does, for error messages."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go(x) for x in v) + "]"
    return str(v)


# ---------------------------------------------------------------- RFC 7386 JSON merge patch


def json_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: null deletes, objects merge, anything else replaces."""
    if not isinstance(patch, Mapping):
        return _to_json(patch)
    result = _to_json(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------- RFC 6902 JSON patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/") or re.search(r"~(?![01])", path):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _index(token: str, length: int, allow_end: bool) -> int:
    if allow_end and token == "-":
        return length
    if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) > length or (not allow_end and int(token) == length):
        raise PatchError(f"Unable to access invalid index: {token}: invalid index referenced")
    return int(token)


def _resolve(doc: Any, tokens: list[str], path: str, op: str) -> Any:
    for tok in tokens:
        if isinstance(doc, dict) and tok in doc:
            doc = doc[tok]
        elif isinstance(doc, list) and re.fullmatch(r"0|[1-9][0-9]*", tok) and int(tok) < len(doc):
            doc = doc[int(tok)]
        else:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return doc


def _add(doc: Any, tokens: list[str], value: Any, path: str, op: str = "add") -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], path, op)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), allow_end=True), value)
    else:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')
    return doc


def _remove(doc: Any, tokens: list[str], path: str, op: str = "remove") -> Any:
    if not tokens:
        raise PatchError(f"{op} operation does not apply: cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1], path, op)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(last, len(parent), allow_end=False))
    raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value')


def _replace(doc: Any, tokens: list[str], value: Any, path: str) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], path, "replace")
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        parent[last] = value
    elif isinstance(parent, list):
        parent[_index(last, len(parent), allow_end=False)] = value
    else:
        raise PatchError(f"replace operation does not apply: doc is missing key: {path}: missing value")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch (a list of operations) to a copy of ``target``."""
    if not isinstance(ops, list | tuple):
        raise PatchError("a JSON patch must be a list of operations")
    doc = _to_json(target)
    for raw in ops:
        if not isinstance(raw, Mapping):
            raise PatchError(f"invalid JSON patch operation: {raw!r}")
        op, path = raw.get("op"), raw.get("path")
        if not isinstance(path, str):
            raise PatchError(f"invalid JSON patch operation: path must be a string: {raw!r}")
        tokens = _pointer(path)
        if op in ("add", "replace", "test") and "value" not in raw:
            raise PatchError(f"{op} operation does not apply: missing value")
        if op == "add":
            doc = _add(doc, tokens, _to_json(raw["value"]), path)
        elif op == "remove":
            _remove(doc, tokens, path)
        elif op == "replace":
            doc = _replace(doc, tokens, _to_json(raw["value"]), path)
        elif op in ("move", "copy"):
            src = raw.get("from")
            if not isinstance(src, str):
                raise PatchError(f"invalid JSON patch operation: from must be a string: {raw!r}")
            src_tokens = _pointer(src)
            value = _resolve(doc, src_tokens, src, op)
            if op == "move":
                if src == path:
                    continue
                if path.startswith(src + "/"):
                    raise PatchError(f"move operation does not apply: cannot move {src} into its own child {path}")
                _remove(doc, src_tokens, src, "move")
            doc = _add(doc, tokens, _to_json(value), path, op)
        elif op == "test":
            if not _same(_resolve(doc, tokens, path, "test"), _to_json(raw["value"])):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {op}")
    return doc


# ---------------------------------------------------------------- strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
_SET_ELEMENT_ORDER = "$setElementOrder"

_MERGE, _REPLACE = "merge", "replace"
_MAP = _cat({})
_Meta = tuple[str, str]  # (patchStrategy, patchMergeKey); ("", "") means none: lists are replaced

_CONTAINERS = ("containers", "initContainers", "ephemeralContainers")
_CONTAINER_STATUSES = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")

# patchStrategy/patchMergeKey tags of k8s.io/api, keyed by the last field names of the path, so
# one entry covers a PodSpec wherever it is nested (pod.spec, *.spec.template.spec, CronJob's
# spec.jobTemplate.spec.template.spec). The longest matching suffix wins. Tags whose only effect
# is client-side (retainKeys on volumes, resourceClaims, Deployment.spec.strategy) need no entry:
# a $retainKeys directive is honoured wherever it appears.
_SUFFIX_RULES: dict[tuple[str, ...], _Meta] = {
    ("metadata", "finalizers"): (_MERGE, ""),
    ("metadata", "ownerReferences"): (_MERGE, "uid"),
    **{("spec", c): (_MERGE, "name") for c in _CONTAINERS},
    ("spec", "volumes"): (_MERGE, "name"),
    ("spec", "imagePullSecrets"): (_MERGE, "name"),
    ("spec", "hostAliases"): (_MERGE, "ip"),
    ("spec", "topologySpreadConstraints"): (_MERGE, "topologyKey"),  # listMapKey adds whenUnsatisfiable
    ("spec", "resourceClaims"): (_MERGE, "name"),
    ("spec", "schedulingGates"): (_MERGE, "name"),
    **{(c, "ports"): (_MERGE, "containerPort") for c in _CONTAINERS},
    **{(c, "env"): (_MERGE, "name") for c in _CONTAINERS},
    **{(c, "volumeMounts"): (_MERGE, "mountPath") for c in _CONTAINERS},
    **{(c, "volumeDevices"): (_MERGE, "devicePath") for c in _CONTAINERS},
    **{(c, "volumeMounts"): (_MERGE, "mountPath") for c in _CONTAINER_STATUSES},
    **{(c, "allocatedResourcesStatus"): (_MERGE, "name") for c in _CONTAINER_STATUSES},
    ("status", "podIPs"): (_MERGE, "ip"),
    ("status", "hostIPs"): (_MERGE, "ip"),
    ("status", "resourceClaimStatuses"): (_MERGE, "name"),
    # pods, nodes, namespaces, PVCs, RCs, services, deployments, replicasets, statefulsets,
    # daemonsets, jobs, HPAs and PDBs all tag status.conditions merge/type.
    ("status", "conditions"): (_MERGE, "type"),
    ("status", "addresses"): (_MERGE, "type"),  # NodeStatus
    ("spec", "podCIDRs"): (_MERGE, ""),  # NodeSpec
    ("spec", "ports"): (_MERGE, "port"),  # ServiceSpec (listMapKey adds protocol)
    ("spec", "matchConditions"): (_MERGE, "name"),  # Validating/MutatingAdmissionPolicy
    ("spec", "variables"): (_MERGE, "name"),
    ("webhooks", "matchConditions"): (_MERGE, "name"),
    ("spec", "drivers"): (_MERGE, "name"),  # CSINode
    ("status", "reservedFor"): (_MERGE, "uid"),  # ResourceClaim
}
_MAX_SUFFIX = max(len(k) for k in _SUFFIX_RULES)
# Whole-path rules that only hold for one kind, checked before the suffix table.
_KIND_RULES: dict[str, dict[tuple[str, ...], _Meta]] = {
    "ServiceAccount": {("secrets",): (_MERGE, "name")},
    "ComponentStatus": {("conditions",): (_MERGE, "type")},
    "MutatingWebhookConfiguration": {("webhooks",): (_MERGE, "name")},
    "ValidatingWebhookConfiguration": {("webhooks",): (_MERGE, "name")},
    "PodDisruptionBudget": {("spec", "selector"): (_REPLACE, "")},
    "CertificateSigningRequest": {("status", "conditions"): ("", "")},
}


def patch_meta(path: tuple[str, ...], kind: str | None = None) -> _Meta:
    """The (patchStrategy, patchMergeKey) of the field at ``path`` (field names from the root)."""
    if path in (rules := _KIND_RULES.get(kind or "", {})):
        return rules[path]
    for n in range(min(_MAX_SUFFIX, len(path)), 0, -1):
        if path[-n:] in _SUFFIX_RULES:
            return _SUFFIX_RULES[path[-n:]]
    return "", ""


def _is_directive_key(key: str) -> bool:
    return key in (_DIRECTIVE, _RETAIN_KEYS) or key.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER))


_DROP = object()


def _clean(value: Any) -> Any:
    """A patch value taken as is: nulls in objects and directives dropped (``removeDirectives``).

    Returns ``_DROP`` for an object that is a ``$patch`` directive. Unlike upstream, an object
    holding ``$patch: replace`` keeps its other keys, as it did before upstream's cleanup.
    """
    if isinstance(value, dict):
        if _DIRECTIVE in value and value[_DIRECTIVE] != _REPLACE:
            return _DROP
        out = {}
        for k, v in value.items():
            if v is not None and not _is_directive_key(k) and (c := _clean(v)) is not _DROP:
                out[k] = c
        return out
    if isinstance(value, list):
        return [c for v in value if not (isinstance(v, dict) and _DIRECTIVE in v) and (c := _clean(v)) is not _DROP]
    return value


def _skey(v: Any) -> tuple[str, Any]:
    return (_cat(v), v if isinstance(v, str | int | float | bool) or v is None else _go(v))


def _element_kind(*lists: list[Any]) -> str | None:
    kind: str | None = None
    for lst in lists:
        for v in lst:
            if kind is None:
                kind = _cat(v)
                if isinstance(v, list):
                    raise PatchError("lists of lists are not supported")
            elif _cat(v) != kind:
                raise PatchError(f"list element types are not identical: {_go(list(lists))}")
    return kind


def _no_merge_key(m: Any, key: str) -> PatchError:
    return PatchError(f"map: {_go(m)} does not contain declared merge key: {key}")


def _bad_type(expected: str, actual: Any) -> PatchError:
    return PatchError(f"expected a {expected}, but received a {_cat(actual)}")


def _has_key(m: Any, key: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise _bad_type("map[string]interface {}", m)
    if key not in m:
        raise _no_merge_key(m, key)
    return m


def _find(items: list[Any], key: str, value: Any) -> int:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise PatchError(f"value for key {i} is not a map.")
        if key in item and _same(item[key], value):
            return i
    return -1


def _position(order: list[Any], item: Any, key: str, kind: str) -> int:
    def val(x: Any) -> Any:
        return (x.get(key) if isinstance(x, dict) else None) if kind == _MAP else x

    want = val(item)
    return next((i for i, x in enumerate(order) if _same(val(x), want)), -1)


def _sort_by(items: list[Any], order: list[Any], key: str, kind: str) -> list[Any]:
    """``normalizeSliceOrder``: sort ``items`` by their position in ``order``."""
    deleted: list[Any] = []
    if kind == _MAP:
        for m in (*items, *order):
            _has_key(m, key)
        deleted = [m for m in items if m.get(_DIRECTIVE) == "delete"]
        items = [m for m in items if m.get(_DIRECTIVE) != "delete"]
    return sorted(items, key=lambda x: _position(order, x, key, kind)) + deleted


def _normalize(patch_items: list[Any], server_only: list[Any], patch_order: list[Any],
               server_order: list[Any], key: str, kind: str) -> list[Any]:
    """Order patch items as the patch says and splice in server-only items where they were."""
    right = _sort_by(patch_items, patch_order, key, kind)
    left = _sort_by(server_only, server_order, key, kind)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right) or (i < len(left) and 0 <= _position(server_order, left[i], key, kind)
                               < _position(server_order, right[j], key, kind)):
            out.append(left[i])
            i += 1
        else:  # new patch items (not on the server) therefore come first
            out.append(right[j])
            j += 1
    return out


def _partition(merged: list[Any], by: list[Any], key: str) -> tuple[list[Any], list[Any]]:
    if key:
        inside = [_find(by, key, _has_key(m, key)[key]) >= 0 for m in merged]
    else:
        wanted = {_skey(v) for v in by}
        inside = [_skey(v) in wanted for v in merged]
    return [v for v, f in zip(merged, inside, strict=True) if f], [v for v, f in zip(merged, inside, strict=True) if not f]


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if head != prefix or not sep:
        what = "primitive list" if prefix == _DELETE_FROM_PRIMITIVE_LIST else "setElementOrder list"
        raise PatchError(f"invalid patch format of {what}")
    return rest


class _StrategicMerge:
    def __init__(self, kind: str | None) -> None:
        self.kind = kind

    def merge_map(self, original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> Any:
        if _DIRECTIVE in patch:
            directive = patch[_DIRECTIVE]
            if directive == _REPLACE:
                return _clean({k: v for k, v in patch.items() if k != _DIRECTIVE})
            if directive == "delete":
                return {}
            raise PatchError(f"unknown patch type: {_go(directive)} in map: {_go(patch)}")
        self.retain_keys(original, patch)
        self.set_element_order(original, patch, path)
        for key, pv in patch.items():
            delete_list = key.startswith(_DELETE_FROM_PRIMITIVE_LIST)
            k = _extract_key(key, _DELETE_FROM_PRIMITIVE_LIST) if delete_list else key
            if pv is None:
                original.pop(k, None)
                continue
            ov = original.get(k)
            if k not in original or _cat(ov) != _cat(pv):
                if not delete_list:
                    if (cleaned := _clean(pv)) is _DROP:
                        original.pop(k, None)
                    else:
                        original[k] = cleaned
                continue
            strategy, merge_key = patch_meta((*path, k), self.kind)
            if isinstance(ov, dict):
                merged = _clean(pv) if strategy == _REPLACE else self.merge_map(ov, pv, (*path, k))
                if merged is _DROP:
                    original.pop(k)
                else:
                    original[k] = merged
            elif isinstance(ov, list):
                original[k] = self.merge_list(ov, pv, (*path, k), strategy, merge_key, delete_list)
            else:
                original[k] = pv
        return original

    def retain_keys(self, original: dict[str, Any], patch: dict[str, Any]) -> None:
        """``$retainKeys``: clear every key of ``original`` the list does not name."""
        if _RETAIN_KEYS not in patch:
            return
        keep = patch.pop(_RETAIN_KEYS)
        if not isinstance(keep, list):
            raise PatchError("invalid patch format of retainKeys")
        wanted = {_skey(k) for k in keep}
        for k, v in patch.items():
            if v is not None and not k.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER)) \
                    and _skey(k) not in wanted:
                raise PatchError("invalid patch format of retainKeys")
        for k in [k for k in original if _skey(k) not in wanted]:
            del original[k]

    def set_element_order(self, original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> None:
        """``$setElementOrder/<field>``: merge that list and order it as the directive lists."""
        for directive in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
            order = patch.pop(directive)
            if not isinstance(order, list):
                raise _bad_type("[]interface {}", order)
            field = _extract_key(directive, _SET_ELEMENT_ORDER)
            ov, pv = original.get(field, []), patch.get(field, [])
            for v in (ov, pv):
                if not isinstance(v, list):
                    raise _bad_type("[]interface {}", v)
            strategy, merge_key = patch_meta((*path, field), self.kind)
            self.check_order(pv, order, merge_key)
            if field in patch:
                merged = self.merge_list(ov, pv, (*path, field), strategy, merge_key, False)
            elif field in original:
                merged = ov
            else:
                continue
            kind = _element_kind(ov, pv)
            if kind is not None:
                merged = _normalize(*_partition(merged, order, merge_key), order, ov, merge_key, kind)
            original[field] = merged
            patch.pop(field, None)

    @staticmethod
    def check_order(patch_list: list[Any], order: list[Any], key: str) -> None:
        """The patch list must follow the order of the ``$setElementOrder`` list."""
        if not order or not patch_list:
            return
        items = patch_list
        if key:
            for m in patch_list:
                if not isinstance(m, dict):
                    raise _bad_type("map[string]interface {}", m)
            items = [m for m in patch_list if m.get(_DIRECTIVE) != "delete"]
        pi = oi = 0
        while pi < len(items) and oi < len(order):
            if isinstance(items[pi], dict) and _DIRECTIVE in items[pi]:
                pi += 1
                continue
            if key:
                equal = _same(_has_key(items[pi], key)[key], _has_key(order[oi], key)[key])
            else:
                equal = _same(items[pi], order[oi])
            pi += equal
            oi += 1
        if pi < len(items):
            raise PatchError(f"The order in patch list:\n{_go(patch_list)}\n doesn't match "
                             f"{_SET_ELEMENT_ORDER} list:\n{_go(order)}\n")

    def merge_list(self, original: Any, patch: Any, path: tuple[str, ...], strategy: str, key: str,
                   delete_list: bool) -> list[Any]:
        if not isinstance(original, list) or not isinstance(patch, list):
            raise _bad_type("[]interface {}", patch if isinstance(original, list) else original)
        if strategy != _MERGE:
            return list(_clean(patch))
        if not original and not patch:
            return original
        kind = _element_kind(original, patch) or ""
        if kind != _MAP:  # an ordered set of primitives
            if delete_list:
                drop = {_skey(v) for v in patch}
                return [v for v in original if _skey(v) not in drop]
            merged = list({_skey(v): v for v in [*original, *patch]}.values())
            return _normalize(*_partition(merged, patch, ""), patch, original, "", kind)
        if not key:
            raise PatchError("cannot merge lists without merge key for type map")
        plain: list[Any] = []
        replace = False
        for item in patch:
            if _DIRECTIVE not in item:
                plain.append(item)
            elif item[_DIRECTIVE] == "delete":
                value = _has_key(item, key)[key]
                original = [m for m in original if not (isinstance(m, dict) and key in m and _same(m[key], value))]
            elif item[_DIRECTIVE] == _REPLACE:
                replace = True
            elif item[_DIRECTIVE] == _MERGE:
                raise PatchError("merging lists cannot yet be specified in the patch")
            else:
                raise PatchError(f"unknown patch type: {_go(item[_DIRECTIVE])} in map: {_go(item)}")
        if replace:
            original, plain = [_clean(m) for m in plain], []
        merged = list(original)
        for item in plain:
            at = _find(merged, key, _has_key(item, key)[key])
            if at >= 0:
                merged[at] = self.merge_map(merged[at], item, path)
            else:
                merged.append(_clean(item))
        return _normalize(*_partition(merged, plain, key), plain, original, key, kind)


def strategic_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    """Apply a strategic merge patch as kube-apiserver does for built-in types.

    ``kind`` selects the few kind-specific rules; it defaults to the target's (or patch's) kind.
    """
    if not isinstance(patch, Mapping):
        raise PatchError("invalid JSON document: a strategic merge patch must be a JSON object")
    if not isinstance(target, Mapping):
        raise PatchError("invalid JSON document: the object to patch must be a JSON object")
    kind = kind or target.get("kind") or patch.get("kind")
    result = _StrategicMerge(kind if isinstance(kind, str) else None).merge_map(_to_json(target), _to_json(patch), ())
    return result if isinstance(result, dict) else {}
