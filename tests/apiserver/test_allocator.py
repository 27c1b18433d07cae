"""Service ClusterIP / NodePort allocation: the pure planning logic, then through real apiservers.

The API tests check what the allocator promises: no value handed out twice (50 concurrent
creates, two apiserver replicas racing for a tiny range), allocations surviving an apiserver
restart, release on delete and on a type change, requested values honoured or refused with
Kubernetes' 422 wording, and the bootstrapped `kubernetes` Service.
"""

from __future__ import annotations

import asyncio
import copy
import random
import uuid
from typing import Any

import httpx
import orjson
import pytest

from services.apiserver.allocator import (
    IP_PREFIX,
    PORT_PREFIX,
    IPRange,
    PortRange,
    RangeFull,
    allocated_ips,
    allocated_node_ports,
    pick_free,
    plan_service,
    prepare_update,
)
from services.apiserver.storage import Store
from shared.errors import ApiError
from tests.servers import Apiserver, Cluster

Obj = dict[str, Any]


def svc(name: str = "s", stype: str = "ClusterIP", ports: list[Obj] | None = None, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default", "uid": "u-" + name},
            "spec": {"type": stype, "ports": ports if ports is not None else [{"port": 80, "protocol": "TCP"}], **spec}}


def plan(new: Obj, old: Obj | None = None, taken_ips: set[int] | None = None, taken_ports: set[int] | None = None,
         cidr: str = "10.0.0.0/16", ports: str = "30000-32767") -> tuple[Obj, Any]:
    ips = taken_ips or set()
    pts = taken_ports or set()
    p = plan_service(old, new, IPRange(cidr), PortRange(ports), ips.__contains__, pts.__contains__, random.Random(7))
    return new, p


# ---- ranges and picking -----------------------------------------------------------------------
@pytest.mark.parametrize("cidr,size,first,last,outside,band", [
    ("10.0.0.0/16", 65534, "10.0.0.1", "10.0.255.254", ["10.0.0.0", "10.0.255.255", "10.1.0.0"], 256),
    ("10.0.0.0/24", 254, "10.0.0.1", "10.0.0.254", ["10.0.0.0", "10.0.0.255"], 16),
    ("10.0.0.0/28", 14, "10.0.0.1", "10.0.0.14", ["10.0.0.0", "10.0.0.15"], 1),  # tiny: only the first IP kept
    ("fd00::/112", 65535, "fd00::1", "fd00::ffff", ["fd00::", "fd00::1:0", "10.0.0.1"], 256),
])
def test_ip_range(cidr: str, size: int, first: str, last: str, outside: list[str], band: int) -> None:
    r = IPRange(cidr)
    assert r.size == size and r.first == first and r.ip_at(size - 1) == last
    assert r.static_band == band
    for ip in [*outside, "garbage"]:  # network and broadcast addresses are never handed out
        assert r.offset(ip) is None, ip


@pytest.mark.parametrize("bad", ["10.0.0.1/16", "10.0.0.0/31", "nonsense"])
def test_ip_range_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        IPRange(bad)


@pytest.mark.parametrize("spec,base,last,band", [("30000-32767", 30000, 32767, 86), ("30000+99", 30000, 30099, 16),
                                                 ("40000-40009", 40000, 40009, 0)])
def test_port_range(spec: str, base: int, last: int, band: int) -> None:
    r = PortRange(spec)
    assert (r.base, r.last, r.static_band) == (base, last, band)
    assert r.contains(base) and r.contains(last) and not r.contains(base - 1) and not r.contains(last + 1)


@pytest.mark.parametrize("bad", ["", "a-b", "0-10", "30000-70000", "32767-30000"])
def test_port_range_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        PortRange(bad)


def test_pick_free_prefers_the_dynamic_band_then_falls_back() -> None:
    rng = random.Random(1)
    picks = {pick_free(100, 20, lambda o: False, rng) for _ in range(200)}
    assert picks and all(p is not None and 20 <= p < 100 for p in picks)
    taken = set(range(20, 100))
    assert pick_free(100, 20, taken.__contains__, rng) in set(range(20))
    assert pick_free(100, 20, lambda o: o != 3, rng) == 3
    assert pick_free(100, 20, lambda o: True, rng) is None
    # the reserved prefix (the kubernetes Service's IP) is never picked
    assert pick_free(5, 0, lambda o: o != 0, rng, reserved=1) is None


