"""A kubelet SIGKILLed while its pods run, then restarted: it adopts, it does not recreate.

The restarted kubelet must rebuild its view from the containers' labels alone: no container is
recreated (same IDs), restart counts come from the labels, and since nothing changed it writes no
status at all (every pod keeps its resourceVersion). Containers of a pod deleted while the kubelet
was down are orphans and are removed; a container killed behind its back is restarted.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.kubelet.images import ensure_test_images
from tests.kubelet.test_kubelet_helpers import (
    SERVE,
    KubeletProc,
    container,
    create_pod,
    cstatus,
    docker,
    get_pod,
    node_containers,
    phase,
    pod_manifest,
    remove_node_containers,
    running_and_ready,
    unique_node,
    wait_for,
    wait_pod,
)
from tests.servers import Cluster


async def test_sigkill_and_restart_adopts_running_pods(cluster: Cluster, api: httpx.AsyncClient, ns: str) -> None:
    ensure_test_images()
    node = unique_node("kr")
    k = KubeletProc(node, cluster.component_args("kubelet", node), cluster.nats.url, cluster.workdir).start()
    try:
        probe = {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}
        await create_pod(api, ns, pod_manifest("pair", node, [container("web", SERVE, readinessProbe=probe),
                                                              container("side")]))
        await create_pod(api, ns, pod_manifest("bumped", node, [container("main")]))
        await create_pod(api, ns, pod_manifest("done", node, [container("main", "exit 0")], restartPolicy="OnFailure"))
        await create_pod(api, ns, pod_manifest("orphan", node, [container("main")]))
        for name in ("pair", "bumped", "orphan"):
            await wait_pod(api, ns, name, running_and_ready, 30, "Running", k)
        await wait_pod(api, ns, "done", lambda p: phase(p) == "Succeeded", 30, "Succeeded", k)
        bumped = await get_pod(api, ns, "bumped")
        assert bumped is not None
        docker("kill", cstatus(bumped, "main")["containerID"].removeprefix("docker://"))
        await wait_pod(api, ns, "bumped", lambda p: cstatus(p, "main").get("restartCount") == 1 and running_and_ready(p),
                       15, "restarted once", k)
        await asyncio.sleep(1.5)  # let the last status writes land

        before = {n: await get_pod(api, ns, n) for n in ("pair", "bumped", "done")}
        orphan = await get_pod(api, ns, "orphan")
        assert orphan is not None
        orphan_ids = set(node_containers(node, f"io.kubernetes.pod.uid={orphan['metadata']['uid']}"))
        ids_before = set(node_containers(node)) - orphan_ids
        running_before = set(node_containers(node, all=False)) - orphan_ids

        k.kill()
        # deleted for good while the kubelet is down: its containers become orphans
        r = await api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/orphan", json={"gracePeriodSeconds": 0})
        assert r.status_code == 200, r.text
        k.start()

        async def orphans_gone() -> bool:
            return not (orphan_ids & set(node_containers(node)))

        await wait_for(orphans_gone, 15, "the orphaned pod's containers removed", kubelet=k)
        await asyncio.sleep(2.0)  # several PLEG relists and pod syncs after the restart
        assert set(node_containers(node)) == ids_before, "a container was recreated or removed"
        assert set(node_containers(node, all=False)) == running_before
        for name, old in before.items():
            new = await get_pod(api, ns, name)
            assert old is not None and new is not None
            assert new["status"] == old["status"], name
            assert new["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"], f"{name} was rewritten"
        assert cstatus(before["bumped"] or {}, "main")["restartCount"] == 1

        # a container killed behind the restarted kubelet's back is restarted, its count grows
        pair = before["pair"] or {}
        web = cstatus(pair, "web")["containerID"].removeprefix("docker://")
        docker("kill", web)
        pod = await wait_pod(api, ns, "pair", lambda p: cstatus(p, "web").get("restartCount") == 1
                             and running_and_ready(p), 15, "web restarted", k)
        assert cstatus(pod, "web")["lastState"]["terminated"]["containerID"] == f"docker://{web}"
        assert cstatus(pod, "side")["containerID"] == cstatus(pair, "side")["containerID"]
        assert pod["status"]["podIP"] == pair["status"]["podIP"]
    finally:
        k.kill()
        remove_node_containers(node)
