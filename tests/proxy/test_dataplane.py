"""`kubenats proxy` against the real kernel and real Docker containers.

One module-wide setup: an etcd + NATS + apiserver cluster whose service range is 10.250.0.0/24,
three busybox web servers on the docker bridge (each answers with its own name), an idle client
container, a NodePort Service (node port 30073) and a ClientIP-affinity Service whose
EndpointSlices the tests write themselves (there is no endpoints controller yet), and the proxy as
a child process with its own nftables table. Every test that changes the endpoints puts them back.

Traffic goes only to this machine and to the containers started here: the tests check that
`ip route get <service ip>` says `local` before connecting. Containers, the table and the route
are removed at the end, also when a test fails.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.proxy import dataplane, proxier
from tests.proxy.hostnet import (
    ProxyProcess,
    assert_local,
    ensure_image,
    eventually,
    hits_from_container,
    hits_from_host,
    http_get,
    node_ip,
    remove_containers,
    route_get,
    run_idle,
    run_web,
    skip_reason,
    unique,
)
from tests.servers import Apiserver, Cluster

_skip = skip_reason()
pytestmark = [pytest.mark.skipif(_skip is not None, reason=_skip or ""), pytest.mark.slow]

CIDR = "10.250.0.0/24"
TABLE = "kubenats_test"
NODE_PORT = 30073
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
SERVICES = "/api/v1/namespaces/default/services"


@dataclass
class Env:
    cluster: Cluster
    api: httpx.Client
    proxy: ProxyProcess
    web: list[str]
    ips: list[str]
    client: str
    cip: str = ""
    sticky_ip: str = ""

    def slice_body(self, service: str, ready: dict[str, bool]) -> dict[str, Any]:
        eps = [{"addresses": [ip], "conditions": {"ready": ready[name]}, "targetRef": {"kind": "Pod", "name": name}}
               for name, ip in zip(self.web, self.ips, strict=True) if name in ready]
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{service}-1", "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4", "endpoints": eps, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}

    def set_endpoints(self, ready: dict[str, bool], service: str = "web") -> None:
        """Replace the service's slice: names missing from `ready` are removed."""
        body = self.slice_body(service, ready)
        cur = self.api.get(f"{SLICES}/{service}-1")
        if cur.status_code == 404:
            r = self.api.post(SLICES, json=body)
        else:
            body["metadata"]["resourceVersion"] = cur.json()["metadata"]["resourceVersion"]
            r = self.api.put(f"{SLICES}/{service}-1", json=body)
        assert r.status_code in (200, 201), r.text

    def all_ready(self) -> dict[str, bool]:
        return dict.fromkeys(self.web, True)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    ensure_image()
    cluster = Cluster()
    cluster.apiserver = Apiserver(cluster.workdir, cluster.etcd, cluster.nats, extra=["--service-cluster-ip-range", CIDR])
    proxy = ProxyProcess(cluster.component_args("proxy"), cluster.nats.url, CIDR, TABLE, cluster.workdir / "proxy.log")
    proxy.cleanup()  # leftovers of an interrupted earlier run
    names: list[str] = []
    try:
        cluster.start()
        web = [unique(f"pxt-web{i}") for i in range(3)]
        names += web
        ips = [run_web(n) for n in web]
        client = unique("pxt-client")
        names.append(client)
        run_idle(client)
        e = Env(cluster, httpx.Client(**cluster.admin_kwargs(), timeout=30), proxy, web, ips, client)
        r = e.api.post(SERVICES, json={"metadata": {"name": "web"}, "spec": {
            "type": "NodePort", "ports": [{"name": "http", "port": 8080, "targetPort": 80, "nodePort": NODE_PORT}]}})
        assert r.status_code == 201, r.text
        e.cip = r.json()["spec"]["clusterIP"]
        r = e.api.post(SERVICES, json={"metadata": {"name": "sticky"}, "spec": {
            "ports": [{"name": "http", "port": 8080, "targetPort": 80}], "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}})
        assert r.status_code == 201, r.text
        e.sticky_ip = r.json()["spec"]["clusterIP"]
        e.set_endpoints(e.all_ready())
        e.set_endpoints(e.all_ready(), service="sticky")
        proxy.start()
        eventually(lambda: route_get(e.cip).startswith("local "), 10, "the service range route")
        yield e
    finally:
        proxy.stop()
        done = proxy.cleanup()
        remove_containers(names)
        cluster.stop()
        assert done.returncode == 0, done.stderr


def refused(ip: str, port: int) -> bool:
    try:
        http_get(ip, port, timeout=2)
    except ConnectionRefusedError:
        return True
    return False


def test_service_range_is_local_and_unserved_addresses_are_refused(env: Env) -> None:
    for ip in (env.cip, env.sticky_ip, "10.250.0.200", "10.250.0.254"):
        assert_local(ip)
    assert refused("10.250.0.200", 80)  # no Service has this IP
    assert refused(env.cip, 9999)  # the Service has no such port


def test_clusterip_from_the_host_reaches_every_endpoint(env: Env) -> None:
    assert_local(env.cip)
    hits = hits_from_host(env.cip, 8080, 60)
    assert set(hits) == set(env.web), hits


def test_clusterip_from_another_container_reaches_every_endpoint(env: Env) -> None:
    assert_local(env.cip)
    hits = hits_from_container(env.client, env.cip, 8080, 60)
    assert "FAILED" not in hits and set(hits) == set(env.web), hits


def test_nodeport_answers_on_the_node_ip(env: Env) -> None:
    ip = node_ip()
    assert_local(ip)  # the machine's own address
    hits = Counter(http_get(ip, NODE_PORT) for _ in range(60))
    assert set(hits) == set(env.web), hits
    # deliberately not served on loopback (kube-proxy's nftables mode does not either)
    assert refused("127.0.0.1", NODE_PORT)


def test_hairpin_a_pod_reaches_itself_through_its_service(env: Env) -> None:
    assert_local(env.cip)
    hits = hits_from_container(env.web[0], env.cip, 8080, 60)
    assert "FAILED" not in hits, hits
    assert env.web[0] in hits, f"never reached itself: {hits}"
    assert set(hits) == set(env.web)


def test_kubernetes_service_reaches_the_apiserver_from_the_host(env: Env) -> None:
    ip = env.api.get(f"{SERVICES}/kubernetes").json()["spec"]["clusterIP"]
    assert ip == "10.250.0.1"
    assert_local(ip)
    ctx = ssl.create_default_context(cafile=str(env.cluster.pki.ca.cert))  # the apiserver's own certificate
    r = httpx.get(f"https://{ip}:443/healthz", verify=ctx, timeout=5)
    assert r.status_code == 200 and r.text == "ok"


def test_session_affinity_client_ip_sticks_to_one_endpoint(env: Env) -> None:
    assert_local(env.sticky_ip)
    hits = hits_from_host(env.sticky_ip, 8080, 30)
    assert len(hits) == 1, hits
    from_container = hits_from_container(env.client, env.sticky_ip, 8080, 20)
    assert len(from_container) == 1 and "FAILED" not in from_container, from_container


def test_endpoint_marked_not_ready_gets_no_traffic(env: Env) -> None:
    assert_local(env.cip)
    ready = env.all_ready()
    ready[env.web[2]] = False
    env.set_endpoints(ready)
    try:
        # 60 misses in a row: by chance (2/3)^60, so a pass means the rules changed
        eventually(lambda: env.web[2] not in hits_from_host(env.cip, 8080, 60), 10, "the not-ready endpoint to leave")
        hits = hits_from_host(env.cip, 8080, 60)
        assert env.web[2] not in hits and set(hits) == set(env.web[:2]), hits
    finally:
        env.set_endpoints(env.all_ready())
    eventually(lambda: env.web[2] in hits_from_host(env.cip, 8080, 30), 10, "the endpoint to come back")


def test_removed_endpoint_leaves_rotation_within_two_seconds(env: Env) -> None:
    assert_local(env.cip)
    gone = env.web[1]
    keep = {n: True for n in env.web if n != gone}
    # start from a quiet proxy: the last sync is over a second ago, as in steady state
    time.sleep(1.2)
    env.set_endpoints(keep)
    written = time.monotonic()
    try:
        while True:
            # batches of 40: one misses the endpoint by chance with probability (2/3)^40, about 1e-7
            hits = hits_from_host(env.cip, 8080, 40)
            if gone not in hits:
                break
            assert time.monotonic() - written < 10, "endpoint still in rotation after 10 s"
        took = time.monotonic() - written
        assert took < 2.5, f"took {took:.2f}s"
        hits = hits_from_host(env.cip, 8080, 60)
        assert gone not in hits and set(hits) == set(keep), hits
    finally:
        env.set_endpoints(env.all_ready())
    eventually(lambda: gone in hits_from_host(env.cip, 8080, 30), 10, "the endpoint to come back")


def _udp_flows(cip: str, nat_ip: str) -> int:
    out = subprocess.run(["conntrack", "-L", "-p", "udp", "--orig-dst", cip, "--dst-nat", nat_ip],
                         capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("udp"))


@pytest.mark.skipif(shutil.which("conntrack") is None, reason="conntrack is not installed")
def test_udp_flows_to_a_removed_endpoint_are_flushed(env: Env) -> None:
    r = env.api.post(SERVICES, json={"metadata": {"name": "dns"}, "spec": {
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]}})
    assert r.status_code == 201, r.text
    cip = r.json()["spec"]["clusterIP"]
    body = env.slice_body("dns", {env.web[0]: True, env.web[1]: True})
    body["ports"] = [{"name": "dns", "port": 5353, "protocol": "UDP"}]
    assert env.api.post(SLICES, json=body).status_code == 201
    keep, gone = env.ips[0], env.ips[1]
    try:
        eventually(lambda: route_get(cip).startswith("local "), 10, "the route")
        assert_local(cip)

        def send() -> bool:  # datagrams from fresh source ports: new flows, DNATed at random
            for _ in range(20):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(b"q", (cip, 53))
            return _udp_flows(cip, gone) > 0 and _udp_flows(cip, keep) > 0
        eventually(send, 10, "UDP flows to both endpoints")
        body = env.slice_body("dns", {env.web[0]: True})
        body["ports"] = [{"name": "dns", "port": 5353, "protocol": "UDP"}]
        body["metadata"]["resourceVersion"] = env.api.get(f"{SLICES}/dns-1").json()["metadata"]["resourceVersion"]
        assert env.api.put(f"{SLICES}/dns-1", json=body).status_code == 200
        eventually(lambda: _udp_flows(cip, gone) == 0, 10, "the removed endpoint's UDP flows to be deleted")
        assert _udp_flows(cip, keep) > 0  # the others stay
    finally:
        env.api.delete(f"{SLICES}/dns-1")
        env.api.delete(f"{SERVICES}/dns")


def test_restarting_the_proxy_does_not_interrupt_traffic(env: Env) -> None:
    assert_local(env.cip)
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal served
        while not stop.is_set():
            try:
                http_get(env.cip, 8080, timeout=2)
                served += 1
            except OSError as e:
                failures.append(repr(e))
            time.sleep(0.005)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        env.proxy.stop()
        time.sleep(1.0)
        syncs_before = env.proxy.syncs()
        env.proxy.start()
        eventually(lambda: env.proxy.syncs() > syncs_before, 10, "the restarted proxy's first sync")
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(10)
    assert not failures, f"{len(failures)} failed of {served + len(failures)}: {failures[:3]}"
    assert served > 50
    # and the new process still follows changes
    env.set_endpoints({env.web[0]: True})
    try:
        eventually(lambda: set(hits_from_host(env.cip, 8080, 15)) == {env.web[0]}, 10, "a change after the restart")
    finally:
        env.set_endpoints(env.all_ready())
    eventually(lambda: len(hits_from_host(env.cip, 8080, 30)) == 3, 10, "all endpoints back")


def test_iptables_mode_serves_the_same_traffic(env: Env) -> None:
    """The fallback mode: the nftables proxy makes way (cleanup), an iptables-mode proxy takes over."""
    env.proxy.stop()
    assert env.proxy.cleanup().returncode == 0
    ipt = ProxyProcess(env.cluster.component_args("proxy"), env.cluster.nats.url, CIDR, TABLE,
                       env.cluster.workdir / "proxy-iptables.log", extra=["--proxy-mode", "iptables"])
    try:
        ipt.start()
        eventually(lambda: route_get(env.cip).startswith("local "), 10, "the service range route")
        assert_local(env.cip)
        assert "KUBENATS-SERVICES" in subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                                                     text=True).stdout
        assert set(hits_from_host(env.cip, 8080, 60)) == set(env.web)
        hits = hits_from_container(env.web[0], env.cip, 8080, 60)  # hairpin included
        assert "FAILED" not in hits and set(hits) == set(env.web), hits
        ip = node_ip()
        assert_local(ip)
        assert set(Counter(http_get(ip, NODE_PORT) for _ in range(60))) == set(env.web)
        assert len(hits_from_host(env.sticky_ip, 8080, 20)) == 1
        assert refused("10.250.0.200", 80)
        ready = env.all_ready()
        ready[env.web[2]] = False
        env.set_endpoints(ready)
        try:
            eventually(lambda: env.web[2] not in hits_from_host(env.cip, 8080, 60), 10, "the not-ready endpoint to leave")
        finally:
            env.set_endpoints(env.all_ready())
    finally:
        ipt.stop()
        done = ipt.cleanup()
    assert done.returncode == 0, done.stderr
    assert "KUBENATS" not in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    env.proxy.start()  # the nftables proxy again, for what follows


def test_cleanup_leaves_no_table_and_no_route(env: Env) -> None:
    """Last in the module: it tears the dataplane down."""
    env.proxy.stop()
    r = env.proxy.cleanup()
    assert r.returncode == 0, r.stderr
    listed = subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True, text=True)
    assert listed.returncode != 0, listed.stdout[:500]
    assert not route_get(env.cip).startswith("local "), route_get(env.cip)
    assert f"local {CIDR}" not in subprocess.run(["ip", "route", "show", "table", "local"], capture_output=True,
                                                 text=True).stdout
    # a second cleanup is a no-op that succeeds
    assert env.proxy.cleanup().returncode == 0


