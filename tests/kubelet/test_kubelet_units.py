"""The kubelet's pure pieces, without servers: expansion, back-off, phase, resources, status."""

from __future__ import annotations

from typing import Any

import pytest

from services.kubelet.backoff import Backoff
from services.kubelet.containerspec import build_config, milli_cpu_to_shares, spec_hash
from services.kubelet.env import ConfigError, expand, make_env, mapping_for, resource_value
from services.kubelet.podstatus import StatusInputs, generate, get_phase
from services.kubelet.podsync import go_duration
from services.kubelet.runtime_types import ContainerKind, ContainerState, ContainerStatus


@pytest.mark.parametrize(("text", "want"), [
    ("$(A)", "a"), ("x$(A)y$(B)", "xayb"), ("$(MISSING)", "$(MISSING)"), ("$$(A)", "$(A)"), ("$$$(A)", "$a"),
    ("$(A", "$(A"), ("$A", "$A"), ("a$", "a$"), ("$()", ""), ("$(A)$(A)", "aa"),
])
def test_expansion_matches_kubernetes(text: str, want: str) -> None:
    assert expand(text, mapping_for({"A": "a", "B": "b", "": ""})) == want


class _NoObjects:
    async def configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {"data": {"k": "v", "bad=name": "x"}} if name == "cm" else None

    async def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None


