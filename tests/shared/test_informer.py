"""The informer against real etcd, nats-server and apiserver: cache, indexes, stale events, and
convergence after missed events (nats restart, dropped messages, resync message, periodic resync)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import nats.errors
import orjson
import pytest

from shared.api.resources import BY_PLURAL, Resource
from shared.bus import RESYNC_SUBJECT, Bus, Message, event_subject
from shared.client import ApiClient
from shared.informer import Informer, SharedValues, intern_strings, key_of, split_key
from tests.servers import Cluster

CM = BY_PLURAL[("", "configmaps")]
NS = BY_PLURAL[("", "namespaces")]
TIMEOUT = 15.0


async def eventually(cond: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.05)


async def converge(inf: Informer, client: ApiClient, namespace: str, timeout: float = TIMEOUT,
                   label_selector: str = "") -> None:
    """Wait until the cache holds exactly what a fresh API list returns (names and resourceVersions)."""
    deadline = time.monotonic() + timeout
    want: dict[str, str] = {}
    while time.monotonic() < deadline:
        want = await api_state(client, namespace, label_selector)
        if cache_state(inf) == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"cache did not converge: cache={cache_state(inf)} api={want}")


async def api_state(client: ApiClient, namespace: str, label_selector: str = "") -> dict[str, str]:
    lst = await client.list(CM, namespace, label_selector=label_selector)
    return {key_of(o): o["metadata"]["resourceVersion"] for o in lst["items"]}


def cache_state(inf: Informer) -> dict[str, str]:
    return {key_of(o): o["metadata"]["resourceVersion"] for o in inf.list()}


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def add(self, obj: dict[str, Any]) -> None:
        self.events.append(("add", key_of(obj)))

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.events.append(("update", key_of(new)))

    def delete(self, obj: dict[str, Any]) -> None:
        self.events.append(("delete", key_of(obj)))

    def of(self, key: str) -> list[str]:
        return [kind for kind, k in self.events if k == key]


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[ApiClient]:
    c = cluster.api_client()
    yield c
    await c.close()


@pytest.fixture
async def bus(cluster: Cluster) -> AsyncIterator[Bus]:
    b = Bus(cluster.nats.url, "test-informer", cluster.bus_options("apiserver"))
    await b.connect()
    yield b
    await b.close()


async def started(inf: Informer) -> Informer:
    await inf.start()
    await inf.wait_synced(TIMEOUT)
    return inf


# ---------------------------------------------------------------- pure helpers


def test_keys() -> None:
    assert key_of({"metadata": {"namespace": "a", "name": "b"}}) == "a/b"
    assert key_of({"metadata": {"name": "node-1"}}) == "node-1"
    assert split_key("a/b") == ("a", "b") and split_key("node-1") == ("", "node-1")


def test_default_subjects() -> None:
    b = Bus("nats://127.0.0.1:1", "unused")
    c = ApiClient("http://127.0.0.1:1")
    assert Informer(b, c, CM).subject == "kube.events.core.configmaps.*.*"
    assert Informer(b, c, CM, namespace="team-a").subject == "kube.events.core.configmaps.team-a.*"
    assert Informer(b, c, BY_PLURAL[("", "nodes")], namespace="ignored").subject == "kube.events.core.nodes.*.*"
    leases = BY_PLURAL[("coordination.k8s.io", "leases")]
    assert Informer(b, c, leases).subject == "kube.events.coordination_k8s_io.leases.*.*"
    assert Informer(b, c, CM, subject="kube.nodes.n1.pods.>").subject == "kube.nodes.n1.pods.>"
    # what the informer subscribes to must match what the apiserver publishes on
    assert event_subject("coordination.k8s.io", "leases", "ns", "x").startswith("kube.events.coordination_k8s_io.leases.")


# ---------------------------------------------------------------- the cache follows the API


async def test_cache_follows_creates_updates_deletes(bus: Bus, client: ApiClient, ns: str) -> None:
    for n in ("a", "b", "c"):
        await client.create(CM, ns, cm(n, v="1"))
    inf = Informer(bus, client, CM, namespace=ns)
    rec = Recorder()
    inf.add_handler(rec.add, rec.update, rec.delete)
    await started(inf)
    try:
        assert inf.has_synced and inf.relists == 1
        assert sorted(inf.keys()) == [f"{ns}/a", f"{ns}/b", f"{ns}/c"]
        assert sorted(rec.events) == [("add", f"{ns}/a"), ("add", f"{ns}/b"), ("add", f"{ns}/c")]

        d = await client.create(CM, ns, cm("d", v="1"))
        b = await client.get(CM, ns, "b")
        b["data"] = {"v": "2"}
        b2 = await client.update(CM, b)
        await client.delete(CM, ns, "c")
        await eventually(lambda: inf.get(f"{ns}/c") is None and inf.get(f"{ns}/d") is not None
                         and (inf.get(f"{ns}/b") or {}).get("data") == {"v": "2"}, "events applied")
        await converge(inf, client, ns)
        assert inf.get(f"{ns}/d")["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]  # type: ignore[index]
        assert inf.get(f"{ns}/b")["metadata"]["resourceVersion"] == b2["metadata"]["resourceVersion"]  # type: ignore[index]
        assert rec.of(f"{ns}/d") == ["add"] and rec.of(f"{ns}/b") == ["add", "update"]
        assert rec.of(f"{ns}/c") == ["add", "delete"]
        assert inf.events_applied >= 3 and inf.relists == 1, "no relist needed without a gap"

        late = Recorder()  # a handler added later gets the current objects as adds
        inf.add_handler(on_add=late.add)
        assert sorted(k for _, k in late.events) == [f"{ns}/a", f"{ns}/b", f"{ns}/d"]
    finally:
        await inf.stop()
    seen: list[str] = []

    async def probe(msg: Message) -> None:
        seen.append(msg.subject)

    sub = await bus.subscribe(inf.subject, probe)
    await bus.flush()
    await client.create(CM, ns, cm("after-stop"))
    await eventually(lambda: any(s.endswith(".after-stop") for s in seen), "event published")
    await bus.unsubscribe(sub)
    assert inf.get(f"{ns}/after-stop") is None, "a stopped informer receives nothing"


async def test_other_namespaces_are_not_in_a_namespaced_view(bus: Bus, client: ApiClient, ns: str) -> None:
    other = (await client.create(NS, "", {"metadata": {"name": "t-" + uuid.uuid4().hex[:10]}}))["metadata"]["name"]
    inf = await started(Informer(bus, client, CM, namespace=ns))
    try:
        await client.create(CM, other, cm("elsewhere"))
        await client.create(CM, ns, cm("here"))
        await eventually(lambda: inf.get(f"{ns}/here") is not None, "own namespace event")
        assert inf.get(f"{other}/elsewhere") is None
    finally:
        await inf.stop()


async def test_selectors_define_the_view(bus: Bus, client: ApiClient, ns: str) -> None:
    await client.create(CM, ns, cm("in", {"app": "web"}))
    await client.create(CM, ns, cm("out", {"app": "db"}))
    inf = Informer(bus, client, CM, namespace=ns, label_selector="app=web")
    rec = Recorder()
    inf.add_handler(rec.add, rec.update, rec.delete)
    await started(inf)
    try:
        assert inf.keys() == [f"{ns}/in"]
        # an object that stops matching leaves the view as a delete ...
        await client.patch(CM, ns, "in", {"metadata": {"labels": {"app": "db"}}})
        await eventually(lambda: inf.get(f"{ns}/in") is None, "unmatched object removed")
        assert rec.of(f"{ns}/in") == ["add", "delete"]
        # ... and one that starts matching enters it as an add
        await client.patch(CM, ns, "out", {"metadata": {"labels": {"app": "web"}}})
        await eventually(lambda: inf.get(f"{ns}/out") is not None, "newly matching object added")
        assert rec.of(f"{ns}/out") == ["add"]
        await converge(inf, client, ns, label_selector="app=web")
    finally:
        await inf.stop()

    named = await started(Informer(bus, client, CM, namespace=ns, field_selector="metadata.name=out"))
    try:
        assert named.keys() == [f"{ns}/out"]
        await client.create(CM, ns, cm("other"))
        await client.patch(CM, ns, "out", {"data": {"x": "1"}})
        await eventually(lambda: (named.get(f"{ns}/out") or {}).get("data") == {"x": "1"}, "update seen")
        assert named.keys() == [f"{ns}/out"]
    finally:
        await named.stop()


# ---------------------------------------------------------------- indexes


async def test_namespace_and_custom_indexes(bus: Bus, client: ApiClient, ns: str) -> None:
    other = (await client.create(NS, "", {"metadata": {"name": "t-" + uuid.uuid4().hex[:10]}}))["metadata"]["name"]
    run = "r" + uuid.uuid4().hex[:8]
    await client.create(CM, ns, cm("a", {"run": run, "tier": "front"}))
    await client.create(CM, ns, cm("b", {"run": run, "tier": "back"}))
    await client.create(CM, other, cm("c", {"run": run, "tier": "front"}))
    inf = Informer(bus, client, CM, label_selector=f"run={run}")  # all namespaces
    inf.add_index("tier", lambda o: [o["metadata"].get("labels", {}).get("tier", "")])
    await started(inf)
    try:
        def names(objs: list[dict[str, Any]]) -> list[str]:
            return sorted(key_of(o) for o in objs)

        assert names(inf.by_index("namespace", ns)) == [f"{ns}/a", f"{ns}/b"]
        assert names(inf.by_index("namespace", other)) == [f"{other}/c"]
        assert names(inf.by_index("tier", "front")) == sorted([f"{ns}/a", f"{other}/c"])
        # an index added after sync is built from the cache
        inf.add_index("data-keys", lambda o: sorted(o.get("data") or {}))
        assert inf.by_index("data-keys", "k") == []

        await client.patch(CM, ns, "b", {"metadata": {"labels": {"tier": "front"}}, "data": {"k": "v"}})
        await client.delete(CM, other, "c")
        await client.create(CM, other, cm("d", {"run": run, "tier": "back"}))
        await eventually(lambda: names(inf.by_index("tier", "front")) == [f"{ns}/a", f"{ns}/b"]
                         and names(inf.by_index("tier", "back")) == [f"{other}/d"], "index follows events")
        assert names(inf.by_index("namespace", other)) == [f"{other}/d"]
        assert names(inf.by_index("data-keys", "k")) == [f"{ns}/b"]
        assert inf.by_index("tier", "nothing") == []
        with pytest.raises(KeyError):
            inf.by_index("no-such-index", "x")
        with pytest.raises(ValueError):
            inf.add_index("tier", lambda o: [])
    finally:
        await inf.stop()


async def test_pods_indexed_by_node(bus: Bus, client: ApiClient, ns: str) -> None:
    pods = BY_PLURAL[("", "pods")]

    def pod(name: str, node: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}

    await client.create(pods, ns, pod("p1", "node-a"))
    inf = Informer(bus, client, pods, namespace=ns)
    inf.add_index("node", lambda o: [o.get("spec", {}).get("nodeName") or ""])
    await started(inf)
    try:
        await client.create(pods, ns, pod("p2", "node-b"))
        await client.create(pods, ns, pod("p3", "node-a"))
        await eventually(lambda: len(inf.by_index("node", "node-a")) == 2 and len(inf.by_index("node", "node-b")) == 1,
                         "pods indexed by node")
    finally:
        await inf.stop()


# ---------------------------------------------------------------- stale events


async def test_events_not_newer_than_the_cache_are_ignored(bus: Bus, client: ApiClient, ns: str) -> None:
    """A lagging apiserver replica re-publishing old revisions must not roll the cache back."""
    a = await client.create(CM, ns, cm("a", v="1"))
    gone = await client.create(CM, ns, cm("gone"))
    await client.delete(CM, ns, "gone")
    inf = await started(Informer(bus, client, CM, namespace=ns))
    try:
        assert inf.keys() == [f"{ns}/a"]
        before = cache_state(inf)
        stale0 = inf.events_stale

        async def replay(etype: str, obj: dict[str, Any]) -> None:
            meta = obj["metadata"]
            payload = orjson.dumps({"type": etype, "object": obj})
            rev = meta["resourceVersion"]
            await bus.publish(event_subject("", "configmaps", ns, meta["name"]), payload, {"Kube-Revision": rev})

        old_a = {**a, "data": {"v": "rolled-back"}}
        await replay("MODIFIED", old_a)  # same revision as the cached object
        await replay("ADDED", gone)  # a deleted object's old ADDED: older than the list
        await bus.flush()
        await eventually(lambda: inf.events_stale >= stale0 + 2, "stale events counted")
        assert cache_state(inf) == before
        assert inf.get(f"{ns}/a")["data"] == {"v": "1"}  # type: ignore[index]
        assert inf.get(f"{ns}/gone") is None
    finally:
        await inf.stop()


async def test_deleted_object_is_not_resurrected_by_a_late_duplicate(bus: Bus, client: ApiClient, ns: str) -> None:
    inf = await started(Informer(bus, client, CM, namespace=ns))
    try:
        created = await client.create(CM, ns, cm("x"))
        await eventually(lambda: inf.get(f"{ns}/x") is not None, "created")
        await client.delete(CM, ns, "x")
        await eventually(lambda: inf.get(f"{ns}/x") is None, "deleted")
        stale0 = inf.events_stale
        # created's revision is newer than the list but older than the delete
        assert int(created["metadata"]["resourceVersion"]) > inf.list_revision
        await bus.publish(event_subject("", "configmaps", ns, "x"), orjson.dumps({"type": "ADDED", "object": created}),
                          {"Kube-Revision": created["metadata"]["resourceVersion"]})
        await eventually(lambda: inf.events_stale > stale0, "duplicate counted stale")
        assert inf.get(f"{ns}/x") is None
    finally:
        await inf.stop()


class SlowLister:
    """Wraps the client: runs hooks just before and just after the real LIST, while the informer
    buffers events, so events land on both sides of the list's revision."""

    def __init__(self, client: ApiClient, before: Callable[[], Any], after: Callable[[], Any]) -> None:
        self.client = client
        self.before = before
        self.after = after
        self.calls = 0

    async def list(self, res: Resource, namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "") -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            await self.before()
        result = await self.client.list(res, namespace, label_selector=label_selector, field_selector=field_selector)
        if self.calls == 1:
            await self.after()
        return result


