"""The Job controller: runs pods until `completions` of them succeeded, or the Job fails.

A port of pkg/controller/job (Kubernetes ~1.31 with default feature gates). Each sync claims the
Job's pods, counts the finished ones, decides whether the Job failed (more failed pods than
`backoffLimit`, `activeDeadlineSeconds` passed) or succeeded, and otherwise keeps
min(parallelism, remaining completions) pods active (none while `suspend`ed), recreating failed
pods after a backoff of 10 s doubling per consecutive failure. Indexed Jobs run one pod per
completion index (annotation and label `batch.kubernetes.io/job-completion-index`, env
JOB_COMPLETION_INDEX, hostname `<job>-<index>`) and report `completedIndexes`.

Counting is exact through the `batch.kubernetes.io/job-tracking` finalizer: every pod is created
with it; a pod that finished (or was deleted before it could) is first recorded by UID in
`status.uncountedTerminatedPods`, then its finalizer is removed, then it moves into
`succeeded`/`failed`. A crash between any two steps repeats nothing and loses nothing, and pods
deleted right after they finished are still counted. As upstream since 1.31, the interim
conditions FailureTarget / SuccessCriteriaMet come first and Failed / Complete (with
completionTime) only once no pod is left terminating.

`ttlSecondsAfterFinished` (upstream's separate ttl-after-finished controller) is handled here: a
finished Job is deleted that many seconds after its Complete/Failed condition, with Background
propagation. Pods whose Job is gone or finished lose the finalizer (`orphan:<pod key>` keys).
The counting pass is in job_status, the pod writes in job_pods, the pure rules in job_util.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from shared.errors import ApiError
from shared.informer import key_of, split_key
from shared.log import event
from shared.selectors import SelectorError
from shared.workqueue import WorkQueue

from .base import ControllerContext, OwnWrites
from .controller_utils import (
    Obj,
    controller_ref,
    is_deleting,
    is_pod_active,
    is_pod_ready,
    labels_of,
    matching_owners,
    meta,
    now_rfc3339,
    parse_time,
    resolve_controller,
    selector_of,
    spec,
    status,
    uid_of,
)
from .expectations import ControllerExpectations
from .job_pods import JOBS, PODS, REMOVE_FINALIZER, JobPods
from .job_status import JobSync, track_status
from .job_util import (
    DEFAULT_POD_FAILURE_BACKOFF,
    MAX_POD_FAILURE_BACKOFF,
    BackoffRecord,
    completion_index,
    condition_true,
    ensure_condition,
    finished,
    has_finalizer,
    is_indexed,
    is_pod_failed,
    is_terminating,
    new_condition,
    parse_indexes,
    past_backoff_limit_on_failure,
)
from .ref_manager import RefManager

log = logging.getLogger("kubenats.controllers.job")

ORPHAN = "orphan:"


class JobController(JobPods):
    name = "job"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.jobs = ctx.informers.get(JOBS)
        self.pods = ctx.informers.get(PODS)
        self.recorder = ctx.recorder("job-controller")
        self.queue = WorkQueue("job")
        self.expectations = ControllerExpectations()
        self.finalizer_expectations: dict[str, set[str]] = {}  # job key -> pod uids losing the finalizer
        self.backoff: dict[str, BackoffRecord] = {}
        self.own_writes = OwnWrites()
        self.pod_failure_backoff = DEFAULT_POD_FAILURE_BACKOFF
        self.max_pod_failure_backoff = MAX_POD_FAILURE_BACKOFF
        self.jobs.add_handler(self._job_added, self._job_updated, self._job_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # ---- event handlers --------------------------------------------------------------------
    def _job_added(self, job: Obj) -> None:
        self.queue.add(key_of(job))

    def _job_updated(self, old: Obj, cur: Obj) -> None:
        if uid_of(old) != uid_of(cur):
            self._forget(key_of(old))
        self.queue.add(key_of(cur))

    def _job_deleted(self, job: Obj) -> None:
        self.queue.add(key_of(job))
        for pod in self.pods.by_index("namespace", meta(job).get("namespace", "")):
            ref = controller_ref(pod)
            if ref is not None and ref.get("uid") == uid_of(job) and has_finalizer(pod):
                self.queue.add(ORPHAN + key_of(pod))

    def _forget(self, key: str) -> None:
        self.expectations.delete(key)
        self.finalizer_expectations.pop(key, None)
        self.backoff.pop(key, None)

    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        return resolve_controller(self.jobs, JOBS.kind, namespace, ref, JOBS.api_version)

    def _owner_or_orphan(self, pod: Obj) -> Obj | None:
        """The pod's job; a pod holding our finalizer without a live job is queued for cleanup."""
        ref = controller_ref(pod)
        job = self._resolve(meta(pod).get("namespace", ""), ref)
        if has_finalizer(pod) and (job is None or finished(job) is not None):
            self.queue.add(ORPHAN + key_of(pod))
        return job

    def _pod_added(self, pod: Obj) -> None:
        job = self._owner_or_orphan(pod)
        if is_deleting(pod):
            self._pod_deleted(pod, final=False)
            return
        if job is not None:
            self.expectations.creation_observed(key_of(job))
            self.queue.add(key_of(job))
        elif controller_ref(pod) is None:
            for candidate in self._matching(pod):
                self.queue.add(key_of(candidate))

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        job = self._owner_or_orphan(cur)
        if job is not None and has_finalizer(old) and not has_finalizer(cur):
            self.finalizer_expectations.get(key_of(job), set()).discard(uid_of(cur))
        if is_deleting(cur) and not is_deleting(old):
            self._pod_deleted(cur, final=False)
        old_job = self._resolve(meta(old).get("namespace", ""), controller_ref(old))
        for j in {key_of(x) for x in (job, old_job) if x is not None}:
            self.queue.add(j)
        if job is None and controller_ref(cur) is None and labels_of(old) != labels_of(cur):
            for candidate in self._matching(cur):
                self.queue.add(key_of(candidate))

    def _pod_deleted(self, pod: Obj, final: bool = True) -> None:
        job = self._resolve(meta(pod).get("namespace", ""), controller_ref(pod))
        if job is None:
            return
        self.expectations.deletion_observed(key_of(job), key_of(pod))
        if final:
            self.finalizer_expectations.get(key_of(job), set()).discard(uid_of(pod))
        self.queue.add(key_of(job))

    def _matching(self, pod: Obj) -> list[Obj]:
        return matching_owners(self.jobs, pod)

    # ---- reconcile -------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        if key.startswith(ORPHAN):
            await self._sync_orphan(key[len(ORPHAN):])
            return
        cached = self.jobs.get(key)
        if cached is None:
            self._forget(key)
            return
        if self.own_writes.stale(key, cached):
            return
        job = copy.deepcopy(cached)
        done = finished(job)
        if done is not None:
            self.backoff.pop(key, None)
            await self._ttl(key, job, done)
            return
        if spec(job).get("completionMode") not in (None, "NonIndexed", "Indexed"):
            self.recorder.record(job, "Warning", "UnknownCompletionMode",
                                 "Skipped Job sync because completion mode is unknown")
            return
        await self._sync(key, job)

    async def _sync(self, key: str, job: Obj) -> None:
        st = job.setdefault("status", {})
        st.setdefault("uncountedTerminatedPods", {})
        satisfied = self.expectations.satisfied(key)
        ns = meta(job).get("namespace", "")
        try:
            selector = selector_of(job)
        except SelectorError as e:
            event(log, "invalid_selector", logging.WARNING, job=key, error=str(e))
            return

        async def recheck() -> Obj:
            return await self.client.get(JOBS, ns, meta(job)["name"])

        pods = await RefManager(self.client, job, JOBS, selector, PODS, recheck).claim(
            self.pods.by_index("namespace", ns))
        expected_rm = set(self.finalizer_expectations.get(key, set()))
        ctx = JobSync(job=job, pods=pods, active=[p for p in pods if is_pod_active(p)], expected_rm=expected_rm,
                      terminating=sum(1 for p in pods if is_terminating(p)))
        ctx.ready = sum(1 for p in ctx.active if is_pod_ready(p))
        uncounted = st["uncountedTerminatedPods"]
        counted = set(uncounted.get("succeeded") or []) | set(uncounted.get("failed") or []) | expected_rm
        fresh = [p for p in pods if has_finalizer(p) and uid_of(p) not in counted]
        if is_indexed(job):
            completions = int(spec(job).get("completions") or 0)
            fresh = [p for p in fresh if 0 <= completion_index(p) < completions]
        new_succeeded = [p for p in fresh if status(p).get("phase") == "Succeeded"]
        new_failed = [p for p in fresh if is_pod_failed(p, job)]
        succeeded = int(st.get("succeeded") or 0) + len(new_succeeded) + len(uncounted.get("succeeded") or [])
        failed = int(st.get("failed") or 0) + len(new_failed) + len(uncounted.get("failed") or [])
        suspended = bool(spec(job).get("suspend"))
        now = time.time()
        started = not st.get("startTime") and not suspended
        if started:
            st["startTime"] = now_rfc3339()
        ctx.new_backoff = self.backoff.get(key, BackoffRecord()).updated(new_succeeded, new_failed, now)
        ctx.finished = condition_true(job, "SuccessCriteriaMet")
        if ctx.finished is None and (target := condition_true(job, "FailureTarget")) is not None:
            ctx.finished = new_condition("Failed", "True", target.get("reason") or "", target.get("message") or "")
        deadline = spec(job).get("activeDeadlineSeconds")
        if ctx.finished is None:
            if failed > int(spec(job).get("backoffLimit") or 0) or past_backoff_limit_on_failure(job, pods):
                ctx.finished = new_condition("FailureTarget", "True", "BackoffLimitExceeded",
                                             "Job has reached the specified backoff limit")
            elif deadline is not None and not suspended and st.get("startTime"):
                left = float(deadline) - (now - (parse_time(st["startTime"]) or now))
                if left <= 0:
                    ctx.finished = new_condition("FailureTarget", "True", "DeadlineExceeded",
                                                 "Job was active longer than specified deadline")
                else:
                    self.queue.add_after(key, left + 0.05)
        if is_indexed(job):
            completions = int(spec(job).get("completions") or 0)
            ctx.prev_indexes = parse_indexes(st.get("completedIndexes"), completions)
            ctx.succeeded_indexes = ctx.prev_indexes | {completion_index(p) for p in new_succeeded}
            succeeded = len(ctx.succeeded_indexes)
        ctx.succeeded = succeeded
        active = len(ctx.active)
        suspend_changed = False
        manage_error: BaseException | None = None
        if ctx.finished is not None:
            deleted_ready, deleted, manage_error = await self._delete_active(job, ctx.active)
            if deleted != active or not satisfied:
                ctx.finished = None  # pods or finalizers may still be on their way
            active -= deleted
            ctx.terminating += deleted
            ctx.ready -= deleted_ready
        else:
            managed = False
            if satisfied and not is_deleting(job):
                try:
                    active = await self._manage(key, job, ctx)
                except ApiError as e:
                    manage_error = e
                managed = True
            want = spec(job).get("completions")
            complete = succeeded > 0 and active == 0 if want is None else succeeded >= int(want) and active == 0
            if complete:
                ctx.finished = new_condition("SuccessCriteriaMet", "True", "CompletionsReached",
                                             "Reached expected number of succeeded pods")
            elif managed:
                suspend_changed = self._suspend_conditions(job, suspended)
        needs_update = (started or suspend_changed or active != int(st.get("active") or 0) or ctx.ready != st.get("ready")
                        or ctx.terminating != st.get("terminating"))
        st["active"], st["ready"], st["terminating"] = active, ctx.ready, ctx.terminating
        written, finished_now = await track_status(self, key, ctx, needs_update)
        if finished_now is not None:
            self._record_finished(written, finished_now)
        if manage_error is not None:
            raise manage_error

    def _suspend_conditions(self, job: Obj, suspended: bool) -> bool:
        conditions: list[Obj] = job.setdefault("status", {}).setdefault("conditions", [])
        if suspended:
            changed = ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended")
            if changed:
                self.recorder.record(job, "Normal", "Suspended", "Job suspended")
            return changed
        changed = ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed")
        if changed:
            self.recorder.record(job, "Normal", "Resumed", "Job resumed")
            # the deadline counts the time the Job is continuously active
            job.setdefault("status", {})["startTime"] = now_rfc3339()
        return changed

    def _record_finished(self, job: Obj, condition: Obj) -> None:
        if condition.get("type") == "Complete":
            completions = spec(job).get("completions")
            if completions is not None and int(status(job).get("succeeded") or 0) > int(completions):
                self.recorder.record(job, "Warning", "TooManySucceededPods",
                                     "Too many succeeded pods running after completion count reached")
            self.recorder.record(job, "Normal", "Completed", "Job completed")
        else:
            self.recorder.record(job, "Warning", str(condition.get("reason") or ""), str(condition.get("message") or ""))
        event(log, "job_finished", job=key_of(job), condition=condition.get("type"), reason=condition.get("reason"),
              succeeded=status(job).get("succeeded", 0), failed=status(job).get("failed", 0))

    async def update_status(self, key: str, job: Obj) -> Obj:
        st = job.setdefault("status", {})
        for counter in ("active", "succeeded", "failed"):
            if not st.get(counter):
                st.pop(counter, None)
        body: dict[str, Any] = job
        updated = await self.client.update_status(JOBS, body)
        self.own_writes.wrote(key, updated)
        job["metadata"]["resourceVersion"] = meta(updated).get("resourceVersion")
        return job

    async def _sync_orphan(self, pod_key: str) -> None:
        """syncOrphanPod: the finalizer goes unless a live, unfinished Job controls the pod."""
        pod = self.pods.get(pod_key)
        if pod is None or not has_finalizer(pod):
            return
        ref = controller_ref(pod)
        if ref is not None:
            if ref.get("kind") != JOBS.kind or ref.get("apiVersion") != JOBS.api_version:
                return
            job = self._resolve(meta(pod).get("namespace", ""), ref)
            if job is not None and finished(job) is None:
                return
        ns, name = split_key(pod_key)
        try:
            await self.client.patch(PODS, ns, name, REMOVE_FINALIZER, patch_type="strategic")
        except ApiError as e:
            if e.code != 404:
                raise

    # ---- ttl-after-finished ----------------------------------------------------------------
    async def _ttl(self, key: str, job: Obj, done: Obj) -> None:
        for pod in self.pods.by_index("namespace", meta(job).get("namespace", "")):
            ref = controller_ref(pod)
            if ref is not None and ref.get("uid") == uid_of(job) and has_finalizer(pod):
                self.queue.add(ORPHAN + key_of(pod))
        ttl = spec(job).get("ttlSecondsAfterFinished")
        if ttl is None or is_deleting(job):
            return
        finished_at = parse_time(done.get("lastTransitionTime")) or time.time()
        left = finished_at + int(ttl) - time.time()
        if left > 0:
            self.queue.add_after(key, left + 0.05)
            return
        ns, name = split_key(key)
        try:
            fresh = await self.client.get(JOBS, ns, name)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        if uid_of(fresh) != uid_of(job) or is_deleting(fresh) or finished(fresh) is None:
            return
        try:
            await self.client.delete(JOBS, ns, name, propagation="Background", uid=uid_of(job))
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        event(log, "job_ttl_expired", job=key, ttl_seconds=ttl)
