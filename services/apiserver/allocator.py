"""ClusterIP and NodePort allocation for Services, stored in etcd beside the Services themselves.

Why this exists: a Service's cluster IP and node ports must be unique cluster-wide, survive
apiserver restarts and never be handed out twice, even when many Services are created at once
or several apiserver replicas serve writes. Kubernetes keeps a bitmap per range in etcd (or, since
1.31, one IPAddress object per IP) and repairs leaks with a controller. kubenats keeps one etcd
key per allocated value and writes it in the SAME transaction as the Service:

- `/kubenats/allocations/serviceips/<ip>` and `/kubenats/allocations/servicenodeports/<port>`,
  value = the owning Service (namespace, name, uid);
- a create puts the Service (`create_revision == 0`) and each new key (`create_revision == 0`) in
  one transaction, so two concurrent creates cannot both claim a value, and a failed create never
  leaks one; an update claims and releases in the transaction guarded by the Service's
  `mod_revision`; a delete removes the Service and its keys together (a key is only released if it
  still names this Service's uid, so stale or foreign keys are never freed by mistake).

So a value is allocated exactly when a stored Service holds it, and Kubernetes' repair loop has
nothing to do; the one exception, Services stored before allocation existed, is adopted once per
process (keys created for what they hold) before the first allocation. The keys live outside
`/registry/`, so the publisher does not put them on NATS.

The choice of a free value follows upstream (`pkg/registry/core/service/ipallocator` and
`portallocator`): dynamic allocation scans from a random start inside the upper part of the range
first and falls back to the lower part, which is left for statically requested values (KEP-3070,
KEP-3668); the network and broadcast addresses are never handed out and the first usable IP is
kept for the `kubernetes` Service. Each apiserver keeps a cache of what is taken only to pick a
likely-free value; etcd's compare decides, and a lost race re-reads the cache and picks again.

The pure part (ranges, picking, planning what one create or update claims and releases, and the
update normalisation that Kubernetes calls patchAllocatedValues / dropTypeDependentFields) is
separate from `ServiceAllocator`, which talks to the etcd gateway.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared import errors
from shared.api.resources import BY_PLURAL, storage_key
from shared.api.validation_meta import Errs, go_strings
from shared.log import event

from .storage import KV, KeyExists, Put, RevisionMismatch, Store

log = logging.getLogger("kubenats.allocator")

ALLOC_PREFIX = "/kubenats/allocations/"
IP_PREFIX = ALLOC_PREFIX + "serviceips/"
PORT_PREFIX = ALLOC_PREFIX + "servicenodeports/"
SERVICES_PREFIX = storage_key(BY_PLURAL[("", "services")], None)
DEFAULT_SERVICE_CIDR = "10.0.0.0/16"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
CACHE_MAX_AGE_S = 30.0
MAX_ATTEMPTS = 20

Obj = dict[str, Any]
Encoder = Callable[[Obj], bytes]


# ---- ranges -----------------------------------------------------------------------------------
def _range_offset(size: int, minimum: int, maximum: int, step: int) -> int:
    """Size of the lower band kept for static values (upstream calculateRangeOffset)."""
    if size < minimum:
        return 0
    return min(max(minimum, size // step), maximum)


class IPRange:
    """The usable addresses of a service CIDR: network (and IPv4 broadcast) excluded."""

    def __init__(self, cidr: str) -> None:
        try:
            self.net = ipaddress.ip_network(cidr.strip(), strict=True)
        except ValueError as e:
            raise ValueError(f"invalid service cluster IP range {cidr!r}: {e}") from None
        self.cidr = str(self.net)
        self.family = "IPv4" if self.net.version == 4 else "IPv6"
        # IPv4 drops network and broadcast; IPv6 only the subnet-router anycast (network) address.
        usable = self.net.num_addresses - (2 if self.net.version == 4 else 1)
        if usable < 2:
            raise ValueError(f"service cluster IP range {self.cidr} is too small")
        self.size = min(usable, 1 << 24)  # an IPv6 /64 is not enumerated past 16M addresses
        self.base = int(self.net.network_address) + 1
        # offset 0 (the first usable IP) belongs to the `kubernetes` Service
        self.static_band = max(1, _range_offset(self.size, 16, 256, 16))

    def offset(self, ip: str) -> int | None:
        """Index of ip in the range, or None when it is not an allocatable address of it."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version != self.net.version:
            return None
        off = int(addr) - self.base
        return off if 0 <= off < self.size else None

    def ip_at(self, offset: int) -> str:
        return str(ipaddress.ip_address(self.base + offset))

    @property
    def first(self) -> str:
        """The IP of the `kubernetes` Service."""
        return self.ip_at(0)

    def contains(self, ip: str) -> bool:
        return self.offset(ip) is not None


