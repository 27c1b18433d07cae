"""The scheduling framework computes requests, node state, choices and messages as kube-scheduler does."""

from __future__ import annotations

from typing import Any

import pytest

from services.scheduler.framework import (
    DEFAULT_MEMORY_REQUEST,
    DEFAULT_MILLI_CPU_REQUEST,
    CycleState,
    NodeInfo,
    PodInfo,
    Profile,
    Resources,
    ScheduleResult,
    Unresolvable,
    default_normalize,
    failure_message,
    milli_value,
    num_feasible_nodes_to_find,
    pod_requests,
    quantity_value,
    schedule_one,
)
from services.scheduler.plugins import default_plugins, default_profile
from services.scheduler.plugins.node_resources_fit import NodeResourcesFit

GI = 1024**3
MI = 1024**2


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110", *, labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None, unschedulable: bool = False,
         capacity_only: bool = False) -> dict[str, Any]:
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    status = {"capacity": resources} if capacity_only else {"capacity": resources, "allocatable": resources}
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": spec, "status": status}


def container(name: str = "c", requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
              **extra: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": name, "image": "busybox", "resources": resources, **extra}


def pod(name: str = "p", cpu: str | None = None, memory: str | None = None, *, ns: str = "default",
        containers: list[dict[str, Any]] | None = None, init: list[dict[str, Any]] | None = None,
        owner: str | None = None, **spec: Any) -> dict[str, Any]:
    if containers is None:
        req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
        containers = [container(requests=req)]
    body: dict[str, Any] = {"containers": containers, **spec}
    if init is not None:
        body["initContainers"] = init
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}"}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}]
    return {"metadata": meta, "spec": body}


def infos(*nodes: dict[str, Any]) -> list[NodeInfo]:
    return [NodeInfo(n) for n in nodes]


# ---------------------------------------------------------------- quantities and requests


@pytest.mark.parametrize(("q", "milli", "value"), [
    ("100m", 100, 1), ("1", 1000, 1), ("0.5", 500, 1), ("1.0001", 1001, 2), ("1Gi", 1000 * GI, GI),
    ("1m", 1, 1), ("250u", 1, 1), (2, 2000, 2), ("0", 0, 0),
])
def test_quantities_round_up_like_milli_value_and_value(q: str | int, milli: int, value: int) -> None:
    assert milli_value(q) == milli
    assert quantity_value(q) == value


REQUEST_CASES: list[tuple[str, dict[str, Any], Resources]] = [
    ("one container", pod(cpu="250m", memory="64Mi"), Resources(250, 64 * MI, 1)),
    ("app containers add up", pod(containers=[container("a", {"cpu": "1", "memory": "1Gi"}),
                                              container("b", {"cpu": "500m", "memory": "512Mi"})]),
     Resources(1500, GI + 512 * MI, 1)),
    # The example in upstream's computePodResourceRequest comment: cpu 3, memory 3G.
    ("init containers take the max", pod(
        init=[container("ic1", {"cpu": "2", "memory": "1G"}), container("ic2", {"cpu": "2", "memory": "3G"})],
        containers=[container("c1", {"cpu": "2", "memory": "1G"}), container("c2", {"cpu": "1", "memory": "1G"})]),
     Resources(3000, 3 * 10**9, 1)),
    ("an init container larger than the app", pod(
        init=[container("ic", {"cpu": "4"})], containers=[container("c", {"cpu": "1", "memory": "1Gi"})]),
     Resources(4000, GI, 1)),
    ("limits stand in for missing requests", pod(containers=[container(limits={"cpu": "2", "memory": "1Gi"})]),
     Resources(2000, GI, 1)),
    ("a request wins over its limit", pod(containers=[container(requests={"cpu": "1"},
                                                                limits={"cpu": "2", "memory": "1Gi"})]),
     Resources(1000, GI, 1)),
    ("overhead is added", pod(cpu="1", memory="1Gi", overhead={"cpu": "250m", "memory": "120Mi"}),
     Resources(1250, GI + 120 * MI, 1)),
    ("overhead is added after the init max", pod(
        init=[container("ic", {"cpu": "3"})], containers=[container("c", {"cpu": "1"})], overhead={"cpu": "100m"}),
     Resources(3100, 0, 1)),
    # Sidecars (restartPolicy Always) run beside the app and beside later init containers.
    ("sidecar init containers add to the app", pod(
        init=[container("sidecar", {"cpu": "500m", "memory": "100Mi"}, restartPolicy="Always"),
              container("ic", {"cpu": "1", "memory": "50Mi"})],
        containers=[container("c", {"cpu": "1", "memory": "1Gi"})]),
     Resources(1500, GI + 100 * MI, 1)),
    ("a late init container plus earlier sidecars can dominate", pod(
        init=[container("sidecar", {"cpu": "1"}, restartPolicy="Always"), container("ic", {"cpu": "3"})],
        containers=[container("c", {"cpu": "1"})]),
     Resources(4000, 0, 1)),
    ("pod-level requests override cpu and memory", pod(
        containers=[container("c", {"cpu": "1", "memory": "1Gi", "example.com/gpu": "1"})],
        resources={"requests": {"cpu": "3", "memory": "2Gi"}}),
     Resources(3000, 2 * GI, 1, {"example.com/gpu": 1})),
    ("extended, hugepages and ephemeral-storage are scalars; unknown bare names ignored", pod(
        containers=[container("c", {"example.com/gpu": "2", "hugepages-2Mi": "4Mi", "ephemeral-storage": "1Gi",
                                    "foo": "3"})]),
     Resources(0, 0, 1, {"example.com/gpu": 2, "hugepages-2Mi": 4 * MI, "ephemeral-storage": GI})),
    ("no requests at all", pod(containers=[container()]), Resources(0, 0, 1)),
]


