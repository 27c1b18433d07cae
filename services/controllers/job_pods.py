"""How the Job controller acts on pods: creates, deletes and releases them (manageJob and friends).

Split from job.py to keep each module readable. `JobPods` is a mixin of `JobController`:
- `_manage` (manageJob): keep min(parallelism, remaining completions) pods active, none while
  suspended; surplus pods go in deletion order (and, for Indexed jobs, pods with a repeated or
  invalid index first); missing ones are created in slow-start batches once the pod failure
  backoff has passed, each with the job-tracking finalizer (and, for Indexed jobs, its index as
  annotation, label, hostname and JOB_COMPLETION_INDEX);
- `_delete_pods` drops the finalizer before deleting (the pod counts as neither succeeded nor
  failed), `_delete_active` keeps it (a finished Job counts its deleted pods as failed);
- `remove_finalizers` records the expected removals before patching, so a pod seen again with
  the finalizer before the patch lands is not counted twice.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time

from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from shared.informer import key_of, split_key
from shared.log import event
from shared.recorder import EventRecorder
from shared.workqueue import WorkQueue

from .controller_utils import (
    SLOW_START_INITIAL_BATCH_SIZE,
    Obj,
    is_pod_ready,
    meta,
    new_controller_ref,
    pod_from_template,
    slow_start_batch,
    spec,
    uid_of,
)
from .expectations import ControllerExpectations
from .job_status import JobSync
from .job_util import (
    FINALIZER,
    INDEX_KEY,
    MAX_POD_CREATE_DELETE_PER_SYNC,
    add_index_env,
    first_pending_indexes,
    has_finalizer,
    is_indexed,
    only_replace_failed,
    pods_for_removal,
)
from .replicaset import namespace_terminating

JOBS = BY_PLURAL[("batch", "jobs")]
PODS = BY_PLURAL[("", "pods")]
REMOVE_FINALIZER: Obj = {"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZER]}}
log = logging.getLogger("kubenats.controllers.job")


class JobPods:
    client: ApiClient
    recorder: EventRecorder
    queue: WorkQueue
    expectations: ControllerExpectations
    finalizer_expectations: dict[str, set[str]]
    pod_failure_backoff: float
    max_pod_failure_backoff: float

    async def _manage(self, key: str, job: Obj, ctx: JobSync) -> int:
        """manageJob: delete surplus pods, or create the missing ones (after the failure backoff)."""
        active = len(ctx.active)
        parallelism = int(spec(job).get("parallelism") or 0)
        now = time.time()
        if spec(job).get("suspend"):
            return active - await self._delete_pods(key, job, ctx, pods_for_removal(job, ctx.active, active, now))
        completions = spec(job).get("completions")
        if completions is None:
            want = active if ctx.succeeded > 0 else parallelism
        else:
            want = max(min(int(completions) - ctx.succeeded, parallelism), 0)
        surplus = pods_for_removal(job, ctx.active, max(active - want, 0), now)[:MAX_POD_CREATE_DELETE_PER_SYNC]
        if surplus:
            return active - await self._delete_pods(key, job, ctx, surplus)
        diff = want - (ctx.terminating if only_replace_failed(job) else 0) - active
        if diff <= 0:
            return active
        wait = ctx.new_backoff.remaining(now, self.pod_failure_backoff, self.max_pod_failure_backoff)
        if wait > 0:
            self.queue.add_after(key, max(wait, 0.05))
            return active
        diff = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
        indexes: list[int] = []
        if is_indexed(job):
            indexes = first_pending_indexes(ctx.active, ctx.succeeded_indexes, diff, int(completions or 0))
            diff = len(indexes)
            if diff == 0:
                return active
        self.expectations.expect_creations(key, diff)
        template = copy.deepcopy(spec(job).get("template") or {})
        if indexes:
            add_index_env(template)
        tmeta = template.setdefault("metadata", {})
        if FINALIZER not in (tmeta.get("finalizers") or []):
            tmeta["finalizers"] = [*(tmeta.get("finalizers") or []), FINALIZER]
        pending = iter(indexes)
        successes, error = await slow_start_batch(
            diff, SLOW_START_INITIAL_BATCH_SIZE, lambda: self._create_pod(job, template, next(pending, -1)))
        if diff - successes > 0:
            self.expectations.lower(key, add=diff - successes)
        if error is not None:
            raise error
        return active + successes

    async def _create_pod(self, job: Obj, template: Obj, index: int) -> None:
        t = template
        name = meta(job).get("name", "")
        if index >= 0:
            t = copy.deepcopy(template)
            t["metadata"].setdefault("annotations", {})[INDEX_KEY] = str(index)
            t["metadata"].setdefault("labels", {})[INDEX_KEY] = str(index)
            t.setdefault("spec", {})["hostname"] = f"{name}-{index}"
        pod = pod_from_template(t, job, new_controller_ref(job, JOBS.api_version, JOBS.kind))
        if index >= 0:
            prefix = f"{name}-{index}-"
            pod["metadata"]["generateName"] = prefix if len(prefix) <= 58 else f"{name[:58 - len(str(index)) - 2]}-{index}-"
        ns = meta(job).get("namespace", "")
        try:
            created = await self.client.create(PODS, ns, pod)
        except ApiError as e:
            if namespace_terminating(e):
                return
            self.recorder.record(job, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        self.recorder.record(job, "Normal", "SuccessfulCreate", f"Created pod: {meta(created).get('name')}")
        event(log, "pod_created", job=key_of(job), pod=f"{ns}/{meta(created).get('name')}", index=index)

    async def _delete_pods(self, key: str, job: Obj, ctx: JobSync, pods: list[Obj]) -> int:
        """deleteJobPods: drop the finalizer (the pod counts as neither succeeded nor failed), then delete."""
        self.expectations.expect_deletions(key, [key_of(p) for p in pods])

        async def one(pod: Obj) -> None:
            ns, name = split_key(key_of(pod))
            if has_finalizer(pod):
                await self.client.patch(PODS, ns, name, REMOVE_FINALIZER, patch_type="strategic")
            await self.client.delete(PODS, ns, name, uid=uid_of(pod))
            self.recorder.record(job, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")

        results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
        removed = 0
        first: BaseException | None = None
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, BaseException):
                self.expectations.deletion_observed(key, key_of(pod))
                if not (isinstance(result, ApiError) and result.code == 404):
                    first = first or result
                    continue
            removed += 1
            ctx.terminating += 1
            ctx.ready -= 1 if is_pod_ready(pod) else 0
        if first is not None:
            raise first
        return removed

    async def _delete_active(self, job: Obj, pods: list[Obj]) -> tuple[int, int, BaseException | None]:
        """deleteActivePods: DELETE keeping the finalizers (the pods are then counted as failed)."""
        async def one(pod: Obj) -> None:
            ns, name = split_key(key_of(pod))
            await self.client.delete(PODS, ns, name, uid=uid_of(pod))

        results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
        deleted = ready = 0
        error: BaseException | None = None
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, BaseException) and not (isinstance(result, ApiError) and result.code == 404):
                error = error or result
                continue
            deleted += 1
            ready += 1 if is_pod_ready(pod) else 0
        return ready, deleted, error

    async def remove_finalizers(self, key: str, pods: list[Obj]) -> tuple[list[bool], BaseException | None]:
        """removeTrackingFinalizerFromPods: expectations first, then one patch per pod."""
        expected = self.finalizer_expectations.setdefault(key, set())
        expected.update(uid_of(p) for p in pods)

        async def one(pod: Obj) -> None:
            ns, name = split_key(key_of(pod))
            await self.client.patch(PODS, ns, name, REMOVE_FINALIZER, patch_type="strategic")

        results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
        ok: list[bool] = []
        error: BaseException | None = None
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, BaseException):
                expected.discard(uid_of(pod))
                if not (isinstance(result, ApiError) and result.code == 404):
                    error = error or result
                    ok.append(False)
                    continue
            ok.append(True)
        return ok, error

