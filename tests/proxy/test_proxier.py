"""The proxy's pure rule generation, table-driven: API objects in, nftables text out.

No root, kernel or cluster: these tests read the generated rule set chain by chain. That the
kernel accepts what is generated, and that a full plus incremental transactions reach the same
table as a fresh load, is checked in test_dataplane.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.proxy import proxier
from services.proxy.proxier import Endpoint, ProxyConfig, RuleSet, ServicePort

Obj = dict[str, Any]
CFG = ProxyConfig(service_cidr="10.0.0.0/16", table="kubenats", node_name="node-a", node_ips=("127.0.0.10",))


def service(name: str = "web", ns: str = "default", ip: str = "10.0.0.10", stype: str = "ClusterIP",
            ports: list[Obj] | None = None, **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"type": stype, "clusterIP": ip, "clusterIPs": [ip],
                     "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}], **spec}}


def eps(*addrs: str | tuple[str, dict[str, Any]], node: str = "") -> list[Obj]:
    out = []
    for a in addrs:
        ip, cond = (a, {"ready": True}) if isinstance(a, str) else a
        e: Obj = {"addresses": [ip], "conditions": cond}
        if node:
            e["nodeName"] = node
        out.append(e)
    return out


def eslice(svc: str, endpoints: list[Obj], ns: str = "default", name: str = "", port: int = 8080,
           port_name: str = "http", protocol: str = "TCP", address_type: str = "IPv4") -> Obj:
    return {"metadata": {"name": name or f"{svc}-x", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": address_type, "endpoints": endpoints,
            "ports": [{"name": port_name, "port": port, "protocol": protocol}]}


def sp(ips: list[str], **kw: Any) -> ServicePort:
    return ServicePort(namespace="default", name="web", port_name="http", protocol="TCP", cluster_ip="10.0.0.10",
                       port=80, endpoints=tuple(Endpoint(ip, 8080) for ip in ips), **kw)


# ---- joining Services and EndpointSlices ---------------------------------------------------------
JOIN_CASES: list[tuple[str, list[Obj], list[Obj], list[Obj], list[tuple[str, int, bool]]]] = [
    ("ready endpoints", [service()], [eslice("web", eps("127.0.1.1", "127.0.1.2"))], [],
     [("127.0.1.1", 8080, True), ("127.0.1.2", 8080, True)]),
    ("ready unset means ready", [service()], [eslice("web", eps(("127.0.1.1", {})))], [], [("127.0.1.1", 8080, True)]),
    ("not ready kept, marked", [service()], [eslice("web", eps("127.0.1.1", ("127.0.1.2", {"ready": False})))], [],
     [("127.0.1.1", 8080, True), ("127.0.1.2", 8080, False)]),
    ("port matched by name", [service()], [eslice("web", eps("127.0.1.1"), port_name="other")], [], []),
    ("port matched by protocol", [service()], [eslice("web", eps("127.0.1.1"), protocol="UDP")], [], []),
    ("slices merged and deduplicated", [service()],
     [eslice("web", eps("127.0.1.1", "127.0.1.2"), name="a"), eslice("web", eps("127.0.1.2", "127.0.1.3"), name="b")],
     [], [("127.0.1.1", 8080, True), ("127.0.1.2", 8080, True), ("127.0.1.3", 8080, True)]),
    ("other namespace's slice ignored", [service()], [eslice("web", eps("127.0.1.1"), ns="other")], [], []),
    ("IPv6 slice ignored", [service()], [eslice("web", eps("fd00::1"), address_type="IPv6")], [], []),
    ("Endpoints used when there is no slice", [service()], [],
     [{"metadata": {"name": "web", "namespace": "default"},
       "subsets": [{"addresses": [{"ip": "127.0.2.1"}], "notReadyAddresses": [{"ip": "127.0.2.2"}],
                    "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}]}]}],
     [("127.0.2.1", 9090, True), ("127.0.2.2", 9090, False)]),
    ("slices win over Endpoints", [service()], [eslice("web", eps("127.0.1.1"))],
     [{"metadata": {"name": "web", "namespace": "default"},
       "subsets": [{"addresses": [{"ip": "127.0.2.1"}], "ports": [{"name": "http", "port": 9090}]}]}],
     [("127.0.1.1", 8080, True)]),
]


@pytest.mark.parametrize("name,svcs,slices,endpoints,want", JOIN_CASES, ids=[c[0] for c in JOIN_CASES])
def test_service_ports_join(name: str, svcs: list[Obj], slices: list[Obj], endpoints: list[Obj],
                            want: list[tuple[str, int, bool]]) -> None:
    ports = proxier.service_ports(svcs, slices, endpoints)
    assert len(ports) == 1
    assert [(e.ip, e.port, e.ready) for e in ports[0].endpoints] == want


@pytest.mark.parametrize("svc", [
    service(ip="None"),
    {"metadata": {"name": "x", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "a.example"}},
    {**service(), "metadata": {"name": "web", "namespace": "default",
                               "labels": {"service.kubernetes.io/service-proxy-name": "other"}}},
    service(ip="fd00::10"),
], ids=["headless", "externalname", "other proxy", "ipv6"])
def test_services_not_proxied(svc: Obj) -> None:
    assert proxier.service_ports([svc], [], []) == []


def test_service_port_fields() -> None:
    svc = service(stype="NodePort", sessionAffinity="ClientIP", internalTrafficPolicy="Local",
                  externalTrafficPolicy="Local",
                  ports=[{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                         {"name": "dnstcp", "port": 53, "protocol": "TCP", "nodePort": 30053}])
    ports = proxier.service_ports([svc], [], [])
    assert [(p.protocol, p.port, p.node_port) for p in ports] == [("TCP", 53, 30053), ("UDP", 53, 30053)]
    assert all(p.affinity_timeout == 10800 and p.internal_local and p.external_local for p in ports)
    cip = proxier.service_ports([service(nodePort=1)], [], [])[0]
    assert cip.node_port == 0 and cip.affinity_timeout == 0


@pytest.mark.parametrize("conds,want", [
    ([{"ready": True}, {"ready": False, "serving": True, "terminating": True}], ["127.0.1.1"]),
    ([{"ready": False, "serving": True, "terminating": True}, {"ready": False, "serving": False, "terminating": True}],
     ["127.0.1.1"]),  # no ready endpoint: serving-terminating ones still take traffic
    ([{"ready": False}, {"ready": False}], []),
])
def test_usable_endpoints(conds: list[dict[str, Any]], want: list[str]) -> None:
    s = proxier.service_ports([service()], [eslice("web", eps(("127.0.1.1", conds[0]), ("127.0.1.2", conds[1])))])[0]
    assert [e.ip for e in proxier.cluster_endpoints(s)] == want


# ---- building the rule set ---------------------------------------------------------------------
def build(svcs: list[Obj], slices: list[Obj], cfg: ProxyConfig = CFG) -> RuleSet:
    return proxier.build(proxier.service_ports(svcs, slices), cfg)


def chain_of(rs: RuleSet, prefix: str, contains: str = "") -> proxier.Chain:
    found = [c for n, c in rs.chains.items() if n.startswith(prefix) and contains in n]
    assert len(found) == 1, [n for n in rs.chains if n.startswith(prefix)]
    return found[0]


def test_fixed_skeleton() -> None:
    rs = build([], [])
    assert rs.chains["nat-prerouting"].hook == "type nat hook prerouting priority dstnat ; policy accept ;"
    assert rs.chains["nat-output"].rules == ["jump services"]
    assert rs.chains["nat-postrouting"].rules == ["jump masquerading"]
    assert rs.chains["services"].rules == ["ip daddr . meta l4proto . th dport vmap @service-ips",
                                          "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"]
    assert rs.chains["masquerading"].rules[-1] == "masquerade"  # keeps source ports: no PAWS drops at the pod
    assert rs.chains["reject-unserved"].rules[-1] == "ip daddr 10.0.0.0/16 goto reject-chain"
    for hook in ("input", "forward", "output"):
        assert rs.chains[f"filter-{hook}"].rules == ["ct state new jump reject-unserved"]
    assert rs.sets["nodeport-ips"].elements == ["127.0.0.10"]
    text = rs.render()
    assert text.startswith("add table ip kubenats\n")


def test_clusterip_balances_over_ready_endpoints() -> None:
    rs = build([service()], [eslice("web", eps("127.0.1.1", "127.0.1.2", ("127.0.1.3", {"ready": False})))])
    svc = chain_of(rs, "service-", "default/web/tcp/http")
    assert svc.name.startswith("service-") and svc.name.endswith("-default/web/tcp/http")
    assert rs.sets["service-ips"].elements == [f"10.0.0.10 . tcp . 80 : goto {svc.name}"]
    lb = svc.rules[-1]
    m = re.fullmatch(r"numgen random mod 2 vmap \{ 0 : goto (\S+), 1 : goto (\S+) \}", lb)
    assert m, lb
    assert m.group(1).endswith("__127.0.1.1/8080") and m.group(2).endswith("__127.0.1.2/8080")
    ep = rs.chains[m.group(1)]
    assert ep.rules == ["ip saddr 127.0.1.1 jump mark-for-masquerade", "meta l4proto tcp dnat to 127.0.1.1:8080"]
    assert not any("127.0.1.3" in n for n in rs.chains)  # not ready: no chain at all
    # host-originated traffic (source = the cluster IP itself) is masqueraded
    assert "ip saddr 10.0.0.0/16 jump mark-for-masquerade" in svc.rules


def test_single_endpoint_is_a_plain_goto() -> None:
    rs = build([service()], [eslice("web", eps("127.0.1.1"))])
    assert re.fullmatch(r"goto endpoint-\S+__127\.0\.1\.1/8080", chain_of(rs, "service-").rules[-1])


def test_no_endpoints_means_no_rules_and_rejection() -> None:
    rs = build([service(stype="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}])],
               [eslice("web", eps(("127.0.1.1", {"ready": False})))])
    assert rs.sets["service-ips"].elements == [] and rs.sets["service-nodeports"].elements == []
    assert rs.sets["no-endpoint-nodeports"].elements == ["tcp . 30080"]
    assert not any(n.startswith(("service-", "endpoint-", "external-")) for n in rs.chains)


def test_nodeport_cluster_policy_masquerades() -> None:
    rs = build([service(stype="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}])],
               [eslice("web", eps("127.0.1.1", "127.0.1.2"))])
    ext = chain_of(rs, "external-")
    svc = chain_of(rs, "service-")
    assert rs.sets["service-nodeports"].elements == [f"tcp . 30080 : goto {ext.name}"]
    assert ext.rules == ["jump mark-for-masquerade", f"goto {svc.name}"]


def test_nodeport_local_policy_keeps_client_ip_and_uses_local_endpoints() -> None:
    slices = [eslice("web", eps("127.0.1.1", node="node-a") + eps("127.0.1.2", node="node-b"))]
    rs = build([service(stype="NodePort", externalTrafficPolicy="Local",
                        ports=[{"name": "http", "port": 80, "nodePort": 30080}])], slices)
    ext = chain_of(rs, "external-")
    assert ext.rules[0] == "fib saddr type local jump mark-for-masquerade"
    assert ext.rules[1].startswith("fib saddr type local numgen random mod 2")  # the host itself: any endpoint
    assert re.fullmatch(r"goto endpoint-\S+__127\.0\.1\.1/8080", ext.rules[-1])  # others: this node's only
    # no local endpoint: external traffic is dropped, not sent elsewhere
    rs = build([service(stype="NodePort", externalTrafficPolicy="Local",
                        ports=[{"name": "http", "port": 80, "nodePort": 30080}])],
               [eslice("web", eps("127.0.1.2", node="node-b"))])
    assert chain_of(rs, "external-").rules[-1] == "drop"


def test_internal_traffic_policy_local() -> None:
    slices = [eslice("web", eps("127.0.1.1", node="node-a") + eps("127.0.1.2", node="node-b"))]
    rs = build([service(internalTrafficPolicy="Local")], slices)
    assert re.fullmatch(r"goto endpoint-\S+__127\.0\.1\.1/8080", chain_of(rs, "service-").rules[-1])
    rs = build([service(internalTrafficPolicy="Local")], slices, ProxyConfig(node_name="node-c"))
    assert chain_of(rs, "service-").rules[-1] == "drop"


def test_session_affinity_client_ip() -> None:
    svc = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    rs = build([svc], [eslice("web", eps("127.0.1.1", "127.0.1.2"))])
    affinity = {n: s for n, s in rs.sets.items() if n.startswith("affinity-")}
    assert len(affinity) == 2
    for s in affinity.values():
        assert s.spec == "type ipv4_addr ; flags dynamic,timeout ; timeout 600s ;" and s.elements is None
    rules = chain_of(rs, "service-").rules
    lookups = [r for r in rules if r.startswith("ip saddr @affinity-")]
    assert len(lookups) == 2 and rules.index(lookups[-1]) < len(rules) - 1  # before the random choice
    for name, chain in rs.chains.items():
        if name.startswith("endpoint-"):
            assert any(r.startswith("update @affinity-") and r.endswith("{ ip saddr }") for r in chain.rules)
    # a new timeout is a new set (the kernel does not change a set's timeout in place)
    svc2 = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    rs2 = build([svc2], [eslice("web", eps("127.0.1.1", "127.0.1.2"))])
    assert not set(affinity) & {n for n in rs2.sets if n.startswith("affinity-")}


@pytest.mark.parametrize("cfg,rule", [
    (ProxyConfig(masquerade_all=True), "jump mark-for-masquerade"),
    (ProxyConfig(cluster_cidr="172.17.0.0/16"), "ip saddr != 172.17.0.0/16 jump mark-for-masquerade"),
])
def test_masquerade_options(cfg: ProxyConfig, rule: str) -> None:
    rs = build([service()], [eslice("web", eps("127.0.1.1"))], cfg)
    assert chain_of(rs, "service-").rules[0] == rule


def test_udp_and_sctp() -> None:
    svc = service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "s", "port": 9, "protocol": "SCTP"}])
    rs = build([svc], [eslice("web", eps("127.0.1.1"), port=5353, port_name="dns", protocol="UDP"),
                       eslice("web", eps("127.0.1.1"), name="s", port=9, port_name="s", protocol="SCTP")])
    assert sorted(rs.sets["service-ips"].elements or []) == sorted([
        f"10.0.0.10 . udp . 53 : goto {chain_of(rs, 'service-', '/udp/').name}",
        f"10.0.0.10 . sctp . 9 : goto {chain_of(rs, 'service-', '/sctp/').name}"])
    assert chain_of(rs, "endpoint-", "/udp/").rules[-1] == "meta l4proto udp dnat to 127.0.1.1:5353"


def test_chain_names_are_unique_and_stable() -> None:
    a = build([service(name="a"), service(name="b", ip="10.0.0.11")], [eslice("a", eps("127.0.1.1")),
                                                                        eslice("b", eps("127.0.1.1"))])
    b = build([service(name="b", ip="10.0.0.11"), service(name="a")], [eslice("b", eps("127.0.1.1")),
                                                                        eslice("a", eps("127.0.1.1"))])
    assert set(a.chains) == set(b.chains)
    assert len([n for n in a.chains if n.startswith("endpoint-")]) == 2
    assert all(len(n) < 256 for n in a.chains)


# ---- transactions ------------------------------------------------------------------------------
def test_full_transaction_flushes_and_removes_stale_objects() -> None:
    rs = build([service()], [eslice("web", eps("127.0.1.1"))])
    text = proxier.full_transaction(rs, existing_chains=["services", "service-OLD-x/y/tcp/z"],
                                    existing_sets={"service-ips": "map", "affinity-OLD": "set", "nodeport-ips": "set"})
    lines = text.splitlines()
    assert lines[:2] == ["add table ip kubenats", "flush table ip kubenats"]
    assert "flush map ip kubenats service-ips" in lines and "flush set ip kubenats nodeport-ips" in lines
    assert "delete set ip kubenats affinity-OLD" in lines
    assert "delete chain ip kubenats service-OLD-x/y/tcp/z" in lines
    assert "delete chain ip kubenats services" not in lines
    # stale objects go before anything is re-added
    first_add = next(i for i, line in enumerate(lines) if line.startswith("add chain"))
    assert lines.index("delete chain ip kubenats service-OLD-x/y/tcp/z") < first_add


def test_diff_transaction_only_touches_what_changed() -> None:
    svcs = [service(name="a"), service(name="b", ip="10.0.0.11")]
    before = build(svcs, [eslice("a", eps("127.0.1.1")), eslice("b", eps("127.0.1.1"))])
    assert proxier.diff_transaction(before, before) == ""
    after = build(svcs, [eslice("a", eps("127.0.1.1", "127.0.1.2")), eslice("b", eps("127.0.1.1"))])
    lines = proxier.diff_transaction(before, after).splitlines()
    a_svc = chain_of(after, "service-", "/a/").name
    new_ep = chain_of(after, "endpoint-", "/a/tcp/http__127.0.1.2").name
    assert lines[0] == "add table ip kubenats"
    assert f"add chain ip kubenats {new_ep}" in lines and f"flush chain ip kubenats {a_svc}" in lines
    assert not any("/b/" in line for line in lines)  # service b untouched
    assert not any("element" in line for line in lines)
    # removing service a: its map element goes, then its chains
    gone = build([svcs[1]], [eslice("b", eps("127.0.1.1"))])
    lines = proxier.diff_transaction(after, gone).splitlines()
    assert lines.index("delete element ip kubenats service-ips { 10.0.0.10 . tcp . 80 }") < \
        lines.index(f"delete chain ip kubenats {a_svc}")
    assert f"flush chain ip kubenats {a_svc}" in lines


def test_diff_transaction_affinity_sets() -> None:
    plain = build([service()], [eslice("web", eps("127.0.1.1"))])
    sticky = build([service(sessionAffinity="ClientIP")], [eslice("web", eps("127.0.1.1"))])
    lines = proxier.diff_transaction(plain, sticky).splitlines()
    add_set = next(i for i, line in enumerate(lines) if line.startswith("add set ip kubenats affinity-"))
    first_use = next(i for i, line in enumerate(lines) if "@affinity-" in line and line.startswith("add rule"))
    assert add_set < first_use
    lines = proxier.diff_transaction(sticky, plain).splitlines()
    delete = next(i for i, line in enumerate(lines) if line.startswith("delete set ip kubenats affinity-"))
    assert all(i < delete for i, line in enumerate(lines) if line.startswith("flush chain"))


# ---- UDP conntrack -----------------------------------------------------------------------------
def udp(ips: list[str], node_port: int = 0) -> ServicePort:
    return ServicePort("default", "dns", "dns", "UDP", "10.0.0.53", 53, node_port=node_port,
                       endpoints=tuple(Endpoint(ip, 53) for ip in ips))


CONNTRACK_CASES: list[tuple[str, list[ServicePort], list[ServicePort], list[list[str]]]] = [
    ("unchanged", [udp(["127.0.1.1"])], [udp(["127.0.1.1"])], []),
    ("endpoint removed", [udp(["127.0.1.1", "127.0.1.2"])], [udp(["127.0.1.1"])],
     [["-D", "-p", "udp", "--orig-dst", "10.0.0.53", "--dst-nat", "127.0.1.2"]]),
    ("endpoint removed, node port too", [udp(["127.0.1.1", "127.0.1.2"], 30053)], [udp(["127.0.1.1"], 30053)],
     [["-D", "-p", "udp", "--orig-dst", "10.0.0.53", "--dst-nat", "127.0.1.2"],
      ["-D", "-p", "udp", "--orig-port-dst", "30053", "--dst-nat", "127.0.1.2"]]),
    ("first endpoint", [udp([])], [udp(["127.0.1.1"])],
     [["-D", "-p", "udp", "--orig-dst", "10.0.0.53", "--orig-port-dst", "53"]]),
    ("service gone", [udp(["127.0.1.1"])], [],
     [["-D", "-p", "udp", "--orig-dst", "10.0.0.53", "--dst-nat", "127.0.1.1"]]),
    ("tcp ignored", [sp(["127.0.1.1", "127.0.1.2"])], [sp(["127.0.1.1"])], []),
]


@pytest.mark.parametrize("name,old,new,want", CONNTRACK_CASES, ids=[c[0] for c in CONNTRACK_CASES])
def test_conntrack_deletions(name: str, old: list[ServicePort], new: list[ServicePort], want: list[list[str]]) -> None:
    assert proxier.conntrack_deletions(old, new) == want


# ---- iptables fallback -------------------------------------------------------------------------
SAVED = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBENATS-SVC-OLDOLDOLDOLDOLD - [0:0]
-A PREROUTING -m comment --comment "kubenats service portals" -j KUBENATS-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
COMMIT
*filter
:INPUT ACCEPT [0:0]
:KUBENATS-FILTER - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubenats service portals" -j KUBENATS-FILTER
COMMIT
"""


