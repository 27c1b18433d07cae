"""Controller manager benchmark: how fast the controllers turn intent into pods, and back.

Why this exists: the controllers' own latency (scale-up, rollout, cascading delete) beside the raw
building block of the same number of plain pod creates, without a scheduler or kubelet in the way.

Run: `.venv/bin/python -m bench.controllers [--quick] [--pods 1000] [--write-docs]` (about a minute),
or the `controllers-scenarios` step of `python -m bench`.
Starts its own etcd, nats-server and apiserver, and `kubenats controllers` as a child process,
and measures through the API's watch:

- scale-up: a Deployment of N replicas created, until N pods exist and the Deployment status
  says so (slow-start batches, expectations, one Event per pod), beside the raw building block:
  N pod creates by 32 concurrent API clients in the same run;
- rolling update: a 100-replica Deployment (maxSurge 25%, maxUnavailable 0) with the test's fake
  kubelet binding pods and marking them Ready, until `kubectl rollout status` would be satisfied;
- cascading delete: the N-pod Deployment deleted with propagationPolicy Background, until the
  garbage collector has removed its ReplicaSet and every pod.

Prints a Markdown section; `--write-docs` also stores it as the `controllers` section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import api_client, component, deployment
from bench.report import finish, machine, progress
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from tests.controllers.fake_kubelet import FakeKubelet
from tests.servers import Cluster

PODS = BY_PLURAL[("", "pods")]
RS = BY_PLURAL[("apps", "replicasets")]
DEPLOY = BY_PLURAL[("apps", "deployments")]
NAMESPACES = BY_PLURAL[("", "namespaces")]


async def until(check: Any, timeout: float = 300.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        await asyncio.sleep(interval)


async def raw_creates(client: ApiClient, ns: str, n: int, clients: int = 32) -> float:
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            await client.create(PODS, ns, {"metadata": {"name": f"raw-{i}", "labels": {"app": "raw"}},
                                           "spec": {"containers": [{"name": "main", "image": "busybox:1.35"}]}})

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return n / (time.perf_counter() - t0)


async def count(client: ApiClient, ns: str, app: str) -> int:
    return len((await client.list(PODS, ns, label_selector=f"app={app}"))["items"])


async def step(quick: bool = False, pods: int | None = None) -> dict[str, Any]:
    pods = pods or (200 if quick else 1000)
    c = Cluster().start()
    client = api_client(c)
    manager = component(c, "controllers", "--log-level", "WARNING")
    try:
        for ns in ("raw", "bench", "roll"):
            await client.create(NAMESPACES, "", {"metadata": {"name": ns}})
        progress(f"raw API: {pods} pod creates by 32 clients")
        raw_rate = await raw_creates(client, "raw", pods)
        manager.start()
        await asyncio.sleep(2.0)  # imports, informer lists

        progress(f"scale-up: Deployment of {pods}")
        t0 = time.perf_counter()
        await client.create(DEPLOY, "bench", deployment("big", pods, image="busybox:1.35", container="main"))
        await until(lambda: _ge(count(client, "bench", "big"), pods), interval=0.02)
        created = time.perf_counter() - t0

        async def status_caught_up() -> bool:
            st = (await client.get(DEPLOY, "bench", "big")).get("status") or {}
            return bool(st.get("replicas") == pods and st.get("updatedReplicas") == pods)
        await until(status_caught_up, interval=0.02)
        settled = time.perf_counter() - t0

        progress("rolling update: 100 replicas with the fake kubelet")
        bus = Bus(c.nats.url, "bench-kubelet", c.bus_options())
        await bus.connect()
        kubelet = FakeKubelet(client, bus, nodes=10, namespace="roll", ready_delay=0.0, workers=16)
        await kubelet.start()
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
        await client.create(DEPLOY, "roll", deployment("web", 100, image="busybox:1.35", container="main", strategy=strategy))
        await until(lambda: _complete(client, "roll", "web", 100))
        t1 = time.perf_counter()
        await client.patch(DEPLOY, "roll", "web", {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "now"}}}}}, patch_type="strategic")
        await asyncio.sleep(0.2)
        await until(lambda: _complete(client, "roll", "web", 100))
        rollout = time.perf_counter() - t1
        await kubelet.stop()
        await bus.close()

        progress(f"cascading delete of {pods} pods")
        t2 = time.perf_counter()
        await client.delete(DEPLOY, "bench", "big", propagation="Background")
        await until(lambda: _eq(count(client, "bench", "big"), 0), interval=0.02)
        collected = time.perf_counter() - t2
    finally:
        manager.stop()
        await client.close()
        c.stop()

    metrics = {"pods": pods, "raw_creates_per_s": raw_rate, "scaleup_per_s": pods / created,
               "scaleup_status_s": settled, "rollout_s": rollout, "delete_per_s": pods / collected}
    return {"metrics": metrics, "section": f"""## Controller manager — `python -m bench.controllers`

{machine()}

etcd, nats-server, the apiserver and `kubenats controllers` (all four controllers, default workers) run as child processes on the same machine as this client; the fake kubelet of the controller tests runs in this process.

| step | objects | time s | rate /s |
|---|---:|---:|---:|
| raw API: pod creates by 32 concurrent clients (building block) | {pods} | {pods / raw_rate:.1f} | {raw_rate:.0f} |
| scale-up: Deployment created → {pods} pods exist | {pods} | {created:.1f} | {pods / created:.0f} |
| … → Deployment status shows {pods} replicas | {pods} | {settled:.1f} | – |
| rolling update of 100 ready replicas (maxSurge 25%, maxUnavailable 0) until complete | 100 | {rollout:.1f} | {100 / rollout:.0f} |
| cascading delete (Background) until every pod is gone | {pods} | {collected:.1f} | {pods / collected:.0f} |

The scale-up writes one pod and one SuccessfulCreate Event per replica, in slow-start batches (1, 2, 4, … up to 500 in flight per ReplicaSet sync); the rolling update also binds each new pod, writes its status, and deletes each old pod in two steps (graceful deletion, then the kubelet's confirmation).
"""}


async def _ge(value: Any, n: int) -> bool:
    return bool(await value >= n)


async def _eq(value: Any, n: int) -> bool:
    return bool(await value == n)


async def _complete(client: ApiClient, ns: str, name: str, n: int) -> bool:
    d = await client.get(DEPLOY, ns, name)
    st = d.get("status") or {}
    return bool(d["metadata"]["generation"] <= st.get("observedGeneration", 0) and st.get("updatedReplicas", 0) >= n
                and st.get("replicas", 0) <= st.get("updatedReplicas", 0)
                and st.get("availableReplicas", 0) >= st.get("updatedReplicas", 0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 pods")
    p.add_argument("--pods", type=int)
    p.add_argument("--write-docs", action="store_true", help="store the section in docs/benchmarks.md")
    args = p.parse_args()
    r = asyncio.run(step(args.quick, args.pods))
    print(r["section"])
    if args.write_docs:
        finish("controllers-scenarios", r["section"], r["metrics"])


if __name__ == "__main__":
    main()
