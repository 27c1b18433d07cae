"""The controller manager's pod transform keeps everything the controllers read.

Every helper that reads a cached pod gives the same answer for the full pod and the stripped
one; the shared informers strip pods only; and, against the package's apiserver, a realistic
pod (created, bound and running as a hollow kubelet reports it) shrinks to a fraction of its
decoded size (`tests/controllers/pod_memory.py` measures it in full).
"""

from __future__ import annotations

from typing import Any

import pytest

from services.controllers import controller_utils as cu
from services.controllers import daemonset_util as dsu
from services.controllers import endpoint_utils as eu
from services.controllers import job_util as ju
from services.controllers.base import SharedInformers
from services.controllers.endpoints import compute_subsets, endpoint_address
from services.controllers.endpointslice_reconciler import desired_endpoints, endpoint_ports, pod_to_endpoint
from services.controllers.garbagecollector import _gc_relevant, deleting_dependents, owner_uids
from services.controllers.nodelifecycle import _ref
from services.controllers.pod_transform import SHARED, strip_pod
from services.controllers.replicaset import calculate_status, controller_uid_index, orphan_index
from services.controllers.taint_eviction import eviction_delay
from services.controllers.taints import pod_node_index, pod_tolerations, target_node_name
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from tests.controllers import pod_memory
from tests.pod_transform_checks import assert_readers_agree, override

Obj = dict[str, Any]
NOW = 1_768_471_200.0  # 2026-01-15T10:00:00Z


def full_pod(name: str = "web-1", **over: Any) -> Obj:
    """A pod with every field some controller reads and plenty none does."""
    pod: Obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "generateName": "web-", "namespace": "team-a", "uid": f"uid-{name}", "resourceVersion": "42",
            "creationTimestamp": "2026-01-15T09:00:00Z", "labels": {"app": "web", "controller-revision-hash": "abc"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 500 + "}",
                            "controller.kubernetes.io/pod-deletion-cost": "7",
                            "batch.kubernetes.io/job-completion-index": "3"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9", "uid": "rs-uid",
                                 "controller": True, "blockOwnerDeletion": True},
                                {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "uid": "cm-uid"}],
            "finalizers": ["batch.kubernetes.io/job-tracking", "foregroundDeletion"],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {
            "nodeName": "node-1", "hostname": "web-1", "subdomain": "web", "restartPolicy": "OnFailure",
            "schedulerName": "default-scheduler", "priority": 0, "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]}},
                "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 120}],
            "initContainers": [
                {"name": "init", "image": "busybox", "command": ["true"]},
                {"name": "proxy", "image": "envoy", "restartPolicy": "Always",
                 "ports": [{"name": "admin", "containerPort": 15000, "protocol": "TCP"}]}],
            "containers": [
                {"name": "app", "image": "registry.example.com/web:1.2", "args": ["--port=8080"],
                 "env": [{"name": f"E{i}", "value": str(i)} for i in range(5)],
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                           {"name": "dns", "containerPort": 5353, "protocol": "UDP"}],
                 "resources": {"requests": {"cpu": "250m"}}, "volumeMounts": [{"name": "d", "mountPath": "/d"}]},
                {"name": "sidecar", "image": "busybox"}],
            "volumes": [{"name": "d", "emptyDir": {}}], "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 30,
        },
        "status": {
            "phase": "Running", "qosClass": "Burstable", "startTime": "2026-01-15T09:00:01Z",
            "hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}],
            "podIP": "10.1.0.7", "podIPs": [{"ip": "10.1.0.7"}, {"ip": "fd00::7"}],
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-01-15T09:00:02Z"},
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-01-15T09:00:02Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-15T09:59:50Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-15T09:59:50Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-15T09:00:00Z"}],
            "initContainerStatuses": [
                {"name": "init", "restartCount": 1, "ready": False, "image": "busybox", "imageID": "sha256:1",
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2026-01-15T09:00:03Z",
                                          "startedAt": "2026-01-15T09:00:02Z", "containerID": "docker://1"}}},
                {"name": "proxy", "restartCount": 4, "ready": True, "state": {"running": {"startedAt": "x"}}}],
            "containerStatuses": [
                {"name": "app", "restartCount": 2, "ready": True, "started": True, "image": "web", "imageID": "sha",
                 "containerID": "docker://2", "state": {"running": {"startedAt": "2026-01-15T09:00:04Z"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}},
                {"name": "sidecar", "restartCount": 0, "ready": True, "state": {"running": {}}}],
        },
    }
    return override(pod, over)


