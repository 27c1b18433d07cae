"""The scheduler service against a real etcd, nats-server and apiserver, on hollow Node objects.

The scheduler runs in-process here (the module's own cluster, so nodes from other test modules
cannot attract our pods); tests/scheduler/test_scheduler_processes.py runs it as child processes
for the crash and leader-election tests. Helpers here are shared with that module.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.scheduler.scheduler import Scheduler
from shared.bus import Bus
from tests.servers import Cluster

TIMEOUT = 15.0
PREEMPT_NO_VICTIMS = "No preemption victims found for incoming pod"
PREEMPT_NOT_HELPFUL = "Preemption is not helpful for scheduling"

# ------------------------------------------------------------------ helpers (also used by the processes module)


def make_node(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110", *,
              labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
              unschedulable: bool = False) -> dict[str, Any]:
    """A hollow Node: capacity/allocatable, Ready, the usual hostname label."""
    res = {"cpu": cpu, "memory": memory, "pods": pods}
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  **(labels or {})}},
            "spec": spec,
            "status": {"capacity": res, "allocatable": res,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "hollow node"}]}}


def make_pod(name: str, cpu: str | None = "100m", memory: str | None = "64Mi", *,
             labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.35",
                                     "resources": {"requests": requests} if requests else {}}], **spec}}


async def create(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(path, json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def create_node(api: httpx.AsyncClient, node: dict[str, Any]) -> dict[str, Any]:
    return await create(api, "/api/v1/nodes", node)


async def create_pod(api: httpx.AsyncClient, ns: str, pod: dict[str, Any]) -> dict[str, Any]:
    return await create(api, f"/api/v1/namespaces/{ns}/pods", pod)


async def get_pod(api: httpx.AsyncClient, ns: str, name: str) -> dict[str, Any]:
    r = await api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def list_pods(api: httpx.AsyncClient, ns: str) -> list[dict[str, Any]]:
    r = await api.get(f"/api/v1/namespaces/{ns}/pods")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = TIMEOUT,
                     interval: float = 0.02) -> Any:
    """Await ``check()`` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(interval)


async def wait_bound(api: httpx.AsyncClient, ns: str, name: str, timeout: float = TIMEOUT) -> str:
    async def node() -> str:
        return str((await get_pod(api, ns, name))["spec"].get("nodeName") or "")
    return str(await eventually(node, f"pod {ns}/{name} bound", timeout))


def scheduled_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"]
    assert len(conds) <= 1, conds
    return conds[0] if conds else None


async def pod_events(api: httpx.AsyncClient, ns: str, name: str | None = None,
                     reason: str | None = None) -> list[dict[str, Any]]:
    r = await api.get(f"/api/v1/namespaces/{ns}/events")
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"]
            if (name is None or e["involvedObject"].get("name") == name) and (reason is None or e["reason"] == reason)]


