"""Kubelet authorization: the Node authorizer and the NodeRestriction admission plugin.

Why this exists: a kubelet authenticates as `system:node:<name>` in group `system:nodes` and
must be able to read what its own pods need, and nothing of other nodes' pods; RBAC cannot
express "the secrets of the pods bound to me". Kubernetes solves it with a graph of pods and
what they reference (plugin/pkg/auth/authorizer/node) plus an admission plugin that checks the
objects a kubelet writes (plugin/pkg/admission/noderestriction). This module is both, pure:

- `NodeGraph` keeps, from pod events, which node each bound pod is on and which secrets,
  configmaps, persistentvolumeclaims and service account it references (podutil's
  VisitPodSecretNames / VisitPodConfigmapNames over all containers, imagePullSecrets and
  volumes, projected sources included). Mirror pods reference nothing, as upstream.
- `NodeAuthorizer.authorize` returns None for callers that are not nodes (RBAC decides) and a
  final Decision for nodes. Secrets and configmaps: get/list/watch of one named object a pod on
  the node uses (a list or watch without a name, i.e. without a `metadata.name` field selector,
  is refused); persistentvolumeclaims: get, and status update/patch, of used ones;
  serviceaccounts: only `token` create for used ones; leases: only in `kube-node-lease`, only the
  node's own name (create is checked by admission, which sees the body). Everything else is
  decided by upstream's static `system:node` rules (bootstrap_policy) plus what nodes get
  through `system:authenticated` in Kubernetes (discovery, basic-user, public-info-viewer).
  Pods and nodes follow Kubernetes 1.31 (AuthorizeNodeWithSelectors off): any pod or node may
  be read; writes are left to admission. Reasons are upstream's words.
- `admit` is NodeRestriction: the caller's own Node only (and only kubelet labels, no taint
  changes), mirror pods bound to itself and owned by its Node that reference no service
  account, secret, configmap or claim, status and eviction only of its own pods, deletes only
  of its own pods, its own lease. Messages are upstream's, word for word.

Difference from upstream: the authorizer's answer for a node is final (upstream says "no
opinion" and lets RBAC try, so bindings to `system:nodes` could add rights). PersistentVolumes,
VolumeAttachments, ResourceClaims and ResourceSlices are not in the graph, so nodes get none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from services.apiserver import bootstrap_policy
from services.apiserver.rbac import Attributes, Decision, forbidden_status_message, go_quote, rules_allow
from shared.errors import ApiError

Obj = dict[str, Any]

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
KINDS = ("secrets", "configmaps", "persistentvolumeclaims", "serviceaccounts")

# kubelet/pkg/apis/well_known_labels.go
_KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type", "kubernetes.io/os",
    "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
})
_KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
_NODE_RESTRICTION_NAMESPACE = "node-restriction.kubernetes.io"


def node_name(user: str, groups: tuple[str, ...]) -> str | None:
    """NodeIdentity: the node's name for `system:node:<n>` in `system:nodes`, "" when <n> is
    empty (a node, but not one we can name), None for every other caller."""
    if not user.startswith(NODE_USER_PREFIX) or NODES_GROUP not in groups:
        return None
    return user[len(NODE_USER_PREFIX):]


# ---------------------------------------------------------------- what a pod references (podutil)


def _d(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from _l(spec.get(key))


def _name(value: Any, key: str = "name") -> str:
    return str(_d(value).get(key) or "")


_SECRET_REF_VOLUMES = ("cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "iscsi", "storageos")


def pod_secret_names(pod: Obj) -> set[str]:
    """VisitPodSecretNames over all containers."""
    spec = _d(pod.get("spec"))
    names = {_name(r) for r in _l(spec.get("imagePullSecrets"))}
    for c in _containers(spec):
        names |= {_name(e.get("secretRef")) for e in _l(c.get("envFrom"))}
        names |= {_name(_d(e.get("valueFrom")).get("secretKeyRef")) for e in _l(c.get("env"))}
    for v in _l(spec.get("volumes")):
        names.add(_name(v.get("azureFile"), "secretName"))
        names.add(_name(v.get("secret"), "secretName"))
        names.add(_name(_d(v.get("csi")).get("nodePublishSecretRef")))
        names |= {_name(_d(v.get(k)).get("secretRef")) for k in _SECRET_REF_VOLUMES}
        names |= {_name(s.get("secret")) for s in _l(_d(v.get("projected")).get("sources"))}
    names.discard("")
    return names


def pod_configmap_names(pod: Obj) -> set[str]:
    """VisitPodConfigmapNames over all containers."""
    spec = _d(pod.get("spec"))
    names: set[str] = set()
    for c in _containers(spec):
        names |= {_name(e.get("configMapRef")) for e in _l(c.get("envFrom"))}
        names |= {_name(_d(e.get("valueFrom")).get("configMapKeyRef")) for e in _l(c.get("env"))}
    for v in _l(spec.get("volumes")):
        names.add(_name(v.get("configMap")))
        names |= {_name(s.get("configMap")) for s in _l(_d(v.get("projected")).get("sources"))}
    names.discard("")
    return names


def pod_claim_names(pod: Obj) -> set[str]:
    """PersistentVolumeClaims of the pod's volumes, generic ephemeral volumes' `<pod>-<volume>` included."""
    spec, pod_name = _d(pod.get("spec")), _name(pod.get("metadata"))
    names: set[str] = set()
    for v in _l(spec.get("volumes")):
        if isinstance(v.get("persistentVolumeClaim"), dict):
            names.add(_name(v["persistentVolumeClaim"], "claimName"))
        elif isinstance(v.get("ephemeral"), dict):
            names.add(f"{pod_name}-{_name(v)}")
    names.discard("")
    return names


def _service_account(pod: Obj) -> str:
    spec = _d(pod.get("spec"))
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "")


def pod_references(pod: Obj) -> frozenset[tuple[str, str]]:
    """(kind, name) of everything the node running this pod may read for it; none for mirror pods."""
    if MIRROR_POD_ANNOTATION in _d(_d(pod.get("metadata")).get("annotations")):
        return frozenset()
    refs = {("secrets", n) for n in pod_secret_names(pod)} | {("configmaps", n) for n in pod_configmap_names(pod)}
    refs |= {("persistentvolumeclaims", n) for n in pod_claim_names(pod)}
    if sa := _service_account(pod):
        refs.add(("serviceaccounts", sa))
    return frozenset(refs)


# ---------------------------------------------------------------- the graph


@dataclass(frozen=True)
class _Bound:
    uid: str
    node: str
    refs: frozenset[tuple[str, str]]


class NodeGraph:
    """Which pods are bound to which node and which secrets/configmaps/PVCs/serviceaccounts each uses."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], _Bound] = {}  # (namespace, name) -> binding
        self._uses: dict[tuple[str, str, str], dict[str, int]] = {}  # (kind, ns, name) -> node -> pod count

    def _count(self, ns: str, bound: _Bound, delta: int) -> None:
        for kind, name in bound.refs:
            nodes = self._uses.setdefault((kind, ns, name), {})
            nodes[bound.node] = nodes.get(bound.node, 0) + delta
            if nodes[bound.node] <= 0:
                del nodes[bound.node]
            if not nodes:
                del self._uses[(kind, ns, name)]

    def _remove(self, key: tuple[str, str]) -> None:
        bound = self._pods.pop(key, None)
        if bound is not None:
            self._count(key[0], bound, -1)

    def replace_pods(self, pods: Iterable[Obj]) -> None:
        """Start over from a full LIST of pods."""
        self._pods.clear()
        self._uses.clear()
        for pod in pods:
            self.apply_pod("ADDED", pod)

    def apply_pod(self, event_type: str, pod: Obj) -> None:
        """One pod watch event. Unbound pods are not in the graph; DELETED forgets the pod (only
        when the uid matches what is stored, so a late event of an older pod cannot drop a new one)."""
        meta = _d(pod.get("metadata"))
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        uid = str(meta.get("uid") or "")
        if event_type == "DELETED":
            current = self._pods.get(key)
            if current is not None and (not uid or not current.uid or current.uid == uid):
                self._remove(key)
            return
        if event_type not in ("ADDED", "MODIFIED"):
            return
        node = str(_d(pod.get("spec")).get("nodeName") or "")
        self._remove(key)
        if node and key[1]:
            bound = _Bound(uid, node, pod_references(pod))
            self._pods[key] = bound
            self._count(key[0], bound, +1)

    def node_uses(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """Does a pod bound to `node` reference this object? kind "pods": is the pod bound to `node`?"""
        if kind == "pods":
            bound = self._pods.get((namespace, name))
            return bound is not None and bound.node == node
        return self._uses.get((kind, namespace, name), {}).get(node, 0) > 0

    def pod_node(self, namespace: str, name: str) -> str | None:
        bound = self._pods.get((namespace, name))
        return bound.node if bound else None


# ---------------------------------------------------------------- the authorizer


def static_node_rules() -> list[Obj]:
    """system:node's rules plus those every authenticated caller has in Kubernetes."""
    extra = ("system:discovery", "system:basic-user", "system:public-info-viewer")
    return bootstrap_policy.node_rules() + [r for n in extra for r in bootstrap_policy.cluster_role_rules(n)]


def _deny(reason: str = "") -> Decision:
    return Decision(False, reason)


ALLOW = Decision(True)


class NodeAuthorizer:
    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph
        self.rules = static_node_rules()

    def authorize(self, a: Attributes) -> Decision | None:
        node = node_name(a.user, a.groups)
        if node is None:
            return None
        if not node:
            return _deny(f"unknown node for user {go_quote(a.user)}")
        if a.resource_request and a.api_group == "":
            if a.resource in ("secrets", "configmaps"):
                return self._read_namespaced(node, a)
            if a.resource == "persistentvolumeclaims":
                return self._status_update(node, a) if a.subresource == "status" else self._get(node, a)
            if a.resource == "persistentvolumes":
                return self._get(node, a)
            if a.resource == "serviceaccounts":
                return self._create_token(node, a)
        if a.resource_request and a.api_group == "coordination.k8s.io" and a.resource == "leases":
            return self._lease(node, a)
        return ALLOW if rules_allow(a, self.rules) else _deny()

    def _related(self, node: str, a: Attributes) -> Decision:
        if not a.name:
            return _deny("No Object name found")
        if not self.graph.node_uses(node, a.resource, a.namespace, a.name):
            return _deny(f"no relationship found between node '{node}' and this object")
        return ALLOW

    def _read_namespaced(self, node: str, a: Attributes) -> Decision:
        if a.verb not in ("get", "list", "watch"):
            return _deny("can only read resources of this type")
        if a.subresource:
            return _deny("cannot read subresource")
        if not a.namespace:
            return _deny("can only read namespaced object of this type")
        return self._related(node, a)

    def _get(self, node: str, a: Attributes) -> Decision:
        if a.verb != "get":
            return _deny("can only get individual resources of this type")
        if a.subresource:
            return _deny("cannot get subresource")
        return self._related(node, a)

    def _status_update(self, node: str, a: Attributes) -> Decision:
        if a.verb not in ("update", "patch"):
            return _deny("can only get/update/patch this type")
        return self._related(node, a)

    def _create_token(self, node: str, a: Attributes) -> Decision:
        if a.verb != "create" or not a.name:
            return _deny("can only create tokens for individual service accounts")
        if a.subresource != "token":
            return _deny("can only create token subresource of serviceaccount")
        return self._related(node, a)

    def _lease(self, node: str, a: Attributes) -> Decision:
        if a.verb not in ("get", "create", "update", "patch", "delete"):
            return _deny("can only get, create, update, patch, or delete a node lease")
        if a.namespace != NODE_LEASE_NAMESPACE:
            return _deny(f"can only access leases in the {go_quote(NODE_LEASE_NAMESPACE)} system namespace")
        if a.verb != "create" and a.name != node:
            return _deny("can only access node lease with the same name as the requesting node")
        return ALLOW


# ---------------------------------------------------------------- NodeRestriction admission


_OPERATIONS = {"create": "CREATE", "update": "UPDATE", "patch": "UPDATE", "delete": "DELETE",
               "deletecollection": "DELETE"}


def _obj_name(obj: Obj | None) -> str:
    return _name((obj or {}).get("metadata"))


def _node_of(pod: Obj | None) -> str:
    return str(_d(_d(pod).get("spec")).get("nodeName") or "")


def admit(a: Attributes, obj: Obj | None, old: Obj | None, *, node_uid: str | None = None) -> str | None:
    """NodeRestriction for node identities: None when allowed, else the Forbidden error's text.

    `obj` is the new object as it will be stored (after patch and status merge) for create and
    update, the Eviction for pods/eviction, the TokenRequest for serviceaccounts/token; `old`
    is the stored object for update and delete, and the pod being evicted (pods/eviction) or
    the pod a token is bound to (serviceaccounts/token). A missing `old` on delete or eviction
    is left to the storage layer's 404. `node_uid`, when given, must be the uid of the caller's
    Node, and a mirror pod's owner reference must carry it. Wrap the text with `admission_error`.
    """
    node = node_name(a.user, a.groups)
    if node is None or not a.resource_request:
        return None
    if not node:
        return f"could not determine node from user {go_quote(a.user)}"
    op = _OPERATIONS.get(a.verb)
    if op is None:
        return None
    group_resource = (a.api_group, a.resource)
    if group_resource == ("", "pods"):
        if a.subresource == "":
            return _admit_pod(node, op, obj, old, node_uid)
        if a.subresource == "status":
            return _admit_pod_status(node, op, obj, old)
        if a.subresource == "eviction":
            return _admit_eviction(node, op, a, obj, old)
        return f"unexpected pod subresource {go_quote(a.subresource)}, only 'status' and 'eviction' are allowed"
    if group_resource == ("", "nodes"):
        return _admit_node(node, op, a, obj, old)
    if group_resource == ("", "persistentvolumeclaims"):
        return _admit_pvc_status(node, op, obj, old) if a.subresource == "status" else "may only update PVC status"
    if group_resource == ("", "serviceaccounts"):
        return _admit_token(node, op, a, obj, old)
    if group_resource == ("coordination.k8s.io", "leases"):
        if a.namespace != NODE_LEASE_NAMESPACE:
            return f"can only access leases in the {go_quote(NODE_LEASE_NAMESPACE)} system namespace"
        name = _obj_name(obj) if op == "CREATE" else a.name
        return None if name == node else "can only access node lease with the same name as the requesting node"
    return None


def _admit_pod(node: str, op: str, pod: Obj | None, old: Obj | None, node_uid: str | None) -> str | None:
    q = go_quote(node)
    if op == "DELETE":
        if old is not None and _node_of(old) != node:
            return f"node {q} can only delete pods with spec.nodeName set to itself"
        return None
    if op != "CREATE":
        return f"unexpected operation {go_quote(op)}, node {q} can only create and delete mirror pods"
    if pod is None:
        return "unexpected type <nil>"
    meta = _d(pod.get("metadata"))
    if MIRROR_POD_ANNOTATION not in _d(meta.get("annotations")):
        return f"pod does not have {go_quote(MIRROR_POD_ANNOTATION)} annotation, node {q} can only create mirror pods"
    if _node_of(pod) != node:
        return f"node {q} can only create pods with spec.nodeName set to itself"
    owners = _l(meta.get("ownerReferences"))
    if len(owners) > 1:
        return f"node {q} can only create pods with a single owner reference set to itself"
    if not owners:
        return f"node {q} can only create pods with an owner reference set to itself"
    owner = owners[0]
    if owner.get("apiVersion") != "v1" or owner.get("kind") != "Node" or owner.get("name") != node:
        return f"node {q} can only create pods with an owner reference set to itself"
    if owner.get("controller") is not True:
        return f"node {q} can only create pods with a controller owner reference set to itself"
    if owner.get("blockOwnerDeletion") is True:
        return f"node {q} must not set blockOwnerDeletion on an owner reference"
    if node_uid is not None and str(owner.get("uid") or "") != node_uid:
        return f"node {node} UID mismatch: expected {owner.get('uid') or ''} got {node_uid}"
    if _service_account(pod):
        return f"node {q} can not create pods that reference a service account"
    if pod_secret_names(pod):
        return f"node {q} can not create pods that reference secrets"
    if pod_configmap_names(pod):
        return f"node {q} can not create pods that reference configmaps"
    for v in _l(_d(pod.get("spec")).get("volumes")):
        if any("clusterTrustBundle" in s for s in _l(_d(v.get("projected")).get("sources"))):
            return f"node {q} can not create pods that reference clustertrustbundles"
    if any(isinstance(v.get("persistentVolumeClaim"), dict) for v in _l(_d(pod.get("spec")).get("volumes"))):
        return f"node {q} can not create pods that reference persistentvolumeclaims"
    return None


def _claim_statuses(pod: Obj) -> list[tuple[str, Any]]:
    return [(str(s.get("name") or ""), s.get("resourceClaimName"))
            for s in _l(_d(pod.get("status")).get("resourceClaimStatuses"))]


def _admit_pod_status(node: str, op: str, pod: Obj | None, old: Obj | None) -> str | None:
    if op != "UPDATE":
        return f"unexpected operation {go_quote(op)}"
    if old is None or pod is None:
        return "unexpected type <nil>"
    if _node_of(old) != node:
        return f"node {go_quote(node)} can only update pod status for pods with spec.nodeName set to itself"
    if (_d(_d(old.get("metadata")).get("labels"))) != _d(_d(pod.get("metadata")).get("labels")):
        return f"node {go_quote(node)} cannot update labels through pod status"
    if _claim_statuses(old) != _claim_statuses(pod):
        return f"node {go_quote(node)} cannot update resource claim statues"  # sic, upstream's typo
    return None


def _admit_eviction(node: str, op: str, a: Attributes, eviction: Obj | None, pod: Obj | None) -> str | None:
    if op != "CREATE":
        return f"unexpected operation {op}"
    if not (a.name or _obj_name(eviction)):
        return "could not determine pod from request data"
    if pod is not None and _node_of(pod) != node:
        return f"node {node} can only evict pods with spec.nodeName set to itself"
    return None


def _label_namespace(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else ""


def _in_namespace(ns: str, suffix: str) -> bool:
    return ns == suffix or ns.endswith("." + suffix)


def is_kubelet_label(key: str) -> bool:
    ns = _label_namespace(key)
    return key in _KUBELET_LABELS or any(_in_namespace(ns, allowed) for allowed in _KUBELET_LABEL_NAMESPACES)


def forbidden_labels(new: Obj | None, old: Obj | None) -> list[str]:
    """Added, removed or changed label keys a kubelet may not set on its Node, sorted."""
    a, b = _d(_d(_d(new).get("metadata")).get("labels")), _d(_d(_d(old).get("metadata")).get("labels"))
    modified = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k) or (k in a) != (k in b)}
    out = set()
    for key in modified:
        ns = _label_namespace(key)
        if _in_namespace(ns, _NODE_RESTRICTION_NAMESPACE):
            out.add(key)
        kubernetes = _in_namespace(ns, "kubernetes.io") or _in_namespace(ns, "k8s.io")
        if kubernetes and not is_kubelet_label(key):
            out.add(key)
    return sorted(out)