async def test_events_during_the_list_are_buffered_and_filtered_by_revision(
    bus: Bus, client: ApiClient, ns: str
) -> None:
    await client.create(CM, ns, cm("early", v="0"))
    await client.create(CM, ns, cm("late", v="0"))
    holder: list[Informer] = []

    def buffered() -> int:
        return len(holder[0]._buffer or [])

    async def before() -> None:  # an event older than the list: must be dropped as stale
        await client.patch(CM, ns, "early", {"data": {"v": "1"}})
        await eventually(lambda: buffered() >= 1, "event before the list buffered")

    async def after() -> None:  # an event newer than the list: must be applied after loading it
        n = buffered()
        await client.patch(CM, ns, "late", {"data": {"v": "1"}})
        await client.create(CM, ns, cm("new"))
        await eventually(lambda: buffered() >= n + 2, "events after the list buffered")

    inf = Informer(bus, SlowLister(client, before, after), CM, namespace=ns)
    holder.append(inf)
    rec = Recorder()
    inf.add_handler(rec.add, rec.update, rec.delete)
    await started(inf)
    try:
        assert inf.get(f"{ns}/early")["data"] == {"v": "1"}  # type: ignore[index]
        assert inf.get(f"{ns}/late")["data"] == {"v": "1"}  # type: ignore[index]
        assert inf.get(f"{ns}/new") is not None
        assert inf.events_stale >= 1 and inf.events_applied >= 2
        assert rec.of(f"{ns}/early") == ["add"], "the stale event did not cause an update"
        assert rec.of(f"{ns}/late") == ["add", "update"]
        await converge(inf, client, ns)
    finally:
        await inf.stop()