async def test_env_order_prefix_expansion_and_optional() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "annotations": {"a": "1"}}, "spec": {"nodeName": "n"}}
    c = {"envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "P_"}],
         "env": [{"name": "X", "value": "$(P_k)-$(Y)"}, {"name": "Y", "value": "y"},
                 {"name": "ANN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['a']"}}},
                 {"name": "S", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}}]}
    env = await make_env(pod, c, _NoObjects(), pod_ips=["1.2.3.4"], host_ips=["127.0.0.1"], allocatable={})
    assert env == [("P_k", "v"), ("X", "v-$(Y)"), ("Y", "y"), ("ANN", "1")]
    with pytest.raises(ConfigError, match='secret "absent" not found'):
        await make_env(pod, {"env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]},
                       _NoObjects(), pod_ips=[], host_ips=[], allocatable={})


def test_resource_field_refs_round_up_and_default_to_allocatable() -> None:
    c = {"resources": {"limits": {"cpu": "250m", "memory": "100Mi"}, "requests": {"cpu": "100m"}}}
    assert resource_value(c, {"resource": "limits.cpu"}, {}) == "1"
    assert resource_value(c, {"resource": "limits.cpu", "divisor": "1m"}, {}) == "250"
    assert resource_value(c, {"resource": "requests.cpu", "divisor": "1m"}, {}) == "100"
    assert resource_value(c, {"resource": "limits.memory", "divisor": "1Mi"}, {}) == "100"
    assert resource_value({}, {"resource": "limits.memory"}, {"memory": "1Gi"}) == str(1 << 30)


def test_backoff_doubles_caps_and_resets() -> None:
    now = [1000.0]
    b = Backoff(10, 40, clock=lambda: now[0])
    assert not b.in_backoff_since("k", now[0])  # the first failure restarts at once
    b.next("k", now[0])
    assert b.in_backoff_since("k", now[0]) and b.get("k") == 10
    now[0] += 11
    assert not b.in_backoff_since("k", now[0] - 11)
    for want in (20, 40, 40):
        b.next("k", now[0])
        assert b.get("k") == want
    now[0] += 81  # quiet for more than twice the cap: start over
    b.next("k", now[0])
    assert b.get("k") == 10


def test_go_durations() -> None:
    assert [go_duration(s) for s in (0.5, 10, 20, 80, 160, 300)] == ["500ms", "10s", "20s", "1m20s", "2m40s", "5m0s"]


def test_cpu_shares_and_limits() -> None:
    assert milli_cpu_to_shares(0) == 2 and milli_cpu_to_shares(1000) == 1024 and milli_cpu_to_shares(1) == 2
    pod = {"spec": {"terminationGracePeriodSeconds": 7, "securityContext": {"runAsUser": 1000, "fsGroup": 5}}}
    c = {"name": "c", "image": "i", "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
         "securityContext": {"runAsGroup": 3, "capabilities": {"drop": ["ALL"], "add": ["CAP_NET_RAW"]}}}
    cfg = build_config(pod, c, env=[], command=[], args=[], mounts=[], restart_count=2)
    assert cfg.nano_cpus == 1_500_000_000 and cfg.cpu_shares == 1536 and cfg.memory_limit == 1 << 30
    assert (cfg.run_as_user, cfg.run_as_group, list(cfg.supplemental_groups)) == (1000, 3, [5])
    assert list(cfg.cap_add) == ["NET_RAW"] and list(cfg.cap_drop) == ["ALL"]
    assert cfg.termination_grace_seconds == 7 and cfg.restart_count == 2 and cfg.spec_hash == spec_hash(c)
    with pytest.raises(ConfigError):
        build_config({"spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 0}}}, c, env=[], command=[],
                     args=[], mounts=[], restart_count=0)


def _cs(name: str, state: ContainerState, exit_code: int | None = None, restarts: int = 0) -> ContainerStatus:
    return ContainerStatus(id=f"id-{name}-{restarts}", name=f"k8s_{name}_p_ns_u_{restarts}", kind=ContainerKind.CONTAINER,
                           pod_uid="u", pod_name="p", pod_namespace="ns", container_name=name, attempt=restarts,
                           state=state, exit_code=exit_code, started_at="2026-01-01T00:00:00Z",
                           finished_at="2026-01-01T00:00:01Z" if state is ContainerState.EXITED else None,
                           image="img", image_id="sha256:abc",
                           labels={"io.kubernetes.container.restartCount": str(restarts)})


@pytest.mark.parametrize(("policy", "states", "want"), [
    ("Always", [("a", ContainerState.RUNNING, None)], "Running"),
    ("Always", [("a", ContainerState.EXITED, 1)], "Running"),
    ("OnFailure", [("a", ContainerState.EXITED, 0)], "Succeeded"),
    ("OnFailure", [("a", ContainerState.EXITED, 1)], "Running"),
    ("Never", [("a", ContainerState.EXITED, 0), ("b", ContainerState.EXITED, 2)], "Failed"),
    ("Never", [("a", ContainerState.EXITED, 0), ("b", ContainerState.RUNNING, None)], "Running"),
    ("Never", [("a", ContainerState.EXITED, 0)], "Pending"),  # b never started
])
def test_phase(policy: str, states: list[tuple[str, ContainerState, int | None]], want: str) -> None:
    pod = {"metadata": {"uid": "u"}, "spec": {"restartPolicy": policy, "containers": [
        {"name": "a", "image": "img"}, {"name": "b", "image": "img"}]}}
    if len(states) == 1 and want != "Pending":
        pod["spec"]["containers"] = [{"name": "a", "image": "img"}]
    status = generate(StatusInputs(pod=pod, containers=[_cs(n, s, e) for n, s, e in states], sandbox=None), None)
    assert status["phase"] == want
    assert get_phase(pod, [], status["containerStatuses"], False) == want


def test_status_keeps_transition_times_and_reports_last_state() -> None:
    pod = {"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "a", "image": "img"}]}}
    first = generate(StatusInputs(pod=pod, containers=[_cs("a", ContainerState.RUNNING)], sandbox=None), None)
    old = {**first, "conditions": [{**c, "lastTransitionTime": "2000-01-01T00:00:00Z"} for c in first["conditions"]]}
    again = generate(StatusInputs(pod=pod, containers=[_cs("a", ContainerState.RUNNING)], sandbox=None), old)
    assert all(c["lastTransitionTime"] == "2000-01-01T00:00:00Z" for c in again["conditions"])
    restarted = [_cs("a", ContainerState.RUNNING, restarts=1), _cs("a", ContainerState.EXITED, 137)]
    st = generate(StatusInputs(pod=pod, containers=restarted, sandbox=None), again)["containerStatuses"][0]
    assert st["restartCount"] == 1 and st["lastState"]["terminated"]["exitCode"] == 137
    assert st["lastState"]["terminated"]["reason"] == "Error" and st["containerID"] == "docker://id-a-1"
    crash = generate(StatusInputs(pod=pod, containers=[_cs("a", ContainerState.EXITED, 1)], sandbox=None,
                                  reasons={"a": ("CrashLoopBackOff", "back-off 10s")}), again)
    cs = crash["containerStatuses"][0]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    assert cs["lastState"]["terminated"]["exitCode"] == 1 and crash["phase"] == "Running"
