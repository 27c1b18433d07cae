"""The Node authorizer and NodeRestriction (services/apiserver/node_authz.py), from tables.

Node n1 against node n2: what each may read of the objects their pods reference (through env,
envFrom, volumes, projected volumes, imagePullSecrets, claims, service accounts), that the
access ends with the pod, which node, lease and pod writes pass the authorizer and then
admission, and admission's refusals in upstream's words.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.apiserver.node_authz import (
    NodeAuthorizer,
    NodeGraph,
    admission_error,
    admit,
    node_name,
    pod_references,
)
from services.apiserver.rbac import Attributes, forbidden_message

Obj = dict[str, Any]
N1 = ("system:node:n1", ("system:nodes", "system:authenticated"))
N2 = ("system:node:n2", ("system:nodes", "system:authenticated"))


def pod(name: str, node: str, spec: Obj | None = None, ns: str = "default", uid: str = "", **meta: Any) -> Obj:
    s = {"containers": [{"name": "c", "image": "busybox"}], **(spec or {})}
    if node:
        s["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": uid or f"uid-{name}", **meta}, "spec": s}


BIG_SPEC: Obj = {
    "serviceAccountName": "sa1",
    "imagePullSecrets": [{"name": "pull-secret"}],
    "initContainers": [{"name": "init", "image": "busybox",
                        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "init-secret", "key": "k"}}}]}],
    "containers": [{"name": "c", "image": "busybox",
                    "env": [{"name": "B", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                            {"name": "D", "value": "plain"}],
                    "envFrom": [{"secretRef": {"name": "envfrom-secret"}}, {"configMapRef": {"name": "envfrom-cm"}}]}],
    "ephemeralContainers": [{"name": "debug", "image": "busybox", "envFrom": [{"secretRef": {"name": "debug-secret"}}]}],
    "volumes": [
        {"name": "s", "secret": {"secretName": "vol-secret"}},
        {"name": "c", "configMap": {"name": "vol-cm"}},
        {"name": "p", "projected": {"sources": [{"secret": {"name": "proj-secret"}}, {"configMap": {"name": "proj-cm"}},
                                                {"serviceAccountToken": {"path": "token"}}]}},
        {"name": "claim", "persistentVolumeClaim": {"claimName": "claim1"}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
        {"name": "rbd", "rbd": {"monitors": ["m"], "image": "i", "secretRef": {"name": "rbd-secret"}}},
        {"name": "empty", "emptyDir": {}},
    ],
}
MIRROR_ANNOTATIONS = {"kubernetes.io/config.mirror": "hash"}

PODS = [
    pod("p1", "n1", BIG_SPEC),
    pod("p3", "n1", {"volumes": [{"name": "s", "secret": {"secretName": "shared"}}]}),
    pod("p2", "n2", {"volumes": [{"name": "s", "secret": {"secretName": "shared"}}]}),
    pod("m1", "n1", {"volumes": [{"name": "s", "secret": {"secretName": "mirror-secret"}}]},
        annotations=MIRROR_ANNOTATIONS),
    pod("pending", "", {"volumes": [{"name": "s", "secret": {"secretName": "pending-secret"}}]}),
    pod("other-ns", "n1", {"volumes": [{"name": "s", "secret": {"secretName": "ns-secret"}}]}, ns="prod"),
]


def make_graph() -> NodeGraph:
    g = NodeGraph()
    g.replace_pods(copy.deepcopy(PODS))
    return g


def res(who: tuple[str, tuple[str, ...]], verb: str, resource: str, sub: str = "", ns: str = "", name: str = "",
        group: str = "") -> Attributes:
    return Attributes(who[0], who[1], verb, True, group, resource, sub, ns, name)


def url(who: tuple[str, tuple[str, ...]], verb: str, path: str) -> Attributes:
    return Attributes(who[0], who[1], verb, False, path=path)


def test_node_name() -> None:
    assert node_name(*N1) == "n1"
    assert node_name("system:node:n1", ("system:authenticated",)) is None
    assert node_name("alice", ("system:nodes",)) is None
    assert node_name("system:node:", ("system:nodes",)) == ""


def test_pod_references() -> None:
    refs = pod_references(PODS[0])
    assert {n for k, n in refs if k == "secrets"} == {
        "pull-secret", "init-secret", "env-secret", "envfrom-secret", "debug-secret", "vol-secret", "proj-secret",
        "csi-secret", "rbd-secret"}
    assert {n for k, n in refs if k == "configmaps"} == {"env-cm", "envfrom-cm", "vol-cm", "proj-cm"}
    assert {n for k, n in refs if k == "persistentvolumeclaims"} == {"claim1", "p1-scratch"}
    assert {n for k, n in refs if k == "serviceaccounts"} == {"sa1"}
    assert pod_references(PODS[3]) == frozenset()  # a mirror pod grants nothing


def decide(graph: NodeGraph, a: Attributes) -> tuple[bool, str]:
    d = NodeAuthorizer(graph).authorize(a)
    assert d is not None
    return d.allowed, d.reason


NO_REL_1 = "no relationship found between node 'n1' and this object"
NO_REL_2 = "no relationship found between node 'n2' and this object"

READS = [(kind, name) for kind in ("secrets",) for name in (
    "pull-secret", "init-secret", "env-secret", "envfrom-secret", "debug-secret", "vol-secret", "proj-secret",
    "csi-secret", "rbd-secret")] + [("configmaps", n) for n in ("env-cm", "envfrom-cm", "vol-cm", "proj-cm")] + [
    ("persistentvolumeclaims", "claim1"), ("persistentvolumeclaims", "p1-scratch")]


@pytest.mark.parametrize(("kind", "name"), READS)
def test_reads_follow_the_pod(kind: str, name: str) -> None:
    g = make_graph()
    get = res(N1, "get", kind, ns="default", name=name)
    assert decide(g, get) == (True, "")
    assert decide(g, res(N2, "get", kind, ns="default", name=name)) == (False, NO_REL_2)
    assert decide(g, res(N1, "get", kind, ns="prod", name=name)) == (False, NO_REL_1)
    g.apply_pod("DELETED", pod("p1", "n1", BIG_SPEC))
    assert decide(g, get) == (False, NO_REL_1)


TABLE = [
    # secrets and configmaps: one named object, read only, namespaced
    (res(N1, "get", "secrets", ns="default", name="shared"), True, ""),
    (res(N2, "get", "secrets", ns="default", name="shared"), True, ""),
    (res(N2, "get", "secrets", ns="default", name="vol-secret"), False, NO_REL_2),
    (res(N1, "watch", "secrets", ns="default", name="vol-secret"), True, ""),  # list/watch by metadata.name
    (res(N1, "list", "secrets", ns="default"), False, "No Object name found"),
    (res(N1, "watch", "configmaps", ns="default"), False, "No Object name found"),
    (res(N1, "list", "secrets"), False, "can only read namespaced object of this type"),
    (res(N1, "update", "secrets", ns="default", name="vol-secret"), False, "can only read resources of this type"),
    (res(N1, "create", "configmaps", ns="default"), False, "can only read resources of this type"),
    (res(N1, "get", "secrets", "status", "default", "vol-secret"), False, "cannot read subresource"),
    (res(N1, "get", "secrets", ns="default", name="mirror-secret"), False, NO_REL_1),
    (res(N1, "get", "secrets", ns="default", name="pending-secret"), False, NO_REL_1),
    (res(N1, "get", "secrets", ns="prod", name="ns-secret"), True, ""),
    (res(N1, "get", "configmaps", ns="default", name="vol-cm"), True, ""),
    (res(N2, "get", "configmaps", ns="default", name="vol-cm"), False, NO_REL_2),
    # claims: get, and status writes
    (res(N1, "get", "persistentvolumeclaims", ns="default", name="claim1"), True, ""),
    (res(N1, "list", "persistentvolumeclaims", ns="default"), False, "can only get individual resources of this type"),
    (res(N1, "patch", "persistentvolumeclaims", "status", "default", "claim1"), True, ""),
    (res(N2, "patch", "persistentvolumeclaims", "status", "default", "claim1"), False, NO_REL_2),
    (res(N1, "get", "persistentvolumeclaims", "status", "default", "claim1"), False, "can only get/update/patch this type"),
    (res(N1, "get", "persistentvolumes", name="pv1"), False, "no relationship found between node 'n1' and this object"),
    # service accounts: tokens only
    (res(N1, "create", "serviceaccounts", "token", "default", "sa1"), True, ""),
    (res(N2, "create", "serviceaccounts", "token", "default", "sa1"), False, NO_REL_2),
    (res(N1, "get", "serviceaccounts", ns="default", name="sa1"), False,
     "can only create tokens for individual service accounts"),
    (res(N1, "create", "serviceaccounts", "", "default", "sa1"), False,
     "can only create token subresource of serviceaccount"),
    # leases: kube-node-lease, own name (create is checked by admission)
    (res(N1, "get", "leases", ns="kube-node-lease", name="n1", group="coordination.k8s.io"), True, ""),
    (res(N1, "update", "leases", ns="kube-node-lease", name="n1", group="coordination.k8s.io"), True, ""),
    (res(N1, "delete", "leases", ns="kube-node-lease", name="n1", group="coordination.k8s.io"), True, ""),
    (res(N1, "create", "leases", ns="kube-node-lease", group="coordination.k8s.io"), True, ""),
    (res(N1, "update", "leases", ns="kube-node-lease", name="n2", group="coordination.k8s.io"), False,
     "can only access node lease with the same name as the requesting node"),
    (res(N1, "get", "leases", ns="kube-system", name="n1", group="coordination.k8s.io"), False,
     'can only access leases in the "kube-node-lease" system namespace'),
    (res(N1, "list", "leases", ns="kube-node-lease", group="coordination.k8s.io"), False,
     "can only get, create, update, patch, or delete a node lease"),
    # nodes: read any; writes pass here, NodeRestriction limits them to the node's own
    (res(N1, "get", "nodes", name="n2"), True, ""),
    (res(N1, "list", "nodes"), True, ""),
    (res(N1, "watch", "nodes"), True, ""),
    (res(N1, "create", "nodes"), True, ""),
    (res(N1, "patch", "nodes", name="n1"), True, ""),
    (res(N1, "update", "nodes", "status", name="n1"), True, ""),
    (res(N1, "delete", "nodes", name="n1"), True, ""),
    (res(N1, "deletecollection", "nodes"), False, ""),
    (res(N1, "get", "nodes", "proxy", name="n1"), False, ""),
    # pods
    (res(N1, "get", "pods", ns="default", name="p2"), True, ""),
    (res(N1, "list", "pods"), True, ""),
    (res(N1, "watch", "pods", ns="default"), True, ""),
    (res(N1, "create", "pods", ns="kube-system"), True, ""),
    (res(N1, "delete", "pods", ns="default", name="p1"), True, ""),
    (res(N1, "update", "pods", ns="default", name="p1"), False, ""),
    (res(N1, "patch", "pods", ns="default", name="p1"), False, ""),
    (res(N1, "patch", "pods", "status", "default", "p1"), True, ""),
    (res(N1, "update", "pods", "status", "default", "p1"), True, ""),
    (res(N1, "create", "pods", "eviction", "default", "p1"), True, ""),
    (res(N1, "create", "pods", "exec", "default", "p1"), False, ""),
    (res(N1, "create", "pods", "binding", "default", "p1"), False, ""),
    # events, services and endpoints, namespaces, reviews
    (res(N1, "create", "events", ns="default"), True, ""),
    (res(N1, "patch", "events", ns="default", name="e"), True, ""),
    (res(N1, "update", "events", ns="default", name="e", group="events.k8s.io"), True, ""),
    (res(N1, "delete", "events", ns="default", name="e"), False, ""),
    (res(N1, "list", "services"), True, ""),
    (res(N1, "watch", "endpoints"), True, ""),
    (res(N1, "list", "endpointslices", group="discovery.k8s.io"), True, ""),
    (res(N1, "update", "services", ns="default", name="s"), False, ""),
    (res(N1, "get", "namespaces", name="default"), True, ""),
    (res(N1, "list", "namespaces"), False, ""),
    (res(N1, "create", "tokenreviews", group="authentication.k8s.io"), True, ""),
    (res(N1, "create", "subjectaccessreviews", group="authorization.k8s.io"), True, ""),
    (res(N1, "create", "selfsubjectaccessreviews", group="authorization.k8s.io"), True, ""),
    (res(N1, "create", "selfsubjectreviews", group="authentication.k8s.io"), True, ""),
    # nothing else
    (res(N1, "list", "deployments", group="apps"), False, ""),
    (res(N1, "create", "clusterrolebindings", group="rbac.authorization.k8s.io"), False, ""),
    (url(N1, "get", "/healthz"), True, ""),
    (url(N1, "get", "/readyz"), True, ""),
    (url(N1, "get", "/version"), True, ""),
    (url(N1, "get", "/api"), True, ""),
    (url(N1, "get", "/api/v1"), True, ""),
    (url(N1, "get", "/apis/apps/v1"), True, ""),
    (url(N1, "get", "/openapi/v3"), True, ""),
    (url(N1, "get", "/metrics"), False, ""),
    (url(N1, "post", "/api/v1"), False, ""),
]


@pytest.mark.parametrize(("attrs", "allowed", "reason"), TABLE,
                         ids=[f"{a.user[12:]}-{a.verb}-{a.resource}/{a.subresource}{a.path}-{a.name}" for a, _, _ in TABLE])
def test_authorize(attrs: Attributes, allowed: bool, reason: str) -> None:
    assert decide(make_graph(), attrs) == (allowed, reason)


def test_not_a_node_or_an_unknown_node() -> None:
    authz = NodeAuthorizer(make_graph())
    assert authz.authorize(res(("alice", ("system:authenticated",)), "get", "secrets", ns="default", name="s")) is None
    assert authz.authorize(res(("system:node:n1", ("system:authenticated",)), "get", "nodes")) is None
    d = authz.authorize(res(("system:node:", ("system:nodes",)), "get", "nodes", name="x"))
    assert d is not None and not d.allowed and d.reason == 'unknown node for user "system:node:"'


def test_graph_events() -> None:
    g = NodeGraph()
    g.apply_pod("ADDED", pod("a", "", {"volumes": [{"name": "s", "secret": {"secretName": "s1"}}]}))
    assert not g.node_uses("n1", "secrets", "default", "s1")  # not bound yet
    g.apply_pod("MODIFIED", pod("a", "n1", {"volumes": [{"name": "s", "secret": {"secretName": "s1"}}]}))
    assert g.node_uses("n1", "secrets", "default", "s1") and g.node_uses("n1", "pods", "default", "a")
    g.apply_pod("ADDED", pod("b", "n1", {"volumes": [{"name": "s", "secret": {"secretName": "s1"}}]}))
    g.apply_pod("DELETED", pod("a", "n1"))
    assert g.node_uses("n1", "secrets", "default", "s1")  # b still uses it
    g.apply_pod("DELETED", pod("b", "n1", uid="an-older-b"))  # a late event of another pod named b
    assert g.node_uses("n1", "secrets", "default", "s1")
    g.apply_pod("DELETED", pod("b", "n1"))
    assert not g.node_uses("n1", "secrets", "default", "s1")
    assert g.pod_node("default", "b") is None
    g.apply_pod("ADDED", pod("c", "n2", {"volumes": [{"name": "s", "secret": {"secretName": "s2"}}]}))
    g.replace_pods([pod("d", "n1")])
    assert not g.node_uses("n2", "secrets", "default", "s2") and g.pod_node("default", "d") == "n1"


# ---------------------------------------------------------------- NodeRestriction


def node(name: str, labels: Obj | None = None, taints: list[Obj] | None = None, **spec: Any) -> Obj:
    s: Obj = dict(spec)
    if taints is not None:
        s["taints"] = taints
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}},
            "spec": s}


OWNER = {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-n1", "controller": True}


def mirror(node_name: str = "n1", owners: list[Obj] | None = None, spec: Obj | None = None,
           annotations: Obj | None = None) -> Obj:
    p = pod(f"static-web-{node_name}", node_name, spec, ns="kube-system",
            annotations=MIRROR_ANNOTATIONS if annotations is None else annotations,
            ownerReferences=[OWNER] if owners is None else owners)
    p["metadata"].pop("uid")
    return p


LEASE_N1 = {"metadata": {"name": "n1", "namespace": "kube-node-lease"}}
LEASE_N2 = {"metadata": {"name": "n2", "namespace": "kube-node-lease"}}
LG = "coordination.k8s.io"

ADMIT: list[tuple[Attributes, Obj | None, Obj | None, str | None]] = [
    # nodes: its own only, kubelet labels only, taints untouched
    (res(N1, "create", "nodes"), node("n1", {"kubernetes.io/hostname": "n1", "node.kubernetes.io/exclude": "x",
                                               "example.com/team": "a", "kubelet.kubernetes.io/x": "y"}), None, None),
    (res(N1, "create", "nodes"), node("n2"), None, 'node "n1" is not allowed to modify node "n2"'),
    (res(N1, "create", "nodes"), node("n1", {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/os": "linux"}),
     None, 'node "n1" is not allowed to set the following labels: node-role.kubernetes.io/control-plane'),
    (res(N1, "create", "nodes"), node("n1", {"node-restriction.kubernetes.io/b": "1", "a.node-restriction.kubernetes.io/a": "1"}),
     None, 'node "n1" is not allowed to set the following labels: '
           'a.node-restriction.kubernetes.io/a, node-restriction.kubernetes.io/b'),
    (res(N1, "create", "nodes"), node("n1", configSource={"configMap": {}}), None,
     'node "n1" is not allowed to create pods with a non-nil configSource'),
    (res(N1, "update", "nodes", name="n1"), node("n1", {"kubernetes.io/arch": "arm64"}), node("n1"), None),
    (res(N1, "patch", "nodes", name="n2"), node("n2"), node("n2"), 'node "n1" is not allowed to modify node "n2"'),
    (res(N1, "update", "nodes", "status", "", "n2"), node("n2"), node("n2"), 'node "n1" is not allowed to modify node "n2"'),
    (res(N1, "update", "nodes", "status", "", "n1"), node("n1", taints=[{"key": "k", "effect": "NoSchedule"}]),
     node("n1", taints=[{"key": "k", "effect": "NoSchedule"}]), None),
    (res(N1, "patch", "nodes", name="n1"), node("n1", taints=[]), node("n1", taints=[{"key": "k", "effect": "NoSchedule"}]),
     'node "n1" is not allowed to modify taints'),
    (res(N1, "patch", "nodes", name="n1"), node("n1", taints=[]), node("n1"), None),  # nil and empty are equal
    (res(N1, "patch", "nodes", name="n1"), node("n1", {}), node("n1", {"node-role.kubernetes.io/worker": ""}),
     "is not allowed to modify labels: node-role.kubernetes.io/worker"),
    (res(N1, "update", "nodes", name="n1"), node("n1", configSource={"configMap": {"name": "x"}}), node("n1"),
     'node "n1" is not allowed to update configSource to a new non-nil configSource'),
    (res(N1, "delete", "nodes", name="n1"), None, node("n1"), None),
    (res(N1, "delete", "nodes", name="n2"), None, node("n2"), 'node "n1" is not allowed to modify node "n2"'),
    # mirror pods only, bound to and owned by the node, referencing nothing
    (res(N1, "create", "pods", ns="kube-system"), mirror(), None, None),
    (res(N1, "create", "pods", ns="default"), pod("plain", "n1"), None,
     'pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods'),
    (res(N1, "create", "pods", ns="kube-system"), mirror("n2", [{**OWNER, "name": "n2"}]), None,
     'node "n1" can only create pods with spec.nodeName set to itself'),
    (res(N1, "create", "pods", ns="kube-system"), mirror(owners=[]), None,
     'node "n1" can only create pods with an owner reference set to itself'),
    (res(N1, "create", "pods", ns="kube-system"), mirror(owners=[OWNER, OWNER]), None,
     'node "n1" can only create pods with a single owner reference set to itself'),
    (res(N1, "create", "pods", ns="kube-system"), mirror(owners=[{**OWNER, "kind": "ReplicaSet"}]), None,
     'node "n1" can only create pods with an owner reference set to itself'),
    (res(N1, "create", "pods", ns="kube-system"), mirror(owners=[{**OWNER, "controller": False}]), None,
     'node "n1" can only create pods with a controller owner reference set to itself'),
    (res(N1, "create", "pods", ns="kube-system"), mirror(owners=[{**OWNER, "blockOwnerDeletion": True}]), None,
     'node "n1" must not set blockOwnerDeletion on an owner reference'),
    (res(N1, "create", "pods", ns="kube-system"), mirror(spec={"serviceAccountName": "default"}), None,
     'node "n1" can not create pods that reference a service account'),
    (res(N1, "create", "pods", ns="kube-system"), mirror(spec={"imagePullSecrets": [{"name": "x"}]}), None,
     'node "n1" can not create pods that reference secrets'),
    (res(N1, "create", "pods", ns="kube-system"),
     mirror(spec={"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "x"}}]}]}), None,
     'node "n1" can not create pods that reference configmaps'),
    (res(N1, "create", "pods", ns="kube-system"),
     mirror(spec={"volumes": [{"name": "v", "projected": {"sources": [{"clusterTrustBundle": {"name": "b"}}]}}]}), None,
     'node "n1" can not create pods that reference clustertrustbundles'),
    (res(N1, "create", "pods", ns="kube-system"),
     mirror(spec={"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}), None,
     'node "n1" can not create pods that reference persistentvolumeclaims'),
    # deletes, updates, status, eviction: only pods bound to the node
    (res(N1, "delete", "pods", ns="default", name="p1"), None, pod("p1", "n1"), None),
    (res(N1, "delete", "pods", ns="default", name="p2"), None, pod("p2", "n2"),
     'node "n1" can only delete pods with spec.nodeName set to itself'),
    (res(N1, "delete", "pods", ns="default", name="gone"), None, None, None),  # the store answers 404
    (res(N1, "update", "pods", ns="default", name="p1"), pod("p1", "n1"), pod("p1", "n1"),
     'unexpected operation "UPDATE", node "n1" can only create and delete mirror pods'),
    (res(N1, "patch", "pods", "status", "default", "p1"), pod("p1", "n1"), pod("p1", "n1"), None),
    (res(N1, "update", "pods", "status", "default", "p2"), pod("p2", "n2"), pod("p2", "n2"),
     'node "n1" can only update pod status for pods with spec.nodeName set to itself'),
    (res(N1, "patch", "pods", "status", "default", "p1"), pod("p1", "n1", labels={"a": "b"}), pod("p1", "n1"),
     'node "n1" cannot update labels through pod status'),
    (res(N1, "create", "pods", "eviction", "default", "p1"), {"metadata": {"name": "p1"}}, pod("p1", "n1"), None),
    (res(N1, "create", "pods", "eviction", "default", "p2"), {"metadata": {"name": "p2"}}, pod("p2", "n2"),
     "node n1 can only evict pods with spec.nodeName set to itself"),
    (res(N1, "create", "pods", "eviction", "default"), {"metadata": {}}, None, "could not determine pod from request data"),
    (res(N1, "create", "pods", "exec", "default", "p1"), None, pod("p1", "n1"),
     "unexpected pod subresource \"exec\", only 'status' and 'eviction' are allowed"),
    # leases: its own, in kube-node-lease
    (res(N1, "create", "leases", ns="kube-node-lease", group=LG), LEASE_N1, None, None),
    (res(N1, "create", "leases", ns="kube-node-lease", group=LG), LEASE_N2, None,
     "can only access node lease with the same name as the requesting node"),
    (res(N1, "update", "leases", ns="kube-node-lease", name="n1", group=LG), LEASE_N1, LEASE_N1, None),
    (res(N1, "delete", "leases", ns="kube-node-lease", name="n2", group=LG), None, LEASE_N2,
     "can only access node lease with the same name as the requesting node"),
    (res(N1, "create", "leases", ns="default", group=LG), LEASE_N1, None,
     'can only access leases in the "kube-node-lease" system namespace'),
    # claims: status only
    (res(N1, "update", "persistentvolumeclaims", ns="default", name="c"), {}, {}, "may only update PVC status"),
    (res(N1, "update", "persistentvolumeclaims", "status", "default", "c"),
     {"metadata": {"name": "c", "resourceVersion": "2"}, "status": {"capacity": {"storage": "2Gi"}}},
     {"metadata": {"name": "c", "resourceVersion": "1"}, "status": {"capacity": {"storage": "1Gi"}}}, None),
    (res(N1, "update", "persistentvolumeclaims", "status", "default", "c"),
     {"metadata": {"name": "c", "labels": {"x": "y"}}, "status": {"phase": "Lost"}}, {"metadata": {"name": "c"}},
     'node "n1" is not allowed to update fields other than status.capacity and status.conditions: '
     "metadata.labels, status.phase"),
    # service account tokens: bound to a pod on the node
    (res(N1, "create", "serviceaccounts", "token", "default", "sa1"),
     {"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p1", "uid": "uid-p1"}}},
     pod("p1", "n1"), None),
    (res(N1, "create", "serviceaccounts", "token", "default", "sa1"), {"spec": {}}, None,
     "node requested token not bound to a pod"),
    (res(N1, "create", "serviceaccounts", "token", "default", "sa1"),
     {"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p2", "uid": "uid-p2"}}},
     pod("p2", "n2"), "node requested token bound to a pod scheduled on a different node"),
    # what NodeRestriction does not look at
    (res(N1, "get", "nodes", name="n2"), None, None, None),
    (res(N1, "create", "events", ns="default"), {"metadata": {"name": "e"}}, None, None),
    (res(("alice", ()), "delete", "nodes", name="n2"), None, node("n2"), None),
    (res(("system:node:", ("system:nodes",)), "create", "events", ns="default"), {}, None,
     'could not determine node from user "system:node:"'),
]


@pytest.mark.parametrize(("attrs", "obj", "old", "message"), ADMIT,
                         ids=[f"{a.verb}-{a.resource}/{a.subresource}-{i}" for i, (a, _, _, _) in enumerate(ADMIT)])
def test_admit(attrs: Attributes, obj: Obj | None, old: Obj | None, message: str | None) -> None:
    assert admit(attrs, obj, old) == message


def test_admit_checks_the_node_uid_when_given() -> None:
    a = res(N1, "create", "pods", ns="kube-system")
    assert admit(a, mirror(), None, node_uid="uid-n1") is None
    assert admit(a, mirror(), None, node_uid="uid-new") == "node n1 UID mismatch: expected uid-n1 got uid-new"


def test_admission_error_names_the_object() -> None:
    a = res(N1, "create", "pods", ns="kube-system")
    p = mirror("n2", [{**OWNER, "name": "n2"}])
    err = admission_error(a, p, admit(a, p, None) or "")
    assert err.code == 403 and err.message == (
        'pods "static-web-n2" is forbidden: node "n1" can only create pods with spec.nodeName set to itself')
    b = res(N1, "patch", "nodes", name="n2")
    assert admission_error(b, node("n2"), admit(b, node("n2"), node("n2")) or "").message == (
        'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"')
    c = res(N1, "create", "leases", ns="kube-node-lease", group=LG)
    assert admission_error(c, None, "x").message == 'leases.coordination.k8s.io "Unknown" is forbidden: x'


def test_the_whole_refusal_for_a_kubelet() -> None:
    a = res(N2, "get", "secrets", ns="default", name="vol-secret")
    d = NodeAuthorizer(make_graph()).authorize(a)
    assert d is not None and not d.allowed
    assert forbidden_message(a, d.reason) == (
        'secrets "vol-secret" is forbidden: User "system:node:n2" cannot get resource "secrets" in API group "" '
        "in the namespace \"default\": no relationship found between node 'n2' and this object")