class PortRange:
    """A node port range, `30000-32767` (or `30000+2767`, base plus size as upstream allows)."""

    def __init__(self, spec: str) -> None:
        text = spec.strip()
        try:
            if "+" in text:
                a, b = text.split("+", 1)
                self.base, self.size = int(a), int(b) + 1
            else:
                a, _, b = text.partition("-")
                lo, hi = int(a), int(b or a)
                self.base, self.size = lo, hi - lo + 1
        except ValueError:
            raise ValueError(f"invalid service node port range {spec!r}: want FROM-TO such as 30000-32767") from None
        if not (1 <= self.base and self.size >= 1 and self.base + self.size - 1 <= 65535):
            raise ValueError(f"invalid service node port range {spec!r}")
        self.static_band = _range_offset(self.size, 16, 128, 32)

    @property
    def last(self) -> int:
        return self.base + self.size - 1

    def __str__(self) -> str:
        return f"{self.base}-{self.last}"

    def contains(self, port: int) -> bool:
        return self.base <= port <= self.last


def pick_free(size: int, static_band: int, taken: Callable[[int], bool], rng: random.Random,
              reserved: int = 0) -> int | None:
    """A free offset in [reserved, size): random start and forward scan in the dynamic (upper) band
    first, then in the static (lower) band; None when everything is taken."""
    bands = [(max(static_band, reserved), size), (reserved, min(static_band, size))]
    for lo, hi in bands:
        if hi <= lo:
            continue
        n = hi - lo
        start = rng.randrange(n)
        for i in range(n):
            off = lo + (start + i) % n
            if not taken(off):
                return off
    return None


# ---- service shape ----------------------------------------------------------------------------
def _spec(svc: Mapping[str, Any] | None) -> Mapping[str, Any]:
    s = (svc or {}).get("spec")
    return s if isinstance(s, Mapping) else {}


def _type(svc: Mapping[str, Any] | None) -> str:
    return str(_spec(svc).get("type") or "ClusterIP")


def needs_cluster_ip(svc: Mapping[str, Any] | None) -> bool:
    return svc is not None and _type(svc) != "ExternalName"


def needs_node_ports(svc: Mapping[str, Any] | None) -> bool:
    return svc is not None and _type(svc) in ("NodePort", "LoadBalancer")


def allocates_node_ports(svc: Mapping[str, Any] | None) -> bool:
    """NodePort, and LoadBalancer unless allocateLoadBalancerNodePorts is false."""
    if svc is None:
        return False
    t = _type(svc)
    return t == "NodePort" or (t == "LoadBalancer" and _spec(svc).get("allocateLoadBalancerNodePorts") is not False)


def needs_hc_node_port(svc: Mapping[str, Any] | None) -> bool:
    return svc is not None and _type(svc) == "LoadBalancer" and _spec(svc).get("externalTrafficPolicy") == "Local"


def cluster_ips(svc: Mapping[str, Any] | None) -> list[str]:
    spec = _spec(svc)
    ips = [str(ip) for ip in (spec.get("clusterIPs") or []) if ip]
    if not ips and spec.get("clusterIP"):
        ips = [str(spec["clusterIP"])]
    return ips


