"""The ReplicaSet controller against a real apiserver, etcd and NATS, run in-process.

Scale up and down (never more pods than asked for, sampled all along), replacement of a deleted
pod, adoption of matching orphans, release of pods whose labels stop matching, and status
(readyReplicas, availableReplicas with minReadySeconds) with the fake kubelet."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.controllers.main import ControllerManager
from shared.client import ApiClient
from tests.controllers.conftest import PODS, RS, bare_pod, eventually, owner_uid, replicaset
from tests.controllers.fake_kubelet import FakeKubelet

EVENTS_RES = ("", "events")


async def live_pods(client: ApiClient, ns: str) -> list[dict[str, Any]]:
    return [p for p in (await client.list(PODS, ns))["items"] if not p["metadata"].get("deletionTimestamp")]


async def owned_pods(client: ApiClient, ns: str, rs: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in await live_pods(client, ns) if owner_uid(p) == rs["metadata"]["uid"]]


async def wait_rs(client: ApiClient, ns: str, name: str, pods: int, **status: int) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        rs = await client.get(RS, ns, name)
        st = rs.get("status") or {}
        if len(await owned_pods(client, ns, rs)) != pods or st.get("replicas", 0) != pods:
            return None
        if st.get("observedGeneration") != rs["metadata"]["generation"]:
            return None
        if any(st.get(k, 0) != v for k, v in status.items()):
            return None
        return rs
    result: dict[str, Any] = await eventually(check, f"replicaset {name} with {pods} pods and {status}")
    return result


async def scale(client: ApiClient, ns: str, name: str, replicas: int) -> None:
    await client.patch(RS, ns, name, {"spec": {"replicas": replicas}})


async def test_scale_up_and_down_never_overshoots(manager: ControllerManager, client: ApiClient, ns: str) -> None:
    peak = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(await live_pods(client, ns)))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    try:
        await client.create(RS, ns, replicaset("web", 20))
        rs = await wait_rs(client, ns, "web", 20)
        assert peak <= 20
        pods = await owned_pods(client, ns, rs)
        assert all(p["metadata"]["generateName"] == "web-" for p in pods)
        assert all(p["metadata"]["labels"] == {"app": "web"} for p in pods)
        ref = pods[0]["metadata"]["ownerReferences"][0]
        assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": rs["metadata"]["uid"],
                       "controller": True, "blockOwnerDeletion": True}
        await scale(client, ns, "web", 25)
        await wait_rs(client, ns, "web", 25)
        await scale(client, ns, "web", 3)
        rs = await wait_rs(client, ns, "web", 3)
        assert peak <= 25
        assert rs["status"].get("fullyLabeledReplicas") == 3
    finally:
        stop.set()
        await sampler

    async def events() -> set[str]:
        items = (await client.request("GET", f"/api/v1/namespaces/{ns}/events"))["items"]
        return {e["reason"] for e in items if e["involvedObject"].get("name") == "web"}
    await eventually(lambda: _has(events, {"SuccessfulCreate", "SuccessfulDelete"}), "SuccessfulCreate/Delete events")


async def _has(get: Any, want: set[str]) -> bool:
    return bool(want <= await get())


async def test_deleted_pod_is_replaced(manager: ControllerManager, client: ApiClient, ns: str) -> None:
    await client.create(RS, ns, replicaset("r", 3))
    rs = await wait_rs(client, ns, "r", 3)
    victim = (await owned_pods(client, ns, rs))[0]["metadata"]["name"]
    await client.delete(PODS, ns, victim)
    rs = await wait_rs(client, ns, "r", 3)
    assert victim not in {p["metadata"]["name"] for p in await owned_pods(client, ns, rs)}


async def test_matching_orphans_are_adopted(manager: ControllerManager, client: ApiClient, ns: str) -> None:
    for i in range(2):
        await client.create(PODS, ns, bare_pod(f"orphan-{i}", {"app": "adopt"}))
    await client.create(PODS, ns, bare_pod("stranger", {"app": "other"}))
    await client.create(RS, ns, replicaset("adopt", 3))
    rs = await wait_rs(client, ns, "adopt", 3)
    names = {p["metadata"]["name"] for p in await owned_pods(client, ns, rs)}
    assert {"orphan-0", "orphan-1"} <= names
    stranger = await client.get(PODS, ns, "stranger")
    assert not stranger["metadata"].get("ownerReferences")
    assert len(await live_pods(client, ns)) == 4


async def test_pod_whose_labels_change_is_released(manager: ControllerManager, client: ApiClient, ns: str) -> None:
    await client.create(RS, ns, replicaset("rel", 2))
    rs = await wait_rs(client, ns, "rel", 2)
    pod = (await owned_pods(client, ns, rs))[0]["metadata"]["name"]
    await client.patch(PODS, ns, pod, {"metadata": {"labels": {"app": "debug"}}})
    rs = await wait_rs(client, ns, "rel", 2)

    async def released() -> bool:
        return not (await client.get(PODS, ns, pod))["metadata"].get("ownerReferences")
    await eventually(released, "the relabelled pod loses its owner reference")
    assert pod not in {p["metadata"]["name"] for p in await owned_pods(client, ns, rs)}
    assert len(await live_pods(client, ns)) == 3


async def test_ready_and_available_with_min_ready_seconds(manager: ControllerManager, client: ApiClient, ns: str,
                                                          kubelet: FakeKubelet) -> None:
    await client.create(RS, ns, replicaset("avail", 2, minReadySeconds=2))
    await wait_rs(client, ns, "avail", 2, readyReplicas=2, availableReplicas=0)
    started = time.monotonic()
    await wait_rs(client, ns, "avail", 2, readyReplicas=2, availableReplicas=2)
    # becomes available by the requeue after minReadySeconds, not by a later event or resync
    assert time.monotonic() - started < 5


async def test_scale_down_prefers_unready_pods(manager: ControllerManager, client: ApiClient, ns: str,
                                               kubelet: FakeKubelet) -> None:
    await client.create(RS, ns, replicaset("order", 2))
    rs = await wait_rs(client, ns, "order", 2, readyReplicas=2)
    ready = {p["metadata"]["name"] for p in await owned_pods(client, ns, rs)}
    kubelet.bind = False  # the next pods stay pending and unready
    await scale(client, ns, "order", 4)
    await wait_rs(client, ns, "order", 4, readyReplicas=2)
    await scale(client, ns, "order", 2)
    rs = await wait_rs(client, ns, "order", 2)
    assert {p["metadata"]["name"] for p in await owned_pods(client, ns, rs)} == ready
