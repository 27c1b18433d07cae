"""How the Job controller counts finished pods exactly: trackJobStatusAndRemoveFinalizers.

Every Job pod carries the `batch.kubernetes.io/job-tracking` finalizer, so it cannot vanish
before it was counted. One pass, in this order:
1. pods that finished (Succeeded, Failed, or deleted before succeeding) and still hold the
   finalizer are added by UID to `status.uncountedTerminatedPods` (Indexed jobs: their index
   to `completedIndexes`), together with the interim condition (FailureTarget or
   SuccessCriteriaMet) when the Job is decided, and the status is written;
2. their finalizers are removed;
3. the UIDs whose pod no longer holds the finalizer move from the uncounted lists into
   `succeeded`/`failed`, and once nothing is uncounted or terminating the final Complete (with
   completionTime) or Failed condition is added; the status is written again.
A crash between the steps is harmless: the next pass finds the UIDs in the status, or the pods
without a finalizer, and carries on. At most 500 pods are handled per pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .controller_utils import Obj, is_deleting, status, uid_of
from .job_util import (
    MAX_UNCOUNTED_PODS,
    BackoffRecord,
    completion_index,
    ensure_condition,
    format_indexes,
    has_finalizer,
    is_indexed,
    is_pod_failed,
    new_condition,
)


@dataclass
class JobSync:
    """syncJobCtx: what one sync of a Job knows."""

    job: Obj
    pods: list[Obj]
    active: list[Obj]
    expected_rm: set[str]
    terminating: int = 0
    ready: int = 0
    succeeded: int = 0
    finished: Obj | None = None
    new_backoff: BackoffRecord = field(default_factory=BackoffRecord)
    prev_indexes: set[int] = field(default_factory=set)
    succeeded_indexes: set[int] = field(default_factory=set)


class Writer(Protocol):
    backoff: dict[str, BackoffRecord]

    async def update_status(self, key: str, job: Obj) -> Obj: ...

    async def remove_finalizers(self, key: str, pods: list[Obj]) -> tuple[list[bool], BaseException | None]: ...


def clean_uncounted(st: Obj, with_finalizer: set[str]) -> bool:
    """cleanUncountedPodsWithoutFinalizers: count the UIDs whose pod lost the finalizer."""
    uncounted = st.setdefault("uncountedTerminatedPods", {})
    changed = False
    for field_name, counter in (("succeeded", "succeeded"), ("failed", "failed")):
        uids = list(uncounted.get(field_name) or [])
        keep = [u for u in uids if u in with_finalizer]
        if len(keep) != len(uids):
            changed = True
            st[counter] = int(st.get(counter) or 0) + len(uids) - len(keep)
        if keep:
            uncounted[field_name] = keep
        else:
            uncounted.pop(field_name, None)
    return changed


def can_remove_finalizer(ctx: JobSync, pod: Obj, considered_failed: bool) -> bool:
    if is_deleting(ctx.job) or ctx.finished is not None or status(pod).get("phase") == "Succeeded":
        return True
    return considered_failed


async def track_status(w: Writer, key: str, ctx: JobSync, needs_flush: bool) -> tuple[Obj, Obj | None]:
    """Returns the Job as written and the final condition when the Job finished in this pass."""
    job = ctx.job
    st = job.setdefault("status", {})
    uncounted = st.setdefault("uncountedTerminatedPods", {})
    indexed = is_indexed(job)
    completions = int((job.get("spec") or {}).get("completions") or 0)
    pods = sorted(ctx.pods, key=completion_index) if indexed else ctx.pods
    with_finalizer = {uid_of(p) for p in pods if has_finalizer(p) and uid_of(p) not in ctx.expected_rm}
    needs_flush = clean_uncounted(st, with_finalizer) or needs_flush
    to_remove: list[Obj] = []
    new_indexes: list[int] = []
    reached_max = False
    for pod in pods:
        uid = uid_of(pod)
        if not has_finalizer(pod) or uid in ctx.expected_rm:
            continue
        failed = is_pod_failed(pod, job)
        if not can_remove_finalizer(ctx, pod, failed):
            continue
        to_remove.append(pod)
        succeeded_list = uncounted.setdefault("succeeded", [])
        failed_list = uncounted.setdefault("failed", [])
        if status(pod).get("phase") == "Succeeded" and uid not in failed_list:
            if indexed:
                ix = completion_index(pod)
                if 0 <= ix < completions and ix not in ctx.prev_indexes:
                    new_indexes.append(ix)
                    needs_flush = True
            elif uid not in succeeded_list:
                succeeded_list.append(uid)
                needs_flush = True
        elif failed or (ctx.finished is not None and ctx.finished.get("type") != "SuccessCriteriaMet"):
            ix = completion_index(pod)
            if uid not in failed_list and (not indexed or 0 <= ix < completions):
                failed_list.append(uid)
                needs_flush = True
        for name in ("succeeded", "failed"):
            if not uncounted.get(name):
                uncounted.pop(name, None)
        if len(new_indexes) + len(uncounted.get("succeeded") or []) + len(uncounted.get("failed") or []) \
                >= MAX_UNCOUNTED_PODS:
            reached_max = True
            break
    if indexed:
        ctx.succeeded_indexes = ctx.succeeded_indexes | set(new_indexes)
        text = format_indexes(ctx.succeeded_indexes)
        if text != (st.get("completedIndexes") or ""):
            needs_flush = True
        st["completedIndexes"] = text
        st["succeeded"] = len(ctx.succeeded_indexes)
    conditions: list[Obj] = st.setdefault("conditions", [])
    if ctx.finished is not None and ctx.finished.get("type") == "FailureTarget":
        conditions.append(ctx.finished)
        needs_flush = True
        ctx.finished = new_condition("Failed", "True", ctx.finished["reason"], ctx.finished["message"])
    if ctx.finished is not None and ctx.finished.get("type") == "SuccessCriteriaMet":
        if not any(c.get("type") == "SuccessCriteriaMet" for c in conditions):
            conditions.append(ctx.finished)
            needs_flush = True
        ctx.finished = new_condition("Complete", "True", ctx.finished["reason"], ctx.finished["message"])
    if not conditions:
        st.pop("conditions")
    # flushUncountedAndRemoveFinalizers
    if needs_flush:
        job = await w.update_status(key, job)
        st = job.setdefault("status", {})
        w.backoff[key] = ctx.new_backoff
        needs_flush = False
    error: BaseException | None = None
    if to_remove:
        ok, error = await w.remove_finalizers(key, to_remove)
        for pod, removed in zip(to_remove, ok, strict=True):
            if removed:
                with_finalizer.discard(uid_of(pod))
    if clean_uncounted(st, with_finalizer):
        needs_flush = True
    if error is not None:
        if needs_flush:
            await w.update_status(key, job)
        raise error
    # enactJobFinished
    final = None
    if not reached_max and ctx.finished is not None and not st.get("uncountedTerminatedPods") \
            and ctx.terminating <= 0:
        cond = ctx.finished
        conditions = st.setdefault("conditions", [])
        ensure_condition(conditions, cond["type"], cond["status"], cond.get("reason") or "", cond.get("message") or "")
        if cond["type"] == "Complete":
            st["completionTime"] = next(c for c in conditions if c["type"] == "Complete")["lastTransitionTime"]
        final = cond
        needs_flush = True
    if needs_flush:
        job = await w.update_status(key, job)
    return job, final
