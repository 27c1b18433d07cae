"""Workload controllers with the real scheduler and hollow kubelets (no fake node side).

A rolling update with maxUnavailable=0 is sampled all through: ready replicas never drop
below spec. A DaemonSet follows a hollow node joining and leaving.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.e2e.test_hollow_failover import component, wait
from tests.servers import Cluster, Proc

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def ready_pods(api: httpx.Client, selector: str) -> list[dict[str, Any]]:
    pods = api.get("/api/v1/namespaces/default/pods", params={"labelSelector": selector}).json()["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def start(nodes: tuple[str, ...]) -> tuple[Cluster, list[Proc], httpx.Client]:
    c = Cluster().start()
    procs = [component(c, f"kubelet-{n}", "kubelet", "--runtime", "hollow", "--node-name", n, "--port", "0",
                       "--node-lease-renew-interval", "1s") for n in nodes]
    procs.append(component(c, "scheduler", "scheduler"))
    procs.append(component(c, "controllers", "controllers", "--node-monitor-period", "1s"))
    api = httpx.Client(**c.admin_kwargs(), timeout=10)
    wait(f"{len(nodes)} nodes", lambda: len(api.get("/api/v1/nodes").json()["items"]) == len(nodes))
    return c, procs, api


def stop(c: Cluster, procs: list[Proc], api: httpx.Client) -> None:
    for p in procs:
        p.stop()
    api.close()
    c.stop()


def test_rolling_update_never_drops_below_spec() -> None:
    c, procs, api = start(("roll-a", "roll-b", "roll-c"))
    try:
        spec = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
                "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "roll"}},
                         "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                         "template": {"metadata": {"labels": {"app": "roll"}},
                                      "spec": {"containers": [{"name": "c", "image": "kubenats/busybox:test"}]}}}}
        assert api.post(DEPLOYMENTS, json=spec).status_code == 201
        wait("6 ready replicas", lambda: len(ready_pods(api, "app=roll")) == 6)
        patch = {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}
        r = api.patch(f"{DEPLOYMENTS}/roll", json=patch, headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200
        generation = r.json()["metadata"]["generation"]
        lowest, samples = 6, 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            lowest = min(lowest, len(ready_pods(api, "app=roll")))
            samples += 1
            d = api.get(f"{DEPLOYMENTS}/roll").json()
            st = d.get("status", {})
            if (st.get("observedGeneration", 0) >= generation and st.get("updatedReplicas") == 6
                    and st.get("replicas") == 6 and st.get("availableReplicas") == 6):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"rollout did not complete: {st}")
        assert lowest >= 6, f"ready replicas dropped to {lowest} during the rollout ({samples} samples)"
        rss = api.get("/apis/apps/v1/namespaces/default/replicasets", params={"labelSelector": "app=roll"}).json()["items"]
        old = [rs for rs in rss if rs["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == "1"]
        assert old and all(rs["spec"]["replicas"] == 0 for rs in old), [rs["spec"]["replicas"] for rs in rss]
    except BaseException:
        for p in procs:
            print(f"--- {p.name}\n{p.tail(20)}")
        raise
    finally:
        stop(c, procs, api)


def test_daemonset_follows_nodes() -> None:
    c, procs, api = start(("ds-a", "ds-b"))
    try:
        ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
              "spec": {"selector": {"matchLabels": {"app": "agent"}},
                       "template": {"metadata": {"labels": {"app": "agent"}},
                                    "spec": {"containers": [{"name": "c", "image": "kubenats/busybox:test"}]}}}}
        assert api.post("/apis/apps/v1/namespaces/default/daemonsets", json=ds).status_code == 201

        def nodes_with_agent() -> set[str]:
            return {p["spec"].get("nodeName") for p in ready_pods(api, "app=agent")}
        wait("one agent per node", lambda: nodes_with_agent() == {"ds-a", "ds-b"})
        joiner = component(c, "kubelet-ds-c", "kubelet", "--runtime", "hollow", "--node-name", "ds-c", "--port", "0",
                           "--node-lease-renew-interval", "1s")
        procs.append(joiner)
        wait("an agent on the node that joined", lambda: nodes_with_agent() == {"ds-a", "ds-b", "ds-c"})
        joiner.kill()
        assert api.delete("/api/v1/nodes/ds-c").status_code == 200
        wait("the agent of the node that left is gone", lambda: nodes_with_agent() == {"ds-a", "ds-b"} and len(
            api.get("/api/v1/namespaces/default/pods", params={"labelSelector": "app=agent"}).json()["items"]) == 2)
    except BaseException:
        for p in procs:
            print(f"--- {p.name}\n{p.tail(20)}")
        raise
    finally:
        stop(c, procs, api)