# ---------------------------------------------------------------- convergence after missed events


async def mutate(client: ApiClient, ns: str, tag: str) -> None:
    """Change, delete and create objects (the informer is expected to miss these events)."""
    await client.patch(CM, ns, "keep", {"data": {"v": tag}})
    await client.delete(CM, ns, f"doomed-{tag}")
    await client.create(CM, ns, cm(f"born-{tag}"))


async def seed(client: ApiClient, ns: str, *tags: str) -> None:
    await client.create(CM, ns, cm("keep", v="0"))
    for tag in tags:
        await client.create(CM, ns, cm(f"doomed-{tag}"))


class Dropper:
    """Cut an informer off: replace its NATS subscription callback (behind the Bus's back) with one
    that drops messages, as a slow consumer or a broken route would."""

    def __init__(self, inf: Informer) -> None:
        self.nats_sub = inf._subs[0].nats_sub
        self.original = self.nats_sub._cb
        self.dropped: list[str] = []

    async def _drop(self, msg: Any) -> None:
        self.dropped.append(msg.subject)

    def __enter__(self) -> Dropper:
        self.nats_sub._cb = self._drop
        return self

    def __exit__(self, *exc: object) -> None:
        self.nats_sub._cb = self.original


async def test_converges_after_a_slow_consumer_gap(bus: Bus, client: ApiClient, ns: str) -> None:
    await seed(client, ns, "1")
    inf = await started(Informer(bus, client, CM, namespace=ns))
    rec = Recorder()
    inf.add_handler(rec.add, rec.update, rec.delete)
    try:
        with Dropper(inf) as d:
            await mutate(client, ns, "1")
            await eventually(lambda: len(d.dropped) >= 3, "the three events dropped")
        assert cache_state(inf) != await api_state(client, ns), "the informer missed the events"
        assert inf.relists == 1
        # nats-py reports dropped messages as a SlowConsumerError; the Bus turns it into on_gap
        sub = d.nats_sub
        await bus._on_error(nats.errors.SlowConsumerError(subject=inf.subject, reply="", sid=sub._id, sub=sub))
        await converge(inf, client, ns)
        assert inf.relists == 2
        assert rec.of(f"{ns}/doomed-1")[-1] == "delete"
        assert rec.of(f"{ns}/born-1") == ["add"]
        assert rec.of(f"{ns}/keep") == ["add", "update"]
        # and the live subscription still works afterwards
        await client.create(CM, ns, cm("later"))
        await eventually(lambda: inf.get(f"{ns}/later") is not None, "events flow after the relist")
    finally:
        await inf.stop()


