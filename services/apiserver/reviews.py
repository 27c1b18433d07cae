"""The review APIs: who am I, may I (or may they), and what may I do in a namespace.

Why this exists: `kubectl auth whoami` creates a SelfSubjectReview, `kubectl auth can-i` a
SelfSubjectAccessReview (`--list`: a SelfSubjectRulesReview), and webhooks or tools ask about
others with a SubjectAccessReview or, inside one namespace, a LocalSubjectAccessReview. None of
them is stored: the apiserver answers each create from the caller's identity and the
authorizers. This module builds those answers as the upstream REST handlers do
(pkg/registry/authentication/selfsubjectreview, pkg/registry/authorization/*), with the spec
validation of pkg/apis/authorization/validation; the integrator supplies the caller and the
authorizer (`authorize` for the access reviews, `rules_for` for the rules review).

Invalid specs raise `ReviewError`, which is a ValueError and also the `ApiError` the real
apiserver would answer (422 Invalid with field causes, or 400 BadRequest), e.g.
`SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid
value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified`.
Upstream prints a rejected Go struct with %#v; here a struct value is shown as Go would for the
attribute types and as JSON for metadata.

Not covered: the field and label selectors of resourceAttributes (accepted and ignored) and
`status.evaluationError` (the authorizers here do not fail); `denied` is never set because
neither the Node nor the RBAC authorizer ever says "deny" (they only fail to allow).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.apiserver.rbac import Attributes, Decision, go_quote
from shared.errors import ApiError

Obj = dict[str, Any]
Authorize = Callable[[Attributes], Decision]
RulesFor = Callable[[str, tuple[str, ...], str], tuple[list[Obj], list[Obj]]]

AUTHORIZATION_GROUP = "authorization.k8s.io"
AUTHENTICATION_GROUP = "authentication.k8s.io"

_RESOURCE_FIELDS = (("namespace", "Namespace"), ("verb", "Verb"), ("group", "Group"), ("version", "Version"),
                    ("resource", "Resource"), ("subresource", "Subresource"), ("name", "Name"))
_NON_RESOURCE_FIELDS = (("path", "Path"), ("verb", "Verb"))


class ReviewError(ApiError, ValueError):
    """An invalid review request: a ValueError carrying the apiserver's Status for it."""