def _admit_node(node: str, op: str, a: Attributes, new: Obj | None, old: Obj | None) -> str | None:
    requested = a.name or (_obj_name(new) if op == "CREATE" else "")
    if requested != node:
        return f"node {go_quote(node)} is not allowed to modify node {go_quote(requested)}"
    if op == "CREATE":
        if _d(_d(new).get("spec")).get("configSource") is not None:
            return f"node {go_quote(node)} is not allowed to create pods with a non-nil configSource"  # sic
        if labels := forbidden_labels(new, None):
            return f"node {go_quote(node)} is not allowed to set the following labels: {', '.join(labels)}"
    if op == "UPDATE":
        spec, old_spec = _d(_d(new).get("spec")), _d(_d(old).get("spec"))
        source = spec.get("configSource")
        if source is not None and source != old_spec.get("configSource"):
            return f"node {go_quote(node)} is not allowed to update configSource to a new non-nil configSource"
        if (spec.get("taints") or []) != (old_spec.get("taints") or []):
            return f"node {go_quote(node)} is not allowed to modify taints"
        if labels := forbidden_labels(new, old):
            return f"is not allowed to modify labels: {', '.join(labels)}"
    return None


def _pvc_comparable(pvc: Obj) -> Obj:
    out = {k: v for k, v in pvc.items() if k != "status"}
    out["metadata"] = {k: v for k, v in _d(pvc.get("metadata")).items() if k not in ("resourceVersion", "managedFields")}
    out["status"] = {k: v for k, v in _d(pvc.get("status")).items() if k not in ("capacity", "conditions")}
    return out


