"""The garbage collector's decisions with fake caches and a fake API: which references are solid,
dangling or waiting, which propagation policy a collected dependent gets, orphaning, and the
foreground finalizer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.controllers.base import ControllerContext
from services.controllers.garbagecollector import FOREGROUND, ORPHAN, GarbageCollector, collected_resources
from shared.api.resources import BY_PLURAL, Resource
from shared.errors import ApiError
from shared.workqueue import WorkQueue
from tests.controllers.test_replicaset import FakeInformers

Obj = dict[str, Any]
RS = BY_PLURAL[("apps", "replicasets")]
PODS = BY_PLURAL[("", "pods")]
DEPLOY = BY_PLURAL[("apps", "deployments")]


class Api:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.calls: list[tuple[Any, ...]] = []

    def add(self, res: Resource, obj: Obj) -> Obj:
        self.objects[(res.key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj
        return obj

    async def get(self, res: Resource, ns: str, name: str) -> Obj:
        self.calls.append(("get", res.plural, name))
        try:
            return copy.deepcopy(self.objects[(res.key, ns, name)])
        except KeyError:
            raise ApiError(404, "NotFound", "not found") from None

    async def delete(self, res: Resource, ns: str, name: str, **kw: Any) -> Obj:
        self.calls.append(("delete", res.plural, name, kw.get("propagation"), kw.get("uid")))
        return {}

    async def patch(self, res: Resource, ns: str, name: str, body: Any, **kw: Any) -> Obj:
        self.calls.append(("patch", res.plural, name, body, kw.get("patch_type")))
        return {}

    def actions(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] != "get"]


def obj(kind: str, name: str, *owners: Obj, block: bool = True, finalizers: list[str] | None = None,
        deleting: bool = False) -> Obj:
    meta: Obj = {"name": name, "namespace": "ns", "uid": f"{name}-uid", "resourceVersion": "5"}
    if owners:
        meta["ownerReferences"] = [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
                                    "uid": o["metadata"]["uid"], "controller": True, "blockOwnerDeletion": block}
                                   for o in owners]
    if finalizers:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    api_version = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1"}.get(kind, "v1")
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


@pytest.fixture
def gc() -> tuple[GarbageCollector, Api, FakeInformers]:
    api, informers = Api(), FakeInformers()
    return GarbageCollector(ControllerContext(api, informers)), api, informers  # type: ignore[arg-type]


def cache(informers: FakeInformers, res: Resource, o: Obj, api: Api | None = None) -> Obj:
    informers.get(res).put(o)
    if api is not None:
        api.add(res, o)
    return o


def key(res: Resource, o: Obj) -> str:
    return f"{res.key}:ns/{o['metadata']['name']}"


async def test_solid_owner_means_nothing_to_do(gc: tuple[GarbageCollector, Api, FakeInformers]) -> None:
    c, api, inf = gc
    rs = cache(inf, RS, obj("ReplicaSet", "rs"), api)
    pod = cache(inf, PODS, obj("Pod", "p", rs), api)
    await c.reconcile(key(PODS, pod))
    assert api.calls == []  # decided from the caches alone


async def test_absent_owner_is_confirmed_live_then_dependents_collected(gc: tuple[GarbageCollector, Api, FakeInformers]) -> None:
    c, api, inf = gc
    ghost = obj("ReplicaSet", "gone")
    p1 = cache(inf, PODS, obj("Pod", "p1", ghost), api)
    p2 = cache(inf, PODS, obj("Pod", "p2", ghost), api)
    await c.reconcile(key(PODS, p1))
    await c.reconcile(key(PODS, p2))
    assert ("delete", "pods", "p1", "Background", "p1-uid") in api.calls
    assert ("delete", "pods", "p2", "Background", "p2-uid") in api.calls
    assert [x for x in api.calls if x[:2] == ("get", "replicasets")] == [("get", "replicasets", "gone")]  # remembered


async def test_cache_lag_is_not_a_missing_owner(gc: tuple[GarbageCollector, Api, FakeInformers]) -> None:
    c, api, inf = gc
    new_rs = api.add(RS, obj("ReplicaSet", "rs"))  # created, but the cache has not seen it yet
    pod = cache(inf, PODS, obj("Pod", "p", new_rs), api)
    await c.reconcile(key(PODS, pod))
    assert api.actions() == []


async def test_dangling_reference_removed_when_another_owner_is_solid(gc: tuple[GarbageCollector, Api, FakeInformers]) -> None:
    c, api, inf = gc
    alive = cache(inf, RS, obj("ReplicaSet", "alive"), api)
    dead = obj("ReplicaSet", "dead")
    pod = cache(inf, PODS, obj("Pod", "p", alive, dead), api)
    await c.reconcile(key(PODS, pod))
    assert api.actions() == [("patch", "pods", "p", {"metadata": {"ownerReferences": [
        {"$patch": "delete", "uid": "dead-uid"}], "uid": "p-uid"}}, "strategic")]


@pytest.mark.parametrize(("has_dependents", "finalizers", "policy"), [
    (True, None, "Foreground"),    # waiting owner, dependents of its own: foreground too
    (False, None, "Background"),
    (False, [ORPHAN], "Orphan"),   # the dependent's own finalizers choose the policy otherwise
])
async def test_dependent_of_a_foreground_owner(gc: tuple[GarbageCollector, Api, FakeInformers], has_dependents: bool,
                                               finalizers: list[str] | None, policy: str) -> None:
    c, api, inf = gc
    d = cache(inf, DEPLOY, obj("Deployment", "d", finalizers=[FOREGROUND], deleting=True), api)
    rs = cache(inf, RS, obj("ReplicaSet", "rs", d, finalizers=finalizers), api)
    if has_dependents:
        cache(inf, PODS, obj("Pod", "p", rs), api)
    await c.reconcile(key(RS, rs))
    assert api.actions() == [("delete", "replicasets", "rs", policy, "rs-uid")]


async def test_foreground_owner_waits_for_blocking_dependents(gc: tuple[GarbageCollector, Api, FakeInformers]) -> None:
    c, api, inf = gc
    d = cache(inf, DEPLOY, obj("Deployment", "d", finalizers=[FOREGROUND], deleting=True), api)
    blocking = cache(inf, RS, obj("ReplicaSet", "rs", d), api)
    cache(inf, RS, obj("ReplicaSet", "loose", d, block=False), api)
    c.queue = WorkQueue("gc")  # forget what the handlers queued while filling the caches
    await c.reconcile(key(DEPLOY, d))
    assert api.actions() == []
    assert await c.queue.get() == key(RS, blocking) and len(c.queue) == 0  # queued for deletion
    inf.get(RS).remove(blocking)
    await c.reconcile(key(DEPLOY, d))
    assert api.actions() == [("patch", "deployments", "d", {"metadata": {"resourceVersion": "5", "finalizers": None}},
                              "merge")]


async def test_orphan_removes_references_then_the_finalizer(gc: tuple[GarbageCollector, Api, FakeInformers]) -> None:
    c, api, inf = gc
    d = cache(inf, DEPLOY, obj("Deployment", "d", finalizers=[ORPHAN, "keep/me"], deleting=True), api)
    cache(inf, RS, obj("ReplicaSet", "a", d), api)
    cache(inf, RS, obj("ReplicaSet", "b", d), api)
    await c.reconcile(key(DEPLOY, d))
    patches = api.actions()
    assert sorted(p[2] for p in patches[:2]) == ["a", "b"]
    assert all(p[3]["metadata"]["ownerReferences"] == [{"$patch": "delete", "uid": "d-uid"}] for p in patches[:2])
    assert patches[2] == ("patch", "deployments", "d", {"metadata": {"resourceVersion": "5", "finalizers": ["keep/me"]}},
                          "merge")


def test_collected_resources_leave_events_alone() -> None:
    plurals = {r.plural for r in collected_resources()}
    assert "events" not in plurals
    assert {"pods", "replicasets", "deployments", "endpointslices", "jobs", "daemonsets", "configmaps"} <= plurals