def test_iptables_restore_text() -> None:
    ports = proxier.service_ports(
        [service(stype="NodePort", sessionAffinity="ClientIP", ports=[{"name": "http", "port": 80, "nodePort": 30080}])],
        [eslice("web", eps("127.0.1.1", "127.0.1.2", "127.0.1.3"))])
    text, count = proxier.iptables_restore_text(ports, CFG, SAVED)
    lines = text.splitlines()
    assert lines[0] == "*nat" and lines.count("COMMIT") == 2
    # jumps: inserted only where missing
    assert not any(line.startswith("-I PREROUTING") for line in lines)
    assert '-I OUTPUT 1 -m comment --comment "kubenats service portals" -j KUBENATS-SERVICES' in lines
    assert '-I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment "kubenats service portals" -j KUBENATS-FILTER' in lines
    assert "-X KUBENATS-SVC-OLDOLDOLDOLDOLD" in lines and ":KUBENATS-SVC-OLDOLDOLDOLDOLD - [0:0]" in lines
    chains = [line[1:].split()[0] for line in lines if line.startswith(":")]
    assert all(len(c) <= 28 for c in chains)
    svc = next(c for c in chains if c.startswith("KUBENATS-SVC-") and "OLD" not in c)
    assert f"-A KUBENATS-SERVICES -d 10.0.0.10/32 -p tcp -m tcp --dport 80 -j {svc}" in lines
    assert "-A KUBENATS-SERVICES -d 127.0.0.10/32 -j KUBENATS-NODEPORTS" == [x for x in lines if "NODEPORTS" in x
                                                                             and x.startswith("-A KUBENATS-SERVICES")][-1]
    lb = [x for x in lines if x.startswith(f"-A {svc} ")]
    assert sum("--rcheck --seconds 10800" in x for x in lb) == 3
    probs = [x.split("--probability ")[1].split()[0] for x in lb if "statistic" in x]
    assert probs == ["0.33333333333", "0.50000000000"]
    assert lb[-1].startswith(f"-A {svc} -j KUBENATS-SEP-")
    assert count == sum(1 for x in lines if x.startswith("-A "))


def test_iptables_cleanup_text() -> None:
    text = proxier.iptables_cleanup_text("nat", SAVED)
    assert text.splitlines() == [
        "*nat", ":KUBENATS-SVC-OLDOLDOLDOLDOLD - [0:0]",
        '-D PREROUTING -m comment --comment "kubenats service portals" -j KUBENATS-SERVICES',
        "-X KUBENATS-SVC-OLDOLDOLDOLDOLD", "COMMIT"]
    assert proxier.iptables_cleanup_text("mangle", SAVED) == ""
