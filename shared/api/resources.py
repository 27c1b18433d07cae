"""The table of API resources kubenats serves.

Every layer needs the same facts about a resource: its group and version, its kind, whether it
is namespaced, its short names, which subresources it has. The apiserver routes and discovery,
the event subjects and the clients all read them from this one table so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    """One REST resource (a collection of one kind)."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    singular: str = field(default="")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_label(self) -> str:
        """The group as it appears in event subjects: `core` for the core group."""
        return self.group or "core"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def key(self) -> str:
        """The `resource.group` form used in RBAC and error details (`deployments.apps`)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_ALL = ("all",)

RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",), (), ("status", "finalize")),
    Resource("", "v1", "nodes", "Node", False, ("no",), (), ("status",)),
    Resource("", "v1", "pods", "Pod", True, ("po",), _ALL, ("status", "binding", "log", "exec", "eviction")),
    Resource("", "v1", "services", "Service", True, ("svc",), _ALL, ("status",)),
    Resource("", "v1", "endpoints", "Endpoints", True, ("ep",), (), (), singular="endpoints"),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "events", "Event", True, ("ev",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",), _ALL, ("status", "scale")),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), _ALL, ("status", "scale")),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), _ALL, ("status",)),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), _ALL, ("status", "scale")),
    Resource("batch", "v1", "jobs", "Job", True, (), _ALL, ("status",)),
    Resource("batch", "v1", "cronjobs", "CronJob", True, ("cj",), _ALL, ("status",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
)

BY_PLURAL: dict[tuple[str, str], Resource] = {(r.group, r.plural): r for r in RESOURCES}
BY_KIND: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in RESOURCES}
BY_NAME: dict[str, Resource] = {}
for _r in RESOURCES:
    for _n in (_r.plural, _r.singular_name, *_r.short_names):
        BY_NAME.setdefault(_n, _r)

GROUP_VERSIONS: dict[str, str] = {}
for _r in RESOURCES:
    GROUP_VERSIONS.setdefault(_r.group, _r.version)


def lookup(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at `/apis/<group>/<version>/<plural>` (group "" = core), or None."""
    res = BY_PLURAL.get((group, plural))
    if res is None or res.version != version:
        return None
    return res


def by_name(name: str) -> Resource | None:
    """Resolve what a user types (`po`, `pods`, `deployments.apps`, `deploy`)."""
    if name in BY_NAME:
        return BY_NAME[name]
    plural, _, group = name.partition(".")
    return BY_PLURAL.get((group, plural))


def storage_key(res: Resource, namespace: str | None, name: str | None = None) -> str:
    """The etcd key (or key prefix when name is None) of an object: `/registry/<res>/<ns>/<name>`."""
    parts = ["/registry", res.key]
    if res.namespaced and namespace:
        parts.append(namespace)
    if name is not None:
        parts.append(name)
        return "/".join(parts)
    return "/".join(parts) + "/"


def parse_storage_key(key: str) -> tuple[Resource, str, str] | None:
    """Inverse of storage_key: (resource, namespace or "", name), or None for other keys."""
    parts = key.split("/")
    if len(parts) < 4 or parts[1] != "registry":
        return None
    plural, _, group = parts[2].partition(".")
    res = BY_PLURAL.get((group, plural))
    if res is None:
        return None
    if res.namespaced:
        if len(parts) != 5:
            return None
        return res, parts[3], parts[4]
    if len(parts) != 4:
        return None
    return res, "", parts[3]
