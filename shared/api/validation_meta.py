"""Field errors, name/label rules and ObjectMeta validation, worded like Kubernetes.

Why this exists: kubectl and the Python client show apiserver validation errors
verbatim (``The Pod "x" is invalid: spec.containers[0].image: Required value``),
so kubenats must produce the same reasons, field paths and messages as
apimachinery's ``util/validation``, ``util/validation/field`` and
``api/validation/objectmeta.go``.  This module holds those building blocks; the
per-kind rules live in ``shared.api.validation`` (+ ``validation_pod``,
``validation_workloads``).

Messages follow Kubernetes v1.31-era wording ("must be no more than 63
characters", "a qualified name ..."), including its quirks (the double space in
"(e.g. 'MyName',  or 'my.name', ...").
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "Cause",
    "Errs",
    "GoRepr",
    "child",
    "go_map",
    "go_quote",
    "go_selector",
    "go_strings",
    "idx",
    "is_config_map_key",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_label_value",
    "is_path_segment_name",
    "is_qualified_name",
    "is_valid_ip",
    "key",
    "label_selector_matches",
    "validate_label_selector",
    "validate_labels",
    "validate_object_meta",
    "validate_object_meta_update",
]

# ---------------------------------------------------------------------------
# Field errors (apimachinery/pkg/util/validation/field/errors.go)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cause:
    """One StatusCause: ``reason`` is the field.ErrorType, ``message`` its ErrorBody."""

    reason: str
    message: str
    field: str


class GoRepr:
    """A value that Kubernetes would print with ``%#v`` (already rendered)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def as_map(v: Any) -> Mapping[str, Any]:
    """The value if it is an object, else an empty one (validation never trusts shapes)."""
    return v if isinstance(v, Mapping) else {}


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def as_str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def go_quote(s: str) -> str:
    """Go's ``%q`` for a string."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_strings(values: Any) -> GoRepr:
    """``%#v`` of a []string."""
    if values is None:
        return GoRepr("[]string(nil)")
    return GoRepr("[]string{" + ", ".join(go_quote(str(v)) for v in values) + "}")


def go_map(values: Any) -> GoRepr:
    """``%#v`` of a map[string]string (Go sorts the keys)."""
    if values is None:
        return GoRepr("map[string]string(nil)")
    if not isinstance(values, Mapping):
        return GoRepr(json.dumps(values))
    items = ", ".join(f"{go_quote(str(k))}:{go_quote(str(values[k]))}" for k in sorted(values))
    return GoRepr("map[string]string{" + items + "}")


def go_selector(sel: Any) -> GoRepr:
    """``%#v`` of a metav1.LabelSelector (as in "field is immutable" messages)."""
    if not isinstance(sel, Mapping):
        return GoRepr("<nil>")
    exprs = sel.get("matchExpressions")
    if exprs is None:
        rendered = "[]v1.LabelSelectorRequirement(nil)"
    else:
        parts = []
        for e in exprs if isinstance(exprs, list) else []:
            e = e if isinstance(e, Mapping) else {}
            k, op = go_quote(str(e.get("key") or "")), go_quote(str(e.get("operator") or ""))
            parts.append(f"v1.LabelSelectorRequirement{{Key:{k}, Operator:{op}, Values:{go_strings(e.get('values')).text}}}")
        rendered = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    return GoRepr(f"v1.LabelSelector{{MatchLabels:{go_map(sel.get('matchLabels')).text}, MatchExpressions:{rendered}}}")


