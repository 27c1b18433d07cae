"""`kubenats events` prints one readable line per change, with what changed."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from services.events.main import parse_duration, subject_for, summarize
from tests.servers import ROOT, Cluster

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.mark.parametrize(("target", "subject"), [
    ("", "kube.events.>"),
    ("pods", "kube.events.core.pods.>"),
    ("po/default", "kube.events.core.pods.default.>"),
    ("deploy/web/api", "kube.events.apps.deployments.web.api"),
    ("nodes/n1", "kube.events.core.nodes._.n1"),
    ("leases/kube-node-lease/node.1", "kube.events.coordination_k8s_io.leases.kube-node-lease.node_1"),
])
def test_subjects(target: str, subject: str) -> None:
    assert subject_for(target) == subject


def test_bad_target_and_duration() -> None:
    with pytest.raises(ValueError, match="doesn't have a resource type"):
        subject_for("widgets")
    assert parse_duration("10m") == 600 and parse_duration("1.5s") == 1.5
    with pytest.raises(ValueError):
        parse_duration("ten minutes")


def test_summary_names_changed_fields() -> None:
    old = {"metadata": {"resourceVersion": "1"}, "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}}
    new = {"metadata": {"resourceVersion": "2"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert summarize(old, new) == "status.conditions[Ready].status False -> True; status.phase Pending -> Running"


def test_tail_and_replay(cluster: Cluster) -> None:
    api = httpx.Client(**cluster.admin_kwargs(), timeout=10)
    api.post("/api/v1/namespaces", json={"metadata": {"name": "evt"}})
    argv = [sys.executable, "-m", "services.cli", "events", "configmaps/evt", "--nats-url", cluster.nats.url,
            *cluster.component_args("events")]
    live = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        api.post("/api/v1/namespaces/evt/configmaps", json={"metadata": {"name": "c1"}, "data": {"k": "a"}})
        api.patch("/api/v1/namespaces/evt/configmaps/c1", json={"data": {"k": "b"}}, headers=MERGE)
        api.delete("/api/v1/namespaces/evt/configmaps/c1")
        time.sleep(1.0)
    finally:
        live.terminate()
        out, _ = live.communicate(timeout=10)
    lines = out.strip().splitlines()
    assert len(lines) == 3, out
    assert "ADDED" in lines[0] and "ConfigMap" in lines[0] and "evt/c1" in lines[0]
    assert "MODIFIED" in lines[1] and lines[1].endswith("data.k a -> b")
    assert "DELETED" in lines[2]
    # replay from JetStream, raw JSON
    replay = subprocess.Popen([*argv, "--since", "1m", "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    replay.terminate()
    out, _ = replay.communicate(timeout=10)
    raw = [line for line in out.splitlines() if line.startswith("{")]
    assert len(raw) == 3 and '"type":"DELETED"' in raw[2], out
