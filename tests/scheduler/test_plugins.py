"""Each scheduler plugin filters and scores as its kube-scheduler namesake, with upstream's reason texts."""

from __future__ import annotations

from typing import Any

import pytest

from services.scheduler.framework import CycleState, FilterResult, NodeInfo, Unresolvable
from services.scheduler.plugins import (
    BalancedAllocation,
    InterPodAffinity,
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeResourcesFit,
    NodeUnschedulable,
    SelectorSpread,
    TaintToleration,
    default_plugins,
)
from services.scheduler.plugins.balanced_allocation import balanced_score
from services.scheduler.plugins.node_resources_fit import least_requested_score, most_requested_score

GI = 1024**3


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110", *, labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None, unschedulable: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"taints": taints} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": spec, "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}


def pod(name: str = "p", cpu: str | None = None, memory: str | None = None, *, ns: str = "default",
        labels: dict[str, str] | None = None, owner: str | None = None, ports: list[dict[str, Any]] | None = None,
        extra: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None} | (extra or {})
    c: dict[str, Any] = {"name": "c", "image": "busybox", "resources": {"requests": req}}
    if ports:
        c["ports"] = ports
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}]
    return {"metadata": meta, "spec": {"containers": [c], **spec}}


def taint(key: str, effect: str = "NoSchedule", value: str | None = None) -> dict[str, str]:
    t = {"key": key, "effect": effect}
    if value is not None:
        t["value"] = value
    return t


def run_filter(plugin: Any, p: dict[str, Any], nodes: list[NodeInfo],
               namespace_labels: dict[str, dict[str, str]] | None = None) -> dict[str, FilterResult]:
    """The plugin's verdict per node, as the framework runs it (pre_filter first, False = skipped)."""
    state = CycleState(p, nodes, namespace_labels)
    pre = getattr(plugin, "pre_filter", None)
    if pre is not None and pre(p, state) is False:
        return dict.fromkeys((ni.name for ni in nodes), None)
    return {ni.name: plugin.filter(p, ni, state) for ni in nodes}


def run_score(plugin: Any, p: dict[str, Any], nodes: list[NodeInfo],
              namespace_labels: dict[str, dict[str, str]] | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """(raw scores, normalized scores) per node; both empty when pre_score skips the plugin."""
    state = CycleState(p, nodes, namespace_labels)
    pre = getattr(plugin, "pre_score", None)
    if pre is not None and pre(p, nodes, state) is False:
        return {}, {}
    raw = {ni.name: plugin.score(p, ni, state) for ni in nodes}
    normalize = getattr(plugin, "normalize", None)
    return raw, (normalize(dict(raw)) if normalize else dict(raw))


# ---------------------------------------------------------------- NodeUnschedulable

UNSCHEDULABLE_TOLERATION = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}


@pytest.mark.parametrize(("cordoned", "tolerations", "want"), [
    (False, [], None),
    (True, [], "node(s) were unschedulable"),
    (True, [UNSCHEDULABLE_TOLERATION], None),
    (True, [{"operator": "Exists"}], None),
    (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}],
     "node(s) were unschedulable"),
])
def test_node_unschedulable(cordoned: bool, tolerations: list[dict[str, str]], want: str | None) -> None:
    got = run_filter(NodeUnschedulable(), pod(tolerations=tolerations), [NodeInfo(node("n", unschedulable=cordoned))])
    assert got["n"] == want
    assert want is None or isinstance(got["n"], Unresolvable)


# ---------------------------------------------------------------- NodeName


def test_node_name() -> None:
    nodes = [NodeInfo(node("a")), NodeInfo(node("b"))]
    assert run_filter(NodeName(), pod(nodeName="a"), nodes) == {
        "a": None, "b": "node(s) didn't match the requested node name"}
    assert run_filter(NodeName(), pod(), nodes) == {"a": None, "b": None}


# ---------------------------------------------------------------- TaintToleration

NOT_READY = taint("node.kubernetes.io/not-ready")


