"""A stand-in for the node side while no scheduler and no kubelet exist, playing it through the API.

It watches pods with an `Informer` (optionally one namespace), and for each pod:
- unbound: binds it round-robin to one of its node names with `POST pods/<name>/binding`
  (the scheduler's job);
- bound to one of its nodes and not yet Running/Ready: after `ready_delay` seconds writes
  phase Running, the PodScheduled/Initialized/ContainersReady/Ready conditions and
  containerStatuses through the `status` subresource (the kubelet's job);
- being deleted: confirms the graceful deletion with `DELETE gracePeriodSeconds=0`.
It is a test helper, to be replaced by the real (hollow) kubelet.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
from datetime import UTC, datetime
from typing import Any

from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from shared.errors import ApiError
from shared.informer import Informer, key_of, split_key
from shared.workqueue import WorkQueue, run_workers

PODS = BY_PLURAL[("", "pods")]
log = logging.getLogger("tests.fake_kubelet")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(pod: dict[str, Any], node_index: int, pod_index: int) -> dict[str, Any]:
    now = _now()
    conds = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
             for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    containers = [{"name": c.get("name", ""), "image": c.get("image", ""), "imageID": "", "ready": True,
                   "started": True, "restartCount": 0, "containerID": f"fake://{pod['metadata'].get('uid', '')}-{i}",
                   "state": {"running": {"startedAt": now}}}
                  for i, c in enumerate((pod.get("spec") or {}).get("containers") or [])]
    # fake addresses stay on this machine (the network rule): loopback only
    ip = f"127.{node_index % 250 + 1}.{pod_index // 250 % 250}.{pod_index % 250 + 1}"
    return {"phase": "Running", "conditions": conds, "containerStatuses": containers, "startTime": now,
            "hostIP": f"127.0.1.{node_index + 1}", "podIP": ip, "podIPs": [{"ip": ip}],
            "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort")}


class FakeKubelet:
    def __init__(self, client: ApiClient, bus: Bus, nodes: int = 3, namespace: str = "", ready_delay: float = 0.0,
                 bind: bool = True, workers: int = 8) -> None:
        self.client = client
        self.nodes = [f"fake-node-{i}" for i in range(nodes)]
        self.ready_delay = ready_delay
        self.bind = bind
        self.workers = workers
        self.informer = Informer(bus, client, PODS, namespace=namespace)
        self.queue = WorkQueue("fake-kubelet")
        self._rr = itertools.cycle(range(nodes))
        self._seen: dict[str, float] = {}
        self._counter = itertools.count()
        self._task: Any = None
        self.bound = 0
        self.started = 0
        self.finished = 0
        self.informer.add_handler(self._enqueue, lambda _o, n: self._enqueue(n), None)

    def _enqueue(self, pod: dict[str, Any]) -> None:
        self.queue.add(key_of(pod))

    async def start(self) -> None:
        await self.informer.start()
        await self.informer.wait_synced(15)
        self._task = asyncio.create_task(run_workers(self.queue, self.reconcile, self.workers))

    async def stop(self) -> None:
        self.queue.shutdown()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
        await self.informer.stop()

    async def reconcile(self, key: str) -> None:
        pod = self.informer.get(key)
        if pod is None:
            return
        ns, name = split_key(key)
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        node = spec.get("nodeName") or ""
        if meta.get("deletionTimestamp"):
            if node in self.nodes:
                try:
                    await self.client.delete(PODS, ns, name, grace_period=0, uid=meta.get("uid"))
                    self.finished += 1
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise
            return
        if not node:
            if self.bind:
                try:
                    await self.client.bind(ns, name, self.nodes[next(self._rr)], uid=meta.get("uid"))
                    self.bound += 1
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise
            return
        if node not in self.nodes:
            return
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if status.get("phase") == "Running" and ready:
            return
        first = self._seen.setdefault(meta.get("uid", ""), time.monotonic())
        wait = first + self.ready_delay - time.monotonic()
        if wait > 0:
            self.queue.add_after(key, wait)
            return
        body = {"status": running_status(copy.deepcopy(pod), self.nodes.index(node), next(self._counter))}
        try:
            await self.client.patch(PODS, ns, name, body, sub="status")
            self.started += 1
        except ApiError as e:
            if e.code != 404:
                raise
