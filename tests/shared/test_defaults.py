"""Defaulting compared with what a Kubernetes apiserver stores for the same input."""

import copy
from typing import Any

import pytest

from shared.api.defaults import apply_defaults, apply_job_selector, pod_qos_class

CONTAINER_DEFAULTS = {
    "imagePullPolicy": "IfNotPresent",
    "resources": {},
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}
TEMPLATE_SPEC_DEFAULTS = {
    "dnsPolicy": "ClusterFirst",
    "restartPolicy": "Always",
    "schedulerName": "default-scheduler",
    "securityContext": {},
    "terminationGracePeriodSeconds": 30,
}
ADMISSION_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]


def defaulted(resource: str, obj: dict[str, Any], create: bool = True) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    apply_defaults(resource, out, create=create)
    return out


def test_pod_defaults_match_kubernetes() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "containers": [{
                "name": "web",
                "image": "nginx:1.25",
                "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "0.5", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"port": 80}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            }],
            "volumes": [{"name": "cache"}, {"name": "cfg", "configMap": {"name": "cfg"}},
                        {"name": "tls", "secret": {"secretName": "tls"}}],
        },
    }
    assert defaulted("pods", pod) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "containers": [{
                "name": "web",
                "image": "nginx:1.25",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                              "requests": {"cpu": "500m", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            }],
            "volumes": [{"name": "cache", "emptyDir": {}},
                        {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}},
                        {"name": "tls", "secret": {"secretName": "tls", "defaultMode": 420}}],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": ADMISSION_TOLERATIONS,
        },
        "status": {"phase": "Pending", "qosClass": "Guaranteed"},
    }


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.25", "IfNotPresent"),
    ("registry.local:5000/team/app", "Always"),
    ("registry.local:5000/team/app:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    pod = defaulted("pods", {"spec": {"containers": [{"name": "c", "image": image}]}})
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


@pytest.mark.parametrize(("resources", "qos"), [
    ([{}], "BestEffort"),
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ([{"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}], "BestEffort"),
    ([{"limits": {"cpu": "1000m", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1024Mi"}}], "Guaranteed"),
])
def test_qos_class(resources: list[dict[str, Any]], qos: str) -> None:
    containers = [{"name": f"c{i}", "image": "x", "resources": r} for i, r in enumerate(resources)]
    pod = defaulted("pods", {"spec": {"containers": containers}})
    assert pod["status"]["qosClass"] == qos
    assert pod_qos_class(pod) == qos


def test_pod_admission_respects_existing_tolerations_and_priority_class() -> None:
    pod = defaulted("pods", {"spec": {
        "priorityClassName": "system-node-critical",
        "tolerations": [{"operator": "Exists"}],
        "containers": [{"name": "c", "image": "x"}],
    }})
    assert pod["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert pod["spec"]["priority"] == 2000001000


def test_pod_create_resets_status_but_update_keeps_it() -> None:
    pod = {"spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Running", "podIP": "10.0.0.5"}}
    assert defaulted("pods", pod)["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    updated = defaulted("pods", pod, create=False)
    assert updated["status"] == {"phase": "Running", "podIP": "10.0.0.5", "qosClass": "BestEffort"}
    assert "tolerations" not in updated["spec"]


def test_pod_host_network_ports_and_negative_grace_period() -> None:
    pod = defaulted("pods", {"spec": {"hostNetwork": True, "terminationGracePeriodSeconds": -5,
                                      "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 53}]}]}})
    assert pod["spec"]["containers"][0]["ports"] == [{"containerPort": 53, "hostPort": 53, "protocol": "TCP"}]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 1


def test_deployment_defaults_match_kubernetes() -> None:
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}},
        },
    }
    assert defaulted("deployments", deploy) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "progressDeadlineSeconds": 600,
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                # no enableServiceLinks/tolerations/priority: those are pod-only
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25", **CONTAINER_DEFAULTS}],
                         **TEMPLATE_SPEC_DEFAULTS},
            },
        },
        "status": {},
    }


def test_recreate_deployment_gets_no_rolling_update() -> None:
    deploy = defaulted("deployments", {"spec": {"strategy": {"type": "Recreate"}, "template": {"spec": {}}}})
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}


def test_service_defaults_match_kubernetes() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"name": "dns", "port": 53, "protocol": "UDP",
                                                                         "targetPort": "dns"}]}}
    assert defaulted("services", svc) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80},
                      {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}],
            "selector": {"app": "web"},
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    }


