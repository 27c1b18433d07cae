"""Valid example objects of every kind, used by the API tests."""

from __future__ import annotations

import base64
from typing import Any


def pod(name: str, image: str = "busybox:1.35", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "main", "image": image, "ports": [{"containerPort": 80}]}]}}


def template(labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.35"}]}}


def deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template({"app": name})}}


EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    # plural: (collection path prefix relative to the namespace, object)
    "pods": ("/api/v1", pod("x")),
    "services": ("/api/v1", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    "configmaps": ("/api/v1", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}}),
    "secrets": ("/api/v1", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"},
                            "data": {"pw": base64.b64encode(b"hunter2").decode()}}),
    "endpoints": ("/api/v1", {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "x"},
                              "subsets": [{"addresses": [{"ip": "127.0.0.5"}], "ports": [{"port": 80}]}]}),
    "events": ("/api/v1", {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "x"},
                           "involvedObject": {"kind": "Pod", "name": "p"},
                           "reason": "Tested", "message": "hello", "type": "Normal"}),
    "serviceaccounts": ("/api/v1", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}}),
    "deployments": ("/apis/apps/v1", deployment("x")),
    "replicasets": ("/apis/apps/v1", {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "x"},
                                      "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                                               "template": template({"a": "b"})}}),
    "daemonsets": ("/apis/apps/v1", {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
                                     "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": template({"a": "b"})}}),
    "jobs": ("/apis/batch/v1", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
                                "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                               "containers": [{"name": "c", "image": "busybox:1.35"}]}}}}),
    "leases": ("/apis/coordination.k8s.io/v1", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                                "metadata": {"name": "x"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 40}}),
    "endpointslices": ("/apis/discovery.k8s.io/v1", {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                                     "metadata": {"name": "x", "labels": {"kubernetes.io/service-name": "x"}},
                                                     "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.9"]}],
                                                     "ports": [{"port": 80, "protocol": "TCP"}]}),
}

CLUSTER_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "nodes": ("/api/v1", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "x", "labels": {"zone": "a"}},
                          "spec": {}, "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}),
    "namespaces": ("/api/v1", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
}