# ---- the generated transactions in the kernel (no traffic, no cluster) --------------------------
def _state(variant: int) -> proxier.RuleSet:
    cfg = proxier.ProxyConfig(service_cidr="10.251.0.0/24", table="kubenats_txn", node_name="n1",
                              node_ips=("127.0.0.10",))

    def svc(name: str, ip: str, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "t"}, "spec": {
            "clusterIP": ip, "ports": [{"name": "p", "port": 80, "protocol": "TCP", **spec.pop("port", {})}], **spec}}

    def sl(name: str, *ips: str, ready: bool = True) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "t", "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "endpoints": [{"addresses": [ip], "conditions": {"ready": ready},
                                                      "nodeName": "n1"} for ip in ips],
                "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}]}

    if variant == 0:
        return proxier.build([], cfg)
    if variant == 1:
        svcs = [svc("a", "10.251.0.10"), svc("b", "10.251.0.11", type="NodePort", port={"nodePort": 30081},
                                             sessionAffinity="ClientIP"),
                svc("c", "10.251.0.12", type="NodePort", port={"nodePort": 30082})]
        slices = [sl("a", "127.0.1.1", "127.0.1.2"), sl("b", "127.0.1.3", "127.0.1.4"), sl("c", "127.0.1.5", ready=False)]
    else:
        svcs = [svc("a", "10.251.0.10", sessionAffinity="ClientIP",
                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}}),
                svc("c", "10.251.0.12", type="NodePort", port={"nodePort": 30082}, externalTrafficPolicy="Local"),
                svc("d", "10.251.0.13")]
        slices = [sl("a", "127.0.1.2", "127.0.1.6"), sl("c", "127.0.1.5"), sl("d", "127.0.1.7")]
    return proxier.build(proxier.service_ports(svcs, slices), cfg)


