"""Fake nodes for the endpoints, node lifecycle, DaemonSet and Job tests, played through the API.

`fake_kubelet.FakeKubelet` binds pods to node names that have no Node object and gives them
10.x addresses; these tests need more, so this helper adds (without changing it):
- real Node objects (labels, taints, a Ready condition) and their Leases in `kube-node-lease`,
  renewed every `renew_interval` seconds while the node is alive; `kill(node)` stops the
  renewals and everything else that node's kubelet does, `revive(node)` resumes them and posts
  Ready=True, `remove(node)` deletes the Node;
- a tiny scheduler for the test namespace: a pod with a required `metadata.name` node affinity
  (a DaemonSet pod) is bound to that node if it is one of ours; other pods go round-robin to
  the live nodes whose labels and NoSchedule taints they fit;
- a kubelet per live node: pods become Running and Ready with loopback addresses (127.77.x.y,
  the network rule's fake addresses), or, when annotated `fake.kubenats.io/exit-code`, finish
  after `fake.kubenats.io/run-seconds` as Succeeded (code 0) or Failed; graceful deletions are
  confirmed; `set_ready(pod, False)` makes a pod's readiness probe fail.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from datetime import UTC, datetime
from typing import Any

from services.controllers.taints import required_affinity_matches, target_node_name, untolerated_taint
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from shared.errors import ApiError
from shared.informer import Informer, key_of, split_key
from shared.workqueue import WorkQueue, run_workers

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
EXIT_CODE = "fake.kubenats.io/exit-code"
RUN_SECONDS = "fake.kubenats.io/run-seconds"
_ip_counter = itertools.count(1)


def now_iso(micro: bool = False) -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def next_ip() -> str:
    n = next(_ip_counter)
    return f"127.77.{n // 250 % 250}.{n % 250 + 1}"


def node_body(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    now = now_iso()
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                                       "lastTransitionTime": now}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}


class FakeNodes:
    def __init__(self, client: ApiClient, bus: Bus, namespace: str, prefix: str = "node",
                 renew_interval: float = 0.3, ready_delay: float = 0.05) -> None:
        self.client = client
        self.namespace = namespace
        self.prefix = prefix
        self.renew_interval = renew_interval
        self.ready_delay = ready_delay
        self.nodes: dict[str, dict[str, Any]] = {}  # name -> Node object as created (labels, taints)
        self.alive: set[str] = set()
        self.not_ready: set[str] = set()  # pod keys whose readiness fails
        self.informer = Informer(bus, client, PODS, namespace=namespace)
        self.queue = WorkQueue("fake-nodes")
        self._seen: dict[str, float] = {}
        self._rr = itertools.count()
        self._tasks: list[asyncio.Task[Any]] = []
        self.informer.add_handler(self._enqueue, lambda _o, n: self._enqueue(n), None)

    def _enqueue(self, pod: dict[str, Any]) -> None:
        self.queue.add(key_of(pod))

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> FakeNodes:
        await self.informer.start()
        await self.informer.wait_synced(15)
        self._tasks = [asyncio.create_task(run_workers(self.queue, self.reconcile, 8)),
                       asyncio.create_task(self._renew_loop())]
        return self

    async def stop(self) -> None:
        self.queue.shutdown()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.informer.stop()
        for name in list(self.nodes):
            await self.remove(name)

    async def add(self, suffix: str, labels: dict[str, str] | None = None,
                  taints: list[dict[str, Any]] | None = None) -> str:
        name = f"{self.prefix}-{suffix}"
        self.nodes[name] = await self.client.create(NODES, "", node_body(name, labels, taints))
        await self._renew(name)
        self.alive.add(name)
        for key in self.informer.keys():
            self.queue.add(key)
        return name

    async def remove(self, name: str) -> None:
        self.alive.discard(name)
        self.nodes.pop(name, None)
        for res, ns in ((NODES, ""), (LEASES, "kube-node-lease")):
            try:
                await self.client.delete(res, ns, name)
            except ApiError as e:
                if e.code != 404:
                    raise

    def kill(self, name: str) -> None:
        """The node's kubelet stops: no lease renewals, no pod updates, no deletions confirmed."""
        self.alive.discard(name)

    async def revive(self, name: str) -> None:
        """The kubelet is back: it renews its lease and posts Ready=True (as a real one does when
        the status it computes differs from the stored one)."""
        node = await self.client.get(NODES, "", name)
        now = now_iso()
        node["status"]["conditions"] = [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                         "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                                         "lastTransitionTime": now}]
        await self.client.update_status(NODES, node)
        await self._renew(name)
        self.alive.add(name)
        for key in self.informer.keys():
            self.queue.add(key)

    async def set_labels(self, name: str, labels: dict[str, str | None]) -> None:
        await self.client.patch(NODES, "", name, {"metadata": {"labels": labels}})

    def set_ready(self, pod_key: str, ready: bool) -> None:
        (self.not_ready.discard if ready else self.not_ready.add)(pod_key)
        self.queue.add(pod_key)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.renew_interval)
            for name in list(self.alive):
                try:
                    await self._renew(name)
                except ApiError:
                    pass

    async def _renew(self, name: str) -> None:
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_iso(micro=True)}
        try:
            lease = await self.client.get(LEASES, "kube-node-lease", name)
        except ApiError as e:
            if e.code != 404:
                raise
            await self.client.create(LEASES, "kube-node-lease", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": spec})
            return
        lease["spec"] = spec
        await self.client.update(LEASES, lease)

    # ---- the scheduler and kubelet ---------------------------------------------------------
    async def _node(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(NODES, "", name)
        except ApiError:
            return None

    async def _pick(self, pod: dict[str, Any]) -> str | None:
        target = target_node_name(pod)
        if target:
            return target if target in self.alive else None
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        candidates = []
        for name in sorted(self.alive):
            node = await self._node(name)
            if node is None or not required_affinity_matches(pod, node):
                continue
            if untolerated_taint((node.get("spec") or {}).get("taints") or [], tolerations) is None:
                candidates.append(name)
        if not candidates:
            return None
        return candidates[next(self._rr) % len(candidates)]

    async def reconcile(self, key: str) -> None:
        pod = self.informer.get(key)
        if pod is None:
            return
        ns, name = split_key(key)
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        node = spec.get("nodeName") or ""
        if not node:
            if meta.get("deletionTimestamp"):
                return
            target = await self._pick(pod)
            if target is not None:
                try:
                    await self.client.bind(ns, name, target, uid=meta.get("uid"))
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise
            return
        if node not in self.alive:
            return
        if meta.get("deletionTimestamp"):
            if meta.get("deletionGracePeriodSeconds") != 0:
                try:
                    await self.client.delete(PODS, ns, name, grace_period=0, uid=meta.get("uid"))
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise
            return
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        first = self._seen.setdefault(meta.get("uid", ""), time.monotonic())
        annotations = meta.get("annotations") or {}
        if EXIT_CODE in annotations:
            run = float(annotations.get(RUN_SECONDS) or 0)
            wait = first + run - time.monotonic()
            if wait > 0:
                if status.get("phase") != "Running":
                    await self._patch_status(ns, name, self._running(pod, status, True))
                self.queue.add_after(key, wait)
                return
            await self._patch_status(ns, name, self._exited(pod, int(annotations[EXIT_CODE])))
            return
        wait = first + self.ready_delay - time.monotonic()
        if wait > 0:
            self.queue.add_after(key, wait)
            return
        ready = key not in self.not_ready
        current = any(c.get("type") == "Ready" and c.get("status") == ("True" if ready else "False")
                      for c in status.get("conditions") or [])
        if status.get("phase") == "Running" and current:
            return
        await self._patch_status(ns, name, self._running(pod, status, ready))

    async def _patch_status(self, ns: str, name: str, st: dict[str, Any]) -> None:
        try:
            await self.client.patch(PODS, ns, name, {"status": st}, sub="status")
        except ApiError as e:
            if e.code != 404:
                raise

    def _running(self, pod: dict[str, Any], status: dict[str, Any], ready: bool) -> dict[str, Any]:
        now = now_iso()
        flag = "True" if ready else "False"
        old = {c.get("type"): c for c in status.get("conditions") or []}
        conds = []
        for t, s in (("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", flag), ("Ready", flag)):
            prev = old.get(t)
            since = prev["lastTransitionTime"] if prev and prev.get("status") == s else now
            conds.append({"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": since})
        ip = status.get("podIP") or next_ip()
        containers = [{"name": c.get("name", ""), "image": c.get("image", ""), "imageID": "", "ready": ready,
                       "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}}}
                      for c in (pod.get("spec") or {}).get("containers") or []]
        return {"phase": "Running", "conditions": conds, "containerStatuses": containers, "startTime": now,
                "hostIP": "127.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}]}

    def _exited(self, pod: dict[str, Any], code: int) -> dict[str, Any]:
        st = copy.deepcopy(self._running(pod, pod.get("status") or {}, False))
        finished = now_iso(micro=True)
        st["phase"] = "Succeeded" if code == 0 else "Failed"
        for c in st["containerStatuses"]:
            c["state"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                         "startedAt": now_iso(), "finishedAt": finished}}
            c["started"] = False
        for c in st["conditions"]:
            if c["type"] in ("Ready", "ContainersReady"):
                c["reason"] = "PodCompleted"
        return st
