"""Authentication, authorization, node restriction and limits on the real HTTPS apiserver.

Identities are real credentials of the session cluster: client certificates from its CA (admin,
the scheduler, the controller manager, the proxy, two kubelets) and bearer tokens from its
token file (`nobody`, and `viewer` in group `viewers`). "allowed" means the request got past
authentication and authorization: any answer but 401 and 403 (a 404 for a name that does not
exist is an allowed request).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import string
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.apiserver.storage import Store
from shared import pki
from shared.bus import Bus, BusOptions
from tests.servers import Apiserver, Cluster

ALLOWED = "allowed"
N1, N2 = f"sec-n1-{uuid.uuid4().hex[:6]}", f"sec-n2-{uuid.uuid4().hex[:6]}"
NS = f"sec-{uuid.uuid4().hex[:8]}"


def client_ssl(cluster: Cluster, identity: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cluster.pki.ca.cert))
    if identity is not None:
        pair = cluster.pki.clients[identity]
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
    return ctx


@pytest.fixture(scope="module")
def world(cluster: Cluster) -> dict[str, Any]:
    """Two nodes with one pod each, each pod using its own secret and configmap."""
    cluster.add_node(N1)
    cluster.add_node(N2)
    with httpx.Client(**cluster.admin_kwargs(), timeout=30) as api:
        assert api.post("/api/v1/namespaces", json={"metadata": {"name": NS}}).status_code == 201
        for node in (N1, N2):
            assert api.post("/api/v1/nodes", json={"metadata": {"name": node}}).status_code == 201
            for kind, body in (("secrets", {"data": {"k": "dmFsdWU="}}), ("configmaps", {"data": {"k": "v"}})):
                r = api.post(f"/api/v1/namespaces/{NS}/{kind}", json={"metadata": {"name": f"{kind}-{node}"}, **body})
                assert r.status_code == 201, r.text
            pod = {"metadata": {"name": f"pod-{node}"}, "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "kubenats/busybox:test",
                                "envFrom": [{"configMapRef": {"name": f"configmaps-{node}"}}]}],
                "volumes": [{"name": "s", "secret": {"secretName": f"secrets-{node}"}}]}}
            r = api.post(f"/api/v1/namespaces/{NS}/pods", json=pod)
            assert r.status_code == 201, r.text
        binding = {"metadata": {"name": f"viewers-{NS}"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "Group", "name": "viewers", "apiGroup": "rbac.authorization.k8s.io"}]}
        r = api.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings", json=binding)
        assert r.status_code == 201, r.text
    return {}


def identity_kwargs(cluster: Cluster, who: str) -> dict[str, Any]:
    if who == "anonymous":
        return {"verify": client_ssl(cluster, None)}
    if who in ("nobody", "viewer", "bad-token"):
        token = {"nobody": "nobody-token", "viewer": "viewer-token", "bad-token": "not-a-token"}[who]
        return {"verify": client_ssl(cluster, None), "headers": {"Authorization": f"Bearer {token}"}}
    identity = {"n1": f"kubelet-{N1}", "n2": f"kubelet-{N2}"}.get(who, who)
    return {"verify": client_ssl(cluster, identity)}


SUB = {"N1": N1, "N2": N2, "NS": NS}

# (identity, method, path, body, expected: a status code or ALLOWED)
TABLE: list[tuple[str, str, str, Any, Any]] = [
    # no credentials: only the health and version endpoints
    ("anonymous", "GET", "/api/v1/namespaces", None, 401),
    ("anonymous", "GET", "/apis", None, 401),
    ("anonymous", "GET", "/healthz", None, 200),
    ("anonymous", "GET", "/livez", None, 200),
    ("anonymous", "GET", "/readyz", None, 200),
    ("anonymous", "GET", "/version", None, 200),
    ("bad-token", "GET", "/api/v1/namespaces", None, 401),
    ("bad-token", "GET", "/version", None, 200),
    # the administrator may do anything
    ("admin", "GET", "/api/v1/nodes", None, 200),
    ("admin", "DELETE", "/api/v1/namespaces/{NS}/pods/absent", None, 404),
    # an authenticated user without bindings: discovery and self reviews only
    ("nobody", "GET", "/api", None, 200),
    ("nobody", "GET", "/apis/apps/v1", None, 200),
    ("nobody", "GET", "/openapi/v3", None, 200),
    ("nobody", "GET", "/api/v1/namespaces/{NS}/pods", None, 403),
    ("nobody", "POST", "/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "x"}}, 403),
    ("nobody", "GET", "/api/v1/nodes", None, 403),
    # view in one namespace through a RoleBinding to the view ClusterRole
    ("viewer", "GET", "/api/v1/namespaces/{NS}/pods", None, 200),
    ("viewer", "GET", "/api/v1/namespaces/{NS}/configmaps/configmaps-{N1}", None, 200),
    ("viewer", "GET", "/api/v1/namespaces/{NS}/secrets/secrets-{N1}", None, 403),
    ("viewer", "GET", "/api/v1/namespaces/default/pods", None, 403),
    ("viewer", "POST", "/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "x"}}, 403),
    ("viewer", "DELETE", "/api/v1/namespaces/{NS}/pods/pod-{N1}", None, 403),
    # the scheduler: reads pods and nodes, binds, writes pod status; nothing else
    ("scheduler", "GET", "/api/v1/pods", None, 200),
    ("scheduler", "GET", "/api/v1/nodes", None, 200),
    ("scheduler", "POST", "/api/v1/namespaces/{NS}/pods/absent/binding",
     {"target": {"kind": "Node", "name": "{N1}"}, "metadata": {"name": "absent"}}, 404),
    ("scheduler", "DELETE", "/api/v1/namespaces/{NS}/configmaps/configmaps-{N1}", None, 403),
    ("scheduler", "DELETE", "/api/v1/namespaces/{NS}/pods/absent", None, 404),  # preemption deletes pods
    ("scheduler", "GET", "/api/v1/namespaces/{NS}/secrets/secrets-{N1}", None, 403),
    ("scheduler", "DELETE", "/apis/apps/v1/namespaces/{NS}/deployments/absent", None, 403),
    # the controller manager: workloads and their pods
    ("controller-manager", "POST", "/apis/apps/v1/namespaces/{NS}/replicasets?dryRun=All",
     {"metadata": {"name": "rs"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
         "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}, 201),
    ("controller-manager", "DELETE", "/api/v1/namespaces/{NS}/pods/absent", None, 404),
    ("controller-manager", "GET", "/apis/discovery.k8s.io/v1/endpointslices", None, 200),
    # the proxy: reads services and endpoints only
    ("proxy", "GET", "/api/v1/services", None, 200),
    ("proxy", "GET", "/apis/discovery.k8s.io/v1/endpointslices", None, 200),
    ("proxy", "POST", "/api/v1/namespaces/{NS}/services",
     {"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}]}}, 403),
    ("proxy", "GET", "/api/v1/namespaces/{NS}/secrets/secrets-{N1}", None, 403),
    ("proxy", "DELETE", "/api/v1/namespaces/{NS}/pods/pod-{N1}", None, 403),
    # a kubelet: its own node, the secrets and configmaps its pods use, and nothing of another node
    ("n1", "GET", "/api/v1/nodes/{N2}", None, 200),
    ("n1", "GET", "/api/v1/namespaces/{NS}/pods", None, 200),
    ("n1", "GET", "/api/v1/namespaces/{NS}/secrets/secrets-{N1}", None, 200),
    ("n1", "GET", "/api/v1/namespaces/{NS}/configmaps/configmaps-{N1}", None, 200),
    ("n1", "GET", "/api/v1/namespaces/{NS}/secrets/secrets-{N2}", None, 403),
    ("n1", "GET", "/api/v1/namespaces/{NS}/configmaps/configmaps-{N2}", None, 403),
    ("n1", "GET", "/api/v1/namespaces/{NS}/secrets", None, 403),
    ("n2", "GET", "/api/v1/namespaces/{NS}/secrets/secrets-{N2}", None, 200),
    ("n1", "PATCH", "/api/v1/nodes/{N1}/status", {"metadata": {"labels": {}}}, 200),
    ("n1", "PATCH", "/api/v1/nodes/{N2}/status", {"status": {"phase": "x"}}, 403),
    ("n1", "PATCH", "/api/v1/nodes/{N2}", {"metadata": {"labels": {"stolen": "yes"}}}, 403),
    ("n1", "DELETE", "/api/v1/nodes/{N2}", None, 403),
    ("n1", "PATCH", "/api/v1/namespaces/{NS}/pods/pod-{N2}/status", {"status": {"message": "x"}}, 403),
    ("n1", "PATCH", "/api/v1/namespaces/{NS}/pods/pod-{N1}/status", {"status": {"message": "x"}}, 200),
    ("n1", "DELETE", "/api/v1/namespaces/{NS}/pods/pod-{N2}", None, 403),
    ("n1", "POST", "/api/v1/namespaces/{NS}/pods",
     {"metadata": {"name": "sneaky"}, "spec": {"nodeName": "{N2}", "containers": [{"name": "c", "image": "i"}]}}, 403),
    ("n1", "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
     {"metadata": {"name": "{N2}"}, "spec": {"holderIdentity": "{N2}"}}, 403),
    ("n1", "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
     {"metadata": {"name": "{N1}"}, "spec": {"holderIdentity": "{N1}"}}, 201),
    ("n1", "POST", "/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "x"}}, 403),
    ("n1", "DELETE", "/apis/apps/v1/namespaces/{NS}/deployments/absent", None, 403),
]


def _fill(value: Any) -> Any:
    if isinstance(value, str):
        return value.format(**SUB)
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v) for v in value]
    return value


@pytest.mark.parametrize(("who", "method", "path", "body", "expected"), TABLE,
                         ids=[f"{t[0]}-{t[1]}-{t[2]}" for t in TABLE])
def test_identity_verb_resource(cluster: Cluster, world: dict[str, Any], who: str, method: str, path: str,
                                body: Any, expected: Any) -> None:
    kwargs = identity_kwargs(cluster, who)
    headers = {**kwargs.pop("headers", {})}
    if method == "PATCH":
        headers["Content-Type"] = "application/merge-patch+json"
    with httpx.Client(base_url=cluster.apiserver.url, timeout=30, **kwargs) as c:
        r = c.request(method, _fill(path), content=orjson.dumps(_fill(body)) if body is not None else None,
                      headers=headers)
    if expected == ALLOWED:
        assert r.status_code not in (401, 403), r.text
    else:
        assert r.status_code == expected, r.text
    if r.status_code in (401, 403):
        status = r.json()
        assert status["kind"] == "Status" and status["code"] == r.status_code
        assert status["reason"] == ("Unauthorized" if r.status_code == 401 else "Forbidden")


def test_forbidden_in_kubernetes_words(cluster: Cluster, world: dict[str, Any]) -> None:
    with httpx.Client(base_url=cluster.apiserver.url, timeout=30, **identity_kwargs(cluster, "nobody")) as c:
        r = c.get(f"/api/v1/namespaces/{NS}/pods")
        assert r.json()["message"] == (f'pods is forbidden: User "nobody" cannot list resource "pods" in API group "" '
                                       f'in the namespace "{NS}"')
        r = c.get("/apis/apps/v1/deployments")
        assert r.json()["message"] == ('deployments.apps is forbidden: User "nobody" cannot list resource "deployments" '
                                       'in API group "apps" at the cluster scope')
    with httpx.Client(base_url=cluster.apiserver.url, timeout=30, **identity_kwargs(cluster, "n1")) as c:
        r = c.patch(f"/api/v1/nodes/{N2}", content=b'{"metadata":{"labels":{"x":"y"}}}',
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 403
        assert r.json()["message"] == f'nodes "{N2}" is forbidden: node "{N1}" is not allowed to modify node "{N2}"'


def test_a_kubelet_loses_a_secret_when_its_pod_goes(cluster: Cluster, world: dict[str, Any]) -> None:
    path = f"/api/v1/namespaces/{NS}/secrets/gone-{N1}"
    with httpx.Client(**cluster.admin_kwargs(), timeout=30) as api:
        assert api.post(f"/api/v1/namespaces/{NS}/secrets", json={"metadata": {"name": f"gone-{N1}"}}).status_code == 201
        pod = {"metadata": {"name": f"gone-{N1}"}, "spec": {"nodeName": N1, "containers": [{"name": "c", "image": "i"}],
                                                             "volumes": [{"name": "s", "secret": {"secretName": f"gone-{N1}"}}]}}
        assert api.post(f"/api/v1/namespaces/{NS}/pods", json=pod).status_code == 201
        with httpx.Client(base_url=cluster.apiserver.url, timeout=30, **identity_kwargs(cluster, "n1")) as kubelet:
            assert eventually_code(kubelet, path, 200)
            r = api.delete(f"/api/v1/namespaces/{NS}/pods/gone-{N1}", params={"gracePeriodSeconds": "0"})
            assert r.status_code == 200, r.text
            assert eventually_code(kubelet, path, 403)


def eventually_code(c: httpx.Client, path: str, code: int, timeout: float = 10.0) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.get(path).status_code == code:
            return True
        time.sleep(0.1)
    return False


def test_impersonation(cluster: Cluster, world: dict[str, Any]) -> None:
    with httpx.Client(**cluster.admin_kwargs(), timeout=30) as admin:
        r = admin.get(f"/api/v1/namespaces/{NS}/pods", headers={"Impersonate-User": "nobody"})
        assert r.status_code == 403 and 'User "nobody"' in r.json()["message"]
        r = admin.get(f"/api/v1/namespaces/{NS}/pods", headers={"Impersonate-User": "someone",
                                                                 "Impersonate-Group": "viewers"})
        assert r.status_code == 200
    with httpx.Client(base_url=cluster.apiserver.url, timeout=30, **identity_kwargs(cluster, "nobody")) as c:
        r = c.get("/api/v1/nodes", headers={"Impersonate-User": "kubernetes-admin", "Impersonate-Group": "system:masters"})
        assert r.status_code == 403
        assert r.json()["message"] == ('users "kubernetes-admin" is forbidden: User "nobody" cannot impersonate '
                                       'resource "users" in API group "" at the cluster scope')


# ---- hostile input ---------------------------------------------------------------------------------


def test_fuzzed_authorization_headers_never_500_or_access(cluster: Cluster) -> None:
    rng = random.Random(4)
    alphabet = string.printable.strip() + "\u00e9\u2603"
    headers = ["", "Bearer", "Bearer ", "bearer nobody-tokenX", "Basic YWRtaW46YWRtaW4=", "Bearer " + "A" * 8000,
               "Bearer nobody-token extra", "Token nobody-token", "Bearer \tviewer-token\t"]
    headers += ["Bearer " + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(60)]
    headers += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(30)]
    with httpx.Client(base_url=cluster.apiserver.url, timeout=30, verify=client_ssl(cluster, None)) as c:
        for h in headers:
            try:
                r = c.get("/api/v1/namespaces", headers={"Authorization": h})
            except (UnicodeEncodeError, httpx.LocalProtocolError):
                continue  # not sendable as an HTTP header
            assert r.status_code == 401, (h, r.status_code, r.text)


def test_client_certificates_of_another_ca_fail_the_handshake(cluster: Cluster, tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path / "other")
    for cn, orgs in (("kubernetes-admin", ("system:masters",)), (f"system:node:{N1}", ("system:nodes",)), ("x", ())):
        pair = pki.ensure_cert(tmp_path / "other", ca, f"c-{len(orgs)}-{cn.replace(':', '-')}", cn=cn, orgs=orgs,
                               client=True)
        ctx = ssl.create_default_context(cafile=str(cluster.pki.ca.cert))
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
        try:
            r = httpx.get(cluster.apiserver.url + "/api/v1/nodes", verify=ctx, timeout=10)
        except (httpx.HTTPError, ssl.SSLError):
            continue
        raise AssertionError(f"a foreign certificate for {cn} got an answer: {r.status_code} {r.text[:200]}")


def test_plain_http_is_refused(cluster: Cluster) -> None:
    plain = cluster.apiserver.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/api/v1/namespaces", timeout=10)


# ---- limits --------------------------------------------------------------------------------------------


def test_request_body_over_3_mib_is_413(cluster: Cluster) -> None:
    big = {"metadata": {"name": "big"}, "data": {"k": "x" * (3 * 1024 * 1024 + 10)}}
    with httpx.Client(**cluster.admin_kwargs(), timeout=60) as api:
        r = api.post("/api/v1/namespaces/default/configmaps", content=orjson.dumps(big),
                     headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text[:300]
        assert r.json()["reason"] == "RequestEntityTooLarge" and r.json()["message"] == \
            "Request entity too large: limit is 3145728"
        assert api.get("/api/v1/namespaces/default/configmaps/big").status_code == 404


@pytest.mark.slow
async def test_too_many_mutating_requests_get_429(cluster: Cluster) -> None:
    server = Apiserver(cluster.workdir, cluster.etcd, cluster.nats, tag="-limits",
                       extra=["--no-publish", "--max-mutating-requests-inflight", "1"])
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, verify=cluster.ssl, timeout=30) as api:
            async def create(i: int) -> httpx.Response:
                return await api.post("/api/v1/namespaces/default/configmaps",
                                      json={"metadata": {"name": f"burst-{uuid.uuid4().hex[:8]}-{i}"}})
            rs = await asyncio.gather(*(create(i) for i in range(40)))
        codes = sorted({r.status_code for r in rs})
        assert 201 in codes and 429 in codes, codes
        limited = next(r for r in rs if r.status_code == 429)
        assert limited.headers["retry-after"] == "1"
        assert limited.json()["reason"] == "TooManyRequests"
        assert limited.json()["details"]["retryAfterSeconds"] == 1
    finally:
        server.stop()


# ---- secrets at rest, and never on NATS ------------------------------------------------------------------


async def test_secrets_are_encrypted_in_etcd_and_kept_off_nats(cluster: Cluster) -> None:
    name = f"enc-{uuid.uuid4().hex[:8]}"
    seen: list[bytes] = []
    bus = Bus(cluster.nats.url, "test-secrets", cluster.bus_options())
    await bus.connect()

    async def on(msg: Any) -> None:
        seen.append(msg.data)
    await bus.subscribe(f"kube.events.core.secrets.default.{name}", on)
    await bus.flush()
    try:
        async with httpx.AsyncClient(**cluster.admin_kwargs(), timeout=30) as api:
            r = await api.post("/api/v1/namespaces/default/secrets",
                               json={"metadata": {"name": name}, "stringData": {"password": "hunter2-plain"}})
            assert r.status_code == 201, r.text
            got = (await api.get(f"/api/v1/namespaces/default/secrets/{name}")).json()
            assert got["data"]["password"] == "aHVudGVyMi1wbGFpbg=="
        store = Store([cluster.etcd.url])
        await store.open()
        try:
            kv = await store.get(f"/registry/secrets/default/{name}")
        finally:
            await store.close()
        assert kv is not None and kv.value.startswith(b"k8s:enc:aesgcm:v1:key1:")
        assert b"aHVudGVyMi1wbGFpbg" not in kv.value and b"hunter2" not in kv.value
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.1)
        assert seen, "no event for the secret"
        event = orjson.loads(seen[0])
        assert event["partial"] is True and "data" not in event["object"]
        assert b"aHVudGVyMi1wbGFpbg" not in seen[0]
    finally:
        await bus.close()


# ---- NATS: a kubelet reads only its own subjects and publishes nothing ----------------------------------


async def test_kubelet_nats_user_is_confined(cluster: Cluster, world: dict[str, Any]) -> None:
    password = cluster.files.nats_users[f"kubelet-{N1}"].read_text()
    kubelet = Bus(cluster.nats.url, "test-kubelet-n1", BusOptions(user=f"kubelet-{N1}", password=password))
    await kubelet.connect()
    own: list[bytes] = []
    other: list[bytes] = []

    async def mine(msg: Any) -> None:
        own.append(msg.subject)

    async def theirs(msg: Any) -> None:
        other.append(msg.subject)
    try:
        await kubelet.subscribe(f"kube.nodes.{N1}.>", mine)
        await kubelet.subscribe(f"kube.nodes.{N2}.>", theirs)
        await kubelet.publish(f"kube.events.core.pods.{NS}.forged", b"{}")
        await kubelet.flush()
        async with httpx.AsyncClient(**cluster.admin_kwargs(), timeout=30) as api:
            for node in (N1, N2):
                r = await api.patch(f"/api/v1/namespaces/{NS}/pods/pod-{node}",
                                    content=b'{"metadata":{"labels":{"touched":"yes"}}}',
                                    headers={"Content-Type": "application/merge-patch+json"})
                assert r.status_code == 200, r.text
        for _ in range(50):
            if own:
                break
            await asyncio.sleep(0.1)
        assert own and not other
        await asyncio.sleep(0.3)
        refused = {(v.operation, v.subject) for v in kubelet.permission_violations}
        assert ("subscribe", f"kube.nodes.{N2}.>") in refused, refused
        assert ("publish", f"kube.events.core.pods.{NS}.forged") in refused, refused
    finally:
        await kubelet.close()
