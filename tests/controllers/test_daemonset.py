"""The pure parts of the DaemonSet controller (daemonset_util), from tables."""

from __future__ import annotations

from typing import Any

import pytest

from services.controllers import daemonset_util as du

NOW = 1_700_000_000.0


def ds(strategy: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}},
                     "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                     **spec},
            "status": {}}


def node(name: str, taints: list[Any] | None = None, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints or []}}


def pod(name: str, node_name: str, hash_: str = "new", ready: bool = True, phase: str = "Running",
        created: str = "2024-01-01T00:00:00Z", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": created,
                            "labels": {"app": "agent", du.HASH_LABEL: hash_}}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "spec": {"nodeName": node_name},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_template_and_hash() -> None:
    d = ds()
    h = du.template_hash(d)
    assert h == du.template_hash(ds()) and h != du.template_hash({**d, "status": {"collisionCount": 1}})
    t = du.template_for_node(du.pod_template(d, h), "n1")
    assert t["metadata"]["labels"][du.HASH_LABEL] == h
    assert len(t["spec"]["tolerations"]) == 6
    assert t["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["n1"]
    assert "tolerations" not in d["spec"]["template"]["spec"]  # the DaemonSet itself is untouched


@pytest.mark.parametrize(("n", "want"), [
    (node("n1"), (True, True)),
    (node("n1", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]), (True, True)),
    (node("n1", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]), (True, True)),
    (node("n1", taints=[{"key": "dedicated", "effect": "NoSchedule"}]), (False, True)),
    (node("n1", taints=[{"key": "dedicated", "effect": "NoExecute"}]), (False, False)),
])
def test_should_run(n: dict[str, Any], want: tuple[bool, bool]) -> None:
    assert du.should_run(ds(), n) == want


def test_should_run_node_selector() -> None:
    d = ds()
    d["spec"]["template"]["spec"]["nodeSelector"] = {"role": "worker"}
    assert du.should_run(d, node("n1", role="worker")) == (True, True)
    assert du.should_run(d, node("n1")) == (False, False)


def test_node_actions() -> None:
    backoff = du.FailedBackoff(clock=lambda: 0.0)
    n = node("n1")
    assert du.node_actions(ds(), n, [], "new", False, backoff, NOW).create
    two = [pod("b", "n1", created="2024-01-01T00:00:05Z"), pod("a", "n1")]
    assert [p["metadata"]["name"] for p in du.node_actions(ds(), n, two, "new", False, backoff, NOW).delete] == ["b"]
    failed = du.node_actions(ds(), n, [pod("f", "n1", phase="Failed")], "new", False, backoff, NOW)
    assert failed.failed == 1 and [p["metadata"]["name"] for p in failed.delete] == ["f"] and failed.events
    again = du.node_actions(ds(), n, [pod("g", "n1", phase="Failed")], "new", False, backoff, NOW)
    assert not again.delete and again.retry_after == pytest.approx(1.0)  # in backoff now
    gone = node("n1", taints=[{"key": "x", "effect": "NoExecute"}])
    assert len(du.node_actions(ds(), gone, two, "new", False, backoff, NOW).delete) == 2
    # surge: an available new pod replaces the old one
    pair = [pod("old", "n1", hash_="old"), pod("new", "n1", created="2024-01-01T00:00:09Z")]
    assert [p["metadata"]["name"] for p in du.node_actions(ds(), n, pair, "new", True, backoff, NOW).delete] == ["old"]
    pair[1]["status"]["conditions"][0]["status"] = "False"
    assert not du.node_actions(ds(), n, pair, "new", True, backoff, NOW).delete


def nodes_of(names: list[str]) -> dict[str, dict[str, Any]]:
    return {n: node(n) for n in names}


@pytest.mark.parametrize(("max_unavailable", "pods", "want"), [
    # all old and available: maxUnavailable of them go
    (1, {"a": [pod("pa", "a", "old")], "b": [pod("pb", "b", "old")], "c": [pod("pc", "c", "old")]}, ["pa"]),
    (2, {"a": [pod("pa", "a", "old")], "b": [pod("pb", "b", "old")], "c": [pod("pc", "c", "old")]}, ["pa", "pb"]),
    ("50%", {"a": [pod("pa", "a", "old")], "b": [pod("pb", "b", "old")], "c": [pod("pc", "c", "old")]},
     ["pa", "pb"]),  # rounded up
    # a new pod still starting uses the budget
    (1, {"a": [pod("pa", "a", "new", ready=False)], "b": [pod("pb", "b", "old")]}, []),
    # an unavailable old pod is replaced regardless of the budget
    (1, {"a": [pod("pa", "a", "new", ready=False)], "b": [pod("pb", "b", "old", ready=False)]}, ["pb"]),
    # a node whose old pod is terminating counts as unavailable
    (1, {"a": [pod("pa", "a", "old", deleting=True)], "b": [pod("pb", "b", "old")]}, []),
])
def test_rolling_update_max_unavailable(max_unavailable: Any, pods: dict[str, list[Any]], want: list[str]) -> None:
    d = ds({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}})
    delete, create = du.rolling_update(d, pods, nodes_of(list(pods)), "new", len(pods), NOW)
    assert [p["metadata"]["name"] for p in delete] == want and create == []


def test_rolling_update_surge() -> None:
    d = ds({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    pods = {"a": [pod("pa", "a", "old")], "b": [pod("pb", "b", "old")]}
    assert du.rolling_update(d, pods, nodes_of(["a", "b"]), "new", 2, NOW) == ([], ["a"])
    pods["a"].append(pod("na", "a", "new", ready=False))
    assert du.rolling_update(d, pods, nodes_of(["a", "b"]), "new", 2, NOW) == ([], [])  # surge budget used
    pods["a"][1]["status"]["conditions"][0]["status"] = "True"
    delete, create = du.rolling_update(d, pods, nodes_of(["a", "b"]), "new", 2, NOW)
    assert [p["metadata"]["name"] for p in delete] == ["pa"] and create == ["b"]  # the next node surges


def test_calculate_status() -> None:
    d = ds(minReadySeconds=0)
    d["spec"]["template"]["spec"]["nodeSelector"] = {"role": "w"}
    nodes = [node("a", role="w"), node("b", role="w"), node("c", role="w"), node("d")]
    by_node = {"a": [pod("pa", "a")], "b": [pod("pb", "b", "old", ready=False)], "d": [pod("pd", "d")]}
    assert du.calculate_status(d, nodes, by_node, "new", NOW) == {
        "desiredNumberScheduled": 3, "currentNumberScheduled": 2, "numberMisscheduled": 1, "numberReady": 1,
        "numberAvailable": 1, "updatedNumberScheduled": 1, "numberUnavailable": 2}


def test_failed_backoff_doubles() -> None:
    clock = [0.0]
    b = du.FailedBackoff(clock=lambda: clock[0])
    assert b.in_backoff("k") == 0
    b.next("k")
    assert b.in_backoff("k") == 1.0
    clock[0] = 1.5
    assert b.in_backoff("k") == 0
    b.next("k")
    assert b.in_backoff("k") == 2.0
