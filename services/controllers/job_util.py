"""The Job controller's rules that need no API (pkg/controller/job's utils, indexed_job_utils,
backoff_utils and the counting helpers of job_controller.go), pure so tests drive them from tables.

- conditions: `finished`, `new_condition`, `ensure_condition` (ensureJobConditionStatus);
- which pods count as failed (`is_pod_failed`: Failed, or deleted before succeeding unless
  podReplacementPolicy is Failed), terminating, ready;
- Indexed jobs: the completion index of a pod, `completedIndexes` intervals ("0-2,4"), the
  lowest indexes still to run, pods with duplicated or invalid indexes;
- the pod failure backoff: 10 s after the first failure, doubling up to 10 min, counted from the
  last failure since the last success (backoffRecord).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .controller_utils import (
    Obj,
    is_deleting,
    is_pod_active,
    meta,
    now_rfc3339,
    parse_time,
    pods_to_delete,
    spec,
    status,
)

FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
MAX_UNCOUNTED_PODS = 500
MAX_POD_CREATE_DELETE_PER_SYNC = 500
DEFAULT_POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 600.0


# ---- conditions ----------------------------------------------------------------------------
def new_condition(ctype: str, cstatus: str, reason: str, message: str, stamp: str | None = None) -> Obj:
    now = stamp or now_rfc3339()
    return {"type": ctype, "status": cstatus, "lastProbeTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def find_condition(job: Obj, ctype: str) -> Obj | None:
    for c in status(job).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def condition_true(job: Obj, ctype: str) -> Obj | None:
    c = find_condition(job, ctype)
    return c if c is not None and c.get("status") == "True" else None


def finished(job: Obj) -> Obj | None:
    """IsJobFinished: the Complete or Failed condition when True."""
    return condition_true(job, "Complete") or condition_true(job, "Failed")


def ensure_condition(conditions: list[Obj], ctype: str, cstatus: str, reason: str, message: str) -> bool:
    """ensureJobConditionStatus: update or append (never append a False one); True when changed."""
    for i, c in enumerate(conditions):
        if c.get("type") == ctype:
            if (c.get("status"), c.get("reason") or "", c.get("message") or "") != (cstatus, reason, message):
                conditions[i] = new_condition(ctype, cstatus, reason, message)
                return True
            return False
    if cstatus != "False":
        conditions.append(new_condition(ctype, cstatus, reason, message))
        return True
    return False


# ---- pods ----------------------------------------------------------------------------------
def has_finalizer(pod: Obj) -> bool:
    return FINALIZER in (meta(pod).get("finalizers") or [])


def only_replace_failed(job: Obj) -> bool:
    return spec(job).get("podReplacementPolicy") == "Failed" or spec(job).get("podFailurePolicy") is not None


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    phase = status(pod).get("phase")
    if phase == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return is_deleting(pod) and phase != "Succeeded"


def is_terminating(pod: Obj) -> bool:
    """CountTerminatingPods: being deleted and not finished."""
    return is_deleting(pod) and status(pod).get("phase") not in ("Succeeded", "Failed")


def finish_time(pod: Obj, default: float) -> float:
    """getFinishedTime: the latest container finish, else the deletion or creation time."""
    times = [parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
             for c in status(pod).get("containerStatuses") or []]
    done = [t for t in times if t is not None]
    if done:
        return max(done)
    return parse_time(meta(pod).get("deletionTimestamp")) or parse_time(meta(pod).get("creationTimestamp")) or default


def past_backoff_limit_on_failure(job: Obj, pods: Sequence[Obj]) -> bool:
    """restartPolicy OnFailure: container restarts of running pods count against backoffLimit."""
    if ((spec(job).get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for p in pods:
        if status(p).get("phase") in ("Running", "Pending"):
            for c in [*(status(p).get("initContainerStatuses") or []), *(status(p).get("containerStatuses") or [])]:
                restarts += int(c.get("restartCount") or 0)
    limit = int(spec(job).get("backoffLimit") or 0)
    return restarts > 0 if limit == 0 else restarts >= limit


# ---- indexed jobs --------------------------------------------------------------------------
def is_indexed(job: Obj) -> bool:
    return spec(job).get("completionMode") == "Indexed"


def completion_index(pod: Obj) -> int:
    """getCompletionIndex: the annotation (or label) as an int, -1 when absent or invalid."""
    raw = (meta(pod).get("annotations") or {}).get(INDEX_KEY) or (meta(pod).get("labels") or {}).get(INDEX_KEY)
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        return -1
    return value if value >= 0 else -1


def parse_indexes(text: str | None, completions: int) -> set[int]:
    """parseIndexesFromString: "1,3-5" -> {1, 3, 4, 5}, keeping indexes below completions."""
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            continue
        out.update(i for i in range(first, min(last, completions - 1) + 1))
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    """orderedIntervals.String: sorted, consecutive runs of three or more as "a-b"."""
    runs: list[list[int]] = []
    for i in sorted(set(indexes)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}" if a == b else f"{a},{b}" if b == a + 1 else f"{a}-{b}" for a, b in runs)


def first_pending_indexes(active: Sequence[Obj], succeeded: set[int], count: int, completions: int) -> list[int]:
    """The lowest indexes neither succeeded nor running (firstPendingIndexes)."""
    taken = succeeded | {completion_index(p) for p in active}
    out: list[int] = []
    for i in range(completions):
        if len(out) >= count:
            break
        if i not in taken:
            out.append(i)
    return out


def pods_for_removal(job: Obj, active: Sequence[Obj], at_least: int, now: float) -> list[Obj]:
    """activePodsForRemoval: for Indexed jobs first the pods with an invalid or repeated index
    (the best of a repeated index stays), then as many as needed in deletion order."""
    remove: list[Obj] = []
    left: list[Obj] = list(active)
    if is_indexed(job):
        completions = int(spec(job).get("completions") or 0)
        by_index: dict[int, list[Obj]] = {}
        left = []
        for p in active:
            ix = completion_index(p)
            if ix < 0 or ix >= completions:
                remove.append(p)
            else:
                by_index.setdefault(ix, []).append(p)
        for group in by_index.values():
            ordered = pods_to_delete(group, [], len(group), now) if len(group) > 1 else group
            remove.extend(ordered[:-1])
            left.append(ordered[-1])
    if len(remove) < at_least:
        remove.extend(pods_to_delete(left, [], at_least - len(remove), now))
    return remove


def add_index_env(template: Obj) -> None:
    """addCompletionIndexEnvVariables: JOB_COMPLETION_INDEX from the pod's index label."""
    pod_spec = template.setdefault("spec", {})
    for c in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]:
        env = c.setdefault("env", [])
        if not any(e.get("name") == INDEX_ENV for e in env):
            env.append({"name": INDEX_ENV, "valueFrom": {"fieldRef": {
                "fieldPath": f"metadata.labels['{INDEX_KEY}']"}}})


