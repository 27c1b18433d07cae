"""The scheduler's pod transform keeps everything scheduling reads: every reader of a pod gives
the same answer for the full pod and the stripped one, and a whole scheduling cycle too."""

from __future__ import annotations

from typing import Any

import pytest

from services.scheduler import scheduler as schedmod
from services.scheduler.framework import NodeInfo, PodInfo, Profile, failure_message, pod_key
from services.scheduler.plugins import default_plugins
from services.scheduler.plugins.node_affinity import RequiredNodeAffinity, _preferred_terms
from services.scheduler.pod_transform import SHARED, strip_pod
from services.scheduler.queue import is_pod_updated, pod_priority
from tests.pod_transform_checks import assert_readers_agree, override

Obj = dict[str, Any]


def full_pod(name: str = "web-1", **over: Any) -> Obj:
    """A pod with every field the scheduler reads and plenty it does not."""
    pod: Obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "generateName": "web-", "namespace": "team-a", "uid": f"uid-{name}", "resourceVersion": "42",
            "creationTimestamp": "2026-01-15T10:00:00Z", "labels": {"app": "web", "tier": "front"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 500 + "}"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "uid": "cm-uid"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9", "uid": "rs-uid", "controller": True,
                 "blockOwnerDeletion": True}],
            "finalizers": ["example.com/keep"],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {
            "schedulerName": "default-scheduler", "priority": 1000, "preemptionPolicy": "Never",
            "nodeSelector": {"disk": "ssd"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In",
                                                                            "values": ["a"]}]}}]},
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 3, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}},
                                                      "topologyKey": "zone"}}]},
                "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname",
                     "namespaces": ["team-a", "team-b"]}]}},
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
                {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
            "overhead": {"cpu": "10m", "memory": "16Mi"},
            "initContainers": [
                {"name": "init", "image": "busybox", "command": ["sh", "-c", "true"],
                 "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}},
                {"name": "proxy", "image": "envoy", "restartPolicy": "Always",
                 "resources": {"requests": {"cpu": "50m"}, "limits": {"memory": "32Mi"}},
                 "ports": [{"containerPort": 15000, "hostPort": 15000, "protocol": "TCP"}]}],
            "containers": [
                {"name": "app", "image": "registry.example.com/web:1.2", "args": ["--port=8080"],
                 "env": [{"name": f"E{i}", "value": str(i)} for i in range(5)],
                 "ports": [{"name": "http", "containerPort": 8080},
                           {"containerPort": 9090, "hostPort": 9090, "hostIP": "10.0.0.1", "protocol": "UDP"}],
                 "resources": {"requests": {"cpu": "250m", "memory": "128Mi", "example.com/gpu": "1"},
                               "limits": {"cpu": "1", "ephemeral-storage": "1Gi"}},
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                 "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"},
                {"name": "sidecar", "image": "busybox"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30, "securityContext": {}, "enableServiceLinks": True,
        },
        "status": {
            "phase": "Pending", "qosClass": "Burstable",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/3 nodes are available: 3 Insufficient cpu.",
                            "lastTransitionTime": "2026-01-15T10:00:01Z", "lastProbeTime": None}],
        },
    }
    return override(pod, over)


VARIANTS: dict[str, Obj] = {
    "pending, everything": full_pod(),
    "bound and running": full_pod(spec__nodeName="node-1", status__phase="Running", status__conditions=[
        {"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
        status__podIP="10.1.0.7", status__containerStatuses=[{"name": "app", "ready": True, "restartCount": 2}]),
    "finished": full_pod(spec__nodeName="node-1", status__phase="Succeeded"),
    "deleting": full_pod(metadata__deletionTimestamp="2026-01-15T10:05:00Z"),
    "other scheduler, no owner": full_pod(spec__schedulerName="my-scheduler", metadata__ownerReferences=None),
    "bare": {"metadata": {"name": "bare", "namespace": "default", "uid": "u", "resourceVersion": "1"},
             "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    "pod-level resources": full_pod(spec__resources={"requests": {"cpu": "2"}, "limits": {"memory": "1Gi"}}),
}


def nodes() -> list[Obj]:
    def node(name: str, zone: str, cpu: str = "4", taints: list[Obj] | None = None) -> Obj:
        return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": zone, "disk": "ssd"}},
                "spec": {"taints": taints or []},
                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110", "example.com/gpu": "2",
                                           "ephemeral-storage": "10Gi"}}}
    return [node("node-1", "a"), node("node-2", "b", cpu="2"), node("node-3", "c"),
            node("node-4", "a", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])]