async def test_converges_on_a_resync_message(bus: Bus, client: ApiClient, ns: str) -> None:
    await seed(client, ns, "1")
    inf = await started(Informer(bus, client, CM, namespace=ns))
    try:
        with Dropper(inf) as d:
            await mutate(client, ns, "1")
            await eventually(lambda: len(d.dropped) >= 3, "the three events dropped")
        relists = inf.relists
        await bus.publish(RESYNC_SUBJECT, orjson.dumps({"type": "RESYNC", "revision": 0}))
        await eventually(lambda: inf.relists > relists, "relist on resync message")
        await converge(inf, client, ns)
    finally:
        await inf.stop()


async def test_converges_by_periodic_resync(bus: Bus, client: ApiClient, ns: str) -> None:
    await seed(client, ns, "1")
    inf = await started(Informer(bus, client, CM, namespace=ns, resync_period=0.5))
    try:
        with Dropper(inf) as d:
            await mutate(client, ns, "1")
            await eventually(lambda: len(d.dropped) >= 3, "the three events dropped")
        await converge(inf, client, ns)
        assert inf.relists >= 2
    finally:
        await inf.stop()


async def test_relist_failure_is_retried(bus: Bus, client: ApiClient, ns: str) -> None:
    await client.create(CM, ns, cm("a"))

    class Flaky:
        calls = 0

        async def list(self, res: Resource, namespace: str = "", *, label_selector: str = "",
                       field_selector: str = "") -> dict[str, Any]:
            self.calls += 1
            if self.calls <= 2:
                raise httpx.ConnectError("apiserver down")
            return await client.list(res, namespace, label_selector=label_selector, field_selector=field_selector)

    inf = Informer(bus, Flaky(), CM, namespace=ns)
    await inf.start()
    try:
        await inf.wait_synced(TIMEOUT)
        assert inf.relist_failures == 2 and inf.keys() == [f"{ns}/a"]
    finally:
        await inf.stop()


