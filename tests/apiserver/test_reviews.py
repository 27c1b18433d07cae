"""The review APIs (services/apiserver/reviews.py): whoami, can-i, can-i --list, and reviews of others.

Bodies are what kubectl sends; answers are checked against the RBAC authorizer over the
bootstrap policy; invalid specs must fail with the apiserver's Status and wording.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.apiserver import bootstrap_policy as bp
from services.apiserver import reviews
from services.apiserver.rbac import Attributes, Decision, RbacAuthorizer, RbacIndex

Obj = dict[str, Any]
ADMIN = ("kubernetes-admin", ("system:masters", "system:authenticated"))
ALICE = ("alice", ("system:authenticated",))
ANON = ("system:anonymous", ("system:unauthenticated",))


def authorizer() -> RbacAuthorizer:
    index = RbacIndex()
    index.replace("ClusterRole", bp.cluster_roles())
    index.replace("ClusterRoleBinding", bp.cluster_role_bindings())
    index.replace("RoleBinding", [{"metadata": {"name": "alice-view", "namespace": "dev"},
                                   "roleRef": {"kind": "ClusterRole", "name": "view"},
                                   "subjects": [{"kind": "User", "name": "alice"}]}])
    return RbacAuthorizer(index)


AUTHZ = authorizer()


def ssar(spec: Obj, **extra: Any) -> Obj:
    """As `kubectl auth can-i` sends it."""
    return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec, **extra}


@pytest.mark.parametrize(("who", "spec", "status"), [
    (ADMIN, {"resourceAttributes": {"namespace": "default", "verb": "delete", "resource": "nodes"}},
     {"allowed": True, "reason": 'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" '
                                 'to Group "system:masters"'}),
    (ALICE, {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}}, {"allowed": False}),
    (ALICE, {"resourceAttributes": {"namespace": "dev", "verb": "list", "resource": "pods"}},
     {"allowed": True, "reason": 'RBAC: allowed by RoleBinding "alice-view/dev" of ClusterRole "view" to User "alice"'}),
    (ALICE, {"resourceAttributes": {"namespace": "dev", "verb": "get", "group": "apps", "resource": "deployments",
                                    "subresource": "scale", "name": "web"}}, {"allowed": True, "reason": (
        'RBAC: allowed by RoleBinding "alice-view/dev" of ClusterRole "view" to User "alice"')}),
    (ALICE, {"resourceAttributes": {"namespace": "dev", "verb": "update", "group": "apps", "resource": "deployments",
                                    "subresource": "scale", "name": "web"}}, {"allowed": False}),
    (ANON, {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}},
     {"allowed": True, "reason": 'RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole '
                                 '"system:public-info-viewer" to Group "system:unauthenticated"'}),
    (ANON, {"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}, {"allowed": False}),
])
def test_self_subject_access_review(who: tuple[str, tuple[str, ...]], spec: Obj, status: Obj) -> None:
    body = ssar(spec)
    out = reviews.self_subject_access_review(body, who[0], who[1], AUTHZ.authorize)
    assert out == {**body, "status": status}
    assert "status" not in body  # the request is not modified


def test_attributes_handed_to_the_authorizer() -> None:
    seen: list[Attributes] = []

    def record(a: Attributes) -> Decision:
        seen.append(a)
        return Decision(False, "no")

    spec = {"resourceAttributes": {"namespace": "ns", "verb": "create", "group": "apps", "version": "v1",
                                   "resource": "deployments", "subresource": "scale", "name": "d"}}
    out = reviews.self_subject_access_review(ssar(spec), "u", ("g",), record)
    assert out["status"] == {"allowed": False, "reason": "no"}
    reviews.self_subject_access_review(ssar({"nonResourceAttributes": {"path": "/x", "verb": "get"}}), "u", (), record)
    assert seen == [Attributes("u", ("g",), "create", True, "apps", "deployments", "scale", "ns", "d"),
                    Attributes("u", (), "get", False, path="/x")]
    minimal = reviews.self_subject_access_review({"spec": {"resourceAttributes": {"verb": "get"}}}, "u", (), record)
    assert minimal["apiVersion"] == "authorization.k8s.io/v1" and minimal["kind"] == "SelfSubjectAccessReview"
    assert minimal["metadata"] == {"creationTimestamp": None}


NEITHER = ('spec.resourceAttributes: Invalid value: "null": '
           "exactly one of nonResourceAttributes or resourceAttributes must be specified")
BOTH = ('spec.nonResourceAttributes: Invalid value: authorization.NonResourceAttributes{Path:"/healthz", Verb:"get"}: '
        "cannot be specified in combination with resourceAttributes")


@pytest.mark.parametrize(("body", "message"), [
    (ssar({}), f'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: {NEITHER}'),
    ({"kind": "SelfSubjectAccessReview"}, f'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: {NEITHER}'),
    (ssar({"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/healthz", "verb": "get"}}),
     f'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: {BOTH}'),
    (ssar({"resourceAttributes": {"verb": "get"}}, metadata={"name": "x"}),
     'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: metadata: Invalid value: {"name":"x"}: must be empty'),
])
def test_self_subject_access_review_invalid(body: Obj, message: str) -> None:
    with pytest.raises(ValueError) as info:
        reviews.self_subject_access_review(body, "u", (), AUTHZ.authorize)
    err = info.value
    assert isinstance(err, reviews.ReviewError)
    assert str(err) == message and err.code == 422 and err.reason == "Invalid"
    status = err.status()
    assert status["details"]["kind"] == "SelfSubjectAccessReview"
    assert status["details"]["group"] == "authorization.k8s.io"
    assert status["details"]["causes"][0]["reason"] == "FieldValueInvalid"
    assert message.endswith(status["details"]["causes"][0]["message"])


@pytest.mark.parametrize("body", ["text", {"spec": []}, {"spec": {"resourceAttributes": "get pods"}}])
def test_malformed_bodies_are_bad_requests(body: Any) -> None:
    with pytest.raises(reviews.ReviewError) as info:
        reviews.self_subject_access_review(body, "u", (), AUTHZ.authorize)
    assert info.value.code == 400


def test_subject_access_review() -> None:
    body: Obj = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "alice", "groups": ["system:authenticated"],
                     "resourceAttributes": {"namespace": "dev", "verb": "watch", "resource": "pods"}}}
    out = reviews.subject_access_review(body, AUTHZ.authorize)
    assert out["status"]["allowed"] is True and out["spec"] == body["spec"]
    body["spec"]["user"] = "bob"
    assert reviews.subject_access_review(body, AUTHZ.authorize)["status"] == {"allowed": False}
    groups_only = {"spec": {"groups": ["system:masters"], "nonResourceAttributes": {"path": "/metrics", "verb": "get"}}}
    assert reviews.subject_access_review(groups_only, AUTHZ.authorize)["status"]["allowed"] is True
    with pytest.raises(ValueError) as info:
        reviews.subject_access_review({"spec": {}}, AUTHZ.authorize)
    assert str(info.value) == (
        f'SubjectAccessReview.authorization.k8s.io "" is invalid: [{NEITHER}, '
        'spec.user: Invalid value: "": at least one of user or group must be specified]')


def test_local_subject_access_review() -> None:
    spec: Obj = {"user": "alice", "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"}}
    out = reviews.local_subject_access_review({"metadata": {"namespace": "dev"}, "spec": spec}, "dev", AUTHZ.authorize)
    assert out["status"]["allowed"] is True and out["kind"] == "LocalSubjectAccessReview"
    with pytest.raises(ValueError) as info:
        reviews.local_subject_access_review({"spec": spec}, "prod", AUTHZ.authorize)
    assert str(info.value) == ('LocalSubjectAccessReview.authorization.k8s.io "" is invalid: '
                               'spec.resourceAttributes.namespace: Invalid value: "dev": must match metadata.namespace')
    with pytest.raises(ValueError, match="disallowed on this kind of request"):
        reviews.local_subject_access_review(
            {"spec": {"user": "alice", "nonResourceAttributes": {"path": "/x", "verb": "get"}}}, "dev", AUTHZ.authorize)


def test_self_subject_rules_review() -> None:
    body = {"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": {"namespace": "dev"}}
    out = reviews.self_subject_rules_review(body, "alice", ("system:authenticated",), AUTHZ.rules_for)
    assert out["kind"] == "SelfSubjectRulesReview" and out["apiVersion"] == "authorization.k8s.io/v1"
    assert out["spec"] == {} and out["status"]["incomplete"] is False
    assert {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["namespaces"]} \
        in out["status"]["resourceRules"]
    assert {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]} \
        in out["status"]["resourceRules"]
    assert {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]} \
        in out["status"]["nonResourceRules"]
    empty = reviews.self_subject_rules_review({"spec": {"namespace": "x"}}, "nobody", (), AUTHZ.rules_for)
    assert empty["status"] == {"resourceRules": [], "nonResourceRules": [], "incomplete": False}
    with pytest.raises(ValueError) as info:
        reviews.self_subject_rules_review({"spec": {}}, "alice", (), AUTHZ.rules_for)
    assert str(info.value) == "no namespace on request"
    assert isinstance(info.value, reviews.ReviewError) and info.value.code == 400


def test_self_subject_review() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    out = reviews.self_subject_review("alice", ("devs", "system:authenticated"), "u-1",
                                      {"scopes": ["a", "b"]}, now=now)
    assert out == {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                   "metadata": {"creationTimestamp": "2024-05-01T12:00:00Z"},
                   "status": {"userInfo": {"username": "alice", "uid": "u-1",
                                           "groups": ["devs", "system:authenticated"],
                                           "extra": {"scopes": ["a", "b"]}}}}
    bare = reviews.self_subject_review("system:anonymous", (), "", {}, api_version="authentication.k8s.io/v1beta1")
    assert bare["apiVersion"] == "authentication.k8s.io/v1beta1"
    assert bare["status"] == {"userInfo": {"username": "system:anonymous"}}
    assert bare["metadata"]["creationTimestamp"].endswith("Z")
