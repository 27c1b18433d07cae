"""Table-driven tests of the Deployment arithmetic: fenceposts, new replica counts, proportions,
the template hash, revisions and annotations, conditions and status."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.controllers import deployment_util as du


def dep(replicas: int = 10, surge: Any = "25%", unavailable: Any = "25%", strategy: str = "RollingUpdate",
        **extra: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        s["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "d", "uid": "duid", "generation": 1, **extra.pop("meta", {})},
            "spec": {"replicas": replicas, "strategy": s, "selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                     **extra},
            "status": {}}


def rs(name: str, replicas: int, available: int = 0, created: str = "2024-01-01T00:00:00Z",
       ann: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": created, "annotations": dict(ann or {})},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available}}


@pytest.mark.parametrize(("value", "total", "up", "want"), [
    (3, 10, True, 3), ("25%", 10, True, 3), ("25%", 10, False, 2), ("0%", 10, True, 0), ("100%", 7, False, 7),
    ("1%", 1, True, 1), ("1%", 1, False, 0), ("50%", 3, True, 2), ("50%", 3, False, 1), (None, 10, True, 0),
])
def test_value_from_int_or_percent(value: Any, total: int, up: bool, want: int) -> None:
    assert du.value_from_int_or_percent(value, total, up) == want


@pytest.mark.parametrize("value", ["25", "x%", True, 1.5])
def test_value_from_int_or_percent_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        du.value_from_int_or_percent(value, 10, True)


@pytest.mark.parametrize(("surge", "unavailable", "desired", "want"), [
    ("25%", "25%", 10, (3, 2)),
    ("25%", "25%", 1, (1, 0)),
    (0, "1%", 2, (0, 1)),   # unavailable rounds down to 0, and both zero -> unavailable 1
    ("1%", 0, 2, (1, 0)),
    (0, 0, 5, (0, 1)),
    (1, 0, 4, (1, 0)),
    ("100%", "100%", 4, (4, 4)),
])
def test_resolve_fenceposts(surge: Any, unavailable: Any, desired: int, want: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(surge, unavailable, desired) == want


@pytest.mark.parametrize(("d", "surge", "unavailable"), [
    (dep(10), 3, 2),
    (dep(0), 0, 0),
    (dep(3, surge=0, unavailable="100%"), 0, 3),
    (dep(3, unavailable=5), 1, 3),  # capped at spec.replicas
    (dep(10, strategy="Recreate"), 0, 0),
])
def test_max_surge_and_unavailable(d: dict[str, Any], surge: int, unavailable: int) -> None:
    assert du.max_surge(d) == surge
    assert du.max_unavailable(d) == unavailable


@pytest.mark.parametrize(("d", "others", "new", "want"), [
    (dep(10), [rs("old", 10)], rs("new", 0), 3),          # 10 + 3 surge - 10 current
    (dep(10), [rs("old", 8)], rs("new", 4), 5),           # room for 1 more
    (dep(10), [rs("old", 9)], rs("new", 4), 4),           # at max total: unchanged
    (dep(10), [], rs("new", 0), 10),                      # never beyond spec.replicas
    (dep(4, surge=1, unavailable=0), [rs("old", 4)], rs("new", 0), 1),
    (dep(10, strategy="Recreate"), [rs("old", 10)], rs("new", 0), 10),
])
def test_new_rs_new_replicas(d: dict[str, Any], others: list[dict[str, Any]], new: dict[str, Any], want: int) -> None:
    assert du.new_rs_new_replicas(d, [*others, new], new) == want


@pytest.mark.parametrize(("rs_replicas", "annotated", "replicas", "to_add", "added", "want"), [
    (5, 13, 20, 13, 0, 3),     # 5 of 13 grows with the deployment: 5*20/13 = 7.7 -> 8, so +3
    (5, 13, 20, 13, 11, 2),    # but never more than what is left to add
    (8, 13, 5, -6, 0, -5),     # scaling down: 8*5/13 = 3.1 -> 3, so -5 (within the allowed -6)
    (8, 13, 5, -6, -3, -3),    # never remove more than what is left to remove
    (3, 13, 0, -3, 0, -3),     # to zero: the whole size
    (0, 13, 20, 5, 0, 0),      # never from zero
])
def test_replica_set_proportion(rs_replicas: int, annotated: int, replicas: int, to_add: int, added: int,
                                want: int) -> None:
    d = dep(replicas, surge=0, unavailable=1)
    r = rs("r", rs_replicas, ann={du.MAX_REPLICAS: str(annotated)})
    assert du.replica_set_proportion(r, d, to_add, added) == want


@pytest.mark.parametrize(("x", "want"), [(0.5, 1), (1.5, 2), (2.5, 3), (-0.5, -1), (-2.5, -3), (2.49, 2)])
def test_round_half_away_from_zero(x: float, want: int) -> None:
    assert du.round_half_away(x) == want


def test_compute_hash() -> None:
    t = dep()["spec"]["template"]
    h = du.compute_hash(t, None)
    assert h == du.compute_hash(copy.deepcopy(t), None)
    assert set(h) <= set(du.SAFE_ALPHANUMS) and 1 <= len(h) <= 10
    assert du.compute_hash(t, 1) != h and du.compute_hash(t, 1) != du.compute_hash(t, 2)
    labelled = copy.deepcopy(t)
    labelled["metadata"]["labels"][du.HASH_LABEL] = "whatever"
    assert du.compute_hash(labelled, None) == h  # the hash label itself never changes the hash
    changed = copy.deepcopy(t)
    changed["spec"]["containers"][0]["image"] = "j"
    assert du.compute_hash(changed, None) != h
    reordered = {"spec": t["spec"], "metadata": {**t["metadata"], "annotations": {}}}
    assert du.compute_hash(reordered, None) == h  # key order and empty maps do not matter


@pytest.mark.parametrize(("s", "want"), [("", ""), ("0", "4"), ("123", "567"), ("4294967295", "86f8fbc6f9")])
def test_safe_encode_string(s: str, want: str) -> None:
    assert du.safe_encode_string(s) == want
    assert du.fnv32a(b"") == 0x811C9DC5 and du.fnv32a(b"a") == 0xE40C292C


def test_find_new_and_old_replica_sets() -> None:
    d = dep()
    same = rs("same", 1, created="2024-01-02T00:00:00Z")
    same["spec"]["template"] = copy.deepcopy(d["spec"]["template"])
    same["spec"]["template"]["metadata"]["labels"][du.HASH_LABEL] = "abc"
    older_same = copy.deepcopy(same)
    older_same["metadata"].update(name="older", uid="older", creationTimestamp="2024-01-01T00:00:00Z")
    other = rs("other", 0)
    other["spec"]["template"] = {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": []}}
    found = du.find_new_replica_set(d, [same, other, older_same])
    assert found is not None and found["metadata"]["name"] == "older"
    with_replicas, all_old = du.find_old_replica_sets(d, [same, other, older_same])
    assert [r["metadata"]["name"] for r in all_old] == ["same", "other"]
    assert [r["metadata"]["name"] for r in with_replicas] == ["same"]


def test_find_active_or_latest() -> None:
    new = rs("new", 0, created="2024-01-03T00:00:00Z")
    a = rs("a", 0, created="2024-01-01T00:00:00Z")
    b = rs("b", 0, created="2024-01-02T00:00:00Z")
    assert du.find_active_or_latest(new, [a, b]) is new
    assert du.find_active_or_latest(None, [a, b]) is b
    active = du.find_active_or_latest(None, [a, rs("c", 2)])
    assert active is not None and active["metadata"]["name"] == "c"
    assert du.find_active_or_latest(rs("n", 1), [rs("c", 2)]) is None
    assert du.find_active_or_latest(None, []) is None


def test_revision_annotations_and_history() -> None:
    d = dep(meta={"annotations": {"team": "x", du.REVISION: "9", du.LAST_APPLIED: "{}"}})
    fresh = rs("new", 0)
    assert du.set_new_replica_set_annotations(d, fresh, "3", exists=False)
    ann = fresh["metadata"]["annotations"]
    assert ann == {"team": "x", du.REVISION: "3", du.DESIRED_REPLICAS: "10", du.MAX_REPLICAS: "13"}
    assert not du.set_new_replica_set_annotations(d, fresh, "3", exists=True)
    assert du.set_new_replica_set_annotations(d, fresh, "5", exists=True)  # rolled back to: keep history
    assert ann[du.REVISION] == "5" and ann[du.REVISION_HISTORY] == "3"
    du.set_new_replica_set_annotations(d, fresh, "7", exists=True)
    assert ann[du.REVISION_HISTORY] == "3,5"
    assert not du.set_new_replica_set_annotations(d, fresh, "6", exists=True)  # never lowered
    assert du.max_revision([rs("a", 0, ann={du.REVISION: "4"}), rs("b", 0, ann={du.REVISION: "x"}), rs("c", 0)]) == 4


def test_is_saturated() -> None:
    d = dep(3)
    assert du.is_saturated(d, rs("r", 3, 3, ann={du.DESIRED_REPLICAS: "3"}))
    assert not du.is_saturated(d, rs("r", 3, 2, ann={du.DESIRED_REPLICAS: "3"}))
    assert not du.is_saturated(d, rs("r", 3, 3, ann={du.DESIRED_REPLICAS: "4"}))
    assert not du.is_saturated(d, rs("r", 3, 3))
    assert not du.is_saturated(d, None)


def test_sorting() -> None:
    a = rs("a", 2, created="2024-01-01T00:00:00Z")
    b = rs("b", 2, created="2024-01-02T00:00:00Z")
    c = rs("c", 5, created="2024-01-03T00:00:00Z")
    a2 = rs("a2", 2, created="2024-01-01T00:00:00Z")
    assert [r["metadata"]["name"] for r in du.sort_by_size_newer([a, b, c, a2])] == ["c", "b", "a2", "a"]
    assert [r["metadata"]["name"] for r in du.sort_by_size_older([b, c, a2, a])] == ["c", "a", "a2", "b"]


def test_set_condition_keeps_transition_time_when_status_holds() -> None:
    st: dict[str, Any] = {}
    first = {**du.new_condition("Progressing", "True", du.NEW_REPLICA_SET, "m"), "lastTransitionTime": "T0"}
    du.set_condition(st, first)
    du.set_condition(st, du.new_condition("Progressing", "True", du.NEW_REPLICA_SET, "other message"))
    assert st["conditions"][0]["message"] == "m"  # same status and reason: no update
    du.set_condition(st, du.new_condition("Progressing", "True", du.REPLICA_SET_UPDATED, "u"))
    assert st["conditions"][0]["reason"] == du.REPLICA_SET_UPDATED and st["conditions"][0]["lastTransitionTime"] == "T0"
    du.set_condition(st, du.new_condition("Progressing", "False", du.TIMED_OUT, "t"))
    assert st["conditions"][0]["lastTransitionTime"] != "T0"
    du.remove_condition(st, "Progressing")
    assert "conditions" not in st


def test_complete_progressing_timed_out() -> None:
    d = dep(2)
    assert du.deployment_complete(d, {"updatedReplicas": 2, "replicas": 2, "availableReplicas": 2, "observedGeneration": 1})
    assert not du.deployment_complete(d, {"updatedReplicas": 2, "replicas": 3, "availableReplicas": 2,
                                          "observedGeneration": 1})
    d["status"] = {"replicas": 3, "updatedReplicas": 1, "readyReplicas": 2, "availableReplicas": 2}
    assert du.deployment_progressing(d, {"replicas": 3, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2})
    assert du.deployment_progressing(d, {"replicas": 2, "updatedReplicas": 1, "readyReplicas": 2, "availableReplicas": 2})
    assert not du.deployment_progressing(d, dict(d["status"]))
    d["spec"]["progressDeadlineSeconds"] = 10
    cond = {"type": "Progressing", "status": "True", "reason": du.REPLICA_SET_UPDATED,
            "lastUpdateTime": "2024-01-01T00:00:00Z"}
    t0 = 1704067200.0
    assert not du.deployment_timed_out(d, {"conditions": [cond]}, t0 + 9)
    assert du.deployment_timed_out(d, {"conditions": [cond]}, t0 + 11)
    assert not du.deployment_timed_out(d, {"conditions": [{**cond, "reason": du.NEW_RS_AVAILABLE}]}, t0 + 99)
    d["spec"]["progressDeadlineSeconds"] = du.MAX_INT32
    assert not du.deployment_timed_out(d, {"conditions": [cond]}, t0 + 99)


def test_calculate_status() -> None:
    d = dep(4, surge=1, unavailable=0)
    old, new = rs("old", 3, 3), rs("new", 2, 1)
    st = du.calculate_status([old, new], new, d)
    assert {k: v for k, v in st.items() if k != "conditions"} == {
        "observedGeneration": 1, "replicas": 5, "updatedReplicas": 2, "readyReplicas": 4, "availableReplicas": 4,
        "unavailableReplicas": 1}
    assert (du.get_condition(st, "Available") or {})["reason"] == du.MIN_AVAILABLE
    st = du.calculate_status([rs("old", 4, 1)], None, d)
    assert "updatedReplicas" not in st  # zero counts are omitted, as the API serializes them
    assert (du.get_condition(st, "Available") or {})["reason"] == du.MIN_UNAVAILABLE
    assert du.same_status(st, {**st, "updatedReplicas": 0})