FINISHED = [{"name": "app", "restartCount": 0, "state": {"terminated": {
    "exitCode": 3, "reason": "Error", "finishedAt": "2026-01-15T09:30:00Z", "startedAt": "2026-01-15T09:00:00Z",
    "message": "boom", "containerID": "docker://3"}}}]
VARIANTS: dict[str, Obj] = {
    "running and ready": full_pod(),
    "not ready": full_pod("web-2", status__conditions=[{"type": "Ready", "status": "False", "reason": "x"}]),
    "pending, unbound": full_pod("web-3", spec__nodeName=None, status={"phase": "Pending"}),
    "failed": full_pod("web-4", status__phase="Failed", status__containerStatuses=FINISHED),
    "succeeded, deleting": full_pod("web-5", status__phase="Succeeded", status__containerStatuses=FINISHED,
                                    metadata__deletionTimestamp="2026-01-15T09:40:00Z"),
    "terminating": full_pod("web-6", metadata__deletionTimestamp="2026-01-15T09:40:00Z", spec__restartPolicy="Never"),
    "orphan": full_pod("web-7", metadata__ownerReferences=None, metadata__annotations=None, metadata__finalizers=None),
    "bare": {"metadata": {"name": "bare", "namespace": "team-a", "uid": "u", "resourceVersion": "1"},
             "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
}
SERVICE: Obj = {"metadata": {"name": "web", "namespace": "team-a", "uid": "svc-uid"},
                "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10", "ipFamilies": ["IPv4", "IPv6"],
                         "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                   {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
                                   {"name": "admin", "port": 15000, "targetPort": "admin"},
                                   {"name": "num", "port": 81, "targetPort": 8081}]}}
