"""The node lifecycle controller against the package's real apiserver, with fake nodes.

A node whose lease stops being renewed becomes Ready=Unknown with both unreachable taints after
the (test-sized) grace period, its pods are marked not ready, evicted when their
tolerationSeconds run out, and recreated by their ReplicaSet on the other nodes; the node coming
back loses the taints. A node reporting Ready=False gets the not-ready taints."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services.controllers.main import ControllerManager
from services.controllers.nodelifecycle import NodeLifecycleController
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from tests.controllers.conftest import PODS, RS, eventually, is_ready, replicaset
from tests.controllers.fake_nodes import FakeNodes, now_iso
from tests.servers import Cluster

NODES = BY_PLURAL[("", "nodes")]
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


@pytest.fixture
def fast(manager: ControllerManager) -> Iterator[NodeLifecycleController]:
    c = manager.get("nodelifecycle")
    assert isinstance(c, NodeLifecycleController)
    saved = (c.grace_period, c.monitor_period, c.eviction_rate)
    c.grace_period, c.monitor_period, c.eviction_rate = 1.5, 0.2, 100.0
    c.queue.add("monitor")
    yield c
    c.grace_period, c.monitor_period, c.eviction_rate = saved


@pytest.fixture
async def nodes(cluster: Cluster, client: ApiClient, ns: str) -> AsyncIterator[FakeNodes]:
    bus = Bus(cluster.nats.url, "test-fake-nodes", cluster.bus_options())
    await bus.connect()
    fake = await FakeNodes(client, bus, ns, prefix=ns).start()
    yield fake
    await fake.stop()
    await bus.close()


def taints(node: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["key"], t["effect"]): t for t in (node.get("spec") or {}).get("taints") or []}


def ready_condition(node: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


async def test_unreachable_node_is_tainted_and_its_pods_evicted(manager: ControllerManager, client: ApiClient,
                                                                ns: str, nodes: FakeNodes,
                                                                fast: NodeLifecycleController) -> None:
    names = [await nodes.add(str(i)) for i in range(3)]
    rs = replicaset("web", 3)
    rs["spec"]["template"]["spec"]["tolerations"] = [
        {"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2} for k in (UNREACHABLE, NOT_READY)]
    await client.create(RS, ns, rs)

    async def pods() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await client.list(PODS, ns))["items"]
        return items

    async def spread() -> Any:
        items = await pods()
        return items if len(items) == 3 and all(is_ready(p) for p in items) and \
            {p["spec"].get("nodeName") for p in items} == set(names) else None
    await eventually(spread, "3 ready pods, one per node")
    dead = names[0]
    doomed = [p["metadata"]["name"] for p in await pods() if p["spec"]["nodeName"] == dead]
    nodes.kill(dead)
    killed = time.monotonic()

    async def tainted() -> Any:
        node = await client.get(NODES, "", dead)
        t = taints(node)
        if (UNREACHABLE, "NoExecute") in t and (UNREACHABLE, "NoSchedule") in t:
            return node
        return None
    node = await eventually(tainted, "both unreachable taints", timeout=15)
    tainted_at = time.monotonic()
    assert tainted_at - killed >= 1.5
    cond = ready_condition(node)
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    assert taints(node)[(UNREACHABLE, "NoExecute")].get("timeAdded")
    for p in await pods():
        if p["metadata"]["name"] in doomed and not p["metadata"].get("deletionTimestamp"):
            assert not is_ready(p), "MarkPodsNotReady"

    async def evicted() -> bool:
        items = {p["metadata"]["name"]: p for p in await pods()}
        return all(items[n]["metadata"].get("deletionTimestamp") for n in doomed if n in items)
    await eventually(evicted, "the dead node's pods are evicted", timeout=15)
    waited = time.monotonic() - tainted_at
    assert 1.0 <= waited <= 5.0, waited
    victim = next((p for p in await pods() if p["metadata"]["name"] in doomed), None)
    if victim is not None:
        assert any(c["type"] == "DisruptionTarget" and c["reason"] == "DeletionByTaintManager"
                   for c in victim["status"]["conditions"])

    async def replaced() -> Any:
        live = [p for p in await pods() if not p["metadata"].get("deletionTimestamp")]
        return live if len(live) == 3 and all(is_ready(p) and p["spec"]["nodeName"] != dead for p in live) else None
    await eventually(replaced, "the ReplicaSet recreated the pods on the other nodes")

    await nodes.revive(dead)

    async def clean() -> bool:
        node = await client.get(NODES, "", dead)
        return not any(k in (UNREACHABLE, NOT_READY) for k, _ in taints(node)) and ready_condition(node)["status"] == "True"
    await eventually(clean, "the returning node loses its taints")

    async def confirmed() -> bool:  # the revived kubelet confirms the evictions
        return not any(p["metadata"]["name"] in doomed for p in await pods())
    await eventually(confirmed, "evicted pods are gone")


async def test_not_ready_node_gets_not_ready_taints(manager: ControllerManager, client: ApiClient, ns: str,
                                                    nodes: FakeNodes, fast: NodeLifecycleController) -> None:
    names = [await nodes.add(str(i)) for i in range(2)]
    node = await client.get(NODES, "", names[0])
    now = now_iso()
    node["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                     "message": "container runtime is down", "lastHeartbeatTime": now,
                                     "lastTransitionTime": now}]
    await client.update_status(NODES, node)

    async def tainted() -> bool:
        t = taints(await client.get(NODES, "", names[0]))
        return (NOT_READY, "NoExecute") in t and (NOT_READY, "NoSchedule") in t and (UNREACHABLE, "NoExecute") not in t
    await eventually(tainted, "both not-ready taints", timeout=10)
    assert not taints(await client.get(NODES, "", names[1]))


async def test_pods_marked_not_ready_keep_the_rest_of_their_status(manager: ControllerManager, client: ApiClient,
                                                                   ns: str, nodes: FakeNodes,
                                                                   fast: NodeLifecycleController) -> None:
    """MarkPodsNotReady patches the Ready condition of the cached (stripped) pod: nothing else of
    the pod is lost, neither the conditions and fields the controllers do not cache nor its spec."""
    name = await nodes.add("0")
    tolerations = [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3600}
                   for k in (UNREACHABLE, NOT_READY)]
    await client.create(PODS, ns, {
        "metadata": {"name": "keep", "labels": {"app": "keep"}, "annotations": {"example.com/note": "kept"}},
        "spec": {"nodeName": name, "tolerations": tolerations, "containers": [
            {"name": "c", "image": "busybox:1.35", "env": [{"name": "A", "value": "1"}], "command": ["sleep", "1d"]}]}})

    async def ready() -> Any:
        p = await client.get(PODS, ns, "keep")
        return p if is_ready(p) else None
    await eventually(ready, "the pod runs and is ready")
    extra = {"status": {"hostIP": "10.9.9.9", "qosClass": "BestEffort", "conditions": [
        {"type": "example.com/gate", "status": "True", "lastTransitionTime": now_iso()}],
        "containerStatuses": [{"name": "c", "ready": True, "restartCount": 3, "image": "busybox:1.35",
                               "imageID": "docker://sha256:1", "containerID": "docker://abc",
                               "state": {"running": {"startedAt": now_iso()}}}]}}
    await client.patch(PODS, ns, "keep", extra, patch_type="strategic", sub="status")
    before = await client.get(PODS, ns, "keep")
    ready_before = next(c for c in before["status"]["conditions"] if c["type"] == "Ready")
    nodes.kill(name)

    async def not_ready() -> Any:
        p = await client.get(PODS, ns, "keep")
        return p if not is_ready(p) else None
    after = await eventually(not_ready, "MarkPodsNotReady", timeout=15)
    ready_after = next(c for c in after["status"]["conditions"] if c["type"] == "Ready")
    assert ready_after["status"] == "False" and ready_after["lastTransitionTime"]
    assert {k: v for k, v in ready_after.items() if k not in ("status", "lastTransitionTime")} == \
        {k: v for k, v in ready_before.items() if k not in ("status", "lastTransitionTime")}, "reason, message kept"
    others = [c for c in before["status"]["conditions"] if c["type"] != "Ready"]
    assert [c for c in after["status"]["conditions"] if c["type"] != "Ready"] == others
    assert {k: v for k, v in after["status"].items() if k != "conditions"} == \
        {k: v for k, v in before["status"].items() if k != "conditions"}
    assert after["spec"] == before["spec"]
    assert {k: v for k, v in after["metadata"].items() if k != "resourceVersion"} == \
        {k: v for k, v in before["metadata"].items() if k != "resourceVersion"}
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert manager.informers.get(PODS).get(f"{ns}/keep") is not None
    assert "env" not in manager.informers.get(PODS).get(f"{ns}/keep")["spec"]["containers"][0]  # type: ignore[index]
