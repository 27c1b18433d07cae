"""The hollow runtime: the shared runtime contract, loopback-only pod IPs, test hooks, and scale.

`HollowRuntime` stands in for Docker on hollow nodes in scale tests, so it must behave like
`DockerRuntime` wherever the kubelet can tell (the `CONTRACT` table from test_runtime.py runs on
both) while staying cheap: thousands of pods in well under a second and a few KiB each.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Sequence

import pytest

from services.kubelet.hollow import SHARED_POD_CIDR, HollowRuntime, shared_pool
from services.kubelet.runtime_types import (
    ContainerConfig,
    ContainerRuntime,
    ContainerState,
    ContainerStatus,
    PortMapping,
    StartError,
)
from tests.kubelet.images import BUSYBOX_IMAGE, PAUSE_IMAGE
from tests.kubelet.test_runtime import CONTRACT, NAMESPACE, Harness, contract_id, read_logs

UNPULLABLE = "127.0.0.1:1/kubenats/missing:test"


def _pull_error(ref: str) -> str | None:
    return "dial tcp 127.0.0.1:1: connect: connection refused" if ref.startswith("127.0.0.1:1/") else None


def hollow(**kw: object) -> HollowRuntime:
    return HollowRuntime(images=[PAUSE_IMAGE, BUSYBOX_IMAGE], pull_error=_pull_error, log_line=b"ready\n", **kw)  # type: ignore[arg-type]


@pytest.fixture
def hollow_harness() -> Harness:
    node = f"hollow-{uuid.uuid4().hex[:6]}"
    rt = hollow(node_name=node)
    return Harness(rt, node, PAUSE_IMAGE, BUSYBOX_IMAGE, "kubenats/absent:never", UNPULLABLE,
                   ipaddress.IPv4Network(rt.pod_cidr))


@pytest.mark.parametrize("case", CONTRACT, ids=contract_id)
async def test_contract(case: Callable[[Harness], Awaitable[None]], hollow_harness: Harness) -> None:
    await case(hollow_harness)


def test_is_a_container_runtime() -> None:
    rt: ContainerRuntime = hollow()
    assert rt is not None


async def test_pod_ips_are_loopback_unique_and_reused() -> None:
    a, b = hollow(), hollow()  # default: one process-wide loopback pool, so IPs are unique across nodes
    ips = []
    for _ in range(50):
        for rt in (a, b):
            sb = await rt.run_sandbox(str(uuid.uuid4()), "p", NAMESPACE, 0, PAUSE_IMAGE)
            ips.append(sb.ip)
            assert ipaddress.IPv4Address(sb.ip) in ipaddress.IPv4Network("127.64.0.0/10")
    assert len(set(ips)) == 100
    [first] = [s for s in await a.list_containers() if s.ip == ips[0]]
    await a.remove_container(first.id)
    again = await a.run_sandbox(str(uuid.uuid4()), "p", NAMESPACE, 0, PAUSE_IMAGE)
    assert again.ip == ips[0]  # released addresses are reused
    for cidr in ("10.0.0.0/16", "172.17.0.0/16", "192.168.1.0/24", "8.8.8.0/24"):
        with pytest.raises(ValueError):
            HollowRuntime(pod_cidr=cidr)
    own = HollowRuntime(pod_cidr="127.10.0.0/24")  # a node's own podCIDR
    assert (await own.run_sandbox("u0", "p", "ns", 0, PAUSE_IMAGE)).ip == "127.10.0.1"
    tiny = HollowRuntime(pod_cidr="127.9.9.0/30")
    await tiny.run_sandbox("u1", "p", "ns", 0, PAUSE_IMAGE)
    await tiny.run_sandbox("u2", "p", "ns", 0, PAUSE_IMAGE)
    with pytest.raises(Exception, match="exhausted"):
        await tiny.run_sandbox("u3", "p", "ns", 0, PAUSE_IMAGE)


async def test_processes_of_a_fleet_take_pod_ips_from_disjoint_shared_pools() -> None:
    # one fleet process per slice of 127.64.0.0/10: inside a process the slice is shared by all its nodes
    a, b = hollow(shared_pod_cidr="127.68.0.0/14"), hollow(shared_pod_cidr="127.68.0.0/14")
    other = hollow(shared_pod_cidr="127.72.0.0/14")
    assert a.pod_cidr == b.pod_cidr == "127.68.0.0/14" and hollow().pod_cidr == SHARED_POD_CIDR
    ips = [(await rt.run_sandbox(str(uuid.uuid4()), "p", NAMESPACE, 0, PAUSE_IMAGE)).ip for rt in (a, b, a, b)]
    assert len(set(ips)) == 4 and all(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("127.68.0.0/14") for ip in ips)
    ip = (await other.run_sandbox("u", "p", NAMESPACE, 0, PAUSE_IMAGE)).ip
    assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("127.72.0.0/14")
    assert shared_pool("127.68.0.0/14") is shared_pool("127.68.0.0/255.252.0.0")  # one pool per network, however spelt
    with pytest.raises(ValueError, match="loopback"):
        shared_pool("10.64.0.0/14")


async def test_generation_counts_container_changes_only() -> None:
    rt = hollow()
    assert rt.generation == 0
    sb = await rt.run_sandbox("u", "p", NAMESPACE, 0, PAUSE_IMAGE)
    cid = await rt.create_container(sb.id, ContainerConfig(name="c", image=BUSYBOX_IMAGE))
    await rt.start_container(cid)
    rt.inject_exit(cid, 1)
    await rt.remove_container(cid)
    assert rt.generation == 5
    await rt.ensure_image("nginx", "Always")
    await rt.inspect(sb.id)
    await rt.list_containers()
    await rt.remove_container(cid)  # already gone
    assert rt.generation == 5  # (every mutation against the PLEG: tests/kubelet/test_pleg.py)


async def test_pull_policies_count_pulls() -> None:
    rt = hollow()
    await rt.ensure_image(BUSYBOX_IMAGE, "IfNotPresent")
    await rt.ensure_image("docker.io/" + BUSYBOX_IMAGE, "Never")
    assert rt.pulls == 0
    await rt.ensure_image(BUSYBOX_IMAGE, "Always")
    assert rt.pulls == 1
    assert await rt.image_present("nginx") is None
    image_id = await rt.ensure_image("nginx", "IfNotPresent")  # any other image "pulls" fine
    assert await rt.image_present("docker.io/library/nginx:latest") == image_id and rt.pulls == 2
    await rt.remove_image("nginx:latest")
    assert await rt.image_present("nginx") is None


async def test_injected_exits_oom_and_follow() -> None:
    rt = hollow()
    sb = await rt.run_sandbox("u", "p", NAMESPACE, 0, PAUSE_IMAGE)
    cid = await rt.create_container(sb.id, ContainerConfig(name="c", image=BUSYBOX_IMAGE))
    await rt.start_container(cid)
    follow = asyncio.ensure_future(read_logs(rt, cid, follow=True))
    await asyncio.sleep(0.05)
    assert not follow.done()
    rt.inject_exit(cid, 137, oom_killed=True)
    assert await asyncio.wait_for(follow, 1) == b"ready\n"
    [c] = [s for s in await rt.list_containers() if s.id == cid]
    assert (c.state, c.exit_code, c.oom_killed) == (ContainerState.EXITED, 137, True) and c.finished_at
    with pytest.raises(StartError):
        await rt.start_container(cid)  # exited containers are not restarted; the kubelet makes a new one
    rt.inject_exit(sb.id, 0)
    c2 = await rt.create_container(sb.id, ContainerConfig(name="c", image=BUSYBOX_IMAGE, restart_count=1))
    with pytest.raises(StartError):
        await rt.start_container(c2)  # the sandbox is gone


async def test_exec_handler_and_host_ports() -> None:
    def handler(c: ContainerStatus, cmd: Sequence[str]) -> tuple[int, bytes, bytes]:
        return (0, b"ok\n", b"") if cmd == ["probe"] else (1, b"", b"nope\n")

    rt = hollow(exec_handler=handler)
    sb = await rt.run_sandbox("u", "p", NAMESPACE, 0, PAUSE_IMAGE, port_mappings=[PortMapping(80, 8080)])
    with pytest.raises(StartError, match="already allocated"):
        await rt.run_sandbox("u2", "q", NAMESPACE, 0, PAUSE_IMAGE, port_mappings=[PortMapping(80, 8080)])
    cid = await rt.create_container(sb.id, ContainerConfig(name="c", image=BUSYBOX_IMAGE))
    await rt.start_container(cid)
    good = await rt.exec(cid, ["probe"])
    assert [x async for x in good] == [("stdout", b"ok\n")] and await good.wait(1) == 0
    bad = await rt.exec(cid, ["other"])
    assert [x async for x in bad] == [("stderr", b"nope\n")] and await bad.exit_code() == 1
    await rt.remove_container(sb.id)  # frees the host port
    await rt.run_sandbox("u2", "q", NAMESPACE, 0, PAUSE_IMAGE, port_mappings=[PortMapping(80, 8080)])


async def test_thousands_of_pods_are_cheap() -> None:
    rt = hollow(node_name="scale")
    pods = 5000
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    t0 = time.perf_counter()
    for i in range(pods):
        sb = await rt.run_sandbox(f"uid-{i:06d}", f"pod-{i}", NAMESPACE, 0, PAUSE_IMAGE)
        cid = await rt.create_container(sb.id, ContainerConfig(name="app", image=BUSYBOX_IMAGE, spec_hash="h"))
        await rt.start_container(cid)
    elapsed = time.perf_counter() - t0
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    t0 = time.perf_counter()
    listed = await rt.list_containers()
    list_time = time.perf_counter() - t0
    print(f"\nhollow: {pods} pods in {elapsed:.2f}s, {grown / pods / 1024:.1f} KiB per pod, list {list_time * 1000:.2f} ms")
    assert len(listed) == 2 * pods and len({c.ip for c in listed if c.ip}) == pods
    assert elapsed < 10 and list_time < 0.5
    assert grown / pods < 8 * 1024
