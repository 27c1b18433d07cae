"""Label and field selectors, parsed and matched the way Kubernetes does it.

kubectl and client libraries send ``labelSelector`` and ``fieldSelector`` query parameters in
the string syntax of apimachinery's ``labels.Parse`` and ``fields.ParseSelector``, and API
objects carry ``metav1.LabelSelector`` dicts (Deployments, Services' pods, PDBs...). Every
component of kubenats that lists or watches needs the same parser and the same matching
rules, and clients compare our error messages with the real API server's, so this module
ports those algorithms faithfully: the lexer and parser, the label key and value validation
with its messages, nil-versus-empty selectors, field selector escaping, and the table of
field labels each built-in resource accepts. It does no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


class SelectorError(ValueError):
    """A selector that cannot be parsed or is not allowed; the API answers it with a 400."""


# Operators, spelled as in k8s.io/apimachinery/pkg/selection.
EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "in", "notin", "exists", "!"
GREATER_THAN, LESS_THAN = "gt", "lt"
_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_VALID_OPERATORS = (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST)

# ---------------------------------------------------------------- validation (content/kube.go)

_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_LABEL_KEY_FMT})?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def label_key_errors(key: str) -> list[str]:
    """Why ``key`` is not a valid label key (qualified name); empty when it is."""
    errs: list[str] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix.encode()) > 253:
                errs.append("prefix part " + _max_len_error(253))
            if not re.fullmatch(_DNS1123_SUBDOMAIN_FMT, prefix):
                errs.append("prefix part " + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT,
                                                          "example.com"))
    else:
        return ["a valid label key " + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errs.append("name part " + _max_len_error(63))
    if not re.fullmatch(_LABEL_KEY_FMT, name):
        errs.append("name part " + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """Why ``value`` is not a valid label value; empty when it is."""
    errs: list[str] = []
    if len(value.encode()) > 63:
        errs.append(_max_len_error(63))
    if not re.fullmatch(_LABEL_VALUE_FMT, value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _go_strings(vals: list[str] | None) -> str:
    if vals is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(_go_quote(v) for v in vals) + "}"


def _invalid(path: str, shown: str, detail: str) -> str:
    """A field.Invalid error as apimachinery renders it; a nil path prints as ``<nil>``."""
    return f"{path}: Invalid value: {shown}: {detail}"


def _aggregate(errs: list[str]) -> str:
    unique = list(dict.fromkeys(errs))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _is_int64(s: str) -> bool:
    return re.fullmatch(r"[+-]?[0-9]+", s) is not None and -(2**63) <= int(s) < 2**63


# ---------------------------------------------------------------- label selectors


@dataclass(frozen=True)
class Requirement:
    """One ``key <operator> values`` term of a label selector."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: str, values: list[str] | None, path: str = "") -> Requirement:
        """Validate as ``labels.NewRequirement``; ``path`` prefixes field paths in errors."""
        pre = f"{path}." if path else ""
        errs: list[str] = []
        if key_errs := label_key_errors(key):
            errs.append(_invalid(pre + "key", _go_quote(key), "; ".join(key_errs)))
        vals = values or []
        if operator in (IN, NOT_IN):
            if not vals:
                errs.append(_invalid(pre + "values", _go_strings(values),
                                     "for 'in', 'notin' operators, values set can't be empty"))
        elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(vals) != 1:
                errs.append(_invalid(pre + "values", _go_strings(values),
                                     "exact-match compatibility requires one single value"))
        elif operator in (EXISTS, DOES_NOT_EXIST):
            if vals:
                errs.append(_invalid(pre + "values", _go_strings(values),
                                     "values set must be empty for exists and does not exist"))
        elif operator in (GREATER_THAN, LESS_THAN):
            if len(vals) != 1:
                errs.append(_invalid(pre + "values", _go_strings(values),
                                     "for 'Gt', 'Lt' operators, exactly one value is required"))
            errs += [_invalid(f"{pre}values[{i}]", _go_quote(v),
                              "for 'Gt', 'Lt' operators, the value must be an integer")
                     for i, v in enumerate(vals) if not _is_int64(v)]
        else:
            allowed = ", ".join(_go_quote(o) for o in _VALID_OPERATORS)
            errs.append(f"{pre}operator: Unsupported value: {_go_quote(operator)}: supported values: {allowed}")
        for i, v in enumerate(vals):
            if val_errs := label_value_errors(v):
                errs.append(_invalid(f"{pre}values[{i}][{key}]", _go_quote(v), "; ".join(val_errs)))
        if errs:
            raise SelectorError(_aggregate(errs))
        return cls(key, operator, tuple(vals))

    def matches(self, labels: Mapping[str, str]) -> bool:
        op, present = self.operator, self.key in labels
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if op == EXISTS:
            return present
        if op == DOES_NOT_EXIST:
            return not present
        if op in (GREATER_THAN, LESS_THAN) and present and len(self.values) == 1:
            have, want = labels[self.key], self.values[0]
            if not (_is_int64(have) and _is_int64(want)):
                return False
            return int(have) > int(want) if op == GREATER_THAN else int(have) < int(want)
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        vals = ",".join(sorted(self.values)) if len(self.values) > 1 else "".join(self.values)
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({vals})"
        sym = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{sym}{vals}"


