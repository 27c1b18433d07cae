"""Helpers every workload controller shares, ported from Kubernetes' pkg/controller/controller_utils.go.

The replicaset and deployment controllers (and the job and daemonset controllers to come) need
the same small facts about objects: which owner reference is the controller, whether a pod is
active, ready or available, the order in which pods are given up when scaling down, the
slow-start batching of creations, and the pod a template stamps out. They live here, pure and
free of I/O, so the controllers read as the upstream algorithms they port and the tests can
drive each rule from a table.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.informer import Informer
from shared.selectors import LabelSelector, SelectorError

Obj = dict[str, Any]

POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
SLOW_START_INITIAL_BATCH_SIZE = 1
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


# ---- time ----------------------------------------------------------------------------------
def now_rfc3339() -> str:
    """metav1.Now() as serialized: RFC 3339, second precision, UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float | None:
    """An RFC 3339 timestamp as epoch seconds, None when absent or unreadable."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ---- metadata ------------------------------------------------------------------------------
def meta(obj: Obj) -> Obj:
    m: Obj = obj.get("metadata") or {}
    return m


def spec(obj: Obj) -> Obj:
    s: Obj = obj.get("spec") or {}
    return s


def status(obj: Obj) -> Obj:
    s: Obj = obj.get("status") or {}
    return s


def uid_of(obj: Obj) -> str:
    return str(meta(obj).get("uid") or "")


def is_deleting(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def spec_replicas(obj: Obj) -> int:
    """`*spec.replicas` of a ReplicaSet or Deployment (the API defaults it to 1)."""
    value = spec(obj).get("replicas")
    return 1 if value is None else int(value)


def controller_ref(obj: Obj) -> Obj | None:
    """metav1.GetControllerOf: the owner reference with controller=true, if any."""
    for ref in meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


def resolve_controller(
    informer: Informer, kind: str, namespace: str, ref: Obj | None, api_version: str | None = None
) -> Obj | None:
    """The owner a controllerRef names, if the cache holds it with the same uid (upstream's
    resolveControllerRef): a ref to a deleted-and-recreated owner resolves to nothing."""
    if ref is None or ref.get("kind") != kind or (api_version is not None and ref.get("apiVersion") != api_version):
        return None
    owner = informer.get(f"{namespace}/{ref.get('name')}")
    return owner if owner is not None and uid_of(owner) == ref.get("uid") else None


def matching_owners(informer: Informer, obj: Obj) -> list[Obj]:
    """Owners in obj's namespace whose selector matches obj's labels (an invalid selector matches nothing)."""
    out = []
    for owner in informer.by_index("namespace", meta(obj).get("namespace", "")):
        try:
            if selector_of(owner).matches(labels_of(obj)):
                out.append(owner)
        except SelectorError:
            continue
    return out


def new_controller_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    """metav1.NewControllerRef: controller and blockOwnerDeletion both true."""
    return {"apiVersion": api_version, "kind": kind, "name": meta(owner).get("name", ""),
            "uid": uid_of(owner), "controller": True, "blockOwnerDeletion": True}


@functools.lru_cache(maxsize=4096)
def _selector_from_json(raw: bytes) -> LabelSelector:
    return LabelSelector.from_api(orjson.loads(raw))


def selector_of(obj: Obj) -> LabelSelector:
    """The parsed `spec.selector` (memoized: controllers match it against every pod event).

    Raises `shared.selectors.SelectorError` for an invalid selector."""
    sel = spec(obj).get("selector")
    if sel is None:
        return LabelSelector.match_nothing()
    return _selector_from_json(orjson.dumps(sel, option=orjson.OPT_SORT_KEYS))


def labels_of(obj: Obj) -> dict[str, str]:
    labels: dict[str, str] = meta(obj).get("labels") or {}
    return labels


# ---- pods ----------------------------------------------------------------------------------
def is_pod_active(pod: Obj) -> bool:
    """Not terminal and not being deleted (controller.IsPodActive)."""
    phase = status(pod).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_deleting(pod)


def pod_condition(pod: Obj, ctype: str) -> Obj | None:
    for c in status(pod).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = pod_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def pod_ready_since(pod: Obj) -> float | None:
    """When the Ready condition last became True (None when not ready or unknown)."""
    c = pod_condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def pod_available_at(pod: Obj, min_ready_seconds: int) -> float | None:
    """The time the pod counts as available (ready for minReadySeconds); None when not ready."""
    if not is_pod_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = pod_ready_since(pod)
    if since is None:
        return None
    return since + min_ready_seconds


def is_pod_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """podutil.IsPodAvailable: ready, and for minReadySeconds already."""
    at = pod_available_at(pod, min_ready_seconds)
    if at is None:
        return False
    return min_ready_seconds <= 0 or at < now


def _deletion_cost(pod: Obj) -> int:
    raw = (meta(pod).get("annotations") or {}).get(POD_DELETION_COST)
    if raw is None:
        return 0
    try:
        value = int(str(raw))
    except ValueError:
        return 0
    return value if -(2**31) <= value < 2**31 else 0


def _max_restarts(pod: Obj) -> tuple[int, int]:
    """(highest restart count of regular containers, of restartable init containers)."""
    st = status(pod)
    regular = max((int(c.get("restartCount") or 0) for c in st.get("containerStatuses") or []), default=0)
    sidecars = {c.get("name") for c in spec(pod).get("initContainers") or [] if c.get("restartPolicy") == "Always"}
    sidecar = max((int(c.get("restartCount") or 0) for c in st.get("initContainerStatuses") or []
                   if c.get("name") in sidecars), default=0)
    return regular, sidecar


def _log_rank_diff(t1: float, t2: float, now: float) -> int:
    """logarithmicRankDiff: compare ages in powers of two of nanoseconds."""
    d1, d2 = (now - t1) * 1e9, (now - t2) * 1e9
    r1 = int(math.log2(d1)) if d1 > 0 else -1
    r2 = int(math.log2(d2)) if d2 > 0 else -1
    return r1 - r2


def _after_or_zero(t1: float | None, t2: float | None) -> bool:
    """t1 after t2, a missing time counting as the latest."""
    if t1 is None or t2 is None:
        return t1 is None
    return t1 > t2


def _time_less(pi: Obj, pj: Obj, ti: float | None, tj: float | None, now: float) -> bool | None:
    """Newer first on a logarithmic scale (LogarithmicScaleDown), ties broken by UID."""
    if ti == tj:
        return None
    if ti is None or tj is None:
        return _after_or_zero(ti, tj)
    diff = _log_rank_diff(ti, tj, now)
    if diff == 0:
        return uid_of(pi) < uid_of(pj)
    return diff < 0


def pod_less(pi: Obj, pj: Obj, rank_i: int, rank_j: int, now: float) -> bool:
    """ActivePodsWithRanks.Less: True when pi should be deleted before pj.

    1. unassigned < assigned; 2. Pending < Unknown < Running; 3. not ready < ready;
    4. lower pod-deletion-cost first; 5. more co-located related pods first; 6. ready for less
    time first; 7. more container restarts first; 8. newer first (6 and 8 on a log scale)."""
    ni, nj = spec(pi).get("nodeName") or "", spec(pj).get("nodeName") or ""
    if ni != nj and (not ni or not nj):
        return not ni
    oi = _PHASE_ORDINAL.get(status(pi).get("phase") or "", 0)
    oj = _PHASE_ORDINAL.get(status(pj).get("phase") or "", 0)
    if oi != oj:
        return oi < oj
    ri, rj = is_pod_ready(pi), is_pod_ready(pj)
    if ri != rj:
        return not ri
    ci, cj = _deletion_cost(pi), _deletion_cost(pj)
    if ci != cj:
        return ci < cj
    if rank_i != rank_j:
        return rank_i > rank_j
    if ri and rj:
        res = _time_less(pi, pj, pod_ready_since(pi), pod_ready_since(pj), now)
        if res is not None:
            return res
    (gi, si), (gj, sj) = _max_restarts(pi), _max_restarts(pj)
    if gi != gj:
        return gi > gj
    if si != sj:
        return si > sj
    res = _time_less(pi, pj, parse_time(meta(pi).get("creationTimestamp")),
                     parse_time(meta(pj).get("creationTimestamp")), now)
    return bool(res)


def rank_pods_for_deletion(pods: Sequence[Obj], related: Sequence[Obj], now: float) -> list[Obj]:
    """Pods in deletion order; a pod's rank is how many active related pods share its node."""
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            node = spec(p).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    ranked = [(p, on_node.get(spec(p).get("nodeName") or "", 0)) for p in pods]

    def cmp(a: tuple[Obj, int], b: tuple[Obj, int]) -> int:
        if pod_less(a[0], b[0], a[1], b[1], now):
            return -1
        if pod_less(b[0], a[0], b[1], a[1], now):
            return 1
        return 0

    return [p for p, _ in sorted(ranked, key=functools.cmp_to_key(cmp))]


