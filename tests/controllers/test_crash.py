"""The controller manager SIGKILLed again and again during a scale-up to 200 replicas.

Expectations live in memory, so every restart starts from nothing: the manager relists and
counts what exists. The test samples the pod count continuously: it must never exceed
200 + maxSurge, and in the end exactly 200 pods exist and stay. Runs its own cluster (the
manager is a child process of `kubenats controllers`)."""

from __future__ import annotations

import asyncio
import functools
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from tests.controllers.conftest import DEPLOY, PODS, deployment, eventually
from tests.servers import Cluster, Proc

REPLICAS = 200
MAX_SURGE = 50  # the default 25% of 200
KILLS = 8
NS = "crash"
NAMESPACES = BY_PLURAL[("", "namespaces")]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    c = Cluster().start()
    try:
        yield c
    finally:
        c.stop()


def manager_proc(c: Cluster) -> Proc:
    return Proc("controllers", [sys.executable, "-m", "services.cli", "controllers", *c.component_args("controllers"),
                                "--nats-url", c.nats.url, "--log-level", "INFO"], c.workdir / "controllers.log")


class PodCounter:
    """Follows the namespace's pods with a watch: every creation and deletion is seen, so the
    peak is exact, and the apiserver is not loaded with lists while the manager works."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.count = 0
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listing = await self.client.list(PODS, NS)
        self.count = self.peak = len(listing["items"])
        rv = listing["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._follow(rv))

    async def _follow(self, rv: str) -> None:
        async for ev in self.client.watch_lines(f"/api/v1/namespaces/{NS}/pods", {"resourceVersion": rv}):
            if ev["type"] == "ADDED":
                self.count += 1
                self.peak = max(self.peak, self.count)
            elif ev["type"] == "DELETED":
                self.count -= 1
            elif ev["type"] == "ERROR":
                raise AssertionError(f"watch failed: {ev}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def test_sigkill_during_scale_up_never_overshoots(own_cluster: Cluster) -> None:
    client = own_cluster.api_client()
    proc = manager_proc(own_cluster)
    pods = PodCounter(client)
    counts_at_kill: list[int] = []

    async def listed() -> int:
        return len((await client.list(PODS, NS))["items"])

    async def at_least(n: int) -> bool:
        return pods.count >= n

    try:
        await client.create(NAMESPACES, "", {"metadata": {"name": NS}})
        await pods.start()
        proc.start()
        await client.create(DEPLOY, NS, deployment("big", 1))
        await eventually(functools.partial(at_least, 1), "the first pod", timeout=30)
        await client.patch(DEPLOY, NS, "big", {"spec": {"replicas": REPLICAS}})
        started = time.monotonic()
        rng = random.Random(7)
        while len(counts_at_kill) < KILLS:
            # kill while it is busy: a random number of creations after each restart
            target = pods.count + rng.randint(1, 30)
            await eventually(functools.partial(at_least, target), "progress after a restart", timeout=20,
                             interval=0.002)
            if pods.count >= REPLICAS:
                break
            counts_at_kill.append(pods.count)
            proc.kill()
            proc.start()
        await eventually(lambda: _equals(listed, REPLICAS), f"{REPLICAS} pods", timeout=60)
        took = time.monotonic() - started

        async def settled() -> bool:
            d = await client.get(DEPLOY, NS, "big")
            return bool(d.get("status", {}).get("replicas") == REPLICAS and
                        d["status"].get("observedGeneration") == d["metadata"]["generation"])
        await eventually(settled, "deployment status at 200", timeout=30)
        await asyncio.sleep(1.0)  # nothing more happens: no late extra pod, no late deletion
        final = await listed()
    finally:
        await pods.stop()
        proc.stop()
        await client.close()
    assert final == REPLICAS == pods.count
    assert pods.peak <= REPLICAS + MAX_SURGE, f"{pods.peak} pods at some moment"
    assert len(counts_at_kill) >= 5 and all(0 < n < REPLICAS for n in counts_at_kill), counts_at_kill
    print(f"scale-up to {REPLICAS} with {len(counts_at_kill)} SIGKILLs: {took:.1f}s, peak {pods.peak}, "
          f"pods at each kill {counts_at_kill}")


async def _equals(get: Callable[[], Awaitable[int]], n: int) -> bool:
    return await get() == n


async def test_sigterm_stops_cleanly(own_cluster: Cluster) -> None:
    proc = manager_proc(own_cluster)
    proc.log = own_cluster.workdir / "controllers-sigterm.log"
    proc.start()
    try:
        deadline = time.monotonic() + 20
        while "controller_started" not in proc.tail(100):
            assert proc.alive() and time.monotonic() < deadline, proc.tail()
            await asyncio.sleep(0.05)
        assert proc.p is not None
        proc.p.terminate()
        code = await asyncio.to_thread(proc.p.wait, 10)
    finally:
        proc.stop()
    assert code == 0, proc.tail()
    assert '"event":"stopped"' in proc.tail(5), proc.tail()
