"""The Deployment controller (with the ReplicaSet controller and the fake kubelet) end to end.

A rolling update with maxUnavailable=0 never drops ready pods below spec.replicas (sampled all
through the rollout) and ends as `kubectl rollout status` wants it; undo revives the old
ReplicaSet; Recreate never lets old and new pods coexist; pause/resume, restart, the progress
deadline, revision history cleanup and adoption of an orphaned ReplicaSet."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.controllers.deployment_util import HASH_LABEL, REVISION, REVISION_HISTORY
from services.controllers.main import ControllerManager
from shared.client import ApiClient
from tests.controllers.conftest import (
    DEPLOY,
    PODS,
    RS,
    deployment,
    eventually,
    is_ready,
    owner_uid,
    replicaset,
)
from tests.controllers.fake_kubelet import FakeKubelet
from tests.servers import Cluster

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def rollout_complete(d: dict[str, Any]) -> bool:
    """kubectl's DeploymentStatusViewer: done when all of these hold."""
    st = d.get("status") or {}
    replicas = d["spec"]["replicas"]
    return bool(d["metadata"]["generation"] <= st.get("observedGeneration", 0)
            and st.get("updatedReplicas", 0) >= replicas
            and st.get("replicas", 0) <= st.get("updatedReplicas", 0)
            and st.get("availableReplicas", 0) >= st.get("updatedReplicas", 0))


async def wait_complete(client: ApiClient, ns: str, name: str, timeout: float = 30) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        d = await client.get(DEPLOY, ns, name)
        return d if rollout_complete(d) and d["status"].get("replicas") == d["spec"]["replicas"] else None
    result: dict[str, Any] = await eventually(check, f"deployment {name} rolled out", timeout)
    return result


async def replica_sets(client: ApiClient, ns: str, d: dict[str, Any]) -> list[dict[str, Any]]:
    return [rs for rs in (await client.list(RS, ns))["items"] if owner_uid(rs) == d["metadata"]["uid"]]


async def pods(client: ApiClient, ns: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.list(PODS, ns, label_selector=f"app={app}"))["items"]
    return items