@pytest.mark.parametrize(("taints", "tolerations", "want"), [
    ([], [], None),
    ([taint("k", value="v")], [], "node(s) had untolerated taint {k: v}"),
    ([NOT_READY], [], "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
    ([taint("k", "NoExecute", "v")], [], "node(s) had untolerated taint {k: v}"),
    ([taint("k", "PreferNoSchedule", "v")], [], None),
    ([taint("k", value="v")], [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}], None),
    ([taint("k", value="v")], [{"key": "k", "value": "v"}], None),  # no operator = Equal, no effect = all
    ([taint("k", value="v")], [{"key": "k", "operator": "Equal", "value": "w"}], "node(s) had untolerated taint {k: v}"),
    ([taint("k", value="v")], [{"key": "k", "operator": "Exists"}], None),
    ([taint("k", value="v")], [{"operator": "Exists"}], None),  # empty key + Exists tolerates everything
    ([taint("k", "NoExecute")], [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
     "node(s) had untolerated taint {k: }"),
    ([taint("k", value="v")], [{"key": "other", "operator": "Exists"}], "node(s) had untolerated taint {k: v}"),
    # The first untolerated taint in node order is reported.
    ([taint("a"), taint("b", value="1"), taint("c", value="2")], [{"key": "a", "operator": "Exists"}],
     "node(s) had untolerated taint {b: 1}"),
])
def test_taint_toleration_filter(taints: list[dict[str, str]], tolerations: list[dict[str, str]],
                                 want: str | None) -> None:
    got = run_filter(TaintToleration(), pod(tolerations=tolerations), [NodeInfo(node("n", taints=taints))])["n"]
    assert got == want
    assert want is None or isinstance(got, Unresolvable)


def test_taint_toleration_score_counts_untolerated_prefer_no_schedule() -> None:
    nodes = [NodeInfo(node("two", taints=[taint("a", "PreferNoSchedule"), taint("b", "PreferNoSchedule")])),
             NodeInfo(node("one", taints=[taint("a", "PreferNoSchedule"), taint("c", "PreferNoSchedule")])),
             NodeInfo(node("none"))]
    # Only tolerations with no effect or PreferNoSchedule count: the NoSchedule one does not tolerate "b".
    tolerations = [{"key": "c", "operator": "Exists"}, {"key": "b", "operator": "Exists", "effect": "NoSchedule"}]
    raw, normalized = run_score(TaintToleration(), pod(tolerations=tolerations), nodes)
    assert raw == {"two": 2, "one": 1, "none": 0}
    assert normalized == {"two": 0, "one": 50, "none": 100}


# ---------------------------------------------------------------- NodeAffinity


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    e: dict[str, Any] = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e


LABELS = {"zone": "a", "gen": "5", "disk": "ssd"}


@pytest.mark.parametrize(("spec", "want"), [
    ({}, True),
    ({"nodeSelector": {"zone": "a"}}, True),
    ({"nodeSelector": {"zone": "a", "disk": "hdd"}}, False),
    ({"nodeSelector": {"missing": ""}}, False),
    ({"affinity": required({"matchExpressions": [expr("zone", "In", "a", "b")]})}, True),
    ({"affinity": required({"matchExpressions": [expr("zone", "In", "b")]})}, False),
    ({"affinity": required({"matchExpressions": [expr("zone", "NotIn", "b")]})}, True),
    ({"affinity": required({"matchExpressions": [expr("missing", "NotIn", "b")]})}, True),
    ({"affinity": required({"matchExpressions": [expr("zone", "NotIn", "a")]})}, False),
    ({"affinity": required({"matchExpressions": [expr("disk", "Exists")]})}, True),
    ({"affinity": required({"matchExpressions": [expr("missing", "Exists")]})}, False),
    ({"affinity": required({"matchExpressions": [expr("missing", "DoesNotExist")]})}, True),
    ({"affinity": required({"matchExpressions": [expr("disk", "DoesNotExist")]})}, False),
    ({"affinity": required({"matchExpressions": [expr("gen", "Gt", "4")]})}, True),
    ({"affinity": required({"matchExpressions": [expr("gen", "Gt", "5")]})}, False),
    ({"affinity": required({"matchExpressions": [expr("gen", "Lt", "6")]})}, True),
    ({"affinity": required({"matchExpressions": [expr("zone", "Gt", "1")]})}, False),  # "a" is not an integer
    ({"affinity": required({"matchExpressions": [expr("missing", "Lt", "1")]})}, False),
    # Expressions are ANDed, terms ORed.
    ({"affinity": required({"matchExpressions": [expr("zone", "In", "a"), expr("disk", "In", "hdd")]})}, False),
    ({"affinity": required({"matchExpressions": [expr("zone", "In", "b")]},
                           {"matchExpressions": [expr("disk", "In", "ssd")]})}, True),
    # An empty term, no terms, or an invalid term select nothing (other valid terms still count).
    ({"affinity": required({})}, False),
    ({"affinity": required()}, False),
    ({"affinity": required({"matchExpressions": [expr("zone", "In")]})}, False),
    ({"affinity": required({"matchExpressions": [expr("zone", "In")]},
                           {"matchExpressions": [expr("zone", "In", "a")]})}, True),
    ({"affinity": required({"matchFields": [expr("metadata.name", "In", "n")]})}, True),
    ({"affinity": required({"matchFields": [expr("metadata.name", "In", "other")]})}, False),
    ({"affinity": required({"matchFields": [expr("metadata.name", "NotIn", "other")]})}, True),
    ({"affinity": required({"matchFields": [expr("metadata.name", "In", "n", "m")]})}, False),
    ({"affinity": required({"matchFields": [expr("metadata.name", "In", "n")],
                            "matchExpressions": [expr("zone", "In", "b")]})}, False),
    # nodeSelector AND required affinity.
    ({"nodeSelector": {"zone": "b"}, "affinity": required({"matchExpressions": [expr("zone", "In", "a")]})}, False),
])
def test_node_affinity_filter(spec: dict[str, Any], want: bool) -> None:
    got = run_filter(NodeAffinity(), pod(**spec), [NodeInfo(node("n", labels=LABELS))])["n"]
    assert got == (None if want else "node(s) didn't match Pod's node affinity/selector")
    assert want or isinstance(got, Unresolvable)


def test_node_affinity_preferred_score() -> None:
    preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 5, "preference": {"matchExpressions": [expr("zone", "In", "a")]}},
        {"weight": 3, "preference": {"matchExpressions": [expr("disk", "Exists")]}},
        {"weight": 0, "preference": {}},
    ]}}
    nodes = [NodeInfo(node("both", labels={"zone": "a", "disk": "ssd"})),
             NodeInfo(node("disk", labels={"disk": "hdd"})), NodeInfo(node("neither"))]
    raw, normalized = run_score(NodeAffinity(), pod(affinity=preferred), nodes)
    assert raw == {"both": 8, "disk": 3, "neither": 0}
    assert normalized == {"both": 100, "disk": 37, "neither": 0}
    # An empty preference matches every node; no preferred terms means the plugin is skipped.
    everywhere = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 2, "preference": {}}]}}
    assert run_score(NodeAffinity(), pod(affinity=everywhere), nodes)[0] == {"both": 2, "disk": 2, "neither": 2}
    assert run_score(NodeAffinity(), pod(), nodes) == ({}, {})


