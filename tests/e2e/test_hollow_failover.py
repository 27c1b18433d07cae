"""A node dies: the real scheduler, controller manager and hollow kubelets move its pods.

Three hollow kubelet processes, the scheduler and the controller manager run as child
processes against a real apiserver. One kubelet is SIGKILLed; after the node monitor grace
period its node turns Unknown with the unreachable taints, its pods are evicted after their
toleration, and the Deployment's pods run on the two remaining nodes.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx

from tests.servers import Cluster, Proc


def component(c: Cluster, name: str, *args: str) -> Proc:
    p = Proc(name, [sys.executable, "-m", "services.cli", *args, *c.component_args(args[0]),
                    "--nats-url", c.nats.url], c.workdir / f"{name}.log")
    p.start()
    return p


def wait(what: str, cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (httpx.HTTPError, KeyError, IndexError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_dead_node_pods_move_to_other_nodes() -> None:
    c = Cluster().start()
    procs: list[Proc] = []
    api = httpx.Client(**c.admin_kwargs(), timeout=10)
    try:
        kubelets = {n: component(c, f"kubelet-{n}", "kubelet", "--runtime", "hollow", "--node-name", n, "--port", "0",
                                 "--node-lease-renew-interval", "1s")
                    for n in ("hollow-a", "hollow-b", "hollow-c")}
        procs += kubelets.values()
        procs.append(component(c, "scheduler", "scheduler"))
        procs.append(component(c, "controllers", "controllers", "--node-monitor-grace-period", "4s",
                               "--node-monitor-period", "1s"))

        def ready_nodes() -> int:
            items = api.get("/api/v1/nodes").json()["items"]
            return sum(any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"].get("conditions", []))
                       for n in items)
        wait("3 Ready nodes", lambda: ready_nodes() == 3)
        tolerations = [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
                       for k in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]
        deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spread"},
                  "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "spread"}},
                           "template": {"metadata": {"labels": {"app": "spread"}},
                                        "spec": {"tolerations": tolerations,
                                                 "containers": [{"name": "c", "image": "kubenats/busybox:test"}]}}}}
        r = api.post("/apis/apps/v1/namespaces/default/deployments", json=deploy)
        assert r.status_code == 201, r.text

        def available() -> int:
            return int(api.get("/apis/apps/v1/namespaces/default/deployments/spread").json()
                       .get("status", {}).get("availableReplicas", 0))

        def running_on() -> dict[str, int]:
            pods = api.get("/api/v1/namespaces/default/pods", params={"labelSelector": "app=spread"}).json()["items"]
            out: dict[str, int] = {}
            for p in pods:
                if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"):
                    out[p["spec"]["nodeName"]] = out.get(p["spec"]["nodeName"], 0) + 1
            return out
        wait("6 available replicas", lambda: available() == 6)
        assert running_on().get("hollow-a", 0) > 0, running_on()  # the spread plugin put some there

        kubelets["hollow-a"].kill()
        t0 = time.monotonic()

        def unreachable() -> bool:
            node = api.get("/api/v1/nodes/hollow-a").json()
            ready = next(x for x in node["status"]["conditions"] if x["type"] == "Ready")
            keys = {t["key"] for t in node["spec"].get("taints", [])}
            return ready["status"] == "Unknown" and "node.kubernetes.io/unreachable" in keys
        wait("hollow-a Unknown and tainted unreachable", unreachable, timeout=30)
        wait("every replica running on the surviving nodes",
             lambda: running_on().get("hollow-a", 0) == 0 and sum(running_on().values()) == 6 and available() == 6,
             timeout=60)
        print(f"pods moved {time.monotonic() - t0:.1f}s after the kubelet died: {running_on()}")
    except BaseException:
        for p in procs:
            print(f"--- {p.name}\n{p.tail(30)}")
        raise
    finally:
        for p in procs:
            p.stop()
        api.close()
        c.stop()
