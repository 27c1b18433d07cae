"""The Endpoints and EndpointSlice controllers against the package's real apiserver, with fake nodes.

A Service with a named targetPort over a ReplicaSet's pods: both objects list the ready pods'
127.x addresses with the port resolved from the pods; a pod whose readiness fails moves to
notReadyAddresses (ready=false in the slice); a deleted pod leaves; scaling up shows the new
pods within about a second of their readiness; a selectorless Service is left alone."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.controllers.main import ControllerManager
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from tests.controllers.conftest import PODS, RS, eventually, is_ready, replicaset
from tests.controllers.fake_nodes import FakeNodes
from tests.servers import Cluster

SERVICES = BY_PLURAL[("", "services")]
ENDPOINTS = BY_PLURAL[("", "endpoints")]
SLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]


@pytest.fixture
async def nodes(cluster: Cluster, client: ApiClient, ns: str) -> AsyncIterator[FakeNodes]:
    bus = Bus(cluster.nats.url, "test-fake-nodes", cluster.bus_options())
    await bus.connect()
    fake = await FakeNodes(client, bus, ns, prefix=ns).start()
    for i in range(2):
        await fake.add(str(i))
    yield fake
    await fake.stop()
    await bus.close()


def web_rs(replicas: int) -> dict[str, Any]:
    rs = replicaset("web", replicas)
    rs["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]
    return rs


def service(name: str, selector: dict[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "web", "port": 80, "targetPort": "http"}]}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"tier": "front"}},
            "spec": spec}


async def state(client: ApiClient, ns: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    """(Endpoints as ip -> ready/not, slice endpoints, pod name -> ip)."""
    ips: dict[str, Any] = {}
    try:
        ep = await client.get(ENDPOINTS, ns, "web")
    except Exception:
        ep = {}
    for s in ep.get("subsets") or []:
        assert s["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
        for a in s.get("addresses") or []:
            ips[a["ip"]] = ("ready", a["targetRef"]["name"], a.get("nodeName"))
        for a in s.get("notReadyAddresses") or []:
            ips[a["ip"]] = ("notready", a["targetRef"]["name"], a.get("nodeName"))
    slices = (await client.list(SLICES, ns, label_selector="kubernetes.io/service-name=web"))["items"]
    eps = [e for s in slices for e in s.get("endpoints") or []]
    pods = {p["metadata"]["name"]: (p.get("status") or {}).get("podIP", "") for p in (await client.list(PODS, ns))["items"]
            if not p["metadata"].get("deletionTimestamp")}
    return ips, eps, pods


async def wait_ready(client: ApiClient, ns: str, count: int, not_ready: int = 0) -> tuple[Any, Any, Any]:
    async def check() -> Any:
        ips, eps, pods = await state(client, ns)
        ready = [ip for ip, v in ips.items() if v[0] == "ready"]
        slice_ready = [e for e in eps if e["conditions"]["ready"]]
        if len(ready) == count and len(slice_ready) == count and len(ips) == count + not_ready \
                and len(eps) >= count + not_ready and len(pods) == count + not_ready:
            return ips, eps, pods
        return None
    result: tuple[Any, Any, Any] = await eventually(check, f"{count} ready endpoints, {not_ready} not ready", timeout=20)
    return result


async def test_endpoints_and_slices_follow_pods(manager: ControllerManager, client: ApiClient, ns: str,
                                                nodes: FakeNodes) -> None:
    await client.create(SERVICES, ns, service("web", {"app": "web"}))
    await client.create(SERVICES, ns, service("manual", None))
    await client.create(RS, ns, web_rs(3))
    ips, eps, pods = await wait_ready(client, ns, 3)
    assert set(ips) == set(pods.values())
    assert all(ip.startswith("127.77.") for ip in ips)
    assert {v[1] for v in ips.values()} == set(pods)
    assert all(v[2] in nodes.nodes for v in ips.values())
    slices = (await client.list(SLICES, ns, label_selector="kubernetes.io/service-name=web"))["items"]
    assert len(slices) == 1
    s = slices[0]
    svc = await client.get(SERVICES, ns, "web")
    assert s["metadata"]["name"].startswith("web-")
    assert s["metadata"]["labels"] == {"kubernetes.io/service-name": "web", "tier": "front",
                                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                 "uid": svc["metadata"]["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    for e in eps:
        assert e["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert e["targetRef"]["kind"] == "Pod" and e["nodeName"] in nodes.nodes
    ep = await client.get(ENDPOINTS, ns, "web")
    assert ep["metadata"]["labels"] == {"tier": "front"}

    # a pod whose readiness fails moves to notReadyAddresses / ready=false
    victim = sorted(pods)[0]
    nodes.set_ready(f"{ns}/{victim}", False)
    ips, eps, _ = await wait_ready(client, ns, 2, not_ready=1)
    assert ips[pods[victim]][0] == "notready"
    bad = [e for e in eps if e["targetRef"]["name"] == victim]
    assert bad[0]["conditions"] == {"ready": False, "serving": False, "terminating": False}

    # a deleted pod leaves (the ReplicaSet replaces it)
    await client.delete(PODS, ns, victim)
    ips, eps, pods = await wait_ready(client, ns, 3)
    assert victim not in {v[1] for v in ips.values()}

    # scaling to 5: the new pods appear about as soon as they are ready
    nodes.ready_delay = 0.3
    await client.patch(RS, ns, "web", {"spec": {"replicas": 5}})
    pods_ready_at = endpoints_at = 0.0

    async def caught_up() -> bool:
        nonlocal pods_ready_at, endpoints_at
        now = time.monotonic()
        live = [p for p in (await client.list(PODS, ns))["items"] if not p["metadata"].get("deletionTimestamp")]
        if not pods_ready_at and len(live) == 5 and all(is_ready(p) for p in live):
            pods_ready_at = now
        ips, eps, _ = await state(client, ns)
        if not endpoints_at and sum(1 for v in ips.values() if v[0] == "ready") == 5 \
                and sum(1 for e in eps if e["conditions"]["ready"]) == 5:
            endpoints_at = now
        return bool(pods_ready_at and endpoints_at)
    await eventually(caught_up, "5 ready pods in both objects", interval=0.02)
    assert endpoints_at - pods_ready_at < 1.0, endpoints_at - pods_ready_at
    assert len((await client.list(SLICES, ns, label_selector="kubernetes.io/service-name=web"))["items"]) == 1

    # the selectorless service got nothing from the controllers
    with pytest.raises(Exception, match="not found"):
        await client.get(ENDPOINTS, ns, "manual")
    assert not (await client.list(SLICES, ns, label_selector="kubernetes.io/service-name=manual"))["items"]

    # deleting the service deletes its Endpoints (the slices go with the garbage collector)
    await client.delete(SERVICES, ns, "web")

    async def gone() -> bool:
        _, eps, _ = await state(client, ns)
        try:
            await client.get(ENDPOINTS, ns, "web")
            return False
        except Exception:
            return not eps
    await eventually(gone, "Endpoints and slices of a deleted service are gone")


async def test_no_pods_gives_an_empty_placeholder_slice(manager: ControllerManager, client: ApiClient, ns: str) -> None:
    await client.create(SERVICES, ns, service("web", {"app": "nothing"}))

    async def placeholder() -> Any:
        items = (await client.list(SLICES, ns, label_selector="kubernetes.io/service-name=web"))["items"]
        return items if len(items) == 1 and not items[0].get("endpoints") else None
    await eventually(placeholder, "one empty slice")
    ep = await eventually(lambda: _get(client, ENDPOINTS, ns, "web"), "an Endpoints object without subsets")
    assert not ep.get("subsets")


async def _get(client: ApiClient, res: Any, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return await client.get(res, ns, name)
    except Exception:
        return None
