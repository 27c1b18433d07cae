"""The pods-by-node index: kept in the same etcd transaction as every pod write, serving
`spec.nodeName=<node>` lists with exactly the full scan's answer, backfilled for pods stored
before it existed, and never published on NATS."""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.apiserver.encryption import EncryptingStore
from services.apiserver.objects import POD_INDEX_MARKER, POD_INDEX_PREFIX, Objects, decode_continue, index_key
from services.apiserver.publisher import messages_for
from services.apiserver.storage import KVs, Put, Store, WatchEvent
from shared import bus as busmod
from shared.api.resources import BY_PLURAL, storage_key
from shared.bus import Bus, Message
from shared.informer import Informer, key_of
from shared.pki import SecretBox
from tests.apiserver.test_publisher import etcd_history, stream_contents
from tests.servers import Cluster, Etcd

PODS = BY_PLURAL[("", "pods")]
MERGE = {"Content-Type": "application/merge-patch+json"}


# ---- helpers ----------------------------------------------------------------------------------
class CountingStore(Store):
    """A Store that remembers which prefixes were ranged with values (a scan of pods shows up)."""

    def __init__(self, url: str) -> None:
        super().__init__([url])
        self.listed: list[str] = []

    async def list(self, prefix: str, *, start: str | None = None, limit: int = 0,
                   revision: int = 0) -> tuple[KVs, int, int]:
        self.listed.append(prefix)
        return await super().list(prefix, start=start, limit=limit, revision=revision)


@pytest.fixture
async def store(cluster: Cluster) -> AsyncIterator[CountingStore]:
    s = CountingStore(cluster.etcd.url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def node_name() -> str:
    return "node-" + uuid.uuid4().hex[:8]


def pod(name: str, node: str = "", labels: dict[str, str] | None = None, finalizers: list[str] | None = None,
        grace: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {"app": "web"}}
    if finalizers:
        meta["finalizers"] = finalizers
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1.35"}]}
    if node:
        spec["nodeName"] = node
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


async def indexed(store: Store, node: str) -> set[str]:
    """`<namespace>/<name>` of every index key of a node."""
    prefix = f"{POD_INDEX_PREFIX}{node}/"
    keys, _rev, _left = await store.keys(prefix)
    return {k[len(prefix):] for k in keys}


async def all_pages(objects: Objects, ns: str, *, fields: str, labels: str = "", limit: int = 0,
                    revision: int = 0) -> tuple[list[dict[str, Any]], list[str], list[int]]:
    """Every item of a (paged) list, the list resourceVersions and the page sizes."""
    items: list[dict[str, Any]] = []
    rvs: list[str] = []
    sizes: list[int] = []
    token = ""
    while True:
        body = await objects.list(PODS, ns, label_selector=labels, field_selector=fields, limit=limit,
                                  continue_token=token, revision=0 if token else revision)
        items += body["items"]
        rvs.append(body["metadata"]["resourceVersion"])
        sizes.append(len(body["items"]))
        token = body["metadata"].get("continue", "")
        if not token:
            return items, rvs, sizes


async def assert_same_as_scan(store: CountingStore, ns: str, node: str, revision: int, *, labels: str = "",
                              more_fields: str = "", limit: int = 0) -> list[dict[str, Any]]:
    """The index path and the full scan give the same lists at `revision`; returns the items."""
    index, scan = Objects(store), Objects(store, node_index=False)
    assert await index.node_index_ready()
    fields = f"spec.nodeName={node}" + (f",{more_fields}" if more_fields else "")
    store.listed.clear()
    got = await all_pages(index, ns, fields=fields, labels=labels, limit=limit, revision=revision)
    assert not any(p.startswith("/registry/pods/") for p in store.listed), "the index path scanned"
    want = await all_pages(scan, ns, fields=fields, labels=labels, limit=limit, revision=revision)
    assert got == want, f"index and scan differ at {revision} for ns={ns!r} node={node} labels={labels!r} limit={limit}"
    return got[0]


def names(items: list[dict[str, Any]]) -> list[str]:
    return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items]


