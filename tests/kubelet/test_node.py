"""The Node object, its heartbeat Lease, and hollow nodes (many in one process, no Docker).

Node registration and the heartbeat do not depend on the runtime, so most of this runs on hollow
kubelets: fast, no containers. One test checks what only a Docker node reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.kubelet.images import ensure_test_images
from tests.kubelet.test_kubelet_helpers import (
    KubeletProc,
    container,
    create_pod,
    get_pod,
    pod_manifest,
    remove_node_containers,
    running_and_ready,
    unique_node,
    wait_for,
    wait_pod,
)
from tests.servers import Cluster

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


async def get_node(api: httpx.AsyncClient, name: str) -> dict[str, Any] | None:
    r = await api.get(f"/api/v1/nodes/{name}")
    return r.json() if r.status_code == 200 else None


def ready(node: dict[str, Any] | None) -> bool:
    conds = {c["type"]: c for c in ((node or {}).get("status") or {}).get("conditions") or []}
    return bool(conds.get("Ready", {}).get("status") == "True")


@pytest.fixture
def hollow(cluster: Cluster) -> Iterator[KubeletProc]:
    node = unique_node("kn")
    k = KubeletProc(node, cluster.component_args("kubelet", node), cluster.nats.url, cluster.workdir, runtime="hollow",
                    extra=["--node-status-report-frequency", "60"]).start()
    try:
        yield k
    finally:
        k.stop()


async def test_node_registration_status_and_lease(api: httpx.AsyncClient, hollow: KubeletProc) -> None:
    name = hollow.node

    async def registered() -> dict[str, Any] | None:
        node = await get_node(api, name)
        return node if ready(node) else None

    node = await wait_for(registered, 20, "the node registered and Ready", kubelet=hollow)
    st = node["status"]
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert st["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}]
    assert st["capacity"]["cpu"] == "8" and st["capacity"]["memory"] == "32Gi" and st["capacity"]["pods"] == "110"
    assert st["allocatable"]["pods"] == "110" and st["allocatable"]["memory"]
    info = st["nodeInfo"]
    assert info["kubeletVersion"] == "v1.31.0-kubenats" and info["containerRuntimeVersion"] == "hollow://1.0.0"
    assert info["operatingSystem"] == "linux" and info["architecture"] and info["kernelVersion"] and info["osImage"]
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0  # the logs/exec server's bound port
    conds = {c["type"]: c for c in st["conditions"]}
    assert list(conds) == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    assert conds["Ready"]["reason"] == "KubeletReady" and conds["Ready"]["message"] == "kubelet is posting ready status"
    for t in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conds[t]["status"] == "False" and conds[t]["lastHeartbeatTime"]

    async def lease_created() -> dict[str, Any] | None:
        # the lease loop runs beside node registration: it may land a moment after Ready
        r = await api.get(f"{LEASES}/{name}")
        return dict(r.json()) if r.status_code == 200 else None

    lease = await wait_for(lease_created, 10, "the node's lease", kubelet=hollow)
    assert lease["spec"]["holderIdentity"] == name and lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    renew = lease["spec"]["renewTime"]
    node_rv = node["metadata"]["resourceVersion"]
    await asyncio.sleep(2.5)
    lease2 = (await api.get(f"{LEASES}/{name}")).json()
    assert lease2["spec"]["renewTime"] > renew  # renewed every second (flag)
    again = await get_node(api, name)
    assert again is not None and again["metadata"]["resourceVersion"] == node_rv  # unchanged status: no write

    # a Node deleted through the API is registered again
    assert (await api.delete(f"/api/v1/nodes/{name}")).status_code == 200

    async def back() -> dict[str, Any] | None:
        n = await get_node(api, name)
        return n if n is not None and n["metadata"]["uid"] != node["metadata"]["uid"] and ready(n) else None

    new = await wait_for(back, 15, "the node registered again", kubelet=hollow)

    async def lease_owner_updated() -> bool:
        lease = (await api.get(f"{LEASES}/{name}")).json()
        return bool(((lease.get("metadata") or {}).get("ownerReferences") or [{}])[0].get("uid") == new["metadata"]["uid"])

    await wait_for(lease_owner_updated, 10, "the lease owned by the new Node", kubelet=hollow)


async def test_docker_node_reports_machine(cluster: Cluster, api: httpx.AsyncClient) -> None:
    ensure_test_images()
    node = unique_node("kd")
    k = KubeletProc(node, cluster.component_args("kubelet", node), cluster.nats.url, cluster.workdir).start()
    try:
        async def registered() -> dict[str, Any] | None:
            node = await get_node(api, k.node)
            return node if ready(node) else None

        node = await wait_for(registered, 20, "the node registered", kubelet=k)
        st = node["status"]
        assert st["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
        assert st["capacity"]["cpu"] == str(os.cpu_count())
        assert st["capacity"]["memory"].endswith("Ki")
        internal = next(a["address"] for a in st["addresses"] if a["type"] == "InternalIP")
        ipaddress.IPv4Address(internal)
    finally:
        k.stop()
        remove_node_containers(k.node)


async def test_fifty_hollow_nodes_in_one_process(cluster: Cluster, api: httpx.AsyncClient, ns: str) -> None:
    prefix = unique_node("hf")
    k = KubeletProc(prefix, cluster.component_args("kubelet"), cluster.nats.url, cluster.workdir, runtime="hollow",
                    extra=["--hollow-nodes", "50", "--node-lease-renew-interval", "2"]).start()
    try:
        async def all_ready() -> list[dict[str, Any]] | None:
            r = await api.get("/api/v1/nodes", params={"labelSelector": "kubenats.io/hollow=true"})
            mine = [n for n in r.json()["items"] if n["metadata"]["name"].startswith(prefix + "-")]
            return mine if len(mine) == 50 and all(ready(n) for n in mine) else None

        nodes = await wait_for(all_ready, 60, "50 hollow nodes Ready", interval=0.5, kubelet=k)
        ips = {next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP") for n in nodes}
        assert len(ips) == 50 and all(ipaddress.IPv4Address(ip).is_loopback for ip in ips)

        async def leases() -> dict[str, str]:
            items = (await api.get(LEASES)).json()["items"]
            return {i["metadata"]["name"]: i["spec"]["renewTime"] for i in items
                    if i["metadata"]["name"].startswith(prefix + "-")}

        first = await wait_for(lambda: _when_complete(leases, 50), 20, "50 leases", kubelet=k)
        await asyncio.sleep(4.5)
        second = await leases()
        assert all(second[n] > first[n] for n in first), "a lease was not renewed"
        # renewals are spread over the interval, not bursting together
        fractions = {round(float(t[17:26]) % 2, 1) for t in second.values()}
        assert len(fractions) >= 8, sorted(fractions)

        # pods run on hollow nodes at once, with loopback pod IPs
        targets = [f"{prefix}-{i}" for i in (0, 17, 49)]
        for i, node in enumerate(targets):
            await create_pod(api, ns, pod_manifest(f"p{i}", node, [container("main")]))
        for i in range(len(targets)):
            pod = await wait_pod(api, ns, f"p{i}", running_and_ready, 20, "Running", k)
            assert ipaddress.IPv4Address(pod["status"]["podIP"]).is_loopback
            assert pod["status"]["hostIP"] in ips
            assert pod["status"]["containerStatuses"][0]["containerID"].startswith("hollow://")
        t0 = time.monotonic()
        assert (await api.delete(f"/api/v1/namespaces/{ns}/pods/p0")).status_code == 200

        async def deleted() -> bool:
            return await get_pod(api, ns, "p0") is None

        await wait_for(deleted, 10, "the hollow pod deleted", kubelet=k)
        assert time.monotonic() - t0 < 10
        assert k.p is not None
        rss_kib = rss(k.p.pid)
        assert rss_kib < 400 * 1024, f"{rss_kib} KiB for 50 hollow nodes"
    finally:
        k.stop()


async def test_hollow_fleet_split_over_two_processes(cluster: Cluster, api: httpx.AsyncClient, ns: str) -> None:
    """kubemark-style: two processes of 2 nodes each (`--hollow-first-index 0` and `2`), one fleet."""
    prefix = unique_node("hp")
    cidrs = ["127.96.0.0/14", "127.100.0.0/14"]  # each process its own slice of 127.64.0.0/10
    procs = []
    try:
        for j, first in enumerate((0, 2)):
            k = KubeletProc(prefix, cluster.component_args("kubelet"), cluster.nats.url, cluster.workdir,
                            runtime="hollow", extra=["--hollow-nodes", "2", "--hollow-first-index", str(first),
                                                     "--hollow-pod-cidr", cidrs[j]])
            k.log = cluster.workdir / f"kubelet-{prefix}-proc{j}.log"
            procs.append(k.start())

        async def all_ready() -> list[dict[str, Any]] | None:
            r = await api.get("/api/v1/nodes", params={"labelSelector": "kubenats.io/hollow=true"})
            mine = [n for n in r.json()["items"] if n["metadata"]["name"].startswith(prefix + "-")]
            return mine if len(mine) == 4 and all(ready(n) for n in mine) else None

        nodes = await wait_for(all_ready, 60, "4 hollow nodes Ready", interval=0.5, kubelet=procs[1])
        assert sorted(n["metadata"]["name"] for n in nodes) == [f"{prefix}-{i}" for i in range(4)]
        ip_of = {n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
                 for n in nodes}
        assert len(set(ip_of.values())) == 4 and all(ipaddress.IPv4Address(ip).is_loopback for ip in ip_of.values())

        for i in range(4):
            await create_pod(api, ns, pod_manifest(f"p{i}", f"{prefix}-{i}", [container("main")]))
        pod_ips = []
        for i in range(4):
            pod = await wait_pod(api, ns, f"p{i}", running_and_ready, 30, "Running", procs[i // 2])
            assert pod["status"]["hostIP"] == ip_of[f"{prefix}-{i}"]
            pod_ips.append(pod["status"]["podIP"])
            assert ipaddress.IPv4Address(pod_ips[-1]) in ipaddress.IPv4Network(cidrs[i // 2])
        assert len(set(pod_ips)) == 4, pod_ips

        for k in procs:
            assert k.alive(), k.tail()
            # fleet processes: the fleet's NATS user, no logs/exec server and no healthz port to fight over
            assert {e.get("user") for e in k.events("nats_connected")} == {"kubelet-hollow"}
            assert not k.events("kubelet_server_started") and not k.events("kubelet_healthz_failed")
            assert k.p is not None and listening_ports(k.p.pid) == set()
    finally:
        for k in procs:
            k.stop()
    stats = [k.events("fleet_stats") for k in procs]
    assert all(s and s[-1]["final"] and s[-1]["nodes"] == 2 for s in stats), stats  # a last line at shutdown


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on (its socket inodes matched against /proc/net/tcp{,6})."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def rss(pid: int) -> int:
    """Resident set size of a process, KiB."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmRSS")))


async def _when_complete(fetch: Any, n: int) -> dict[str, str] | None:
    got: dict[str, str] = await fetch()
    return got if len(got) == n else None
