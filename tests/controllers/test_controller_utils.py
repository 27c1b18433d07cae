"""Table-driven tests of the shared controller helpers: pod state, deletion order, slow start."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.controllers import controller_utils as cu

NOW = 1_700_000_000.0


def ts(seconds_ago: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(NOW - seconds_ago, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str = "p", *, node: str = "", phase: str = "Pending", ready_for: float | None = None,
        created_ago: float = 100, restarts: int = 0, cost: str | None = None, uid: str = "",
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid or name, "creationTimestamp": ts(created_ago)}
    if cost is not None:
        meta["annotations"] = {cu.POD_DELETION_COST: cost}
    if deleting:
        meta["deletionTimestamp"] = ts(0)
    conds = []
    if ready_for is not None:
        conds.append({"type": "Ready", "status": "True", "lastTransitionTime": ts(ready_for)})
    return {"metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": conds, "containerStatuses": [{"name": "c", "restartCount": restarts}]}}


@pytest.mark.parametrize(("first", "second", "why"), [
    (pod(), pod(node="n1"), "unassigned before assigned"),
    (pod(node="n", phase="Pending"), pod(node="n", phase="Unknown"), "pending before unknown"),
    (pod(node="n", phase="Unknown"), pod(node="n", phase="Running"), "unknown before running"),
    (pod(node="n", phase="Running"), pod(node="n", phase="Running", ready_for=10), "not ready before ready"),
    (pod(node="n", phase="Running", ready_for=10, cost="-5"), pod(node="n", phase="Running", ready_for=10),
     "lower deletion cost first"),
    (pod(node="n", phase="Running", ready_for=2), pod(node="n", phase="Running", ready_for=1000),
     "ready for less time first (different log2 buckets)"),
    (pod(node="n", phase="Running", restarts=3), pod(node="n", phase="Running", restarts=1), "more restarts first"),
    (pod(node="n", phase="Running", created_ago=5), pod(node="n", phase="Running", created_ago=5000), "newer first"),
    (pod("a", node="n", created_ago=100, uid="a"), pod("b", node="n", created_ago=101, uid="b"),
     "same log2 age bucket: by uid"),
])
def test_pod_deletion_order(first: dict[str, Any], second: dict[str, Any], why: str) -> None:
    assert cu.pod_less(first, second, 0, 0, NOW), why
    assert not cu.pod_less(second, first, 0, 0, NOW), why


def test_doubled_up_pods_go_first_and_rank_comes_after_readiness() -> None:
    a, b = pod("a", node="n1", phase="Running"), pod("b", node="n2", phase="Running")
    assert cu.pod_less(a, b, 2, 1, NOW)
    assert not cu.pod_less(b, a, 1, 2, NOW)
    ready = pod("r", node="n1", phase="Running", ready_for=10)
    assert cu.pod_less(b, ready, 0, 5, NOW)  # not ready beats any rank


def test_pods_to_delete_ranks_by_related_pods_on_the_same_node() -> None:
    crowded = pod("crowded", node="busy", phase="Running", ready_for=100)
    alone = pod("alone", node="quiet", phase="Running", ready_for=100)
    related = [crowded, alone, pod("x", node="busy", phase="Running"), pod("y", node="busy", phase="Running")]
    assert [p["metadata"]["name"] for p in cu.pods_to_delete([alone, crowded], related, 1, NOW)] == ["crowded"]
    assert len(cu.pods_to_delete([alone, crowded], related, 5, NOW)) == 2


def test_deletion_order_of_a_mixed_set() -> None:
    pods = [pod("ready-old", node="n", phase="Running", ready_for=5000, created_ago=9000),
            pod("pending-unbound"),
            pod("running-unready", node="n", phase="Running"),
            pod("ready-new", node="n", phase="Running", ready_for=3, created_ago=4),
            pod("pending-bound", node="n")]
    order = [p["metadata"]["name"] for p in cu.rank_pods_for_deletion(pods, [], NOW)]
    assert order == ["pending-unbound", "pending-bound", "running-unready", "ready-new", "ready-old"]


@pytest.mark.parametrize(("p", "min_ready", "active", "ready", "available"), [
    (pod(), 0, True, False, False),
    (pod(phase="Running", ready_for=1), 0, True, True, True),
    (pod(phase="Running", ready_for=1), 5, True, True, False),
    (pod(phase="Running", ready_for=10), 5, True, True, True),
    (pod(phase="Succeeded"), 0, False, False, False),
    (pod(phase="Running", ready_for=10, deleting=True), 0, False, True, True),
])
def test_pod_state(p: dict[str, Any], min_ready: int, active: bool, ready: bool, available: bool) -> None:
    assert cu.is_pod_active(p) == active
    assert cu.is_pod_ready(p) == ready
    assert cu.is_pod_available(p, min_ready, NOW) == available


def test_controller_ref_and_pod_from_template() -> None:
    owner = {"metadata": {"name": "web", "uid": "u1"}}
    ref = cu.new_controller_ref(owner, "apps/v1", "ReplicaSet")
    assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u1",
                   "controller": True, "blockOwnerDeletion": True}
    template = {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["f"]},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}
    p = cu.pod_from_template(template, owner, ref)
    assert p["metadata"] == {"generateName": "web-", "labels": {"app": "web"}, "annotations": {"a": "b"},
                             "finalizers": ["f"], "ownerReferences": [ref]}
    assert p["spec"] == template["spec"] and p["spec"] is not template["spec"]
    assert cu.controller_ref(p) == ref
    assert cu.controller_ref({"metadata": {"ownerReferences": [{"uid": "x"}]}}) is None


@pytest.mark.parametrize(("count", "fail_at", "batches", "successes"), [
    (0, None, [], 0),
    (1, None, [1], 1),
    (10, None, [1, 2, 4, 3], 10),
    (200, None, [1, 2, 4, 8, 16, 32, 64, 73], 200),
    (10, 2, [1, 2], 2),  # call #2 fails in the second batch: the other call of that batch succeeded
    (10, 0, [1], 0),
])
async def test_slow_start_batch(count: int, fail_at: int | None, batches: list[int], successes: int) -> None:
    started = 0
    totals: set[int] = set()

    async def fn() -> None:
        nonlocal started
        n = started
        started += 1
        await asyncio.sleep(0)  # every call of a batch has started before any of them gets here
        totals.add(started)
        if n == fail_at:
            raise RuntimeError("boom")

    got, error = await cu.slow_start_batch(count, 1, fn)
    cumulative = sorted(totals)
    assert [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)] == batches
    assert got == successes
    assert (error is None) == (fail_at is None)


def test_parse_time() -> None:
    assert cu.parse_time("2024-01-01T00:00:00Z") == 1704067200.0
    assert cu.parse_time("2024-01-01T00:00:00.5Z") == 1704067200.5
    assert cu.parse_time(None) is None and cu.parse_time("nope") is None
