"""The node's own API objects: registration, node status and the heartbeat Lease.

Why this exists: the control plane knows a node only through its Node object and keeps it
schedulable only while its Lease in `kube-node-lease` is renewed (upstream nodelease controller,
every 10 s, 40 s duration) — so the heartbeat is the cheapest possible write, while the full node
status (capacity, addresses, nodeInfo, the Ready/pressure conditions of nodestatus/setters.go) is
written only when it changed or every `node_status_report_frequency`, as upstream does since
leases exist. Everything here tolerates the API server being away: registration and every write
retry with capped back-off, and a Node deleted through the API is registered again.

Many hollow nodes share one process: each `NodeAgent` is a few coroutines, the first renewal is
offset (`node_lease_offset`) and renewals follow a fixed schedule, so a thousand leases are
spread evenly over the interval instead of bursting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import random
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from services.kubelet.apiclient import PRIORITY
from services.kubelet.config import KUBELET_VERSION, NODE_LEASE_NAMESPACE, KubeletConfig
from shared.api.quantity import canonical_quantity, parse_quantity
from shared.api.resources import BY_PLURAL
from shared.client import ApiClient, path_of
from shared.errors import ApiError
from shared.log import event
from shared.netinfo import primary_ipv4
from shared.netinfo import read_text as _read

log = logging.getLogger("kubenats.kubelet.node")
NODES = BY_PLURAL[("", "nodes")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
Obj = dict[str, Any]
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


# ---- the machine -------------------------------------------------------------------------------


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def machine_capacity(root: str) -> dict[str, str]:
    mem_kib = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    try:
        st = os.statvfs(root if os.path.exists(root) else "/")
        disk = st.f_blocks * st.f_frsize
    except OSError:
        disk = 0
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{mem_kib}Ki", "ephemeral-storage": f"{disk // 1024}Ki",
            "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def micro_time(t: float | None = None) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds."""
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _minus(q: str, amount: str) -> str:
    try:
        return canonical_quantity(str(max(parse_quantity(q) - parse_quantity(amount), 0)))
    except ValueError:
        return q


# ---- the agent ---------------------------------------------------------------------------------


