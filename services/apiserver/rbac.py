"""Role-based access control: may this caller do this request, and the 403 that says it may not.

Why this exists: the apiserver authorizes every request as Kubernetes does with
`--authorization-mode=Node,RBAC`. This module is the RBAC half, pure and without I/O; the Node
half is `node_authz`, the default objects are `bootstrap_policy`. The integrator feeds
`RbacIndex` from the informer events of the four RBAC kinds and asks `RbacAuthorizer`.

Evaluation follows upstream exactly (plugin/pkg/auth/authorizer/rbac/rbac.go,
pkg/registry/rbac/validation/rule.go, pkg/apis/rbac/v1/evaluation_helpers.go):

- the rules visited are those of every ClusterRoleBinding whose subjects include the caller,
  then, for a namespaced request, of every RoleBinding in that namespace; a RoleBinding may
  reference a ClusterRole, which then grants its rules inside the binding's namespace only;
- subjects: `User` (name equal), `Group` (one of the caller's groups), `ServiceAccount`
  (`system:serviceaccount:<ns>:<name>`; a RoleBinding's subject without a namespace means the
  binding's namespace); the subject's apiGroup is not looked at;
- a rule matches when verb, API group, resource (`*`, exact `pods/status`, or `*/scale` for any
  resource's subresource) and resourceNames (empty = any) all match; non-resource requests
  match `nonResourceURLs` exactly, by `*`, or by prefix for an entry ending in `*`;
- allowed: reason `RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to User "u"`;
  not allowed: reason empty, or `RBAC: <errors>` when a binding referenced a missing role.

`system:masters` is not special here: it is a superuser through the `cluster-admin`
ClusterRoleBinding that bootstrap_policy creates, exactly as in Kubernetes.

Deliberate difference: ClusterRoles with an `aggregationRule` are not aggregated (kubenats has
no clusterrole-aggregation controller), so every ClusterRole grants exactly its own `rules`;
the bootstrap admin/edit/view roles therefore carry their rules directly.

`forbidden_message` and `forbidden_error` word the refusal as the real apiserver does
(endpoints/handlers/responsewriters/errors.go `Forbidden` + apimachinery `NewForbidden`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.errors import ApiError

Obj = dict[str, Any]

KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
_CLUSTER_KINDS = ("ClusterRole", "ClusterRoleBinding")
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do, as authorizers see it (authorizer.Attributes)."""

    user: str
    groups: tuple[str, ...]
    verb: str  # get list watch create update patch delete deletecollection; impersonate; or the lowercased HTTP verb
    resource_request: bool
    api_group: str = ""  # "" = core
    resource: str = ""  # plural
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # for non-resource requests, e.g. /healthz, /api, /openapi/v3


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


# ---------------------------------------------------------------- matching (evaluation_helpers.go)


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def verb_matches(rule: Obj, verb: str) -> bool:
    return any(v in ("*", verb) for v in _strs(rule.get("verbs")))


def api_group_matches(rule: Obj, group: str) -> bool:
    return any(g in ("*", group) for g in _strs(rule.get("apiGroups")))


def resource_matches(rule: Obj, combined: str, subresource: str) -> bool:
    for r in _strs(rule.get("resources")):
        if r in ("*", combined):
            return True
        if subresource and len(r) == len(subresource) + 2 and r.startswith("*/") and r.endswith(subresource):
            return True
    return False


def resource_name_matches(rule: Obj, name: str) -> bool:
    names = _strs(rule.get("resourceNames"))
    return not names or name in names


def non_resource_url_matches(rule: Obj, path: str) -> bool:
    for url in _strs(rule.get("nonResourceURLs")):
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(a: Attributes, rule: Obj) -> bool:
    """RuleAllows: does this one PolicyRule allow the request?"""
    if a.resource_request:
        combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        return (verb_matches(rule, a.verb) and api_group_matches(rule, a.api_group)
                and resource_matches(rule, combined, a.subresource) and resource_name_matches(rule, a.name))
    return verb_matches(rule, a.verb) and non_resource_url_matches(rule, a.path)


def rules_allow(a: Attributes, rules: Iterable[Obj]) -> bool:
    return any(rule_allows(a, r) for r in rules)


# ---------------------------------------------------------------- the index


