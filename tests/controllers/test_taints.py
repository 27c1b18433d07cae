"""Taints, tolerations and node affinity (services/controllers/taints.py), from tables."""

from __future__ import annotations

from typing import Any

import pytest

from services.controllers import taints as t

NOT_READY_NE = {"key": t.TAINT_NOT_READY, "effect": "NoExecute"}
DEDICATED = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}


@pytest.mark.parametrize(("toleration", "taint", "want"), [
    ({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}, DEDICATED, True),
    ({"key": "dedicated", "value": "db"}, DEDICATED, True),  # no operator = Equal, no effect = any
    ({"key": "dedicated", "value": "web"}, DEDICATED, False),
    ({"key": "dedicated", "operator": "Exists"}, DEDICATED, True),
    ({"operator": "Exists"}, DEDICATED, True),  # empty key with Exists tolerates everything
    ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, DEDICATED, False),
    ({"key": "other", "operator": "Exists"}, DEDICATED, False),
])
def test_tolerates(toleration: dict[str, Any], taint: dict[str, Any], want: bool) -> None:
    assert t.tolerates(toleration, taint) is want


@pytest.mark.parametrize(("tolerations", "want"), [
    ([], None),  # a NoExecute taint not tolerated
    ([{"key": t.TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
      {"key": t.TAINT_NOT_READY, "operator": "Exists", "tolerationSeconds": 20}], 20.0),
    ([{"key": t.TAINT_NOT_READY, "operator": "Exists"}], -1.0),  # forever
    ([{"key": t.TAINT_NOT_READY, "operator": "Exists", "tolerationSeconds": -5}], 0.0),
])
def test_matching_tolerations_and_min_seconds(tolerations: list[dict[str, Any]], want: float | None) -> None:
    used = t.matching_tolerations([NOT_READY_NE], tolerations)
    assert (None if used is None else t.min_toleration_seconds(used)) == want


def test_untolerated_taint_respects_effects() -> None:
    taints = [{"key": "soft", "effect": "PreferNoSchedule"}, DEDICATED, NOT_READY_NE]
    assert t.untolerated_taint(taints, []) == DEDICATED
    assert t.untolerated_taint(taints, [], ("NoExecute",)) == NOT_READY_NE
    assert t.untolerated_taint(taints, [{"operator": "Exists"}]) is None


@pytest.mark.parametrize(("have", "add", "remove", "want"), [
    ([], [NOT_READY_NE], [], [NOT_READY_NE]),
    ([{**NOT_READY_NE, "timeAdded": "old"}], [{**NOT_READY_NE, "timeAdded": "new"}], [], None),  # kept as is
    ([DEDICATED, NOT_READY_NE], [], [{"key": t.TAINT_NOT_READY, "effect": "NoExecute"}], [DEDICATED]),
    ([NOT_READY_NE], [{"key": t.TAINT_UNREACHABLE, "effect": "NoExecute"}], [NOT_READY_NE],
     [{"key": t.TAINT_UNREACHABLE, "effect": "NoExecute"}]),
    ([DEDICATED], [], [NOT_READY_NE], None),
])
def test_with_taints(have: list[Any], add: list[Any], remove: list[Any], want: list[Any] | None) -> None:
    assert t.with_taints(have, add, remove) == want


def node(name: str = "n1", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {}}


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {}, "spec": spec}


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}}


@pytest.mark.parametrize(("spec", "want"), [
    ({}, True),
    ({"nodeSelector": {"disk": "ssd"}}, True),
    ({"nodeSelector": {"disk": "hdd"}}, False),
    (required({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}), True),
    (required({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}), False),
    (required({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}), True),
    (required({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}), True),
    (required({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}), False),
    (required({}), False),  # an empty term matches nothing
    (required({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]},
              {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}), True),  # ORed
    (required({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}), False),
])
def test_required_affinity(spec: dict[str, Any], want: bool) -> None:
    assert t.required_affinity_matches(pod(spec), node(disk="ssd", zone="a", cores="8")) is want


def test_node_name_affinity_and_target() -> None:
    aff = t.node_name_affinity({"podAntiAffinity": {"x": 1}, "nodeAffinity": {"preferred": 1}}, "n7")
    assert aff["podAntiAffinity"] == {"x": 1} and aff["nodeAffinity"]["preferred"] == 1
    p = pod({"affinity": aff})
    assert t.target_node_name(p) == "n7"
    assert t.required_affinity_matches(p, node("n7")) and not t.required_affinity_matches(p, node("n8"))
    assert t.target_node_name(pod({"nodeName": "n9", "affinity": aff})) == "n9"
    assert t.target_node_name(pod({})) == ""


def test_daemon_tolerations() -> None:
    spec: dict[str, Any] = {"tolerations": [{"key": t.TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute",
                                             "tolerationSeconds": 5}]}
    t.add_daemon_pod_tolerations(spec)
    keys = [(x["key"], x["effect"]) for x in spec["tolerations"]]
    assert len(keys) == 6 and (t.TAINT_NETWORK_UNAVAILABLE, "NoSchedule") not in keys
    assert "tolerationSeconds" not in spec["tolerations"][0]  # the same toleration: replaced, forever now
    host: dict[str, Any] = {"hostNetwork": True}
    t.add_daemon_pod_tolerations(host)
    assert (t.TAINT_NETWORK_UNAVAILABLE, "NoSchedule") in [(x["key"], x["effect"]) for x in host["tolerations"]]


@pytest.mark.parametrize(("taints", "want"), [
    ([], (True, True)),
    ([DEDICATED], (False, True)),  # NoSchedule: no new pod, the running one stays
    ([{"key": "evict", "effect": "NoExecute"}], (False, False)),
    ([{"key": "soft", "effect": "PreferNoSchedule"}], (True, True)),
])
def test_should_run_on(taints: list[Any], want: tuple[bool, bool]) -> None:
    n = node()
    n["spec"]["taints"] = taints
    assert t.should_run_on(pod({"nodeName": "n1"}), n) == want
    assert t.should_run_on(pod({"nodeName": "n2"}), n) == (False, False)