# ---- planning ---------------------------------------------------------------------------------
def test_plan_clusterip_auto_fills_spec_like_kubernetes() -> None:
    new, p = plan(svc())
    ip = new["spec"]["clusterIP"]
    assert new["spec"]["clusterIPs"] == [ip] and new["spec"]["ipFamilies"] == ["IPv4"]
    assert new["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert IPRange("10.0.0.0/16").offset(ip) is not None and IPRange("10.0.0.0/16").offset(ip) >= 256  # type: ignore[operator]
    assert [(c.kind, c.value, c.requested) for c in p.claims] == [("ip", ip, False)]
    assert not any(port.get("nodePort") for port in new["spec"]["ports"])


def test_plan_avoids_taken_ips() -> None:
    r = IPRange("10.0.0.0/28")
    taken = set(range(r.size)) - {9}
    new, _ = plan(svc(), taken_ips=taken, cidr="10.0.0.0/28")
    assert new["spec"]["clusterIP"] == r.ip_at(9)
    with pytest.raises(RangeFull):
        plan(svc(), taken_ips=set(range(1, r.size)), cidr="10.0.0.0/28")


@pytest.mark.parametrize("ip,ok", [("10.0.0.5", True), ("10.0.0.0", False), ("10.0.255.255", False), ("10.1.0.5", False)])
def test_plan_requested_ip(ip: str, ok: bool) -> None:
    if ok:
        new, p = plan(svc(clusterIP=ip))
        assert new["spec"]["clusterIPs"] == [ip]
        assert [(c.value, c.requested, c.field) for c in p.claims] == [(ip, True, "spec.clusterIPs")]
        return
    with pytest.raises(ApiError) as e:
        plan(svc(clusterIP=ip))
    assert e.value.code == 422
    assert e.value.message == (f'Service "s" is invalid: spec.clusterIPs: Invalid value: []string{{"{ip}"}}: '
                               f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                               "The range of valid IPs is 10.0.0.0/16")


@pytest.mark.parametrize("case", ["headless", "externalname"])
def test_plan_no_ip(case: str) -> None:
    s = svc(clusterIP="None") if case == "headless" else svc(stype="ExternalName", ports=[], externalName="a.example")
    new, p = plan(s)
    assert p.claims == [] and p.releases == []
    assert new["spec"].get("clusterIP") == ("None" if case == "headless" else None)


def test_plan_dual_stack_refused() -> None:
    with pytest.raises(ApiError) as e:
        plan(svc(ipFamilyPolicy="RequireDualStack"))
    assert "this cluster is not configured for dual-stack services" in e.value.message
    with pytest.raises(ApiError) as e:
        plan(svc(ipFamilies=["IPv6"]))
    assert 'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster' in e.value.message
    new, _ = plan(svc(ipFamilyPolicy="PreferDualStack"))
    assert len(new["spec"]["clusterIPs"]) == 1


NODEPORT_CASES: list[tuple[str, Obj, list[int | None]]] = [
    ("auto per port", svc(stype="NodePort", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}]), [None, None]),
    ("requested", svc(stype="NodePort", ports=[{"port": 80, "nodePort": 30073}]), [30073]),
    ("tcp+udp share", svc(stype="NodePort", ports=[{"name": "t", "port": 53, "protocol": "TCP"},
                                                   {"name": "u", "port": 53, "protocol": "UDP"}]), [None, None]),
    ("shared takes the requested one", svc(stype="NodePort", ports=[{"name": "t", "port": 53, "protocol": "TCP"},
                                                                    {"name": "u", "port": 53, "protocol": "UDP",
                                                                     "nodePort": 30053}]), [30053, 30053]),
    ("loadbalancer", svc(stype="LoadBalancer", ports=[{"port": 80}]), [None]),
    ("loadbalancer without node ports", svc(stype="LoadBalancer", ports=[{"port": 80}],
                                            allocateLoadBalancerNodePorts=False), [0]),
]