async def test_converges_after_nats_server_restart() -> None:
    """nats-server goes away while objects change; nobody intervenes; the cache converges."""
    c = Cluster()
    await asyncio.to_thread(c.start)
    b = Bus(c.nats.url, "test-informer-restart", c.bus_options("apiserver"))
    client = c.api_client()
    inf: Informer | None = None
    try:
        await b.connect()
        ns = (await client.create(NS, "", {"metadata": {"name": "restart"}}))["metadata"]["name"]
        await seed(client, ns, "1", "2")
        inf = await started(Informer(b, client, CM, namespace=ns))
        rec = Recorder()
        inf.add_handler(rec.add, rec.update, rec.delete)

        await asyncio.to_thread(c.nats.stop)
        await eventually(lambda: not b.connected, "bus notices nats is gone")
        await mutate(client, ns, "1")  # writes go to etcd; nothing can be published now
        assert cache_state(inf) != await api_state(client, ns)

        await asyncio.to_thread(c.nats.start)
        await converge(inf, client, ns, timeout=30)
        assert inf.relists >= 2 and b.reconnects >= 1
        assert rec.of(f"{ns}/doomed-1")[-1] == "delete" and rec.of(f"{ns}/born-1") == ["add"]

        # events flow again through the re-established subscription (and the resumed publisher)
        await mutate(client, ns, "2")
        await converge(inf, client, ns)
    finally:
        if inf is not None:
            await inf.stop()
        await client.close()
        await b.close()
        await asyncio.to_thread(c.stop)