def condition(d: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in (d.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


class Sampler:
    """Lists pods as fast as it can and keeps what the test asserts on."""

    def __init__(self, client: ApiClient, ns: str, app: str) -> None:
        self.client, self.ns, self.app = client, ns, app
        self.min_ready = 1 << 30
        self.max_total = 0
        self.max_active = 0  # pods not being deleted
        self.samples = 0
        self.mixed: list[set[str]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            items = await pods(self.client, self.ns, self.app)
            serving = [p for p in items if is_ready(p) and not p["metadata"].get("deletionTimestamp")]
            self.min_ready = min(self.min_ready, len(serving))
            self.max_total = max(self.max_total, len(items))
            self.max_active = max(self.max_active, sum(1 for p in items if not p["metadata"].get("deletionTimestamp")))
            hashes = {p["metadata"]["labels"].get(HASH_LABEL, "") for p in items}
            if len(hashes) > 1:
                self.mixed.append(hashes)
            self.samples += 1
            await asyncio.sleep(0.005)


@pytest.fixture
def kubeconfig(cluster: Cluster) -> Iterator[Path | None]:
    path = cluster.kubeconfig()
    ok = False
    if os.path.exists(KUBECTL):
        try:
            r = subprocess.run([KUBECTL, "--kubeconfig", str(path), "get", "namespaces", "-o", "name"],
                               capture_output=True, timeout=20)
            ok = r.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
    yield path if ok else None


async def kubectl(kubeconfig: Path, *args: str, timeout: float = 90) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(KUBECTL, "--kubeconfig", str(kubeconfig), *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_rolling_update_keeps_ready_replicas(manager: ControllerManager, client: ApiClient, ns: str,
                                                    kubelet: FakeKubelet, kubeconfig: Path | None) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    await client.create(DEPLOY, ns, deployment("web", 4, strategy=strategy))
    first = await wait_complete(client, ns, "web")
    assert first["metadata"]["annotations"][REVISION] == "1"
    assert condition(first, "Available")["reason"] == "MinimumReplicasAvailable"
    (old_rs,) = await replica_sets(client, ns, first)
    assert old_rs["metadata"]["name"] == f"web-{old_rs['metadata']['labels'][HASH_LABEL]}"
    assert old_rs["spec"]["selector"]["matchLabels"][HASH_LABEL] == old_rs["metadata"]["labels"][HASH_LABEL]

    async with Sampler(client, ns, "web") as sampler:
        await client.patch(DEPLOY, ns, "web", {"spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": "busybox:1.36"}]}}}}, patch_type="strategic")
        status_proc = kubectl(kubeconfig, "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s") \
            if kubeconfig else None
        done = await wait_complete(client, ns, "web")
        if status_proc is not None:
            code, out = await status_proc
            assert code == 0, out
            assert "successfully rolled out" in out
    assert sampler.samples > 10
    assert sampler.min_ready >= 4, f"ready pods dropped to {sampler.min_ready}"
    assert sampler.max_active <= 4 + 1, f"{sampler.max_active} pods beyond replicas + maxSurge"
    assert done["metadata"]["annotations"][REVISION] == "2"
    assert condition(done, "Progressing")["reason"] == "NewReplicaSetAvailable"
    rss = {rs["metadata"]["name"]: rs for rs in await replica_sets(client, ns, done)}
    assert rss[old_rs["metadata"]["name"]]["spec"]["replicas"] == 0
    assert rss[old_rs["metadata"]["name"]]["status"]["replicas"] == 0
    (new_name,) = set(rss) - {old_rs["metadata"]["name"]}
    assert rss[new_name]["spec"]["replicas"] == 4
    assert rss[new_name]["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "4"
    assert rss[new_name]["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "5"
    for p in await pods(client, ns, "web"):
        assert p["spec"]["containers"][0]["image"] == "busybox:1.36"

    async def scaling_events() -> list[str]:
        items = (await client.request("GET", f"/api/v1/namespaces/{ns}/events"))["items"]
        return [e["message"] for e in items if e["reason"] == "ScalingReplicaSet"]
    messages = await eventually(scaling_events, "ScalingReplicaSet events")
    assert any(m.startswith(f"Scaled up replica set {new_name} to 1") for m in messages)
    await eventually(lambda: _contains(scaling_events, f"Scaled down replica set {old_rs['metadata']['name']} to 0 from 1"),
                     "scale-down event")


async def _contains(get: Any, text: str) -> bool:
    return any(text in m for m in await get())


async def test_undo_reuses_the_old_replica_set(manager: ControllerManager, client: ApiClient, ns: str,
                                               kubelet: FakeKubelet, kubeconfig: Path | None) -> None:
    await client.create(DEPLOY, ns, deployment("app", 2, image="busybox:1.35"))
    v1 = await wait_complete(client, ns, "app")
    (rs1,) = await replica_sets(client, ns, v1)
    await client.patch(DEPLOY, ns, "app", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "busybox:1.36"}]}}}}, patch_type="strategic")
    v2 = await wait_complete(client, ns, "app")
    assert v2["metadata"]["annotations"][REVISION] == "2"
    if kubeconfig is not None:
        code, out = await kubectl(kubeconfig, "-n", ns, "rollout", "undo", "deployment/app")
        assert code == 0, out
    else:  # what kubectl sends: the old ReplicaSet's template without the hash label
        template = rs1["spec"]["template"]
        template["metadata"]["labels"].pop(HASH_LABEL)
        await client.patch(DEPLOY, ns, "app", [{"op": "replace", "path": "/spec/template", "value": template}],
                           patch_type="json")
    v3 = await wait_complete(client, ns, "app")
    assert v3["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.35"
    rss = {rs["metadata"]["name"]: rs for rs in await replica_sets(client, ns, v3)}
    assert len(rss) == 2, f"undo created a new replica set: {sorted(rss)}"
    revived = rss[rs1["metadata"]["name"]]
    assert revived["spec"]["replicas"] == 2
    assert revived["metadata"]["annotations"][REVISION] == "3"
    assert revived["metadata"]["annotations"][REVISION_HISTORY] == "1"
    assert v3["metadata"]["annotations"][REVISION] == "3"
    assert {p["spec"]["containers"][0]["image"] for p in await pods(client, ns, "app")} == {"busybox:1.35"}


async def test_recreate_stops_old_pods_before_new_ones_exist(manager: ControllerManager, client: ApiClient, ns: str,
                                                             kubelet: FakeKubelet) -> None:
    await client.create(DEPLOY, ns, deployment("re", 3, strategy={"type": "Recreate"}))
    await wait_complete(client, ns, "re")
    async with Sampler(client, ns, "re") as sampler:
        await client.patch(DEPLOY, ns, "re", {"spec": {"template": {"metadata": {"labels": {"app": "re", "v": "2"}}}}},
                           patch_type="strategic")
        done = await wait_complete(client, ns, "re")
    assert sampler.mixed == [], f"old and new pods coexisted: {sampler.mixed[:3]}"
    assert sampler.samples > 5
    assert all(p["metadata"]["labels"].get("v") == "2" for p in await pods(client, ns, "re"))
    assert len(await replica_sets(client, ns, done)) == 2


async def test_pause_scales_but_does_not_roll_out(manager: ControllerManager, client: ApiClient, ns: str,
                                                  kubelet: FakeKubelet) -> None:
    await client.create(DEPLOY, ns, deployment("p", 2))
    d = await wait_complete(client, ns, "p")
    await client.patch(DEPLOY, ns, "p", {"spec": {"paused": True}})

    async def paused() -> bool:
        return condition(await client.get(DEPLOY, ns, "p"), "Progressing").get("reason") == "DeploymentPaused"
    await eventually(paused, "Progressing=Unknown DeploymentPaused")
    await client.patch(DEPLOY, ns, "p", {"spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "p", "v": "2"}}}}},
                       patch_type="strategic")

    async def scaled() -> bool:
        rss = await replica_sets(client, ns, d)
        return len(rss) == 1 and rss[0]["status"].get("readyReplicas") == 3
    await eventually(scaled, "the paused deployment's replica set scaled to 3")
    await asyncio.sleep(0.5)
    assert len(await replica_sets(client, ns, d)) == 1, "a paused deployment rolled out"
    await client.patch(DEPLOY, ns, "p", {"spec": {"paused": False}})
    done = await wait_complete(client, ns, "p")
    assert all(p["metadata"]["labels"].get("v") == "2" for p in await pods(client, ns, "p")
               if not p["metadata"].get("deletionTimestamp"))
    assert done["metadata"]["annotations"][REVISION] == "2"


async def test_rollout_restart_replaces_every_pod(manager: ControllerManager, client: ApiClient, ns: str,
                                                  kubelet: FakeKubelet) -> None:
    await client.create(DEPLOY, ns, deployment("rs", 2))
    await wait_complete(client, ns, "rs")
    before = {p["metadata"]["name"] for p in await pods(client, ns, "rs")}
    restarted = {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}
    await client.patch(DEPLOY, ns, "rs", {"spec": {"template": {"metadata": {"annotations": restarted}}}},
                       patch_type="strategic")
    await eventually(lambda: _all_new(client, ns, before), "every pod replaced")
    await wait_complete(client, ns, "rs")


async def _all_new(client: ApiClient, ns: str, before: set[str]) -> bool:
    current = [p for p in await pods(client, ns, "rs") if not p["metadata"].get("deletionTimestamp")]
    return len(current) == 2 and not ({p["metadata"]["name"] for p in current} & before)


async def test_progress_deadline_exceeded(manager: ControllerManager, client: ApiClient, ns: str) -> None:
    # no kubelet: the pods never become ready
    await client.create(DEPLOY, ns, deployment("slow", 2, progressDeadlineSeconds=1))

    async def timed_out() -> dict[str, Any] | None:
        d = await client.get(DEPLOY, ns, "slow")
        c = condition(d, "Progressing")
        return d if c.get("reason") == "ProgressDeadlineExceeded" and c.get("status") == "False" else None
    d = await eventually(timed_out, "ProgressDeadlineExceeded", timeout=10)
    assert condition(d, "Available")["status"] == "False"
    assert condition(d, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert d["status"]["unavailableReplicas"] == 2


async def test_revision_history_limit_deletes_old_replica_sets(manager: ControllerManager, client: ApiClient, ns: str,
                                                               kubelet: FakeKubelet) -> None:
    await client.create(DEPLOY, ns, deployment("h", 1, revisionHistoryLimit=1))
    d = await wait_complete(client, ns, "h")
    for version in ("2", "3", "4"):
        await client.patch(DEPLOY, ns, "h", {"spec": {"template": {"metadata": {"labels": {"app": "h", "v": version}}}}},
                           patch_type="strategic")
        d = await wait_complete(client, ns, "h")

    async def two_left() -> list[dict[str, Any]] | None:
        rss = await replica_sets(client, ns, d)
        return rss if len(rss) == 2 else None
    rss = await eventually(two_left, "only the current and one old replica set")
    assert sorted(rs["metadata"]["annotations"][REVISION] for rs in rss) == ["3", "4"]


async def test_orphaned_replica_set_is_adopted_and_scaled_down(manager: ControllerManager, client: ApiClient, ns: str,
                                                                kubelet: FakeKubelet) -> None:
    legacy = replicaset("legacy", 2, labels={"app": "adopt"})
    legacy["metadata"]["labels"] = {"app": "adopt"}  # a ReplicaSet is claimed by its own labels
    legacy["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.30"
    await client.create(RS, ns, legacy)
    await eventually(lambda: _ready(client, ns, "legacy", 2), "legacy replica set ready")
    await client.create(DEPLOY, ns, deployment("adopt", 2))
    d = await wait_complete(client, ns, "adopt")
    rs = await client.get(RS, ns, "legacy")
    assert owner_uid(rs) == d["metadata"]["uid"]
    assert rs["spec"]["replicas"] == 0


async def _ready(client: ApiClient, ns: str, name: str, n: int) -> bool:
    return bool((await client.get(RS, ns, name)).get("status", {}).get("readyReplicas") == n)