@pytest.mark.parametrize(("case", "p", "want"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_pod_requests(case: str, p: dict[str, Any], want: Resources) -> None:
    assert pod_requests(p) == want


@pytest.mark.parametrize(("p", "cpu", "memory"), [
    (pod(containers=[container()]), DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST),
    (pod(cpu="1"), 1000, DEFAULT_MEMORY_REQUEST),
    (pod(cpu="0", memory="0"), 0, 0),  # an explicit zero is not "missing"
    (pod(containers=[container("a"), container("b", {"cpu": "300m"})]), 400, 2 * DEFAULT_MEMORY_REQUEST),
    (pod(containers=[container()], resources={"requests": {"cpu": "2"}}), 2000, DEFAULT_MEMORY_REQUEST),
])
def test_non_zero_requests_used_for_scoring(p: dict[str, Any], cpu: int, memory: int) -> None:
    pi = PodInfo(p)
    assert (pi.non_zero_cpu, pi.non_zero_memory) == (cpu, memory)


def test_resources_arithmetic_and_fit() -> None:
    a = Resources(1000, GI, 1, {"example.com/gpu": 1})
    total = Resources()
    total.add(a)
    total.add(a)
    assert total == Resources(2000, 2 * GI, 2, {"example.com/gpu": 2})
    total.sub(a)
    total.sub(a)
    assert total == Resources()
    alloc = Resources(4000, 8 * GI, 110, {"example.com/gpu": 2})
    assert a.fits(Resources(3000, 7 * GI, 109, {"example.com/gpu": 1}), alloc)
    assert not a.fits(Resources(3001, 0, 0), alloc)
    assert not a.fits(Resources(0, 0, 110), alloc)
    assert not a.fits(Resources(0, 0, 0, {"example.com/gpu": 2}), alloc)
    assert a.copy() == a and a.copy() is not a


def test_insufficient_lists_every_reason_in_upstream_order() -> None:
    req = Resources(5000, 9 * GI, 1, {"example.com/gpu": 1, "ephemeral-storage": 1, "a.io/x": 1})
    reasons = req.insufficient(Resources(0, 0, 110), Resources(4000, 16 * GI, 110, {"ephemeral-storage": 10}))
    assert reasons == ["Too many pods", "Insufficient cpu", "Insufficient a.io/x", "Insufficient example.com/gpu"]
    # The request alone exceeds allocatable: cpu and gpu are unresolvable, "Too many pods" is not.
    assert [isinstance(r, Unresolvable) for r in reasons] == [False, True, True, True]


# ---------------------------------------------------------------- NodeInfo


def test_node_info_reads_allocatable_falling_back_to_capacity() -> None:
    assert NodeInfo(node("a", cpu="2", memory="1Gi", pods="10")).allocatable == Resources(2000, GI, 10)
    assert NodeInfo(node("b", cpu="3", capacity_only=True)).allocatable == Resources(3000, 8 * GI, 110)
    assert NodeInfo({"metadata": {"name": "bare"}}).allocatable == Resources()


def test_node_info_tracks_pods_incrementally() -> None:
    ni = NodeInfo(node("n", labels={"zone": "z1"}, taints=[{"key": "k", "value": "v", "effect": "NoSchedule"},
                                                           {"key": "p", "effect": "PreferNoSchedule"}]))
    assert ni.labels["zone"] == "z1"
    assert ni.taints == (("k", "v", "NoSchedule"), ("p", "", "PreferNoSchedule"))
    assert ni.no_schedule_taints == (("k", "v", "NoSchedule"),)
    assert ni.prefer_no_schedule_taints == (("p", "", "PreferNoSchedule"),)
    web = pod("web", containers=[container(requests={"cpu": "500m", "memory": "1Gi"},
                                           ports=[{"containerPort": 80, "hostPort": 8080}])], owner="rs1")
    bare = pod("bare", containers=[container()], owner="rs1")
    ni.add_pod(web)
    ni.add_pod(bare)
    assert ni.num_pods == 2 and ni.pods == [web, bare]
    assert ni.requested == Resources(500, GI, 2)
    assert (ni.non_zero_cpu, ni.non_zero_memory) == (600, GI + DEFAULT_MEMORY_REQUEST)
    assert (ni.free_milli_cpu, ni.free_memory, ni.free_pods) == (3500, 7 * GI, 108)
    assert ni.used_ports == {("TCP", "0.0.0.0", 8080): 1}
    assert ni.owner_counts == {"rs1": 2}
    # Adding the same pod again (assumed, then seen bound) replaces it.
    ni.add_pod({**web, "spec": {**web["spec"], "nodeName": "n"}})
    assert ni.num_pods == 2 and ni.requested == Resources(500, GI, 2)
    assert ni.remove_pod(web) and not ni.remove_pod(web)
    assert ni.requested == Resources(0, 0, 1) and not ni.used_ports and ni.owner_counts == {"rs1": 1}
    assert ni.remove_pod("uid-default-bare")
    assert ni.requested == Resources() and (ni.non_zero_cpu, ni.non_zero_memory) == (0, 0) and not ni.owner_counts
    assert (ni.free_milli_cpu, ni.free_pods) == (4000, 110)


def test_set_node_keeps_pods() -> None:
    ni = NodeInfo(node("n", cpu="2"), [pod("a", cpu="1")])
    ni.set_node(node("n", cpu="8", labels={"new": "yes"}))
    assert ni.num_pods == 1 and ni.free_milli_cpu == 7000 and ni.labels["new"] == "yes"


def test_affinity_indexes() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    # As upstream, any podAffinity / podAntiAffinity object counts, even without terms; node affinity does not.
    ni = NodeInfo(node("n"), [pod("a", affinity=anti), pod("b", affinity={"nodeAffinity": {}}),
                              pod("c", affinity={"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}})])
    assert set(ni.pods_with_affinity) == {"uid-default-a", "uid-default-c"}
    assert set(ni.pods_with_required_anti_affinity) == {"uid-default-a"}
    ni.remove_pod("uid-default-a")
    assert set(ni.pods_with_affinity) == {"uid-default-c"} and not ni.pods_with_required_anti_affinity


# ---------------------------------------------------------------- normalization and sampling


@pytest.mark.parametrize(("scores", "reverse", "want"), [
    ({"a": 0, "b": 5, "c": 10}, False, {"a": 0, "b": 50, "c": 100}),
    ({"a": 0, "b": 5, "c": 10}, True, {"a": 100, "b": 50, "c": 0}),
    ({"a": 1, "b": 3}, False, {"a": 33, "b": 100}),
    ({"a": 0, "b": 0}, False, {"a": 0, "b": 0}),
    ({"a": 0, "b": 0}, True, {"a": 100, "b": 100}),
    ({}, True, {}),
])
def test_default_normalize(scores: dict[str, int], reverse: bool, want: dict[str, int]) -> None:
    assert default_normalize(scores, reverse=reverse) == want


@pytest.mark.parametrize(("nodes", "percentage", "want"), [
    (3, 0, 3), (99, 0, 99), (100, 0, 100), (200, 0, 100), (1000, 0, 420), (5000, 0, 500), (10000, 0, 500),
    (1000, 100, 1000), (1000, 30, 300), (1000, 5, 100), (150, 50, 100),
])
def test_num_feasible_nodes_to_find(nodes: int, percentage: int, want: int) -> None:
    assert num_feasible_nodes_to_find(nodes, percentage) == want


# ---------------------------------------------------------------- schedule_one


def test_schedule_one_picks_least_allocated_fitting_node() -> None:
    nodes = infos(node("big-busy", cpu="8", memory="16Gi"), node("small", cpu="1", memory="1Gi"),
                  node("roomy", cpu="8", memory="16Gi"))
    nodes[0].add_pod(pod("existing", cpu="6", memory="12Gi"))
    filters, scores = default_plugins()
    result = schedule_one(pod("new", cpu="2", memory="2Gi"), nodes, filters, scores)
    assert result.node == "roomy"
    assert result.failures == {"small": ["Insufficient cpu", "Insufficient memory"]}
    assert result.evaluated_nodes == 3 and result.feasible_nodes == 2
    assert set(result.scores) == {"big-busy", "roomy"}
    assert result.scores["roomy"] > result.scores["big-busy"]


def test_schedule_one_most_allocated_packs() -> None:
    nodes = infos(node("busy", cpu="8", memory="16Gi"), node("empty", cpu="8", memory="16Gi"))
    nodes[0].add_pod(pod("existing", cpu="4", memory="8Gi"))
    filters, scores = default_plugins("MostAllocated")
    assert schedule_one(pod("new", cpu="1", memory="1Gi"), nodes, filters, scores).node == "busy"


def test_single_feasible_node_is_not_scored() -> None:
    nodes = infos(node("a", cpu="1"), node("b", cpu="4"))
    filters, scores = default_plugins()
    result = schedule_one(pod(cpu="2"), nodes, filters, scores)
    assert result == ScheduleResult("b", {"a": ["Insufficient cpu"]}, {}, 2, 1)


def test_no_nodes() -> None:
    filters, scores = default_plugins()
    assert schedule_one(pod(), [], filters, scores) == ScheduleResult(None)
    assert failure_message(ScheduleResult(None), 0) == "no nodes available to schedule pods"


def test_tie_break_is_deterministic_and_spreads() -> None:
    nodes = infos(*(node(f"n{i}") for i in (3, 1, 2)))
    filters, scores = default_plugins()
    # Equal scores: fewest pods, then the smallest name; the same answer every time.
    picks = {schedule_one(pod("x", cpu="100m", memory="100Mi"), nodes, filters, scores).node for _ in range(5)}
    assert picks == {"n1"}
    # Pods without requests score equally everywhere: assuming each one spreads them anyway.
    by_name = {ni.name: ni for ni in nodes}
    order = []
    for i in range(6):
        p = pod(f"be{i}", containers=[container()])
        chosen = schedule_one(p, nodes, filters, scores).node
        assert chosen is not None
        by_name[chosen].add_pod(p)
        order.append(chosen)
    assert order == ["n1", "n2", "n3", "n1", "n2", "n3"]


class _Reject:
    """A filter rejecting named nodes (to test ordering and sampling)."""

    def __init__(self, name: str, reject: set[str], reason: str = "nope") -> None:
        self.name = name
        self.reject = reject
        self.reason = reason
        self.calls: list[str] = []

    def filter(self, pod: dict[str, Any], node_info: NodeInfo, state: CycleState) -> str | None:
        self.calls.append(node_info.name)
        return self.reason if node_info.name in self.reject else None


def test_first_failing_filter_gives_the_reason_and_later_filters_are_not_run() -> None:
    nodes = infos(node("a"), node("b"), node("c"))
    first = _Reject("first", {"a"}, "first says no")
    second = _Reject("second", {"a", "b"}, "second says no")
    result = schedule_one(pod(), nodes, [first, second], [])
    assert result.failures == {"a": ["first says no"], "b": ["second says no"]}
    assert result.node == "c"
    assert second.calls == ["b", "c"]


def test_sampling_stops_after_enough_feasible_nodes_from_the_start_index() -> None:
    nodes = infos(*(node(f"n{i}") for i in range(6)))
    rejecting = _Reject("r", {"n3"})
    result = schedule_one(pod(), nodes, [rejecting], [], num_to_find=2, start_index=2)
    # n2 fits, n3 fails, n4 fits: enough; n5, n0, n1 are not evaluated.
    assert result.evaluated_nodes == 3 and result.feasible_nodes == 2
    assert result.failures == {"n3": ["nope"]}
    assert result.node == "n2"  # equal (no) scores: fewest pods, then name


def test_profile_rotates_its_start_index() -> None:
    nodes = infos(*(node(f"n{i:03d}") for i in range(200)))
    profile = Profile(*default_plugins(), percentage_of_nodes_to_score=0)
    first = profile.schedule(pod("a", cpu="100m"), nodes)
    assert first.evaluated_nodes == 100 and profile.next_start_node_index == 100
    second = profile.schedule(pod("b", cpu="100m"), nodes)
    assert second.node is not None and int(second.node[1:]) >= 100
    assert profile.next_start_node_index == 0
    assert default_profile().percentage_of_nodes_to_score == 0


# ---------------------------------------------------------------- failure messages

NOT_READY = Unresolvable("node(s) had untolerated taint {node.kubernetes.io/not-ready: }")


@pytest.mark.parametrize(("failures", "total", "kwargs", "want"), [
    ({"a": ["Insufficient cpu"], "b": [NOT_READY], "c": [NOT_READY]}, 3, {"preemption": False},
     "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."),
    ({"a": ["Insufficient cpu"], "b": [NOT_READY], "c": [NOT_READY]}, 3, {},
     "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
     " preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod,"
     " 2 Preemption is not helpful for scheduling."),
    # Every reason is counted, one node may give several; entries sort as strings ("10 ..." < "2 ...").
    ({**{f"n{i}": ["Insufficient cpu", "Insufficient memory"] for i in range(10)},
      "x": ["node(s) were unschedulable"], "y": ["node(s) were unschedulable"]}, 12, {"preemption": False},
     "0/12 nodes are available: 10 Insufficient cpu, 10 Insufficient memory, 2 node(s) were unschedulable."),
    ({"a": ["Insufficient cpu"], "b": ["Insufficient cpu"], "c": ["Insufficient cpu"]}, 3, {},
     "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
     "3 No preemption victims found for incoming pod."),
    ({"a": [Unresolvable("node(s) didn't match Pod's node affinity/selector")]}, 1, {},
     "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are "
     "available: 1 Preemption is not helpful for scheduling."),
    ({"a": ["Too many pods", Unresolvable("Insufficient cpu")]}, 1, {},
     "0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods. preemption: 0/1 nodes are available: "
     "1 Preemption is not helpful for scheduling."),
    ({"a": ["Insufficient cpu"]}, 1, {"pod": pod(preemptionPolicy="Never")},
     "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."),
])
def test_failure_message(failures: dict[str, list[str]], total: int, kwargs: dict[str, Any], want: str) -> None:
    assert failure_message(ScheduleResult(None, failures), total, **kwargs) == want


def test_failure_message_end_to_end() -> None:
    nodes = infos(node("a", cpu="1"),
                  node("b", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
                  node("c", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]))
    filters, scores = default_plugins()
    result = schedule_one(pod(cpu="2"), nodes, filters, scores)
    assert result.node is None
    assert failure_message(result, 3, preemption=False) == (
        "0/3 nodes are available: 1 Insufficient cpu, "
        "2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.")


def test_cycle_state_store() -> None:
    state = CycleState(pod(cpu="1"))
    assert state.requests == Resources(1000, 0, 1)
    state.write("k", 1)
    assert state.read("k") == 1 and state.get("missing", 2) == 2
    with pytest.raises(KeyError):
        state.read("missing")


def test_fit_plugin_can_ignore_extended_resources() -> None:
    nodes = infos(node("a"))
    p = pod(containers=[container(requests={"example.com/gpu": "1", "other.io/x": "1"})])
    fit = NodeResourcesFit(ignored_resources=["example.com/gpu"])
    assert schedule_one(p, nodes, [fit], []).failures == {"a": ["Insufficient other.io/x"]}
    fit = NodeResourcesFit(ignored_resource_groups=["example.com", "other.io"])
    assert schedule_one(p, nodes, [fit], []).node == "a"