async def eventually(cond: Any, what: str, timeout: float = 15.0) -> None:
    """Wait until `cond()` (a bool, or an awaitable of one) holds."""
    deadline = time.monotonic() + timeout
    while not await _value(cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


async def _value(result: Any) -> bool:
    return bool(await result) if inspect.isawaitable(result) else bool(result)


# ---- the write paths --------------------------------------------------------------------------
async def test_every_pod_write_keeps_the_index(api: httpx.AsyncClient, ns: str, store: CountingStore) -> None:
    node, other = node_name(), node_name()
    base = f"/api/v1/namespaces/{ns}/pods"
    assert (await api.post(base, json=pod("on", node))).status_code == 201
    assert (await api.post(base, json=pod("off"))).status_code == 201
    assert await indexed(store, node) == {f"{ns}/on"}

    # bind: the key appears in the same revision as the pod's new nodeName
    r = await api.post(f"{base}/off/binding", json={"target": {"kind": "Node", "name": other}})
    assert r.status_code == 201, r.text
    assert await indexed(store, other) == {f"{ns}/off"}
    kv = await store.get(index_key(other, ns, "off"))
    pod_kv = await store.get(storage_key(PODS, ns, "off"))
    assert kv is not None and pod_kv is not None and kv.mod_revision == pod_kv.mod_revision

    # status and label writes leave it alone
    r = await api.patch(f"{base}/on/status", json={"status": {"phase": "Running"}}, headers=MERGE)
    assert r.status_code == 200, r.text
    r = await api.patch(f"{base}/on", json={"metadata": {"labels": {"app": "db"}}}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert await indexed(store, node) == {f"{ns}/on"}

    # graceful deletion keeps the key while the pod is terminating, its completion removes it
    r = await api.delete(f"{base}/on")
    assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"], r.text
    assert await indexed(store, node) == {f"{ns}/on"}
    r = await api.delete(f"{base}/on", params={"gracePeriodSeconds": 0})
    assert r.status_code == 200, r.text
    assert await indexed(store, node) == set()

    # immediate deletion
    assert (await api.delete(f"{base}/off", params={"gracePeriodSeconds": 0})).status_code == 200
    assert await indexed(store, other) == set()

    # the last finalizer removed ends the deletion through the update path
    assert (await api.post(base, json=pod("fin", node, finalizers=["example.com/hold"]))).status_code == 201
    r = await api.delete(f"{base}/fin", params={"gracePeriodSeconds": 0})
    assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"], r.text
    assert await indexed(store, node) == {f"{ns}/fin"}
    r = await api.patch(f"{base}/fin", json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert (await api.get(f"{base}/fin")).status_code == 404
    assert await indexed(store, node) == set()

    # a graceful deletion shortened to 0 by a second delete (what the kubelet does once containers stopped)
    assert (await api.post(base, json=pod("g", node, grace=5))).status_code == 201
    assert (await api.delete(f"{base}/g")).status_code == 200
    assert (await api.delete(f"{base}/g", params={"gracePeriodSeconds": 0})).status_code == 200
    assert await indexed(store, node) == set()

    # deleting the namespace's pods as a collection
    for i in range(3):
        assert (await api.post(base, json=pod(f"c{i}", node))).status_code == 201
    assert len(await indexed(store, node)) == 3
    r = await api.request("DELETE", base, json={"gracePeriodSeconds": 0})
    assert r.status_code == 200, r.text
    assert await indexed(store, node) == set()


async def test_a_failed_or_dry_run_write_leaves_no_key(api: httpx.AsyncClient, ns: str, store: CountingStore) -> None:
    node = node_name()
    base = f"/api/v1/namespaces/{ns}/pods"
    r = await api.post(base, json=pod("dry", node), params={"dryRun": "All"})
    assert r.status_code == 201, r.text
    assert await indexed(store, node) == set()
    assert (await api.post(base, json=pod("p", node))).status_code == 201
    other = node_name()
    r = await api.post(base, json=pod("p", other))  # AlreadyExists: the whole transaction failed
    assert r.status_code == 409
    assert await indexed(store, other) == set() and await indexed(store, node) == {f"{ns}/p"}
    r = await api.post(f"{base}/p/binding", json={"target": {"kind": "Node", "name": other}})  # already bound
    assert r.status_code == 409
    assert await indexed(store, other) == set()


# ---- lists ------------------------------------------------------------------------------------
async def test_node_lists_namespaced_cluster_wide_selectors_and_paging(
        api: httpx.AsyncClient, ns: str, store: CountingStore) -> None:
    ns2 = ns + "-b"
    assert (await api.post("/api/v1/namespaces", json={"metadata": {"name": ns2}})).status_code == 201
    node, other = node_name(), node_name()
    want: list[str] = []
    for space in (ns, ns2):
        for i in range(7):
            labels = {"app": "web" if i % 2 else "db"}
            r = await api.post(f"/api/v1/namespaces/{space}/pods", json=pod(f"p{i}", node if i != 3 else other, labels))
            assert r.status_code == 201, r.text
            if i != 3:
                want.append(f"{space}/p{i}")
    r = await api.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "PodList" and names(body["items"]) == sorted(want)
    assert all(i["kind"] == "Pod" and i["apiVersion"] == "v1" for i in body["items"])
    rev = int(body["metadata"]["resourceVersion"])
    assert rev >= max(int(i["metadata"]["resourceVersion"]) for i in body["items"])

    r = await api.get(f"/api/v1/namespaces/{ns2}/pods", params={"fieldSelector": f"spec.nodeName={node}"})
    assert names(r.json()["items"]) == [w for w in sorted(want) if w.startswith(ns2 + "/")]
    r = await api.get(f"/api/v1/namespaces/{ns}/pods",
                      params={"fieldSelector": f"spec.nodeName={node}", "labelSelector": "app=web"})
    assert names(r.json()["items"]) == [f"{ns}/p1", f"{ns}/p5"]
    r = await api.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node},metadata.name!=p0"})
    assert names(r.json()["items"]) == [w for w in sorted(want) if not w.endswith("/p0")]
    r = await api.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={other},metadata.namespace={ns}"})
    assert names(r.json()["items"]) == [f"{ns}/p3"]
    r = await api.get("/api/v1/pods", params={"fieldSelector": "spec.nodeName=no-such-node"})
    assert r.status_code == 200 and r.json()["items"] == []

    # pages: limit + continue, every page at the first page's revision
    got: list[str] = []
    params: dict[str, Any] = {"fieldSelector": f"spec.nodeName={node}", "limit": 4}
    revisions = set()
    while True:
        r = await api.get("/api/v1/pods", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        got += names(page["items"])
        revisions.add(page["metadata"]["resourceVersion"])
        token = page["metadata"].get("continue")
        if not token:
            break
        assert len(page["items"]) == 4 and "remainingItemCount" not in page["metadata"]
        assert decode_continue(token)[1].startswith(POD_INDEX_PREFIX)
        params["continue"] = token
        # a write between pages does not show up in later pages
        await api.post(f"/api/v1/namespaces/{ns}/pods", json=pod(f"late{len(got)}", node))
    assert got == sorted(want) and len(revisions) == 1

    # a continue token of another node's list is refused, not followed
    r = await api.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}", "limit": 1})
    token = r.json()["metadata"]["continue"]
    r = await api.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={other}", "continue": token})
    assert r.status_code == 400, r.text
    r = await api.get(f"/api/v1/namespaces/{ns}/configmaps", params={"continue": token})
    assert r.status_code == 400, r.text

    # the same answers as the scan, at this revision and with paging and selectors
    now = await store.revision()
    for space in ("", ns, ns2):
        for limit in (0, 1, 3, 100):
            await assert_same_as_scan(store, space, node, now, limit=limit)
            await assert_same_as_scan(store, space, node, now, limit=limit, labels="app=db")
            await assert_same_as_scan(store, space, node, now, limit=limit, more_fields="status.phase!=Running")
        await assert_same_as_scan(store, space, node, rev)


async def test_stale_index_keys_are_never_listed(api: httpx.AsyncClient, ns: str, store: CountingStore) -> None:
    node, other = node_name(), node_name()
    base = f"/api/v1/namespaces/{ns}/pods"
    assert (await api.post(base, json=pod("real", node))).status_code == 201
    assert (await api.post(base, json=pod("elsewhere", other))).status_code == 201
    # keys no write path would leave: a pod that does not exist and one on another node
    await store.txn([Put(index_key(node, ns, "ghost"), b"", None), Put(index_key(node, ns, "elsewhere"), b"", None)])
    r = await api.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"})
    assert names(r.json()["items"]) == [f"{ns}/real"]
    for limit in (0, 1, 2):
        items = await assert_same_as_scan(store, ns, node, await store.revision(), limit=limit)
        assert names(items) == [f"{ns}/real"]


async def test_index_equals_scan_after_random_operations(api: httpx.AsyncClient, ns: str,
                                                         store: CountingStore) -> None:
    rng = random.Random(int(os.environ.get("KUBENATS_TEST_SEED", "20240611")))
    spaces = [ns, ns + "-x", ns + "-y"]
    for space in spaces[1:]:
        assert (await api.post("/api/v1/namespaces", json={"metadata": {"name": space}})).status_code == 201
    nodes = [node_name() for _ in range(3)]
    pods: dict[tuple[str, str], str] = {}  # (ns, name) -> node ("" unbound)
    checkpoints: list[int] = []
    serial = 0

    async def op() -> None:
        nonlocal serial
        choice = rng.random()
        if choice < 0.3 or not pods:
            serial += 1
            space, name = rng.choice(spaces), f"p{serial}"
            node = rng.choice([*nodes, ""])
            fin = ["example.com/hold"] if rng.random() < 0.15 else None
            r = await api.post(f"/api/v1/namespaces/{space}/pods",
                               json=pod(name, node, {"app": rng.choice(["web", "db"])}, fin, grace=rng.choice([None, 0, 5])))
            assert r.status_code == 201, r.text
            pods[(space, name)] = node
            return
        (space, name), node = rng.choice(sorted(pods.items()))
        base = f"/api/v1/namespaces/{space}/pods/{name}"
        if choice < 0.45:
            if not node:  # 409 when it is being deleted (or a concurrent op bound it)
                r = await api.post(f"{base}/binding", json={"target": {"kind": "Node", "name": rng.choice(nodes)}})
                assert r.status_code in (201, 404, 409), r.text
        elif choice < 0.6:
            r = await api.patch(f"{base}/status", json={"status": {"phase": rng.choice(["Running", "Pending", "Failed"])}},
                                headers=MERGE)
            assert r.status_code in (200, 404), r.text
        elif choice < 0.7:
            r = await api.patch(base, json={"metadata": {"labels": {"app": rng.choice(["web", "db"])}}}, headers=MERGE)
            assert r.status_code in (200, 404), r.text
        elif choice < 0.8:
            r = await api.patch(base, json={"metadata": {"finalizers": None}}, headers=MERGE)
            assert r.status_code in (200, 404), r.text
        elif choice < 0.9:
            r = await api.delete(base)  # graceful for a bound pod, immediate otherwise
            assert r.status_code in (200, 404), r.text
        else:
            r = await api.delete(base, params={"gracePeriodSeconds": 0})
            assert r.status_code in (200, 404), r.text
        r = await api.get(base)
        if r.status_code == 404:
            pods.pop((space, name), None)
        else:
            pods[(space, name)] = r.json()["spec"].get("nodeName") or ""

    for _ in range(150):
        await op()
        checkpoints.append(await store.revision())
    # concurrent writers too (guaranteed_update retries, same-key races)
    for _ in range(4):
        await asyncio.gather(*(op() for _ in range(8)), return_exceptions=False)
        checkpoints.append(await store.revision())

    final = await store.revision()
    truth: dict[str, str] = {}  # ns/name -> node, from plain namespace lists (scans)
    for space in spaces:
        for item in (await api.get(f"/api/v1/namespaces/{space}/pods")).json()["items"]:
            truth[f"{space}/{item['metadata']['name']}"] = item["spec"].get("nodeName") or ""
    assert len(truth) >= 10, "the random operations left too little to compare"
    for node in nodes:
        assert await indexed(store, node) == {k for k, nd in truth.items() if nd == node}
        for space in ["", *spaces]:
            items = await assert_same_as_scan(store, space, node, final)
            assert names(items) == sorted(k for k, nd in truth.items() if nd == node and (not space or k.startswith(space + "/")))
            await assert_same_as_scan(store, space, node, final, limit=2, labels="app=web")
            await assert_same_as_scan(store, space, node, final, limit=3, more_fields="status.phase=Running")
    # and at earlier revisions: the index was right at every point of the history
    for rev in rng.sample(checkpoints, 30):
        for node in nodes:
            for space in ("", rng.choice(spaces)):
                await assert_same_as_scan(store, space, node, rev, limit=rng.choice([0, 2]))


# ---- informers and the publisher ----------------------------------------------------------------
async def test_kubelet_style_informer_syncs(cluster: Cluster, api: httpx.AsyncClient, ns: str) -> None:
    node = node_name()
    base = f"/api/v1/namespaces/{ns}/pods"
    for i in range(5):
        assert (await api.post(base, json=pod(f"early{i}", node if i % 2 == 0 else ""))).status_code == 201
    bus = Bus(cluster.nats.url, "test-nodeindex", cluster.bus_options())
    client = cluster.api_client()
    informer = Informer(bus, client, PODS, field_selector=f"spec.nodeName={node}",
                        subject=f"kube.nodes.{busmod.token(node)}.pods.>", resync_period=3600)
    try:
        await bus.connect()
        await informer.start()
        await informer.wait_synced(10)
        assert sorted(key_of(o) for o in informer.list()) == [f"{ns}/early0", f"{ns}/early2", f"{ns}/early4"]
        await api.post(f"{base}/early1/binding", json={"target": {"kind": "Node", "name": node}})
        await api.post(base, json=pod("late", node))
        await api.delete(f"{base}/early0", params={"gracePeriodSeconds": 0})
        await api.delete(f"{base}/early2")  # graceful: stays, with a deletionTimestamp

        async def converged() -> bool:
            lst = await client.list(PODS, "", field_selector=f"spec.nodeName={node}")
            want = {key_of(o): o["metadata"]["resourceVersion"] for o in lst["items"]}
            return {key_of(o): o["metadata"]["resourceVersion"] for o in informer.list()} == want
        await eventually(converged, "the informer's cache equals the node's list")
        assert sorted(key_of(o) for o in informer.list()) == [f"{ns}/early1", f"{ns}/early2", f"{ns}/early4", f"{ns}/late"]
        relists = informer.relists
        informer.request_relist("test")
        await eventually(lambda: informer.relists > relists, "a relist")
        await eventually(converged, "the cache after a relist")
    finally:
        await informer.stop()
        await client.close()
        await bus.close()


async def test_publisher_never_publishes_index_keys(cluster: Cluster, api: httpx.AsyncClient, ns: str,
                                                    store: CountingStore) -> None:
    assert messages_for(WatchEvent(index_key("n1", ns, "p"), b"", None, 7)) == []
    assert messages_for(WatchEvent(index_key("n1", ns, "p"), None, b"", 8)) == []
    assert messages_for(WatchEvent(POD_INDEX_MARKER, b"{}", None, 9)) == []
    bus = Bus(cluster.nats.url, "test-nodeindex-pub", cluster.bus_options())
    await bus.connect()
    got: list[Message] = []

    async def handler(m: Message) -> None:
        got.append(m)
    try:
        await bus.subscribe(">", handler)
        await bus.flush()
        node = node_name()
        base = f"/api/v1/namespaces/{ns}/pods"
        revs = [int((await api.post(base, json=pod("a", node))).json()["metadata"]["resourceVersion"])]
        revs.append(int((await api.post(base, json=pod("b"))).json()["metadata"]["resourceVersion"]))
        await api.post(f"{base}/b/binding", json={"target": {"kind": "Node", "name": node}})
        revs.append(int((await api.get(f"{base}/b")).json()["metadata"]["resourceVersion"]))
        revs.append(int((await api.delete(f"{base}/a", params={"gracePeriodSeconds": 0})).json()["metadata"]["resourceVersion"]))
        assert await indexed(store, node) == {f"{ns}/b"}
        # pod events on the events and node subjects, nothing else
        await eventually(lambda: len([m for m in got if m.subject.startswith("kube.events.")]) >= 4, "the pod events")
        await asyncio.sleep(0.5)
        mine = [m for m in got if m.subject.startswith(("kube.events.", "kube.nodes."))]
        assert all(m.subject.startswith((f"kube.events.core.pods.{ns}.", f"kube.nodes.{node}.pods.{ns}.")) for m in mine), \
            [m.subject for m in mine]
        assert sorted({m.revision for m in mine}) == revs
        assert not any("index" in m.subject for m in got)
    finally:
        await bus.close()


# ---- backfill ---------------------------------------------------------------------------------
def raw_pod(ns: str, name: str, node: str, labels: dict[str, str] | None = None) -> bytes:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1.35"}], "restartPolicy": "Always"}
    if node:
        spec["nodeName"] = node
    return orjson.dumps({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                                      "creationTimestamp": "2024-01-01T00:00:00Z", "labels": labels or {"app": "web"}},
                         "spec": spec, "status": {"phase": "Running"}})


@pytest.fixture(scope="module")
def etcd() -> Iterator[Etcd]:
    e = Etcd(Path(tempfile.mkdtemp(prefix="kubenats-nodeindex-")))
    e.start()
    try:
        yield e
    finally:
        e.stop()


async def test_backfill_guards_against_concurrent_writes(etcd: Etcd) -> None:
    store = Store([etcd.url])
    await store.open()
    try:
        tag = uuid.uuid4().hex[:6]
        ns, node, moved_to = f"bf-{tag}", f"n-{tag}", f"m-{tag}"
        for i in range(5):
            await store.create(storage_key(PODS, ns, f"p{i}"), raw_pod(ns, f"p{i}", node if i != 4 else ""))
        objects = Objects(store)
        assert not await objects.node_index_ready()
        # until the marker exists lists scan: the pods without index keys are listed
        body = await objects.list(PODS, ns, field_selector=f"spec.nodeName={node}")
        assert names(body["items"]) == [f"{ns}/p{i}" for i in range(4)]

        kvs, _rev, _left = await store.list(storage_key(PODS, ns))
        # after this page was read: p1 is deleted and p2 moves to another node (both by writers
        # that knew nothing of the keys the backfill is about to write)
        p1 = next(kv for kv in kvs if kv.key.endswith("/p1"))
        p2 = next(kv for kv in kvs if kv.key.endswith("/p2"))
        await store.delete(p1.key, p1.mod_revision)
        await store.update(p2.key, raw_pod(ns, "p2", moved_to), p2.mod_revision)
        assert await objects._index_batch(kvs) == 3
        assert await indexed(store, node) == {f"{ns}/p0", f"{ns}/p3"}
        assert await indexed(store, moved_to) == {f"{ns}/p2"}

        assert await objects.backfill_node_index() is True
        assert await objects.backfill_node_index() is False
        assert await store.get(POD_INDEX_MARKER) is not None
        assert await Objects(store).node_index_ready()
        body = await objects.list(PODS, ns, field_selector=f"spec.nodeName={node}")
        assert names(body["items"]) == [f"{ns}/p0", f"{ns}/p3"]
    finally:
        await store.close()


async def test_encrypting_store_passes_the_new_operations_through(etcd: Etcd) -> None:
    store = EncryptingStore([etcd.url], SecretBox([("k1", os.urandom(32))]))
    await store.open()
    try:
        tag = uuid.uuid4().hex[:6]
        secret = f"/registry/secrets/{tag}/s"
        rev = await store.create(secret, b'{"data":1}', also=[Put(f"/kubenats/test/{tag}/a", b"", None)])
        raw = Store([etcd.url])
        await raw.open()
        try:
            stored = await raw.get(secret)
            assert stored is not None and stored.value.startswith(SecretBox.PREFIX)
        finally:
            await raw.close()
        got = await store.get_many([secret, f"/kubenats/test/{tag}/a", f"/kubenats/test/{tag}/none"], rev)
        assert [kv.value if kv else None for kv in got] == [b'{"data":1}', b"", None]
        rev = await store.update(secret, b'{"data":2}', rev, also=[Put(f"/kubenats/test/{tag}/a", None, None)])
        assert (await store.keys(f"/kubenats/test/{tag}/"))[0] == []
        await store.delete(secret, rev, also=[Put(f"/kubenats/test/{tag}/b", b"", None)])
        assert (await store.keys(f"/kubenats/test/{tag}/"))[0] == [f"/kubenats/test/{tag}/b"]
        with pytest.raises(ValueError):
            await store.create(secret, b"{}", also=[Put("/kubenats/test/x", b"", 0)])
        many = [f"/kubenats/test/{tag}/m{i:03d}" for i in range(300)]
        await store.txn([Put(k, b"v", None) for k in many[:100]])
        await store.txn([Put(k, b"v", None) for k in many[100:200]])
        await store.txn([Put(k, b"v", None) for k in many[200:]])
        got = await store.get_many(many, 0)
        assert [kv.key for kv in got if kv] == many
    finally:
        await store.close()


@pytest.mark.slow
async def test_backfill_at_startup_then_lists_publisher_and_compaction() -> None:
    c = Cluster()
    c.etcd.start()
    c.nats.start()
    store = CountingStore(c.etcd.url)
    await store.open()
    bus = Bus(c.nats.url, "test", c.bus_options())
    try:
        expected: dict[str, set[str]] = {}
        for space in ("default", "apps"):
            ns_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": space, "uid": str(uuid.uuid4())},
                      "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            await store.create(storage_key(BY_PLURAL[("", "namespaces")], None, space), orjson.dumps(ns_obj))
            for i in range(130):  # more than one backfill batch
                node = f"node-{i % 5}" if i % 7 else ""
                await store.create(storage_key(PODS, space, f"p{i:03d}"), raw_pod(space, f"p{i:03d}", node))
                if node:
                    expected.setdefault(node, set()).add(f"{space}/p{i:03d}")
        # a stale key from who knows where: never listed
        await store.create(index_key("node-1", "default", "ghost"), b"")
        assert not await Objects(store).node_index_ready()

        await asyncio.to_thread(c.apiserver.start)

        async def marked() -> bool:
            return await store.get(POD_INDEX_MARKER) is not None
        await eventually(marked, "the backfill marker", 60)
        log = c.apiserver.log.read_text()
        line = next(li for li in log.splitlines() if "pod_index_backfilled" in li)
        assert '"pods":260' in line and '"indexed":' in line and "duration_ms" in line, line
        for node, want in expected.items():
            extra = {"default/ghost"} if node == "node-1" else set()
            assert await indexed(store, node) == want | extra

        async with httpx.AsyncClient(**c.admin_kwargs(), timeout=30) as api:
            for node, want in expected.items():
                r = await api.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"})
                assert r.status_code == 200, r.text
                assert names(r.json()["items"]) == sorted(want)
                r = await api.get("/api/v1/namespaces/apps/pods", params={"fieldSelector": f"spec.nodeName={node}"})
                assert names(r.json()["items"]) == sorted(w for w in want if w.startswith("apps/"))
            now = await store.revision()
            for node in expected:
                for space in ("", "default", "apps"):
                    await assert_same_as_scan(store, space, node, now, limit=7)
            # writes after the backfill keep it
            r = await api.post("/api/v1/namespaces/apps/pods", json=pod("new", "node-0"))
            assert r.status_code == 201, r.text
            r = await api.delete("/api/v1/namespaces/apps/pods/p001", params={"gracePeriodSeconds": 0})
            assert r.status_code == 200, r.text
            assert await indexed(store, "node-0") == (expected["node-0"] | {"apps/new"})
            assert "apps/p001" not in await indexed(store, "node-1")

            # the stream holds one message per /registry/ change after its resync point, none for index keys
            await bus.connect()
            head = await store.revision()

            async def caught_up() -> bool:
                got = await stream_contents(bus)
                return bool(got) and got[-1][0] >= int(r.json()["metadata"]["resourceVersion"])
            await eventually(caught_up, "the publisher", 20)
            got = await stream_contents(bus)
            assert got[0][1] == busmod.RESYNC_SUBJECT
            history = [h for h in await etcd_history(c.etcd.url, head) if h[0] > got[0][0]]
            assert got[1:] == history
            assert all(s.startswith(("kube.events.", "kube.nodes.")) for _, s in got[1:])

            # a continue token older than the compaction point: 410 Expired, as for a scan
            r = await api.get("/api/v1/pods", params={"fieldSelector": "spec.nodeName=node-2", "limit": 3})
            token = r.json()["metadata"]["continue"]
            assert (await api.post("/api/v1/namespaces/apps/pods", json=pod("newer", "node-2"))).status_code == 201
            await store.compact(await store.revision())
            r = await api.get("/api/v1/pods", params={"fieldSelector": "spec.nodeName=node-2", "continue": token})
            assert r.status_code == 410, r.text
            assert r.json()["reason"] == "Expired"
            r = await api.get("/api/v1/pods", params={"fieldSelector": "spec.nodeName=node-2"})
            assert r.status_code == 200 and "apps/newer" in names(r.json()["items"])
    finally:
        await bus.close()
        await store.close()
        c.stop()


def test_index_keys_cannot_collide_with_resources() -> None:
    for res in BY_PLURAL.values():
        assert not storage_key(res, None).startswith(POD_INDEX_PREFIX)
        assert not POD_INDEX_PREFIX.startswith(storage_key(res, None))
    assert not POD_INDEX_PREFIX.startswith("/registry/") and not POD_INDEX_MARKER.startswith(POD_INDEX_PREFIX)


async def test_kubectl_pages_a_node_list(cluster: Cluster, api: httpx.AsyncClient, ns: str,
                                         tmp_path: Path) -> None:
    node = node_name()
    for i in range(5):
        assert (await api.post(f"/api/v1/namespaces/{ns}/pods", json=pod(f"k{i}", node))).status_code == 201
    assert (await api.post(f"/api/v1/namespaces/{ns}/pods", json=pod("k-other", node_name()))).status_code == 201
    argv = [shutil.which("kubectl") or "/usr/bin/kubectl", "--kubeconfig", str(cluster.kubeconfig()),
            "--cache-dir", str(tmp_path / "cache"), "get", "pods", "-A", "--field-selector", f"spec.nodeName={node}",
            "--chunk-size", "2", "-o", "name"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KUBE")}, "HOME": str(tmp_path)}
    out = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"pod/k{i}" for i in range(5)]