NODE: Obj = {"metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "z1"}},
             "spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}
JOB: Obj = {"spec": {"completionMode": "Indexed", "completions": 5, "backoffLimit": 6,
                     "template": {"spec": {"restartPolicy": "OnFailure"}}}}


def describe(pod: Obj) -> dict[str, Any]:
    """Everything the controllers derive from one pod."""
    ref = _ref(pod, "Pod")
    return {
        "key": (cu.meta(pod).get("namespace"), cu.meta(pod).get("name"), cu.uid_of(pod),
                cu.meta(pod).get("resourceVersion")),
        "event_ref": {k: ref.get(k) for k in ("kind", "apiVersion")},
        "active": cu.is_pod_active(pod), "deleting": cu.is_deleting(pod), "ready": cu.is_pod_ready(pod),
        "ready_since": cu.pod_ready_since(pod), "available": [cu.pod_available_at(pod, s) for s in (0, 30)],
        "deletion_cost": cu._deletion_cost(pod), "restarts": cu._max_restarts(pod),
        "controller_ref": cu.controller_ref(pod), "labels": cu.labels_of(pod),
        "indexes": (controller_uid_index(pod), orphan_index(pod), pod_node_index(pod)),
        "gc": (owner_uids(pod), deleting_dependents(pod), cu.meta(pod).get("ownerReferences"),
               cu.meta(pod).get("finalizers")),
        "job": (ju.has_finalizer(pod), ju.is_pod_failed(pod, JOB), ju.is_pod_failed(pod, {}), ju.is_terminating(pod),
                ju.finish_time(pod, NOW), ju.completion_index(pod)),
        "endpoints": (eu.should_pod_be_in_endpoints(pod, False), eu.should_pod_be_in_endpoints(pod, True),
                      eu.pod_ip(pod, "IPv4"), eu.pod_ip(pod, "IPv6"),
                      [eu.find_port(pod, p) for p in SERVICE["spec"]["ports"]], eu.should_set_hostname(pod, SERVICE),
                      eu.target_ref(pod), eu.endpoint_relevant(pod), endpoint_address(pod, SERVICE, "10.1.0.7"),
                      endpoint_ports(SERVICE, pod), pod_to_endpoint(pod, NODE, SERVICE, "10.1.0.7")),
        "daemonset": (target_node_name(pod), dsu.is_pod_updated(pod, "abc")),
        "taints": (pod_tolerations(pod), eviction_delay(pod, NODE["spec"]["taints"])),
    }


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_reader_answers_the_same_for_the_stripped_pod(name: str) -> None:
    assert_readers_agree(strip_pod, describe, VARIANTS[name], may_not_shrink=name == "bare")


def test_decisions_over_many_pods_are_the_same() -> None:
    full = list(VARIANTS.values())
    stripped = [strip_pod(p) for p in full]

    def names(pods: list[Obj]) -> list[str]:
        return [p["metadata"]["name"] for p in pods]

    def decisions(pods: list[Obj]) -> Any:
        rs = {"spec": {"replicas": 2, "minReadySeconds": 5,
                       "template": {"metadata": {"labels": {"app": "web", "controller-revision-hash": "abc"}}}}}
        ds = {"spec": {"template": {"spec": {}}, "minReadySeconds": 0}}
        return (names(cu.rank_pods_for_deletion(pods, pods, NOW)), names(cu.pods_to_delete(pods, pods[:3], 3, NOW)),
                calculate_status(rs, [p for p in pods if cu.is_pod_active(p)], None, NOW),
                {k: names(v) for k, v in dsu.nodes_to_pods(pods, True).items()}, names(dsu.sort_pods(pods)),
                dsu.calculate_status(ds, [NODE], dsu.nodes_to_pods(pods, False), "abc", NOW),
                names(ju.pods_for_removal(JOB, [p for p in pods if cu.is_pod_active(p)], 2, NOW)),
                ju.past_backoff_limit_on_failure(JOB, pods),
                ju.BackoffRecord().updated(pods[3:4], pods[4:6], NOW),
                compute_subsets(SERVICE, pods), desired_endpoints(SERVICE, pods, {"node-1": NODE}, "IPv4"),
                desired_endpoints(SERVICE, pods, {"node-1": NODE}, "IPv6"))

    assert decisions(stripped) == decisions(full)


def test_updates_the_handlers_filter_on_are_seen_the_same() -> None:
    old = full_pod()
    for over in ({"metadata__ownerReferences": []}, {"metadata__finalizers": []},
                 {"metadata__deletionTimestamp": "2026-01-15T10:00:00Z"}, {"metadata__labels": {"app": "db"}}):
        new = full_pod(metadata__resourceVersion="43", **over)
        assert _gc_relevant(strip_pod(old), strip_pod(new)) == _gc_relevant(old, new), over
        assert (eu.endpoint_relevant(strip_pod(old)) != eu.endpoint_relevant(strip_pod(new))) == (
            eu.endpoint_relevant(old) != eu.endpoint_relevant(new)), over


def test_repeated_values_are_shared_between_pods() -> None:
    a, b = strip_pod(full_pod("a")), strip_pod(full_pod("b"))
    for path in (("metadata", "labels"), ("metadata", "ownerReferences"), ("spec", "tolerations"),
                 ("spec", "containers"), ("status", "conditions"), ("status", "containerStatuses")):
        assert a[path[0]][path[1]] is b[path[0]][path[1]], path
    assert a["status"]["podIPs"] is not b["status"]["podIPs"]
    assert len(SHARED) > 0


def test_shared_informers_strip_pods_only() -> None:
    informers = SharedInformers(Bus("nats://127.0.0.1:1", "unused"), ApiClient("http://127.0.0.1:1"))
    assert informers.get(BY_PLURAL[("", "pods")]).transform is strip_pod
    assert informers.get(BY_PLURAL[("apps", "replicasets")]).transform is None
    assert informers.get(BY_PLURAL[("", "nodes")]).transform is None
    assert informers.resync_period == 1800.0


async def test_a_realistic_pod_shrinks_and_keeps_its_answers(client: ApiClient, ns: str) -> None:
    pod = await pod_memory.realistic_pod(client, ns)
    assert pod["spec"]["tolerations"] and pod["status"]["containerStatuses"] and pod["status"]["podIP"]
    assert describe(strip_pod(pod)) == describe(pod)
    payloads = pod_memory.copies(pod, 2000)
    full = pod_memory.bytes_per_pod(payloads)
    for transform in (strip_pod, pod_memory.scheduler_strip_pod):
        stripped = pod_memory.bytes_per_pod(payloads, transform)
        assert stripped < full * 0.25, (transform.__module__, stripped, full)