def count_active(pods: Iterable[Obj]) -> int:
    return sum(1 for p in pods if is_pod_active(p))


# ---- backoff -------------------------------------------------------------------------------
@dataclass
class BackoffRecord:
    failures_after_last_success: int = 0
    last_failure: float | None = None

    def updated(self, new_succeeded: Sequence[Obj], new_failed: Sequence[Obj], now: float) -> BackoffRecord:
        """newBackoffRecord: failures since the last success, and when the last one happened."""
        failed = sorted(finish_time(p, now) for p in new_failed)
        if not new_succeeded:
            if not failed:
                return BackoffRecord(self.failures_after_last_success, self.last_failure)
            return BackoffRecord(self.failures_after_last_success + len(failed), failed[-1])
        last_success = max(finish_time(p, now) for p in new_succeeded)
        after = [t for t in failed if t > last_success]
        return BackoffRecord(len(after), after[-1] if after else None)

    def remaining(self, now: float, base: float = DEFAULT_POD_FAILURE_BACKOFF,
                  cap: float = MAX_POD_FAILURE_BACKOFF) -> float:
        """getRemainingTime: base * 2^(failures-1), capped, minus the time since the last failure."""
        if self.failures_after_last_success == 0 or self.last_failure is None:
            return 0.0
        delay = min(base * float(2 ** min(self.failures_after_last_success - 1, 30)), cap)
        return max(0.0, delay - (now - self.last_failure))
