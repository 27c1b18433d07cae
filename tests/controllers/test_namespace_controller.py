"""Namespace deletion: everything in it is deleted, then the namespace itself; finalizers are waited for."""

from __future__ import annotations

import uuid
from typing import Any

from services.controllers.main import ControllerManager
from services.controllers.namespace import namespaced_resources
from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from tests.controllers.conftest import DEPLOY, PODS, RS, bare_pod, deployment, eventually, replicaset

NS = BY_PLURAL[("", "namespaces")]
CM = BY_PLURAL[("", "configmaps")]
SECRETS = BY_PLURAL[("", "secrets")]
SVC = BY_PLURAL[("", "services")]


async def namespace(client: ApiClient) -> str:
    name = "t-ns-" + uuid.uuid4().hex[:8]
    await client.create(NS, "", {"metadata": {"name": name}})
    return name


async def gone(client: ApiClient, name: str) -> bool:
    try:
        await client.get(NS, "", name)
        return False
    except ApiError as e:
        if e.code == 404:
            return True
        raise


async def content(client: ApiClient, ns: str) -> dict[str, int]:
    out = {}
    for res in namespaced_resources():
        n = len((await client.list(res, ns))["items"])
        if n:
            out[res.plural] = n
    return out


async def test_namespace_deletion_removes_everything_then_the_namespace(manager: ControllerManager,
                                                                       client: ApiClient) -> None:
    ns = await namespace(client)
    await client.create(DEPLOY, ns, deployment("web", 3))
    await client.create(RS, ns, replicaset("bare", 2))
    await client.create(PODS, ns, bare_pod("lonely", {"app": "none"}))
    await client.create(CM, ns, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    await client.create(SECRETS, ns, {"metadata": {"name": "s"}, "stringData": {"pw": "x"}})
    await client.create(SVC, ns, {"metadata": {"name": "svc"}, "spec": {"selector": {"app": "web"},
                                                                        "ports": [{"port": 80}]}})

    async def running() -> bool:
        return (await content(client, ns)).get("pods", 0) == 6
    await eventually(running, "6 pods")
    await client.delete(NS, "", ns)
    assert (await client.get(NS, "", ns))["status"]["phase"] == "Terminating"
    await eventually(lambda: gone(client, ns), f"namespace {ns} deleted")
    assert await content(client, ns) == {}


async def test_namespace_waits_for_finalizers(manager: ControllerManager, client: ApiClient) -> None:
    ns = await namespace(client)
    await client.create(CM, ns, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    await client.create(CM, ns, {"metadata": {"name": "free"}})
    await client.delete(NS, "", ns)

    async def reported() -> dict[str, Any] | None:
        conds = {c["type"]: c for c in (await client.get(NS, "", ns)).get("status", {}).get("conditions") or []}
        c = conds.get("NamespaceFinalizersRemaining")
        return conds if c and c["status"] == "True" else None
    conds = await eventually(reported, "NamespaceFinalizersRemaining=True")
    assert conds["NamespaceFinalizersRemaining"]["message"] == \
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    assert conds["NamespaceContentRemaining"]["message"] == "Some resources are remaining: configmaps. has 1 resource instances"
    assert conds["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    assert await content(client, ns) == {"configmaps": 1}
    assert not await gone(client, ns)
    await client.patch(CM, ns, "held", {"metadata": {"finalizers": None}})
    await eventually(lambda: gone(client, ns), "namespace deleted once the finalizer is gone", timeout=20)