@pytest.mark.parametrize(("spec", "expected"), [
    ({"type": "NodePort", "ports": [{"port": 80}]},
     {"externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack"}),
    ({"type": "LoadBalancer", "ports": [{"port": 80}]},
     {"externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": True}),
    ({"clusterIP": "None", "ports": [{"port": 80}]},
     {"clusterIPs": ["None"], "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
    ({"clusterIP": "None", "selector": {"a": "b"}}, {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
    ({"clusterIP": "10.96.0.10"}, {"clusterIPs": ["10.96.0.10"]}),
    ({"sessionAffinity": "ClientIP"}, {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}),
])
def test_service_type_specific_defaults(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    out = defaulted("services", {"spec": spec})["spec"]
    assert {k: out.get(k) for k in expected} == expected


def test_external_name_service_gets_no_ip_fields() -> None:
    out = defaulted("services", {"spec": {"type": "ExternalName", "externalName": "db.example.com"}})["spec"]
    assert "ipFamilies" not in out and "ipFamilyPolicy" not in out and "internalTrafficPolicy" not in out


def test_job_defaults_and_selector_match_kubernetes() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "pi", "image": "perl:5.34"}]}}}}
    out = defaulted("jobs", job)
    apply_job_selector(out, "5f3c")
    labels = {"batch.kubernetes.io/controller-uid": "5f3c", "batch.kubernetes.io/job-name": "pi",
              "controller-uid": "5f3c", "job-name": "pi"}
    assert out == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "labels": labels},
        "spec": {
            "backoffLimit": 6,
            "completionMode": "NonIndexed",
            "completions": 1,
            "manualSelector": False,
            "parallelism": 1,
            "podReplacementPolicy": "TerminatingOrFailed",
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "5f3c"}},
            "suspend": False,
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "pi", "image": "perl:5.34", **CONTAINER_DEFAULTS}],
                                  **TEMPLATE_SPEC_DEFAULTS, "restartPolicy": "Never"}},
        },
        "status": {},
    }


def test_job_parallelism_only_and_manual_selector() -> None:
    out = defaulted("jobs", {"metadata": {"name": "j", "labels": {"team": "a"}},
                             "spec": {"parallelism": 3, "manualSelector": True, "selector": {"matchLabels": {"x": "y"}},
                                      "template": {"metadata": {"labels": {"x": "y"}}, "spec": {}}}})
    apply_job_selector(out, "uid-1")
    assert "completions" not in out["spec"] and out["spec"]["parallelism"] == 3
    assert out["spec"]["selector"] == {"matchLabels": {"x": "y"}}
    assert out["metadata"]["labels"] == {"team": "a"}


def test_namespace_defaults_match_kubernetes() -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    assert defaulted("namespaces", ns) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def test_namespace_update_does_not_restore_finalizer() -> None:
    ns = {"metadata": {"name": "a"}, "spec": {}, "status": {"phase": "Terminating"}}
    assert defaulted("namespaces", ns, create=False)["spec"] == {}
    assert defaulted("namespaces", ns, create=False)["status"] == {"phase": "Terminating"}


def test_daemonset_and_replicaset_defaults() -> None:
    ds = defaulted("daemonsets", {"metadata": {"name": "agent"}, "spec": {"template": {"spec": {}}}})
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10
    assert ds["metadata"]["annotations"] == {"deprecated.daemonset.template.generation": "1"}
    assert ds["status"] == {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                            "numberReady": 0}
    rs = defaulted("replicasets", {"spec": {"template": {"spec": {}}}})
    assert rs["spec"]["replicas"] == 1 and rs["status"] == {"replicas": 0}


def test_statefulset_defaults() -> None:
    sts = defaulted("statefulsets", {"spec": {
        "template": {"spec": {}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                  "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
    }})
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    assert spec["volumeClaimTemplates"][0] == {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "volumeMode": "Filesystem"},
        "status": {"phase": "Pending"},
    }


def test_cronjob_defaults_do_not_default_the_job_template_spec() -> None:
    cj = defaulted("cronjobs", {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
        "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    spec = cj["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"]) == ("Allow", False)
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    assert "backoffLimit" not in spec["jobTemplate"]["spec"]
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_secret_defaults_and_string_data() -> None:
    secret = defaulted("secrets", {"data": {"a": "YQ=="}, "stringData": {"b": "bee", "a": "override"}})
    assert secret == {"type": "Opaque", "data": {"a": "b3ZlcnJpZGU=", "b": "YmVl"}}


def test_rbac_event_endpoint_defaults() -> None:
    rb = defaulted("rolebindings", {"roleRef": {"kind": "Role", "name": "r"},
                                    "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]})
    assert rb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert [s.get("apiGroup") for s in rb["subjects"]] == ["rbac.authorization.k8s.io", None]
    event = defaulted("events", {"reason": "X"})
    assert event["eventTime"] is None and event["reportingComponent"] == "" and event["source"] == {}
    eps = defaulted("endpointslices", {"addressType": "IPv4", "ports": [{"port": 80}]})
    assert eps["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]


def test_node_defaults() -> None:
    node = defaulted("nodes", {"spec": {"podCIDR": "10.244.0.0/24"}, "status": {"capacity": {"cpu": "4", "memory": "8Gi"}}})
    assert node["spec"]["podCIDRs"] == ["10.244.0.0/24"]
    assert node["status"]["allocatable"] == {"cpu": "4", "memory": "8Gi"}


@pytest.mark.parametrize("resource", ["pods", "services", "deployments", "replicasets", "daemonsets", "statefulsets",
                                      "jobs", "cronjobs", "namespaces", "nodes", "secrets", "events", "endpoints",
                                      "endpointslices", "rolebindings", "configmaps", "leases", "unknown"])
def test_defaults_are_idempotent(resource: str) -> None:
    obj: dict[str, Any] = {"metadata": {"name": "x", "namespace": "default"},
                           "spec": {"template": {"metadata": {"labels": {"a": "b"}},
                                                 "spec": {"containers": [{"name": "c", "image": "x"}]}},
                                    "containers": [{"name": "c", "image": "x"}], "ports": [{"port": 80}]}}
    once = defaulted(resource, obj)
    assert defaulted(resource, once, create=False) == once