def _meta(obj: Obj) -> tuple[str, str]:
    m = obj.get("metadata") or {}
    return str(m.get("namespace") or ""), str(m.get("name") or "")


class RbacIndex:
    """Roles, ClusterRoles, RoleBindings, ClusterRoleBindings by name, kept current from events."""

    def __init__(self) -> None:
        # kind -> namespace ("" for the cluster kinds) -> name -> object
        self._objs: dict[str, dict[str, dict[str, Obj]]] = {k: {} for k in KINDS}

    def _table(self, kind: str) -> dict[str, dict[str, Obj]]:
        if kind not in self._objs:
            raise ValueError(f"unknown RBAC kind {kind!r}; expected one of {', '.join(KINDS)}")
        return self._objs[kind]

    def replace(self, kind: str, objects: Iterable[Obj]) -> None:
        """Make `objects` the complete set of `kind` (after a LIST)."""
        table = self._table(kind)
        table.clear()
        for obj in objects:
            self.apply(kind, "ADDED", obj)

    def apply(self, kind: str, event_type: str, obj: Obj) -> None:
        """One watch event: ADDED and MODIFIED store the object, DELETED forgets it; others are ignored."""
        table = self._table(kind)
        ns, name = _meta(obj)
        if kind in _CLUSTER_KINDS:
            ns = ""
        if not name:
            return
        if event_type in ("ADDED", "MODIFIED"):
            table.setdefault(ns, {})[name] = obj
        elif event_type == "DELETED":
            names = table.get(ns)
            if names is not None:
                names.pop(name, None)
                if not names:
                    del table[ns]

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._table(kind).get("" if kind in _CLUSTER_KINDS else namespace, {}).get(name)

    def list(self, kind: str, namespace: str = "") -> list[Obj]:
        """Objects of `kind` in `namespace` (all of them for the cluster kinds), sorted by name."""
        names = self._table(kind).get("" if kind in _CLUSTER_KINDS else namespace, {})
        return [names[n] for n in sorted(names)]

    def __len__(self) -> int:
        return sum(len(names) for table in self._objs.values() for names in table.values())


# ---------------------------------------------------------------- the authorizer (rbac.go, rule.go)


def _describe_subject(s: Obj, binding_ns: str) -> str:
    kind, name = str(s.get("kind") or ""), str(s.get("name") or "")
    if kind == "ServiceAccount":
        return f"{kind} {go_quote(name + '/' + (str(s.get('namespace') or '') or binding_ns))}"
    return f"{kind} {go_quote(name)}"


def _applies(s: Obj, user: str, groups: tuple[str, ...], binding_ns: str) -> bool:
    kind, name = s.get("kind"), str(s.get("name") or "")
    if kind == "User":
        return user == name
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        sa_ns = str(s.get("namespace") or "") or binding_ns
        return bool(sa_ns) and user == f"{SERVICE_ACCOUNT_PREFIX}{sa_ns}:{name}"
    return False


def _aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message, or `[a, b]` without duplicates."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