def allocated_ips(svc: Mapping[str, Any] | None) -> list[str]:
    """The cluster IPs a stored Service holds (none for headless and ExternalName)."""
    if not needs_cluster_ip(svc):
        return []
    return [ip for ip in cluster_ips(svc) if ip != "None"]


def _ports(svc: Mapping[str, Any] | None) -> list[Any]:
    ports = _spec(svc).get("ports")
    return ports if isinstance(ports, list) else []


def _port_num(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def allocated_node_ports(svc: Mapping[str, Any] | None) -> list[int]:
    """The node ports (and health check node port) a stored Service holds."""
    out: set[int] = set()
    if needs_node_ports(svc):
        out.update(_port_num(p.get("nodePort")) for p in _ports(svc) if isinstance(p, Mapping))
    if needs_hc_node_port(svc):
        out.add(_port_num(_spec(svc).get("healthCheckNodePort")))
    out.discard(0)
    return sorted(out)


def prepare_update(old: Obj, new: Obj) -> None:
    """Normalise an update before validation, as Kubernetes' service registry does.

    patchAllocatedValues: a client that sends the object back without clusterIP/nodePorts (kubectl
    apply, a PUT built from a manifest) keeps the values already allocated.
    dropTypeDependentFields: switching to a type that no longer needs a cluster IP, node ports, a
    health check port or an external traffic policy clears those fields, if the client left them as
    they were, so that they are released instead of failing validation."""
    ospec, nspec = _spec(old), new.setdefault("spec", {})
    if not isinstance(nspec, dict):
        return
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not nspec.get("clusterIP") and ospec.get("clusterIP"):
            nspec["clusterIP"] = ospec["clusterIP"]
        if not nspec.get("clusterIPs") and ospec.get("clusterIPs"):
            nspec["clusterIPs"] = list(ospec["clusterIPs"])
    if needs_node_ports(old) and needs_node_ports(new):
        def used(svc: Mapping[str, Any]) -> set[int]:
            return {_port_num(p.get("nodePort")) for p in _ports(svc) if isinstance(p, Mapping)} - {0}
        both = used(old) & used(new)
        by_name = {str(p.get("name") or ""): _port_num(p.get("nodePort")) for p in _ports(old) if isinstance(p, Mapping)}
        for p in _ports(new):
            if isinstance(p, dict) and not _port_num(p.get("nodePort")):
                prev = by_name.get(str(p.get("name") or ""), 0)
                if prev and prev not in both:
                    p["nodePort"] = prev
    if needs_hc_node_port(old) and needs_hc_node_port(new) and not nspec.get("healthCheckNodePort"):
        if ospec.get("healthCheckNodePort"):
            nspec["healthCheckNodePort"] = ospec["healthCheckNodePort"]

    if needs_cluster_ip(old) and not needs_cluster_ip(new):
        if cluster_ips(new) == cluster_ips(old):
            nspec.pop("clusterIP", None)
            nspec.pop("clusterIPs", None)
        if nspec.get("ipFamilies") == ospec.get("ipFamilies"):
            nspec.pop("ipFamilies", None)
        if nspec.get("ipFamilyPolicy") == ospec.get("ipFamilyPolicy"):
            nspec.pop("ipFamilyPolicy", None)
    if needs_node_ports(old) and not needs_node_ports(new):
        if [_port_num(p.get("nodePort")) for p in _ports(new) if isinstance(p, Mapping)] == \
                [_port_num(p.get("nodePort")) for p in _ports(old) if isinstance(p, Mapping)]:
            for p in _ports(new):
                if isinstance(p, dict):
                    p.pop("nodePort", None)
    if needs_hc_node_port(old) and not needs_hc_node_port(new):
        if nspec.get("healthCheckNodePort") == ospec.get("healthCheckNodePort"):
            nspec.pop("healthCheckNodePort", None)
    if _type(old) == "LoadBalancer" and _type(new) != "LoadBalancer":
        for f in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if f in nspec and nspec.get(f) == ospec.get(f):
                nspec.pop(f, None)
    old_ext = needs_node_ports(old) or bool(ospec.get("externalIPs"))
    new_ext = needs_node_ports(new) or bool(nspec.get("externalIPs"))
    if old_ext and not new_ext and nspec.get("externalTrafficPolicy") == ospec.get("externalTrafficPolicy"):
        nspec.pop("externalTrafficPolicy", None)


# ---- planning ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Claim:
    """One value a write takes: `kind` is "ip" or "port"; `requested` when the client chose it."""

    kind: str
    value: str
    requested: bool
    field: str  # where a refusal is reported: "spec.clusterIPs", "spec.ports[0].nodePort", ...

    @property
    def key(self) -> str:
        return (IP_PREFIX if self.kind == "ip" else PORT_PREFIX) + self.value


@dataclass
class Plan:
    claims: list[Claim] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)  # etcd keys


