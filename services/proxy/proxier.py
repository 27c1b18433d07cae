"""The proxy's rule generator: Services + EndpointSlices in, the complete nftables rule set out.

Why this exists apart from the dataplane: everything about *what* the kernel should do with
Service traffic is decided here, as pure functions of API objects and the node's configuration,
so it is tested table-driven without root, a kernel or a cluster. `services.proxy.dataplane` only
applies the text this module produces.

The layout follows kube-proxy's nftables proxier (pkg/proxy/nftables/proxier.go), in one table of
our own (`ip kubenats`):

- `nat-prerouting` / `nat-output` (dstnat) jump to `services`, which looks the packet up in two
  verdict maps: `service-ips` (clusterIP . protocol . port) and, for destinations in the
  `nodeport-ips` set, `service-nodeports` (protocol . nodePort).
- `service-<hash>-<ns>/<name>/<proto>/<port>` balances over the ready endpoints with
  `numgen random mod N vmap { ... }`; with sessionAffinity ClientIP it first sends a client found
  in an endpoint's `affinity-...` set (dynamic, with the Service's timeout) to that endpoint.
- `external-...` (NodePort traffic) masquerades for externalTrafficPolicy Cluster, or keeps the
  client address and uses node-local endpoints only for Local.
- `endpoint-...__<ip>/<port>` marks hairpin traffic (a pod reaching itself) for masquerading,
  records affinity, and DNATs. `nat-postrouting` masquerades what was marked (mark 0x4000),
  keeping the client's source port where it can (see the note on `fully-random` in `build`).
- `filter-input` / `filter-output` / `filter-forward` reject new connections to anything in the
  service range that no rule DNATed (a Service without endpoints, an unallocated IP or port) and
  to node ports without endpoints. The service range is routed `local` on this node (the
  dataplane's job), so without this they would reach whatever listens on the host.

Host-originated traffic to a cluster IP takes the cluster IP itself as its source address (that is
what a `local` route gives), which no other node could answer; such packets are masqueraded too.

NodePorts are served on the node's own addresses (`nodeport-ips`, by default the primary IP), not
on 127.0.0.1: DNAT of loopback traffic to a pod needs `route_localnet`, which kube-proxy's nftables
mode does not enable either.

Besides the full text (`RuleSet.render`), the module computes the transactions the dataplane
applies: a full replacement (`full_transaction`: flush the table and load everything, in one
`nft -f` transaction) and an incremental one (`diff_transaction`: only chains, maps and elements
that changed), plus the conntrack entries to delete for UDP endpoints that went away, and the
same decisions in kube-proxy's iptables layout for `--proxy-mode iptables` (`iptables_restore_text`).

Hairpin also needs the bridge to send a frame back out of the port it came in on (br_netfilter
bridges DNATed traffic between pods of one bridge); the dataplane turns on hairpin mode for that.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = Mapping[str, Any]
MASQ_MARK = 0x4000
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True)
class ProxyConfig:
    """What the rules depend on besides API objects."""

    service_cidr: str = "10.0.0.0/16"
    table: str = "kubenats"
    node_name: str = ""
    node_ips: tuple[str, ...] = ()  # addresses that serve node ports
    cluster_cidr: str = ""  # pod range: traffic to a cluster IP from outside it is masqueraded
    masquerade_all: bool = False


# ---- the model: service ports with their endpoints ---------------------------------------------
@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node: str = ""


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service, with the endpoints that serve it."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP, UDP, SCTP
    cluster_ip: str
    port: int
    node_port: int = 0
    affinity_timeout: int = 0  # seconds; 0 = no session affinity
    internal_local: bool = False  # internalTrafficPolicy: Local
    external_local: bool = False  # externalTrafficPolicy: Local
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}/{self.protocol.lower()}/{self.port_name}"

    @property
    def proto(self) -> str:
        return PROTOCOLS[self.protocol]


def _usable(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """Ready endpoints; when there are none, serving-but-terminating ones (as kube-proxy does)."""
    eps = list(endpoints)
    ready = [e for e in eps if e.ready]
    if ready:
        return ready
    return [e for e in eps if e.serving and e.terminating]


def cluster_endpoints(sp: ServicePort) -> list[Endpoint]:
    return _usable(sp.endpoints)


def local_endpoints(sp: ServicePort, node: str) -> list[Endpoint]:
    return _usable(e for e in sp.endpoints if node and e.node == node)


def _spec(obj: Obj) -> Obj:
    s = obj.get("spec")
    return s if isinstance(s, Mapping) else {}


def _meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def _is_ipv4(ip: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, ip)
        return True
    except (OSError, TypeError):
        return False


def _ip_key(ip: str) -> bytes:
    """Sort key of an IPv4 address (numeric order), fast."""
    return socket.inet_pton(socket.AF_INET, ip)


def proxied(svc: Obj) -> bool:
    """Whether this proxy programs the Service at all."""
    spec, labels = _spec(svc), _meta(svc).get("labels") or {}
    if PROXY_NAME_LABEL in labels:
        return False  # handled by another proxy implementation
    if spec.get("type") == "ExternalName":
        return False
    ip = str(spec.get("clusterIP") or "")
    return bool(ip) and ip != "None" and _is_ipv4(ip)


def _slice_endpoints(slices: Iterable[Obj], port_name: str, protocol: str) -> list[Endpoint]:
    out: set[Endpoint] = set()
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        port = next((p for p in sl.get("ports") or [] if isinstance(p, Mapping)
                     and str(p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol), None)
        if port is None or not _int(port.get("port")):
            continue
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            ready = cond.get("ready")
            ready = True if ready is None else bool(ready)
            serving = cond.get("serving")
            serving = ready if serving is None else bool(serving)
            terminating = bool(cond.get("terminating") or False)
            for addr in (ep.get("addresses") or [])[:1]:  # kube-proxy uses the first address only
                if _is_ipv4(str(addr)):
                    out.add(Endpoint(str(addr), _int(port.get("port")), ready, serving, terminating,
                                     str(ep.get("nodeName") or "")))
    return _dedup(out)


def _endpoints_object(eps: Obj, port_name: str, protocol: str) -> list[Endpoint]:
    out: set[Endpoint] = set()
    for subset in eps.get("subsets") or []:
        port = next((p for p in subset.get("ports") or [] if str(p.get("name") or "") == port_name
                     and (p.get("protocol") or "TCP") == protocol), None)
        if port is None:
            continue
        for kind, ready in (("addresses", True), ("notReadyAddresses", False)):
            for addr in subset.get(kind) or []:
                ip = str(addr.get("ip") or "")
                if _is_ipv4(ip):
                    out.add(Endpoint(ip, _int(port.get("port")), ready, ready, False, str(addr.get("nodeName") or "")))
    return _dedup(out)


def _dedup(eps: Iterable[Endpoint]) -> list[Endpoint]:
    """One endpoint per ip:port; a ready copy wins over a not-ready one (slices can overlap)."""
    best: dict[tuple[str, int], Endpoint] = {}
    for e in sorted(eps, key=lambda e: (e.ip, e.port, not e.ready, not e.serving)):
        best.setdefault((e.ip, e.port), e)
    return sorted(best.values(), key=lambda e: (_ip_key(e.ip), e.port))


def service_ports(services: Iterable[Obj], slices: Iterable[Obj], endpoints: Iterable[Obj] = ()) -> list[ServicePort]:
    """Join Services with their EndpointSlices (or, for a Service without any, its Endpoints)."""
    by_service: dict[tuple[str, str], list[Obj]] = {}
    for sl in slices:
        meta = _meta(sl)
        svc_name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc_name:
            by_service.setdefault((str(meta.get("namespace") or ""), str(svc_name)), []).append(sl)
    eps_by_name: dict[tuple[str, str], Obj] = {}
    for e in endpoints:
        meta = _meta(e)
        if HEADLESS_LABEL not in (meta.get("labels") or {}):
            eps_by_name[(str(meta.get("namespace") or ""), str(meta.get("name") or ""))] = e
    out: list[ServicePort] = []
    for svc in services:
        if not proxied(svc):
            continue
        meta, spec = _meta(svc), _spec(svc)
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        stype = spec.get("type") or "ClusterIP"
        affinity = 0
        if spec.get("sessionAffinity") == "ClientIP":
            cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
            affinity = _int(cfg.get("timeoutSeconds")) or 10800
        my_slices = by_service.get((ns, name))
        for p in spec.get("ports") or []:
            protocol = str(p.get("protocol") or "TCP")
            if protocol not in PROTOCOLS or not _int(p.get("port")):
                continue
            pname = str(p.get("name") or "")
            if my_slices is not None:
                eps = _slice_endpoints(my_slices, pname, protocol)
            elif (ns, name) in eps_by_name:
                eps = _endpoints_object(eps_by_name[(ns, name)], pname, protocol)
            else:
                eps = []
            out.append(ServicePort(
                namespace=ns, name=name, port_name=pname, protocol=protocol, cluster_ip=str(spec["clusterIP"]),
                port=_int(p.get("port")),
                node_port=_int(p.get("nodePort")) if stype in ("NodePort", "LoadBalancer") else 0,
                affinity_timeout=affinity,
                internal_local=spec.get("internalTrafficPolicy") == "Local",
                external_local=spec.get("externalTrafficPolicy") == "Local",
                endpoints=tuple(eps),
            ))
    out.sort(key=lambda sp: sp.key)
    return out


# ---- the rule set -------------------------------------------------------------------------------
@dataclass
class Chain:
    name: str
    rules: list[str] = field(default_factory=list)
    hook: str = ""  # base chain spec, e.g. "type nat hook output priority -100 ; policy accept ;"


@dataclass
class NftSet:
    """A set or map. `elements` None: a dynamic set whose content the kernel owns (affinity)."""

    name: str
    kind: str  # "set" or "map"
    spec: str
    elements: list[str] | None = None

    @staticmethod
    def element_key(element: str) -> str:
        return element.split(" : ", 1)[0]


@dataclass
class RuleSet:
    table: str
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)

    def chain(self, name: str, hook: str = "") -> Chain:
        c = self.chains.get(name)
        if c is None:
            c = self.chains[name] = Chain(name, hook=hook)
        return c

    @property
    def family_table(self) -> str:
        return f"ip {self.table}"

    def render(self) -> str:
        """The whole desired state as `nft -f` input for an empty table."""
        return "".join(_lines_create(self, self.chains, self.sets, with_table=True))

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())


def _hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n].upper()


def service_chain(sp: ServicePort) -> str:
    return f"service-{_hash(sp.key)}-{sp.key}"


def external_chain(sp: ServicePort) -> str:
    return f"external-{_hash(sp.key)}-{sp.key}"


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    base = f"{sp.key}__{ep.ip}/{ep.port}"
    return f"endpoint-{_hash(base)}-{base}"


def affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    base = f"{sp.key}__{ep.ip}/{ep.port}"
    return f"affinity-{_hash(base + '@' + str(sp.affinity_timeout))}-{base}"


def _lb_rules(sp: ServicePort, eps: list[Endpoint]) -> list[str]:
    """Affinity lookups, then a random choice among the endpoints."""
    rules: list[str] = []
    if not eps:
        return ["drop"]
    if sp.affinity_timeout:
        rules += [f"ip saddr @{affinity_set(sp, e)} goto {endpoint_chain(sp, e)}" for e in eps]
    if len(eps) == 1:
        rules.append(f"goto {endpoint_chain(sp, eps[0])}")
    else:
        targets = ", ".join(f"{i} : goto {endpoint_chain(sp, e)}" for i, e in enumerate(eps))
        rules.append(f"numgen random mod {len(eps)} vmap {{ {targets} }}")
    return rules


@dataclass(frozen=True)
class _Fragment:
    """What one service port contributes to the rule set (cached: most syncs change few services)."""

    chains: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sets: tuple[tuple[str, str], ...] = ()
    service_ips: tuple[str, ...] = ()
    service_nodeports: tuple[str, ...] = ()
    no_endpoint_nodeport: str = ""


@functools.lru_cache(maxsize=1 << 16)
def _service_fragment(sp: ServicePort, cfg: ProxyConfig) -> _Fragment:
    all_eps = cluster_endpoints(sp)
    if not all_eps:  # falls through to reject-unserved
        return _Fragment(no_endpoint_nodeport=f"{sp.proto} . {sp.node_port}" if sp.node_port else "")
    internal = local_endpoints(sp, cfg.node_name) if sp.internal_local else all_eps
    external = local_endpoints(sp, cfg.node_name) if sp.external_local else all_eps
    used = set(internal)
    if sp.node_port:
        used |= set(external)
        if sp.external_local:
            used |= set(all_eps)  # host-originated NodePort traffic goes to any endpoint
    chains: list[tuple[str, tuple[str, ...]]] = []
    sets: list[tuple[str, str]] = []
    for ep in sp.endpoints:  # sorted by address already
        if ep not in used:
            continue
        rules = [f"ip saddr {ep.ip} jump mark-for-masquerade"]  # hairpin
        if sp.affinity_timeout:
            aset = affinity_set(sp, ep)
            sets.append((aset, f"type ipv4_addr ; flags dynamic,timeout ; timeout {sp.affinity_timeout}s ;"))
            rules.append(f"update @{aset} {{ ip saddr }}")
        rules.append(f"meta l4proto {sp.proto} dnat to {ep.ip}:{ep.port}")
        chains.append((endpoint_chain(sp, ep), tuple(rules)))

    svc_name = service_chain(sp)
    svc: list[str] = []
    if cfg.masquerade_all:
        svc.append("jump mark-for-masquerade")
    elif cfg.cluster_cidr:
        svc.append(f"ip saddr != {cfg.cluster_cidr} jump mark-for-masquerade")
    svc.append(f"ip saddr {cfg.service_cidr} jump mark-for-masquerade")  # host, source = a cluster IP
    svc += _lb_rules(sp, internal)
    chains.append((svc_name, tuple(svc)))
    service_ips = (f"{sp.cluster_ip} . {sp.proto} . {sp.port} : goto {svc_name}",)

    nodeports: tuple[str, ...] = ()
    if sp.node_port:
        ext_name = external_chain(sp)
        ext: list[str] = []
        if not sp.external_local:
            ext.append("jump mark-for-masquerade")
            ext += _lb_rules(sp, external) if sp.internal_local else [f"goto {svc_name}"]
        else:
            # keep the client's address; only this node's endpoints (or none: drop)
            ext.append("fib saddr type local jump mark-for-masquerade")
            ext += [f"fib saddr type local {r}" for r in _lb_rules(sp, all_eps)]
            ext += _lb_rules(sp, external)
        chains.append((ext_name, tuple(ext)))
        nodeports = (f"{sp.proto} . {sp.node_port} : goto {ext_name}",)
    return _Fragment(tuple(chains), tuple(sets), service_ips, nodeports)


def build(ports: Iterable[ServicePort], cfg: ProxyConfig) -> RuleSet:
    """The complete rule set for these service ports on this node."""
    rs = RuleSet(cfg.table)
    ip_type = "type ipv4_addr . inet_proto . inet_service : verdict ;"
    service_ips = NftSet("service-ips", "map", ip_type, [])
    service_nodeports = NftSet("service-nodeports", "map", "type inet_proto . inet_service : verdict ;", [])
    nodeport_ips = NftSet("nodeport-ips", "set", "type ipv4_addr ;", sorted(set(cfg.node_ips), key=ipaddress.ip_address))
    no_ep_nodeports = NftSet("no-endpoint-nodeports", "set", "type inet_proto . inet_service ;", [])
    for s in (service_ips, service_nodeports, nodeport_ips, no_ep_nodeports):
        rs.sets[s.name] = s

    # fixed chains (base chains first so that `nft list` reads naturally)
    nat = "type nat hook {} priority {} ; policy accept ;"
    flt = "type filter hook {} priority -10 ; policy accept ;"
    rs.chain("nat-prerouting", nat.format("prerouting", "dstnat")).rules.append("jump services")
    rs.chain("nat-output", nat.format("output", "-100")).rules.append("jump services")
    rs.chain("nat-postrouting", nat.format("postrouting", "srcnat")).rules.append("jump masquerading")
    for hook in ("input", "forward", "output"):
        rs.chain(f"filter-{hook}", flt.format(hook)).rules.append("ct state new jump reject-unserved")
    rs.chain("services").rules += [
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
    ]
    rs.chain("masquerading").rules += [
        f"meta mark & {MASQ_MARK:#x} == 0 return",
        f"meta mark set meta mark ^ {MASQ_MARK:#x}",
        # Not `fully-random` (kube-proxy's choice): random source ports land on the backend's
        # TIME_WAIT sockets, which refuse the SYN (PAWS) and cost the client a 1 s retransmit;
        # bench/proxy.py measured 0.3x the direct throughput with it, ~1x without.
        "masquerade",
    ]
    rs.chain("mark-for-masquerade").rules.append(f"meta mark set meta mark | {MASQ_MARK:#x}")
    rs.chain("reject-unserved").rules += [
        "ip daddr @nodeport-ips meta l4proto . th dport @no-endpoint-nodeports goto reject-chain",
        f"ip daddr {cfg.service_cidr} goto reject-chain",
    ]
    rs.chain("reject-chain").rules += ["meta l4proto tcp reject with tcp reset", "reject"]

    for sp in ports:
        frag = _service_fragment(sp, cfg)
        if frag.no_endpoint_nodeport:
            no_ep_nodeports.elements.append(frag.no_endpoint_nodeport)  # type: ignore[union-attr]
        for name, rules in frag.chains:
            rs.chains[name] = Chain(name, list(rules))
        for name, spec in frag.sets:
            rs.sets[name] = NftSet(name, "set", spec)
        service_ips.elements += frag.service_ips  # type: ignore[operator]
        service_nodeports.elements += frag.service_nodeports  # type: ignore[operator]
    return rs


# ---- transactions -----------------------------------------------------------------------------
def _lines_create(rs: RuleSet, chains: Mapping[str, Chain], sets: Mapping[str, NftSet], *,
                  with_table: bool) -> list[str]:
    t = rs.family_table
    out = [f"add table {t}\n"] if with_table else []
    out += [f"add chain {t} {c.name}" + (f" {{ {c.hook} }}" if c.hook else "") + "\n" for c in chains.values()]
    out += [f"add {s.kind} {t} {s.name} {{ {s.spec} }}\n" for s in sets.values()]
    for c in chains.values():
        out += [f"add rule {t} {c.name} {r}\n" for r in c.rules]
    for s in sets.values():
        out += _add_elements(t, s, s.elements or [])
    return out


def _add_elements(t: str, s: NftSet, elements: list[str]) -> list[str]:
    out = []
    for i in range(0, len(elements), 1000):
        out.append(f"add element {t} {s.name} {{ {', '.join(elements[i:i + 1000])} }}\n")
    return out


def full_transaction(rs: RuleSet, existing_chains: Iterable[str] = (), existing_sets: Mapping[str, str] | None = None) -> str:
    """Replace the whole table in one transaction.

    `flush table` drops every rule but keeps sets (so affinity state survives); managed sets and
    maps are flushed and refilled; chains and sets that are no longer wanted are deleted.
    `existing_sets` maps name -> "set" | "map" for what the table holds now."""
    t = rs.family_table
    existing = dict(existing_sets or {})
    out = [f"add table {t}\n", f"flush table {t}\n"]
    for name, kind in existing.items():
        s = rs.sets.get(name)
        if s is not None and s.kind == kind and s.elements is not None:
            out.append(f"flush {kind} {t} {name}\n")
    for name, kind in existing.items():
        s = rs.sets.get(name)
        if s is None or s.kind != kind:
            out.append(f"delete {kind} {t} {name}\n")
    for name in existing_chains:
        if name not in rs.chains:
            out.append(f"delete chain {t} {name}\n")
    out += _lines_create(rs, rs.chains, rs.sets, with_table=False)
    return "".join(out)


def diff_transaction(old: RuleSet, new: RuleSet) -> str:
    """Only what changed between two rule sets, in an order nft accepts in one transaction.

    Empty when nothing changed."""
    t = new.family_table
    out: list[str] = []
    new_sets = {n: s for n, s in new.sets.items() if n not in old.sets or old.sets[n].spec != s.spec
                or old.sets[n].kind != s.kind}
    gone_sets = [s for n, s in old.sets.items() if n not in new.sets or n in new_sets]
    new_chains = {n: c for n, c in new.chains.items() if n not in old.chains}
    changed = [c for n, c in new.chains.items() if n in old.chains and (old.chains[n].rules != c.rules)]
    gone_chains = [c for n, c in old.chains.items() if n not in new.chains]
    # 1. new objects
    out += [f"add chain {t} {c.name}" + (f" {{ {c.hook} }}" if c.hook else "") + "\n" for c in new_chains.values()]
    replaced = [s for s in gone_sets if s.name in new_sets]
    # a set whose definition changed: drop references first (chains rewritten below), then recreate
    for c in changed:
        out.append(f"flush chain {t} {c.name}\n")
    for s in replaced:
        out += _refs_flush(t, old, s.name, already={c.name for c in changed})
        out.append(f"delete {s.kind} {t} {s.name}\n")
    out += [f"add {s.kind} {t} {s.name} {{ {s.spec} }}\n" for s in new_sets.values()]
    # 2. rules of new and changed chains
    for c in [*new_chains.values(), *changed]:
        out += [f"add rule {t} {c.name} {r}\n" for r in c.rules]
    # 3. elements
    for name, s in new.sets.items():
        if s.elements is None:
            continue
        before = [] if name in new_sets else (old.sets[name].elements or [])
        if before == s.elements:
            continue
        old_by_key = {NftSet.element_key(e): e for e in before}
        new_by_key = {NftSet.element_key(e): e for e in s.elements}
        drop = [k for k, e in old_by_key.items() if new_by_key.get(k) != e]
        add = [e for k, e in new_by_key.items() if old_by_key.get(k) != e]
        for i in range(0, len(drop), 1000):
            out.append(f"delete element {t} {name} {{ {', '.join(drop[i:i + 1000])} }}\n")
        out += _add_elements(t, s, add)
    # 4. what is gone (nothing refers to it any more)
    out += [f"flush chain {t} {c.name}\n" for c in gone_chains]
    out += [f"delete chain {t} {c.name}\n" for c in gone_chains]
    out += [f"delete {s.kind} {t} {s.name}\n" for s in gone_sets if s.name not in new_sets]
    if not out:
        return ""
    return f"add table {t}\n" + "".join(out)


def _refs_flush(t: str, rs: RuleSet, set_name: str, already: set[str]) -> list[str]:
    ref = f"@{set_name}"
    return [f"flush chain {t} {c.name}\n" for c in rs.chains.values()
            if c.name not in already and any(ref in r for r in c.rules)]


# ---- UDP conntrack ----------------------------------------------------------------------------
def _served(sp: ServicePort, node: str) -> set[str]:
    eps = set(cluster_endpoints(sp))
    if sp.internal_local or sp.external_local:
        eps |= set(local_endpoints(sp, node))
    return {e.ip for e in eps}


def conntrack_deletions(old: Iterable[ServicePort], new: Iterable[ServicePort], node: str = "") -> list[list[str]]:
    """`conntrack` argument lists for UDP flows that the new rules no longer serve.

    UDP has no connection end, so a flow DNATed to a removed endpoint would keep going there; and
    a Service that just got its first endpoint may have flows that were refused meanwhile."""
    before = {sp.key: sp for sp in old if sp.protocol == "UDP"}
    out: list[list[str]] = []
    for sp in new:
        if sp.protocol != "UDP":
            continue
        prev = before.pop(sp.key, None)
        now = _served(sp, node)
        was = _served(prev, node) if prev is not None else set()
        for ip in sorted(was - now):
            out.append(["-D", "-p", "udp", "--orig-dst", sp.cluster_ip, "--dst-nat", ip])
            if sp.node_port:
                out.append(["-D", "-p", "udp", "--orig-port-dst", str(sp.node_port), "--dst-nat", ip])
        if now and not was:
            out.append(["-D", "-p", "udp", "--orig-dst", sp.cluster_ip, "--orig-port-dst", str(sp.port)])
            if sp.node_port:
                out.append(["-D", "-p", "udp", "--orig-port-dst", str(sp.node_port)])
    for sp in before.values():  # the whole service port is gone
        for ip in sorted(_served(sp, node)):
            out.append(["-D", "-p", "udp", "--orig-dst", sp.cluster_ip, "--dst-nat", ip])
            if sp.node_port:
                out.append(["-D", "-p", "udp", "--orig-port-dst", str(sp.node_port), "--dst-nat", ip])
    return out


# ---- iptables fallback --------------------------------------------------------------------------
IPT_PREFIX = "KUBENATS-"
DROP_MARK = 0x8000
_IPT_JUMPS = {  # (table, built-in chain) -> our chain, inserted first
    ("nat", "PREROUTING"): "KUBENATS-SERVICES",
    ("nat", "OUTPUT"): "KUBENATS-SERVICES",
    ("nat", "POSTROUTING"): "KUBENATS-POSTROUTING",
    ("filter", "INPUT"): "KUBENATS-FILTER",
    ("filter", "FORWARD"): "KUBENATS-FILTER",
    ("filter", "OUTPUT"): "KUBENATS-FILTER",
}


def _ipt_hash(text: str) -> str:
    return _hash(text, 15)


def _ipt_chain(kind: str, text: str) -> str:
    return f"{IPT_PREFIX}{kind}-{_ipt_hash(text)}"  # 28 characters: iptables' limit


def _ipt_jump_rule(table: str, builtin: str, target: str) -> str:
    ctstate = "-m conntrack --ctstate NEW " if table == "filter" else ""
    return f'-A {builtin} {ctstate}-m comment --comment "kubenats service portals" -j {target}'


def parse_iptables_save(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """table -> (chain names, `-A` rule lines) from `iptables-save` output."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            out.setdefault(table, ([], []))
        elif line.startswith(":") and table:
            out[table][0].append(line[1:].split()[0])
        elif line.startswith("-A ") and table:
            out[table][1].append(line.strip())
    return out