class RbacAuthorizer:
    def __init__(self, index: RbacIndex) -> None:
        self.index = index

    def _role_rules(self, ref: Obj, binding_ns: str) -> tuple[list[Obj], str]:
        """GetRoleReferenceRules: the referenced role's rules, or the error resolving it."""
        kind, name = ref.get("kind"), str(ref.get("name") or "")
        if kind == "Role":
            role = self.index.get("Role", binding_ns, name)
            if role is None:
                return [], f"role.rbac.authorization.k8s.io {go_quote(name)} not found"
        elif kind == "ClusterRole":
            role = self.index.get("ClusterRole", "", name)
            if role is None:
                return [], f"clusterrole.rbac.authorization.k8s.io {go_quote(name)} not found"
        else:
            return [], f"unsupported role reference kind: {go_quote(str(kind or ''))}"
        return [r for r in role.get("rules") or [] if isinstance(r, dict)], ""

    def _visit(self, user: str, groups: tuple[str, ...], namespace: str) -> Iterator[tuple[str, Obj | None, str]]:
        """VisitRulesFor: (source description, rule, "") for each rule; ("", None, error) for each error."""
        scopes = [("ClusterRoleBinding", "")] + ([("RoleBinding", namespace)] if namespace else [])
        for kind, ns in scopes:
            for binding in self.index.list(kind, ns):
                subject = next((s for s in binding.get("subjects") or []
                                if isinstance(s, dict) and _applies(s, user, groups, ns)), None)
                if subject is None:
                    continue
                ref = binding.get("roleRef") or {}
                rules, err = self._role_rules(ref, ns)
                if err:
                    yield "", None, err
                    continue
                bname = _meta(binding)[1]
                shown = bname if kind == "ClusterRoleBinding" else f"{bname}/{ns}"
                source = (f"{kind} {go_quote(shown)} of {ref.get('kind')} {go_quote(str(ref.get('name') or ''))}"
                          f" to {_describe_subject(subject, ns)}")
                for rule in rules:
                    yield source, rule, ""

    def authorize(self, a: Attributes) -> Decision:
        errors: list[str] = []
        for source, rule, err in self._visit(a.user, a.groups, a.namespace):
            if rule is not None and rule_allows(a, rule):
                return Decision(True, f"RBAC: allowed by {source}")
            if err:
                errors.append(err)
        return Decision(False, f"RBAC: {_aggregate(errors)}" if errors else "")

    def rules_for(self, user: str, groups: tuple[str, ...], namespace: str) -> tuple[list[Obj], list[Obj]]:
        """(resourceRules, nonResourceRules) in SelfSubjectRulesReview's shape (empty lists omitted)."""
        resource_rules: list[Obj] = []
        non_resource_rules: list[Obj] = []
        for _, rule, _ in self._visit(user, groups, namespace):
            if rule is None:
                continue
            verbs = _strs(rule.get("verbs"))
            if _strs(rule.get("resources")):
                out: Obj = {"verbs": verbs}
                for key in ("apiGroups", "resources", "resourceNames"):
                    if vals := _strs(rule.get(key)):
                        out[key] = vals
                resource_rules.append(out)
            if urls := _strs(rule.get("nonResourceURLs")):
                non_resource_rules.append({"verbs": verbs, "nonResourceURLs": urls})
        return resource_rules, non_resource_rules


# ---------------------------------------------------------------- the refusal


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               "\\": "\\\\", '"': '\\"'}


def go_quote(s: str) -> str:
    """Go's %q (strconv.Quote) for the names inside Kubernetes' messages."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _sanitize(s: str) -> str:
    """Avoid emitting errors that look like valid HTML (errors.go `sanitizer`)."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _denial(a: Attributes) -> str:
    """forbiddenMessage(attributes)."""
    if not a.resource_request:
        return f"User {go_quote(a.user)} cannot {a.verb} path {go_quote(a.path)}"
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    where = f"in the namespace {go_quote(a.namespace)}" if a.namespace else "at the cluster scope"
    return f"User {go_quote(a.user)} cannot {a.verb} resource {go_quote(resource)} in API group {go_quote(a.api_group)} {where}"


def qualified_resource(group: str, resource: str) -> str:
    """schema.GroupResource.String(): `pods`, `deployments.apps`."""
    return f"{resource}.{group}" if group else resource


def forbidden_status_message(group: str, resource: str, name: str, err: str) -> str:
    """apierrors.NewForbidden's message for an error text `err`."""
    if not group and not resource:
        return f"forbidden: {err}"
    qualified = qualified_resource(group, resource)
    return f"{qualified} {go_quote(name)} is forbidden: {err}" if name else f"{qualified} is forbidden: {err}"


def forbidden_message(a: Attributes, reason: str = "") -> str:
    """The Status message of the apiserver's 403 for a request no authorizer allowed.

    `pods "p1" is forbidden: User "alice" cannot get resource "pods" in API group "" in the
    namespace "default"`, then `: <reason>` when the authorizers gave a reason.
    """
    msg = _sanitize(_denial(a))
    err = f"{msg}: {reason}" if reason else msg
    return forbidden_status_message(a.api_group, a.resource, a.name, err)


def forbidden_error(a: Attributes, reason: str = "") -> ApiError:
    """The 403 itself, with the Status details the real apiserver sends (name, group, kind = resource)."""
    return ApiError(403, "Forbidden", forbidden_message(a, reason), name=a.name or None, group=a.api_group,
                    kind=a.resource or None)
