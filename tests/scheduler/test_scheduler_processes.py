"""The scheduler as child processes (`python -m services.cli scheduler ...`): SIGKILL mid-burst and two
replicas with leader election, each against its own etcd + nats-server + apiserver."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest

from services.scheduler.framework import pod_requests
from shared.bus import Bus, Message
from tests.scheduler.test_scheduler import (
    create,
    create_node,
    create_pod,
    eventually,
    list_pods,
    make_node,
    make_pod,
    pod_events,
    scheduled_condition,
)
from tests.servers import Cluster, Proc

pytestmark = pytest.mark.slow

LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"
LEASE_DURATION = 15.0
RETRY_PERIOD = 2.0


def scheduler_proc(cluster: Cluster, tag: str, *extra: str) -> Proc:
    return Proc(f"scheduler-{tag}", [sys.executable, "-m", "services.cli", "scheduler",
                                     *cluster.component_args("scheduler"), "--nats-url", cluster.nats.url, *extra],
                cluster.workdir / f"scheduler-{tag}.log")


def log_events(proc: Proc, name: str | None = None) -> list[dict[str, Any]]:
    out = []
    try:
        text = proc.log.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if name is None or rec.get("event") == name:
            out.append(rec)
    return out


def log_time(rec: dict[str, Any]) -> float:
    """The wall-clock time of a structured log line."""
    return datetime.fromisoformat(rec["ts"].replace("Z", "+00:00")).timestamp()


async def wait_log(proc: Proc, name: str, timeout: float, count: int = 1,
                   where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]] | None:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
        recs = [r for r in log_events(proc, name) if all(r.get(k) == v for k, v in (where or {}).items())]
        return recs if len(recs) >= count else None
    result: list[dict[str, Any]] = await eventually(found, f"{proc.name} logs {name}", timeout, interval=0.05)
    return result


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    c = Cluster().start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
async def api(own_cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=40, max_keepalive_connections=40)
    async with httpx.AsyncClient(**own_cluster.admin_kwargs(), timeout=30, limits=limits) as client:
        yield client


class BindWatch:
    """Every nodeName each pod of a namespace was seen with on the event stream, in order."""

    def __init__(self) -> None:
        self.nodes: dict[str, list[str]] = defaultdict(list)
        self.bound: set[str] = set()

    async def handler(self, msg: Message) -> None:
        obj = orjson.loads(msg.data)["object"]
        name = obj["metadata"]["name"]
        node = obj["spec"].get("nodeName") or ""
        seen = self.nodes[name]
        if not seen or seen[-1] != node:
            seen.append(node)
        if node:
            self.bound.add(name)


async def test_burst_with_scheduler_killed_and_restarted_binds_every_pod_exactly_once(
        own_cluster: Cluster, api: httpx.AsyncClient) -> None:
    total, nodes, per_node = 500, 11, 46
    ns = "burst-" + uuid.uuid4().hex[:6]
    await create(api, "/api/v1/namespaces", {"metadata": {"name": ns}})
    for i in range(nodes):  # 506 slots for 500 pods: pods and cpu run out together
        await create_node(api, make_node(f"hollow-{i:02d}", cpu=f"{per_node * 100}m", memory="4Gi",
                                         pods=str(per_node)))
    watch = BindWatch()
    bus = Bus(own_cluster.nats.url, "test-burst", own_cluster.bus_options())
    await bus.connect()
    await bus.subscribe(f"kube.events.core.pods.{ns}.*", watch.handler)
    await bus.flush()

    first = scheduler_proc(own_cluster, "1")
    second = scheduler_proc(own_cluster, "2")
    try:
        first.start()
        await wait_log(first, "scheduling_started", 20)

        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await create_pod(api, ns, make_pod(f"p-{i:03d}", cpu="100m", memory="80Mi"))
        creating = asyncio.gather(*(one(i) for i in range(total)))

        async def some_bound() -> bool:
            return len(watch.bound) >= 150
        await eventually(some_bound, "150 pods bound before the kill", timeout=30)
        first.kill()  # SIGKILL: binds and Events in flight are simply lost
        at_kill = len(watch.bound)
        await creating
        assert at_kill < total, "the kill came too late to test anything"

        second.start()  # a new identity: it waits for the dead replica's lease to expire

        async def all_bound() -> bool:
            return len(watch.bound) == total
        await eventually(all_bound, f"all {total} pods bound after the restart", timeout=90, interval=0.2)
        await asyncio.sleep(1.0)  # let stragglers (events, late messages) arrive
    finally:
        first.kill()
        second.stop()
        await bus.close()

    pods = await list_pods(api, ns)
    assert len(pods) == total
    # 1. every pod bound, once: one nodeName ever, one PodScheduled=True condition
    for p in pods:
        name, node = p["metadata"]["name"], p["spec"].get("nodeName")
        assert node, f"{name} not bound"
        assert watch.nodes[name][-1] == node
        assert [n for n in watch.nodes[name] if n] == [node], f"{name} changed nodes: {watch.nodes[name]}"
        cond = scheduled_condition(p)
        assert cond is not None and cond["status"] == "True", (name, cond)
    # 2. no node over its allocatable cpu, memory or pod count
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in pods:
        by_node[p["spec"]["nodeName"]].append(p)
    for node, on_node in by_node.items():
        cpu = sum(pod_requests(p).milli_cpu for p in on_node)
        mem = sum(pod_requests(p).memory for p in on_node)
        assert len(on_node) <= per_node and cpu <= per_node * 100 and mem <= 4 * 1024**3, (node, len(on_node), cpu, mem)
    # 3. no pod was bound twice by either process; Scheduled events agree with the bindings
    logged = [r for proc in (first, second) for r in log_events(proc, "pod_scheduled")]
    per_pod = Counter(r["pod"] for r in logged)
    assert max(per_pod.values()) == 1, [k for k, v in per_pod.items() if v > 1]
    final = {f"{ns}/{p['metadata']['name']}": p["spec"]["nodeName"] for p in pods}
    assert all(final[r["pod"]] == r["node"] for r in logged)
    assert len(logged) >= total - 16 - 1  # only binds in flight at the kill may be unlogged
    assert log_events(second, "pod_scheduled"), "the restarted scheduler did not bind anything"
    events = await pod_events(api, ns, reason="Scheduled")
    per_pod_events = Counter(e["involvedObject"]["name"] for e in events)
    assert max(per_pod_events.values()) == 1
    for e in events:
        assert e["message"] == f"Successfully assigned {ns}/{e['involvedObject']['name']} to " \
                               f"{final[ns + '/' + e['involvedObject']['name']]}"
    assert not log_events(second, "assumed_pod_expired")
    assert not [e for e in await pod_events(api, ns, reason="FailedScheduling") if "Binding" in e["message"]]


async def test_two_replicas_only_the_leader_binds_and_the_standby_takes_over(
        own_cluster: Cluster, api: httpx.AsyncClient) -> None:
    ns = "ha-" + uuid.uuid4().hex[:6]
    await create(api, "/api/v1/namespaces", {"metadata": {"name": ns}})
    for i in range(3):
        await create_node(api, make_node(f"ha-{i}", cpu="16", memory="32Gi"))
    a, b, c = (scheduler_proc(own_cluster, tag) for tag in ("a", "b", "c"))
    try:
        a.start()
        a_id = (await wait_log(a, "leader_acquired", 20))[0]["identity"]
        b.start()
        await wait_log(b, "informer_relist", 20, where={"informer": "pods/*", "initial": True})
        lease = (await api.get(LEASE_PATH)).json()
        assert lease["spec"]["holderIdentity"] == a_id
        assert lease["spec"]["leaseDurationSeconds"] == 15
        assert lease["spec"]["leaseTransitions"] == 0
        assert lease["spec"]["renewTime"].endswith("Z") and len(lease["spec"]["renewTime"]) == 27  # micro time

        await asyncio.gather(*(create_pod(api, ns, make_pod(f"a-{i}")) for i in range(30)))

        async def bound(prefix: str, n: int) -> bool:
            pods = [p for p in await list_pods(api, ns) if p["metadata"]["name"].startswith(prefix)]
            return len(pods) == n and all(p["spec"].get("nodeName") for p in pods)
        await eventually(lambda: bound("a-", 30), "30 pods bound by the leader")
        # the API shows a binding before the scheduler has read the response and logged it
        await wait_log(a, "pod_scheduled", 10, count=30)
        assert len(log_events(a, "pod_scheduled")) == 30
        assert log_events(b, "pod_scheduled") == []
        assert log_events(b, "leader_acquired") == []

        async def scheduled_events() -> list[dict[str, Any]] | None:
            evs = await pod_events(api, ns, reason="Scheduled")
            return evs if len(evs) >= 30 else None
        assert {e["reportingInstance"] for e in await eventually(scheduled_events, "30 Scheduled events")} == {a_id}

        # SIGKILL the leader: the standby takes over once the lease expires
        last_renew = (await api.get(LEASE_PATH)).json()["spec"]["renewTime"]
        a.kill()
        killed = time.time()
        await asyncio.gather(*(create_pod(api, ns, make_pod(f"b-{i}")) for i in range(20)))
        got = await wait_log(b, "leader_acquired", LEASE_DURATION + 3 * RETRY_PERIOD + 5)
        b_id = got[0]["identity"]
        took_over = log_time(got[0])
        renewed = datetime.fromisoformat(last_renew.replace("Z", "+00:00")).timestamp()
        # one host, one clock: the standby takes over right when the record says the lease ran out,
        # not before, and so within the lease duration of the kill
        assert LEASE_DURATION - 0.5 <= took_over - renewed <= LEASE_DURATION + 1.0, took_over - renewed
        assert took_over - killed <= LEASE_DURATION + 1.0, took_over - killed  # slack for a loaded machine
        await eventually(lambda: bound("b-", 20), "20 pods bound by the new leader", timeout=10)
        lease = (await api.get(LEASE_PATH)).json()
        assert lease["spec"]["holderIdentity"] == b_id != a_id
        assert lease["spec"]["leaseTransitions"] == 1
        assert {r["pod"].split("/")[1][:2] for r in log_events(b, "pod_scheduled")} == {"b-"}
        assert len(log_events(a, "pod_scheduled")) == 30  # nothing bound twice
        print(f"takeover {took_over - killed:.1f}s after SIGKILL, {took_over - renewed:.1f}s after the last renewal")

        # an orderly stop releases the lease: a fresh standby takes over within a couple of polls
        c.start()
        await wait_log(c, "informer_relist", 20, where={"informer": "pods/*", "initial": True})
        b.stop()
        stopped = time.time()
        assert log_events(b, "leader_released")
        got = await wait_log(c, "leader_acquired", 10)
        assert log_time(got[0]) - stopped < 1 + 2 * RETRY_PERIOD * 1.2 + 0.5
        lease = (await api.get(LEASE_PATH)).json()
        assert lease["spec"]["holderIdentity"] == got[0]["identity"]
        assert lease["spec"]["leaseTransitions"] == 2
    finally:
        for p in (a, b, c):
            p.kill()