def _table_json(table: str) -> dict[str, Any]:
    out = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True, check=True).stdout
    chains: dict[str, list[str]] = {}
    sets: dict[str, Any] = {}
    for item in json.loads(out)["nftables"]:
        if "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(json.dumps(item["rule"]["expr"], sort_keys=True))
        elif "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        for kind in ("set", "map"):
            if kind in item:
                s = item[kind]
                sets[s["name"]] = (kind, json.dumps(s.get("type")), s.get("timeout"),
                                   sorted(json.dumps(e, sort_keys=True) for e in s.get("elem", [])))
    return {"chains": chains, "sets": sets}


def _fresh(rs: proxier.RuleSet) -> dict[str, Any]:
    ref = proxier.RuleSet("kubenats_txn_ref", rs.chains, rs.sets)
    asyncio.run(dataplane.nft_delete_table("kubenats_txn_ref"))
    asyncio.run(dataplane.nft_apply(ref.render()))
    try:
        return _table_json("kubenats_txn_ref")
    finally:
        asyncio.run(dataplane.nft_delete_table("kubenats_txn_ref"))


def test_full_and_incremental_transactions_reach_the_state_of_a_fresh_load() -> None:
    states = [_state(1), _state(2), _state(0), _state(1)]
    try:
        asyncio.run(dataplane.nft_apply(proxier.full_transaction(states[0])))
        assert _table_json("kubenats_txn") == _fresh(states[0])
        for old, new in itertools.pairwise(states):
            asyncio.run(dataplane.nft_apply(proxier.diff_transaction(old, new)))
            assert _table_json("kubenats_txn") == _fresh(new)
        # a full transaction over a table holding something else entirely (a restart after changes)
        contents = asyncio.run(dataplane.nft_table_contents("kubenats_txn"))
        asyncio.run(dataplane.nft_apply(proxier.full_transaction(states[1], contents.chains, contents.sets)))
        assert _table_json("kubenats_txn") == _fresh(states[1])
    finally:
        asyncio.run(dataplane.nft_delete_table("kubenats_txn"))
        asyncio.run(dataplane.nft_delete_table("kubenats_txn_ref"))
    assert not asyncio.run(dataplane.nft_table_exists("kubenats_txn"))