@pytest.mark.parametrize("name,s,expect", NODEPORT_CASES, ids=[c[0] for c in NODEPORT_CASES])
def test_plan_node_ports(name: str, s: Obj, expect: list[int | None]) -> None:
    new, p = plan(copy.deepcopy(s))
    got = [int(port.get("nodePort") or 0) for port in new["spec"]["ports"]]
    for g, e in zip(got, expect, strict=True):
        if e is None:
            assert 30000 + 86 <= g <= 32767  # dynamic band first
        else:
            assert g == e
    if name.startswith(("tcp", "shared")):
        assert got[0] == got[1]
    port_claims = sorted(int(c.value) for c in p.claims if c.kind == "port")
    assert port_claims == sorted(set(g for g in got if g))


def test_plan_node_port_out_of_range() -> None:
    with pytest.raises(ApiError) as e:
        plan(svc(stype="NodePort", ports=[{"port": 80, "nodePort": 30073}]), ports="31000-31999")
    assert e.value.message == ('Service "s" is invalid: spec.ports[0].nodePort: Invalid value: 30073: provided port is '
                               "not in the valid range. The range of valid ports is 31000-31999")


def test_plan_health_check_node_port() -> None:
    new, p = plan(svc(stype="LoadBalancer", externalTrafficPolicy="Local"))
    hc = new["spec"]["healthCheckNodePort"]
    assert hc != new["spec"]["ports"][0]["nodePort"]
    assert {int(c.value) for c in p.claims if c.kind == "port"} == {hc, new["spec"]["ports"][0]["nodePort"]}


def test_plan_update_keeps_and_releases() -> None:
    old, _ = plan(svc(stype="NodePort", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}]))
    ip = old["spec"]["clusterIP"]
    kept = old["spec"]["ports"][0]["nodePort"]
    dropped = old["spec"]["ports"][1]["nodePort"]
    new = copy.deepcopy(old)
    new["spec"]["ports"] = [new["spec"]["ports"][0], {"name": "c", "port": 82}]
    _, p = plan(new, old)
    assert new["spec"]["clusterIP"] == ip and new["spec"]["ports"][0]["nodePort"] == kept
    added = new["spec"]["ports"][1]["nodePort"]
    assert added not in (kept, dropped)
    assert [c.value for c in p.claims] == [str(added)]
    assert p.releases == [PORT_PREFIX + str(dropped)]


