"""The kubelet against a real API server and a real Docker engine: pods, status, restarts, deletion.

One kubelet process (its own node name) serves this module; each test uses its own namespace.
The containers are made from the local test images (no registry); the one unpullable image lives
on a closed loopback port, so its pull fails at once without touching any network.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.kubelet.images import BUSYBOX_IMAGE, ensure_test_images
from tests.kubelet.test_kubelet_helpers import (
    SERVE,
    SLEEP,
    UNPULLABLE,
    KubeletProc,
    condition,
    container,
    container_names,
    create_pod,
    cstatus,
    docker,
    get_pod,
    inspect,
    node_containers,
    phase,
    pod_events,
    pod_manifest,
    remove_node_containers,
    running_and_ready,
    unique_node,
    wait_for,
    wait_pod,
    waiting_reasons,
)
from tests.servers import Cluster


@pytest.fixture(scope="module")
def kubelet(cluster: Cluster) -> Iterator[KubeletProc]:
    ensure_test_images()
    node = unique_node("kt")
    k = KubeletProc(node, cluster.component_args("kubelet", node), cluster.nats.url, cluster.workdir).start()
    try:
        yield k
    finally:
        k.stop()
        remove_node_containers(node)


async def test_two_container_pod_shares_one_ip(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc,
                                              cluster: Cluster) -> None:
    node = kubelet.node
    pod = pod_manifest("web", node, [container("server", SERVE, ports=[{"containerPort": 80}]),
                                     container("sidecar", SLEEP)])
    created = await create_pod(api, ns, pod)
    uid = created["metadata"]["uid"]
    got = await wait_pod(api, ns, "web", lambda p: running_and_ready(p) and len(cstatus(p, "sidecar")) > 0, 30,
                         "Running and Ready", kubelet)
    st = got["status"]
    ip = st["podIP"]
    assert st["podIPs"] == [{"ip": ip}] and ip.startswith("172.")
    assert st["hostIP"] and st["hostIPs"] == [{"ip": st["hostIP"]}]
    assert st["startTime"] and st["qosClass"] == "BestEffort"
    assert [c["type"] for c in st["conditions"]] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    assert all(c["status"] == "True" and c["lastTransitionTime"] for c in st["conditions"])
    assert [c["name"] for c in st["containerStatuses"]] == ["server", "sidecar"]
    for cs in st["containerStatuses"]:
        assert cs["ready"] is True and cs["started"] is True and cs["restartCount"] == 0
        assert cs["image"] == BUSYBOX_IMAGE and cs["imageID"].startswith("docker://sha256:")
        assert cs["containerID"].startswith("docker://") and cs["state"]["running"]["startedAt"]
        assert cs["lastState"] == {}

    # the sandbox and both containers, named as dockershim did
    names = [n for n in container_names(node) if uid in n]
    assert sorted(n.split("_")[1] for n in names) == ["POD", "server", "sidecar"], names
    assert all(n.startswith("k8s_") and n.endswith(f"_web_{ns}_{uid}_0") for n in names)

    # one network namespace: the sidecar reaches the server on localhost; the host reaches the pod IP
    sidecar = cstatus(got, "sidecar")["containerID"].removeprefix("docker://")
    assert "kubenats busybox test page" in docker("exec", sidecar, "wget", "-qO-", "http://127.0.0.1:80/")
    async with httpx.AsyncClient(trust_env=False, timeout=5) as direct:
        r = await direct.get(f"http://{ip}/")
    assert r.status_code == 200 and "kubenats busybox test page" in r.text

    # the official client deserialises the pod (its models require image, imageID, name, ready, restartCount)
    from kubernetes import client as k8s

    def read() -> Any:
        with k8s.ApiClient(cluster.python_client_config()) as c:
            return k8s.CoreV1Api(c).read_namespaced_pod("web", ns)

    typed = await asyncio.to_thread(read)
    assert typed.status.phase == "Running" and typed.status.container_statuses[0].ready is True

    reasons = [e["reason"] for e in await pod_events(api, ns, "web")]
    for reason in ("Pulled", "Created", "Started"):
        assert reason in reasons, reasons

    # the status is written only when it changes: a steady pod keeps its resourceVersion
    rv = got["metadata"]["resourceVersion"]
    await asyncio.sleep(2.5)
    again = await get_pod(api, ns, "web")
    assert again is not None and again["metadata"]["resourceVersion"] == rv


async def test_restart_policies(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc) -> None:
    node = kubelet.node
    cases = {
        "never-ok": ("Never", "exit 0"), "never-fail": ("Never", "exit 3"),
        "onfailure-ok": ("OnFailure", "sleep 0.5; exit 0"), "onfailure-fail": ("OnFailure", "sleep 0.5; exit 1"),
        "always": ("Always", "sleep 0.5; exit 0"),
    }
    for name, (policy, script) in cases.items():
        await create_pod(api, ns, pod_manifest(name, node, [container("main", script)], restartPolicy=policy))

    ok = await wait_pod(api, ns, "never-ok", lambda p: phase(p) == "Succeeded", 30, "Succeeded", kubelet)
    term = cstatus(ok, "main")["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed" and term["containerID"].startswith("docker://")
    assert term["startedAt"] and term["finishedAt"]
    assert condition(ok, "Ready") == "False" and condition(ok, "PodReadyToStartContainers") == "False"

    bad = await wait_pod(api, ns, "never-fail", lambda p: phase(p) == "Failed", 30, "Failed", kubelet)
    term = cstatus(bad, "main")["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error" and cstatus(bad, "main")["restartCount"] == 0

    await wait_pod(api, ns, "onfailure-ok", lambda p: phase(p) == "Succeeded", 30, "Succeeded", kubelet)
    fail = await wait_pod(api, ns, "onfailure-fail", lambda p: cstatus(p, "main").get("restartCount", 0) >= 2,
                          30, "restarted twice", kubelet)
    assert phase(fail) == "Running"
    always = await wait_pod(api, ns, "always", lambda p: cstatus(p, "main").get("restartCount", 0) >= 2, 30,
                            "restarted twice", kubelet)
    assert phase(always) == "Running"
    last = cstatus(always, "main")["lastState"]["terminated"]
    assert last["exitCode"] == 0 and last["reason"] == "Completed"

    # finished pods keep their exited containers (for logs) but no running sandbox
    uid = ok["metadata"]["uid"]
    assert node_containers(node, f"io.kubernetes.pod.uid={uid}", all=True)
    assert not node_containers(node, f"io.kubernetes.pod.uid={uid}", all=False)


async def test_crash_loop_backoff_grows(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc) -> None:
    """Back-off base 0.5 s (flag): restarts come after ~0, 0.5, 1, 2 s, and CrashLoopBackOff shows."""
    await create_pod(api, ns, pod_manifest("crash", kubelet.node, [container("main", "echo boom; exit 1")]))
    seen: list[tuple[float, int]] = []
    reasons: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pod = await get_pod(api, ns, "crash")
        cs = cstatus(pod or {}, "main")
        count = int(cs.get("restartCount", 0))
        if not seen or count != seen[-1][1]:
            seen.append((time.monotonic(), count))
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            reasons.add(waiting["reason"])
            if waiting["reason"] == "CrashLoopBackOff":
                assert "restarting failed container=main pod=crash_" in waiting.get("message", "")
                assert cs["lastState"]["terminated"]["exitCode"] == 1
        if count >= 4:
            break
        await asyncio.sleep(0.05)
    counts = [c for _, c in seen]
    assert counts[-1] >= 4, (seen, kubelet.tail())
    assert "CrashLoopBackOff" in reasons, reasons
    times = {c: t for t, c in seen}
    gaps = [times[i + 1] - times[i] for i in range(1, 4) if i in times and i + 1 in times]
    assert len(gaps) >= 2, seen
    # each back-off doubles (0.5, 1, 2 s); PLEG and polling add a little
    for gap, minimum in zip(gaps, (0.5, 1.0, 2.0), strict=False):
        assert gap >= minimum - 0.15, (gaps, seen)
    assert gaps[-1] > gaps[0], gaps
    events = await pod_events(api, ns, "crash")
    assert any(e["reason"] == "BackOff" and "Back-off restarting failed container main" in e["message"] for e in events)


async def test_liveness_failure_restarts_container(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc) -> None:
    script = "touch /tmp/healthy; trap 'exit 0' TERM; sleep 2; rm -f /tmp/healthy; while :; do sleep 3600 & wait; done"
    probe = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 1}
    await create_pod(api, ns, pod_manifest("live", kubelet.node, [container("main", script, livenessProbe=probe)]))
    pod = await wait_pod(api, ns, "live", lambda p: cstatus(p, "main").get("restartCount", 0) >= 1, 30,
                         "restarted by its liveness probe", kubelet)
    assert cstatus(pod, "main")["lastState"]["terminated"]["exitCode"] == 0  # it took SIGTERM
    events = await pod_events(api, ns, "live")
    unhealthy = [e for e in events if e["reason"] == "Unhealthy"]
    killing = [e for e in events if e["reason"] == "Killing"]
    assert unhealthy and "Liveness probe failed" in unhealthy[0]["message"], events
    assert killing and "failed liveness probe, will be restarted" in killing[0]["message"], events
    assert unhealthy[0]["firstTimestamp"] <= killing[0]["firstTimestamp"]
    await wait_pod(api, ns, "live", running_and_ready, 15, "Running again", kubelet)


async def test_readiness_toggles_ready(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc) -> None:
    probe = {"httpGet": {"path": "/ready.html", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
    tcp = {"tcpSocket": {"port": 80}, "periodSeconds": 1}
    c = container("web", SERVE, ports=[{"name": "http", "containerPort": 80}], readinessProbe=probe)
    await create_pod(api, ns, pod_manifest("ready", kubelet.node, [c, container("tcp", SLEEP, readinessProbe=tcp)]))
    pod = await wait_pod(api, ns, "ready", lambda p: phase(p) == "Running" and bool(cstatus(p, "tcp").get("ready")), 30,
                         "Running, tcp probe ready", kubelet)
    assert condition(pod, "Ready") == "False" and cstatus(pod, "web")["ready"] is False
    ready_cond = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready_cond["reason"] == "ContainersNotReady" and ready_cond["message"] == "containers with unready status: [web]"
    cid = cstatus(pod, "web")["containerID"].removeprefix("docker://")
    docker("exec", cid, "sh", "-c", "echo ok > /www/ready.html")
    pod = await wait_pod(api, ns, "ready", lambda p: condition(p, "Ready") == "True", 10, "Ready", kubelet)
    assert cstatus(pod, "web")["ready"] is True and condition(pod, "ContainersReady") == "True"
    docker("exec", cid, "rm", "/www/ready.html")
    pod = await wait_pod(api, ns, "ready", lambda p: condition(p, "Ready") == "False", 10, "not Ready", kubelet)
    assert cstatus(pod, "web")["ready"] is False and cstatus(pod, "web")["restartCount"] == 0


async def test_missing_image_err_image_pull_then_backoff(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc) -> None:
    await create_pod(api, ns, pod_manifest("noimage", kubelet.node, [container("main", image=UNPULLABLE)]))

    def both(reasons: list[str]) -> bool:
        return "ErrImagePull" in reasons and "ImagePullBackOff" in reasons[reasons.index("ErrImagePull"):]

    reasons = await waiting_reasons(api, ns, "noimage", "main", both, 20)
    assert both(reasons), (reasons, kubelet.tail())
    pod = await get_pod(api, ns, "noimage")
    assert pod is not None and phase(pod) == "Pending" and condition(pod, "Ready") == "False"
    assert cstatus(pod, "main")["image"] == UNPULLABLE and cstatus(pod, "main")["imageID"] == ""
    events = await pod_events(api, ns, "noimage")
    messages = [(e["reason"], e["message"]) for e in events]
    assert ("Failed", "Error: ErrImagePull") in messages, messages
    assert any(r == "Failed" and m.startswith(f'Failed to pull image "{UNPULLABLE}"') for r, m in messages), messages
    assert ("BackOff", f'Back-off pulling image "{UNPULLABLE}"') in messages, messages


async def test_env_volumes_resources_security(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc) -> None:
    r = await api.post(f"/api/v1/namespaces/{ns}/configmaps",
                       json={"metadata": {"name": "cfg"}, "data": {"greeting": "hello", "color": "blue"}})
    assert r.status_code == 201, r.text
    secret = {"metadata": {"name": "sec"}, "data": {"password": base64.b64encode(b"s3cret").decode()}}
    assert (await api.post(f"/api/v1/namespaces/{ns}/secrets", json=secret)).status_code == 201
    script = ("echo ENV:$GREETING:$CFG_color:$PASSWORD:$POD_NAME:$POD_NS:$NODE:$POD_IP:$MEM:$COMPOSED:$LABEL:$OPT:; "
              "echo CMD:$0:$1; pwd; id -u; cat /etc/cm/greeting; echo; cat /etc/sec/pw; echo; "
              "cat /etc/info/labels; echo; cat /etc/info/name; echo; ls /scratch; echo x > /scratch/f && echo WROTE")
    c = {
        "name": "main", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script, "$(GREETING)-arg", "$$(GREETING)"],
        "workingDir": "/tmp",
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['test']"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "COMPOSED", "value": "$(GREETING)-$(POD_NAME)-$(UNDEFINED)"},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        ],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
        "securityContext": {"runAsUser": 65534, "capabilities": {"add": ["NET_ADMIN"]}},
        "volumeMounts": [{"name": "cm", "mountPath": "/etc/cm"}, {"name": "sec", "mountPath": "/etc/sec"},
                         {"name": "info", "mountPath": "/etc/info"}, {"name": "scratch", "mountPath": "/scratch"}],
    }
    volumes = [
        {"name": "cm", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "sec", "items": [{"key": "password", "path": "pw", "mode": 0o400}]}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                                   {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"name": "scratch", "emptyDir": {}},
    ]
    pod = pod_manifest("envpod", kubelet.node, [c], restartPolicy="Never", volumes=volumes,
                       securityContext={"fsGroup": 65534})
    await create_pod(api, ns, pod)
    done = await wait_pod(api, ns, "envpod", lambda p: phase(p) in ("Succeeded", "Failed"), 30, "finished", kubelet)
    cid = cstatus(done, "main")["state"]["terminated"]["containerID"].removeprefix("docker://")
    out = docker("logs", cid)
    ip = done["status"]["podIP"]
    assert f"ENV:hello:blue:s3cret:envpod:{ns}:{kubelet.node}:{ip}:64:hello-envpod-$(UNDEFINED):envpod::" in out, out
    assert "CMD:hello-arg:$(GREETING)" in out, out
    lines = out.splitlines()
    assert "/tmp" in lines and "65534" in lines and "hello" in lines and "s3cret" in lines, out
    assert 'test="envpod"' in lines and "envpod" in lines, out
    assert "WROTE" in lines, out  # the emptyDir is writable by the pod's user
    info = inspect(cid)
    assert info["HostConfig"]["NanoCpus"] == 500_000_000 and info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert info["HostConfig"]["CapAdd"] == ["NET_ADMIN"] and info["Config"]["User"] == "65534"

    # a missing, non-optional key: CreateContainerConfigError
    bad = container("main", env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}}])
    await create_pod(api, ns, pod_manifest("badenv", kubelet.node, [bad]))
    pod2 = await wait_pod(api, ns, "badenv", lambda p: ((cstatus(p, "main").get("state") or {}).get("waiting") or {})
                          .get("reason") == "CreateContainerConfigError", 20, "CreateContainerConfigError", kubelet)
    assert cstatus(pod2, "main")["state"]["waiting"]["message"] == f"couldn't find key nope in ConfigMap {ns}/cfg"


async def test_init_containers_run_in_order(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc) -> None:
    init = [container("first", "echo one > /work/log"), container("second", "echo two >> /work/log")]
    for c in init:
        c["volumeMounts"] = [{"name": "work", "mountPath": "/work"}]
    main = container("main", "cat /work/log; " + SLEEP, volumeMounts=[{"name": "work", "mountPath": "/work"}])
    await create_pod(api, ns, pod_manifest("init", kubelet.node, [main], initContainers=init,
                                           volumes=[{"name": "work", "emptyDir": {}}]))
    pod = await wait_pod(api, ns, "init", running_and_ready, 30, "Running", kubelet)
    for name in ("first", "second"):
        term = cstatus(pod, name, init=True)["state"]["terminated"]
        assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert condition(pod, "Initialized") == "True"
    cid = cstatus(pod, "main")["containerID"].removeprefix("docker://")
    assert docker("logs", cid).split() == ["one", "two"]


async def test_deleted_pod_is_gone_within_grace(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc) -> None:
    # `sleep` as PID 1 ignores SIGTERM: the kubelet must SIGKILL it when the grace period ends
    pod = pod_manifest("stubborn", kubelet.node, [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"]}],
                       terminationGracePeriodSeconds=3)
    created = await create_pod(api, ns, pod)
    uid = created["metadata"]["uid"]
    await wait_pod(api, ns, "stubborn", running_and_ready, 30, "Running", kubelet)
    t0 = time.monotonic()
    r = await api.delete(f"/api/v1/namespaces/{ns}/pods/stubborn")
    assert r.status_code == 200, r.text

    async def containers_gone() -> bool:
        return not node_containers(kubelet.node, f"io.kubernetes.pod.uid={uid}")

    await wait_for(containers_gone, 3 + 2, "containers removed within grace + 2 s", interval=0.1, kubelet=kubelet)
    elapsed = time.monotonic() - t0
    assert elapsed >= 2.5, f"SIGKILL came before the grace period ended ({elapsed:.1f}s)"

    async def object_gone() -> bool:
        return await get_pod(api, ns, "stubborn") is None

    await wait_for(object_gone, 5, "the pod object deleted", kubelet=kubelet)


async def test_docker_kill_restarts_container(api: httpx.AsyncClient, ns: str, kubelet: KubeletProc) -> None:
    await create_pod(api, ns, pod_manifest("victim", kubelet.node, [container("main")]))
    pod = await wait_pod(api, ns, "victim", running_and_ready, 30, "Running", kubelet)
    ip = pod["status"]["podIP"]
    first = cstatus(pod, "main")["containerID"].removeprefix("docker://")
    docker("kill", first)
    pod = await wait_pod(api, ns, "victim", lambda p: cstatus(p, "main").get("restartCount") == 1
                         and running_and_ready(p), 15, "restarted after docker kill", kubelet)
    cs = cstatus(pod, "main")
    assert cs["containerID"] != f"docker://{first}"
    assert cs["lastState"]["terminated"]["exitCode"] == 137 and cs["lastState"]["terminated"]["containerID"] == \
        f"docker://{first}"
    assert pod["status"]["podIP"] == ip  # same sandbox
