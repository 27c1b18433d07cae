"""The DaemonSet controller against the package's real apiserver, with fake nodes.

One pod per eligible node (nodeSelector, NoSchedule taints not tolerated), following nodes as
they join, change labels, get a NoExecute taint or leave; the pods carry the daemon tolerations
and a `metadata.name` node affinity; the status counts; a rolling update replaces every pod
without ever having more than maxUnavailable of them unavailable; OnDelete leaves pods alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.controllers.daemonset_util import HASH_LABEL
from services.controllers.main import ControllerManager
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from tests.controllers.conftest import PODS, eventually, is_ready, template
from tests.controllers.fake_nodes import FakeNodes
from tests.servers import Cluster

DS = BY_PLURAL[("apps", "daemonsets")]
NODES = BY_PLURAL[("", "nodes")]


@pytest.fixture
async def nodes(cluster: Cluster, client: ApiClient, ns: str) -> AsyncIterator[FakeNodes]:
    bus = Bus(cluster.nats.url, "test-fake-nodes", cluster.bus_options())
    await bus.connect()
    fake = await FakeNodes(client, bus, ns, prefix=ns).start()
    yield fake
    for ds in (await client.list(DS, ns))["items"]:  # nodes are cluster-wide: leave no DaemonSet behind
        await client.delete(DS, ns, ds["metadata"]["name"])
    await fake.stop()
    await bus.close()


def daemonset(name: str, **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels}, "template": template(labels), **spec}}


async def placement(client: ApiClient, ns: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in (await client.list(PODS, ns))["items"]:
        if not p["metadata"].get("deletionTimestamp"):
            out.setdefault(p["spec"].get("nodeName") or "", []).append(p)
    return out


async def wait_on(client: ApiClient, ns: str, want: set[str], what: str) -> dict[str, list[dict[str, Any]]]:
    async def check() -> Any:
        got = await placement(client, ns)
        ok = set(got) == want and all(len(v) == 1 and is_ready(v[0]) for v in got.values())
        return (got,) if ok else None
    result: tuple[dict[str, list[dict[str, Any]]]] = await eventually(check, what, timeout=20)
    return result[0]


async def wait_status(client: ApiClient, ns: str, name: str, **want: int) -> dict[str, Any]:
    async def check() -> Any:
        ds = await client.get(DS, ns, name)
        st = ds.get("status") or {}
        ok = all(int(st.get(k) or 0) == v for k, v in want.items())
        return ds if ok and st.get("observedGeneration") == ds["metadata"]["generation"] else None
    result: dict[str, Any] = await eventually(check, f"status {want}", timeout=20)
    return result


async def test_daemonset_follows_nodes(manager: ControllerManager, client: ApiClient, ns: str,
                                       nodes: FakeNodes) -> None:
    worker = {"role": "worker"}
    n0 = await nodes.add("0", worker)
    n1 = await nodes.add("1", worker)
    await nodes.add("2", worker, taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    await nodes.add("3")  # no role label
    ds = daemonset("agent")
    ds["spec"]["template"]["spec"]["nodeSelector"] = worker
    await client.create(DS, ns, ds)
    got = await wait_on(client, ns, {n0, n1}, "pods on the two plain worker nodes")
    pod = got[n0][0]
    assert pod["metadata"]["generateName"] == "agent-"
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n0]}]}]}
    tolerations = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"), ("node.kubernetes.io/unschedulable", "NoSchedule")} \
        <= tolerations
    assert pod["metadata"]["labels"][HASH_LABEL]
    await wait_status(client, ns, "agent", desiredNumberScheduled=2, currentNumberScheduled=2, numberReady=2,
                      numberAvailable=2, updatedNumberScheduled=2, numberMisscheduled=0)

    n4 = await nodes.add("4", worker)  # joins
    await wait_on(client, ns, {n0, n1, n4}, "a pod on the new node")
    await nodes.set_labels(n1, {"role": None})  # stops matching the nodeSelector
    await wait_on(client, ns, {n0, n4}, "the pod leaves the relabelled node")
    node = await client.get(NODES, "", n0)  # a NoExecute taint the pod does not tolerate
    node["spec"]["taints"] = [{"key": "evict", "value": "yes", "effect": "NoExecute"}]
    await client.update(NODES, node)
    await wait_on(client, ns, {n4}, "the pod leaves the NoExecute-tainted node")
    await nodes.remove(n4)  # leaves the cluster
    await wait_on(client, ns, set(), "the pod of the removed node is gone")
    await wait_status(client, ns, "agent", desiredNumberScheduled=0, currentNumberScheduled=0)


async def test_rolling_update_respects_max_unavailable(manager: ControllerManager, client: ApiClient, ns: str,
                                                       nodes: FakeNodes) -> None:
    names = {await nodes.add(str(i)) for i in range(4)}
    nodes.ready_delay = 0.3
    ds = daemonset("roll", updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
    await client.create(DS, ns, ds)
    before = await wait_on(client, ns, names, "one pod per node")
    old_hash = next(iter(before.values()))[0]["metadata"]["labels"][HASH_LABEL]
    worst = len(names)
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal worst
        while not stop.is_set():
            got = await placement(client, ns)
            worst = min(worst, sum(1 for v in got.values() for p in v if is_ready(p)))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        await client.patch(DS, ns, "roll", {"spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": "busybox:1.36"}]}}}})

        async def updated() -> Any:
            got = await placement(client, ns)
            pods = [p for v in got.values() for p in v]
            return len(pods) == len(names) and set(got) == names and all(
                is_ready(p) and p["spec"]["containers"][0]["image"] == "busybox:1.36" for p in pods)
        await eventually(updated, "every pod replaced by the new template", timeout=30)
    finally:
        stop.set()
        await sampler
    assert worst >= len(names) - 1, worst
    st = (await wait_status(client, ns, "roll", updatedNumberScheduled=4, numberAvailable=4))["status"]
    assert st["desiredNumberScheduled"] == 4
    new_hash = next(iter((await placement(client, ns)).values()))[0]["metadata"]["labels"][HASH_LABEL]
    assert new_hash != old_hash


async def test_on_delete_leaves_old_pods(manager: ControllerManager, client: ApiClient, ns: str,
                                         nodes: FakeNodes) -> None:
    names = {await nodes.add(str(i)) for i in range(2)}
    await client.create(DS, ns, daemonset("od", updateStrategy={"type": "OnDelete"}))
    before = await wait_on(client, ns, names, "one pod per node")
    await client.patch(DS, ns, "od", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "busybox:1.36"}]}}}})
    await wait_status(client, ns, "od", updatedNumberScheduled=0, currentNumberScheduled=2)
    victim = next(iter(before.values()))[0]
    await client.delete(PODS, ns, victim["metadata"]["name"])

    async def replaced() -> Any:
        got = await placement(client, ns)
        images = sorted(p["spec"]["containers"][0]["image"] for v in got.values() for p in v if is_ready(p))
        return images == ["busybox:1.35", "busybox:1.36"]
    await eventually(replaced, "only the deleted pod comes back updated")
    await wait_status(client, ns, "od", updatedNumberScheduled=1, currentNumberScheduled=2)