# ---------------------------------------------------------------- NodePorts

PORT_REASON = "node(s) didn't have free ports for the requested pod ports"


def host_port(port: int, protocol: str | None = None, ip: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"containerPort": port, "hostPort": port}
    if protocol:
        p["protocol"] = protocol
    if ip:
        p["hostIP"] = ip
    return p


@pytest.mark.parametrize(("used", "wanted", "conflict"), [
    (host_port(80), host_port(80), True),
    (host_port(80), host_port(81), False),
    (host_port(80, "TCP"), host_port(80, "UDP"), False),
    (host_port(53, "UDP"), host_port(53, "UDP"), True),
    (host_port(80), host_port(80, ip="127.0.0.1"), True),  # 0.0.0.0 in use blocks every IP
    (host_port(80, ip="127.0.0.1"), host_port(80), True),  # asking 0.0.0.0 needs the port free on all IPs
    (host_port(80, ip="127.0.0.1"), host_port(80, ip="127.0.0.2"), False),
    (host_port(80, ip="127.0.0.1"), host_port(80, ip="127.0.0.1"), True),
    (host_port(80, ip="0.0.0.0", protocol="TCP"), host_port(80), True),
    (host_port(80), {"containerPort": 80}, False),  # no hostPort asked
])
def test_node_ports(used: dict[str, Any], wanted: dict[str, Any], conflict: bool) -> None:
    ni = NodeInfo(node("n"), [pod("existing", ports=[used])])
    assert run_filter(NodePorts(), pod("new", ports=[wanted]), [ni])["n"] == (PORT_REASON if conflict else None)


