"""How a Deployment moves from its old ReplicaSets to the new one, and how progress is reported.

The two strategies of pkg/controller/deployment (rolling.go, recreate.go) and the status and
conditions of progress.go, kept apart from `deployment.py` (which finds, creates and scales
ReplicaSets) because these are the rules users reason about:

- RollingUpdate grows the new ReplicaSet while the total stays within replicas + maxSurge, and
  shrinks old ones (unhealthy pods first) while available pods stay above replicas -
  maxUnavailable, counting the new ReplicaSet's unavailable pods against the budget;
- Recreate scales every old ReplicaSet to zero, waits until none of their pods exists any more,
  and only then creates or scales up the new one;
- the Progressing condition moves through NewReplicaSetCreated / FoundNewReplicaSet,
  ReplicaSetUpdated, NewReplicaSetAvailable or ProgressDeadlineExceeded, and a rollout that
  shows no progress is requeued for when its deadline would pass.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import deployment_util as du
from .controller_utils import (
    Obj,
    creation_key,
    filter_active_replica_sets,
    meta,
    parse_time,
    spec,
    spec_replicas,
    status,
    uid_of,
)

if TYPE_CHECKING:
    from .deployment import DeploymentController, Sync


# ---- RollingUpdate ---------------------------------------------------------------------------------
async def rollout_rolling(dc: DeploymentController, st: Sync, rs_list: list[Obj]) -> None:
    new_rs, old_rss = await dc.get_all_replica_sets(st, rs_list, True)
    assert new_rs is not None
    all_rss: list[Obj | None] = [*old_rss, new_rs]
    scaled_up, new_rs = await _reconcile_new_replica_set(dc, st, all_rss, new_rs)
    all_rss = [*old_rss, new_rs]
    if scaled_up:
        await sync_rollout_status(dc, st, all_rss, new_rs)
        return
    if await _reconcile_old_replica_sets(dc, st, all_rss, filter_active_replica_sets(old_rss), new_rs):
        await sync_rollout_status(dc, st, all_rss, new_rs)
        return
    if du.deployment_complete(st.d, status(st.d)):
        await dc.cleanup(st, old_rss)
    await sync_rollout_status(dc, st, all_rss, new_rs)


async def _reconcile_new_replica_set(dc: DeploymentController, st: Sync, all_rss: list[Obj | None],
                                     new_rs: Obj) -> tuple[bool, Obj]:
    replicas = spec_replicas(st.d)
    if spec_replicas(new_rs) == replicas:
        return False, new_rs
    if spec_replicas(new_rs) > replicas:
        return await dc.scale_and_record(st, new_rs, replicas)
    return await dc.scale_and_record(st, new_rs, du.new_rs_new_replicas(st.d, all_rss, new_rs))


async def _reconcile_old_replica_sets(dc: DeploymentController, st: Sync, all_rss: list[Obj | None],
                                      old_rss: list[Obj], new_rs: Obj) -> bool:
    if du.replica_count(old_rss) == 0:
        return False
    d = st.d
    min_available = spec_replicas(d) - du.max_unavailable(d)
    new_unavailable = spec_replicas(new_rs) - int(status(new_rs).get("availableReplicas") or 0)
    max_scaled_down = du.replica_count(all_rss) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return False
    try:
        old_rss, cleaned = await _cleanup_unhealthy_replicas(dc, st, old_rss, max_scaled_down)
        scaled = await _scale_down_old_for_rolling_update(dc, st, [*old_rss, new_rs], old_rss)
    except Exception:
        return False  # as upstream: the RS update events requeue the Deployment
    return cleaned + scaled > 0


async def _cleanup_unhealthy_replicas(dc: DeploymentController, st: Sync, old_rss: list[Obj],
                                      max_cleanup: int) -> tuple[list[Obj], int]:
    """Scale old ReplicaSets down by their unavailable pods first: that costs no availability."""
    old_rss = sorted(old_rss, key=creation_key)
    total = 0
    for i, rs in enumerate(old_rss):
        if total >= max_cleanup:
            break
        available = int(status(rs).get("availableReplicas") or 0)
        if spec_replicas(rs) == 0 or spec_replicas(rs) == available:
            continue
        count = min(max_cleanup - total, spec_replicas(rs) - available)
        _, old_rss[i] = await dc.scale_and_record(st, rs, spec_replicas(rs) - count)
        total += count
    return old_rss, total


async def _scale_down_old_for_rolling_update(dc: DeploymentController, st: Sync, all_rss: list[Obj | None],
                                             old_rss: list[Obj]) -> int:
    min_available = spec_replicas(st.d) - du.max_unavailable(st.d)
    available = du.available_replica_count(all_rss)
    if available <= min_available:
        return 0
    budget = available - min_available
    total = 0
    for rs in sorted(old_rss, key=creation_key):
        if total >= budget:
            break
        if spec_replicas(rs) == 0:
            continue
        count = min(spec_replicas(rs), budget - total)
        await dc.scale_and_record(st, rs, spec_replicas(rs) - count)
        total += count
    return total


# ---- Recreate ----------------------------------------------------------------------------------------
async def rollout_recreate(dc: DeploymentController, st: Sync, rs_list: list[Obj],
                           pod_map: dict[str, list[Obj]]) -> None:
    new_rs, old_rss = await dc.get_all_replica_sets(st, rs_list, False)
    all_rss: list[Obj | None] = [*old_rss, new_rs]
    scaled_down = False
    for rs in filter_active_replica_sets(old_rss):
        scaled, _ = await dc.scale_and_record(st, rs, 0)
        scaled_down = scaled_down or scaled
    if scaled_down:
        await sync_rollout_status(dc, st, all_rss, new_rs)
        return
    if old_pods_running(new_rs, old_rss, pod_map):
        await sync_rollout_status(dc, st, all_rss, new_rs)
        return
    if new_rs is None:
        new_rs, old_rss = await dc.get_all_replica_sets(st, rs_list, True)
        all_rss = [*old_rss, new_rs]
    assert new_rs is not None
    await dc.scale_and_record(st, new_rs, spec_replicas(st.d))
    if du.deployment_complete(st.d, status(st.d)):
        await dc.cleanup(st, old_rss)
    await sync_rollout_status(dc, st, all_rss, new_rs)


def old_pods_running(new_rs: Obj | None, old_rss: list[Obj], pod_map: dict[str, list[Obj]]) -> bool:
    """Whether an old ReplicaSet reports pods, or any pod of one exists and is not terminal."""
    if du.actual_replica_count(old_rss) > 0:
        return True
    for rs_uid, pods in pod_map.items():
        if new_rs is not None and rs_uid == uid_of(new_rs):
            continue
        if any(status(p).get("phase") not in ("Succeeded", "Failed") for p in pods):
            return True
    return False


# ---- progress ----------------------------------------------------------------------------------------
def _replica_failures(all_rss: list[Obj | None], new_rs: Obj | None) -> list[Obj]:
    def conds(rs: Obj | None) -> list[Obj]:
        return [{"type": c.get("type"), "status": c.get("status"), "lastUpdateTime": c.get("lastTransitionTime"),
                 "lastTransitionTime": c.get("lastTransitionTime"), "reason": c.get("reason"), "message": c.get("message")}
                for c in (status(rs).get("conditions") or [] if rs is not None else []) if c.get("type") == "ReplicaFailure"]

    return conds(new_rs) or [c for rs in all_rss for c in conds(rs)]


async def sync_rollout_status(dc: DeploymentController, st: Sync, all_rss: list[Obj | None],
                              new_rs: Obj | None) -> None:
    d = st.d
    new_status = du.calculate_status(all_rss, new_rs, d)
    if not du.has_progress_deadline(d):
        du.remove_condition(new_status, "Progressing")
    current = du.get_condition(status(d), "Progressing")
    complete = int(new_status.get("replicas") or 0) == int(new_status.get("updatedReplicas") or 0) and \
        current is not None and current.get("reason") == du.NEW_RS_AVAILABLE
    name = f'ReplicaSet "{meta(new_rs)["name"]}"' if new_rs is not None else f'Deployment "{meta(d)["name"]}"'
    if du.has_progress_deadline(d) and not complete:
        if du.deployment_complete(d, new_status):
            du.set_condition(new_status, du.new_condition("Progressing", "True", du.NEW_RS_AVAILABLE,
                                                          f"{name} has successfully progressed."))
        elif du.deployment_progressing(d, new_status):
            cond = du.new_condition("Progressing", "True", du.REPLICA_SET_UPDATED, f"{name} is progressing.")
            if current is not None:
                if current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                du.remove_condition(new_status, "Progressing")
            du.set_condition(new_status, cond)
        elif du.deployment_timed_out(d, new_status, time.time()):
            du.set_condition(new_status, du.new_condition("Progressing", "False", du.TIMED_OUT,
                                                          f"{name} has timed out progressing."))
    failures = _replica_failures(all_rss, new_rs)
    if failures:
        du.set_condition(new_status, failures[0])
    else:
        du.remove_condition(new_status, "ReplicaFailure")
    if du.same_status(status(d), new_status):
        _requeue_stuck(dc, d, new_status)
        return
    st.d = {**d, "status": new_status}
    await dc.update_status(st)


def _requeue_stuck(dc: DeploymentController, d: Obj, new_status: Obj) -> None:
    """No visible progress: come back when the progress deadline would pass."""
    current = du.get_condition(status(d), "Progressing")
    if not du.has_progress_deadline(d) or current is None:
        return
    if du.deployment_complete(d, new_status) or current.get("reason") == du.TIMED_OUT:
        return
    since = parse_time(current.get("lastUpdateTime"))
    if since is None:
        return
    after = since + int(spec(d).get("progressDeadlineSeconds") or 0) - time.time()
    key = f"{meta(d).get('namespace')}/{meta(d)['name']}"
    if after < 1:
        dc.queue.add_rate_limited(key)
    else:
        dc.queue.add_after(key, after + 1)