async def test_messages_without_revision_header_use_the_object_version(bus: Bus, client: ApiClient, ns: str) -> None:
    """Defensive: an event without a Kube-Revision header still carries resourceVersion."""
    inf = await started(Informer(bus, client, CM, namespace=ns))
    try:
        obj = {"metadata": {"name": "synthetic", "namespace": ns, "resourceVersion": str(inf.list_revision + 10**9)}}
        await inf._on_message(Message("x", orjson.dumps({"type": "ADDED", "object": obj}), {}))
        assert inf.get(f"{ns}/synthetic") is not None
        await inf._on_message(Message("x", b"not json", {}))
        assert inf.events_bad == 1
    finally:
        await inf.stop()
    # a subscription that outlives stop() (Bus skips UNSUB while disconnected) changes nothing
    obj = {"metadata": {"name": "straggler", "namespace": ns, "resourceVersion": str(10**10)}}
    await inf._on_message(Message("x", orjson.dumps({"type": "ADDED", "object": obj}), {}))
    assert inf.get(f"{ns}/straggler") is None


# ---------------------------------------------------------------- transforms, paging, shared values


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """A transform: metadata reduced to name, namespace, resourceVersion and labels, data kept, a mark."""
    meta = obj["metadata"]
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion", "labels") if k in meta},
            "data": obj.get("data") or {}, "slim": True}


async def test_transform_applies_to_lists_events_handlers_and_indexes(bus: Bus, client: ApiClient, ns: str) -> None:
    await client.create(CM, ns, cm("a", {"tier": "front"}, v="1"))
    await client.create(CM, ns, cm("b", {"tier": "back"}, v="1"))
    seen: list[dict[str, Any]] = []
    inf = Informer(bus, client, CM, namespace=ns, transform=slim)
    inf.add_index("tier", lambda o: [(o["metadata"].get("labels") or {}).get("tier", "")] if o.get("slim") else ["raw"])
    rec = Recorder()
    inf.add_handler(lambda o: (seen.append(o), rec.add(o)), lambda old, new: (seen.extend((old, new)), rec.update(old, new)),
                    lambda o: (seen.append(o), rec.delete(o)))
    await started(inf)
    try:
        assert all(o.get("slim") for o in inf.list()), "listed objects are transformed"
        assert "uid" not in inf.get(f"{ns}/a")["metadata"]  # type: ignore[index]
        await client.patch(CM, ns, "a", {"metadata": {"labels": {"tier": "back"}}, "data": {"v": "2"}})
        await client.create(CM, ns, cm("c", {"tier": "front"}))
        await client.delete(CM, ns, "b")
        await eventually(lambda: sorted(key_of(o) for o in inf.by_index("tier", "back")) == [f"{ns}/a"]
                         and [key_of(o) for o in inf.by_index("tier", "front")] == [f"{ns}/c"], "index follows events")
        assert inf.by_index("tier", "raw") == [], "indexes only ever see transformed objects"
        assert inf.get(f"{ns}/a")["data"] == {"v": "2"} and inf.get(f"{ns}/a")["slim"]  # type: ignore[index]
        assert seen and all(o.get("slim") for o in seen), "handlers only ever see transformed objects"
        assert rec.of(f"{ns}/b") == ["add", "delete"] and rec.of(f"{ns}/c") == ["add"]

        # a relist of an unchanged collection keeps the cached objects and reports nothing
        cached = {k: inf.get(k) for k in inf.keys()}
        events = len(rec.events)
        relists = inf.relists
        inf.request_relist("test")
        await eventually(lambda: inf.relists > relists, "relist")
        assert len(rec.events) == events, "no spurious updates: compared by resourceVersion"
        assert all(inf.get(k) is obj for k, obj in cached.items()), "unchanged objects are not transformed again"
        await converge(inf, client, ns)
    finally:
        await inf.stop()


