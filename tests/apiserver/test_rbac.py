"""RBAC evaluation (services/apiserver/rbac.py) over the bootstrap policy, from tables.

Who may do what under the default objects plus a few custom roles exercising every matching
rule (verbs/apiGroups/resources "*", "*/scale", exact "pods/status", resourceNames, RoleBindings
to ClusterRoles limited to their namespace, Group and ServiceAccount subjects, non-resource URLs
with a trailing "*"); the reasons and the 403 messages word for word; the index kept from events.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.apiserver import bootstrap_policy as bp
from services.apiserver.rbac import (
    Attributes,
    Decision,
    RbacAuthorizer,
    RbacIndex,
    forbidden_error,
    forbidden_message,
)

Obj = dict[str, Any]
AUTH = "system:authenticated"


def role(kind: str, name: str, rules: list[Obj], ns: str = "") -> Obj:
    meta: Obj = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules}


def binding(kind: str, name: str, ref_kind: str, ref: str, subjects: list[Obj], ns: str = "") -> Obj:
    meta: Obj = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref}, "subjects": subjects}


def user(name: str) -> Obj:
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def group(name: str) -> Obj:
    return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def sa(name: str, ns: str = "") -> Obj:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": ns} if ns else {})}


R = bp.rule

CUSTOM_CLUSTER_ROLES = [
    role("ClusterRole", "pod-reader", [R(bp.READ, [""], ["pods"])]),
    role("ClusterRole", "all-scale", [R(["get", "update"], ["*"], ["*/scale"])]),
    role("ClusterRole", "batcher", [R(["*"], ["batch"], ["jobs"])]),
    role("ClusterRole", "metrics-reader", [bp.url_rule(["get"], ["/metrics", "/logs/*"])]),
]
CUSTOM_ROLES = [
    role("Role", "deployer", [R(bp.READ_WRITE, ["apps"], ["deployments"]), R(["update"], ["apps"], ["*/scale"]),
                              R(["get"], [""], ["pods/status"])], "dev"),
    role("Role", "named", [R(["get"], [""], ["configmaps"], ["app-config"])], "dev"),
]
CUSTOM_CLUSTER_BINDINGS = [
    binding("ClusterRoleBinding", "scalers", "ClusterRole", "all-scale", [user("scaler")]),
    binding("ClusterRoleBinding", "batchers", "ClusterRole", "batcher", [user("batcher")]),
    binding("ClusterRoleBinding", "prometheus", "ClusterRole", "metrics-reader", [user("prom")]),
]
CUSTOM_BINDINGS = [
    binding("RoleBinding", "alice-deployer", "Role", "deployer", [user("alice")], "dev"),
    binding("RoleBinding", "alice-named", "Role", "named", [user("alice")], "dev"),
    binding("RoleBinding", "readers", "ClusterRole", "pod-reader", [group("team-a")], "dev"),
    binding("RoleBinding", "builders", "ClusterRole", "pod-reader", [sa("builder")], "dev"),
    binding("RoleBinding", "broken", "Role", "missing", [user("carol")], "dev"),
    binding("RoleBinding", "broken-too", "ClusterRole", "gone", [user("carol")], "dev"),
]


def make_index() -> RbacIndex:
    index = RbacIndex()
    index.replace("ClusterRole", bp.cluster_roles() + CUSTOM_CLUSTER_ROLES)
    index.replace("ClusterRoleBinding", bp.cluster_role_bindings() + CUSTOM_CLUSTER_BINDINGS)
    index.replace("Role", bp.roles() + CUSTOM_ROLES)
    index.replace("RoleBinding", bp.role_bindings() + CUSTOM_BINDINGS)
    return index


AUTHZ = RbacAuthorizer(make_index())

ADMIN = ("kubernetes-admin", ("system:masters", AUTH))
ALICE = ("alice", (AUTH,))
BOB = ("bob", ("team-a", AUTH))
BUILDER = ("system:serviceaccount:dev:builder", ("system:serviceaccounts", "system:serviceaccounts:dev", AUTH))
OTHER_BUILDER = ("system:serviceaccount:prod:builder", ("system:serviceaccounts", AUTH))
SCALER = ("scaler", (AUTH,))
BATCHER = ("batcher", (AUTH,))
PROM = ("prom", (AUTH,))
ANON = ("system:anonymous", ("system:unauthenticated",))
SCHED = ("system:kube-scheduler", (AUTH,))
KCM = ("system:kube-controller-manager", (AUTH,))
PROXY = ("system:kube-proxy", (AUTH,))
PROXIER_GROUP = ("proxy-2", ("system:node-proxier", AUTH))
KUBELET = ("system:node:n1", ("system:nodes", AUTH))


def res(who: tuple[str, tuple[str, ...]], verb: str, grp: str, resource: str, sub: str = "", ns: str = "",
        name: str = "") -> Attributes:
    return Attributes(who[0], who[1], verb, True, grp, resource, sub, ns, name)


def url(who: tuple[str, tuple[str, ...]], verb: str, path: str) -> Attributes:
    return Attributes(who[0], who[1], verb, False, path=path)


TABLE = [
    # system:masters is a superuser through the cluster-admin binding
    (res(ADMIN, "delete", "", "nodes", name="n1"), True),
    (res(ADMIN, "create", "apps", "deployments", "scale", "prod", "web"), True),
    (url(ADMIN, "get", "/metrics"), True),
    (url(ADMIN, "post", "/anything/at/all"), True),
    # nothing bound to alice cluster-wide
    (res(ALICE, "list", "", "pods", ns="default"), False),
    (res(ALICE, "list", "", "nodes"), False),
    # a Role in dev: exact resource, "*/scale" within apps, exact pods/status, the namespace only
    (res(ALICE, "create", "apps", "deployments", ns="dev"), True),
    (res(ALICE, "create", "apps", "deployments", ns="prod"), False),
    (res(ALICE, "create", "", "deployments", ns="dev"), False),
    (res(ALICE, "update", "apps", "deployments", "scale", "dev", "web"), True),
    (res(ALICE, "update", "apps", "replicasets", "scale", "dev", "web"), True),
    (res(ALICE, "update", "apps", "deployments", "status", "dev", "web"), False),
    (res(ALICE, "get", "", "pods", "status", "dev", "p"), True),
    (res(ALICE, "get", "", "pods", "", "dev", "p"), False),
    (res(ALICE, "get", "", "pods", "log", "dev", "p"), False),
    # resourceNames
    (res(ALICE, "get", "", "configmaps", ns="dev", name="app-config"), True),
    (res(ALICE, "get", "", "configmaps", ns="dev", name="other"), False),
    (res(ALICE, "list", "", "configmaps", ns="dev"), False),
    # a RoleBinding to a ClusterRole grants it in the binding's namespace only; Group subject
    (res(BOB, "list", "", "pods", ns="dev"), True),
    (res(BOB, "watch", "", "pods", ns="dev", name="p"), True),
    (res(BOB, "delete", "", "pods", ns="dev", name="p"), False),
    (res(BOB, "list", "", "pods", ns="prod"), False),
    (res(BOB, "list", "", "pods"), False),
    # ServiceAccount subject without a namespace = the binding's namespace
    (res(BUILDER, "get", "", "pods", ns="dev", name="p"), True),
    (res(OTHER_BUILDER, "get", "", "pods", ns="dev", name="p"), False),
    (res(OTHER_BUILDER, "get", "", "pods", ns="prod", name="p"), False),
    # apiGroups "*" with "*/scale"
    (res(SCALER, "update", "apps", "deployments", "scale", "x", "d"), True),
    (res(SCALER, "get", "apps", "statefulsets", "scale", "x", "s"), True),
    (res(SCALER, "get", "", "replicationcontrollers", "scale", "x", "rc"), True),
    (res(SCALER, "update", "apps", "deployments", "", "x", "d"), False),
    (res(SCALER, "update", "apps", "deployments", "status", "x", "d"), False),
    # verbs "*"
    (res(BATCHER, "deletecollection", "batch", "jobs", ns="x"), True),
    (res(BATCHER, "escalate", "batch", "jobs", ns="x"), True),
    (res(BATCHER, "get", "apps", "jobs", ns="x"), False),
    (res(BATCHER, "get", "batch", "jobs", "status", "x", "j"), False),
    # non-resource URLs: exact and trailing "*"
    (url(PROM, "get", "/metrics"), True),
    (url(PROM, "get", "/logs/kube-apiserver.log"), True),
    (url(PROM, "get", "/logs"), False),
    (url(PROM, "post", "/metrics"), False),
    (url(PROM, "get", "/metrics/slis"), False),
    (res(PROM, "get", "", "metrics"), False),
    # every caller: public info; authenticated callers: discovery and the self reviews
    (url(ANON, "get", "/healthz"), True),
    (url(ANON, "get", "/version"), True),
    (url(ANON, "get", "/api"), False),
    (url(ANON, "get", "/metrics"), False),
    (url(ALICE, "get", "/api"), True),
    (url(ALICE, "get", "/apis/apps/v1"), True),
    (url(ALICE, "get", "/openapi/v3"), True),
    (url(ALICE, "get", "/livez"), True),
    (url(ALICE, "get", "/metrics"), False),
    (url(ALICE, "put", "/api"), False),
    (res(ALICE, "create", "authorization.k8s.io", "selfsubjectaccessreviews"), True),
    (res(ALICE, "create", "authorization.k8s.io", "selfsubjectrulesreviews"), True),
    (res(ALICE, "create", "authentication.k8s.io", "selfsubjectreviews"), True),
    (res(ALICE, "create", "authorization.k8s.io", "subjectaccessreviews"), False),
    (res(ANON, "create", "authorization.k8s.io", "selfsubjectaccessreviews"), False),
    # the scheduler
    (res(SCHED, "list", "", "pods"), True),
    (res(SCHED, "watch", "", "nodes"), True),
    (res(SCHED, "list", "", "namespaces"), True),
    (res(SCHED, "list", "apps", "replicasets"), True),
    (res(SCHED, "create", "", "pods", "binding", "default", "p"), True),
    (res(SCHED, "create", "", "bindings", ns="default"), True),
    (res(SCHED, "patch", "", "pods", "status", "default", "p"), True),
    (res(SCHED, "update", "", "pods", "", "default", "p"), False),
    (res(SCHED, "create", "", "events", ns="default"), True),
    (res(SCHED, "patch", "events.k8s.io", "events", ns="default", name="e"), True),
    (res(SCHED, "create", "coordination.k8s.io", "leases", ns="kube-system"), True),
    (res(SCHED, "update", "coordination.k8s.io", "leases", ns="kube-system", name="kube-scheduler"), True),
    (res(SCHED, "update", "coordination.k8s.io", "leases", ns="kube-system", name="kube-controller-manager"), False),
    (res(SCHED, "delete", "", "nodes", name="n1"), False),
    (res(SCHED, "get", "", "secrets", ns="default", name="s"), False),
    # the controller manager: its controllers' kinds, subresources, and everything for GC/namespaces
    (res(KCM, "create", "", "pods", ns="default"), True),
    (res(KCM, "update", "", "pods", "status", "default", "p"), True),
    (res(KCM, "delete", "apps", "replicasets", ns="default", name="rs"), True),
    (res(KCM, "update", "apps", "deployments", "status", "default", "d"), True),
    (res(KCM, "update", "apps", "daemonsets", "status", "default", "d"), True),
    (res(KCM, "update", "batch", "jobs", "status", "default", "j"), True),
    (res(KCM, "create", "discovery.k8s.io", "endpointslices", ns="default"), True),
    (res(KCM, "create", "", "endpoints", ns="default"), True),
    (res(KCM, "update", "", "namespaces", "finalize", name="ns1"), True),
    (res(KCM, "update", "", "namespaces", "status", name="ns1"), True),
    (res(KCM, "patch", "", "nodes", name="n1"), True),
    (res(KCM, "update", "", "nodes", "status", name="n1"), True),
    (res(KCM, "patch", "", "configmaps", ns="default", name="c"), True),
    (res(KCM, "deletecollection", "", "secrets", ns="default"), True),
    (res(KCM, "list", "rbac.authorization.k8s.io", "roles"), True),
    (res(KCM, "create", "", "configmaps", ns="default"), False),
    (res(KCM, "create", "rbac.authorization.k8s.io", "clusterrolebindings"), False),
    (res(KCM, "create", "", "nodes"), False),
    # the proxy, as a user and through the group
    (res(PROXY, "list", "discovery.k8s.io", "endpointslices"), True),
    (res(PROXY, "watch", "", "services"), True),
    (res(PROXY, "get", "", "nodes", name="n1"), True),
    (res(PROXY, "create", "", "services", ns="default"), False),
    (res(PROXIER_GROUP, "list", "", "endpoints"), True),
    (res(PROXIER_GROUP, "update", "", "endpoints", ns="default", name="e"), False),
    # system:node is not bound: RBAC alone gives a kubelet only what every authenticated caller has
    (res(KUBELET, "get", "", "secrets", ns="default", name="s"), False),
    (res(KUBELET, "get", "", "nodes", name="n1"), False),
    (url(KUBELET, "get", "/api"), True),
]


@pytest.mark.parametrize(("attrs", "allowed"), TABLE,
                         ids=[f"{a.user}-{a.verb}-{a.api_group}/{a.resource}/{a.subresource}{a.path}-{a.namespace}"
                              for a, _ in TABLE])
def test_authorize(attrs: Attributes, allowed: bool) -> None:
    assert AUTHZ.authorize(attrs).allowed is allowed


@pytest.mark.parametrize(("attrs", "reason"), [
    (res(ADMIN, "list", "", "pods"),
     'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters"'),
    (res(BOB, "list", "", "pods", ns="dev"),
     'RBAC: allowed by RoleBinding "readers/dev" of ClusterRole "pod-reader" to Group "team-a"'),
    (res(BUILDER, "list", "", "pods", ns="dev"),
     'RBAC: allowed by RoleBinding "builders/dev" of ClusterRole "pod-reader" to ServiceAccount "builder/dev"'),
    (res(ALICE, "create", "apps", "deployments", ns="dev"),
     'RBAC: allowed by RoleBinding "alice-deployer/dev" of Role "deployer" to User "alice"'),
    (url(ANON, "get", "/healthz"),
     'RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole "system:public-info-viewer"'
     ' to Group "system:unauthenticated"'),
    (res(ALICE, "list", "", "pods", ns="dev"), ""),
    (res(("carol", (AUTH,)), "list", "", "pods"), ""),  # cluster scope: the broken RoleBindings are not visited
    (res(("carol", (AUTH,)), "list", "", "pods", ns="dev"),
     'RBAC: [role.rbac.authorization.k8s.io "missing" not found, clusterrole.rbac.authorization.k8s.io "gone" not found]'),
])
def test_reasons(attrs: Attributes, reason: str) -> None:
    assert AUTHZ.authorize(attrs).reason == reason


def test_one_missing_role_is_not_bracketed_and_other_grants_still_apply() -> None:
    index = make_index()
    index.apply("RoleBinding", "DELETED", binding("RoleBinding", "broken-too", "ClusterRole", "gone", [], "dev"))
    authz = RbacAuthorizer(index)
    assert authz.authorize(res(("carol", (AUTH,)), "list", "", "pods", ns="dev")) == Decision(
        False, 'RBAC: role.rbac.authorization.k8s.io "missing" not found')
    index.apply("RoleBinding", "ADDED", binding("RoleBinding", "carol-read", "ClusterRole", "view", [user("carol")], "dev"))
    assert authz.authorize(res(("carol", (AUTH,)), "list", "", "pods", ns="dev")).allowed
    index.apply("RoleBinding", "ADDED", binding("RoleBinding", "odd", "Thing", "x", [user("dave")], "dev"))
    assert authz.authorize(res(("dave", ()), "get", "", "pods", ns="dev")).reason == (
        'RBAC: unsupported role reference kind: "Thing"')


@pytest.mark.parametrize(("attrs", "reason", "message"), [
    (res(ALICE, "list", "", "pods", ns="default"), "",
     'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"'),
    (res(ALICE, "get", "", "pods", ns="default", name="p1"), "",
     'pods "p1" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "default"'),
    (res(ALICE, "create", "", "pods", "exec", "default", "p1"), "",
     'pods "p1" is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace "default"'),
    (res(ALICE, "list", "", "nodes"), "",
     'nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope'),
    (res(ALICE, "list", "apps", "deployments", ns="default"), "",
     'deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" in the namespace "default"'),
    (res(ALICE, "patch", "apps", "deployments", "scale", "default", "web"), "",
     'deployments.apps "web" is forbidden: User "alice" cannot patch resource "deployments/scale" in API group "apps" in the namespace "default"'),
    (url(ALICE, "get", "/metrics"), "", 'forbidden: User "alice" cannot get path "/metrics"'),
    (res(("carol", ()), "get", "", "pods", ns="dev", name="p"), 'RBAC: role.rbac.authorization.k8s.io "missing" not found',
     'pods "p" is forbidden: User "carol" cannot get resource "pods" in API group "" in the namespace "dev": '
     'RBAC: role.rbac.authorization.k8s.io "missing" not found'),
    # upstream's own cases (responsewriters/errors_test.go TestForbidden)
    (url(("NAME", ()), "GET", "/whatever"), "", 'forbidden: User "NAME" cannot GET path "/whatever"'),
    (url(("NAME", ()), "GET", "/<script>"), "", 'forbidden: User "NAME" cannot GET path "/&lt;script&gt;"'),
    (res(("NAME", ()), "get", "", "pod"), "",
     'pod is forbidden: User "NAME" cannot get resource "pod" in API group "" at the cluster scope'),
    (res(("NAME", ()), "get", "", "pod", name="mypod"), "",
     'pod "mypod" is forbidden: User "NAME" cannot get resource "pod" in API group "" at the cluster scope'),
    (res(("NAME", ()), "get", "v2", "pod", "quota", "test"), "",
     'pod.v2 is forbidden: User "NAME" cannot get resource "pod/quota" in API group "v2" in the namespace "test"'),
    # Go's %q escapes
    (res(('we"ird\n', ()), "get", "", "pods", ns="default"), "",
     'pods is forbidden: User "we\\"ird\\n" cannot get resource "pods" in API group "" in the namespace "default"'),
])
def test_forbidden_message(attrs: Attributes, reason: str, message: str) -> None:
    assert forbidden_message(attrs, reason) == message


def test_forbidden_error_status() -> None:
    err = forbidden_error(res(ALICE, "get", "apps", "deployments", "scale", "default", "web"))
    assert err.code == 403
    assert err.status()["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    assert err.status()["reason"] == "Forbidden"
    assert "details" not in forbidden_error(url(ALICE, "get", "/metrics")).status()


def test_index_events() -> None:
    index = RbacIndex()
    authz = RbacAuthorizer(index)
    get_cm = res(("erin", ()), "get", "", "configmaps", ns="ns1", name="c")
    assert not authz.authorize(get_cm).allowed
    index.apply("Role", "ADDED", role("Role", "r", [R(["get"], [""], ["secrets"])], "ns1"))
    index.apply("RoleBinding", "ADDED", binding("RoleBinding", "b", "Role", "r", [user("erin")], "ns1"))
    assert not authz.authorize(get_cm).allowed
    index.apply("Role", "MODIFIED", role("Role", "r", [R(["get"], [""], ["configmaps"])], "ns1"))
    assert authz.authorize(get_cm).allowed
    assert not authz.authorize(res(("erin", ()), "get", "", "configmaps", ns="ns2", name="c")).allowed
    # a Role of the same name in another namespace is another Role
    index.apply("Role", "DELETED", role("Role", "r", [], "ns2"))
    assert authz.authorize(get_cm).allowed
    index.apply("RoleBinding", "DELETED", binding("RoleBinding", "b", "Role", "r", [], "ns1"))
    assert not authz.authorize(get_cm).allowed
    assert len(index) == 1
    index.apply("Role", "BOOKMARK", role("Role", "other", [], "ns1"))
    assert index.get("Role", "ns1", "other") is None
    # replace drops what the new list does not have
    index.replace("Role", [role("Role", "x", [], "ns3")])
    assert index.get("Role", "ns1", "r") is None and index.get("Role", "ns3", "x") is not None
    # cluster kinds ignore a namespace
    index.apply("ClusterRole", "ADDED", role("ClusterRole", "c", [], "ignored"))
    assert index.get("ClusterRole", "whatever", "c") is not None
    assert [o["metadata"]["name"] for o in index.list("ClusterRole")] == ["c"]
    with pytest.raises(ValueError, match="unknown RBAC kind"):
        index.apply("Pod", "ADDED", {"metadata": {"name": "p"}})


def test_rules_for() -> None:
    resource_rules, non_resource_rules = AUTHZ.rules_for("bob", ("team-a", AUTH), "dev")
    assert {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]} in resource_rules
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in resource_rules
    assert {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]} \
        in non_resource_rules
    # the RoleBinding does not apply elsewhere
    elsewhere, _ = AUTHZ.rules_for("bob", ("team-a", AUTH), "prod")
    assert {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]} not in elsewhere
    named, _ = AUTHZ.rules_for("alice", (AUTH,), "dev")
    assert {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app-config"]} in named
    admin_rules, admin_urls = AUTHZ.rules_for("kubernetes-admin", ("system:masters",), "default")
    assert admin_rules == [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
    assert admin_urls == [{"verbs": ["*"], "nonResourceURLs": ["*"]}]


def test_bootstrap_objects() -> None:
    everything = bp.cluster_roles() + bp.cluster_role_bindings() + bp.roles() + bp.role_bindings()
    for obj in everything:
        assert obj["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert obj["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert obj["metadata"]["annotations"] == {"rbac.authorization.kubernetes.io/autoupdate": "true"}
        assert ("namespace" in obj["metadata"]) == (obj["kind"] in ("Role", "RoleBinding"))
    roles = {r["metadata"]["name"] for r in bp.cluster_roles()}
    for crb in bp.cluster_role_bindings():
        assert crb["roleRef"]["name"] in roles
    assert len(roles) == len(bp.cluster_roles())
    assert {"cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user",
            "system:public-info-viewer", "system:kube-scheduler", "system:kube-controller-manager",
            "system:node-proxier", "system:node"} <= roles
    node_binding = next(b for b in bp.cluster_role_bindings() if b["metadata"]["name"] == "system:node")
    assert "subjects" not in node_binding
    assert not any("aggregationRule" in r for r in bp.cluster_roles())
    # every call returns fresh objects
    first = bp.cluster_roles()
    first[0]["rules"].clear()
    assert bp.cluster_roles()[0]["rules"]


@pytest.mark.parametrize(("who", "verb", "resource", "allowed"), [
    (("viewer", ()), "list", "pods", True),
    (("viewer", ()), "list", "secrets", False),  # view never reads secrets
    (("viewer", ()), "create", "pods", False),
    (("editor", ()), "list", "secrets", True),
    (("editor", ()), "create", "pods", True),
    (("editor", ()), "create", "rolebindings", False),
    (("nsadmin", ()), "create", "rolebindings", True),
    (("nsadmin", ()), "delete", "pods", True),
])
def test_user_facing_roles(who: tuple[str, tuple[str, ...]], verb: str, resource: str, allowed: bool) -> None:
    index = make_index()
    for name, ref in (("viewer", "view"), ("editor", "edit"), ("nsadmin", "admin")):
        index.apply("RoleBinding", "ADDED", binding("RoleBinding", name, "ClusterRole", ref, [user(name)], "team"))
    grp = "rbac.authorization.k8s.io" if resource.startswith("role") else ""
    assert RbacAuthorizer(index).authorize(res(who, verb, grp, resource, ns="team")).allowed is allowed
    assert not RbacAuthorizer(index).authorize(res(who, verb, grp, resource, ns="other")).allowed
