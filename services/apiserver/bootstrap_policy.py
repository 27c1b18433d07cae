"""The default RBAC objects the apiserver creates at startup (bootstrappolicy/policy.go).

Why this exists: with RBAC on, nobody may do anything until roles are bound, and Kubernetes'
components and tools expect the well-known defaults: `cluster-admin` bound to `system:masters`
(which is how an admin certificate becomes a superuser: data, not a special case), the
`admin`/`edit`/`view` roles users bind in namespaces, `system:discovery`, `system:basic-user` and
`system:public-info-viewer` for every caller, and one ClusterRole + ClusterRoleBinding per control
plane identity. Every object carries the label `kubernetes.io/bootstrapping: rbac-defaults` and
the annotation `rbac.authorization.kubernetes.io/autoupdate: "true"`, as upstream's do.

Rules are copied from upstream's testdata (cluster-roles.yaml) with these kubenats differences:
- admin/edit/view carry their rules directly (the union upstream reaches through aggregation),
  without `aggregationRule`: kubenats does not aggregate ClusterRoles.
- `system:kube-controller-manager`: upstream's controller manager uses one service account per
  controller; kubenats runs replicaset, deployment, garbagecollector, namespace, endpoint,
  endpointslice, nodelifecycle, daemonset and job controllers under ONE identity, so its role is
  the union of what those controllers need (see `_CONTROLLER_MANAGER`).
- `system:node-proxier` is bound to the group `system:node-proxier` as well as the user.
- `system:node` has a few additions kubenats' kubelet uses (see `_NODE`); as upstream, its
  binding has no subjects: the Node authorizer (node_authz) decides for kubelets.
Every call returns fresh objects, so callers may modify them.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]

API_VERSION = "rbac.authorization.k8s.io/v1"
LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}

READ = ["get", "list", "watch"]
READ_WRITE = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
KUBE_PROXY_USER = "system:kube-proxy"


def rule(verbs: list[str], groups: list[str], resources: list[str], names: list[str] | None = None) -> Obj:
    out: Obj = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def url_rule(verbs: list[str], urls: list[str]) -> Obj:
    return {"verbs": list(verbs), "nonResourceURLs": list(urls)}


def _events() -> Obj:
    return rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"])


def _meta(name: str, namespace: str = "", labels: dict[str, str] | None = None) -> Obj:
    m: Obj = {"name": name, "labels": {**LABELS, **(labels or {})}, "annotations": dict(ANNOTATIONS)}
    if namespace:
        m["namespace"] = namespace
    return m


# ---------------------------------------------------------------- user-facing roles

_VIEW = [
    rule(READ, [""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                      "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                      "services/status"]),
    rule(READ, [""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                      "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"]),
    rule(READ, [""], ["namespaces"]),
    rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
    rule(READ, ["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                          "deployments/status", "replicasets", "replicasets/scale", "replicasets/status",
                          "statefulsets", "statefulsets/scale", "statefulsets/status"]),
    rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    rule(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    rule(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
]

_EDIT = [
    rule(READ, [""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"]),
    rule(["impersonate"], [""], ["serviceaccounts"]),
    rule(WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
    rule(["create"], [""], ["pods/eviction"]),
    rule(WRITE, [""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                       "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"]),
    rule(["create"], [""], ["serviceaccounts/token"]),
    rule(WRITE, ["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                           "replicasets/scale", "statefulsets", "statefulsets/scale"]),
    rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
    rule(WRITE, ["batch"], ["cronjobs", "jobs"]),
    rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
    rule(WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
    rule(READ_WRITE, ["coordination.k8s.io"], ["leases"]),
]

_ADMIN = [
    rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
    rule(READ_WRITE, ["rbac.authorization.k8s.io"], ["rolebindings", "roles"]),
]

# ---------------------------------------------------------------- every caller

_DISCOVERY = [url_rule(["get"], ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                                 "/readyz", "/version", "/version/"])]
_BASIC_USER = [
    rule(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
    rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
]
_PUBLIC_INFO = [url_rule(["get"], ["/healthz", "/livez", "/readyz", "/version", "/version/"])]
_MONITORING = [url_rule(["get"], ["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis",
                                  "/readyz", "/readyz/*"])]
_AUTH_DELEGATOR = [
    rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
    rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
]

# ---------------------------------------------------------------- control plane identities

_SCHEDULER = [
    _events(),
    rule(["create"], ["coordination.k8s.io"], ["leases"]),
    rule(["get", "update"], ["coordination.k8s.io"], ["leases"], ["kube-scheduler"]),
    rule(READ, [""], ["nodes"]),
    rule(["delete", "get", "list", "watch"], [""], ["pods"]),  # delete: preemption
    rule(["create"], [""], ["bindings", "pods/binding"]),
    rule(["patch", "update"], [""], ["pods/status"]),
    rule(READ, [""], ["replicationcontrollers", "services"]),
    rule(READ, ["apps", "extensions"], ["replicasets"]),
    rule(READ, ["apps"], ["statefulsets"]),
    rule(READ, ["policy"], ["poddisruptionbudgets"]),
    rule(READ, [""], ["persistentvolumeclaims", "persistentvolumes"]),
    rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
    rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
    rule(READ, ["storage.k8s.io"], ["csinodes"]),
    rule(READ, [""], ["namespaces"]),
    rule(READ, ["storage.k8s.io"], ["csidrivers"]),
    rule(READ, ["storage.k8s.io"], ["csistoragecapacities"]),
]

_CONTROLLER_MANAGER = [
    _events(),
    rule(["create"], ["coordination.k8s.io"], ["leases"]),
    rule(["get", "update"], ["coordination.k8s.io"], ["leases"], ["kube-controller-manager"]),
    rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
    rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
    # replicaset, deployment, daemonset, job, endpoint and endpointslice controllers: what they own
    rule(READ_WRITE, [""], ["pods", "endpoints"]),
    rule(["patch", "update"], [""], ["pods/status"]),
    rule(READ_WRITE, ["apps"], ["daemonsets", "deployments", "replicasets"]),
    rule(["get", "patch", "update"], ["apps"], ["daemonsets/finalizers", "daemonsets/status", "deployments/finalizers",
                                                "deployments/scale", "deployments/status", "replicasets/finalizers",
                                                "replicasets/scale", "replicasets/status"]),
    rule(READ_WRITE, ["batch"], ["jobs"]),
    rule(["get", "patch", "update"], ["batch"], ["jobs/finalizers", "jobs/status"]),
    rule(READ_WRITE, ["discovery.k8s.io"], ["endpointslices"]),
    rule(READ, [""], ["services"]),
    # namespace controller
    rule(["delete", "get", "list", "patch", "update", "watch"], [""], ["namespaces"]),
    rule(["update"], [""], ["namespaces/finalize", "namespaces/status"]),
    # node lifecycle controller (taints, conditions, reads node leases; evicts by deleting pods)
    rule(["get", "list", "patch", "update", "watch"], [""], ["nodes"]),
    rule(["patch", "update"], [""], ["nodes/status"]),
    rule(READ, ["coordination.k8s.io"], ["leases"]),
    # The garbage collector and the namespace controller work on every kind: they list, watch and
    # delete dependents and namespace contents, and the collector patches ownerReferences and the
    # orphan/foregroundDeletion finalizers. Upstream grants its generic-garbage-collector and
    # namespace-controller accounts the same on "*" "*"; with one identity kubenats does too.
    rule(["delete", "deletecollection", "get", "list", "patch", "update", "watch"], ["*"], ["*"]),
]

_NODE_PROXIER = [
    rule(["list", "watch"], [""], ["endpoints", "services"]),
    rule(READ, [""], ["nodes"]),
    _events(),
    rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
]

# Upstream's system:node rules, then what kubenats' kubelet also reads. The Node authorizer uses
# these for every resource it does not subdivide (secrets, configmaps, persistentvolumeclaims,
# serviceaccounts and leases are decided per object there).
_NODE = [
    rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
    rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews", "subjectaccessreviews"]),
    rule(READ, [""], ["services"]),
    rule(["create", "get", "list", "watch"], [""], ["nodes"]),
    rule(["patch", "update"], [""], ["nodes/status"]),
    rule(["patch", "update"], [""], ["nodes"]),
    rule(["create", "patch", "update"], [""], ["events"]),
    rule(READ, [""], ["pods"]),
    rule(["create", "delete"], [""], ["pods"]),
    rule(["patch", "update"], [""], ["pods/status"]),
    rule(["create"], [""], ["pods/eviction"]),
    rule(READ, [""], ["configmaps", "secrets"]),
    rule(["get"], [""], ["persistentvolumeclaims", "persistentvolumes"]),
    rule(["get"], [""], ["endpoints"]),
    rule(["create", "get", "list", "watch"], ["certificates.k8s.io"], ["certificatesigningrequests"]),
    rule(["create", "delete", "get", "patch", "update"], ["coordination.k8s.io"], ["leases"]),
    rule(["get"], ["storage.k8s.io"], ["volumeattachments"]),
    rule(["create"], [""], ["serviceaccounts/token"]),
    rule(["get", "patch", "update"], [""], ["persistentvolumeclaims/status"]),
    rule(READ, ["storage.k8s.io"], ["csidrivers"]),
    rule(["create", "delete", "get", "patch", "update"], ["storage.k8s.io"], ["csinodes"]),
    rule(READ, ["node.k8s.io"], ["runtimeclasses"]),
    # kubenats additions
    rule(["delete"], [""], ["nodes"]),  # NodeRestriction limits it to the node's own Node
    rule(["create", "patch", "update"], ["events.k8s.io"], ["events"]),
    rule(READ, [""], ["endpoints"]),
    rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
    rule(["get"], [""], ["namespaces"]),
]

_CLUSTER_ROLES: list[tuple[str, list[Obj], dict[str, str]]] = [
    ("cluster-admin", [rule(["*"], ["*"], ["*"]), url_rule(["*"], ["*"])], {}),
    ("admin", _ADMIN + _EDIT + _VIEW, {}),
    ("edit", _EDIT + _VIEW, {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
    ("view", _VIEW, {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
    ("system:discovery", _DISCOVERY, {}),
    ("system:basic-user", _BASIC_USER, {}),
    ("system:public-info-viewer", _PUBLIC_INFO, {}),
    ("system:monitoring", _MONITORING, {}),
    ("system:auth-delegator", _AUTH_DELEGATOR, {}),
    ("system:kube-scheduler", _SCHEDULER, {}),
    ("system:kube-controller-manager", _CONTROLLER_MANAGER, {}),
    ("system:node-proxier", _NODE_PROXIER, {}),
    ("system:node", _NODE, {}),
]

# binding name (= ClusterRole name) -> subjects as (kind, name)
_CLUSTER_ROLE_BINDINGS: list[tuple[str, list[tuple[str, str]]]] = [
    ("cluster-admin", [("Group", MASTERS)]),
    ("system:discovery", [("Group", AUTHENTICATED)]),
    ("system:basic-user", [("Group", AUTHENTICATED)]),
    ("system:public-info-viewer", [("Group", AUTHENTICATED), ("Group", UNAUTHENTICATED)]),
    ("system:monitoring", [("Group", "system:monitoring")]),
    ("system:kube-scheduler", [("User", SCHEDULER_USER)]),
    ("system:kube-controller-manager", [("User", CONTROLLER_MANAGER_USER)]),
    ("system:node-proxier", [("User", KUBE_PROXY_USER), ("Group", "system:node-proxier")]),
    ("system:node", []),  # as upstream: no subjects; kubelets are authorized by the Node authorizer
]

_AUTH_READER = "extension-apiserver-authentication-reader"


def _subject(kind: str, name: str) -> Obj:
    return {"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": name}


def _role_ref(kind: str, name: str) -> Obj:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}


def cluster_roles() -> list[Obj]:
    return [{"apiVersion": API_VERSION, "kind": "ClusterRole", "metadata": _meta(name, labels=labels),
             "rules": copy.deepcopy(rules)} for name, rules, labels in _CLUSTER_ROLES]


def cluster_role_bindings() -> list[Obj]:
    out: list[Obj] = []
    for name, subjects in _CLUSTER_ROLE_BINDINGS:
        crb: Obj = {"apiVersion": API_VERSION, "kind": "ClusterRoleBinding", "metadata": _meta(name),
                    "roleRef": _role_ref("ClusterRole", name)}
        if subjects:
            crb["subjects"] = [_subject(k, n) for k, n in subjects]
        out.append(crb)
    return out


def roles() -> list[Obj]:
    """Namespaced defaults: kube-system's reader of the extension-apiserver-authentication ConfigMap."""
    return [{"apiVersion": API_VERSION, "kind": "Role", "metadata": _meta(_AUTH_READER, "kube-system"),
             "rules": [rule(READ, [""], ["configmaps"], ["extension-apiserver-authentication"])]}]


def role_bindings() -> list[Obj]:
    return [{"apiVersion": API_VERSION, "kind": "RoleBinding",
             "metadata": _meta("system::" + _AUTH_READER, "kube-system"),
             "roleRef": _role_ref("Role", _AUTH_READER),
             "subjects": [_subject("User", CONTROLLER_MANAGER_USER), _subject("User", SCHEDULER_USER)]}]


def node_rules() -> list[Obj]:
    """The rules of `system:node` (upstream's bootstrappolicy.NodeRules)."""
    return copy.deepcopy(_NODE)


def cluster_role_rules(name: str) -> list[Obj]:
    """The rules of one bootstrap ClusterRole (KeyError for an unknown name)."""
    for n, rules, _ in _CLUSTER_ROLES:
        if n == name:
            return copy.deepcopy(rules)
    raise KeyError(name)