def _ipt_lb(svc_chain: str, sp: ServicePort, eps: list[Endpoint], seps: dict[Endpoint, str]) -> list[str]:
    if not eps:
        return [f"-A {svc_chain} -j {IPT_PREFIX}MARK-DROP"]
    rules = []
    if sp.affinity_timeout:
        rules += [f"-A {svc_chain} -m recent --name {seps[e]} --rcheck --seconds {sp.affinity_timeout} --reap "
                  f"-j {seps[e]}" for e in eps]
    n = len(eps)
    for i, e in enumerate(eps):
        if i < n - 1:
            rules.append(f"-A {svc_chain} -m statistic --mode random --probability {1 / (n - i):.11f} -j {seps[e]}")
        else:
            rules.append(f"-A {svc_chain} -j {seps[e]}")
    return rules


def iptables_restore_text(ports: Iterable[ServicePort], cfg: ProxyConfig, current: str) -> tuple[str, int]:
    """`iptables-restore --noflush` input for the whole rule set, in chains of our own.

    The same decisions as `build`, in kube-proxy's iptables layout (KUBE-SERVICES / SVC / SEP /
    EXT chains, `statistic` for the random choice, `recent` for ClientIP affinity). Our chains are
    declared (which flushes them) and refilled; the jumps from the built-in chains are inserted
    only when `current` (the `iptables-save` output of nat and filter) lacks them; chains no
    longer wanted are deleted. Returns (text, number of rules)."""
    existing = parse_iptables_save(current)
    nat: dict[str, list[str]] = {f"{IPT_PREFIX}{n}": [] for n in ("SERVICES", "NODEPORTS", "POSTROUTING", "MARK-MASQ",
                                                                    "MARK-DROP")}
    nat[f"{IPT_PREFIX}POSTROUTING"] += [
        f"-A {IPT_PREFIX}POSTROUTING -m mark ! --mark {MASQ_MARK:#x}/{MASQ_MARK:#x} -j RETURN",
        f"-A {IPT_PREFIX}POSTROUTING -j MARK --xor-mark {MASQ_MARK:#x}",
        f"-A {IPT_PREFIX}POSTROUTING -j MASQUERADE"]  # not --random-fully: see `build`
    nat[f"{IPT_PREFIX}MARK-MASQ"].append(f"-A {IPT_PREFIX}MARK-MASQ -j MARK --or-mark {MASQ_MARK:#x}")
    nat[f"{IPT_PREFIX}MARK-DROP"].append(f"-A {IPT_PREFIX}MARK-DROP -j MARK --or-mark {DROP_MARK:#x}")
    flt: dict[str, list[str]] = {f"{IPT_PREFIX}FILTER": [f"-A {IPT_PREFIX}FILTER -m mark --mark {DROP_MARK:#x}/{DROP_MARK:#x} -j DROP"]}
    services = nat[f"{IPT_PREFIX}SERVICES"]
    nodeports = nat[f"{IPT_PREFIX}NODEPORTS"]
    reject_nodeports: list[str] = []
    for sp in ports:
        all_eps = cluster_endpoints(sp)
        internal = local_endpoints(sp, cfg.node_name) if sp.internal_local else all_eps
        external = local_endpoints(sp, cfg.node_name) if sp.external_local else all_eps
        proto = sp.proto
        if not all_eps:
            if sp.node_port:
                reject_nodeports += [f"-A {IPT_PREFIX}FILTER -d {ip}/32 -p {proto} -m {proto} --dport {sp.node_port} "
                                     "-j REJECT" for ip in cfg.node_ips]
            continue
        used = set(internal) | (set(external) | (set(all_eps) if sp.external_local else set()) if sp.node_port else set())
        seps = {e: _ipt_chain("SEP", f"{sp.key}__{e.ip}/{e.port}") for e in used}
        for e in sorted(used, key=lambda e: (_ip_key(e.ip), e.port)):
            c = seps[e]
            nat[c] = [f"-A {c} -s {e.ip}/32 -j {IPT_PREFIX}MARK-MASQ"]
            if sp.affinity_timeout:
                nat[c].append(f"-A {c} -m recent --name {c} --set")
            nat[c].append(f"-A {c} -p {proto} -m {proto} -j DNAT --to-destination {e.ip}:{e.port}")
        svc = _ipt_chain("SVC", sp.key)
        rules = []
        if cfg.masquerade_all:
            rules.append(f"-A {svc} -j {IPT_PREFIX}MARK-MASQ")
        elif cfg.cluster_cidr:
            rules.append(f"-A {svc} ! -s {cfg.cluster_cidr} -j {IPT_PREFIX}MARK-MASQ")
        rules.append(f"-A {svc} -s {cfg.service_cidr} -j {IPT_PREFIX}MARK-MASQ")
        nat[svc] = rules + _ipt_lb(svc, sp, internal, seps)
        services.append(f"-A {IPT_PREFIX}SERVICES -d {sp.cluster_ip}/32 -p {proto} -m {proto} --dport {sp.port} -j {svc}")
        if sp.node_port:
            ext = _ipt_chain("EXT", sp.key)
            if not sp.external_local:
                nat[ext] = [f"-A {ext} -j {IPT_PREFIX}MARK-MASQ"]
                nat[ext] += _ipt_lb(ext, sp, external, seps) if sp.internal_local else [f"-A {ext} -j {svc}"]
            else:
                nat[ext] = [f"-A {ext} -m addrtype --src-type LOCAL -j {IPT_PREFIX}MARK-MASQ"]
                if sp.internal_local:
                    local_lb = _ipt_chain("LBL", sp.key)  # host-originated: any endpoint
                    nat[local_lb] = _ipt_lb(local_lb, sp, all_eps, seps)
                    nat[ext].append(f"-A {ext} -m addrtype --src-type LOCAL -j {local_lb}")
                else:
                    nat[ext].append(f"-A {ext} -m addrtype --src-type LOCAL -j {svc}")
                nat[ext] += _ipt_lb(ext, sp, external, seps)
            nodeports.append(f"-A {IPT_PREFIX}NODEPORTS -p {proto} -m {proto} --dport {sp.node_port} -j {ext}")
    services += [f"-A {IPT_PREFIX}SERVICES -d {ip}/32 -j {IPT_PREFIX}NODEPORTS" for ip in cfg.node_ips]
    flt[f"{IPT_PREFIX}FILTER"] += reject_nodeports
    flt[f"{IPT_PREFIX}FILTER"] += [f"-A {IPT_PREFIX}FILTER -d {cfg.service_cidr} -p tcp -j REJECT --reject-with tcp-reset",
                                   f"-A {IPT_PREFIX}FILTER -d {cfg.service_cidr} -j REJECT"]
    out: list[str] = []
    count = 0
    for table, chains in (("nat", nat), ("filter", flt)):
        have_chains, have_rules = existing.get(table, ([], []))
        stale = [c for c in have_chains if c.startswith(IPT_PREFIX) and c not in chains]
        out.append(f"*{table}\n")
        out += [f":{c} - [0:0]\n" for c in [*chains, *stale]]
        for (t, builtin), target in _IPT_JUMPS.items():
            rule = _ipt_jump_rule(t, builtin, target)
            if t == table and rule not in have_rules:
                out.append(rule.replace(f"-A {builtin} ", f"-I {builtin} 1 ", 1) + "\n")
        for rules in chains.values():
            out += [r + "\n" for r in rules]
            count += len(rules)
        out += [f"-X {c}\n" for c in stale]
        out.append("COMMIT\n")
    return "".join(out), count


def iptables_cleanup_text(table: str, current: str) -> str:
    """`iptables-restore --noflush` input removing our jumps and chains from one table ("" if none)."""
    chains, rules = parse_iptables_save(current).get(table, ([], []))
    ours = [c for c in chains if c.startswith(IPT_PREFIX)]
    jumps = [r for r in rules if not r.split()[1].startswith(IPT_PREFIX) and f"-j {IPT_PREFIX}" in r]
    if not ours and not jumps:
        return ""
    return "".join([f"*{table}\n", *(f":{c} - [0:0]\n" for c in ours),
                    *(r.replace("-A ", "-D ", 1) + "\n" for r in jumps), *(f"-X {c}\n" for c in ours), "COMMIT\n"])
