"""Static pods: run from a manifest folder with no API server, mirrored once the API answers.

The kubelet starts pointed at a loopback port where nothing listens (the API server is "down");
later the test opens that port as a TCP relay to the real API server ("it came up"). Editing the
manifest replaces the pod (new UID) and its mirror; a mirror deleted through the API comes back;
removing the file stops the pod and deletes the mirror.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml

from services.kubelet.static import static_pod
from tests.kubelet.images import BUSYBOX_IMAGE, ensure_test_images
from tests.kubelet.test_kubelet_helpers import (
    SLEEP,
    KubeletProc,
    condition,
    docker,
    get_pod,
    node_containers,
    phase,
    remove_node_containers,
    unique_node,
    wait_for,
)
from tests.servers import Cluster, free_port


@contextlib.asynccontextmanager
async def relay(listen_port: int, target_port: int) -> AsyncIterator[None]:
    """A TCP relay 127.0.0.1:listen_port -> 127.0.0.1:target_port (the API server coming up)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        for t in (asyncio.create_task(pipe(reader, up_w)), asyncio.create_task(pipe(up_r, writer))):
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    try:
        yield
    finally:
        server.close()
        for t in list(tasks):
            t.cancel()


def manifest(name: str, script: str, label: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"version": label}},
            "spec": {"terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script]}]}}


def test_static_pod_uid_and_name_follow_upstream() -> None:
    raw = manifest("etcd", SLEEP, "1")
    a = static_pod(raw, "node-a", "/etc/manifests/etcd.yaml")
    assert a["metadata"]["name"] == "etcd-node-a" and a["metadata"]["namespace"] == "default"
    assert re.fullmatch(r"[0-9a-f]{32}", a["metadata"]["uid"])
    assert a["metadata"]["annotations"]["kubernetes.io/config.hash"] == a["metadata"]["uid"]
    assert a["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    assert a["spec"]["nodeName"] == "node-a" and a["spec"]["restartPolicy"] == "Always"
    assert static_pod(raw, "node-a", "/etc/manifests/etcd.yaml")["metadata"]["uid"] == a["metadata"]["uid"]
    assert static_pod(raw, "node-b", "/etc/manifests/etcd.yaml")["metadata"]["uid"] != a["metadata"]["uid"]
    assert static_pod(manifest("etcd", SLEEP, "2"), "node-a", "/etc/manifests/etcd.yaml")["metadata"]["uid"] != \
        a["metadata"]["uid"]
    with pytest.raises(ValueError):
        static_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {}}, "n", "f")


async def test_static_pod_runs_without_api_then_is_mirrored(cluster: Cluster, api: httpx.AsyncClient) -> None:
    ensure_test_images()
    node = unique_node("ks")
    folder = cluster.workdir / f"manifests-{node}"
    folder.mkdir()
    (folder / "README").write_text("not a manifest")
    path = folder / "web.yaml"
    path.write_text(yaml.safe_dump(manifest("sweb", SLEEP, "1")))
    port = free_port()  # nothing listens here yet: the API server is down
    conn = [*cluster.component_args("kubelet", node), "--master", f"https://127.0.0.1:{port}"]
    k = KubeletProc(node, conn, cluster.nats.url, cluster.workdir,
                    extra=["--pod-manifest-path", str(folder)]).start()
    name = f"sweb-{node}"
    try:
        async def running_uid() -> str | None:
            ids = node_containers(node, "io.kubernetes.container.name=main", all=False)
            if not ids:
                return None
            return docker("inspect", "-f", '{{index .Config.Labels "io.kubernetes.pod.uid"}}', ids[0]).strip()

        uid = await wait_for(running_uid, 30, "the static pod running with no API server", kubelet=k)
        assert re.fullmatch(r"[0-9a-f]{32}", uid)
        assert await get_pod(api, "default", name) is None  # no mirror: the kubelet cannot reach the API
        main_ids = set(node_containers(node))

        async with relay(port, cluster.apiserver.port):
            async def mirror_running() -> dict[str, Any] | None:
                pod = await get_pod(api, "default", name)
                return pod if pod is not None and phase(pod) == "Running" and condition(pod, "Ready") == "True" else None

            mirror = await wait_for(mirror_running, 30, "the mirror pod, Running", kubelet=k)
            ann = mirror["metadata"]["annotations"]
            assert ann["kubernetes.io/config.mirror"] == uid and ann["kubernetes.io/config.hash"] == uid
            assert ann["kubernetes.io/config.source"] == "file"
            node_obj = (await api.get(f"/api/v1/nodes/{node}")).json()
            assert mirror["metadata"]["ownerReferences"] == [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_obj["metadata"]["uid"], "controller": True}]
            assert mirror["spec"]["nodeName"] == node and mirror["metadata"]["uid"] != uid
            assert mirror["status"]["containerStatuses"][0]["containerID"].removeprefix("docker://") in main_ids
            assert set(node_containers(node)) == main_ids  # the API coming up changed nothing on the node

            # a mirror deleted through the API is recreated; the pod itself keeps running
            r = await api.delete(f"/api/v1/namespaces/default/pods/{name}")
            assert r.status_code == 200, r.text

            async def new_mirror() -> dict[str, Any] | None:
                pod = await get_pod(api, "default", name)
                ok = pod is not None and pod["metadata"]["uid"] != mirror["metadata"]["uid"] and \
                    not pod["metadata"].get("deletionTimestamp") and phase(pod) == "Running"
                return pod if ok else None

            await wait_for(new_mirror, 20, "the mirror recreated", kubelet=k)
            assert set(node_containers(node)) == main_ids

            # editing the manifest replaces the pod (a new UID) and its mirror
            path.write_text(yaml.safe_dump(manifest("sweb", SLEEP, "2")))

            async def replaced() -> dict[str, Any] | None:
                pod = await get_pod(api, "default", name)
                if pod is None or (pod["metadata"].get("annotations") or {}).get("kubernetes.io/config.mirror") == uid:
                    return None
                if pod["metadata"]["labels"].get("version") != "2" or condition(pod, "Ready") != "True":
                    return None
                return pod if not (main_ids & set(node_containers(node))) else None

            new = await wait_for(replaced, 30, "the pod and mirror replaced", kubelet=k)
            new_uid = new["metadata"]["annotations"]["kubernetes.io/config.mirror"]
            assert new_uid != uid and node_containers(node, f"io.kubernetes.pod.uid={new_uid}", all=False)

            # deleting the file stops the pod and deletes its mirror
            path.unlink()

            async def gone() -> bool:
                return not node_containers(node) and await get_pod(api, "default", name) is None

            await wait_for(gone, 20, "the pod stopped and the mirror deleted", kubelet=k)
    finally:
        k.kill()
        remove_node_containers(node)
        shutil.rmtree(folder, ignore_errors=True)
