"""The prober on the hollow runtime (scripted exec results): startup gating and thresholds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.kubelet.hollow import HollowRuntime
from services.kubelet.probes import LIVENESS, READINESS, STARTUP, ProbeManager
from services.kubelet.runtime_types import ContainerConfig, ContainerStatus
from tests.kubelet.images import BUSYBOX_IMAGE, PAUSE_IMAGE


async def test_startup_gates_other_probes_and_thresholds_apply() -> None:
    results = {"startup": 1, "ready": 0, "live": 0}
    ran: list[str] = []

    def handler(c: ContainerStatus, cmd: Sequence[str]) -> tuple[int, bytes, bytes]:
        ran.append(cmd[0])
        return results[cmd[0]], b"", b"nope" if results[cmd[0]] else b""

    rt = HollowRuntime(node_name="probe-unit", images=[PAUSE_IMAGE, BUSYBOX_IMAGE], exec_handler=handler)
    sb = await rt.run_sandbox("uid-1", "p", "ns", 0, PAUSE_IMAGE)
    cid = await rt.create_container(sb.id, ContainerConfig(name="c", image=BUSYBOX_IMAGE))
    await rt.start_container(cid)
    status = await rt.inspect(cid)
    probe = {"periodSeconds": 1, "failureThreshold": 2}
    pod = {"metadata": {"uid": "uid-1"}, "spec": {"containers": [{
        "name": "c", "image": BUSYBOX_IMAGE,
        "startupProbe": {**probe, "failureThreshold": 30, "exec": {"command": ["startup"]}},
        "readinessProbe": {**probe, "exec": {"command": ["ready"]}},
        "livenessProbe": {**probe, "exec": {"command": ["live"]}}}]}}
    changes: list[str] = []
    events: list[tuple[str, ...]] = []
    pm = ProbeManager(rt, changes.append, lambda *a: events.append(a), network=False)
    try:
        pm.sync(pod, {"c": status}, sb.ip)
        await asyncio.sleep(1.5)
        assert set(ran) == {"startup"}  # liveness and readiness wait for the startup probe
        assert not pm.started(cid) and not pm.ready(cid) and not changes  # below the failure threshold
        assert events and all(e[4].startswith("Startup probe failed") for e in events)  # each failure is an Event
        results["startup"] = 0
        await asyncio.sleep(2.2)
        assert pm.started(cid) and pm.ready(cid) and not pm.failed(cid, LIVENESS)
        assert {"ready", "live"} <= set(ran) and changes
        results["live"] = 1  # two failures in a row (threshold 2) fail liveness
        await asyncio.sleep(2.5)
        assert pm.failed(cid, LIVENESS) and not pm.failed(cid, READINESS) and not pm.failed(cid, STARTUP)
        assert any(e[3] == "Unhealthy" and e[4].startswith("Liveness probe failed") for e in events), events
        # a new container instance starts over
        pm.remove_pod("uid-1")
        assert not pm.failed(cid, LIVENESS) and not pm.ready(cid)
    finally:
        await pm.close()
