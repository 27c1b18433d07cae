"""The official `kubernetes` Python client (v37) against kubenats, unchanged.

CRUD through CoreV1Api and AppsV1Api with the client's own models, selectors, the scale
subresource, `utils.create_from_yaml`, `watch.Watch().stream` (ADDED/MODIFIED/DELETED, resuming
from a resourceVersion, and the 410 path: the client retries once, then raises), and that every
kind kubenats serves deserialises into the client's models (which are strict pydantic models
in v37: a missing required field or a wrong type raises). The client also serves as the oracle
for the OpenAPI schema names and fields.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
import yaml
from kubernetes import client, utils, watch
from kubernetes.client.rest import ApiException

from services.apiserver import openapi
from tests.apiserver.manifests import CLUSTER_EXAMPLES, EXAMPLES
from tests.servers import Cluster


@pytest.fixture(scope="module")
def api_client(cluster: Cluster) -> Iterator[client.ApiClient]:
    c = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig()))
    try:
        yield c
    finally:
        c.close()


def clean(api_client: client.ApiClient, obj: Any) -> dict[str, Any]:
    """The model as JSON again; checks the round trip kept the fields the server sent."""
    out: dict[str, Any] = api_client.sanitize_for_serialization(obj)
    return out


def test_core_crud_selectors_and_models(api_client: client.ApiClient, kns: str) -> None:
    core = client.CoreV1Api(api_client)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c1", labels={"tier": "front"}), data={"a": "1"})
    created = core.create_namespaced_config_map(kns, body)
    assert isinstance(created, client.V1ConfigMap) and created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None and created.kind == "ConfigMap"
    core.create_namespaced_config_map(kns, {"metadata": {"name": "c2", "labels": {"tier": "back"}}, "data": {"b": "2"}})

    got = core.read_namespaced_config_map("c1", kns)
    assert got.data == {"a": "1"} and clean(api_client, got)["metadata"]["labels"] == {"tier": "front"}
    got.data["a"] = "changed"
    replaced = core.replace_namespaced_config_map("c1", kns, got)
    assert replaced.data == {"a": "changed"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("c1", kns, got)  # stale resourceVersion
    assert conflict.value.status == 409 and '"reason":"Conflict"' in conflict.value.body.replace(" ", "")
    patched = core.patch_namespaced_config_map("c1", kns, {"metadata": {"annotations": {"x": "y"}}})  # a dict: SMP
    assert patched.metadata.annotations == {"x": "y"}

    listing = core.list_namespaced_config_map(kns, label_selector="tier in (front,back)")
    assert isinstance(listing, client.V1ConfigMapList) and listing.metadata.resource_version
    assert sorted(i.metadata.name for i in listing.items) == ["c1", "c2"]
    assert [i.metadata.name for i in core.list_namespaced_config_map(kns, label_selector="tier!=front").items] == ["c2"]
    assert [i.metadata.name for i in core.list_namespaced_config_map(kns, field_selector="metadata.name=c2").items] == ["c2"]
    assert core.list_namespaced_config_map(kns, label_selector="tier=none").items == []
    page = core.list_namespaced_config_map(kns, limit=1)
    assert len(page.items) == 1 and page.metadata._continue
    rest = core.list_namespaced_config_map(kns, limit=1, _continue=page.metadata._continue)
    assert {page.items[0].metadata.name, rest.items[0].metadata.name} == {"c1", "c2"}
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={kns}")
    assert len(everywhere.items) == 2

    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", kns)
    assert missing.value.status == 404
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_pod(kns, client.V1Pod(metadata=client.V1ObjectMeta(name="p"),
                                                     spec=client.V1PodSpec(containers=[client.V1Container(name="c")])))
    assert invalid.value.status == 422 and "spec.containers[0].image: Required value" in invalid.value.body

    status = core.delete_namespaced_config_map("c1", kns)  # v37 types delete responses as `object`
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"] == {"name": "c1", "group": "", "kind": "configmaps", "uid": created.metadata.uid}
    assert [i.metadata.name for i in core.list_namespaced_config_map(kns).items] == ["c2"]
    core.delete_collection_namespaced_config_map(kns, label_selector="tier=back")
    assert core.list_namespaced_config_map(kns).items == []


def test_pod_status_deserialises(api_client: client.ApiClient, http: httpx.Client, kns: str) -> None:
    core = client.CoreV1Api(api_client)
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="p1", labels={"app": "p"}),
                       spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36",
                                                                            ports=[client.V1ContainerPort(container_port=80)])]))
    created = core.create_namespaced_pod(kns, pod)
    assert created.spec.restart_policy == "Always" and created.spec.containers[0].termination_message_path
    assert created.status is not None
    status = {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}], "hostIP": "192.168.0.2",
              "startTime": "2026-01-02T03:04:05Z",
              "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T03:04:06Z"}],
              "containerStatuses": [{"name": "c", "image": "busybox:1.36", "imageID": "docker://sha256:abc",
                                     "containerID": "docker://123", "ready": True, "restartCount": 1, "started": True,
                                     "state": {"running": {"startedAt": "2026-01-02T03:04:06Z"}},
                                     "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}
    r = http.put(f"/api/v1/namespaces/{kns}/pods/p1/status", json={**created.to_dict(), "status": status} | {
        "metadata": clean(api_client, created)["metadata"], "spec": clean(api_client, created)["spec"]})
    assert r.status_code == 200, r.text
    read = core.read_namespaced_pod_status("p1", kns)
    cs = read.status.container_statuses[0]
    assert (cs.ready, cs.restart_count, cs.state.running is not None, cs.last_state.terminated.exit_code) == (True, 1, True, 137)
    assert read.status.pod_ip == "10.0.0.9" and read.status.conditions[0].type == "Ready"
    assert clean(api_client, read)["status"]["containerStatuses"][0]["imageID"] == "docker://sha256:abc"
    field = core.list_namespaced_pod(kns, field_selector="status.phase=Running")
    assert [p.metadata.name for p in field.items] == ["p1"]
    assert core.list_namespaced_pod(kns, field_selector="status.phase=Pending").items == []
    assert [p.metadata.name for p in core.list_pod_for_all_namespaces(label_selector="app=p",
                                                                      field_selector=f"metadata.namespace={kns}").items] == ["p1"]
    deleted = core.delete_namespaced_pod("p1", kns, body=client.V1DeleteOptions(grace_period_seconds=0))
    assert isinstance(deleted, client.V1Pod) and deleted.metadata.name == "p1"  # pods return the deleted object


def test_apps_crud_and_scale(api_client: client.ApiClient, kns: str) -> None:
    apps = client.AppsV1Api(api_client)
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web", labels={"app": "web"}),
        spec=client.V1DeploymentSpec(
            replicas=2, selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels={"app": "web"}), spec=client.V1PodSpec(
                containers=[client.V1Container(name="web", image="nginx:1.25")]))))
    created = apps.create_namespaced_deployment(kns, dep)
    assert created.metadata.generation == 1 and created.spec.strategy.type == "RollingUpdate"
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    scale = apps.patch_namespaced_deployment_scale("web", kns, {"spec": {"replicas": 5}})
    assert isinstance(scale, client.V1Scale) and scale.spec.replicas == 5 and scale.kind == "Scale"
    assert apps.read_namespaced_deployment_scale("web", kns).spec.replicas == 5
    scale.spec.replicas = 3
    assert apps.replace_namespaced_deployment_scale("web", kns, scale).spec.replicas == 3
    read = apps.read_namespaced_deployment("web", kns)
    assert read.spec.replicas == 3 and read.metadata.generation == 3
    patched = apps.patch_namespaced_deployment(
        "web", kns, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
    assert patched.spec.template.spec.containers[0].image == "nginx:1.27"
    status = apps.patch_namespaced_deployment_status("web", kns, {"status": {"replicas": 3, "readyReplicas": 2,
                                                                            "observedGeneration": 4}})
    assert status.status.ready_replicas == 2
    listing = apps.list_namespaced_deployment(kns, label_selector="app=web")
    assert isinstance(listing, client.V1DeploymentList) and [d.metadata.name for d in listing.items] == ["web"]
    assert listing.items[0].status.ready_replicas == 2
    apps.delete_namespaced_deployment("web", kns)
    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment("web", kns)
    assert gone.value.status == 404


def test_create_from_yaml(api_client: client.ApiClient, kns: str, tmp_path: Path) -> None:
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-yaml"}, "data": {"k": "v"}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "from-yaml"},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                      "template": {"metadata": {"labels": {"a": "b"}},
                                   "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "from-yaml"},
             "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}]
    path = tmp_path / "objs.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    created = utils.create_from_yaml(api_client, str(path), namespace=kns)
    kinds = sorted(type(o).__name__ for group in created for o in group)
    assert kinds == ["V1ConfigMap", "V1Deployment", "V1Role"]
    assert client.RbacAuthorizationV1Api(api_client).read_namespaced_role("from-yaml", kns).rules[0].verbs == ["get", "list"]
    with pytest.raises(utils.FailToCreateError) as again:
        utils.create_from_yaml(api_client, str(path), namespace=kns)
    assert all(e.status == 409 for e in again.value.api_exceptions)


def test_watch_stream_events_and_resume(api_client: client.ApiClient, kns: str) -> None:
    core = client.CoreV1Api(api_client)
    start_rv = core.list_namespaced_config_map(kns).metadata.resource_version

    def changes() -> None:
        time.sleep(0.3)
        core.create_namespaced_config_map(kns, {"metadata": {"name": "w"}, "data": {"n": "1"}})
        core.patch_namespaced_config_map("w", kns, {"data": {"n": "2"}})
        core.delete_namespaced_config_map("w", kns)

    t = threading.Thread(target=changes)
    t.start()
    w = watch.Watch()
    seen: list[tuple[str, str, str]] = []
    for ev in w.stream(core.list_namespaced_config_map, kns, resource_version=start_rv, timeout_seconds=20):
        obj = ev["object"]
        assert isinstance(obj, client.V1ConfigMap)
        seen.append((ev["type"], obj.metadata.name, (obj.data or {}).get("n", "")))
        if ev["type"] == "DELETED":
            w.stop()
    t.join()
    assert seen == [("ADDED", "w", "1"), ("MODIFIED", "w", "2"), ("DELETED", "w", "2")]

    # resume from the resourceVersion of the first event: the later two come again
    first_rv = None
    w2 = watch.Watch()
    for ev in w2.stream(core.list_namespaced_config_map, kns, resource_version=start_rv, timeout_seconds=5):
        first_rv = ev["object"].metadata.resource_version
        w2.stop()
    assert first_rv is not None
    resumed = []
    w3 = watch.Watch()
    for ev in w3.stream(core.list_namespaced_config_map, kns, resource_version=first_rv, timeout_seconds=5):
        resumed.append(ev["type"])
        if len(resumed) == 2:
            w3.stop()
    assert resumed == ["MODIFIED", "DELETED"]


@pytest.fixture(scope="module")
def restarted_cluster() -> Iterator[Cluster]:
    """A cluster of its own whose apiserver restarted after some writes: its watch window starts at
    the revision of the restart, so the resourceVersions of those writes are too old for it."""
    c = Cluster().start()
    try:
        for i in range(3):
            r = httpx.post(f"{c.apiserver.url}/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"old{i}"}},
                           verify=c.ssl)
            assert r.status_code == 201, r.text
        c.apiserver.stop()
        c.apiserver.start()
        yield c
    finally:
        c.stop()


def test_watch_too_old_resource_version(restarted_cluster: Cluster) -> None:
    core = client.CoreV1Api(client.ApiClient(restarted_cluster.python_client_config()))
    kns = "default"
    # with a timeout the client does not retry: the first 410 ERROR event raises
    with pytest.raises(ApiException) as expired:
        list(watch.Watch().stream(core.list_namespaced_config_map, kns, resource_version="1", timeout_seconds=5))
    assert expired.value.status == 410 and expired.value.reason.startswith("Expired: too old resource version")
    # without one it retries once from the same resourceVersion, gets 410 again, then raises
    calls = []
    real = core.list_namespaced_config_map

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("resource_version"))
        return real(*args, **kwargs)

    counting.__doc__ = real.__doc__  # the client reads the return type from the docstring
    with pytest.raises(ApiException) as again:
        for _ in watch.Watch().stream(counting, kns, resource_version="1"):
            pass
    assert again.value.status == 410 and calls == ["1", "1"]


def test_every_kind_deserialises(api_client: client.ApiClient, kns: str, http: httpx.Client) -> None:
    """Create each example, then read and list it with the typed API: the models must accept it."""
    for plural, (prefix, example) in EXAMPLES.items():
        body = copy.deepcopy(example)
        if "involvedObject" in body:
            body["involvedObject"]["namespace"] = kns
        r = http.post(f"{prefix}/namespaces/{kns}/{plural}", json=body)
        assert r.status_code == 201, (plural, r.text)
    suffix = uuid.uuid4().hex[:6]
    for plural, (prefix, example) in CLUSTER_EXAMPLES.items():
        body = copy.deepcopy(example)
        body["metadata"]["name"] = f"x-{suffix}"
        assert http.post(f"{prefix}/{plural}", json=body).status_code == 201

    apis: dict[str, Any] = {"": client.CoreV1Api(api_client), "apps": client.AppsV1Api(api_client),
                            "batch": client.BatchV1Api(api_client),
                            "coordination.k8s.io": client.CoordinationV1Api(api_client),
                            "discovery.k8s.io": client.DiscoveryV1Api(api_client)}
    singular = {"endpoints": "endpoints"}
    for plural, (prefix, _example) in EXAMPLES.items():
        group = prefix.split("/")[2] if prefix.startswith("/apis/") else ""
        api = apis[group]
        name = singular.get(plural) or _snake(plural[:-1])
        obj = getattr(api, f"read_namespaced_{name}")("x", kns)
        assert obj.metadata.name == "x" and obj.metadata.namespace == kns, plural
        listing = getattr(api, f"list_namespaced_{name}")(kns)
        assert [i.metadata.name for i in listing.items] == ["x"], plural
        assert clean(api_client, listing)["items"][0]["metadata"]["uid"] == obj.metadata.uid
    core = apis[""]
    assert core.read_node(f"x-{suffix}").status.capacity["cpu"] == "2"
    assert any(n.metadata.name == f"x-{suffix}" for n in core.list_node().items)
    assert core.read_namespace(f"x-{suffix}").status.phase == "Active"
    rbac = client.RbacAuthorizationV1Api(api_client)
    assert isinstance(rbac.list_cluster_role().items, list)
    versions = client.VersionApi(api_client).get_code()
    assert versions.git_version.endswith("-kubenats") and versions.major == "1"
    core_resources = client.CoreV1Api(api_client).get_api_resources()
    assert any(r.name == "pods" and r.short_names == ["po"] for r in core_resources.resources)
    groups = client.ApisApi(api_client).get_api_versions()
    assert "apps" in {g.name for g in groups.groups}


def _snake(name: str) -> str:
    return {"configmap": "config_map", "serviceaccount": "service_account", "deployment": "deployment",
            "replicaset": "replica_set", "daemonset": "daemon_set", "statefulset": "stateful_set",
            "endpointslice": "endpoint_slice", "cronjob": "cron_job"}.get(name, name)


def test_openapi_schema_names_match_the_client() -> None:
    """Every schema is named as Kubernetes names it and has the fields the client's class has."""
    checked = 0
    for name, schema in openapi.component_schemas().items():
        if name.endswith("List") or "properties" not in schema:
            continue
        package, kind = name.rsplit(".", 1)
        version = package.rsplit(".", 1)[1]
        group = package.split(".")[-2]
        candidates = [f"{version.capitalize()}{kind}", f"{group.capitalize()}{version.capitalize()}{kind}"]
        cls = next((getattr(client, c) for c in candidates if hasattr(client, c)), None)
        assert cls is not None, f"no client class for {name} (tried {candidates})"
        assert set(cls.attribute_map.values()) == set(schema["properties"]), name
        checked += 1
    assert checked > 150
    assert re.fullmatch(r"[0-9A-F]{128}", openapi.spec().documents["api/v1"][1])
