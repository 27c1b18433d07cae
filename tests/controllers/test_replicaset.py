"""The ReplicaSet controller's decisions with fake caches and a fake API: expectations keep a
slow informer from ever causing extra pods, and the status it writes."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Callable
from typing import Any

from services.controllers import replicaset as rsmod
from services.controllers.base import ControllerContext
from services.controllers.expectations import EXPECTATIONS_TIMEOUT, ControllerExpectations
from shared.api.resources import Resource
from shared.errors import ApiError
from shared.informer import key_of

Obj = dict[str, Any]


class FakeInformer:
    def __init__(self) -> None:
        self.items: dict[str, Obj] = {}
        self.indexers: dict[str, Callable[[Obj], list[str]]] = {
            "namespace": lambda o: [o["metadata"].get("namespace", "")]}
        self.handlers: list[tuple[Any, Any, Any]] = []

    def add_index(self, name: str, fn: Callable[[Obj], list[str]]) -> None:
        if name in self.indexers:
            raise ValueError(name)
        self.indexers[name] = fn

    def add_handler(self, on_add: Any = None, on_update: Any = None, on_delete: Any = None) -> None:
        self.handlers.append((on_add, on_update, on_delete))

    def get(self, key: str) -> Obj | None:
        return self.items.get(key)

    def by_index(self, name: str, value: str) -> list[Obj]:
        return [o for o in self.items.values() if value in self.indexers[name](o)]

    def put(self, obj: Obj) -> None:
        old = self.items.get(key_of(obj))
        self.items[key_of(obj)] = obj
        for on_add, on_update, _ in self.handlers:
            if old is None and on_add:
                on_add(obj)
            elif old is not None and on_update:
                on_update(old, obj)

    def remove(self, obj: Obj) -> None:
        self.items.pop(key_of(obj), None)
        for _, _, on_delete in self.handlers:
            if on_delete:
                on_delete(obj)


class FakeInformers:
    def __init__(self) -> None:
        self.by_key: dict[str, FakeInformer] = {}

    def get(self, res: Resource) -> FakeInformer:
        return self.by_key.setdefault(res.key, FakeInformer())


class FakeClient:
    """Just enough of ApiClient: records writes, answers them like the apiserver would."""

    def __init__(self) -> None:
        self.rv = itertools.count(100)
        self.names = itertools.count()
        self.created: list[Obj] = []
        self.deleted: list[str] = []
        self.statuses: list[Obj] = []
        self.objects: dict[str, Obj] = {}
        self.on_status: Callable[[Obj], None] = lambda obj: None  # the informer seeing our write

    async def create(self, res: Resource, ns: str, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        m = out["metadata"]
        m.setdefault("name", f"{m.get('generateName', 'x-')}{next(self.names)}")
        m.update(namespace=ns, uid=f"uid-{m['name']}", resourceVersion=str(next(self.rv)),
                 creationTimestamp="2024-01-01T00:00:00Z")
        if res.plural == "pods":
            out["status"] = {"phase": "Pending"}
            self.created.append(out)
        return out

    async def update_status(self, res: Resource, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        out["metadata"]["resourceVersion"] = str(next(self.rv))
        self.statuses.append(out["status"])
        self.on_status(out)
        return out

    async def delete(self, res: Resource, ns: str, name: str, **kw: Any) -> Obj:
        self.deleted.append(f"{ns}/{name}")
        return {}

    async def get(self, res: Resource, ns: str, name: str) -> Obj:
        if f"{ns}/{name}" not in self.objects:
            raise ApiError(404, "NotFound", "not found")
        return self.objects[f"{ns}/{name}"]

    async def patch(self, *a: Any, **kw: Any) -> Obj:
        return {}


def make(replicas: int = 3) -> tuple[rsmod.ReplicaSetController, FakeClient, FakeInformer, FakeInformer, Obj]:
    client, informers = FakeClient(), FakeInformers()
    ctrl = rsmod.ReplicaSetController(ControllerContext(client, informers))  # type: ignore[arg-type]
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": 1, "resourceVersion": "1"},
          "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}},
          "status": {"replicas": 0}}
    client.objects["ns/web"] = rs
    rs_inf, pod_inf = informers.get(rsmod.RS), informers.get(rsmod.PODS)
    rs_inf.put(rs)
    client.on_status = rs_inf.put
    return ctrl, client, rs_inf, pod_inf, rs


async def settle() -> None:
    await asyncio.sleep(0.01)  # let fire-and-forget event recording run


async def test_a_slow_informer_never_causes_extra_pods() -> None:
    ctrl, client, _, pod_inf, _ = make(3)
    await ctrl.reconcile("ns/web")
    assert len(client.created) == 3
    for _ in range(5):  # the informer has not delivered the pods yet: nothing more is created
        await ctrl.reconcile("ns/web")
    assert len(client.created) == 3
    assert ctrl.expectations.get("ns/web") == (3, 0)
    for pod in client.created[:2]:
        pod_inf.put(pod)
    await ctrl.reconcile("ns/web")
    assert len(client.created) == 3
    pod_inf.put(client.created[2])
    assert ctrl.expectations.satisfied("ns/web")
    await ctrl.reconcile("ns/web")
    assert len(client.created) == 3
    pod_inf.remove(client.created[0])  # a pod disappears: replaced
    await ctrl.reconcile("ns/web")
    assert len(client.created) == 4
    await settle()


async def test_expired_expectations_let_it_count_again() -> None:
    ctrl, client, _, _, _ = make(2)
    clock = [0.0]
    ctrl.expectations = ControllerExpectations(clock=lambda: clock[0])
    await ctrl.reconcile("ns/web")
    assert len(client.created) == 2
    clock[0] += EXPECTATIONS_TIMEOUT + 1  # the events were lost for good
    await ctrl.reconcile("ns/web")
    assert len(client.created) == 4
    await settle()


async def test_scale_down_deletes_unready_first_and_expects_those_deletions() -> None:
    ctrl, client, _, pod_inf, _ = make(1)
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid", "controller": True}

    def pod(name: str, ready: bool) -> Obj:
        conds = [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}] if ready else []
        return {"metadata": {"name": name, "namespace": "ns", "uid": name, "labels": {"app": "web"},
                             "ownerReferences": [ref], "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"nodeName": "n"} if ready else {},
                "status": {"phase": "Running" if ready else "Pending", "conditions": conds}}

    for p in (pod("ready", True), pod("p1", False), pod("p2", False)):
        pod_inf.put(p)
    await ctrl.reconcile("ns/web")
    assert sorted(client.deleted) == ["ns/p1", "ns/p2"]
    assert client.statuses[-1]["replicas"] == 1  # the pods asked to go are no longer counted
    await ctrl.reconcile("ns/web")
    assert len(client.deleted) == 2  # waiting for the deletions to be observed
    pod_inf.remove(pod("p1", False))
    pod_inf.remove(pod("p2", False))
    assert ctrl.expectations.satisfied("ns/web")
    await settle()


async def test_status_counts_ready_available_and_fully_labelled() -> None:
    ctrl, client, _, pod_inf, rs = make(3)
    rs["spec"]["template"]["metadata"]["labels"]["tier"] = "fe"
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid", "controller": True}
    for i, (labels, ready) in enumerate([({"app": "web", "tier": "fe"}, True), ({"app": "web"}, True),
                                         ({"app": "web", "tier": "fe"}, False)]):
        conds = [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}] if ready else []
        pod_inf.put({"metadata": {"name": f"p{i}", "namespace": "ns", "uid": f"p{i}", "labels": labels,
                                  "ownerReferences": [ref]}, "spec": {}, "status": {"phase": "Running", "conditions": conds}})
    await ctrl.reconcile("ns/web")
    assert client.created == []
    assert client.statuses[-1] == {"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
                                   "observedGeneration": 1}
    await settle()


async def test_create_failure_sets_replica_failure_and_lowers_expectations() -> None:
    ctrl, client, _, _, _ = make(4)

    async def refuse(res: Resource, ns: str, obj: Obj) -> Obj:
        if res.plural == "pods":
            raise ApiError(403, "Forbidden", 'pods "x" is forbidden: exceeded quota')
        return obj
    client.create = refuse  # type: ignore[method-assign]
    try:
        await ctrl.reconcile("ns/web")
        raise AssertionError("the reconcile should fail")
    except ApiError:
        pass
    assert ctrl.expectations.satisfied("ns/web")  # one attempt failed, three never made: nothing pending
    cond = client.statuses[-1]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("ReplicaFailure", "True", "FailedCreate")
    await settle()
