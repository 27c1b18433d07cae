"""The pure parts of the Job controller (job_util, job_status), from tables; and the counting pass
driven with a fake writer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.controllers import job_util as ju
from services.controllers.job_status import JobSync, clean_uncounted, track_status

NOW = 1_700_000_000.0


def pod(name: str, phase: str = "Running", finalizer: bool = True, deleting: bool = False, index: int | None = None,
        finished: str | None = None, ready: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"u-{name}",
                            "creationTimestamp": "2023-11-14T22:00:00Z"}
    if finalizer:
        meta["finalizers"] = [ju.FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = "2023-11-14T22:10:00Z"
    if index is not None:
        meta["annotations"] = {ju.INDEX_KEY: str(index)}
    st: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if finished:
        st["containerStatuses"] = [{"state": {"terminated": {"finishedAt": finished}}}]
    return {"metadata": meta, "spec": {"nodeName": "n"}, "status": st}


def job(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j", "namespace": "ns", "uid": "job-uid", "resourceVersion": "1"},
            "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6, **spec}, "status": {}}


@pytest.mark.parametrize(("p", "spec", "want"), [
    (pod("a", "Failed"), {}, True),
    (pod("a", "Running", deleting=True), {}, True),  # deleted before finishing counts as failed
    (pod("a", "Succeeded", deleting=True), {}, False),
    (pod("a", "Running", deleting=True), {"podReplacementPolicy": "Failed"}, False),
    (pod("a", "Running"), {}, False),
])
def test_is_pod_failed(p: dict[str, Any], spec: dict[str, Any], want: bool) -> None:
    assert ju.is_pod_failed(p, job(**spec)) is want


@pytest.mark.parametrize(("indexes", "text"), [
    ([], ""), ([0], "0"), ([0, 1], "0,1"), ([0, 1, 2], "0-2"), ([5, 0, 1, 2, 7, 8], "0-2,5,7,8"),
    ([3, 4, 5, 6, 9], "3-6,9"),
])
def test_index_intervals(indexes: list[int], text: str) -> None:
    assert ju.format_indexes(indexes) == text
    assert ju.parse_indexes(text, 100) == set(indexes)


def test_parse_indexes_drops_out_of_range() -> None:
    assert ju.parse_indexes("0-2,5,9-12", 10) == {0, 1, 2, 5, 9}


def test_first_pending_and_removal() -> None:
    active = [pod("a", index=0), pod("b", index=2)]
    assert ju.first_pending_indexes(active, {1}, 5, 6) == [3, 4, 5]
    dup = [pod("x", index=1), pod("y", index=1, ready=True), pod("bad", index=9), pod("z", index=0)]
    removed = ju.pods_for_removal(job(completionMode="Indexed", completions=3), dup, 0, NOW)
    assert sorted(p["metadata"]["name"] for p in removed) == ["bad", "x"]  # the ready duplicate stays
    more = ju.pods_for_removal(job(), [pod("r", ready=True), pod("n")], 1, NOW)
    assert [p["metadata"]["name"] for p in more] == ["n"]  # not ready goes first


def test_ensure_condition() -> None:
    conds: list[dict[str, Any]] = []
    assert not ju.ensure_condition(conds, "Suspended", "False", "JobResumed", "Job resumed")  # never add False
    assert ju.ensure_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended")
    assert not ju.ensure_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended")
    assert ju.ensure_condition(conds, "Suspended", "False", "JobResumed", "Job resumed")
    assert [(c["type"], c["status"]) for c in conds] == [("Suspended", "False")]


def test_backoff_record() -> None:
    r = ju.BackoffRecord().updated([], [pod("f1", "Failed", finished="2023-11-14T22:13:20Z")], NOW)
    assert (r.failures_after_last_success, r.last_failure) == (1, NOW)
    assert r.remaining(NOW + 4) == pytest.approx(6.0)
    r = r.updated([], [pod("f2", "Failed", finished="2023-11-14T22:13:20Z")], NOW)
    assert r.remaining(NOW + 4) == pytest.approx(16.0)  # 20 s after two failures
    assert r.remaining(NOW + 4, base=0.5) == 0.0
    ok = r.updated([pod("s", "Succeeded", finished="2023-11-14T22:13:30Z")], [], NOW)
    assert ok.failures_after_last_success == 0 and ok.remaining(NOW) == 0
    assert ju.BackoffRecord(40, NOW).remaining(NOW) == ju.MAX_POD_FAILURE_BACKOFF


def test_past_backoff_limit_on_failure() -> None:
    j = job(backoffLimit=2, template={"spec": {"restartPolicy": "OnFailure"}})
    p = pod("a")
    p["status"]["containerStatuses"] = [{"restartCount": 1}]
    assert not ju.past_backoff_limit_on_failure(j, [p])
    p["status"]["containerStatuses"][0]["restartCount"] = 2
    assert ju.past_backoff_limit_on_failure(j, [p])
    assert not ju.past_backoff_limit_on_failure(job(backoffLimit=2), [p])  # restartPolicy Never


def test_clean_uncounted() -> None:
    st: dict[str, Any] = {"succeeded": 1, "uncountedTerminatedPods": {"succeeded": ["a", "b"], "failed": ["c"]}}
    assert clean_uncounted(st, {"b"})
    assert st == {"succeeded": 2, "failed": 1, "uncountedTerminatedPods": {"succeeded": ["b"]}}
    assert not clean_uncounted(st, {"b"})


class Writer:
    def __init__(self, fail_removal: bool = False) -> None:
        self.backoff: dict[str, ju.BackoffRecord] = {}
        self.writes: list[dict[str, Any]] = []
        self.removed: list[str] = []
        self.fail_removal = fail_removal

    async def update_status(self, key: str, job: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(copy.deepcopy(job["status"]))
        return job

    async def remove_finalizers(self, key: str, pods: list[dict[str, Any]]) -> tuple[list[bool], BaseException | None]:
        if self.fail_removal:
            return [False] * len(pods), RuntimeError("boom")
        self.removed.extend(p["metadata"]["name"] for p in pods)
        return [True] * len(pods), None


async def test_track_status_counts_through_uncounted() -> None:
    j = job(completions=2)
    pods = [pod("s1", "Succeeded"), pod("f1", "Failed"), pod("r", "Running"), pod("old", "Succeeded", finalizer=False)]
    ctx = JobSync(job=j, pods=pods, active=[pods[2]], expected_rm=set())
    w = Writer()
    _, final = await track_status(w, "ns/j", ctx, False)
    assert final is None
    first, second = w.writes
    assert first["uncountedTerminatedPods"] == {"succeeded": ["u-s1"], "failed": ["u-f1"]}  # recorded first
    assert sorted(w.removed) == ["f1", "s1"]  # then the finalizers go
    assert second == {"uncountedTerminatedPods": {}, "succeeded": 1, "failed": 1}  # then they are counted
    assert w.backoff["ns/j"] is ctx.new_backoff


async def test_track_status_keeps_uids_when_finalizer_removal_fails() -> None:
    pods = [pod("s1", "Succeeded")]
    ctx = JobSync(job=job(), pods=pods, active=[], expected_rm=set())
    w = Writer(fail_removal=True)
    with pytest.raises(RuntimeError):
        await track_status(w, "ns/j", ctx, False)
    assert w.writes[-1]["uncountedTerminatedPods"] == {"succeeded": ["u-s1"]}


async def test_track_status_finishes_with_interim_condition() -> None:
    j = job()
    ctx = JobSync(job=j, pods=[pod("s1", "Succeeded")], active=[], expected_rm=set(),
                  finished=ju.new_condition("SuccessCriteriaMet", "True", "CompletionsReached", "Reached"))
    w = Writer()
    written, final = await track_status(w, "ns/j", ctx, False)
    assert final is not None and final["type"] == "Complete"
    st = written["status"]
    assert [c["type"] for c in st["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert st["succeeded"] == 1 and st["completionTime"] == st["conditions"][1]["lastTransitionTime"]


async def test_track_status_waits_for_terminating_pods() -> None:
    ctx = JobSync(job=job(), pods=[pod("t", "Running", deleting=True)], active=[], expected_rm=set(), terminating=1,
                  finished=ju.new_condition("FailureTarget", "True", "DeadlineExceeded", "late"))
    w = Writer()
    written, final = await track_status(w, "ns/j", ctx, False)
    assert final is None  # Failed only once nothing is terminating
    assert [c["type"] for c in written["status"]["conditions"]] == ["FailureTarget"]
    assert written["status"]["failed"] == 1