def _render(value: Any) -> str:
    if isinstance(value, GoRepr):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
        return go_map(value).text
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return go_strings(value).text
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Errs(list[Cause]):
    """An ErrorList with Kubernetes' constructors (Required, Invalid, ...)."""

    def required(self, path: str, detail: str = "") -> None:
        self.append(Cause("FieldValueRequired", "Required value" + (f": {detail}" if detail else ""), path))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        body = f"Invalid value: {_render(value)}" + (f": {detail}" if detail else "")
        self.append(Cause("FieldValueInvalid", body, path))

    def type_invalid(self, path: str, value: Any, detail: str) -> None:
        self.append(Cause("FieldValueTypeInvalid", f"Invalid value: {_render(value)}: {detail}", path))

    def not_supported(self, path: str, value: Any, valid: Sequence[str]) -> None:
        body = f"Unsupported value: {_render(value)}"
        if valid:
            body += ": supported values: " + ", ".join(go_quote(v) for v in valid)
        self.append(Cause("FieldValueNotSupported", body, path))

    def duplicate(self, path: str, value: Any, detail: str = "") -> None:
        body = f"Duplicate value: {_render(value)}" + (f": {detail}" if detail else "")
        self.append(Cause("FieldValueDuplicate", body, path))

    def not_found(self, path: str, value: Any) -> None:
        self.append(Cause("FieldValueNotFound", f"Not found: {_render(value)}", path))

    def forbidden(self, path: str, detail: str) -> None:
        self.append(Cause("FieldValueForbidden", "Forbidden" + (f": {detail}" if detail else ""), path))

    def too_long(self, path: str, max_length: int) -> None:
        self.append(Cause("FieldValueTooLong", f"Too long: must have at most {max_length} bytes", path))

    def too_many(self, path: str, actual: int, maximum: int) -> None:
        self.append(Cause("FieldValueTooMany", f"Too many: {actual}: must have at most {maximum} items", path))

    def nonnegative(self, path: str, value: Any) -> None:
        """ValidateNonnegativeField for an optional int."""
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            self.invalid(path, value, "must be greater than or equal to 0")

    def each(self, path: str, value: str, msgs: Iterable[str]) -> None:
        for m in msgs:
            self.invalid(path, value, m)


def child(path: str, *names: str) -> str:
    for n in names:
        path = f"{path}.{n}" if path else n
    return path


def idx(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


# ---------------------------------------------------------------------------
# String formats (apimachinery/pkg/util/validation/validation.go)
# ---------------------------------------------------------------------------


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    return msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples) + f"regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


EMPTY_ERROR: Final = "must be non-empty"
_DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT: Final = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT: Final = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QNAME_FMT: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT: Final = "(" + _QNAME_FMT + ")?"
_CONFIG_KEY_FMT: Final = "[-._a-zA-Z0-9]+"
# Compiled without ^...$ and used with fullmatch(): Go's "$" never matches before a
# trailing newline, Python's does.
_RE_LABEL: Final = re.compile(_DNS1123_LABEL_FMT)
_RE_SUBDOMAIN: Final = re.compile(_DNS1123_SUBDOMAIN_FMT)
_RE_1035: Final = re.compile(_DNS1035_LABEL_FMT)
_RE_QNAME: Final = re.compile(_QNAME_FMT)
_RE_LABEL_VALUE: Final = re.compile(_LABEL_VALUE_FMT)
_RE_CONFIG_KEY: Final = re.compile(_CONFIG_KEY_FMT)