def test_node_ports_counts_sidecar_init_containers_and_skips_pods_without_ports() -> None:
    sidecar = {"name": "s", "image": "x", "restartPolicy": "Always", "ports": [host_port(9000)]}
    plain_init = {"name": "i", "image": "x", "ports": [host_port(9001)]}
    ni = NodeInfo(node("n"), [pod("existing", initContainers=[sidecar, plain_init])])
    assert run_filter(NodePorts(), pod("a", ports=[host_port(9000)]), [ni])["n"] == PORT_REASON
    assert run_filter(NodePorts(), pod("b", ports=[host_port(9001)]), [ni])["n"] is None
    state = CycleState(pod("c"), [ni])
    assert NodePorts().pre_filter(pod("c"), state) is False


# ---------------------------------------------------------------- NodeResourcesFit


@pytest.mark.parametrize(("incoming", "node_kw", "existing", "want"), [
    (pod(cpu="1", memory="1Gi"), {}, [], None),
    (pod(cpu="4", memory="8Gi"), {}, [], None),  # exactly the allocatable
    (pod(cpu="1"), {}, [pod("e", cpu="3500m")], ["Insufficient cpu"]),
    (pod(memory="1Gi"), {}, [pod("e", memory="7.5Gi")], ["Insufficient memory"]),
    (pod(cpu="5", memory="9Gi"), {}, [], ["Insufficient cpu", "Insufficient memory"]),
    (pod(), {"pods": "1"}, [pod("e")], ["Too many pods"]),
    (pod(cpu="1"), {"pods": "1"}, [pod("e", cpu="4")], ["Too many pods", "Insufficient cpu"]),
    (pod(extra={"example.com/gpu": "1"}), {}, [], ["Insufficient example.com/gpu"]),
    (pod(cpu="0"), {}, [pod("e", cpu="5")], None),  # nothing requested: an overcommitted node still fits
])
def test_node_resources_fit_filter(incoming: dict[str, Any], node_kw: dict[str, Any],
                                   existing: list[dict[str, Any]], want: list[str] | None) -> None:
    ni = NodeInfo(node("n", **node_kw), existing)
    assert run_filter(NodeResourcesFit(), incoming, [ni])["n"] == want


def test_node_resources_fit_unresolvable_only_when_the_node_is_too_small() -> None:
    ni = NodeInfo(node("n"), [pod("e", cpu="3")])
    resolvable = run_filter(NodeResourcesFit(), pod(cpu="2"), [ni])["n"]
    too_big = run_filter(NodeResourcesFit(), pod(cpu="5"), [ni])["n"]
    assert isinstance(resolvable, list) and not isinstance(resolvable[0], Unresolvable)
    assert isinstance(too_big, list) and isinstance(too_big[0], Unresolvable)


@pytest.mark.parametrize(("requested", "capacity", "least", "most"), [
    (0, 100, 100, 0), (25, 100, 75, 25), (100, 100, 0, 100), (150, 100, 0, 100), (1, 3, 66, 33), (5, 0, 0, 0),
])
def test_requested_scores(requested: int, capacity: int, least: int, most: int) -> None:
    assert least_requested_score(requested, capacity) == least
    assert most_requested_score(requested, capacity) == most