async def wait_unschedulable(api: httpx.AsyncClient, ns: str, name: str, want: str,
                             timeout: float = TIMEOUT) -> dict[str, Any]:
    """Wait for PodScheduled=False/Unschedulable with exactly ``want`` (an earlier attempt may have said
    something else, e.g. before the scheduler saw a node); returns the condition."""
    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        nonlocal last
        last = scheduled_condition(await get_pod(api, ns, name)) or {}
        return last if last.get("reason") == "Unschedulable" and last.get("message") == want else None
    try:
        cond: dict[str, Any] = await eventually(check, f"{ns}/{name} unschedulable", timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; last condition: {last}") from None
    assert cond["status"] == "False"
    return cond


def unschedulable_message(total: int, reasons: str, *, victims: int) -> str:
    """kube-scheduler's FitError text with DefaultPreemption's suffix (``victims`` nodes resolvable)."""
    post = []
    if victims:
        post.append(f"{victims} {PREEMPT_NO_VICTIMS}")
    if total - victims:
        post.append(f"{total - victims} {PREEMPT_NOT_HELPFUL}")
    return (f"0/{total} nodes are available: {reasons}. preemption: 0/{total} nodes are available: "
            f"{', '.join(sorted(post))}.")


# ------------------------------------------------------------------ fixtures


@dataclass
class Env:
    cluster: Cluster
    scheduler: Scheduler
    api: httpx.AsyncClient


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    cluster = Cluster().start()
    client = cluster.api_client()
    bus = Bus(cluster.nats.url, "test-scheduler", cluster.bus_options())
    api = httpx.AsyncClient(**cluster.admin_kwargs(), timeout=30)
    sched: Scheduler | None = None
    task: asyncio.Task[None] | None = None
    try:
        await bus.connect()
        sched = Scheduler(client, bus, stats_period=1.0)
        await sched.start()
        task = asyncio.create_task(sched.run())
        await sched.wait_synced(10)
        yield Env(cluster, sched, api)
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if sched is not None:
            await sched.stop()
        await api.aclose()
        await bus.close()
        await client.close()
        cluster.stop()


@pytest.fixture
async def ns(env: Env) -> AsyncIterator[str]:
    """A fresh namespace; afterwards its pods and every node are deleted and the scheduler has seen it."""
    api = env.api
    name = "s-" + uuid.uuid4().hex[:8]
    await create(api, "/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    for p in await list_pods(api, name):
        await api.request("DELETE", f"/api/v1/namespaces/{name}/pods/{p['metadata']['name']}",
                          json={"gracePeriodSeconds": 0})
    r = await api.get("/api/v1/nodes")
    for n in r.json()["items"]:
        await api.delete(f"/api/v1/nodes/{n['metadata']['name']}")

    async def clean() -> bool:
        sched = env.scheduler
        return len(sched.cache) == 0 and len(sched.queue) == 0 and sched.binds_in_flight == 0
    await eventually(clean, "scheduler saw the cleanup")


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# ------------------------------------------------------------------ placement


async def test_pod_too_big_for_one_node_lands_on_the_other(env: Env, ns: str) -> None:
    api = env.api
    small, big = uniq("small"), uniq("big")
    await create_node(api, make_node(small, cpu="1"))
    await create_node(api, make_node(big, cpu="4"))
    await create_pod(api, ns, make_pod("web", cpu="2"))
    assert await wait_bound(api, ns, "web") == big

    pod = await get_pod(api, ns, "web")
    cond = scheduled_condition(pod)
    assert cond is not None and cond["status"] == "True"
    events = await eventually(lambda: pod_events(api, ns, "web", "Scheduled"), "Scheduled event")
    assert len(events) == 1
    assert events[0]["message"] == f"Successfully assigned {ns}/web to {big}"
    assert events[0]["type"] == "Normal"
    assert events[0]["source"]["component"] == "default-scheduler"


async def test_requests_are_accounted_across_pods_including_assumed_ones(env: Env, ns: str) -> None:
    """Pods created together must not overcommit: each decision counts the ones still binding."""
    api = env.api
    nodes = [uniq("n") for _ in range(3)]
    for n in nodes:
        await create_node(api, make_node(n, cpu="1", memory="1Gi", pods="10"))
    await asyncio.gather(*(create_pod(api, ns, make_pod(f"p{i}", cpu="300m", memory="100Mi")) for i in range(12)))

    async def settled() -> list[dict[str, Any]] | None:
        pods = await list_pods(api, ns)
        bound = [p for p in pods if p["spec"].get("nodeName")]
        parked = [p for p in pods if (scheduled_condition(p) or {}).get("reason") == "Unschedulable"]
        return pods if len(bound) == 9 and len(parked) == 3 else None

    pods = await eventually(settled, "9 pods bound (3 per node) and 3 unschedulable")
    per_node: dict[str, int] = {}
    for p in pods:
        if p["spec"].get("nodeName"):
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
    assert per_node == dict.fromkeys(nodes, 3)
    parked = [p for p in pods if not p["spec"].get("nodeName")]
    want = unschedulable_message(3, "3 Insufficient cpu", victims=3)
    assert all(scheduled_condition(p)["message"] == want for p in parked)  # type: ignore[index]

    # deleting a bound pod frees its node: one parked pod is bound there promptly
    victim = next(p for p in pods if p["spec"].get("nodeName"))
    r = await api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{victim['metadata']['name']}",
                          json={"gracePeriodSeconds": 0})
    assert r.status_code == 200, r.text

    async def refilled() -> bool:
        pods = await list_pods(api, ns)
        return sum(1 for p in pods if p["spec"].get("nodeName") == victim["spec"]["nodeName"]) == 3
    await eventually(refilled, "a parked pod took the freed capacity", timeout=5)


async def test_taints_and_tolerations(env: Env, ns: str) -> None:
    api = env.api
    tainted, plain = uniq("gpu"), uniq("plain")
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    await create_node(api, make_node(tainted, cpu="8", labels={"accel": "gpu"}, taints=[taint]))
    await create_node(api, make_node(plain, cpu="1"))
    for i in range(3):
        await create_pod(api, ns, make_pod(f"plain-{i}", cpu="200m"))
    await create_pod(api, ns, make_pod("tolerant", cpu="200m", nodeSelector={"accel": "gpu"},
                                       tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                                     "effect": "NoSchedule"}]))
    for i in range(3):
        assert await wait_bound(api, ns, f"plain-{i}") == plain
    assert await wait_bound(api, ns, "tolerant") == tainted

    # a pod that fits only the tainted node and does not tolerate the taint stays pending
    await create_pod(api, ns, make_pod("intolerant", cpu="700m"))
    want = unschedulable_message(2, "1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}",
                                 victims=1)
    await wait_unschedulable(api, ns, "intolerant", want)