async def test_a_failing_transform_caches_the_object_as_it_is(bus: Bus, client: ApiClient, ns: str) -> None:
    def picky(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["metadata"]["name"] == "odd":
            raise ValueError("cannot")
        return slim(obj)

    await client.create(CM, ns, cm("odd"))
    await client.create(CM, ns, cm("even"))
    inf = await started(Informer(bus, client, CM, namespace=ns, transform=picky))
    try:
        assert inf.get(f"{ns}/even")["slim"]  # type: ignore[index]
        assert "slim" not in inf.get(f"{ns}/odd") and inf.get(f"{ns}/odd")["metadata"]["uid"]  # type: ignore[index, operator]
        assert inf.transform_failures == 1
    finally:
        await inf.stop()


class PausingClient(ApiClient):
    """An ApiClient that runs a hook after the first page of a LIST (events then land mid-list)."""

    def __init__(self, cluster: Cluster, hook: Callable[[], Any]) -> None:
        admin = cluster.pki.clients["admin"]
        super().__init__(cluster.apiserver.url, ca_file=str(cluster.pki.ca.cert), cert=(str(admin.cert), str(admin.key)))
        self.hook = hook
        self.pages: list[int] = []

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        result = await super().request(method, path, body=body, params=params, content_type=content_type)
        if method == "GET" and params and "limit" in params:
            self.pages.append(len(result.get("items") or []))
            if len(self.pages) == 1:
                await self.hook()
        return result


async def test_relists_page_by_page_and_stay_consistent_with_events_in_between(
    bus: Bus, client: ApiClient, cluster: Cluster, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.informer.LIST_PAGE_SIZE", 2)
    for n in ("a", "b", "c", "d", "e"):
        await client.create(CM, ns, cm(n, v="0"))
    holder: list[Informer] = []

    async def between_pages() -> None:  # a listed object changes, an unlisted one goes, one is born
        await client.patch(CM, ns, "a", {"data": {"v": "1"}})
        await client.delete(CM, ns, "e")
        await client.create(CM, ns, cm("f"))
        await eventually(lambda: len(holder[0]._buffer or []) >= 3, "events buffered during the list")

    paging = PausingClient(cluster, between_pages)
    inf = Informer(bus, paging, CM, namespace=ns, transform=slim)
    holder.append(inf)
    rec = Recorder()
    inf.add_handler(rec.add, rec.update, rec.delete)
    try:
        await started(inf)
        assert paging.pages == [2, 2, 1], "pages of LIST_PAGE_SIZE, all at the first page's revision"
        await converge(inf, client, ns)
        assert sorted(inf.keys()) == [f"{ns}/{n}" for n in "abcdf"]
        assert inf.get(f"{ns}/a")["data"] == {"v": "1"} and all(o["slim"] for o in inf.list())  # type: ignore[index]
        assert rec.of(f"{ns}/e") == ["add", "delete"], "listed at the old revision, then deleted by its event"
        assert rec.of(f"{ns}/f") == ["add"]
    finally:
        await inf.stop()
        await paging.close()


def test_shared_values_are_one_object_per_value() -> None:
    values = SharedValues(max_entries=3)
    a = values(orjson.loads(b'{"app":"web","tier":"front"}'))
    b = values(orjson.loads(b'{"app":"web","tier":"front"}'))
    assert a is b and a == {"app": "web", "tier": "front"}
    tol = values([{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}])
    assert values([{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]) is tol
    assert values({"app": "db"}) is not a and values(3) == 3 and values(None) is None
    s1, s2 = values("".join(["name", "space"])), values("".join(["names", "pace"]))
    assert s1 is s2, "strings are interned"
    one = values([1])
    assert values([True])[0] is True and values([1.0])[0].is_integer() and type(values([1])[0]) is int, \
        "equal in Python, told apart by their JSON"
    assert values([1]) is one
    assert len(values) <= 3, "bounded"
    assert values({"app": "web", "tier": "front"}) == a, "still equal after the memory started over"
    nested = intern_strings({"k": ["x" + "y" * 3, {"z": "w"}]})
    assert nested == {"k": ["xyyy", {"z": "w"}]} and nested["k"][0] is sys.intern("xyyy")
