"""The pure parts of the node lifecycle controller and taint eviction, from tables; and its flags."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from services.controllers import nodelifecycle_util as nu
from services.controllers.base import ControllerContext, SharedInformers
from services.controllers.main import CONTROLLER_FLAGS, add_arguments, duration
from services.controllers.nodelifecycle import NodeLifecycleController
from services.controllers.taint_eviction import eviction_delay
from shared.bus import Bus
from shared.errors import ApiError

T0 = 1_700_000_000.0


def node(ready: str | None = "True", heartbeat: str = "2024-01-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    conds = [] if ready is None else [{"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat,
                                       "lastTransitionTime": heartbeat}]
    return {"metadata": {"name": "n", "creationTimestamp": "2023-11-14T22:13:00Z"}, "spec": dict(extra),
            "status": {"conditions": conds}}


def lease(renew: str) -> dict[str, Any]:
    return {"spec": {"renewTime": renew}}


def test_observe_probe_moves_only_on_news() -> None:
    h = nu.observe(None, node(), None, now=100.0, wall=lambda: T0)
    assert h.probe == 100.0  # first sight: now
    h = nu.observe(h, node(), None, now=150.0)
    assert h.probe == 100.0  # same heartbeat: nothing new
    h = nu.observe(h, node(heartbeat="2024-01-01T00:00:10Z"), None, now=160.0)
    assert h.probe == 160.0
    h = nu.observe(h, node(heartbeat="2024-01-01T00:00:10Z"), lease("2024-01-01T00:00:30.000001Z"), now=170.0)
    assert h.probe == 170.0  # the lease renewed
    h = nu.observe(h, node(heartbeat="2024-01-01T00:00:10Z"), lease("2024-01-01T00:00:30.000001Z"), now=200.0)
    assert h.probe == 170.0  # the same renewTime again
    h = nu.observe(h, node(heartbeat="2024-01-01T00:00:10Z"), lease("2024-01-01T00:00:31Z"), now=210.0)
    assert h.probe == 210.0


def test_observe_never_posted_counts_from_creation() -> None:
    created = 1699999980.0  # 2023-11-14T22:13:00Z
    h = nu.observe(None, node(ready=None), None, now=1000.0, wall=lambda: created + 25)
    assert h.probe == pytest.approx(975.0)


def test_mark_unknown() -> None:
    n = node()
    n["status"]["conditions"].append({"type": "MemoryPressure", "status": "False"})
    assert nu.mark_unknown(n, "NOW")
    by = {c["type"]: c for c in n["status"]["conditions"]}
    assert by["Ready"] == {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                           "message": "Kubelet stopped posting node status.",
                           "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "NOW"}
    assert by["MemoryPressure"]["status"] == "Unknown"
    assert by["DiskPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert by["PIDPressure"]["message"] == "Kubelet never posted node status."
    assert not nu.mark_unknown(n, "LATER")  # already Unknown: nothing changes


@pytest.mark.parametrize(("n", "add", "remove"), [
    (node(), [], []),
    (node("False"), ["node.kubernetes.io/not-ready"], []),
    (node("Unknown", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
     ["node.kubernetes.io/unreachable"], ["node.kubernetes.io/not-ready"]),
    (node(unschedulable=True, taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
     ["node.kubernetes.io/unschedulable"], []),
    (node(taints=[{"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
                  {"key": "custom", "effect": "NoSchedule"}]), [], ["node.kubernetes.io/memory-pressure"]),
])
def test_no_schedule_diff(n: dict[str, Any], add: list[str], remove: list[str]) -> None:
    got_add, got_remove = nu.no_schedule_diff(n)
    assert [t["key"] for t in got_add] == add and [t["key"] for t in got_remove] == remove


def ready(status: str) -> dict[str, Any]:
    return {"type": "Ready", "status": status}


@pytest.mark.parametrize(("conds", "want"), [
    ([ready("True"), ready("Unknown")], (1, nu.STATE_NORMAL)),
    ([ready("Unknown"), None], (2, nu.STATE_FULL)),
    ([ready("True")] + [ready("False")] * 2, (2, nu.STATE_NORMAL)),  # at most 2 down never disrupts
    ([ready("True")] * 2 + [ready("False")] * 3, (3, nu.STATE_PARTIAL)),
    ([ready("True")] * 3 + [ready("False")] * 3, (3, nu.STATE_NORMAL)),  # 50% < 55%
])
def test_zone_state(conds: list[Any], want: tuple[int, str]) -> None:
    assert nu.zone_state(conds, 0.55) == want


def test_token_bucket() -> None:
    clock = [0.0]
    b = nu.TokenBucket(0.5, lambda: clock[0])
    assert b.try_accept() and not b.try_accept()
    assert b.wait_time() == pytest.approx(2.0)
    clock[0] = 2.0
    assert b.try_accept()
    b.swap(0.0)
    clock[0] = 100.0
    assert not b.try_accept() and b.wait_time() == float("inf")


def test_zone_key() -> None:
    assert nu.zone_key({"metadata": {"labels": {}}}) == ""
    assert nu.zone_key({"metadata": {"labels": {"topology.kubernetes.io/zone": "a"}}}) == ":\x00:a"


UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}


@pytest.mark.parametrize(("tolerations", "taints", "want"), [
    ([], [], None),
    ([], [UNREACHABLE], 0.0),
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
       "tolerationSeconds": 2}], [UNREACHABLE], 2.0),
    ([{"operator": "Exists"}], [UNREACHABLE], None),
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 9}],
     [UNREACHABLE, {"key": "other", "effect": "NoExecute"}], 0.0),
])
def test_eviction_delay(tolerations: list[Any], taints: list[Any], want: float | None) -> None:
    assert eviction_delay({"spec": {"tolerations": tolerations}}, taints) == want


@pytest.mark.parametrize(("text", "want"), [("40", 40.0), ("40s", 40.0), ("500ms", 0.5), ("1.5s", 1.5),
                                            ("5m", 300.0), ("1h", 3600.0)])
def test_duration(text: str, want: float) -> None:
    assert duration(text) == want


def test_controller_flags_parse() -> None:
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--node-monitor-grace-period", "2s", "--node-eviction-rate", "1", "--max-endpoints-per-slice", "7"])
    assert args.node_monitor_grace_period == 2.0 and args.node_eviction_rate == 1.0 and args.max_endpoints_per_slice == 7
    defaults = p.parse_args([])
    assert {f: getattr(defaults, f.replace("-", "_")) for _, _, f, _, _ in CONTROLLER_FLAGS}["node-monitor-period"] == 5.0


class _PatchingClient:
    """Records patches; answers with the ApiError configured for a pod name."""

    def __init__(self, errors: dict[str, ApiError]) -> None:
        self.errors = errors
        self.patches: list[tuple[str, str, Any, str, str]] = []

    async def patch(self, res: Any, namespace: str, name: str, body: Any, *, patch_type: str = "merge",
                    sub: str = "") -> dict[str, Any]:
        self.patches.append((namespace, name, body, patch_type, sub))
        if name in self.errors:
            raise self.errors[name]
        return {}


class _Events:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str]] = []

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.recorded.append((obj["metadata"]["name"], reason))


def _cached_pod(name: str, ready: str | None, rv: str) -> dict[str, Any]:
    conds = [{"type": "Ready", "status": ready, "reason": "r", "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "resourceVersion": rv},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox", "env": [{"name": "A"}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [] if ready is None else conds}}


async def test_mark_pods_not_ready_patches_the_ready_condition_guarded_by_the_cached_version() -> None:
    client = _PatchingClient({"changed": ApiError(409, "Conflict", "the object has been modified"),
                              "gone": ApiError(404, "NotFound", "not found")})
    informers = SharedInformers(Bus("nats://127.0.0.1:1", "unused"), client)  # type: ignore[arg-type]
    c = NodeLifecycleController(ControllerContext(client, informers))  # type: ignore[arg-type]
    events = _Events()
    c.recorder = events  # type: ignore[assignment]
    for name, ready, rv in (("ready", "True", "7"), ("changed", "True", "8"), ("gone", "Unknown", "9"),
                            ("already", "False", "10"), ("no-condition", None, "11")):
        pod = _cached_pod(name, ready, rv)
        c.pods._put(f"ns/{name}", c.pods._transformed(pod))
    assert "env" not in c.pods.get("ns/ready")["spec"]["containers"][0], "the cache holds stripped pods"  # type: ignore[index]

    assert await c._mark_pods_not_ready("n1") is False, "a conflict retries the node on the next pass"
    by_name = {name: (body, patch_type, sub) for _, name, body, patch_type, sub in client.patches}
    assert sorted(by_name) == ["changed", "gone", "ready"], "pods already not ready, or without Ready, are skipped"
    body, patch_type, sub = by_name["ready"]
    assert (patch_type, sub) == ("strategic", "status")
    assert body["metadata"] == {"resourceVersion": "7"}
    [cond] = body["status"]["conditions"]
    assert set(body["status"]) == {"conditions"} and set(body) == {"metadata", "status"}
    assert cond["type"] == "Ready" and cond["status"] == "False" and cond["lastTransitionTime"]
    assert events.recorded == [("ready", "NodeNotReady")]

    del client.errors["changed"]
    client.patches.clear()
    assert await c._mark_pods_not_ready("n1") is True, "a missing pod (404) is not a failure"
