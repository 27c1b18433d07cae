"""CRUD, patch, subresources, selectors, pagination and errors through the real apiserver."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import pytest

from tests.apiserver.manifests import CLUSTER_EXAMPLES, EXAMPLES, deployment, pod

MERGE = {"Content-Type": "application/merge-patch+json"}
SMP = {"Content-Type": "application/strategic-merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}


def status_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert body["kind"] == "Status", body
    assert body["code"] == r.status_code
    return body


@pytest.mark.parametrize("plural", sorted(EXAMPLES))
async def test_namespaced_crud_roundtrip(api: httpx.AsyncClient, ns: str, plural: str) -> None:
    prefix, example = EXAMPLES[plural]
    if "involvedObject" in example:
        example = copy.deepcopy(example)
        example["involvedObject"]["namespace"] = ns
    coll = f"{prefix}/namespaces/{ns}/{plural}"
    r = await api.post(coll, json=example)
    assert r.status_code == 201, r.text
    created = r.json()
    meta = created["metadata"]
    assert meta["namespace"] == ns and meta["name"] == "x"
    assert uuid.UUID(meta["uid"]) and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert created["kind"] == example["kind"] and created["apiVersion"] == example["apiVersion"]

    r = await api.get(f"{coll}/x")
    assert r.status_code == 200 and r.json() == created

    # update with the current resourceVersion: label added
    updated = copy.deepcopy(created)
    updated["metadata"].setdefault("labels", {})["touched"] = "yes"
    r = await api.put(f"{coll}/x", json=updated)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"]["touched"] == "yes"
    assert int(r.json()["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    # stale resourceVersion -> 409 Conflict
    r = await api.put(f"{coll}/x", json=updated)
    assert r.status_code == 409 and status_of(r)["reason"] == "Conflict"

    # duplicate name -> 409 AlreadyExists
    r = await api.post(coll, json=example)
    assert r.status_code == 409 and status_of(r)["reason"] == "AlreadyExists"

    # all three patch types
    r = await api.patch(f"{coll}/x", json={"metadata": {"annotations": {"m": "1"}}}, headers=MERGE)
    assert r.status_code == 200 and r.json()["metadata"]["annotations"]["m"] == "1", r.text
    r = await api.patch(f"{coll}/x", json={"metadata": {"annotations": {"s": "2"}}}, headers=SMP)
    assert r.status_code == 200, r.text
    assert {"m": "1", "s": "2"}.items() <= r.json()["metadata"]["annotations"].items()
    r = await api.patch(f"{coll}/x", json=[{"op": "add", "path": "/metadata/annotations/j", "value": "3"}], headers=JSONPATCH)
    assert r.status_code == 200 and r.json()["metadata"]["annotations"]["j"] == "3", r.text

    # list carries the object; the all-namespaces list too
    r = await api.get(coll)
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == example["kind"] + "List" and [i["metadata"]["name"] for i in body["items"]] == ["x"]
    r = await api.get(f"{prefix}/{plural}", params={"fieldSelector": f"metadata.namespace={ns}"})
    assert r.status_code == 200 and len(r.json()["items"]) == 1

    r = await api.delete(f"{coll}/x")
    assert r.status_code == 200, r.text
    r = await api.get(f"{coll}/x")
    assert r.status_code == 404 and status_of(r)["reason"] == "NotFound"
    assert status_of(r)["details"]["name"] == "x"


@pytest.mark.parametrize("plural", sorted(CLUSTER_EXAMPLES))
async def test_cluster_scoped_crud(api: httpx.AsyncClient, plural: str) -> None:
    prefix, example = CLUSTER_EXAMPLES[plural]
    obj = copy.deepcopy(example)
    name = "c-" + uuid.uuid4().hex[:8]
    obj["metadata"]["name"] = name
    r = await api.post(f"{prefix}/{plural}", json=obj)
    assert r.status_code == 201, r.text
    assert "namespace" not in r.json()["metadata"]
    r = await api.get(f"{prefix}/{plural}/{name}")
    assert r.status_code == 200
    r = await api.patch(f"{prefix}/{plural}/{name}", json={"metadata": {"labels": {"p": "q"}}}, headers=MERGE)
    assert r.status_code == 200 and r.json()["metadata"]["labels"]["p"] == "q"
    r = await api.delete(f"{prefix}/{plural}/{name}")
    assert r.status_code == 200


async def test_system_namespaces_exist(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/namespaces")
    names = {i["metadata"]["name"] for i in r.json()["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    ns = (await api.get("/api/v1/namespaces/default")).json()
    assert ns["status"]["phase"] == "Active" and ns["spec"]["finalizers"] == ["kubernetes"]


async def test_missing_namespace_is_404(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/namespaces/nope-nope/configmaps", json={"metadata": {"name": "a"}})
    assert r.status_code == 404
    assert status_of(r)["message"] == 'namespaces "nope-nope" not found'


async def test_generate_name(api: httpx.AsyncClient, ns: str) -> None:
    body = pod("")
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "web-"
    names = set()
    for _ in range(3):
        r = await api.post(f"/api/v1/namespaces/{ns}/pods", json=body)
        assert r.status_code == 201, r.text
        name = r.json()["metadata"]["name"]
        assert name.startswith("web-") and len(name) == len("web-") + 5
        names.add(name)
    assert len(names) == 3


INVALID = [
    # (description, plural, mutate, expected status, expected field or message fragment)
    ("bad name", "pods", lambda o: o["metadata"].update(name="Bad_Name"), 422, "metadata.name"),
    ("missing image", "pods", lambda o: o["spec"]["containers"][0].pop("image"), 422, "spec.containers[0].image"),
    ("bad label", "pods", lambda o: o["metadata"].update(labels={"a": "-bad-"}), 422, "metadata.labels"),
    ("port out of range", "services", lambda o: o["spec"]["ports"][0].update(port=70000), 422, "spec.ports[0].port"),
    ("container port out of range", "pods", lambda o: o["spec"]["containers"][0]["ports"][0].update(containerPort=0),
     422, "spec.containers[0].ports[0].containerPort"),
    ("selector mismatch", "deployments", lambda o: o["spec"]["selector"].update(matchLabels={"other": "x"}), 422,
     "spec.template.metadata.labels"),
    ("wrong type", "deployments", lambda o: o["spec"].update(replicas="3"), 400, "spec.replicas"),
]


@pytest.mark.parametrize(("desc", "plural", "mutate", "code", "field"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_objects(api: httpx.AsyncClient, ns: str, desc: str, plural: str, mutate: Any, code: int,
                               field: str) -> None:
    prefix, example = EXAMPLES[plural]
    obj = copy.deepcopy(example)
    mutate(obj)
    r = await api.post(f"{prefix}/namespaces/{ns}/{plural}", json=obj)
    assert r.status_code == code, r.text
    st = status_of(r)
    if code == 422:
        assert st["reason"] == "Invalid"
        assert field in [c["field"] for c in st["details"]["causes"]], st
        assert st["message"].startswith(f'{example["kind"]} "')
        assert field in st["message"]
    else:
        assert field in st["message"]
    # nothing was stored
    name = obj["metadata"].get("name", "x")
    assert (await api.get(f"{prefix}/namespaces/{ns}/{plural}/{name}")).status_code == 404


async def test_missing_image_message_in_kubernetes_words(api: httpx.AsyncClient, ns: str) -> None:
    obj = pod("x")
    del obj["spec"]["containers"][0]["image"]
    r = await api.post(f"/api/v1/namespaces/{ns}/pods", json=obj)
    assert r.json()["message"] == 'Pod "x" is invalid: spec.containers[0].image: Required value'


@pytest.mark.parametrize("mode", ["Strict", "Warn", "Ignore"])
async def test_unknown_fields(api: httpx.AsyncClient, ns: str, mode: str) -> None:
    obj = pod("u")
    obj["spec"]["containers"][0]["imagee"] = "typo"
    r = await api.post(f"/api/v1/namespaces/{ns}/pods", json=obj, params={"fieldValidation": mode})
    if mode == "Strict":
        assert r.status_code == 400
        assert 'unknown field "spec.containers[0].imagee"' in status_of(r)["message"]
        return
    assert r.status_code == 201, r.text
    assert "imagee" not in r.json()["spec"]["containers"][0]
    assert ("Warning" in r.headers) == (mode == "Warn")


async def test_kubernetes_fields_kept_as_given(api: httpx.AsyncClient, ns: str) -> None:
    obj = pod("keep")
    obj["spec"]["priorityClassName"] = "high"
    obj["spec"]["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]
    r = await api.post(f"/api/v1/namespaces/{ns}/pods", json=obj)
    assert r.status_code == 201, r.text
    got = (await api.get(f"/api/v1/namespaces/{ns}/pods/keep")).json()
    assert got["spec"]["priorityClassName"] == "high"
    assert got["spec"]["topologySpreadConstraints"] == obj["spec"]["topologySpreadConstraints"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1,2", b"\xff\xfe", b"key: [unclosed"])
async def test_malformed_bodies_are_400(api: httpx.AsyncClient, ns: str, raw: bytes) -> None:
    for ctype in ("application/json", "application/yaml"):
        r = await api.post(f"/api/v1/namespaces/{ns}/configmaps", content=raw, headers={"Content-Type": ctype})
        assert r.status_code == 400, (ctype, raw, r.text)
        status_of(r)


async def test_yaml_body(api: httpx.AsyncClient, ns: str) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n"
    r = await api.post(f"/api/v1/namespaces/{ns}/configmaps", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201 and r.json()["data"] == {"k": "v"}


async def test_generation_only_on_spec_change(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    d = (await api.post(base, json=deployment("g"))).json()
    assert d["metadata"]["generation"] == 1
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    r = await api.patch(f"{base}/g", json={"metadata": {"labels": {"l": "1"}}}, headers=MERGE)
    assert r.json()["metadata"]["generation"] == 1
    r = await api.patch(f"{base}/g", json={"spec": {"replicas": 5}}, headers=MERGE)
    assert r.json()["metadata"]["generation"] == 2
    # the main resource ignores status; the status subresource writes only status
    cur = r.json()
    cur["status"] = {"replicas": 99}
    cur["spec"]["replicas"] = 6
    r = await api.put(f"{base}/g", json=cur)
    assert r.json().get("status", {}).get("replicas") != 99 and r.json()["spec"]["replicas"] == 6
    cur = r.json()
    cur["status"] = {"replicas": 4, "observedGeneration": 3}
    cur["spec"]["replicas"] = 1
    r = await api.put(f"{base}/g/status", json=cur)
    assert r.status_code == 200, r.text
    assert r.json()["status"]["replicas"] == 4 and r.json()["spec"]["replicas"] == 6
    assert r.json()["metadata"]["generation"] == 3


async def test_scale_subresource(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    await api.post(base, json=deployment("s", replicas=2))
    r = await api.get(f"{base}/s/scale")
    sc = r.json()
    assert sc["kind"] == "Scale" and sc["apiVersion"] == "autoscaling/v1" and sc["spec"]["replicas"] == 2
    assert sc["status"]["selector"] == "app=s"
    r = await api.patch(f"{base}/s/scale", json={"spec": {"replicas": 7}}, headers=MERGE)
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 7
    sc = r.json()
    sc["spec"]["replicas"] = 3
    r = await api.put(f"{base}/s/scale", json=sc)
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 3
    assert (await api.get(f"{base}/s")).json()["spec"]["replicas"] == 3
    r = await api.patch(f"{base}/s/scale", json={"spec": {"replicas": -1}}, headers=MERGE)
    assert r.status_code == 422
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                   "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}
    await api.post(f"/apis/apps/v1/namespaces/{ns}/replicasets", json=rs)
    r = await api.patch(f"/apis/apps/v1/namespaces/{ns}/replicasets/r/scale", json={"spec": {"replicas": 4}}, headers=MERGE)
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 4


async def test_binding_and_graceful_pod_deletion(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/pods"
    await api.post(base, json=pod("b"))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"}, "target": {"kind": "Node", "name": "n1"}}
    r = await api.post(f"{base}/b/binding", json=binding)
    assert r.status_code == 201, r.text
    p = (await api.get(f"{base}/b")).json()
    assert p["spec"]["nodeName"] == "n1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in p["status"]["conditions"])
    # a second binding is refused: no double binding
    r = await api.post(f"{base}/b/binding", json={**binding, "target": {"kind": "Node", "name": "n2"}})
    assert r.status_code == 409 and status_of(r)["reason"] == "Conflict"
    # a bound pod is deleted gracefully: it stays with deletionTimestamp until the kubelet confirms
    r = await api.delete(f"{base}/b")
    assert r.status_code == 200
    p = (await api.get(f"{base}/b")).json()
    assert p["metadata"]["deletionTimestamp"] and p["metadata"]["deletionGracePeriodSeconds"] == 30
    r = await api.delete(f"{base}/b", params={"gracePeriodSeconds": 0})
    assert r.status_code == 200
    assert (await api.get(f"{base}/b")).status_code == 404
    # an unbound pod goes at once
    await api.post(base, json=pod("u"))
    await api.delete(f"{base}/u")
    assert (await api.get(f"{base}/u")).status_code == 404


async def test_finalizers_hold_deletion(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    await api.post(base, json={"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    r = await api.delete(f"{base}/f")
    assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"]
    assert (await api.get(f"{base}/f")).status_code == 200
    # no new finalizers while deleting
    r = await api.patch(f"{base}/f", json={"metadata": {"finalizers": ["example.com/hold", "x.io/new"]}}, headers=MERGE)
    assert r.status_code == 422
    r = await api.patch(f"{base}/f", json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert r.status_code == 200
    assert (await api.get(f"{base}/f")).status_code == 404


async def test_delete_preconditions_and_options(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    cm = (await api.post(base, json={"metadata": {"name": "p"}})).json()
    r = await api.request("DELETE", f"{base}/p", json={"preconditions": {"uid": "wrong"}})
    assert r.status_code == 409
    r = await api.request("DELETE", f"{base}/p", json={"propagationPolicy": "Sideways"})
    assert r.status_code == 422
    r = await api.request("DELETE", f"{base}/p", json={"preconditions": {"uid": cm["metadata"]["uid"]}})
    assert r.status_code == 200
    assert (await api.get(f"{base}/p")).status_code == 404


async def test_selectors_and_pagination(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/pods"
    for i in range(7):
        labels = {"app": "web" if i % 2 else "db", "tier": str(i % 3)}
        r = await api.post(base, json=pod(f"p{i}", labels=labels))
        assert r.status_code == 201
    await api.post(f"{base}/p1/binding", json={"target": {"kind": "Node", "name": "n9"}})

    async def names(**params: str) -> list[str]:
        r = await api.get(base, params=params)
        assert r.status_code == 200, r.text
        return [i["metadata"]["name"] for i in r.json()["items"]]

    assert await names(labelSelector="app=web") == ["p1", "p3", "p5"]
    assert await names(labelSelector="app==web,tier!=1") == ["p3", "p5"]
    assert await names(labelSelector="tier in (0,2)") == ["p0", "p2", "p3", "p5", "p6"]
    assert await names(labelSelector="tier notin (0,2),app") == ["p1", "p4"]
    assert await names(labelSelector="!app") == []
    assert await names(fieldSelector="spec.nodeName=n9") == ["p1"]
    assert await names(fieldSelector="metadata.name=p4") == ["p4"]
    assert await names(fieldSelector="status.phase=Pending,metadata.name!=p0") == [f"p{i}" for i in range(1, 7)]

    for bad in ({"labelSelector": "a in (b"}, {"labelSelector": "=x"}, {"fieldSelector": "spec.bogus=1"}):
        r = await api.get(base, params=bad)
        assert r.status_code == 400, (bad, r.text)
        status_of(r)

    # pagination: 3 pages of 3, 3, 1 all at one resourceVersion
    seen, token, rvs = [], None, set()
    while True:
        params = {"limit": "3"} | ({"continue": token} if token else {})
        body = (await api.get(base, params=params)).json()
        seen += [i["metadata"]["name"] for i in body["items"]]
        rvs.add(body["metadata"]["resourceVersion"])
        token = body["metadata"].get("continue")
        if not token:
            break
        assert body["metadata"]["remainingItemCount"] == 7 - len(seen)
    assert seen == [f"p{i}" for i in range(7)] and len(rvs) == 1
    # paginating a filtered list
    body = (await api.get(base, params={"limit": "2", "labelSelector": "app=web"})).json()
    assert [i["metadata"]["name"] for i in body["items"]] == ["p1", "p3"]
    body = (await api.get(base, params={"limit": "2", "labelSelector": "app=web", "continue": body["metadata"]["continue"]})).json()
    assert [i["metadata"]["name"] for i in body["items"]] == ["p5"]
    r = await api.get(base, params={"continue": "garbage!"})
    assert r.status_code == 400


async def test_deletecollection(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    for i in range(4):
        await api.post(base, json={"metadata": {"name": f"c{i}", "labels": {"g": "a" if i < 3 else "b"}}})
    r = await api.delete(base, params={"labelSelector": "g=a"})
    assert r.status_code == 200
    left = [i["metadata"]["name"] for i in (await api.get(base)).json()["items"]]
    assert left == ["c3"]


async def test_immutable_fields(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    await api.post(base, json=deployment("im"))
    r = await api.patch(f"{base}/im", json={"spec": {"selector": {"matchLabels": {"app": "other"}},
                                                     "template": {"metadata": {"labels": {"app": "other"}}}}}, headers=SMP)
    assert r.status_code == 422, r.text
    assert "spec.selector" in [c["field"] for c in r.json()["details"]["causes"]]
    pbase = f"/api/v1/namespaces/{ns}/pods"
    await api.post(pbase, json=pod("imp"))
    r = await api.patch(f"{pbase}/imp", json={"spec": {"restartPolicy": "Never"}}, headers=MERGE)
    assert r.status_code == 422
    r = await api.patch(f"{pbase}/imp", json={"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}, headers=SMP)
    assert r.status_code == 200 and r.json()["spec"]["containers"][0]["image"] == "busybox:2"


async def test_unknown_paths_and_methods(api: httpx.AsyncClient, ns: str) -> None:
    assert (await api.get("/api/v1/namespaces/x/widgets")).status_code == 404
    assert (await api.get("/apis/nope/v1/things")).status_code == 404
    assert (await api.get(f"/api/v1/namespaces/{ns}/pods/x/bogus")).status_code == 404
    r = await api.post(f"/api/v1/namespaces/{ns}/configmaps/x", json={})
    assert r.status_code == 405
    r = await api.patch(f"/api/v1/namespaces/{ns}/configmaps/x", json={}, headers={"Content-Type": "text/weird"})
    assert r.status_code in (404, 415)


async def test_dry_run_writes_nothing(api: httpx.AsyncClient, ns: str) -> None:
    r = await api.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "d"}}, params={"dryRun": "All"})
    assert r.status_code == 201
    assert (await api.get(f"/api/v1/namespaces/{ns}/configmaps/d")).status_code == 404


async def test_health_and_version(api: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        r = await api.get(path)
        assert r.status_code == 200 and r.text == "ok"
    v = (await api.get("/version")).json()
    assert v["major"] == "1" and v["gitVersion"].startswith("v1.")