async def test_node_selector_and_required_node_affinity(env: Env, ns: str) -> None:
    api = env.api
    a, b, c = uniq("a"), uniq("b"), uniq("c")
    await create_node(api, make_node(a, labels={"disk": "ssd", "topology.kubernetes.io/zone": "z1"}))
    await create_node(api, make_node(b, labels={"disk": "hdd", "topology.kubernetes.io/zone": "z2"}))
    await create_node(api, make_node(c, labels={"disk": "hdd", "topology.kubernetes.io/zone": "z3"}))
    for i in range(3):
        await create_pod(api, ns, make_pod(f"ssd-{i}", nodeSelector={"disk": "ssd"}))
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z2"]}]}]}}}
    for i in range(3):
        await create_pod(api, ns, make_pod(f"z2-{i}", affinity=affinity))
    for i in range(3):
        assert await wait_bound(api, ns, f"ssd-{i}") == a
        assert await wait_bound(api, ns, f"z2-{i}") == b

    await create_pod(api, ns, make_pod("nowhere", nodeSelector={"disk": "nvme"}))
    want = unschedulable_message(3, "3 node(s) didn't match Pod's node affinity/selector", victims=0)
    await wait_unschedulable(api, ns, "nowhere", want)


async def test_pod_anti_affinity_spreads_one_per_host(env: Env, ns: str) -> None:
    api = env.api
    nodes = [uniq("h") for _ in range(3)]
    for n in nodes:
        await create_node(api, make_node(n))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    await asyncio.gather(*(create_pod(api, ns, make_pod(f"db-{i}", labels={"app": "db"}, affinity=anti))
                           for i in range(4)))

    async def settled() -> list[dict[str, Any]] | None:
        pods = await list_pods(api, ns)
        bound = [p for p in pods if p["spec"].get("nodeName")]
        parked = [p for p in pods if (scheduled_condition(p) or {}).get("reason") == "Unschedulable"]
        return pods if len(bound) == 3 and len(parked) == 1 else None

    pods = await eventually(settled, "3 db pods on 3 hosts, the 4th unschedulable")
    assert sorted(p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")) == sorted(nodes)
    parked = next(p for p in pods if not p["spec"].get("nodeName"))
    want = unschedulable_message(3, "3 node(s) didn't match pod anti-affinity rules", victims=3)
    assert scheduled_condition(parked)["message"] == want  # type: ignore[index]


# ------------------------------------------------------------------ unschedulable, then a node joins


async def test_unschedulable_pod_reports_and_is_bound_when_a_fitting_node_joins(env: Env, ns: str) -> None:
    api = env.api
    await create_node(api, make_node(uniq("tiny"), cpu="1"))
    await create_pod(api, ns, make_pod("huge", cpu="6"))
    want = unschedulable_message(1, "1 Insufficient cpu", victims=0)
    cond = await wait_unschedulable(api, ns, "huge", want)
    assert cond.get("lastTransitionTime")

    async def failed_event() -> list[dict[str, Any]]:
        return [e for e in await pod_events(api, ns, "huge", "FailedScheduling") if e["message"] == want]
    events = await eventually(failed_event, "FailedScheduling event with the same message")
    assert events[0]["type"] == "Warning"

    # nothing retries it on its own: the status write did not count as a change
    await asyncio.sleep(1.5)
    pending = await get_pod(api, ns, "huge")
    assert not pending["spec"].get("nodeName")
    assert env.scheduler.queue.where(pending["metadata"]["uid"]) == "unschedulable"

    big = uniq("big")
    await create_node(api, make_node(big, cpu="8"))
    t0 = time.monotonic()
    assert await wait_bound(api, ns, "huge", timeout=10) == big
    latency = time.monotonic() - t0
    assert latency < 2.0, f"bound {latency:.2f}s after the node joined"
    bound = await get_pod(api, ns, "huge")
    assert scheduled_condition(bound)["status"] == "True"  # type: ignore[index]


async def test_no_nodes_at_all(env: Env, ns: str) -> None:
    api = env.api
    await create_pod(api, ns, make_pod("lonely"))

    await wait_unschedulable(api, ns, "lonely", "no nodes available to schedule pods")
    n = uniq("first")
    await create_node(api, make_node(n))
    assert await wait_bound(api, ns, "lonely", timeout=5) == n


async def test_cordoned_node_uncordoned_later(env: Env, ns: str) -> None:
    api = env.api
    n = uniq("cordoned")
    await create_node(api, make_node(n, unschedulable=True))
    await create_pod(api, ns, make_pod("waiting"))
    await wait_unschedulable(api, ns, "waiting", unschedulable_message(1, "1 node(s) were unschedulable", victims=0))
    r = await api.patch(f"/api/v1/nodes/{n}", json={"spec": {"unschedulable": False}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert await wait_bound(api, ns, "waiting", timeout=5) == n


async def test_pods_for_other_schedulers_are_left_alone(env: Env, ns: str) -> None:
    api = env.api
    await create_node(api, make_node(uniq("n")))
    await create_pod(api, ns, make_pod("mine"))
    await create_pod(api, ns, make_pod("theirs", schedulerName="other-scheduler"))
    await wait_bound(api, ns, "mine")
    await asyncio.sleep(0.5)
    theirs = await get_pod(api, ns, "theirs")
    assert not theirs["spec"].get("nodeName")
    assert scheduled_condition(theirs) is None
    assert await pod_events(api, ns, "theirs") == []