class RangeFull(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _ip_error(svc: Obj, ip: str, detail: str) -> errors.ApiError:
    errs = Errs()
    errs.invalid("spec.clusterIPs", go_strings(cluster_ips(svc) or [ip]), f"failed to allocate IP {ip}: {detail}")
    return _invalid(svc, errs)


def _invalid(svc: Obj, errs: Errs) -> errors.ApiError:
    name = str((svc.get("metadata") or {}).get("name") or "")
    return errors.invalid("Service", name, [{"reason": c.reason, "message": c.message, "field": c.field} for c in errs])


def plan_service(old: Obj | None, new: Obj, ips: IPRange, ports: PortRange,
                 ip_taken: Callable[[int], bool], port_taken: Callable[[int], bool], rng: random.Random) -> Plan:
    """Fill the cluster IP and node ports `new` needs and say what to claim and release.

    `old` is the stored Service on an update (None on a create). Requested values that are out of
    range raise a 422 here; whether they are free is decided by etcd when the plan is committed.
    Auto-picked values avoid what `ip_taken` / `port_taken` report."""
    spec = new.setdefault("spec", {})
    plan = Plan()
    old_ips = set(allocated_ips(old))
    old_ports = set(allocated_node_ports(old))

    # -- cluster IP
    if needs_cluster_ip(new):
        family_errs = Errs()
        policy = spec.get("ipFamilyPolicy")
        wanted_ips = cluster_ips(new)
        headless = wanted_ips == ["None"]
        families = [str(f) for f in spec.get("ipFamilies") or []]
        for i, fam in enumerate(families):
            if fam != ips.family and not (headless and i > 0):
                family_errs.invalid(f"spec.ipFamilies[{i}]", fam, "not configured on this cluster")
        if policy == "RequireDualStack" and not (headless and not spec.get("selector")):
            family_errs.invalid("spec.ipFamilyPolicy", "RequireDualStack",
                                "this cluster is not configured for dual-stack services")
        if family_errs:
            raise _invalid(new, family_errs)
        if not headless:
            if len(wanted_ips) > 1:
                errs = Errs()
                errs.invalid("spec.clusterIPs", go_strings(wanted_ips),
                             "this cluster is not configured for dual-stack services")
                raise _invalid(new, errs)
            if wanted_ips:
                ip = wanted_ips[0]
                if ip not in old_ips:
                    if ips.offset(ip) is None:
                        raise _ip_error(new, ip, f"the provided IP ({ip}) is not in the valid range. "
                                                 f"The range of valid IPs is {ips.cidr}")
                    plan.claims.append(Claim("ip", ip, True, "spec.clusterIPs"))
            else:
                off = pick_free(ips.size, ips.static_band, ip_taken, rng, reserved=1)
                if off is None:
                    raise RangeFull("ip")
                ip = ips.ip_at(off)
                plan.claims.append(Claim("ip", ip, False, "spec.clusterIPs"))
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
            spec["ipFamilies"] = [ips.family]
            if not spec.get("ipFamilyPolicy"):
                spec["ipFamilyPolicy"] = "SingleStack"
    new_ips = set(allocated_ips(new))
    plan.releases += [IP_PREFIX + ip for ip in sorted(old_ips - new_ips)]

    # -- node ports
    chosen: set[int] = set()  # claimed or kept by this write

    def claim_port(value: int, where: str, requested: bool) -> None:
        if value in chosen:
            return
        chosen.add(value)
        if value in old_ports:
            return
        if requested and not ports.contains(value):
            errs = Errs()
            errs.invalid(where, value, f"provided port is not in the valid range. The range of valid ports is {ports}")
            raise _invalid(new, errs)
        plan.claims.append(Claim("port", str(value), requested, where))

    def next_port() -> int:
        off = pick_free(ports.size, ports.static_band,
                        lambda o: port_taken(o) or (ports.base + o) in chosen or (ports.base + o) in old_ports, rng)
        if off is None:
            raise RangeFull("port")
        return ports.base + off

    if needs_node_ports(new):
        plist = [p for p in _ports(new) if isinstance(p, dict)]
        # Ports with the same number (TCP and UDP of one port) share one node port, as upstream
        # does; a value the client gave on any of them is the one they share.
        wanted: dict[int, tuple[int, str]] = {}
        for i, p in enumerate(plist):
            np = _port_num(p.get("nodePort"))
            if np:
                wanted.setdefault(_port_num(p.get("port")), (np, f"spec.ports[{i}].nodePort"))
        for i, p in enumerate(plist):
            where = f"spec.ports[{i}].nodePort"
            requested = _port_num(p.get("nodePort"))
            if requested:
                claim_port(requested, where, True)
                continue
            if not allocates_node_ports(new):
                continue
            svc_port = _port_num(p.get("port"))
            if svc_port in wanted:
                value, at = wanted[svc_port]
                claim_port(value, at, True)
            else:
                value = next_port()
                claim_port(value, where, False)
                wanted[svc_port] = (value, where)
            p["nodePort"] = value
    if needs_hc_node_port(new):
        hc = _port_num(spec.get("healthCheckNodePort"))
        if hc:
            claim_port(hc, "spec.healthCheckNodePort", True)
        else:
            hc = next_port()
            claim_port(hc, "spec.healthCheckNodePort", False)
            spec["healthCheckNodePort"] = hc
    plan.releases += [PORT_PREFIX + str(p) for p in sorted(old_ports - set(allocated_node_ports(new)))]
    return plan


def owner_value(svc: Mapping[str, Any]) -> bytes:
    meta = svc.get("metadata") or {}
    return orjson.dumps({"kind": "Service", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                         "uid": meta.get("uid", "")})


def _owner_uid(kv: KV | None) -> str | None:
    if kv is None:
        return None
    try:
        return str(orjson.loads(kv.value).get("uid") or "")
    except (orjson.JSONDecodeError, AttributeError):
        return ""


# ---- the etcd side ----------------------------------------------------------------------------
class ServiceAllocator:
    """Claims and releases Service IPs and node ports in the same etcd transaction as the Service."""

    def __init__(self, store: Store, service_cidr: str = DEFAULT_SERVICE_CIDR,
                 node_port_range: str = DEFAULT_NODE_PORT_RANGE, rng: random.Random | None = None) -> None:
        self.store = store
        self.ips = IPRange(service_cidr)
        self.ports = PortRange(node_port_range)
        self.rng = rng or random.SystemRandom()
        self._ips: set[int] = set()  # offsets known taken (committed by anyone, or in flight here)
        self._ports: set[int] = set()
        self._loaded_at = -1e9
        self._adopted = False
        self.conflicts = 0  # lost races on auto-picked values (for tests and logs)

    # -- cache
    async def refresh(self, merge: bool = False) -> None:
        """Reload the values known taken from the allocation keys in etcd. `merge` adds them to what
        this process knows instead of replacing it, so its own in-flight picks stay marked: after a
        lost race, because a view missing another replica's allocations loses nearly every race once
        the range is nearly full (the 901st of 1,000 Services in a /22 failed 20 times in a row)."""
        ip_kvs, _rev, _ = await self.store.list(IP_PREFIX)
        port_kvs, _rev, _ = await self.store.list(PORT_PREFIX)
        ips: set[int] = set()
        for kv in ip_kvs:
            off = self.ips.offset(kv.key[len(IP_PREFIX):])
            if off is not None:
                ips.add(off)
        ports: set[int] = set()
        for kv in port_kvs:
            n = _port_num(kv.key[len(PORT_PREFIX):])
            if self.ports.contains(n):
                ports.add(n - self.ports.base)
        if merge:
            self._ips |= ips
            self._ports |= ports
            return
        self._ips, self._ports = ips, ports
        self._loaded_at = time.monotonic()

    async def _ensure_cache(self) -> None:
        if not self._adopted:
            await self.adopt_existing()
        if time.monotonic() - self._loaded_at > CACHE_MAX_AGE_S:
            await self.refresh()

    async def adopt_existing(self) -> int:
        """Give an allocation key to every value a stored Service holds without one (Services written
        before allocation existed, or by a release that did not record them). Runs once per process,
        before the first allocation; returns how many keys it created."""
        kvs, _rev, _ = await self.store.list(SERVICES_PREFIX)
        created = 0
        for kv in kvs:
            try:
                svc = orjson.loads(kv.value)
            except orjson.JSONDecodeError:
                continue
            keys = [IP_PREFIX + ip for ip in allocated_ips(svc) if self.ips.contains(ip)]
            keys += [PORT_PREFIX + str(p) for p in allocated_node_ports(svc) if self.ports.contains(p)]
            for key in keys:
                try:
                    await self.store.create(key, owner_value(svc))
                    created += 1
                except KeyExists:
                    continue
        self._adopted = True
        if created:
            event(log, "allocations_adopted", keys=created, services=len(kvs))
        return created

    def _note(self, plan: Plan, taken: bool) -> None:
        for c in plan.claims:
            self._mark(c.kind, c.value, taken)

    def _mark(self, kind: str, value: str, taken: bool) -> None:
        if kind == "ip":
            off = self.ips.offset(value)
            target = self._ips
        else:
            n = _port_num(value)
            off = n - self.ports.base if self.ports.contains(n) else None
            target = self._ports
        if off is not None:
            (target.add if taken else target.discard)(off)

    def _note_released(self, keys: list[str]) -> None:
        for k in keys:
            if k.startswith(IP_PREFIX):
                self._mark("ip", k[len(IP_PREFIX):], False)
            elif k.startswith(PORT_PREFIX):
                self._mark("port", k[len(PORT_PREFIX):], False)

    async def _plan(self, old: Obj | None, new: Obj) -> Plan:
        await self._ensure_cache()
        for attempt in range(2):
            try:
                return plan_service(old, new, self.ips, self.ports, self._ips.__contains__,
                                    self._ports.__contains__, self.rng)
            except RangeFull as e:
                if attempt == 0:  # the cache may miss releases by other replicas
                    await self.refresh()
                    continue
                what = "a serviceIP" if e.kind == "ip" else "a nodePort"
                raise errors.internal(f"failed to allocate {what}: range is full") from None
        raise AssertionError("unreachable")

    async def _releases(self, svc: Obj, keys: list[str]) -> list[Put]:
        """Deletes of the allocation keys that still name this Service, guarded by their revision."""
        uid = str((svc.get("metadata") or {}).get("uid") or "")
        puts = []
        for key in keys:
            kv = await self.store.get(key)
            if kv is not None and _owner_uid(kv) in (uid, ""):
                puts.append(Put(key, None, kv.mod_revision))
            elif kv is not None:
                event(log, "allocation_not_released", logging.WARNING, key=key, owner=kv.value.decode(errors="replace"))
        return puts

    async def _explain(self, new: Obj, plan: Plan) -> bool:
        """After a failed transaction: raise 422 for a requested value someone holds; return True
        when an auto-picked value was taken meanwhile (pick again), False otherwise."""
        lost = False
        for c in plan.claims:
            kv = await self.store.get(c.key)
            if kv is None:
                continue
            self._mark(c.kind, c.value, True)
            if c.requested:
                errs = Errs()
                if c.kind == "ip":
                    raise _ip_error(new, c.value, "provided IP is already allocated")
                errs.invalid(c.field, int(c.value), "provided port is already allocated")
                raise _invalid(new, errs)
            lost = True
        if lost:
            self.conflicts += 1
        return lost

    # -- the three writes
    async def create(self, key: str, obj: Obj, encode: Encoder, *, dry_run: bool = False) -> int:
        """Fill obj's allocations and store it with them; returns the revision (0 on dry run)."""
        name = str(obj["metadata"].get("name") or "")
        original = copy.deepcopy(obj.get("spec"))
        for _attempt in range(MAX_ATTEMPTS):
            obj["spec"] = copy.deepcopy(original)
            plan = await self._plan(None, obj)
            if dry_run:
                for c in plan.claims:
                    if c.requested and await self.store.get(c.key) is not None:
                        await self._explain(obj, Plan(claims=[c]))
                return 0
            self._note(plan, True)
            value = owner_value(obj)
            try:
                rev = await self.store.txn([Put(key, encode(obj), 0), *(Put(c.key, value, 0) for c in plan.claims)])
            except RevisionMismatch:
                self._note(plan, False)
                if await self.store.get(key) is not None:
                    raise errors.already_exists("services", name) from None
                if await self._explain(obj, plan):
                    await self.refresh(merge=True)  # another replica allocates too: learn all it holds
                continue  # (or the values were freed again meanwhile: try once more)
            event(log, "service_allocated", service=key, claims=[c.value for c in plan.claims])
            return rev
        raise errors.conflict("services", name, "", "too many concurrent allocations; try again")

    async def update(self, key: str, old: Obj, new: Obj, mod_revision: int, encode: Encoder, *,
                     dry_run: bool = False) -> int:
        """Store new over old (guarded by mod_revision) with the claims and releases the change
        implies. Raises RevisionMismatch when the Service changed meanwhile, like Store.update."""
        original = copy.deepcopy(new.get("spec"))
        name = str(old["metadata"].get("name") or "")
        for _attempt in range(MAX_ATTEMPTS):
            new["spec"] = copy.deepcopy(original)
            plan = await self._plan(old, new)
            if dry_run:
                for c in plan.claims:
                    if c.requested and await self.store.get(c.key) is not None:
                        await self._explain(new, Plan(claims=[c]))
                return 0
            if not plan.claims and not plan.releases:
                return await self.store.update(key, encode(new), mod_revision)
            releases = await self._releases(old, plan.releases)
            self._note(plan, True)
            value = owner_value(new)
            try:
                rev = await self.store.txn([Put(key, encode(new), mod_revision),
                                            *(Put(c.key, value, 0) for c in plan.claims), *releases])
            except RevisionMismatch:
                self._note(plan, False)
                cur = await self.store.get(key)
                if cur is None or cur.mod_revision != mod_revision:
                    raise RevisionMismatch(cur) from None
                if await self._explain(new, plan):
                    await self.refresh(merge=True)
                continue
            self._note_released(plan.releases)
            event(log, "service_allocation_changed", service=key, claims=[c.value for c in plan.claims],
                  releases=[k.rsplit("/", 1)[-1] for k in plan.releases])
            return rev
        raise errors.conflict("services", name, "", "too many concurrent allocations; try again")

    async def delete(self, key: str, svc: Obj, mod_revision: int) -> int:
        """Delete the Service and release what it holds in one transaction."""
        keys = [IP_PREFIX + ip for ip in allocated_ips(svc)] + [PORT_PREFIX + str(p) for p in allocated_node_ports(svc)]
        releases = await self._releases(svc, keys)
        if not releases:
            return await self.store.delete(key, mod_revision)
        try:
            rev = await self.store.txn([Put(key, None, mod_revision), *releases])
        except RevisionMismatch:
            raise RevisionMismatch(await self.store.get(key)) from None
        self._note_released([p.key for p in releases])
        event(log, "service_allocation_released", service=key, releases=[p.key.rsplit("/", 1)[-1] for p in releases])
        return rev
