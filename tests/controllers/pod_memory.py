"""How many bytes a cached pod costs in the scheduler's and the controller manager's informers.

Run it: ``.venv/bin/python -m tests.controllers.pod_memory [--pods 10000]``. It starts its own
etcd + nats + apiserver (`tests.servers.Cluster`), creates a pod the way the scale run's
Deployments do (so the apiserver's defaulting applies: default tolerations, dnsPolicy,
terminationMessagePath...), binds it and writes the status a hollow kubelet writes for a
running pod (`services.kubelet.podstatus.generate`: five conditions, containerStatuses,
hostIP(s), podIP(s), startTime, qosClass). Then it decodes ``--pods`` copies of it with orjson,
each with its own name, uid, resourceVersion and pod IP, spread over 1,000 nodes, and measures
with tracemalloc what they hold: as decoded, and after each component's transform, with and
without interning. It also measures the peak of an informer relist of those pods.

`tests/controllers/test_pod_transform.py` uses the same helpers (fewer pods) as a regression
check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import orjson

from services.controllers.pod_transform import strip_pod as controllers_strip_pod
from services.kubelet.podstatus import StatusInputs, generate
from services.kubelet.runtime_types import ContainerKind, ContainerState, ContainerStatus
from services.scheduler.pod_transform import strip_pod as scheduler_strip_pod
from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.informer import Informer, SharedValues, intern_strings

Obj = dict[str, Any]
PODS = BY_PLURAL[("", "pods")]
NAMESPACES = BY_PLURAL[("", "namespaces")]
NODES = 1000
STAMP = "2026-01-15T10:00:00Z"


def _runtime(pod: Obj, ip: str) -> list[ContainerStatus]:
    meta = pod["metadata"]
    common = {"pod_uid": meta["uid"], "pod_name": meta["name"], "pod_namespace": meta["namespace"], "attempt": 0,
              "state": ContainerState.RUNNING, "created_at": STAMP, "started_at": STAMP}
    sandbox = ContainerStatus(id=uuid.uuid4().hex * 2, name=f"k8s_POD_{meta['name']}", kind=ContainerKind.SANDBOX,
                              container_name="POD", ip=ip, **common)  # type: ignore[arg-type]
    app = ContainerStatus(id=uuid.uuid4().hex * 2, name=f"k8s_c_{meta['name']}", kind=ContainerKind.CONTAINER,
                          container_name="c", image="kubenats/busybox:test",
                          image_id="sha256:" + uuid.uuid4().hex * 2, sandbox_id=sandbox.id,
                          **common)  # type: ignore[arg-type]
    return [sandbox, app]


async def realistic_pod(client: ApiClient, ns: str, node: str = "hollow-node-0001", host_ip: str = "127.1.0.1",
                        pod_ip: str = "127.64.0.2", spec: Obj | None = None) -> Obj:
    """A Deployment's pod as the informers receive it: created through the apiserver, bound,
    running, with the status a hollow kubelet writes. ``spec`` replaces the scale run's
    one-container spec (for a heavier pod)."""
    rs_uid = str(uuid.uuid4())
    body = {"metadata": {"generateName": "web-5d9c7b8f4-", "labels": {"app": "web", "pod-template-hash": "5d9c7b8f4"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7b8f4",
                                              "uid": rs_uid, "controller": True, "blockOwnerDeletion": True}]},
            "spec": spec or {"containers": [{"name": "c", "image": "kubenats/busybox:test"}]}}
    pod = await client.create(PODS, ns, body)
    name = pod["metadata"]["name"]
    await client.bind(ns, name, node, pod["metadata"]["uid"])
    pod = await client.get(PODS, ns, name)
    containers = _runtime(pod, pod_ip)
    status = generate(StatusInputs(pod=pod, containers=containers[1:], sandbox=containers[0], host_ips=[host_ip]),
                      pod.get("status"))
    await client.patch(PODS, ns, name, {"status": status}, patch_type="merge", sub="status")
    got: Obj = await client.get(PODS, ns, name)
    return got


def _stamp(second: int) -> str:
    return f"2026-01-15T{10 + second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"


def copies(pod: Obj, n: int) -> list[bytes]:
    """n encodings of the pod as n different pods on NODES nodes, as a list or events would carry
    them: each its own name, uid, resourceVersion, IPs and container id; created 60 a second (the
    scale run's rate), running and ready two seconds later."""
    out = []
    base_rv = int(pod["metadata"].get("resourceVersion") or 1)
    for i in range(n):
        p = orjson.loads(orjson.dumps(pod))
        m = p["metadata"]
        m["name"] = f"{m.get('generateName', 'pod-')}{i:05x}"
        m["uid"] = str(uuid.uuid4())
        m["resourceVersion"] = str(base_rv + i)
        m["creationTimestamp"] = _stamp(i // 60)
        started = _stamp(i // 60 + 2)
        for c in (p.get("status") or {}).get("conditions") or ():
            c["lastTransitionTime"] = started
        if "startTime" in (p.get("status") or {}):
            p["status"]["startTime"] = started
        node = i % NODES
        p["spec"]["nodeName"] = f"hollow-node-{node:04d}"
        st = p.get("status") or {}
        if "hostIP" in st:
            st["hostIP"] = f"127.1.{node // 250}.{node % 250 + 1}"
            st["hostIPs"] = [{"ip": st["hostIP"]}]
        if "podIP" in st:
            st["podIP"] = f"127.{64 + i // 65000}.{(i // 250) % 256}.{i % 250 + 2}"
            st["podIPs"] = [{"ip": st["podIP"]}]
        for cs in st.get("containerStatuses") or ():
            cs["containerID"] = "docker://" + uuid.uuid4().hex * 2
            if "running" in (cs.get("state") or {}):
                cs["state"]["running"]["startedAt"] = started
        out.append(orjson.dumps(p))
    return out


@contextlib.contextmanager
def sharing(mode: str) -> Iterator[None]:
    """The transforms' `SharedValues` as they are ("shared"), interning strings only ("interned")
    or doing nothing ("plain"), to measure what each step buys."""
    if mode == "shared":
        yield
        return
    fn: Callable[[SharedValues, Any], Any] = (lambda self, v: intern_strings(v)) if mode == "interned" else (
        lambda self, v: v)
    with mock.patch.object(SharedValues, "__call__", fn):
        yield


def bytes_per_pod(payloads: list[bytes], transform: Callable[[Obj], Obj] | None = None) -> float:
    """Bytes held per pod by decoding every payload (and transforming it, the decoded original
    then freed), as tracemalloc counts them."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        if transform is None:
            kept = [orjson.loads(b) for b in payloads]
        else:
            kept = [transform(orjson.loads(b)) for b in payloads]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == len(payloads)
    del kept
    return (after - before) / len(payloads)


class _PagedLister(ApiClient):
    """An ApiClient whose LIST pages come from memory (decoded page by page, as over HTTP)."""

    def __init__(self, payloads: list[bytes], page_size: int) -> None:
        super().__init__("http://127.0.0.1:1")
        self.payloads = payloads
        self.page_size = page_size

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        start = int((params or {}).get("continue") or 0)
        end = start + self.page_size
        raw = b'{"metadata":{"resourceVersion":"%d"%s},"items":[%s]}' % (
            10**9, b',"continue":"%d"' % end if end < len(self.payloads) else b"",
            b",".join(self.payloads[start:end]))
        page: dict[str, Any] = orjson.loads(raw)
        return page


class _AccumulatingLister:
    """The informer's input before paging: `ApiClient.list`, every page decoded into one list."""

    def __init__(self, pages: _PagedLister) -> None:
        self.pages = pages

    async def list(self, res: Any, namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "") -> dict[str, Any]:
        params: dict[str, Any] = {}
        items: list[Obj] = []
        while True:
            page = await self.pages.request("GET", "", params=params)
            items.extend(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                page["items"] = items
                return page
            params["continue"] = token


class _NoBus:
    async def subscribe(self, *a: Any, **k: Any) -> None:
        return None

    async def flush(self) -> None:
        return None


async def relist_peak(payloads: list[bytes], transform: Callable[[Obj], Obj] | None, page_size: int,
                      paged: bool = True) -> tuple[float, float, float]:
    """Bytes per pod: held after an informer's initial list, the peak during it, and the peak
    during a second (periodic) relist of the same pods."""
    pages = _PagedLister(payloads, page_size)
    lister: Any = pages if paged else _AccumulatingLister(pages)
    inf = Informer(_NoBus(), lister, PODS, transform=transform)  # type: ignore[arg-type]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await inf._relist("initial")
        held, peak = tracemalloc.get_traced_memory()
        gc.collect()
        tracemalloc.reset_peak()
        await inf._relist("periodic")
        relist_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await pages.close()
    assert len(inf) == len(payloads) and inf.relists == 2
    n = len(payloads)
    return (held - before) / n, (peak - before) / n, (relist_peak - before) / n


def _intern_all(pod: Obj) -> Obj:
    out: Obj = intern_strings(pod)
    return out


TRANSFORMS: dict[str, Callable[[Obj], Obj] | None] = {
    "full pod (as decoded)": None,
    "full pod, strings interned": _intern_all,
    "scheduler transform": scheduler_strip_pod,
    "controllers transform": controllers_strip_pod,
}


SHARING_MODES = {"plain": "no interning", "interned": "strings interned", "shared": "strings interned, values shared"}


def report(pod: Obj, n: int) -> dict[str, float]:
    payloads = copies(pod, n)
    out: dict[str, float] = {"json bytes": sum(map(len, payloads)) / n}
    for label, fn in TRANSFORMS.items():
        if fn is None or fn is _intern_all:
            out[label] = bytes_per_pod(payloads, fn)
            continue
        for mode, text in SHARING_MODES.items():
            with sharing(mode):
                out[f"{label}, {text}"] = bytes_per_pod(payloads, fn)
    return out


async def relist_report(pod: Obj, n: int) -> dict[str, tuple[float, float, float]]:
    payloads = copies(pod, n)
    return {
        "before: ApiClient.list, no transform": await relist_peak(payloads, None, 500, paged=False),
        "no transform, paged": await relist_peak(payloads, None, 500),
        "scheduler transform, paged": await relist_peak(payloads, scheduler_strip_pod, 500),
        "controllers transform, paged": await relist_peak(payloads, controllers_strip_pod, 500),
        "controllers transform, ApiClient.list": await relist_peak(payloads, controllers_strip_pod, 500, paged=False),
    }


HEAVY_SPEC: Obj = {
    "containers": [{
        "name": "app", "image": "registry.example.com/team/app:1.2.3", "command": ["/app/server"],
        "args": ["--port=8080", "--log-level=info"],
        "env": [{"name": f"SETTING_{i}", "value": f"value-{i}"} for i in range(8)],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
    }],
    "volumes": [{"name": "config", "configMap": {"name": "app-config"}}],
}


async def main(n: int) -> None:
    from tests.servers import Cluster

    cluster = await asyncio.to_thread(Cluster().start)
    client = cluster.api_client()
    try:
        ns = "pod-memory"
        await client.create(NAMESPACES, "", {"metadata": {"name": ns}})
        for title, spec in (("scale-run pod (one busybox container)", None),
                            ("heavier pod (env, ports, resources, probe, volume)", HEAVY_SPEC)):
            pod = await realistic_pod(client, ns, spec=spec)
            print(f"\n## {title}: {len(orjson.dumps(pod))} bytes of JSON; {n:,} copies\n")
            print(f"| {'cached as':<54} | bytes/pod |\n|{'-' * 56}|----------:|")
            for label, value in report(pod, n).items():
                print(f"| {label:<54} | {value:>9,.0f} |")
            if spec is None:
                print(f"\nAn informer's lists of {n:,} such pods (tracemalloc, bytes per pod; pages of 500):\n")
                print(f"| {'list':<54} |  held | peak, initial list | peak, periodic relist |\n"
                      f"|{'-' * 56}|------:|-------------------:|----------------------:|")
                for label, (held, peak, again) in (await relist_report(pod, n)).items():
                    print(f"| {label:<54} | {held:>5,.0f} | {peak:>18,.0f} | {again:>21,.0f} |")
    finally:
        await client.close()
        await asyncio.to_thread(cluster.stop)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=10_000)
    asyncio.run(main(ap.parse_args().pods))