def test_prepare_update_patches_values_a_client_left_out() -> None:
    old, _ = plan(svc(stype="NodePort", ports=[{"name": "a", "port": 80}]))
    new = svc(stype="NodePort", ports=[{"name": "a", "port": 80}])  # as sent by `kubectl apply`
    prepare_update(old, new)
    assert new["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    assert new["spec"]["ports"][0]["nodePort"] == old["spec"]["ports"][0]["nodePort"]
    _, p = plan(new, old)
    assert p.claims == [] and p.releases == []


def test_prepare_update_nodeport_to_clusterip_drops_and_releases() -> None:
    old, _ = plan(svc(stype="NodePort", ports=[{"port": 80, "nodePort": 30073}], externalTrafficPolicy="Cluster"))
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    prepare_update(old, new)
    assert "nodePort" not in new["spec"]["ports"][0] and "externalTrafficPolicy" not in new["spec"]
    _, p = plan(new, old)
    assert p.claims == [] and p.releases == [PORT_PREFIX + "30073"]


def test_prepare_update_to_externalname_releases_ip() -> None:
    old, _ = plan(svc())
    new = copy.deepcopy(old)
    new["spec"].update(type="ExternalName", externalName="db.example", ports=[])
    prepare_update(old, new)
    assert "clusterIP" not in new["spec"] and "clusterIPs" not in new["spec"] and "ipFamilies" not in new["spec"]
    _, p = plan(new, old)
    assert p.releases == [IP_PREFIX + old["spec"]["clusterIP"]]
    assert allocated_ips(new) == [] and allocated_node_ports(new) == []


# ---- through the API --------------------------------------------------------------------------
def nodeport_service(name: str, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}


async def test_kubernetes_service_is_bootstrapped(api: httpx.AsyncClient, cluster: Cluster) -> None:
    r = await api.get("/api/v1/namespaces/default/services/kubernetes")
    assert r.status_code == 200, r.text
    spec = r.json()["spec"]
    assert spec["clusterIP"] == "10.0.0.1" and spec["clusterIPs"] == ["10.0.0.1"]
    assert spec["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": cluster.apiserver.port}]
    r = await api.get("/api/v1/namespaces/default/endpoints/kubernetes")
    assert r.json()["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}],
                                    "ports": [{"name": "https", "port": cluster.apiserver.port, "protocol": "TCP"}]}]
    r = await api.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
    body = r.json()
    assert body["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert body["endpoints"][0]["addresses"] == ["127.0.0.1"] and body["ports"][0]["port"] == cluster.apiserver.port
    # nobody else gets the first IP
    r = await api.post("/api/v1/namespaces/default/services",
                       json={"metadata": {"name": "steal-" + uuid.uuid4().hex[:6]},
                             "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 1}]}})
    assert r.status_code == 422 and "provided IP is already allocated" in r.json()["message"]


async def test_fifty_concurrent_creates_never_share_an_ip_or_port(api: httpx.AsyncClient, ns: str) -> None:
    async def create(i: int) -> Obj:
        r = await api.post(f"/api/v1/namespaces/{ns}/services", json=nodeport_service(f"c{i}"))
        assert r.status_code == 201, r.text
        return dict(r.json())

    made = await asyncio.gather(*(create(i) for i in range(50)))
    ips = [s["spec"]["clusterIP"] for s in made]
    ports = [s["spec"]["ports"][0]["nodePort"] for s in made]
    assert len(set(ips)) == 50 and len(set(ports)) == 50
    # and what the API lists agrees with what the creates returned
    listed = (await api.get(f"/api/v1/namespaces/{ns}/services")).json()["items"]
    assert sorted(s["spec"]["clusterIP"] for s in listed) == sorted(ips)


async def test_concurrent_requests_for_one_ip_and_port_have_one_winner(api: httpx.AsyncClient, ns: str) -> None:
    async def create(i: int, **spec: Any) -> httpx.Response:
        return await api.post(f"/api/v1/namespaces/{ns}/services", json=nodeport_service(f"w{i}", **spec))

    rs = await asyncio.gather(*(create(i, clusterIP="10.0.0.207") for i in range(20)))
    assert sorted(r.status_code for r in rs) == [201] + [422] * 19
    loser = next(r for r in rs if r.status_code == 422).json()
    assert loser["message"].endswith('spec.clusterIPs: Invalid value: []string{"10.0.0.207"}: '
                                     "failed to allocate IP 10.0.0.207: provided IP is already allocated")
    assert loser["details"]["causes"][0]["field"] == "spec.clusterIPs"
    rs = await asyncio.gather(*(create(100 + i, ports=[{"port": 80, "nodePort": 30177}]) for i in range(20)))
    assert sorted(r.status_code for r in rs) == [201] + [422] * 19


async def test_requested_values_honoured_or_refused(api: httpx.AsyncClient, ns: str) -> None:
    coll = f"/api/v1/namespaces/{ns}/services"
    r = await api.post(coll, json=nodeport_service("a", clusterIP="10.0.0.205", ports=[{"port": 80, "nodePort": 30173}]))
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["clusterIP"] == "10.0.0.205" and r.json()["spec"]["ports"][0]["nodePort"] == 30173
    r = await api.post(coll, json=nodeport_service("b", clusterIP="10.0.0.205"))
    assert r.status_code == 422
    assert r.json()["message"] == ('Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.205"}: '
                                   "failed to allocate IP 10.0.0.205: provided IP is already allocated")
    r = await api.post(coll, json=nodeport_service("b", ports=[{"port": 80, "nodePort": 30173}]))
    assert r.status_code == 422
    assert r.json()["message"] == ('Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30173: '
                                   "provided port is already allocated")
    r = await api.post(coll, json=nodeport_service("b", clusterIP="10.9.0.5"))
    assert r.status_code == 422 and "is not in the valid range. The range of valid IPs is 10.0.0.0/16" in r.json()["message"]
    # a refused create leaked nothing: the name is free and so are its auto-picked values
    r = await api.get(f"{coll}/b")
    assert r.status_code == 404
    # headless and ExternalName get no IP
    r = await api.post(coll, json={"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "selector": {"a": "b"},
                                                                        "ports": [{"port": 80}]}})
    assert r.status_code == 201 and r.json()["spec"]["clusterIPs"] == ["None"]
    r = await api.post(coll, json={"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "x.example"}})
    assert r.status_code == 201 and "clusterIP" not in r.json()["spec"]


async def test_delete_and_type_change_release(api: httpx.AsyncClient, ns: str) -> None:
    coll = f"/api/v1/namespaces/{ns}/services"
    r = await api.post(coll, json=nodeport_service("a", clusterIP="10.0.0.206", ports=[{"port": 80, "nodePort": 30174}]))
    assert r.status_code == 201, r.text
    # NodePort -> ClusterIP releases the node port (the client sends the object back unchanged otherwise)
    cur = r.json()
    cur["spec"]["type"] = "ClusterIP"
    r = await api.put(f"{coll}/a", json=cur)
    assert r.status_code == 200, r.text
    assert "nodePort" not in r.json()["spec"]["ports"][0] and r.json()["spec"]["clusterIP"] == "10.0.0.206"
    r = await api.post(coll, json=nodeport_service("b", ports=[{"port": 80, "nodePort": 30174}]))
    assert r.status_code == 201, r.text
    # a PUT that leaves clusterIP and nodePort out keeps them (kubectl apply)
    r = await api.put(f"{coll}/b", json=nodeport_service("b"))
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["ports"][0]["nodePort"] == 30174
    # deletion releases the IP
    r = await api.delete(f"{coll}/a")
    assert r.status_code == 200
    r = await api.post(coll, json=nodeport_service("c", clusterIP="10.0.0.206"))
    assert r.status_code == 201, r.text
    # deleting the namespace's services one by one frees the node port too
    assert (await api.delete(f"{coll}/b")).status_code == 200
    r = await api.post(coll, json=nodeport_service("d", ports=[{"port": 80, "nodePort": 30174}]))
    assert r.status_code == 201, r.text


@pytest.mark.slow
def test_allocations_persist_across_restarts_and_replicas() -> None:
    """Own cluster: a /27 range shared by two apiserver replicas, then a restart."""
    c = Cluster()
    c.apiserver = Apiserver(c.workdir, c.etcd, c.nats, extra=["--service-cluster-ip-range", "10.0.0.0/27",
                                                               "--service-node-port-range", "30000-30049"])
    second = Apiserver(c.workdir, c.etcd, c.nats, tag="2", extra=["--no-publish", "--service-cluster-ip-range",
                                                                   "10.0.0.0/27", "--service-node-port-range",
                                                                   "30000-30049"])
    c.start()
    try:
        second.start()
        urls = [c.apiserver.url, second.url]

        async def fill() -> list[Obj]:
            async with httpx.AsyncClient(verify=c.ssl, timeout=30) as client:
                async def create(i: int) -> Obj:
                    r = await client.post(f"{urls[i % 2]}/api/v1/namespaces/default/services",
                                          json=nodeport_service(f"r{i}"))
                    assert r.status_code == 201, r.text
                    return dict(r.json())
                # 30 usable IPs in a /27, one is the kubernetes Service's: 29 left, all handed out at once
                return list(await asyncio.gather(*(create(i) for i in range(29))))

        made = asyncio.run(fill())
        ips = {s["spec"]["clusterIP"] for s in made}
        ports = {s["spec"]["ports"][0]["nodePort"] for s in made}
        assert len(ips) == 29 and "10.0.0.1" not in ips and len(ports) == 29
        r = httpx.post(f"{second.url}/api/v1/namespaces/default/services", json=nodeport_service("full"), verify=c.ssl)
        assert r.status_code == 500 and "failed to allocate a serviceIP: range is full" in r.json()["message"]

        # free one IP and port, and store a Service holding them the way data written before allocation
        # existed looks (no allocation keys): the restarted apiserver adopts it
        gone = made[1]["spec"]
        assert httpx.delete(f"{second.url}/api/v1/namespaces/default/services/r1", verify=c.ssl).status_code == 200
        free_port = min(set(range(30000, 30050)) - ports)
        legacy = {"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": "legacy", "namespace": "default", "uid": "legacy-uid"},
                  "spec": {"type": "NodePort", "clusterIP": gone["clusterIP"], "clusterIPs": [gone["clusterIP"]],
                           "ports": [{"port": 80, "protocol": "TCP", "nodePort": free_port}]}}

        async def put_legacy() -> None:
            store = Store([c.etcd.url])
            await store.open()
            try:
                await store.create("/registry/services/default/legacy", orjson.dumps(legacy))
            finally:
                await store.close()

        second.stop()
        c.apiserver.stop()
        asyncio.run(put_legacy())
        c.apiserver.start()
        api = httpx.Client(**c.admin_kwargs(), timeout=30)
        taken = made[0]["spec"]
        for ip in (taken["clusterIP"], gone["clusterIP"]):
            r = api.post("/api/v1/namespaces/default/services", json=nodeport_service("again", clusterIP=ip))
            assert r.status_code == 422 and "provided IP is already allocated" in r.json()["message"], r.text
        r = api.post("/api/v1/namespaces/default/services", json=nodeport_service("full"))
        assert r.status_code == 500
        # a delete after the restart frees exactly that IP, and the next create gets it
        assert api.delete("/api/v1/namespaces/default/services/r0").status_code == 200
        r = api.post("/api/v1/namespaces/default/services",
                     json=nodeport_service("x", ports=[{"port": 80, "nodePort": free_port}]))
        assert r.status_code == 422 and "provided port is already allocated" in r.json()["message"], r.text
        r = api.post("/api/v1/namespaces/default/services", json=nodeport_service("next"))
        assert r.status_code == 201, r.text
        assert r.json()["spec"]["clusterIP"] == taken["clusterIP"]
        held = (ports - {taken["ports"][0]["nodePort"], gone["ports"][0]["nodePort"]}) | {free_port}
        assert r.json()["spec"]["ports"][0]["nodePort"] not in held
        # the kubernetes Service survived the restart unchanged
        assert api.get("/api/v1/namespaces/default/services/kubernetes").json()["spec"]["clusterIP"] == "10.0.0.1"
    finally:
        second.stop()
        c.stop()


def test_a_replica_with_a_stale_view_still_fills_a_nearly_full_range() -> None:
    """Replica B learned the range when it was empty; A then hands out 230 of a /24's 253 free IPs.
    B's next creates pick values A holds: after a lost race it must learn what etcd holds, not lose
    20 races in a row and answer 409 (seen with --workers 2 filling a /22 with 1,000 Services)."""
    c = Cluster()
    extra = ["--service-cluster-ip-range", "10.0.0.0/24"]
    c.apiserver = Apiserver(c.workdir, c.etcd, c.nats, extra=extra)
    second = Apiserver(c.workdir, c.etcd, c.nats, tag="2", extra=["--no-publish", *extra])
    c.start()
    try:
        second.start()

        def cluster_ip_service(name: str) -> Obj:
            return {"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}

        async def create(url: str, names: list[str], concurrency: int) -> list[httpx.Response]:
            sem = asyncio.Semaphore(concurrency)
            async with httpx.AsyncClient(verify=c.ssl, timeout=60) as client:
                async def one(name: str) -> httpx.Response:
                    async with sem:
                        return await client.post(f"{url}/api/v1/namespaces/default/services",
                                                 json=cluster_ip_service(name))
                return list(await asyncio.gather(*(one(n) for n in names)))

        assert [r.status_code for r in asyncio.run(create(second.url, ["b-first"], 1))] == [201]  # B's view: now
        made = asyncio.run(create(c.apiserver.url, [f"a{i}" for i in range(230)], 16))
        assert all(r.status_code == 201 for r in made), [r.text for r in made if r.status_code != 201][:1]
        late = asyncio.run(create(second.url, [f"b{i}" for i in range(20)], 4))
        assert [r.status_code for r in late] == [201] * 20, [r.text for r in late if r.status_code != 201][:1]
        ips = {r.json()["spec"]["clusterIP"] for r in [*made, *late]}
        assert len(ips) == 250
    finally:
        second.stop()
        c.stop()
