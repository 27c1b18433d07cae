"""Authorization state of one apiserver: RBAC objects and the node graph, kept current.

`--authorization-mode=Node,RBAC` as kube-apiserver runs it: the Node authorizer decides every
request of a kubelet (`system:node:<name>` in `system:nodes`), RBAC decides the rest. Both
read in-process caches loaded from storage at startup and kept current from the apiserver's own
event stream (the watch hub's NATS subscription), and reloaded whenever the hub reports a gap.

At startup the bootstrap policy (cluster-admin, the component roles, discovery) is written to
storage as kube-apiserver does: created when missing, and reconciled while it carries the
`rbac.authorization.kubernetes.io/autoupdate: "true"` annotation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.api.resources import BY_PLURAL, Resource
from shared.errors import ApiError
from shared.log import event

from . import admission, bootstrap_policy
from .auth import Caller
from .node_authz import NodeAuthorizer, NodeGraph, node_name
from .node_authz import admit as node_admit
from .objects import Objects
from .rbac import Attributes, Decision, RbacAuthorizer, RbacIndex
from .watch import WatchHub

log = logging.getLogger("kubenats.apiserver.authz")

RBAC_GROUP = "rbac.authorization.k8s.io"
KINDS = {"roles": "Role", "clusterroles": "ClusterRole", "rolebindings": "RoleBinding",
         "clusterrolebindings": "ClusterRoleBinding"}
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
PODS = BY_PLURAL[("", "pods")]


def _res(plural: str) -> Resource:
    return BY_PLURAL[(RBAC_GROUP, plural)]


class Authorization:
    def __init__(self, objects: Objects, hub: WatchHub) -> None:
        self.objects = objects
        self.hub = hub
        self.index = RbacIndex()
        self.graph = NodeGraph()
        self.rbac = RbacAuthorizer(self.index)
        self.nodes = NodeAuthorizer(self.graph)

    # ---- decisions ------------------------------------------------------------------------------
    def authorize(self, a: Attributes) -> Decision:
        decision = self.nodes.authorize(a)
        if decision is not None:
            return decision
        return self.rbac.authorize(a)

    def admission_for(self, caller: Caller) -> admission.Checker | None:
        """NodeRestriction for kubelets; nobody else has object-level restrictions."""
        if not node_name(caller.user, caller.groups):
            return None

        def check(req: admission.Request) -> None:
            a = Attributes(user=caller.user, groups=caller.groups, verb=req.verb, resource_request=True,
                           api_group=req.resource.group, resource=req.resource.plural, subresource=req.subresource,
                           namespace=req.namespace, name=req.name)
            message = node_admit(a, req.obj, req.old)
            if message is not None:
                event(log, "admission_denied", user=caller.user, resource=req.resource.plural, name=req.name,
                      verb=req.verb, reason=message)
                raise admission.forbidden(req.resource, req.name, message)
        return check

    # ---- state ----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.bootstrap()
        await self.reload()
        for plural, kind in KINDS.items():
            self.hub.add_listener(_res(plural), self._rbac_listener(kind))
        self.hub.add_listener(PODS, self.graph.apply_pod)
        self.hub.add_gap_listener(self.reload)

    def _rbac_listener(self, kind: str) -> Callable[[str, dict[str, Any]], None]:
        def apply(etype: str, obj: dict[str, Any]) -> None:
            self.index.apply(kind, etype, obj)
        return apply

    async def reload(self) -> None:
        for plural, kind in KINDS.items():
            listing = await self.objects.list(_res(plural), "")
            self.index.replace(kind, listing.get("items") or [])
        pods = await self.objects.list(PODS, "")
        self.graph.replace_pods(pods.get("items") or [])
        event(log, "authorization_loaded", pods=len(pods.get("items") or []))

    async def bootstrap(self) -> None:
        """Create or reconcile the bootstrap policy objects."""
        wanted: list[tuple[str, dict[str, Any]]] = [
            *(("clusterroles", o) for o in bootstrap_policy.cluster_roles()),
            *(("clusterrolebindings", o) for o in bootstrap_policy.cluster_role_bindings()),
            *(("roles", o) for o in bootstrap_policy.roles()),
            *(("rolebindings", o) for o in bootstrap_policy.role_bindings()),
        ]
        created = updated = 0
        for plural, obj in wanted:
            res = _res(plural)
            meta = obj.get("metadata") or {}
            ns = str(meta.get("namespace") or "")
            name = str(meta.get("name") or "")
            try:
                await self.objects.create(res, ns, obj)
                created += 1
                continue
            except ApiError as e:
                if e.code != 409:
                    raise
            current = await self.objects.get(res, ns, name)
            if ((current.get("metadata") or {}).get("annotations") or {}).get(AUTOUPDATE) != "true":
                continue  # an administrator took it over
            body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
            if all(current.get(k) == v for k, v in body.items()):
                continue
            merged = {**current, **body}
            try:
                await self.objects.update(res, ns, name, merged)
            except ApiError as e:
                if e.code != 409:
                    raise
                continue  # another apiserver worker reconciled it meanwhile
            updated += 1
        event(log, "rbac_bootstrapped", created=created, updated=updated, total=len(wanted))