@pytest.mark.parametrize(("strategy", "incoming", "existing", "want"), [
    ("LeastAllocated", pod(cpu="1", memory="2Gi"), [pod("e", cpu="1", memory="2Gi")], 50),
    ("MostAllocated", pod(cpu="1", memory="2Gi"), [pod("e", cpu="1", memory="2Gi")], 50),
    ("LeastAllocated", pod(cpu="1", memory="1Gi"), [], 81),  # cpu 75, memory 87
    ("MostAllocated", pod(cpu="1", memory="1Gi"), [], 18),  # cpu 25, memory 12
    # No requests: 100m / 200Mi are assumed for scoring.
    ("LeastAllocated", pod(), [], 97),  # cpu 97.5 -> 97, memory 97.5 -> 97
    ("MostAllocated", pod(), [], 2),
])
def test_node_resources_fit_score(strategy: str, incoming: dict[str, Any], existing: list[dict[str, Any]],
                                  want: int) -> None:
    ni = NodeInfo(node("n"), existing)
    raw, _ = run_score(NodeResourcesFit(strategy), incoming, [ni])
    assert raw["n"] == want


def test_node_resources_fit_score_with_custom_resources() -> None:
    ni = NodeInfo({"metadata": {"name": "n"}, "status": {"allocatable": {
        "cpu": "4", "memory": "8Gi", "pods": "10", "example.com/gpu": "4"}}})
    fit = NodeResourcesFit(resources=[("cpu", 1), ("example.com/gpu", 3)])
    # cpu (4000-1000)/4000 -> 75 (weight 1), gpu (4-1)/4 -> 75 (weight 3)
    assert run_score(fit, pod(cpu="1", extra={"example.com/gpu": "1"}), [ni])[0] == {"n": 75}
    # A resource the pod does not ask for is not scored.
    assert run_score(fit, pod(cpu="2"), [ni])[0] == {"n": 50}
    with pytest.raises(ValueError):
        NodeResourcesFit("RequestedToCapacityRatio")


# ---------------------------------------------------------------- BalancedAllocation


@pytest.mark.parametrize(("incoming", "existing", "want"), [
    (pod(cpu="1", memory="2Gi"), [], 100),
    (pod(cpu="2", memory="1Gi"), [], 81),  # fractions .5 / .125: std .1875
    (pod(cpu="1", memory="1Gi"), [pod("e", cpu="3", memory="1Gi")], 62),  # 1.0 / .25: std .375
    (pod(cpu="8", memory="1Gi"), [], 56),  # cpu capped at 1: 1.0 / .125
])
def test_balanced_allocation(incoming: dict[str, Any], existing: list[dict[str, Any]], want: int) -> None:
    raw, _ = run_score(BalancedAllocation(), incoming, [NodeInfo(node("n"), existing)])
    assert raw == {"n": want}


def test_balanced_allocation_skips_best_effort_pods_and_handles_more_resources() -> None:
    assert run_score(BalancedAllocation(), pod(), [NodeInfo(node("n"))]) == ({}, {})
    assert balanced_score([0.5, 0.5, 0.5]) == 100
    assert balanced_score([0.0, 0.5, 1.0]) == 59  # std sqrt(1/6)
    assert balanced_score([0.3]) == 100


# ---------------------------------------------------------------- InterPodAffinity


def term(labels: dict[str, str], topology: str = "kubernetes.io/hostname", **extra: Any) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": topology, **extra}


def pod_affinity(*terms: dict[str, Any], anti: bool = False) -> dict[str, Any]:
    kind = "podAntiAffinity" if anti else "podAffinity"
    return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


def cluster(*existing: tuple[str, dict[str, Any]]) -> list[NodeInfo]:
    """n1, n2 in zone a, n3 in zone b, n4 without a zone; ``existing`` = (node, pod) pairs."""
    nodes = [NodeInfo(node("n1", labels={"zone": "a"})), NodeInfo(node("n2", labels={"zone": "a"})),
             NodeInfo(node("n3", labels={"zone": "b"})), NodeInfo(node("n4"))]
    by_name = {ni.name: ni for ni in nodes}
    for name, p in existing:
        by_name[name].add_pod(p)
    return nodes


AFF = Unresolvable("node(s) didn't match pod affinity rules")
ANTI = "node(s) didn't match pod anti-affinity rules"
EXISTING = "node(s) didn't satisfy existing pods anti-affinity rules"
DB = ("n1", pod("db", labels={"app": "db"}))


