"""Every committed change becomes exactly one NATS message per subject, in revision order,
even when the apiserver is SIGKILLed at random points of a write loop."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import orjson
import pytest

from services.apiserver.publisher import messages_for
from services.apiserver.storage import Store
from shared.api.resources import BY_PLURAL
from shared.bus import STREAM, Bus, Message
from shared.informer import Informer
from tests.apiserver.manifests import pod
from tests.servers import Cluster

MERGE = {"Content-Type": "application/merge-patch+json"}


async def collect(bus: Bus, subject: str) -> list[Message]:
    got: list[Message] = []

    async def handler(m: Message) -> None:
        got.append(m)

    await bus.subscribe(subject, handler)
    await bus.flush()
    return got


async def wait_until(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_each_write_is_one_event_in_order(cluster: Cluster, api: httpx.AsyncClient, ns: str) -> None:
    bus = Bus(cluster.nats.url, "test", cluster.bus_options())
    await bus.connect()
    try:
        events = await collect(bus, f"kube.events.core.pods.{ns}.>")
        node = await collect(bus, "kube.nodes.node-a.pods.>")
        base = f"/api/v1/namespaces/{ns}/pods"
        revs: list[tuple[int, str]] = []
        r = await api.post(base, json=pod("e1"))
        revs.append((int(r.json()["metadata"]["resourceVersion"]), "ADDED"))
        r = await api.patch(f"{base}/e1", json={"metadata": {"labels": {"x": "1"}}}, headers=MERGE)
        revs.append((int(r.json()["metadata"]["resourceVersion"]), "MODIFIED"))
        # a no-op patch writes nothing and publishes nothing
        r = await api.patch(f"{base}/e1", json={"metadata": {"labels": {"x": "1"}}}, headers=MERGE)
        assert int(r.json()["metadata"]["resourceVersion"]) == revs[-1][0]
        await api.post(f"{base}/e1/binding", json={"target": {"kind": "Node", "name": "node-a"}})
        bound_rev = int((await api.get(f"{base}/e1")).json()["metadata"]["resourceVersion"])
        revs.append((bound_rev, "MODIFIED"))
        cur = (await api.get(f"{base}/e1")).json()
        cur["status"]["phase"] = "Running"
        r = await api.put(f"{base}/e1/status", json=cur)
        revs.append((int(r.json()["metadata"]["resourceVersion"]), "MODIFIED"))
        r = await api.delete(f"{base}/e1")  # graceful: sets deletionTimestamp
        revs.append((int(r.json()["metadata"]["resourceVersion"]), "MODIFIED"))
        r = await api.delete(f"{base}/e1", params={"gracePeriodSeconds": 0})
        revs.append((int(r.json()["metadata"]["resourceVersion"]), "DELETED"))

        await wait_until(lambda: len(events) >= len(revs) and len(node) >= 4)
        await asyncio.sleep(0.3)  # anything extra would show up now
        got = [(m.revision, orjson.loads(m.data)["type"]) for m in events]
        assert got == revs
        assert [m.revision for m in node] == [r for r, _ in revs[2:]]
        for m in events:
            obj = orjson.loads(m.data)["object"]
            assert obj["metadata"]["resourceVersion"] == str(m.revision)
            assert m.headers["Nats-Msg-Id"] == f"{m.revision}:{m.subject}"
        assert events[-1].subject == f"kube.events.core.pods.{ns}.e1"
        # grouped and cluster-scoped subjects
        grouped = await collect(bus, f"kube.events.coordination_k8s_io.leases.{ns}.>")
        nodes = await collect(bus, "kube.events.core.nodes._.>")
        await api.post(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", json={"metadata": {"name": "l.1"}, "spec": {}})
        await api.post("/api/v1/nodes", json={"metadata": {"name": f"n-{ns}"}})
        await wait_until(lambda: len(grouped) == 1 and len(nodes) >= 1)
        assert grouped[0].subject == f"kube.events.coordination_k8s_io.leases.{ns}.l_1"
        assert nodes[-1].subject == f"kube.events.core.nodes._.n-{ns}"
    finally:
        await bus.close()


async def etcd_history(url: str, upto: int) -> list[tuple[int, str]]:
    """(revision, subject) of every change etcd committed, by replaying its history."""
    store = Store([url])
    await store.open()
    out: list[tuple[int, str]] = []
    try:
        async def read() -> None:
            async for batch in store.watch("/registry/", 1):
                for ev in batch:
                    out.extend((ev.revision, s) for s, _ in messages_for(ev))
                if batch and batch[-1].revision >= upto:
                    return
        await asyncio.wait_for(read(), 30)
    finally:
        await store.close()
    return out


async def stream_contents(bus: Bus) -> list[tuple[int, str]]:
    js = bus.nc.jetstream()
    info = await js.stream_info(STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        m = await js.get_msg(STREAM, seq)
        out.append((int((m.headers or {})["Kube-Revision"]), m.subject or ""))
    return out


@pytest.mark.slow
async def test_sigkill_during_writes_publishes_every_revision_once() -> None:
    c = Cluster().start()
    bus = Bus(c.nats.url, "test", c.bus_options())
    client = c.api_client()
    informer = Informer(bus, client, BY_PLURAL[("", "configmaps")], namespace="default", resync_period=3600)
    try:
        await bus.connect()
        await informer.start()
        await informer.wait_synced(10)
        rng = random.Random(7)
        stop = asyncio.Event()
        ok = 0

        async def writer(i: int) -> None:
            nonlocal ok
            async with httpx.AsyncClient(verify=c.ssl, timeout=5) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        r = await client.post(f"{c.apiserver.url}/api/v1/namespaces/default/configmaps",
                                              json={"metadata": {"name": f"w{i}-{n}"}, "data": {"n": str(n)}})
                        if r.status_code == 201:
                            ok += 1
                            if n % 3 == 0:
                                await client.patch(f"{c.apiserver.url}/api/v1/namespaces/default/configmaps/w{i}-{n}",
                                                   json={"data": {"m": "x"}}, headers=MERGE)
                            if n % 5 == 0:
                                await client.delete(f"{c.apiserver.url}/api/v1/namespaces/default/configmaps/w{i}-{n}")
                    except httpx.HTTPError:
                        await asyncio.sleep(0.05)

        writers = [asyncio.create_task(writer(i)) for i in range(4)]
        for _ in range(5):
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            c.apiserver.kill()
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            await asyncio.to_thread(c.apiserver.start)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*writers)
        assert ok > 50, "the write loop made too little progress to mean anything"

        store = Store([c.etcd.url])
        await store.open()
        head = await store.revision()
        await store.close()
        expected = await etcd_history(c.etcd.url, head)

        async def caught_up() -> bool:
            got = await stream_contents(bus)
            return len(got) >= len(expected)
        deadline = time.monotonic() + 20
        while not await caught_up():
            assert time.monotonic() < deadline, "publisher did not catch up"
            await asyncio.sleep(0.2)
        got = await stream_contents(bus)
        assert len(got) == len(set(got)), "a change was published twice"
        assert got == expected, "stream differs from etcd's history"

        # an informer that lived through every crash holds exactly what etcd holds
        truth = await client.list(BY_PLURAL[("", "configmaps")], "default")
        want = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in truth["items"]}
        deadline = time.monotonic() + 15
        while {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in informer.list()} != want:
            assert time.monotonic() < deadline, "informer cache did not converge to etcd"
            await asyncio.sleep(0.1)
    finally:
        await informer.stop()
        await client.close()
        await bus.close()
        c.stop()
