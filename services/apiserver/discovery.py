"""Discovery documents: `/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`, `/version`.

kubectl and client-go find every resource, short name and subresource here before they do
anything else. Everything is derived from the resource table in `shared.api.resources`.

No `autoscaling` group is listed: kubenats serves no HorizontalPodAutoscalers, and client-go
treats a group-version with an empty resource list as a discovery failure ("received empty
response for: autoscaling/v1"). The `deployments/scale` entry names its `autoscaling/v1` `Scale`
kind itself, which is all the scale client needs.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from shared.api.resources import ALL_VERBS, GROUP_VERSIONS, RESOURCES

SUB_VERBS: dict[str, tuple[str, ...]] = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "binding": ("create",),
    "eviction": ("create",),
    "log": ("get",),
    "exec": ("create", "get"),
    "finalize": ("update",),
}
VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-kubenats",
    "gitCommit": "kubenats",
    "gitTreeState": "clean",
    "buildDate": "2026-11-26T00:00:00Z",
    "goVersion": "python3",
    "compiler": "cpython",
    "platform": "linux/amd64",
}


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """apiserver's discovery.StorageVersionHash: 8 bytes of sha256("group/version/kind"), base64."""
    return base64.b64encode(hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()[:8]).decode()


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}


# Create-only review APIs: answered by the apiserver from the caller and the authorizers, never
# stored (see reviews.py): (group, version) -> [(plural, kind, namespaced)]
REVIEWS: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("authentication.k8s.io", "v1"): [("selfsubjectreviews", "SelfSubjectReview", False)],
    ("authorization.k8s.io", "v1"): [
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
        ("subjectaccessreviews", "SubjectAccessReview", False),
    ],
}


def api_groups() -> dict[str, Any]:
    groups = []
    for group, version in [*GROUP_VERSIONS.items(), *REVIEWS]:
        if not group:
            continue
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    entries: list[dict[str, Any]] = []
    for r in RESOURCES:
        if r.group != group or r.version != version:
            continue
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular_name,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs if r.verbs else ALL_VERBS),
            "storageVersionHash": storage_version_hash(r.group, r.version, r.kind),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for sub in r.subresources:
            se: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                                  "kind": r.kind, "verbs": list(SUB_VERBS.get(sub, ("get",)))}
            if sub == "scale":
                se.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "binding":
                se["kind"] = "Binding"
            elif sub == "eviction":
                se.update(group="policy", version="v1", kind="Eviction")
            elif sub in ("log", "exec"):
                se["kind"] = "Pod" if sub == "log" else "PodExecOptions"
            entries.append(se)
    for plural, kind, namespaced in REVIEWS.get((group, version), []):
        entries.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                        "verbs": ["create"]})
    if not entries:
        return None
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}