@pytest.mark.parametrize(("existing", "incoming", "want"), [
    ([DB], pod(affinity=pod_affinity(term({"app": "db"}))), [None, AFF, AFF, AFF]),
    ([DB], pod(affinity=pod_affinity(term({"app": "db"}, "zone"))), [None, None, AFF, AFF]),
    ([DB], pod(affinity=pod_affinity(term({"app": "db"}), anti=True)), [ANTI, None, None, None]),
    ([DB], pod(affinity=pod_affinity(term({"app": "db"}, "zone"), anti=True)), [ANTI, ANTI, None, None]),
    # Both terms must match the same pod for affinity.
    ([DB], pod(affinity=pod_affinity(term({"app": "db"}), term({"tier": "x"}))), [AFF, AFF, AFF, AFF]),
    # The existing pod's anti-affinity keeps the incoming pod out of its zone.
    ([("n3", pod("guard", affinity=pod_affinity(term({"app": "web"}, "zone"), anti=True)))],
     pod("web", labels={"app": "web"}), [None, None, EXISTING, None]),
    ([("n3", pod("guard", affinity=pod_affinity(term({"app": "web"}, "zone"), anti=True)))],
     pod("api", labels={"app": "api"}), [None, None, None, None]),
    # The first pod of a self-affine group may go anywhere its topology key exists.
    ([], pod("web", labels={"app": "web"}, affinity=pod_affinity(term({"app": "web"}, "zone"))),
     [None, None, None, AFF]),
    ([], pod("web", labels={"app": "other"}, affinity=pod_affinity(term({"app": "web"}, "zone"))),
     [AFF, AFF, AFF, AFF]),
    # Terms only see the pod's own namespace unless they say otherwise.
    ([("n1", pod("db", ns="data", labels={"app": "db"}))], pod(affinity=pod_affinity(term({"app": "db"}))),
     [AFF, AFF, AFF, AFF]),
    ([("n1", pod("db", ns="data", labels={"app": "db"}))],
     pod(affinity=pod_affinity(term({"app": "db"}, namespaces=["data"]))), [None, AFF, AFF, AFF]),
    ([("n1", pod("db", ns="data", labels={"app": "db"}))],
     pod(affinity=pod_affinity(term({"app": "db"}, namespaceSelector={}))), [None, AFF, AFF, AFF]),
])
def test_inter_pod_affinity_filter(existing: list[tuple[str, dict[str, Any]]], incoming: dict[str, Any],
                                   want: list[str | None]) -> None:
    nodes = cluster(*existing)
    got = run_filter(InterPodAffinity(), incoming, nodes)
    assert [got[n] for n in ("n1", "n2", "n3", "n4")] == want
    for reason in want:
        if reason is not None:
            assert isinstance(reason, Unresolvable) == (reason == AFF)


def test_inter_pod_affinity_namespace_selector_uses_namespace_labels() -> None:
    nodes = cluster(("n1", pod("db", ns="data", labels={"app": "db"})))
    incoming = pod(affinity=pod_affinity(term({"app": "db"}, namespaceSelector={"matchLabels": {"team": "x"}})))
    got = run_filter(InterPodAffinity(), incoming, nodes, {"data": {"team": "x"}})
    assert got["n1"] is None and got["n2"] == AFF
    got = run_filter(InterPodAffinity(), incoming, nodes, {"data": {"team": "y"}})
    assert got["n1"] == AFF
    # Namespaces whose labels are unknown are not selected, even by a DoesNotExist selector.
    unknown = pod(affinity=pod_affinity(term({"app": "db"}, namespaceSelector={
        "matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]})))
    assert run_filter(InterPodAffinity(), unknown, nodes)["n1"] == AFF
    assert run_filter(InterPodAffinity(), unknown, nodes, {"data": {}})["n1"] is None


def test_inter_pod_affinity_is_skipped_without_terms() -> None:
    nodes = cluster(DB)
    assert InterPodAffinity().pre_filter(pod(), CycleState(pod(), nodes)) is False


def weighted(weight: int, t: dict[str, Any]) -> dict[str, Any]:
    return {"weight": weight, "podAffinityTerm": t}


def test_inter_pod_affinity_preferred_score() -> None:
    nodes = cluster(DB, ("n3", pod("cache", labels={"app": "cache"})))
    incoming = pod(affinity={
        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [weighted(10, term({"app": "db"}, "zone"))]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            weighted(5, term({"app": "cache"}, "zone"))]},
    })
    raw, normalized = run_score(InterPodAffinity(), incoming, nodes)
    assert raw == {"n1": 10, "n2": 10, "n3": -5, "n4": 0}
    assert normalized == {"n1": 100, "n2": 100, "n3": 0, "n4": 33}


def test_inter_pod_affinity_score_counts_existing_pods_terms() -> None:
    likes_web = pod("fan", affinity={"podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [weighted(4, term({"app": "web"}))],
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "web"}, "zone")]}})
    nodes = cluster(("n3", likes_web))
    raw, normalized = run_score(InterPodAffinity(), pod("web", labels={"app": "web"}), nodes)
    # Preferred 4 on n3's hostname, hard affinity weight 1 on n3's zone.
    assert raw == {"n1": 0, "n2": 0, "n3": 5, "n4": 0}
    assert normalized == {"n1": 0, "n2": 0, "n3": 100, "n4": 0}
    assert run_score(InterPodAffinity(), pod("api", labels={"app": "api"}), nodes) == ({}, {})
    ignoring = InterPodAffinity(ignore_preferred_terms_of_existing_pods=True)
    assert run_score(ignoring, pod("web", labels={"app": "web"}), nodes) == ({}, {})