class NodeAgent:
    def __init__(self, cfg: KubeletConfig, client: ApiClient, runtime_version: Callable[[], Awaitable[str]],
                 ready: Callable[[], tuple[bool, str]] = lambda: (True, "")) -> None:
        self.cfg = cfg
        self.name = cfg.node_name
        self.client = client
        self._runtime_version = runtime_version
        self._ready = ready
        self.node_ip = cfg.node_ip or ("127.0.0.1" if cfg.hollow else primary_ipv4())
        self.hostname = self.name if cfg.hollow else socket.gethostname().lower()
        self.uid = ""
        self.registered = asyncio.Event()
        self.on_registered: list[Callable[[], None]] = []
        self._reregister = asyncio.Event()
        self._last_status: Obj | None = None  # as last posted (heartbeat times included)
        self._next_report = 0.0
        self._lease: Obj | None = None
        self._info: Obj | None = None
        self._capacity: dict[str, str] | None = None
        # heartbeat statistics
        self.renewals = 0
        self.renew_failures = 0
        self.late_renewals = 0
        self.max_renew_gap = 0.0
        self._last_renewal = 0.0
        self.status_posts = 0

    @property
    def host_ips(self) -> list[str]:
        return [self.node_ip]

    # ---- objects ---------------------------------------------------------------------------

    def capacity(self) -> dict[str, str]:
        if self._capacity is None:
            if self.cfg.hollow:
                cap = {"cpu": self.cfg.cpu or "8", "memory": self.cfg.memory or "32Gi", "ephemeral-storage": "100Gi",
                       "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
            else:
                cap = machine_capacity(str(self.cfg.root_dir))
                if self.cfg.cpu:
                    cap["cpu"] = self.cfg.cpu
                if self.cfg.memory:
                    cap["memory"] = self.cfg.memory
            cap["pods"] = str(self.cfg.max_pods)
            self._capacity = cap
        return dict(self._capacity)

    def allocatable(self) -> dict[str, str]:
        cap = self.capacity()
        alloc = dict(cap)
        alloc["memory"] = _minus(cap["memory"], "100Mi")  # the default hard eviction threshold
        try:
            alloc["ephemeral-storage"] = canonical_quantity(str(int(parse_quantity(cap["ephemeral-storage"]) * 9 // 10)))
        except ValueError:
            pass
        return alloc

    async def node_info(self) -> Obj:
        if self._info is None:
            uname = os.uname()
            version = await self._runtime_version()
            self._info = {
                "machineID": _read("/etc/machine-id"), "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"), "kernelVersion": uname.release,
                "osImage": os_image(), "containerRuntimeVersion": version, "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux",
                "architecture": _ARCH.get(platform.machine(), platform.machine()),
            }
        return dict(self._info)

    def labels(self) -> dict[str, str]:
        arch = _ARCH.get(platform.machine(), platform.machine())
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch}
        if self.cfg.hollow:
            labels["kubenats.io/hollow"] = "true"
        labels.update(self.cfg.node_labels)
        return labels

    async def build_status(self) -> Obj:
        ready, message = self._ready()
        now = _now()
        conds = [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "message": "kubelet has sufficient memory available"},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
             "message": "kubelet has no disk pressure"},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
             "message": "kubelet has sufficient PID available"},
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
            if ready else {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": message},
        ]
        old = {c["type"]: c for c in (self._last_status or {}).get("conditions") or []}
        for c in conds:
            prev = old.get(c["type"])
            c["lastHeartbeatTime"] = now
            c["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev["status"] == c["status"] else now
        return {
            "capacity": self.capacity(), "allocatable": self.allocatable(), "conditions": conds,
            "addresses": [{"type": "InternalIP", "address": self.node_ip}, {"type": "Hostname", "address": self.hostname}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.cfg.port}},
            "nodeInfo": await self.node_info(),
        }

    @staticmethod
    def _without_heartbeat(status: Obj | None) -> Any:
        if status is None:
            return None
        s = dict(status)
        s["conditions"] = [{k: v for k, v in c.items() if k not in ("lastHeartbeatTime",)} for c in s.get("conditions") or []]
        return s

    # ---- registration ----------------------------------------------------------------------

    async def register(self) -> None:
        """Create (or adopt) the Node, retrying until the API server answers."""
        delay = 0.2
        while True:
            try:
                await self._register_once()
                self.registered.set()
                for cb in self.on_registered:
                    cb()
                return
            except ApiError as e:
                event(log, "node_register_failed", logging.WARNING, node=self.name, code=e.code, error=e.message,
                      retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cfg.api_retry_max)

    async def _register_once(self) -> None:
        status = await self.build_status()
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels(),
                             "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
                "spec": {}, "status": status}
        try:
            created = await self.client.create(NODES, "", node)
            self.uid = str(created["metadata"]["uid"])
            event(log, "node_registered", node=self.name, uid=self.uid, ip=self.node_ip)
        except ApiError as e:
            if e.code != 409:
                raise
            existing = await self.client.get(NODES, "", self.name)
            self.uid = str(existing["metadata"]["uid"])
            labels = existing["metadata"].get("labels") or {}
            missing = {k: v for k, v in self.labels().items() if labels.get(k) != v}
            if missing:
                await self.client.patch(NODES, "", self.name, {"metadata": {"labels": missing}})
            event(log, "node_adopted", node=self.name, uid=self.uid)
        self._last_status = None
        self._lease = None
        await self._post_status(status)

    def node_changed(self, node: Obj | None) -> None:
        """From the node informer: the Node was deleted (None) or replaced; register again."""
        if not self.registered.is_set():
            return
        uid = str(((node or {}).get("metadata") or {}).get("uid") or "")
        if node is None or (uid and uid != self.uid):
            event(log, "node_gone", logging.WARNING, node=self.name, uid=self.uid)
            self.registered.clear()
            self._reregister.set()

    # ---- status ----------------------------------------------------------------------------

    async def _post_status(self, status: Obj) -> None:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name}, "status": status}
        await self.client.request("PUT", path_of(NODES, "", self.name, "status"), body=body)
        first = self._last_status is None
        self._last_status = status
        # the next unconditional report, jittered so that many nodes do not report in step
        freq = self.cfg.node_status_report_frequency
        self._next_report = time.monotonic() + freq * (random.uniform(0.5, 1.0) if first else random.uniform(0.9, 1.1))
        self.status_posts += 1

    async def sync_status(self, force: bool = False) -> bool:
        status = await self.build_status()
        due = time.monotonic() >= self._next_report
        if not force and not due and self._without_heartbeat(status) == self._without_heartbeat(self._last_status):
            return False
        await self._post_status(status)
        return True

    async def status_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                await asyncio.wait_for(self._reregister.wait(), self.cfg.node_status_update_frequency)
            except TimeoutError:
                pass
            try:
                if self._reregister.is_set() or not self.registered.is_set():
                    self._reregister.clear()
                    await self.register()
                else:
                    await self.sync_status()
                delay = 0.2
            except ApiError as e:
                if e.code == 404:
                    self.registered.clear()
                    self._reregister.set()
                    continue
                event(log, "node_status_failed", logging.WARNING, node=self.name, code=e.code, error=e.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.cfg.api_retry_max)

    # ---- lease -----------------------------------------------------------------------------

    def _lease_object(self) -> Obj:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": NODE_LEASE_NAMESPACE,
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                                                  "uid": self.uid}]},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": self.cfg.node_lease_duration,
                         "renewTime": micro_time()}}

    async def renew_lease(self) -> None:
        for _ in range(3):
            lease = self._lease
            try:
                if lease is None:
                    try:
                        lease = await self.client.get(LEASES, NODE_LEASE_NAMESPACE, self.name)
                    except ApiError as e:
                        if e.code != 404:
                            raise
                        self._lease = await self.client.create(LEASES, NODE_LEASE_NAMESPACE, self._lease_object())
                        return
                owner = ((lease.get("metadata") or {}).get("ownerReferences") or [{}])[0].get("uid")
                body = dict(lease)
                body["metadata"] = dict(lease["metadata"])
                if self.uid and owner != self.uid:
                    body["metadata"]["ownerReferences"] = self._lease_object()["metadata"]["ownerReferences"]
                body["spec"] = {**(lease.get("spec") or {}), "holderIdentity": self.name,
                                "leaseDurationSeconds": self.cfg.node_lease_duration, "renewTime": micro_time()}
                self._lease = await self.client.update(LEASES, body)
                return
            except ApiError as e:
                if e.code in (404, 409):
                    self._lease = None
                    continue
                raise
        raise ApiError(409, "Conflict", "lease kept changing under us")

    async def lease_loop(self) -> None:
        """Renew on a fixed schedule (offset first), so many nodes stay spread out."""
        interval = self.cfg.node_lease_renew_interval
        PRIORITY.set(1)  # this task's API calls go first in the heartbeat lane
        await self.registered.wait()
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.cfg.node_lease_offset
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if not self.registered.is_set():
                await self.registered.wait()
            try:
                await self.renew_lease()
                now = time.monotonic()
                if self._last_renewal:
                    gap = now - self._last_renewal
                    self.max_renew_gap = max(self.max_renew_gap, gap)
                    if gap > 1.5 * interval:
                        self.late_renewals += 1
                        event(log, "lease_renewal_late", logging.WARNING, node=self.name, gap_s=round(gap, 2))
                self._last_renewal = now
                self.renewals += 1
            except ApiError as e:
                self.renew_failures += 1
                event(log, "lease_renew_failed", logging.WARNING, node=self.name, code=e.code, error=e.message)
                # retry sooner than a whole interval (upstream: 200 ms doubling, capped at 7 s)
                next_at = loop.time() + min(interval / 4, 7.0)
                continue
            next_at += interval
            if next_at < loop.time():  # fell behind (process stalled): resume the schedule from now
                next_at = loop.time() + interval

    async def run(self) -> None:
        await self.register()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.status_loop(), name=f"node status {self.name}")
            tg.create_task(self.lease_loop(), name=f"node lease {self.name}")
