"""Fixtures of the controller tests: servers of their own, the controller manager in-process, a
fake kubelet, helpers.

Controllers act on the whole cluster (the garbage collector collects any dangling object, the
namespace controller finalizes any terminating namespace), so this package gets its own etcd,
nats-server and apiserver instead of the session's: the other packages' objects are never
touched, and theirs never disturb these tests. Tests isolate themselves by namespace; the crash
test starts yet another cluster and runs the manager as a child process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from services.controllers.main import CONTROLLERS, ControllerManager
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from tests.controllers.fake_kubelet import FakeKubelet
from tests.servers import Cluster

PODS = BY_PLURAL[("", "pods")]
RS = BY_PLURAL[("apps", "replicasets")]
DEPLOY = BY_PLURAL[("apps", "deployments")]
TIMEOUT = 30.0


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = TIMEOUT,
                     interval: float = 0.05) -> Any:
    """Poll until check() returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what} (last: {last!r})")
        await asyncio.sleep(interval)


def template(labels: dict[str, str], image: str = "busybox:1.35", **annotations: str) -> dict[str, Any]:
    t: dict[str, Any] = {"metadata": {"labels": dict(labels)},
                         "spec": {"containers": [{"name": "main", "image": image}]}}
    if annotations:
        t["metadata"]["annotations"] = dict(annotations)
    return t


def replicaset(name: str, replicas: int, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template(labels), **spec}}


def deployment(name: str, replicas: int, labels: dict[str, str] | None = None, image: str = "busybox:1.35",
               **spec: Any) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": template(labels, image), **spec}}


def bare_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.35"}]}}


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def owner_uid(obj: dict[str, Any]) -> str | None:
    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")]
    return refs[0]["uid"] if refs else None


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    c = Cluster().start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[ApiClient]:
    c = cluster.api_client()
    yield c
    await c.close()


@pytest.fixture(scope="package")
async def manager(cluster: Cluster) -> AsyncIterator[ControllerManager]:
    client = cluster.api_client()
    bus = Bus(cluster.nats.url, "test-controller-manager", cluster.bus_options())
    await bus.connect()
    m = ControllerManager(client, bus, list(CONTROLLERS), default_workers=5)
    await m.start()
    yield m
    await m.stop()
    await bus.close()
    await client.close()


@pytest.fixture
async def kubelet(cluster: Cluster, client: ApiClient, ns: str) -> AsyncIterator[FakeKubelet]:
    bus = Bus(cluster.nats.url, "test-fake-kubelet", cluster.bus_options())
    await bus.connect()
    k = FakeKubelet(client, bus, nodes=3, namespace=ns, ready_delay=0.05)
    await k.start()
    yield k
    await k.stop()
    await bus.close()