def pods_to_delete(pods: Sequence[Obj], related: Sequence[Obj], diff: int, now: float) -> list[Obj]:
    """getPodsToDelete: the `diff` pods to give up first (all when diff >= len(pods))."""
    if diff < len(pods):
        return rank_pods_for_deletion(pods, related, now)[:diff]
    return list(pods)


def pod_from_template(template: Obj, parent: Obj, ref: Obj | None) -> Obj:
    """GetPodFromTemplate: labels, annotations and finalizers of the template, generateName
    `<parent>-`, the controller reference, and a copy of the template's spec."""
    tmeta = template.get("metadata") or {}
    pod_meta: Obj = {"generateName": f"{meta(parent).get('name', '')}-"}
    for field in ("labels", "annotations"):
        if tmeta.get(field):
            pod_meta[field] = dict(tmeta[field])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    if ref is not None:
        pod_meta["ownerReferences"] = [dict(ref)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


async def slow_start_batch(count: int, initial: int,
                           fn: Callable[[], Awaitable[None]]) -> tuple[int, BaseException | None]:
    """Call fn `count` times in batches of 1, 2, 4, ... run concurrently; stop after a failing batch.

    Returns (successes, the first error). A burst of failures (quota, a bad template) thus costs
    one call instead of `count`."""
    remaining, successes = count, 0
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for e in errors:
            if isinstance(e, asyncio.CancelledError):
                raise e
        successes += batch - len(errors)
        if errors:
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


# ---- replica sets ----------------------------------------------------------------------------
def creation_key(obj: Obj) -> tuple[float, str]:
    """ReplicaSetsByCreationTimestamp: older first, name as tie breaker."""
    return (parse_time(meta(obj).get("creationTimestamp")) or 0.0, str(meta(obj).get("name") or ""))


def filter_active_replica_sets(rss: Sequence[Obj | None]) -> list[Obj]:
    """Replica sets that want pods (spec.replicas > 0)."""
    return [rs for rs in rss if rs is not None and spec_replicas(rs) > 0]
