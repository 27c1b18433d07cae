"""Tests of the generated Kubernetes API models (shared/api/models.py, from tools/gen_models.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from shared.api import models
from shared.api.models import KINDS, Deployment, Job, K8sModel, Node, Pod, Service

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web-7d4b9c8f6d-x2x9k",
        "generateName": "web-7d4b9c8f6d-",
        "namespace": "default",
        "uid": "3f1c6a0e-8a34-4c4e-9a55-1b2d3c4e5f60",
        "resourceVersion": "12345",
        "creationTimestamp": "2024-05-01T12:00:00Z",
        "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6d"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T11:59:00Z"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-7d4b9c8f6d",
                "uid": "a1b2c3d4-0000-1111-2222-333344445555",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    },
    "spec": {
        "containers": [
            {
                "name": "web",
                "image": "nginx:1.25",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "env": [
                    {"name": "MODE", "value": "prod"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {
                        "name": "MEM_LIMIT",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                    },
                ],
                "resources": {
                    "limits": {"cpu": 1, "memory": "128Mi"},
                    "requests": {"cpu": "250m", "memory": "64Mi"},
                },
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                    "initialDelaySeconds": 5,
                    "periodSeconds": 10,
                },
                "livenessProbe": {"tcpSocket": {"port": 80}, "failureThreshold": 3},
                "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}},
                "volumeMounts": [
                    {"name": "cache", "mountPath": "/var/cache/nginx"},
                    {"name": "config", "mountPath": "/etc/nginx/conf.d", "readOnly": True},
                ],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": True,
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            },
            {
                "name": "sidecar",
                "image": "busybox:1.36",
                "command": ["sh", "-c", "tail -f /dev/null"],
                "resources": {"requests": {"cpu": 0.1, "memory": "16Mi"}},
            },
        ],
        "volumes": [
            {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}},
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "nodeName": "node-1",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "securityContext": {"fsGroup": 2000, "runAsUser": 1000},
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        },
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
        ],
        "schedulerName": "default-scheduler",
        "priority": 0,
    },
    "status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T12:00:10Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-05-01T12:00:00Z"},
        ],
        "hostIP": "10.0.0.11",
        "podIP": "10.244.1.7",
        "podIPs": [{"ip": "10.244.1.7"}],
        "startTime": "2024-05-01T12:00:01Z",
        "qosClass": "Burstable",
        "containerStatuses": [
            {
                "name": "web",
                "image": "docker.io/library/nginx:1.25",
                "imageID": "docker.io/library/nginx@sha256:abc",
                "containerID": "containerd://0123",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2024-05-01T12:00:05Z"}},
            }
        ],
    },
}

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "generation": 2},
    "spec": {
        "replicas": 3,
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}],
        },
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": {"app": "web", "tier": "frontend"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:1.25",
                        "ports": [{"containerPort": 80}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                    }
                ]
            },
        },
    },
    "status": {
        "observedGeneration": 2,
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
                "lastUpdateTime": "2024-05-01T12:00:10Z",
                "lastTransitionTime": "2024-05-01T12:00:10Z",
            }
        ],
    },
}

SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "type": "NodePort",
        "selector": {"app": "web"},
        "clusterIP": "10.96.12.34",
        "clusterIPs": ["10.96.12.34"],
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "sessionAffinity": "None",
        "ports": [
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http", "nodePort": 30080},
            {"name": "https", "protocol": "TCP", "port": 443, "targetPort": 8443},
        ],
    },
    "status": {"loadBalancer": {}},
}

NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "node-1",
        "labels": {"kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux"},
    },
    "spec": {
        "podCIDR": "10.244.1.0/24",
        "podCIDRs": ["10.244.1.0/24"],
        "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
    },
    "status": {
        "capacity": {"cpu": "4", "memory": "16331428Ki", "pods": "110", "ephemeral-storage": "100Gi"},
        "allocatable": {"cpu": "3800m", "memory": "15000Mi", "pods": 110},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2024-05-01T12:00:00Z",
                "lastTransitionTime": "2024-05-01T10:00:00Z",
            }
        ],
        "addresses": [
            {"type": "InternalIP", "address": "10.0.0.11"},
            {"type": "Hostname", "address": "node-1"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "m",
            "systemUUID": "s",
            "bootID": "b",
            "kernelVersion": "6.1.0",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "containerRuntimeVersion": "containerd://1.7.0",
            "kubeletVersion": "v1.30.0",
            "kubeProxyVersion": "v1.30.0",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "images": [{"names": ["docker.io/library/nginx:1.25"], "sizeBytes": 70000000}],
    },
}

JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "pi", "namespace": "default"},
    "spec": {
        "completions": 5,
        "parallelism": 2,
        "backoffLimit": 4,
        "activeDeadlineSeconds": 600,
        "ttlSecondsAfterFinished": 100,
        "completionMode": "Indexed",
        "podFailurePolicy": {
            "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
        },
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "pi",
                        "image": "perl:5.34",
                        "command": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"],
                    }
                ],
            }
        },
    },
    "status": {
        "active": 2,
        "succeeded": 1,
        "startTime": "2024-05-01T12:00:00Z",
        "completedIndexes": "0",
        "uncountedTerminatedPods": {},
        "ready": 2,
    },
}


@pytest.mark.parametrize(
    ("model", "obj"),
    [(Pod, POD), (Deployment, DEPLOYMENT), (Service, SERVICE), (Node, NODE), (Job, JOB)],
    ids=["Pod", "Deployment", "Service", "Node", "Job"],
)
def test_realistic_objects_round_trip(model: type[K8sModel], obj: dict[str, Any]) -> None:
    parsed = model.model_validate(obj)
    assert parsed.model_dump(by_alias=True, exclude_none=True) == obj
    # serialize_by_alias: a plain model_dump already uses the JSON names.
    assert parsed.model_dump(exclude_none=True) == obj
    assert KINDS[(obj["apiVersion"], obj["kind"])] is model


def test_fields_are_readable_by_python_name() -> None:
    pod = Pod.model_validate(POD)
    assert pod.status is not None and pod.status.pod_ip == "10.244.1.7"
    assert pod.spec is not None
    assert pod.spec.containers is not None
    handler = pod.spec.containers[0].lifecycle
    assert handler is not None and handler.pre_stop is not None and handler.pre_stop.exec is not None
    assert handler.pre_stop.exec.command == ["/bin/sh", "-c", "sleep 5"]


def _with(obj: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A deep copy of obj with the item at path set to value."""
    out = copy.deepcopy(obj)
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("model", "obj", "path"),
    [
        (Pod, POD, ("spec", "containers", 0, "imagee")),
        (Pod, POD, ("metadata", "lables")),
        (Pod, POD, ("spec", "volumes", 1, "emptyDir", "size")),
        (Pod, POD, ("status", "containerStatuses", 0, "state", "running", "since")),
        (Deployment, DEPLOYMENT, ("spec", "template", "spec", "containers", 0, "imagee")),
        (Deployment, DEPLOYMENT, ("specc",)),
        (Service, SERVICE, ("spec", "ports", 1, "targetport")),
    ],
)
def test_unknown_field_is_rejected_with_its_path(
    model: type[K8sModel], obj: dict[str, Any], path: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(_with(obj, path, "x"))
    errors = info.value.errors()
    assert [(e["loc"], e["type"]) for e in errors] == [(path, "extra_forbidden")]


def test_python_names_accepted_unless_by_name_is_false() -> None:
    # validate_by_name=True lets Python code build objects by attribute name; the apiserver
    # should decode request bodies with by_name=False, since Kubernetes rejects "node_name".
    body = {"spec": {"node_name": "node-1"}}
    pod = Pod.model_validate(body)
    assert pod.spec is not None and pod.spec.node_name == "node-1"
    with pytest.raises(ValidationError) as info:
        Pod.model_validate(body, by_name=False)
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [
        (("spec", "node_name"), "extra_forbidden")
    ]
    assert Pod.model_validate(POD, by_name=False).model_dump(exclude_none=True) == POD


REPLICAS = ("spec", "replicas")
CPU_LIMIT = ("spec", "template", "spec", "containers", 0, "resources", "limits", "cpu")
MAX_SURGE = ("spec", "strategy", "rollingUpdate", "maxSurge")
TARGET_PORT = ("spec", "ports", 0, "targetPort")
SIZE_LIMIT = ("spec", "volumes", 0, "emptyDir", "sizeLimit")
DIVISOR = ("spec", "containers", 0, "env", 2, "valueFrom", "resourceFieldRef", "divisor")
READ_ONLY = ("spec", "containers", 0, "volumeMounts", 1, "readOnly")
LABEL = ("metadata", "labels", "app")
TIMESTAMP = ("metadata", "creationTimestamp")


@pytest.mark.parametrize(
    ("model", "obj", "path", "value", "ok"),
    [
        (Deployment, DEPLOYMENT, REPLICAS, 3, True),
        (Deployment, DEPLOYMENT, REPLICAS, "3", False),
        (Deployment, DEPLOYMENT, REPLICAS, 3.0, False),
        (Deployment, DEPLOYMENT, REPLICAS, True, False),
        (Deployment, DEPLOYMENT, CPU_LIMIT, 1, True),
        (Deployment, DEPLOYMENT, CPU_LIMIT, 0.5, True),
        (Deployment, DEPLOYMENT, CPU_LIMIT, "500m", True),
        (Deployment, DEPLOYMENT, CPU_LIMIT, [1], False),
        (Deployment, DEPLOYMENT, CPU_LIMIT, True, False),
        (Deployment, DEPLOYMENT, MAX_SURGE, 1, True),
        (Deployment, DEPLOYMENT, MAX_SURGE, "25%", True),
        (Deployment, DEPLOYMENT, MAX_SURGE, 1.5, False),
        (Service, SERVICE, TARGET_PORT, 8080, True),
        (Service, SERVICE, TARGET_PORT, "http", True),
        (Service, SERVICE, TARGET_PORT, [1], False),
        (Service, SERVICE, TARGET_PORT, {"port": 1}, False),
        (Pod, POD, SIZE_LIMIT, "64Mi", True),
        (Pod, POD, SIZE_LIMIT, 1024, True),
        (Pod, POD, DIVISOR, 1, True),
        (Pod, POD, READ_ONLY, "true", False),
        (Pod, POD, LABEL, 1, False),
        (Pod, POD, TIMESTAMP, "2024-05-01T12:00:00.123456Z", True),
        (Pod, POD, TIMESTAMP, 1714564800, False),
    ],
)
def test_scalar_strictness(
    model: type[K8sModel], obj: dict[str, Any], path: tuple[str | int, ...], value: Any, ok: bool
) -> None:
    candidate = _with(obj, path, value)
    if ok:
        parsed = model.model_validate(candidate)
        dumped = parsed.model_dump(exclude_none=True)
        assert dumped == candidate
        target: Any = dumped
        for key in path:
            target = target[key]
        assert type(target) is type(value)  # kept as given: no str<->int coercion
    else:
        with pytest.raises(ValidationError) as info:
            model.model_validate(candidate)
        assert {e["loc"][: len(path)] for e in info.value.errors()} == {path}


@pytest.mark.parametrize(("key", "model"), sorted(KINDS.items()), ids=lambda v: str(v))
def test_kinds_have_type_meta_and_metadata(key: tuple[str, str], model: type[K8sModel]) -> None:
    aliases = {f.alias or name for name, f in model.model_fields.items()}
    assert {"apiVersion", "kind"} <= aliases
    # meta/v1 DeleteOptions is a request body, not an object: Kubernetes gives it no metadata.
    if key != ("v1", "DeleteOptions"):
        assert "metadata" in aliases
    api_version, kind = key
    assert model.__name__ == kind
    assert model.model_validate({"apiVersion": api_version, "kind": kind}).model_dump() == {
        "apiVersion": api_version,
        "kind": kind,
        **{alias: None for alias in aliases - {"apiVersion", "kind"}},
    }


def test_renamed_fields_keep_their_json_names() -> None:
    # Python keywords / BaseModel attributes get a trailing underscore; the alias stays.
    status = models.Status.model_validate({"metadata": {"continue": "token"}})
    assert status.metadata is not None and status.metadata.continue_ == "token"
    assert status.model_dump(exclude_none=True) == {"metadata": {"continue": "token"}}


def test_colliding_names_keep_their_prefix() -> None:
    core = models.CoreV1EndpointPort.model_validate({"port": 80, "appProtocol": "http"})
    discovery = models.DiscoveryV1EndpointPort.model_validate({"port": 80, "appProtocol": "http"})
    assert core.model_dump(exclude_none=True) == discovery.model_dump(exclude_none=True)
    assert not hasattr(models, "EndpointPort")
