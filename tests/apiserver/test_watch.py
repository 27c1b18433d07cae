"""`?watch=true` served from the NATS event stream, with Kubernetes' resourceVersion rules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson

from services.apiserver.watch import PARSED, Event
from tests.servers import Cluster

MERGE = {"Content-Type": "application/merge-patch+json"}


class WatchStream:
    """Reads a watch response line by line in the background."""

    def __init__(self, client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = False
        self.status = 0
        self._task = asyncio.create_task(self._run(client, path, {**params, "watch": "true"}))

    async def _run(self, client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> None:
        async with client.stream("GET", path, params=params, timeout=None) as r:
            self.status = r.status_code
            async for line in r.aiter_lines():
                if line.strip():
                    self.events.append(orjson.loads(line))
        self.closed = True

    async def wait(self, cond: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"watch condition not met; got {[(e['type'], e['object'].get('metadata', {}).get('name')) for e in self.events]}")
            await asyncio.sleep(0.02)

    def summary(self) -> list[tuple[str, str]]:
        return [(e["type"], e["object"]["metadata"].get("name", "")) for e in self.events if e["type"] != "BOOKMARK"]

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, httpx.HTTPError):
            pass


async def test_watch_from_zero_lists_then_streams(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    await api.post(base, json={"metadata": {"name": "a"}})
    w = WatchStream(api, base, {"resourceVersion": "0"})
    try:
        await w.wait(lambda ev: len(ev) >= 1)
        await api.post(base, json={"metadata": {"name": "b"}})
        await api.patch(f"{base}/a", json={"data": {"k": "v"}}, headers=MERGE)
        await api.delete(f"{base}/b")
        await w.wait(lambda ev: len(ev) >= 4)
        await asyncio.sleep(0.2)
        assert w.summary() == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
        assert w.status == 200
        modified = w.events[2]["object"]
        assert modified["data"] == {"k": "v"} and modified["kind"] == "ConfigMap"
    finally:
        await w.close()


async def test_watch_resumes_from_resource_version(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    r1 = (await api.post(base, json={"metadata": {"name": "r1"}})).json()
    await api.post(base, json={"metadata": {"name": "r2"}})
    await api.post(base, json={"metadata": {"name": "r3"}})
    await asyncio.sleep(0.3)  # the hub has seen them
    w = WatchStream(api, base, {"resourceVersion": r1["metadata"]["resourceVersion"]})
    try:
        await w.wait(lambda ev: len(ev) >= 2)
        await asyncio.sleep(0.2)
        assert w.summary() == [("ADDED", "r2"), ("ADDED", "r3")]
    finally:
        await w.close()


def test_a_released_event_is_compressed_and_comes_back_whole() -> None:
    obj = {"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}}, "spec": {"x": "y" * 2000}}
    raw = orjson.dumps({"type": "ADDED", "object": obj})
    ev = Event(7, "ADDED", obj, raw, "ns", "p")
    ev.release()
    assert len(ev._raw) < len(raw) / 4  # stored compressed
    assert ev.raw == raw
    assert ev.obj == obj
    ev.release()  # twice is harmless
    assert ev.raw == raw


async def test_resume_past_the_parsed_part_of_the_window(api: httpx.AsyncClient, ns: str) -> None:
    """The hub keeps only the newest events parsed (watch.PARSED); a watcher resuming further
    back gets the older ones parsed again from their bytes, selectors and all."""
    base = f"/api/v1/namespaces/{ns}/configmaps"
    first = (await api.post(base, json={"metadata": {"name": "start"}})).json()
    count = PARSED + 100
    sem = asyncio.Semaphore(20)

    async def create(i: int) -> None:
        async with sem:
            r = await api.post(base, json={"metadata": {"name": f"c{i:04d}", "labels": {"even": str(i % 2 == 0).lower()}},
                                           "data": {"i": str(i)}})
            assert r.status_code == 201, r.text
    await asyncio.gather(*(create(i) for i in range(count)))
    await asyncio.sleep(0.5)  # the hub has seen them
    w = WatchStream(api, base, {"resourceVersion": first["metadata"]["resourceVersion"], "labelSelector": "even=true"})
    try:
        await w.wait(lambda ev: len(ev) >= count // 2, timeout=30)
        await asyncio.sleep(0.3)
        names = sorted(name for _t, name in w.summary())
        assert names == [f"c{i:04d}" for i in range(0, count, 2)]
        assert all(e["object"]["data"]["i"] == e["object"]["metadata"]["name"][1:].lstrip("0") or
                   e["object"]["data"]["i"] == "0" for e in w.events)
    finally:
        await w.close()


async def test_selectors_on_watch(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    w = WatchStream(api, base, {"labelSelector": "app=web"})
    n = WatchStream(api, base, {"fieldSelector": "metadata.name=two"})
    try:
        await asyncio.sleep(0.3)
        await api.post(base, json={"metadata": {"name": "one", "labels": {"app": "web"}}})
        await api.post(base, json={"metadata": {"name": "two", "labels": {"app": "db"}}})
        await api.patch(f"{base}/one", json={"metadata": {"labels": {"app": "db"}}}, headers=MERGE)  # leaves
        await api.patch(f"{base}/two", json={"metadata": {"labels": {"app": "web"}}}, headers=MERGE)  # enters
        await w.wait(lambda ev: len(ev) >= 3)
        await n.wait(lambda ev: len(ev) >= 2)
        await asyncio.sleep(0.2)
        assert w.summary() == [("ADDED", "one"), ("DELETED", "one"), ("ADDED", "two")]
        assert n.summary() == [("ADDED", "two"), ("MODIFIED", "two")]
    finally:
        await w.close()
        await n.close()


async def test_timeout_and_bookmarks(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    t0 = time.monotonic()
    r = await api.get(base, params={"watch": "true", "timeoutSeconds": "1", "resourceVersion": "0"})
    assert r.status_code == 200 and 0.9 < time.monotonic() - t0 < 5
    w = WatchStream(api, base, {"allowWatchBookmarks": "true", "timeoutSeconds": "30"})
    try:
        await w.wait(lambda ev: any(e["type"] == "BOOKMARK" for e in ev), timeout=12)
        bm = next(e for e in w.events if e["type"] == "BOOKMARK")
        assert int(bm["object"]["metadata"]["resourceVersion"]) > 0 and bm["object"]["kind"] == "ConfigMap"
    finally:
        await w.close()


async def test_large_object_event_and_publisher_keeps_going(api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    w = WatchStream(api, base, {})
    try:
        await asyncio.sleep(0.3)
        big = "\n" * 600_000  # its JSON escaping exceeds NATS' 1 MiB message limit
        r = await api.post(base, json={"metadata": {"name": "big"}, "data": {"k": big}})
        assert r.status_code == 201, r.text[:300]
        await api.post(base, json={"metadata": {"name": "after"}})
        await w.wait(lambda ev: len(ev) >= 2)
        assert w.summary() == [("ADDED", "big"), ("ADDED", "after")]
        assert w.events[0]["object"]["data"]["k"] == big
    finally:
        await w.close()


async def test_too_old_resource_version_is_410() -> None:
    c = Cluster().start()
    try:
        async with httpx.AsyncClient(**c.admin_kwargs(), timeout=30) as api:
            old = (await api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "o"}})).json()
            for i in range(3):
                await api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"o{i}"}})
        c.apiserver.stop()
        c.apiserver.start()  # a new process: its window starts now
        async with httpx.AsyncClient(**c.admin_kwargs(), timeout=30) as api:
            r = await api.get("/api/v1/namespaces/default/configmaps",
                              params={"watch": "true", "resourceVersion": old["metadata"]["resourceVersion"]})
            assert r.status_code == 200
            lines = [orjson.loads(x) for x in r.text.splitlines() if x.strip()]
            assert lines[0]["type"] == "ERROR"
            st = lines[0]["object"]
            assert st["code"] == 410 and st["reason"] == "Expired" and st["kind"] == "Status"
    finally:
        c.stop()


async def test_many_watchers_share_one_subscription(cluster: Cluster, api: httpx.AsyncClient, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(**cluster.admin_kwargs(), timeout=30, limits=limits) as many:
        before = cluster.nats.subscriptions("kubenats-apiserver")
        assert before > 0
        watchers = [WatchStream(many, base, {}) for _ in range(100)]
        try:
            await asyncio.sleep(1.0)
            assert cluster.nats.subscriptions("kubenats-apiserver") == before
            for i in range(5):
                await api.post(base, json={"metadata": {"name": f"m{i}"}})
            for w in watchers:
                await w.wait(lambda ev: len(ev) >= 5)
            assert all(w.summary() == [("ADDED", f"m{i}") for i in range(5)] for w in watchers)
        finally:
            for w in watchers:
                await w.close()
