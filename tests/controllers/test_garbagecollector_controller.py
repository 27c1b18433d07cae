"""Cascading deletion in its three modes, and collection of objects whose owner is gone."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from services.controllers.main import ControllerManager
from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from tests.controllers.conftest import DEPLOY, PODS, RS, deployment, eventually, owner_uid
from tests.controllers.fake_kubelet import FakeKubelet

CM = BY_PLURAL[("", "configmaps")]


async def family(client: ApiClient, ns: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    return ((await client.list(DEPLOY, ns))["items"], (await client.list(RS, ns))["items"],
            (await client.list(PODS, ns))["items"])


async def make_family(client: ApiClient, ns: str, name: str = "fam", replicas: int = 3) -> dict[str, Any]:
    d = await client.create(DEPLOY, ns, deployment(name, replicas))

    async def ready() -> bool:
        _, rss, pods = await family(client, ns)
        return len(rss) == 1 and len(pods) == replicas and all(owner_uid(p) == rss[0]["metadata"]["uid"] for p in pods)
    await eventually(ready, f"deployment {name} with its replica set and {replicas} pods")
    return d


async def exists(client: ApiClient, res: Any, ns: str, name: str) -> bool:
    try:
        await client.get(res, ns, name)
        return True
    except ApiError as e:
        if e.code == 404:
            return False
        raise


async def test_background_deletes_dependents(manager: ControllerManager, client: ApiClient, ns: str) -> None:
    await make_family(client, ns)
    await client.delete(DEPLOY, ns, "fam", propagation="Background")
    assert not await exists(client, DEPLOY, ns, "fam")  # the owner goes at once

    async def all_gone() -> bool:
        ds, rss, pods = await family(client, ns)
        return not ds and not rss and not pods
    await eventually(all_gone, "replica set and pods collected")


async def test_foreground_deletes_dependents_first(manager: ControllerManager, client: ApiClient, ns: str,
                                                   kubelet: FakeKubelet) -> None:
    await make_family(client, ns)  # pods bound and running: they terminate gracefully
    violations: list[str] = []
    seen_waiting = False
    done = asyncio.Event()

    async def watch_order() -> None:
        nonlocal seen_waiting
        while not done.is_set():
            ds, rss, pods = await family(client, ns)
            if ds and ds[0]["metadata"].get("deletionTimestamp"):
                seen_waiting = seen_waiting or "foregroundDeletion" in (ds[0]["metadata"].get("finalizers") or [])
            if not ds and (rss or pods):
                violations.append(f"deployment gone while {len(rss)} replica sets and {len(pods)} pods remain")
            if not rss and pods:
                violations.append(f"replica set gone while {len(pods)} pods remain")
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch_order())
    try:
        await client.delete(DEPLOY, ns, "fam", propagation="Foreground")
        d = await client.get(DEPLOY, ns, "fam")
        assert d["metadata"]["deletionTimestamp"] and "foregroundDeletion" in d["metadata"]["finalizers"]

        async def all_gone() -> bool:
            ds, rss, pods = await family(client, ns)
            return not ds and not rss and not pods
        await eventually(all_gone, "the whole family deleted, owner last")
    finally:
        done.set()
        await watcher
    assert seen_waiting
    assert violations == []


async def test_orphan_keeps_dependents(manager: ControllerManager, client: ApiClient, ns: str) -> None:
    d = await make_family(client, ns)
    _, (rs,), pods_before = await family(client, ns)
    await client.delete(DEPLOY, ns, "fam", propagation="Orphan")

    async def owner_gone() -> bool:
        return not await exists(client, DEPLOY, ns, "fam")
    await eventually(owner_gone, "the orphan finalizer removed and the deployment deleted")
    rs = await client.get(RS, ns, rs["metadata"]["name"])
    assert not [r for r in rs["metadata"].get("ownerReferences") or [] if r["uid"] == d["metadata"]["uid"]]
    await asyncio.sleep(0.3)
    _, rss, pods = await family(client, ns)
    assert len(rss) == 1 and len(pods) == 3
    assert {p["metadata"]["uid"] for p in pods} == {p["metadata"]["uid"] for p in pods_before}
    assert all(owner_uid(p) == rs["metadata"]["uid"] for p in pods)


def cm(name: str, *owners: dict[str, Any]) -> dict[str, Any]:
    refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
            for o in owners]
    return {"metadata": {"name": name, **({"ownerReferences": refs} if refs else {})}, "data": {"k": "v"}}


async def test_dependent_of_a_missing_owner_is_deleted(manager: ControllerManager, client: ApiClient, ns: str) -> None:
    ghost = {"metadata": {"name": "ghost", "uid": str(uuid.uuid4())}}
    await client.create(CM, ns, cm("haunted", ghost))
    owner = await client.create(CM, ns, cm("owner"))
    await client.create(CM, ns, cm("kept", owner))

    async def haunted_gone() -> bool:
        return not await exists(client, CM, ns, "haunted")
    await eventually(haunted_gone, "a dependent of a nonexistent owner collected")
    assert await exists(client, CM, ns, "kept")
    await client.delete(CM, ns, "owner")

    async def kept_gone() -> bool:
        return not await exists(client, CM, ns, "kept")
    await eventually(kept_gone, "the dependent collected after its owner was deleted")


async def test_dangling_reference_removed_while_another_owner_remains(manager: ControllerManager, client: ApiClient,
                                                                      ns: str) -> None:
    a = await client.create(CM, ns, cm("a"))
    b = await client.create(CM, ns, cm("b"))
    await client.create(CM, ns, cm("shared", a, b))
    await client.delete(CM, ns, "a")

    async def one_owner() -> bool:
        refs = (await client.get(CM, ns, "shared"))["metadata"].get("ownerReferences") or []
        return [r["name"] for r in refs] == ["b"]
    await eventually(one_owner, "the reference to the deleted owner removed")
    assert await exists(client, CM, ns, "shared")
    assert b["metadata"]["name"] == "b"