@dataclass(frozen=True)
class LabelSelector:
    """An AND of requirements; ``nothing`` is the selector a nil metav1.LabelSelector becomes."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def match_nothing(cls) -> LabelSelector:
        return cls(nothing=True)

    @classmethod
    def from_api(cls, sel: Mapping[str, Any] | None) -> LabelSelector:
        """Convert a metav1.LabelSelector dict as ``metav1.LabelSelectorAsSelector`` does.

        ``None`` matches nothing; ``{}`` (no matchLabels, no matchExpressions) matches everything.
        """
        if sel is None:
            return cls.match_nothing()
        if not isinstance(sel, Mapping):
            raise SelectorError(f"label selector must be an object, not {type(sel).__name__}")
        match_labels = sel.get("matchLabels") or {}
        exprs = sel.get("matchExpressions") or []
        if not isinstance(match_labels, Mapping) or not isinstance(exprs, list):
            raise SelectorError("matchLabels must be an object and matchExpressions a list")
        reqs: list[Requirement] = []
        for k, v in match_labels.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SelectorError(f"matchLabels entries must be strings: {k!r}: {v!r}")
            reqs.append(Requirement.new(k, EQUALS, [v]))
        api_ops = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
        for expr in exprs:
            if not isinstance(expr, Mapping):
                raise SelectorError("matchExpressions entries must be objects")
            op = expr.get("operator")
            if op not in api_ops:
                raise SelectorError(f"{_go_quote(str(op or ''))} is not a valid label selector operator")
            raw = expr.get("values")
            if raw is not None and not (isinstance(raw, list) and all(isinstance(x, str) for x in raw)):
                raise SelectorError("matchExpressions values must be a list of strings")
            key = expr.get("key")
            reqs.append(Requirement.new(key if isinstance(key, str) else "", api_ops[op], list(raw) if raw else None))
        return cls(tuple(sorted(reqs, key=lambda r: r.key)))

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (a nothing-selector is not empty)."""
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        present = labels or {}
        return all(r.matches(present) for r in self.requirements)

    def equalities(self) -> dict[str, str]:
        """Keys this selector pins to one value (``=``, ``==``, ``in`` of one), for index lookups.

        The first requirement on a key wins, as in ``RequiresExactMatch``; callers using an
        index must still call :meth:`matches` on what it returns.
        """
        out: dict[str, str] = {}
        if self.nothing:
            return out
        for r in self.requirements:
            if r.key not in out and r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                out[r.key] = r.values[0]
        return out

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# Lexer tokens (labels/selector.go).
_EOS, _CLOSE, _COMMA, _DNE, _DEQ, _EQ, _GT, _IDENT, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(13)
_STRING_TO_TOKEN = {")": _CLOSE, ",": _COMMA, "!": _DNE, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN,
                    "<": _LT, "!=": _NEQ, "notin": _NOTIN, "(": _OPEN}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    pos = 0
    while True:
        while pos < len(s) and s[pos] in _WHITESPACE:
            pos += 1
        if pos >= len(s):
            items.append((_EOS, ""))
            return items
        start = pos
        if s[pos] in _SPECIAL:  # the longest run of specials that still forms a token
            while pos < len(s) and s[start:pos + 1] in _STRING_TO_TOKEN:
                pos += 1
            items.append((_STRING_TO_TOKEN[s[start:pos]], s[start:pos]))
        else:
            while pos < len(s) and s[pos] not in _SPECIAL and s[pos] not in _WHITESPACE:
                pos += 1
            lit = s[start:pos]
            items.append((_STRING_TO_TOKEN.get(lit, _IDENT), lit))


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def lookahead(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[min(self.pos, len(self.items) - 1)]
        return (_IDENT if values and tok in (_IN, _NOTIN) else tok), lit

    def consume(self, values: bool = True) -> tuple[int, str]:
        item = self.lookahead(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok == _EOS:
                return reqs
            if tok not in (_IDENT, _DNE):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except SelectorError as e:
                raise SelectorError(f"unable to parse requirement: {e}") from None
            tok, lit = self.consume()
            if tok == _EOS:
                return reqs
            if tok != _COMMA:
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self.lookahead()
            if tok not in (_IDENT, _DNE):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        op = ""
        tok, key = self.consume()
        if tok == _DNE:
            op = DOES_NOT_EXIST
            tok, key = self.consume()
        if tok != _IDENT:
            raise SelectorError(f"found '{key}', expected: identifier")
        if errs := label_key_errors(key):
            raise SelectorError(_invalid("<nil>", _go_quote(key), "; ".join(errs)))
        if op != DOES_NOT_EXIST and self.lookahead()[0] in (_EOS, _COMMA):
            op = EXISTS
        if op:
            return Requirement.new(key, op, [])
        tok, lit = self.consume(values=False)
        ops = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
               _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}
        if tok not in ops:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        op = ops[tok]
        values = self.set_values() if op in (IN, NOT_IN) else self.exact_value()
        return Requirement.new(key, op, sorted(values))

    def set_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok == _CLOSE:
            self.consume()
            return {""}
        if tok not in (_IDENT, _COMMA):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            tok, item = self.consume()
            if tok == _IDENT:
                values.add(item)
                tok2, lit2 = self.lookahead()
                if tok2 == _CLOSE:
                    break
                if tok2 != _COMMA:
                    raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == _COMMA:  # "(," ",," and ",)" each stand for an empty value
                tok2 = self.lookahead()[0]
                if not values or tok2 in (_CLOSE, _COMMA):
                    values.add("")
                if tok2 == _CLOSE:
                    break
            else:
                raise SelectorError(f"found '{item}', expected: ',', or identifier")
        if self.consume()[0] != _CLOSE:  # unreachable in practice; message as upstream
            raise SelectorError(f"found '{lit}', expected: ')'")
        return values

    def exact_value(self) -> set[str]:
        if self.lookahead()[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _IDENT:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse the ``labelSelector`` string syntax exactly as apimachinery ``labels.Parse``."""
    reqs = _Parser(text).parse()
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


# ---------------------------------------------------------------- field selectors


class FieldRequirement(NamedTuple):
    field: str
    op: str  # "=" or "!=" ("==" is folded into "=", as fields.Requirements() does)
    value: str


DEFAULT_FIELDS = frozenset({"metadata.name", "metadata.namespace"})

# Field labels the API server accepts per resource plural: the field-label conversion funcs of
# pkg/apis/*/v1. Resources not listed get DEFAULT_FIELDS (runtime.DefaultMetaV1FieldSelectorConversion).
ALLOWED_FIELDS: dict[str, frozenset[str]] = {
    "pods": DEFAULT_FIELDS | {
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"},
    "nodes": frozenset({"metadata.name", "spec.unschedulable"}),
    "namespaces": frozenset({"metadata.name", "status.phase"}),
    "events": DEFAULT_FIELDS | {
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
        "reason", "reportingComponent", "source", "type"},
    "secrets": DEFAULT_FIELDS | {"type"},
    "services": DEFAULT_FIELDS | {"spec.clusterIP", "spec.type"},
    "replicationcontrollers": DEFAULT_FIELDS | {"status.replicas"},
    "jobs": DEFAULT_FIELDS | {"status.successful"},
    "certificatesigningrequests": frozenset({"metadata.name", "spec.signerName"}),
    # apps/v1 registers no conversion for ReplicaSet, so the real server rejects status.replicas
    # although its storage computes it (kubernetes/kubernetes#135136): kept identical here.
    "replicasets": DEFAULT_FIELDS,
}
# Labels a resource's conversion func renames (old v1 clients send spec.host).
FIELD_ALIASES: dict[str, dict[str, str]] = {"pods": {"spec.host": "spec.nodeName"}}
_CORE_MESSAGE_RESOURCES = frozenset({"pods", "nodes", "namespaces", "events", "secrets", "services",
                                     "replicationcontrollers", "certificatesigningrequests"})


def unsupported_field_message(field: str, resource: str | None, allowed: Collection[str]) -> str:
    """The error text the API server gives for a field label it does not support."""
    if resource == "jobs":
        return f"field label {_go_quote(field)} not supported for Job"
    if resource in _CORE_MESSAGE_RESOURCES or (resource is None and set(allowed) != DEFAULT_FIELDS):
        return f"field label not supported: {field}"
    return f'{_go_quote(field)} is not a known field selector: only "metadata.name", "metadata.namespace"'


def _unescape(value: str) -> str:
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            raise SelectorError(f"invalid field selector: unescapedRune character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def escape_field_value(value: str) -> str:
    """Escape ``\\``, ``,`` and ``=`` in a field selector value (``fields.EscapeValue``)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_terms(text: str) -> list[str]:
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


@dataclass(frozen=True)
class FieldSelector:
    """An AND of ``field=value`` / ``field!=value`` terms."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Missing fields compare as the empty string, as ``fields.Set.Get`` does."""
        for r in self.requirements:
            if (fields.get(r.field, "") == r.value) != (r.op == EQUALS):
                return False
        return True

    def value_for(self, field: str) -> str | None:
        """The value an exact ``=`` requirement pins ``field`` to (``RequiresExactMatch``)."""
        return next((r.value for r in self.requirements if r.field == field and r.op == EQUALS), None)

    def check_fields(self, allowed: Collection[str], resource: str | None = None) -> None:
        """Raise the API server's error for the first field outside ``allowed``."""
        for r in self.requirements:
            if r.field not in allowed:
                raise SelectorError(unsupported_field_message(r.field, resource, allowed))

    def for_resource(self, resource: str) -> FieldSelector:
        """Validate against ALLOWED_FIELDS and apply the resource's field label aliases."""
        aliases = FIELD_ALIASES.get(resource, {})
        converted = FieldSelector(tuple(r._replace(field=aliases.get(r.field, r.field)) for r in self.requirements))
        FieldSelector(tuple(r for r in self.requirements if r.field not in aliases)).check_fields(
            ALLOWED_FIELDS.get(resource, DEFAULT_FIELDS), resource)
        return converted

    def __str__(self) -> str:
        return ",".join(f"{r.field}{r.op}{escape_field_value(r.value)}" for r in self.requirements)


def parse_field_selector(text: str) -> FieldSelector:
    """Parse the ``fieldSelector`` syntax as apimachinery ``fields.ParseSelector``."""
    reqs: list[FieldRequirement] = []
    for part in sorted(_split_terms(text)) if text else []:
        if not part:
            continue
        for i in range(len(part)):
            op = next((o for o in ("!=", "==", "=") if part.startswith(o, i)), None)
            if op:
                field, raw = part[:i], part[i + len(op):]
                reqs.append(FieldRequirement(field, NOT_EQUALS if op == "!=" else EQUALS, _unescape(raw)))
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
    return FieldSelector(tuple(reqs))


# ---------------------------------------------------------------- selectable fields of objects


def _dig(obj: Mapping[str, Any], *path: str) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def _s(value: Any, zero: str = "") -> str:
    """Render a JSON value as Go would format the typed field (bools lower-case)."""
    if value is None:
        return zero
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def object_fields(resource: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The field set a field selector is matched against (each registry's ToSelectableFields).

    Absent strings are ``""``; absent ints and bools render as their Go zero values (``"0"``,
    ``"false"``), as the typed objects Kubernetes formats would.
    """
    out = {"metadata.name": _s(_dig(obj, "metadata", "name")),
           "metadata.namespace": _s(_dig(obj, "metadata", "namespace"))}
    if resource == "pods":
        ips = _dig(obj, "status", "podIPs")
        first_ip = ips[0].get("ip") if isinstance(ips, list) and ips and isinstance(ips[0], Mapping) else None
        out |= {
            "spec.nodeName": _s(_dig(obj, "spec", "nodeName")),
            "spec.restartPolicy": _s(_dig(obj, "spec", "restartPolicy")),
            "spec.schedulerName": _s(_dig(obj, "spec", "schedulerName")),
            "spec.serviceAccountName": _s(_dig(obj, "spec", "serviceAccountName")),
            "spec.hostNetwork": _s(_dig(obj, "spec", "hostNetwork"), "false"),
            "status.phase": _s(_dig(obj, "status", "phase")),
            "status.podIP": _s(first_ip if first_ip is not None else _dig(obj, "status", "podIP")),
            "status.nominatedNodeName": _s(_dig(obj, "status", "nominatedNodeName")),
        }
    elif resource == "nodes":
        out["spec.unschedulable"] = _s(_dig(obj, "spec", "unschedulable"), "false")
    elif resource == "events":
        involved = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
        out |= {f"involvedObject.{k}": _s(_dig(obj, "involvedObject", k)) for k in involved}
        source = _s(_dig(obj, "source", "component")) or _s(obj.get("reportingComponent"))
        out |= {"reason": _s(obj.get("reason")), "reportingComponent": _s(obj.get("reportingComponent")),
                "source": source, "type": _s(obj.get("type"))}
    elif resource == "secrets":
        out["type"] = _s(obj.get("type"))
    elif resource == "namespaces":
        out["status.phase"] = _s(_dig(obj, "status", "phase"))
    elif resource in ("replicasets", "replicationcontrollers"):
        out["status.replicas"] = _s(_dig(obj, "status", "replicas"), "0")
    elif resource == "jobs":
        out["status.successful"] = _s(_dig(obj, "status", "succeeded"), "0")
    elif resource == "services":
        out |= {"spec.clusterIP": _s(_dig(obj, "spec", "clusterIP")), "spec.type": _s(_dig(obj, "spec", "type"))}
    elif resource == "certificatesigningrequests":
        out["spec.signerName"] = _s(_dig(obj, "spec", "signerName"))
    return out