def describe(pod: Obj) -> dict[str, Any]:
    """Everything the scheduler derives from a pod."""
    pi = PodInfo(pod)
    req = RequiredNodeAffinity(pod)
    terms = [[(t.namespaces, t.topology_key, t.weight, repr(t.selector), repr(t.namespace_selector)) for t in group]
             for group in (pi.required_affinity_terms, pi.required_anti_affinity_terms, pi.preferred_affinity_terms,
                           pi.preferred_anti_affinity_terms)]
    return {
        "key": pi.key, "pod_key": pod_key(pod), "name": pi.name, "namespace": pi.namespace, "labels": pi.labels,
        "requests": pi.requests.as_tuple(), "non_zero": (pi.non_zero_cpu, pi.non_zero_memory),
        "host_ports": pi.host_ports, "controller_uid": pi.controller_uid, "tolerations": pi.tolerations,
        "affinity": (pi.has_affinity, pi.has_required_anti_affinity), "terms": terms,
        "node_selector": req.node_selector, "required_terms": req.terms, "preferred": _preferred_terms(pod),
        "priority": pod_priority(pod), "assigned": schedmod.is_assigned(pod), "terminal": schedmod._terminal(pod),
        "deleting": schedmod._deleting(pod), "ns_name": schedmod._ns_name(pod),
        "scheduled": schedmod._scheduled_condition(pod), "resources": schedmod._pod_resources(pod),
        "ref": schedmod._pod_ref(pod),
        "message": failure_message(Profile(*default_plugins()).schedule(pod, [NodeInfo(n) for n in nodes()]), 4,
                                   pod=pod),
    }


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_reader_answers_the_same_for_the_stripped_pod(name: str) -> None:
    assert_readers_agree(strip_pod, describe, VARIANTS[name], may_not_shrink=name == "bare")


def test_a_scheduling_cycle_is_the_same_with_stripped_pods() -> None:
    existing = [full_pod(f"old-{i}", spec__nodeName=f"node-{i % 3 + 1}", status__phase="Running",
                         metadata__labels={"app": "web" if i % 2 else "cache"}) for i in range(6)]

    def cycle(transform: Any) -> Any:
        infos = [NodeInfo(n) for n in nodes()]
        for p in existing:
            next(ni for ni in infos if ni.name == p["spec"]["nodeName"]).add_pod(transform(p))
        profile = Profile(*default_plugins(), percentage_of_nodes_to_score=100)
        out = []
        for pod in VARIANTS.values():
            r = profile.schedule(transform(pod), infos, {"team-a": {"env": "prod"}})
            out.append((r.node, r.failures, r.scores))
        return out

    assert cycle(strip_pod) == cycle(lambda p: p)


def test_queue_updates_count_the_changes_that_matter() -> None:
    old = full_pod()

    def changed(**over: Any) -> tuple[bool, bool]:
        new = full_pod(metadata__resourceVersion="43", **over)
        return is_pod_updated(old, new), is_pod_updated(strip_pod(old), strip_pod(new))

    for over in ({"metadata__labels": {"app": "web"}}, {"spec__tolerations": []}, {"spec__nodeSelector": {}},
                 {"spec__priority": 5}, {"metadata__deletionTimestamp": "2026-01-15T11:00:00Z"}):
        assert changed(**over) == (True, True), over
    # what no plugin reads no longer retries a parked pod
    assert changed(metadata__annotations={"note": "x"}) == (True, False)
    assert changed(status__phase="Running") == (False, False)


def test_repeated_values_are_shared_between_pods() -> None:
    a, b = strip_pod(full_pod("a")), strip_pod(full_pod("b"))
    assert a["spec"]["tolerations"] is b["spec"]["tolerations"]
    assert a["metadata"]["labels"] is b["metadata"]["labels"]
    assert a["spec"]["containers"] is b["spec"]["containers"]
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert len(SHARED) > 0


def test_the_scheduler_caches_stripped_pods() -> None:
    from services.scheduler.scheduler import Scheduler
    from shared.bus import Bus
    from shared.client import ApiClient

    s = Scheduler(ApiClient("http://127.0.0.1:1"), Bus("nats://127.0.0.1:1", "unused"))
    assert s.pods.transform is strip_pod and s.nodes.transform is None
    assert s.pods.resync_period == 1800.0
