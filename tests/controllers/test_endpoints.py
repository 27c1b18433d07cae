"""The pure parts of the Endpoints and EndpointSlice controllers, from tables."""

from __future__ import annotations

from typing import Any

import pytest

from services.controllers import endpoint_utils as eu
from services.controllers.endpoints import compute_subsets, endpoints_equal, truncate
from services.controllers.endpointslice import SliceTracker
from services.controllers.endpointslice_reconciler import desired_endpoints, reconcile_family, slice_labels


def pod(name: str, ip: str = "127.0.0.1", ready: bool = True, node: str = "n1", deleting: bool = False,
        phase: str = "Running", restart: str = "Always", ports: list[Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": meta,
            "spec": {"nodeName": node, "restartPolicy": restart,
                     "containers": [{"name": "c", "ports": ports if ports is not None else
                                     [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else [],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def svc(target: Any = "http", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "p", "port": 80, "targetPort": target,
                                                              "protocol": "TCP"}], **spec}}


@pytest.mark.parametrize(("service", "want"), [
    (svc(), {"app": "web"}),
    ({"spec": {"selector": {}}}, None),
    ({"spec": {}}, None),
    ({"spec": {"type": "ExternalName", "selector": {"a": "b"}}}, None),
])
def test_service_selector(service: dict[str, Any], want: Any) -> None:
    assert eu.service_selector(service) == want


@pytest.mark.parametrize(("p", "include_terminating", "want"), [
    (pod("a"), False, True),
    (pod("a", ip=""), False, False),
    (pod("a", deleting=True), False, False),
    (pod("a", deleting=True), True, True),
    (pod("a", phase="Succeeded", restart="Never"), False, False),
    (pod("a", phase="Failed", restart="OnFailure"), False, True),
    (pod("a", phase="Succeeded", restart="OnFailure"), False, False),
])
def test_should_pod_be_in_endpoints(p: dict[str, Any], include_terminating: bool, want: bool) -> None:
    assert eu.should_pod_be_in_endpoints(p, include_terminating) is want


@pytest.mark.parametrize(("port", "want"), [
    ({"port": 80, "targetPort": 9090}, 9090),
    ({"port": 80}, 80),
    ({"port": 80, "targetPort": "http", "protocol": "TCP"}, 8080),
    ({"port": 80, "targetPort": "http", "protocol": "UDP"}, None),
    ({"port": 80, "targetPort": "nope"}, None),
])
def test_find_port(port: dict[str, Any], want: int | None) -> None:
    assert eu.find_port(pod("a"), port) == want


def test_pod_ip_by_family() -> None:
    p = pod("a", ip="127.0.0.5")
    p["status"]["podIPs"].append({"ip": "fd00::5"})
    assert eu.pod_ip(p, "IPv4") == "127.0.0.5" and eu.pod_ip(p, "IPv6") == "fd00::5"
    assert eu.service_families({"spec": {"ipFamilies": ["IPv6", "IPv4"]}}) == ["IPv6", "IPv4"]
    assert eu.service_families({"spec": {}}) == ["IPv4"]


def test_compute_subsets_groups_by_resolved_port() -> None:
    pods = [pod("a", "127.0.0.2"), pod("b", "127.0.0.1", ready=False),
            pod("c", "127.0.0.3", ports=[{"name": "http", "containerPort": 9090, "protocol": "TCP"}]),
            pod("d", "127.0.0.4", ports=[]),  # cannot resolve the named port: left out
            pod("e", "127.0.0.9", deleting=True)]
    subsets = compute_subsets(svc(), pods)
    assert subsets == [
        {"addresses": [{"ip": "127.0.0.2", "nodeName": "n1",
                        "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}}],
         "notReadyAddresses": [{"ip": "127.0.0.1", "nodeName": "n1",
                                "targetRef": {"kind": "Pod", "namespace": "ns", "name": "b", "uid": "uid-b"}}],
         "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}]},
        {"addresses": [{"ip": "127.0.0.3", "nodeName": "n1",
                        "targetRef": {"kind": "Pod", "namespace": "ns", "name": "c", "uid": "uid-c"}}],
         "ports": [{"name": "p", "port": 9090, "protocol": "TCP"}]}]
    published = compute_subsets(svc(publishNotReadyAddresses=True), pods)
    assert [a["ip"] for a in published[0]["addresses"]] == ["127.0.0.1", "127.0.0.2", "127.0.0.9"]
    current = {"metadata": {"labels": {"tier": "front"}}, "subsets": subsets}
    assert endpoints_equal(current, compute_subsets(svc(), pods), {"tier": "front"}, False)
    assert not endpoints_equal(current, subsets, {"tier": "back"}, False)


def test_truncate_keeps_ready_first() -> None:
    subsets = [{"addresses": [{"ip": f"127.0.0.{i}"} for i in range(3)],
                "notReadyAddresses": [{"ip": f"127.0.1.{i}"} for i in range(3)]}]
    assert truncate(subsets, 4)
    assert len(subsets[0]["addresses"]) == 3 and len(subsets[0]["notReadyAddresses"]) == 1
    assert not truncate(subsets, 4)


def desired(pods: list[dict[str, Any]], service: dict[str, Any] | None = None) -> Any:
    d, missing = desired_endpoints(service or svc(), pods, {"n1": {"metadata": {"labels": {
        "topology.kubernetes.io/zone": "z1"}}}}, "IPv4")
    return d, missing


def test_desired_endpoints_conditions_and_missing_nodes() -> None:
    pods = [pod("a", "127.0.0.1"), pod("b", "127.0.0.2", ready=False), pod("c", "127.0.0.3", deleting=True),
            pod("d", "127.0.0.4", node="gone")]
    d, missing = desired(pods)
    assert missing == ["ns/d"]
    eps = {e["targetRef"]["name"]: e for e in next(iter(d.values()))[1].values()}
    assert eps["a"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert eps["b"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert eps["c"]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert eps["a"]["zone"] == "z1" and eps["a"]["nodeName"] == "n1"


def existing(plan_slices: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """Created slices as the apiserver returns them (named)."""
    out = []
    for i, s in enumerate(plan_slices, start):
        s = {**s, "metadata": {**s["metadata"], "name": f"web-{i}", "resourceVersion": "1"}}
        s["metadata"].pop("generateName", None)
        out.append(s)
    return out


def test_reconcile_creates_fills_and_deletes() -> None:
    service = svc()
    pods = [pod(f"p{i}", f"127.0.{i // 250}.{i % 250 + 1}") for i in range(250)]
    plan = reconcile_family(service, "IPv4", desired(pods)[0], [])
    assert [len(s["endpoints"]) for s in plan.create] == [100, 100, 50] and not plan.update and not plan.delete
    s0 = plan.create[0]
    assert s0["metadata"]["generateName"] == "web-" and s0["addressType"] == "IPv4"
    assert s0["metadata"]["labels"] == slice_labels(service) == {
        "tier": "front", "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert s0["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
    current = existing(plan.create)
    assert reconcile_family(service, "IPv4", desired(pods)[0], current).empty()  # nothing changed

    # one pod turns unready, one goes, one arrives: one update each, the new one fills a slice being updated
    home = next(s for s in current if any(e["targetRef"]["name"] == "p0" for e in s["endpoints"]))
    gone = next(e["targetRef"]["name"] for e in home["endpoints"] if e["targetRef"]["name"] != "p0")
    changed = [pod("p0", "127.0.0.1", ready=False), *(p for p in pods[1:] if p["metadata"]["name"] != gone),
               pod("new", "127.0.9.9")]
    plan = reconcile_family(service, "IPv4", desired(changed)[0], current)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["metadata"]["name"] == home["metadata"]["name"]
    names = [e["targetRef"]["name"] for e in plan.update[0]["endpoints"]]
    assert gone not in names and "new" in names and len(names) == len(home["endpoints"])

    # all pods gone: one empty placeholder remains
    plan = reconcile_family(service, "IPv4", desired([])[0], current)
    assert len(plan.delete) == 3 and len(plan.create) == 1 and plan.create[0]["endpoints"] == []
    placeholder = existing(plan.create, 10)
    assert reconcile_family(service, "IPv4", desired([])[0], placeholder).empty()


def test_reconcile_new_port_set_replaces_slices() -> None:
    service = svc()
    current = existing(reconcile_family(service, "IPv4", desired([pod("a")])[0], []).create)
    moved = [pod("a", ports=[{"name": "http", "containerPort": 7070, "protocol": "TCP"}])]
    plan = reconcile_family(service, "IPv4", desired(moved)[0], current)
    assert len(plan.create) == 1 and plan.create[0]["ports"][0]["port"] == 7070
    assert [s["metadata"]["name"] for s in plan.delete] == ["web-0"]


def test_slice_tracker() -> None:
    clock = [0.0]
    tr = SliceTracker(ttl=10, clock=lambda: clock[0])
    s = {"metadata": {"name": "web-a", "resourceVersion": "5"}}
    assert not tr.stale("ns/web", [])
    tr.wrote("ns/web", s)
    assert tr.stale("ns/web", [])  # created, not cached yet
    assert tr.stale("ns/web", [{"metadata": {"name": "web-a", "resourceVersion": "4"}}])
    assert not tr.stale("ns/web", [s])
    tr.deleted("ns/web", "web-a")
    assert tr.stale("ns/web", [s])
    assert not tr.stale("ns/web", [])
    tr.wrote("ns/web", s)
    clock[0] = 11
    assert not tr.stale("ns/web", [])  # expired