def _admit_pvc_status(node: str, op: str, new: Obj | None, old: Obj | None) -> str | None:
    if op != "UPDATE":
        return f"unexpected operation {go_quote(op)}"
    a, b = _pvc_comparable(_d(old)), _pvc_comparable(_d(new))
    if a != b:
        changed = sorted(f"{part}.{k}" for part in ("metadata", "spec", "status")
                         for k in _d(a.get(part)).keys() | _d(b.get(part)).keys()
                         if _d(a.get(part)).get(k) != _d(b.get(part)).get(k))
        return (f"node {go_quote(node)} is not allowed to update fields other than status.capacity and "
                f"status.conditions: {', '.join(changed)}")
    return None


def _admit_token(node: str, op: str, a: Attributes, request: Obj | None, pod: Obj | None) -> str | None:
    if op != "CREATE" or a.subresource != "token":
        return None
    ref = _d(_d(_d(request).get("spec")).get("boundObjectRef"))
    if not ref or ref.get("apiVersion") != "v1" or ref.get("kind") != "Pod" or not ref.get("name"):
        return "node requested token not bound to a pod"
    if not ref.get("uid"):
        return "node requested token with a pod binding without a uid"
    if pod is None:
        return None
    if str(_d(pod.get("metadata")).get("uid") or "") != str(ref["uid"]):
        return (f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                "The object might have been deleted and then recreated")
    if _node_of(pod) != node:
        return "node requested token bound to a pod scheduled on a different node"
    return None


def admission_error(a: Attributes, obj: Obj | None, reason: str) -> ApiError:
    """The 403 `admission.NewForbidden` makes of `admit`'s text: `pods "x" is forbidden: <reason>`."""
    name = a.name
    if not name:
        meta = _d(_d(obj).get("metadata"))
        name = str(meta.get("name") or meta.get("generateName") or "") if obj is not None else ""
        name = name or "Unknown"
    return ApiError(403, "Forbidden", forbidden_status_message(a.api_group, a.resource, name, reason),
                    name=name, group=a.api_group, kind=a.resource or None)