# ---------------------------------------------------------------- SelectorSpread


def test_selector_spread() -> None:
    nodes = [NodeInfo(node("two"), [pod("a", owner="rs"), pod("b", owner="rs")]),
             NodeInfo(node("one"), [pod("c", owner="rs"), pod("d", owner="other")]),
             NodeInfo(node("none"), [pod("e", owner="other")])]
    raw, normalized = run_score(SelectorSpread(), pod("new", owner="rs"), nodes)
    assert raw == {"two": 2, "one": 1, "none": 0}
    assert normalized == {"two": 0, "one": 50, "none": 100}
    assert run_score(SelectorSpread(), pod("new", owner="fresh"), nodes)[1] == {"two": 100, "one": 100, "none": 100}
    assert run_score(SelectorSpread(), pod("orphan"), nodes) == ({}, {})


# ---------------------------------------------------------------- batch paths agree with per-node answers


def varied_nodes() -> list[NodeInfo]:
    nodes = []
    for i in range(12):
        taints = [taint("dedicated", value="x")] if i % 4 == 0 else []
        if i % 5 == 0:
            taints.append(taint("soft", "PreferNoSchedule"))
        n = NodeInfo(node(f"n{i}", cpu=str(1 + i % 4), memory=f"{1 + i % 3}Gi", pods=str(2 + i % 3),
                          labels={"zone": "ab"[i % 2]}, taints=taints, unschedulable=i % 6 == 1))
        for j in range(i % 3):
            n.add_pod(pod(f"e{i}-{j}", cpu="500m", memory="300Mi", owner="rs" if j else "x"))
        nodes.append(n)
    nodes.append(NodeInfo({"metadata": {"name": "empty"}}))
    return nodes


@pytest.mark.parametrize("incoming", [
    pod(cpu="700m", memory="512Mi", owner="rs"), pod(), pod(cpu="3", extra={"example.com/gpu": "1"}),
    pod(memory="1Gi", nodeSelector={"zone": "a"}, tolerations=[{"key": "dedicated", "operator": "Exists"}]),
])
@pytest.mark.parametrize("strategy", ["LeastAllocated", "MostAllocated"])
def test_batch_methods_match_per_node_methods(incoming: dict[str, Any], strategy: str) -> None:
    nodes = varied_nodes()
    filters, scores = default_plugins(strategy)
    plugins: list[Any] = [*filters, *scores]
    for plugin in plugins:
        state = CycleState(incoming, nodes)
        if hasattr(plugin, "filter_all"):
            assert plugin.filter_all(incoming, nodes, state) == [plugin.filter(incoming, ni, state) for ni in nodes]
        if hasattr(plugin, "score_all"):
            assert plugin.score_all(incoming, nodes, state) == [plugin.score(incoming, ni, state) for ni in nodes]