def _full(rx: re.Pattern[str], s: str) -> bool:
    return rx.fullmatch(s) is not None


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _full(_RE_LABEL, value):
        if _full(_RE_SUBDOMAIN, value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                "and must start and end with an alphanumeric character", _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _full(_RE_SUBDOMAIN, value):
        errs.append(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character", _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _full(_RE_1035, value):
        errs.append(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character",
            _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_path_segment_name(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def is_qualified_name(value: str) -> list[str]:
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + EMPTY_ERROR)
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part " + EMPTY_ERROR)
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _full(_RE_QNAME, name):
        errs.append("name part " + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _full(_RE_LABEL_VALUE, value):
        errs.append(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character", _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_config_map_key(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _full(_RE_CONFIG_KEY, value):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                                _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_valid_ip(value: str) -> bool:
    """netutils.ParseIPSloppy: like ipaddress, but IPv4 octets may have leading zeros."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    parts = value.split(".")
    return len(parts) == 4 and all(p.isdigit() and p.isascii() and int(p) <= 255 for p in parts)


# ---------------------------------------------------------------------------
# Labels, selectors
# ---------------------------------------------------------------------------


def validate_labels(errs: Errs, labels: Any, path: str) -> None:
    if labels is None:
        return
    if not isinstance(labels, Mapping):
        errs.type_invalid(path, labels, "must be a map of string keys to string values")
        return
    for k in sorted(labels):
        v = labels[k]
        errs.each(path, k, is_qualified_name(k))
        if not isinstance(v, str):
            errs.type_invalid(key(path, k), v, "must be a string")
            continue
        errs.each(path, v, is_label_value(v))


_SELECTOR_OPS: Final = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(errs: Errs, sel: Any, path: str) -> None:
    if not isinstance(sel, Mapping):
        return
    validate_labels(errs, sel.get("matchLabels"), child(path, "matchLabels"))
    exprs = sel.get("matchExpressions") or []
    for i, e in enumerate(exprs if isinstance(exprs, list) else []):
        p = idx(child(path, "matchExpressions"), i)
        e = e if isinstance(e, Mapping) else {}
        op, values = e.get("operator") or "", e.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.required(child(p, "values"), "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.forbidden(child(p, "values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        else:
            errs.invalid(child(p, "operator"), op, "not a valid selector operator")
        errs.each(child(p, "key"), str(e.get("key") or ""), is_qualified_name(str(e.get("key") or "")))
        for j, v in enumerate(values if isinstance(values, list) else []):
            errs.each(idx(child(p, "values"), j), str(v), is_label_value(str(v)))


def selector_is_valid(sel: Any) -> bool:
    """Whether metav1.LabelSelectorAsSelector would succeed (nil counts as valid)."""
    if sel is None:
        return True
    if not isinstance(sel, Mapping):
        return False
    probe = Errs()
    validate_label_selector(probe, sel, "")
    return not probe


def selector_is_empty(sel: Any) -> bool:
    return not isinstance(sel, Mapping) or not (sel.get("matchLabels") or sel.get("matchExpressions"))


def label_selector_matches(sel: Any, labels: Mapping[str, str] | None) -> bool:
    """metav1.LabelSelectorAsSelector(sel).Matches(labels); a nil selector matches nothing."""
    if not isinstance(sel, Mapping):
        return False
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        present = k in labels
        if (op == "In" and not (present and labels[k] in values)) or (op == "NotIn" and present and labels[k] in values):
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


# ---------------------------------------------------------------------------
# ObjectMeta (api/validation/objectmeta.go + core's finalizer rule)
# ---------------------------------------------------------------------------

TOTAL_ANNOTATION_SIZE_LIMIT: Final = 256 * 1024
_STANDARD_FINALIZERS: Final = frozenset({"kubernetes", "orphan", "foregroundDeletion"})


def _validate_annotations(errs: Errs, ann: Any, path: str) -> None:
    if ann is None:
        return
    if not isinstance(ann, Mapping):
        errs.type_invalid(path, ann, "must be a map of string keys to string values")
        return
    total = 0
    for k in sorted(ann):
        errs.each(path, k, is_qualified_name(k.lower()))
        v = ann[k]
        total += len(k.encode()) + len(str(v).encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT)


def validate_template_meta(errs: Errs, meta: Any, path: str) -> None:
    """Labels and annotations of an embedded template (PodTemplateSpec.metadata)."""
    meta = meta if isinstance(meta, Mapping) else {}
    validate_labels(errs, meta.get("labels"), child(path, "labels"))
    _validate_annotations(errs, meta.get("annotations"), child(path, "annotations"))


def _validate_owner_refs(errs: Errs, refs: Any, path: str) -> None:
    controller = ""
    for ref in refs if isinstance(refs, list) else []:
        ref = ref if isinstance(ref, Mapping) else {}
        api_version = str(ref.get("apiVersion") or "")
        kind_ = str(ref.get("kind") or "")
        version = api_version.split("/")[-1] if api_version.count("/") <= 1 else ""
        if not version:
            errs.invalid(child(path, "apiVersion"), api_version, "version must not be empty")
        if not kind_:
            errs.invalid(child(path, "kind"), kind_, "must not be empty")
        if not ref.get("name"):
            errs.invalid(child(path, "name"), str(ref.get("name") or ""), "must not be empty")
        if not ref.get("uid"):
            errs.invalid(child(path, "uid"), str(ref.get("uid") or ""), "must not be empty")
        if api_version == "v1" and kind_ == "Event":
            errs.invalid(path, GoRepr(json.dumps(ref)), "/v1, Kind=Event is disallowed from being an owner")
        if ref.get("controller") is True:
            name = f"{kind_}/{ref.get('name') or ''}"
            if controller:
                errs.invalid(path, GoRepr(json.dumps(refs)),
                             f'Only one reference can have Controller set to true. Found "true" in references for '
                             f"{controller} and {name}")
            else:
                controller = name


def _validate_finalizers(errs: Errs, finalizers: Any, path: str) -> None:
    items = [str(f) for f in finalizers] if isinstance(finalizers, list) else []
    for f in items:
        errs.each(path, f, is_qualified_name(f))
    if "orphan" in items and "foregroundDeletion" in items:
        errs.invalid(path, go_strings(items), "finalizer orphan and foregroundDeletion cannot be both set")
    for i, f in enumerate(items):
        if "/" not in f and f not in _STANDARD_FINALIZERS:
            errs.invalid(idx(path, i), f, "name is neither a standard finalizer name nor is it fully qualified")


def validate_object_meta(
    errs: Errs,
    meta: Any,
    *,
    namespaced: bool,
    name_fn: Callable[[str], list[str]] | None,
    path: str = "metadata",
) -> None:
    """ValidateObjectMeta: name (already generated), namespace, labels, annotations, owners, finalizers."""
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name")
    if not name:
        errs.required(child(path, "name"), "name or generateName is required")
    elif not isinstance(name, str):
        errs.type_invalid(child(path, "name"), name, "must be a string")
    elif name_fn is not None:
        errs.each(child(path, "name"), name, name_fn(name))
    ns = meta.get("namespace")
    if namespaced:
        if not ns:
            errs.required(child(path, "namespace"))
        else:
            errs.each(child(path, "namespace"), str(ns), is_dns1123_label(str(ns)))
    errs.nonnegative(child(path, "generation"), meta.get("generation"))
    validate_labels(errs, meta.get("labels"), child(path, "labels"))
    _validate_annotations(errs, meta.get("annotations"), child(path, "annotations"))
    _validate_owner_refs(errs, meta.get("ownerReferences"), child(path, "ownerReferences"))
    _validate_finalizers(errs, meta.get("finalizers"), child(path, "finalizers"))


def validate_object_meta_update(errs: Errs, meta: Any, old_meta: Any, path: str = "metadata") -> None:
    """ValidateObjectMetaUpdate: identity fields are immutable; no new finalizers while deleting."""
    meta = meta if isinstance(meta, Mapping) else {}
    old_meta = old_meta if isinstance(old_meta, Mapping) else {}
    for f in ("name", "namespace", "uid"):
        new_v, old_v = meta.get(f) or "", old_meta.get(f) or ""
        if f == "uid" and not new_v:
            continue  # callers fill the uid from the stored object
        if new_v != old_v:
            errs.invalid(child(path, f), new_v, "field is immutable")
    gen, old_gen = meta.get("generation"), old_meta.get("generation")
    if isinstance(gen, int) and isinstance(old_gen, int) and gen < old_gen:
        errs.invalid(child(path, "generation"), gen, "must not be decremented")
    if old_meta.get("deletionTimestamp"):
        extra = sorted(set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or []))
        if extra:
            errs.forbidden(child(path, "finalizers"),
                           "no new finalizers can be added if the object is being deleted, found new finalizers "
                           + go_strings(extra).text)
