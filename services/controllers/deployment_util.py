"""The arithmetic of Deployments, pure (pkg/controller/deployment/util/deployment_util.go).

Rolling updates are decided by a handful of numbers: maxSurge and maxUnavailable resolved
against spec.replicas (surge rounds up, unavailable rounds down, never both zero), the size the
new ReplicaSet may grow to, the proportional share of each ReplicaSet when a Deployment is
scaled mid-rollout, and the revision, desired-replicas and max-replicas annotations that carry
state between syncs. The template hash that names a Deployment's ReplicaSets is here too.
Keeping all of it free of I/O lets the tests pin every rule with a table, and keeps
`deployment.py` about decisions rather than sums.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import orjson

from .controller_utils import (
    Obj,
    creation_key,
    filter_active_replica_sets,
    meta,
    now_rfc3339,
    parse_time,
    spec,
    spec_replicas,
    status,
    uid_of,
)

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
HASH_LABEL = "pod-template-hash"
MAX_REV_HISTORY_CHARS = 2000
MAX_INT32 = 2**31 - 1
ANNOTATIONS_TO_SKIP = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO})

# Condition reasons.
REPLICA_SET_UPDATED = "ReplicaSetUpdated"
FAILED_RS_CREATE = "ReplicaSetCreateError"
NEW_REPLICA_SET = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


# ---- template hash --------------------------------------------------------------------------
def normalize(value: Any) -> Any:
    """Drop nulls and empty maps and lists, as Go's omitempty and semantic equality treat them."""
    if isinstance(value, dict):
        out = {k: normalize(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def _without_hash_label(template: Obj | None) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    normalized: Obj = normalize(t)
    return normalized


def fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode_string(s: str) -> str:
    """rand.SafeEncodeString: map each byte onto consonants and digits (no vowels, no bad words)."""
    return "".join(SAFE_ALPHANUMS[b % len(SAFE_ALPHANUMS)] for b in s.encode())


def compute_hash(template: Obj | None, collision_count: int | None) -> str:
    """controller.ComputeHash: fnv32a of the template, then of the collision count (uint32 in an
    8-byte little-endian buffer), as a safe-encoded decimal. Go feeds the hasher a spew dump of
    the typed struct; we feed it the canonical JSON (sorted keys, empty fields dropped), so the
    values differ from a real cluster's while keeping every property the controller relies on."""
    h = fnv32a(orjson.dumps(_without_hash_label(template), option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        h = fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + b"\0\0\0\0", h)
    return safe_encode_string(str(h))


def equal_ignore_hash(t1: Obj | None, t2: Obj | None) -> bool:
    """EqualIgnoreHash: the templates are equal once pod-template-hash labels are removed."""
    return _without_hash_label(t1) == _without_hash_label(t2)


# ---- int-or-percent and fenceposts --------------------------------------------------------------
def value_from_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if not value.endswith("%"):
            raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")
        try:
            pct = int(value[:-1])
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: {value!r}") from None
        scaled = pct * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    raise ValueError(f"invalid value for IntOrString: {value!r}")


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down; both zero becomes unavailable=1."""
    surge = value_from_int_or_percent(0 if max_surge is None else max_surge, desired, True)
    unavailable = value_from_int_or_percent(0 if max_unavailable is None else max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling_update(d: Obj) -> bool:
    return bool((spec(d).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate")


def _rolling(d: Obj) -> Obj:
    r: Obj = (spec(d).get("strategy") or {}).get("rollingUpdate") or {}
    return r


def max_surge(d: Obj) -> int:
    if not is_rolling_update(d):
        return 0
    return resolve_fenceposts(_rolling(d).get("maxSurge"), _rolling(d).get("maxUnavailable"), spec_replicas(d))[0]


def max_unavailable(d: Obj) -> int:
    replicas = spec_replicas(d)
    if not is_rolling_update(d) or replicas == 0:
        return 0
    unavailable = resolve_fenceposts(_rolling(d).get("maxSurge"), _rolling(d).get("maxUnavailable"), replicas)[1]
    return min(unavailable, replicas)


def min_available(d: Obj) -> int:
    return spec_replicas(d) - max_unavailable(d) if is_rolling_update(d) else 0


# ---- replica counts -----------------------------------------------------------------------------
def replica_count(rss: Sequence[Obj | None]) -> int:
    """Sum of spec.replicas."""
    return sum(spec_replicas(rs) for rs in rss if rs is not None)


def _status_sum(rss: Sequence[Obj | None], field: str) -> int:
    return sum(int(status(rs).get(field) or 0) for rs in rss if rs is not None)


def actual_replica_count(rss: Sequence[Obj | None]) -> int:
    return _status_sum(rss, "replicas")


def ready_replica_count(rss: Sequence[Obj | None]) -> int:
    return _status_sum(rss, "readyReplicas")


def available_replica_count(rss: Sequence[Obj | None]) -> int:
    return _status_sum(rss, "availableReplicas")


def new_rs_new_replicas(d: Obj, all_rss: Sequence[Obj | None], new_rs: Obj) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
    if is_rolling_update(d):
        surge = value_from_int_or_percent(_rolling(d).get("maxSurge"), spec_replicas(d), True)
        current = replica_count(all_rss)
        max_total = spec_replicas(d) + surge
        if current >= max_total:
            return spec_replicas(new_rs)
        scale_up = min(max_total - current, spec_replicas(d) - spec_replicas(new_rs))
        return spec_replicas(new_rs) + scale_up
    if (spec(d).get("strategy") or {}).get("type") == "Recreate":
        return spec_replicas(d)
    raise ValueError(f"deployment type {(spec(d).get('strategy') or {}).get('type')} isn't supported")


def _int_annotation(rs: Obj, name: str) -> int | None:
    raw = (meta(rs).get("annotations") or {}).get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def desired_replicas_annotation(rs: Obj) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS)


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = desired_replicas_annotation(rs)
    replicas = spec_replicas(d)
    return desired is not None and spec_replicas(rs) == replicas and desired == replicas and \
        int(status(rs).get("availableReplicas") or 0) == replicas


def round_half_away(x: float) -> int:
    """Go's math.Round."""
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def replica_set_fraction(rs: Obj, d: Obj) -> int:
    if spec_replicas(d) == 0:
        return -spec_replicas(rs)
    deployment_replicas = spec_replicas(d) + max_surge(d)
    annotated = _int_annotation(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = int(status(d).get("replicas") or 0)
    if annotated == 0:
        return 0  # never proportionally scale up from zero
    return round_half_away(spec_replicas(rs) * deployment_replicas / annotated) - spec_replicas(rs)


def replica_set_proportion(rs: Obj | None, d: Obj, to_add: int, added: int) -> int:
    """GetReplicaSetProportion: this ReplicaSet's share of a scaling event, within bounds."""
    if rs is None or spec_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# ---- annotations ---------------------------------------------------------------------------------
def revision(obj: Obj) -> int:
    raw = (meta(obj).get("annotations") or {}).get(REVISION)
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        return -1


def max_revision(rss: Sequence[Obj]) -> int:
    return max((r for rs in rss if (r := revision(rs)) > 0), default=0)


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for name, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(name) != value:
            ann[name] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = meta(rs).get("annotations") or {}
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_new_replica_set_annotations(d: Obj, rs: Obj, new_revision: str, exists: bool) -> bool:
    """Copy the Deployment's annotations (but the skipped ones) and raise the revision; keep the
    old revision in revision-history when a rollback revives this ReplicaSet."""
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in (meta(d).get("annotations") or {}).items():
        if k in ANNOTATIONS_TO_SKIP or ann.get(k) == v:
            continue
        ann[k] = v
        changed = True
    old = ann.get(REVISION)
    try:
        old_int = int(old) if old is not None else 0
    except ValueError:
        return changed
    new_int = int(new_revision)
    if old_int < new_int:
        ann[REVISION] = new_revision
        changed = True
        if old is not None:
            history = ann.get(REVISION_HISTORY, "")
            if not history:
                ann[REVISION_HISTORY] = old
            else:
                parts = history.split(",")
                total = len(history) + len(old) + 1
                start = 0
                while total > MAX_REV_HISTORY_CHARS and start < len(parts):
                    total -= len(parts[start]) + 1
                    start += 1
                if total <= MAX_REV_HISTORY_CHARS:
                    ann[REVISION_HISTORY] = ",".join([*parts[start:], old])
    if not exists and set_replicas_annotations(rs, spec_replicas(d), spec_replicas(d) + max_surge(d)):
        changed = True
    return changed


def set_deployment_revision(d: Obj, rev: str) -> bool:
    ann = d.setdefault("metadata", {}).setdefault("annotations", {})
    if ann.get(REVISION) != rev:
        ann[REVISION] = rev
        return True
    return False


# ---- finding replica sets ---------------------------------------------------------------------------
def find_new_replica_set(d: Obj, rss: Sequence[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's (ignoring the hash label)."""
    template = spec(d).get("template")
    for rs in sorted(rss, key=creation_key):
        if equal_ignore_hash(spec(rs).get("template"), template):
            return rs
    return None


def find_old_replica_sets(d: Obj, rss: Sequence[Obj]) -> tuple[list[Obj], list[Obj]]:
    """(old ReplicaSets with replicas, all old ReplicaSets)."""
    new = find_new_replica_set(d, rss)
    all_old = [rs for rs in rss if new is None or uid_of(rs) != uid_of(new)]
    return [rs for rs in all_old if spec_replicas(rs) != 0], all_old


def find_active_or_latest(new_rs: Obj | None, old_rss: Sequence[Obj]) -> Obj | None:
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=creation_key, reverse=True)
    active = filter_active_replica_sets([*newest_first, new_rs])
    if len(active) == 0:
        return new_rs if new_rs is not None else newest_first[0]
    if len(active) == 1:
        return active[0]
    return None


def sort_by_size_newer(rss: Sequence[Obj]) -> list[Obj]:
    """ReplicaSetsBySizeNewer: larger first, then newer first (then name, descending)."""
    by_name = sorted(rss, key=lambda rs: str(meta(rs).get("name") or ""), reverse=True)
    return sorted(by_name, key=lambda rs: (-spec_replicas(rs), -creation_key(rs)[0]))


def sort_by_size_older(rss: Sequence[Obj]) -> list[Obj]:
    """ReplicaSetsBySizeOlder: larger first, then older first (then name)."""
    return sorted(rss, key=lambda rs: (-spec_replicas(rs), *creation_key(rs)))


def by_revision_key(rs: Obj) -> tuple[int, float, str]:
    return (revision(rs), *creation_key(rs))


# ---- conditions and progress -------------------------------------------------------------------------
def new_condition(ctype: str, cstatus: str, reason: str, message: str) -> Obj:
    now = now_rfc3339()
    return {"type": ctype, "status": cstatus, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def get_condition(st: Obj, ctype: str) -> Obj | None:
    return next((c for c in st.get("conditions") or [] if c.get("type") == ctype), None)


def set_condition(st: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: no-op for the same status and reason; keep lastTransitionTime when
    only the reason changes."""
    current = get_condition(st, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    st["conditions"] = [*(c for c in st.get("conditions") or [] if c.get("type") != cond["type"]), cond]


def remove_condition(st: Obj, ctype: str) -> None:
    conds = [c for c in st.get("conditions") or [] if c.get("type") != ctype]
    if conds:
        st["conditions"] = conds
    else:
        st.pop("conditions", None)


def has_progress_deadline(d: Obj) -> bool:
    pds = spec(d).get("progressDeadlineSeconds")
    return pds is not None and int(pds) != MAX_INT32


def has_revision_history_limit(d: Obj) -> bool:
    rhl = spec(d).get("revisionHistoryLimit")
    return rhl is not None and int(rhl) != MAX_INT32


def deployment_complete(d: Obj, st: Obj) -> bool:
    replicas = spec_replicas(d)
    return int(st.get("updatedReplicas") or 0) == replicas and int(st.get("replicas") or 0) == replicas and \
        int(st.get("availableReplicas") or 0) == replicas and \
        int(st.get("observedGeneration") or 0) >= int(meta(d).get("generation") or 0)


def deployment_progressing(d: Obj, new: Obj) -> bool:
    old = status(d)

    def n(s: Obj, k: str) -> int:
        return int(s.get(k) or 0)

    return n(new, "updatedReplicas") > n(old, "updatedReplicas") or \
        n(new, "replicas") - n(new, "updatedReplicas") < n(old, "replicas") - n(old, "updatedReplicas") or \
        n(new, "readyReplicas") > n(old, "readyReplicas") or n(new, "availableReplicas") > n(old, "availableReplicas")


def deployment_timed_out(d: Obj, new: Obj, now: float) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(new, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    return since + int(spec(d).get("progressDeadlineSeconds") or 0) < now


# ---- status ----------------------------------------------------------------------------------------
_STATUS_INTS = ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                "unavailableReplicas", "collisionCount")


def same_status(a: Obj, b: Obj) -> bool:
    return all(int(a.get(k) or 0) == int(b.get(k) or 0) for k in _STATUS_INTS) and \
        (a.get("collisionCount") is None) == (b.get("collisionCount") is None) and \
        (a.get("conditions") or []) == (b.get("conditions") or [])


def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> Obj:
    """The DeploymentStatus from its ReplicaSets (zero counts omitted, as the API serializes)."""
    available = available_replica_count(all_rss)
    unavailable = max(replica_count(all_rss) - available, 0)
    new: Obj = {"observedGeneration": int(meta(d).get("generation") or 0),
                "replicas": actual_replica_count(all_rss),
                "updatedReplicas": actual_replica_count([new_rs]),
                "readyReplicas": ready_replica_count(all_rss),
                "availableReplicas": available,
                "unavailableReplicas": unavailable}
    new = {k: v for k, v in new.items() if v}
    if status(d).get("collisionCount") is not None:
        new["collisionCount"] = status(d)["collisionCount"]
    if status(d).get("conditions"):
        new["conditions"] = copy.deepcopy(status(d)["conditions"])
    if available >= spec_replicas(d) - max_unavailable(d):
        set_condition(new, new_condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability."))
    else:
        set_condition(new, new_condition("Available", "False", MIN_UNAVAILABLE,
                                         "Deployment does not have minimum availability."))
    return new