def _invalid(kind: str, group: str, causes: list[dict[str, str]]) -> ReviewError:
    parts = [f"{c['field']}: {c['message']}" for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ReviewError(422, "Invalid", f'{kind}.{group} "" is invalid: {joined}', group=group, kind=kind,
                       causes=causes)


def _bad_request(message: str) -> ReviewError:
    return ReviewError(400, "BadRequest", message)


def _cause(field: str, shown: str, detail: str) -> dict[str, str]:
    """field.Invalid(...) as a Status cause."""
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {shown}: {detail}", "field": field}


def _go_struct(type_name: str, fields: tuple[tuple[str, str], ...], value: Obj) -> str:
    """%#v of an authorization attributes struct (selectors left out)."""
    inner = ", ".join(f"{go}:{go_quote(str(value.get(js) or ''))}" for js, go in fields)
    return f"authorization.{type_name}{{{inner}}}"


def _attrs_shown(spec: Obj) -> str:
    nra = spec.get("nonResourceAttributes")
    return _go_struct("NonResourceAttributes", _NON_RESOURCE_FIELDS, nra) if isinstance(nra, dict) else '"null"'


def _object(body: Any, kind: str) -> Obj:
    if not isinstance(body, dict):
        raise _bad_request(f"the body of a {kind} must be an object")
    for key in ("spec", "metadata"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise _bad_request(f"{kind}.{key} must be an object")
    for key in ("resourceAttributes", "nonResourceAttributes"):
        if (body.get("spec") or {}).get(key) is not None and not isinstance(body["spec"][key], dict):
            raise _bad_request(f"{kind}.spec.{key} must be an object")
    return body


def _spec_causes(spec: Obj) -> list[dict[str, str]]:
    """ValidateSelfSubjectAccessReviewSpec."""
    has_r, has_nr = spec.get("resourceAttributes") is not None, spec.get("nonResourceAttributes") is not None
    if has_r and has_nr:
        return [_cause("spec.nonResourceAttributes", _attrs_shown(spec),
                       "cannot be specified in combination with resourceAttributes")]
    if not has_r and not has_nr:
        return [_cause("spec.resourceAttributes", '"null"',
                       "exactly one of nonResourceAttributes or resourceAttributes must be specified")]
    return []


def _meaningful(value: Any) -> bool:
    return value not in (None, "", {}, [])


def _metadata_causes(body: Obj, allow_namespace: bool = False) -> list[dict[str, str]]:
    meta = {k: v for k, v in (body.get("metadata") or {}).items()
            if _meaningful(v) and k != "managedFields" and not (allow_namespace and k == "namespace")}
    if not meta:
        return []
    detail = "must be empty except for namespace" if allow_namespace else "must be empty"
    return [_cause("metadata", json.dumps(body.get("metadata"), sort_keys=True, separators=(",", ":")), detail)]


def _attributes(spec: Obj, user: str, groups: tuple[str, ...]) -> Attributes:
    """ResourceAttributesFrom / NonResourceAttributesFrom."""
    ra = spec.get("resourceAttributes")
    if isinstance(ra, dict):
        return Attributes(user=user, groups=groups, verb=str(ra.get("verb") or ""), resource_request=True,
                          api_group=str(ra.get("group") or ""), resource=str(ra.get("resource") or ""),
                          subresource=str(ra.get("subresource") or ""), namespace=str(ra.get("namespace") or ""),
                          name=str(ra.get("name") or ""))
    nra = spec.get("nonResourceAttributes") or {}
    return Attributes(user=user, groups=groups, verb=str(nra.get("verb") or ""), resource_request=False,
                      path=str(nra.get("path") or ""))


def _answer(body: Obj, kind: str, decision: Decision) -> Obj:
    out = copy.deepcopy(body)
    out.setdefault("apiVersion", f"{AUTHORIZATION_GROUP}/v1")
    out.setdefault("kind", kind)
    out["metadata"] = out.get("metadata") or {"creationTimestamp": None}
    status: Obj = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    out["status"] = status
    return out


def self_subject_access_review(body: Obj, user: str, groups: tuple[str, ...], authorize: Authorize) -> Obj:
    """authorization.k8s.io SelfSubjectAccessReview: may the caller do spec.resourceAttributes /
    spec.nonResourceAttributes? The answer is the request with `status` filled in."""
    kind = "SelfSubjectAccessReview"
    body = _object(body, kind)
    spec = body.get("spec") or {}
    if causes := _spec_causes(spec) + _metadata_causes(body):
        raise _invalid(kind, AUTHORIZATION_GROUP, causes)
    return _answer(body, kind, authorize(_attributes(spec, user, groups)))


def _subject(spec: Obj) -> tuple[str, tuple[str, ...], list[dict[str, str]]]:
    user = spec.get("user") or ""
    groups = spec.get("groups") or []
    if not isinstance(user, str) or not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise _bad_request("spec.user must be a string and spec.groups a list of strings")
    causes = [] if user or groups else [_cause("spec.user", go_quote(user), "at least one of user or group must be specified")]
    return user, tuple(groups), causes


def subject_access_review(body: Obj, authorize: Authorize) -> Obj:
    """authorization.k8s.io SubjectAccessReview: may spec.user with spec.groups do it?"""
    kind = "SubjectAccessReview"
    body = _object(body, kind)
    spec = body.get("spec") or {}
    user, groups, subject_causes = _subject(spec)
    if causes := _spec_causes(spec) + subject_causes + _metadata_causes(body):
        raise _invalid(kind, AUTHORIZATION_GROUP, causes)
    return _answer(body, kind, authorize(_attributes(spec, user, groups)))


def local_subject_access_review(body: Obj, namespace: str, authorize: Authorize) -> Obj:
    """authorization.k8s.io LocalSubjectAccessReview, created in `namespace` (the URL's)."""
    kind = "LocalSubjectAccessReview"
    body = _object(body, kind)
    spec = body.get("spec") or {}
    user, groups, subject_causes = _subject(spec)
    causes = _spec_causes(spec) + subject_causes + _metadata_causes(body, allow_namespace=True)
    meta_ns = str((body.get("metadata") or {}).get("namespace") or namespace)
    ra = spec.get("resourceAttributes")
    if isinstance(ra, dict) and str(ra.get("namespace") or "") != meta_ns:
        causes.append(_cause("spec.resourceAttributes.namespace", go_quote(str(ra.get("namespace") or "")),
                             "must match metadata.namespace"))
    if spec.get("nonResourceAttributes") is not None:
        causes.append(_cause("spec.nonResourceAttributes", _attrs_shown(spec), "disallowed on this kind of request"))
    if causes:
        raise _invalid(kind, AUTHORIZATION_GROUP, causes)
    return _answer(body, kind, authorize(_attributes(spec, user, groups)))


def self_subject_rules_review(body: Obj, user: str, groups: tuple[str, ...], rules_for: RulesFor) -> Obj:
    """authorization.k8s.io SelfSubjectRulesReview: the caller's rules in spec.namespace."""
    body = _object(body, "SelfSubjectRulesReview")
    namespace = (body.get("spec") or {}).get("namespace") or ""
    if not isinstance(namespace, str) or not namespace:
        raise _bad_request("no namespace on request")
    resource_rules, non_resource_rules = rules_for(user, groups, namespace)
    return {"kind": "SelfSubjectRulesReview", "apiVersion": body.get("apiVersion") or f"{AUTHORIZATION_GROUP}/v1",
            "metadata": {"creationTimestamp": None}, "spec": {},
            "status": {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": False}}


def self_subject_review(user: str, groups: tuple[str, ...], uid: str, extra: dict[str, list[str]], *,
                        api_version: str = f"{AUTHENTICATION_GROUP}/v1", now: datetime | None = None) -> Obj:
    """authentication.k8s.io SelfSubjectReview: the caller as authenticated (`kubectl auth whoami`).

    `api_version` echoes the version the client posted to (kubectl falls back to v1beta1 and
    v1alpha1); empty fields are left out, as Go's omitempty does."""
    user_info: Obj = {}
    if user:
        user_info["username"] = user
    if uid:
        user_info["uid"] = uid
    if groups:
        user_info["groups"] = list(groups)
    if extra:
        user_info["extra"] = {k: list(v) for k, v in extra.items()}
    created = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "SelfSubjectReview", "apiVersion": api_version, "metadata": {"creationTimestamp": created},
            "status": {"userInfo": user_info}}
