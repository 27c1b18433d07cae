"""The Job controller against the package's real apiserver, with fake nodes whose pods exit.

completions=5 / parallelism=2 completes without ever running more than 2 pods; failing pods
exhaust backoffLimit (BackoffLimitExceeded); activeDeadlineSeconds (DeadlineExceeded);
ttlSecondsAfterFinished deletes the finished Job; Indexed jobs; suspend and resume. Pods are
counted through the job-tracking finalizer, which none of them keeps at the end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services.controllers.job import JobController
from services.controllers.job_util import FINALIZER, INDEX_KEY
from services.controllers.main import ControllerManager
from shared.api.resources import BY_PLURAL
from shared.bus import Bus
from shared.client import ApiClient
from shared.errors import ApiError
from tests.controllers.conftest import PODS, eventually
from tests.controllers.fake_nodes import EXIT_CODE, RUN_SECONDS, FakeNodes
from tests.servers import Cluster

JOBS = BY_PLURAL[("batch", "jobs")]


@pytest.fixture
def fast(manager: ControllerManager) -> Iterator[JobController]:
    c = manager.get("job")
    assert isinstance(c, JobController)
    saved = c.pod_failure_backoff
    c.pod_failure_backoff = 0.2
    yield c
    c.pod_failure_backoff = saved


@pytest.fixture
async def nodes(cluster: Cluster, client: ApiClient, ns: str) -> AsyncIterator[FakeNodes]:
    bus = Bus(cluster.nats.url, "test-fake-nodes", cluster.bus_options())
    await bus.connect()
    fake = await FakeNodes(client, bus, ns, prefix=ns).start()
    for i in range(2):
        await fake.add(str(i))
    yield fake
    await fake.stop()
    await bus.close()


def job(name: str, exit_code: int | None = 0, run: float = 0.2, **spec: Any) -> dict[str, Any]:
    annotations = {} if exit_code is None else {EXIT_CODE: str(exit_code), RUN_SECONDS: str(run)}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"metadata": {"annotations": annotations},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "main", "image": "busybox:1.35"}]}}, **spec}}


async def wait_condition(client: ApiClient, ns: str, name: str, ctype: str, timeout: float = 20) -> dict[str, Any]:
    async def check() -> Any:
        j = await client.get(JOBS, ns, name)
        conds = {c["type"]: c for c in (j.get("status") or {}).get("conditions") or []}
        return j if conds.get(ctype, {}).get("status") == "True" else None
    result: dict[str, Any] = await eventually(check, f"job {name} {ctype}", timeout=timeout)
    return result


async def job_pods(client: ApiClient, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.list(PODS, ns, label_selector=f"batch.kubernetes.io/job-name={name}"))[
        "items"]
    return items


def running(pods: list[dict[str, Any]]) -> int:
    return sum(1 for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
               and not p["metadata"].get("deletionTimestamp"))


async def no_finalizers_left(client: ApiClient, ns: str, name: str) -> None:
    async def check() -> bool:
        return not any(FINALIZER in (p["metadata"].get("finalizers") or []) for p in await job_pods(client, ns, name))
    await eventually(check, "no pod keeps the job-tracking finalizer")


async def test_completions_with_parallelism(manager: ControllerManager, client: ApiClient, ns: str,
                                           nodes: FakeNodes) -> None:
    peak = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, running(await job_pods(client, ns, "work")))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        created = await client.create(JOBS, ns, job("work", completions=5, parallelism=2))
        j = await wait_condition(client, ns, "work", "Complete")
    finally:
        stop.set()
        await sampler
    assert peak <= 2
    st = j["status"]
    assert st["succeeded"] == 5 and not st.get("failed") and not st.get("active")
    assert st["uncountedTerminatedPods"] == {} and st["ready"] == 0 and st["terminating"] == 0
    assert st["startTime"] and st["completionTime"]
    types = [(c["type"], c.get("reason"), c.get("message")) for c in st["conditions"]]
    assert types == [("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                     ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]
    pods = await job_pods(client, ns, "work")
    assert len(pods) == 5 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    uid = created["metadata"]["uid"]
    for p in pods:
        assert p["metadata"]["generateName"] == "work-"
        labels = p["metadata"]["labels"]
        assert labels["batch.kubernetes.io/controller-uid"] == uid and labels["controller-uid"] == uid
        assert labels["job-name"] == "work" and labels["batch.kubernetes.io/job-name"] == "work"
        assert p["metadata"]["ownerReferences"][0]["uid"] == uid
    await no_finalizers_left(client, ns, "work")


async def test_backoff_limit_exceeded(manager: ControllerManager, client: ApiClient, ns: str, nodes: FakeNodes,
                                      fast: JobController) -> None:
    await client.create(JOBS, ns, job("fail", exit_code=1, backoffLimit=1))
    j = await wait_condition(client, ns, "fail", "Failed")
    st = j["status"]
    assert st["failed"] == 2 and not st.get("succeeded")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Failed"]["reason"] == "BackoffLimitExceeded"
    assert conds["Failed"]["message"] == "Job has reached the specified backoff limit"
    assert conds["FailureTarget"]["reason"] == "BackoffLimitExceeded"
    assert "completionTime" not in st
    assert len(await job_pods(client, ns, "fail")) == 2
    await no_finalizers_left(client, ns, "fail")


async def test_active_deadline(manager: ControllerManager, client: ApiClient, ns: str, nodes: FakeNodes) -> None:
    started = time.monotonic()
    await client.create(JOBS, ns, job("slow", exit_code=None, activeDeadlineSeconds=2, parallelism=2, completions=4))
    j = await wait_condition(client, ns, "slow", "Failed", timeout=15)
    assert time.monotonic() - started >= 1.0  # startTime has second precision, as upstream's
    conds = {c["type"]: c for c in j["status"]["conditions"]}
    assert conds["Failed"]["reason"] == "DeadlineExceeded"
    assert conds["Failed"]["message"] == "Job was active longer than specified deadline"
    assert j["status"]["failed"] == 2 and not j["status"].get("active")

    async def gone() -> bool:
        return running(await job_pods(client, ns, "slow")) == 0
    await eventually(gone, "the running pods were deleted")


async def test_ttl_after_finished(manager: ControllerManager, client: ApiClient, ns: str, nodes: FakeNodes) -> None:
    await client.create(JOBS, ns, job("short", ttlSecondsAfterFinished=1))
    await wait_condition(client, ns, "short", "Complete")

    async def deleted() -> bool:
        try:
            await client.get(JOBS, ns, "short")
        except ApiError as e:
            return e.code == 404
        return False
    await eventually(deleted, "the finished job is deleted after its ttl", timeout=10)

    async def pods_gone() -> bool:  # the garbage collector follows the Background deletion
        return not await job_pods(client, ns, "short")
    await eventually(pods_gone, "its pods are collected")


async def test_indexed_job(manager: ControllerManager, client: ApiClient, ns: str, nodes: FakeNodes) -> None:
    await client.create(JOBS, ns, job("idx", completions=3, parallelism=3, completionMode="Indexed"))
    j = await wait_condition(client, ns, "idx", "Complete")
    assert j["status"]["completedIndexes"] == "0-2" and j["status"]["succeeded"] == 3
    pods = await job_pods(client, ns, "idx")
    indexes = sorted(int(p["metadata"]["annotations"][INDEX_KEY]) for p in pods)
    assert indexes == [0, 1, 2]
    for p in pods:
        ix = p["metadata"]["annotations"][INDEX_KEY]
        assert p["metadata"]["labels"][INDEX_KEY] == ix
        assert p["metadata"]["generateName"] == f"idx-{ix}-"
        assert p["spec"]["hostname"] == f"idx-{ix}"
        env = p["spec"]["containers"][0]["env"]
        assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": f"metadata.labels['{INDEX_KEY}']"}}} in env


async def test_suspend_and_resume(manager: ControllerManager, client: ApiClient, ns: str, nodes: FakeNodes) -> None:
    await client.create(JOBS, ns, job("later", suspend=True, completions=2, parallelism=2))
    j = await wait_condition(client, ns, "later", "Suspended")
    assert not j["status"].get("startTime")
    assert not await job_pods(client, ns, "later")
    await client.patch(JOBS, ns, "later", {"spec": {"suspend": False}})
    j = await wait_condition(client, ns, "later", "Complete")
    conds = {c["type"]: c for c in j["status"]["conditions"]}
    assert (conds["Suspended"]["status"], conds["Suspended"]["reason"]) == ("False", "JobResumed")
    assert j["status"]["startTime"]
