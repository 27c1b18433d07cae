"""The proxy's kernel gateway: the only kubenats module that changes the host's networking.

Why this exists: the architecture keeps every side effect behind one narrow module per component,
so the rest of the proxy is pure logic tested without root. This module

- loads rule text into the kernel with `nft -f -` (one atomic transaction per call) and reads
  back which chains and sets our table holds (`nft -j list ...`);
- manages routes and links with pyroute2: the `local` route that makes the whole service range
  belong to this host (so a service IP is never routed off the machine: with no rule for it, a
  connection is refused locally), the node's primary address, and bridge hairpin mode (a pod
  reaching itself through its Service: with br_netfilter the DNATed frame is bridged straight back
  out of the port it came in on, which a bridge only does for ports in hairpin mode);
- deletes UDP conntrack entries with the `conntrack` tool;
- runs `iptables-restore` for the iptables fallback mode.

Nothing here decides what the rules are; that is `services.proxy.proxier`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from shared.log import event

log = logging.getLogger("kubenats.proxy.dataplane")

RT_TABLE_LOCAL = 255
RTN_LOCAL = 2
RT_SCOPE_HOST = 254
RTPROT_STATIC = 4


class DataplaneError(Exception):
    pass


@dataclass(frozen=True)
class TableContents:
    chains: list[str]
    sets: dict[str, str]  # name -> "set" | "map"

    @property
    def exists(self) -> bool:
        return bool(self.chains or self.sets)


async def _run(argv: list[str], stdin: bytes | None = None, timeout: float = 60.0) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DataplaneError(f"{argv[0]} timed out after {timeout}s") from None
    return proc.returncode or 0, out, err


# ---- nftables ---------------------------------------------------------------------------------
async def nft_apply(text: str) -> None:
    """Load `nft -f` input as one transaction; nothing is applied if any line fails."""
    if not text:
        return
    rc, _out, err = await _run(["nft", "-f", "-"], text.encode())
    if rc != 0:
        raise DataplaneError(f"nft -f failed ({rc}): {err.decode(errors='replace').strip()[:2000]}")


async def nft_table_contents(table: str, family: str = "ip") -> TableContents:
    """Names of the chains, sets and maps in our table (empty when the table does not exist)."""
    chains: list[str] = []
    sets: dict[str, str] = {}
    for what in ("chains", "sets", "maps"):
        rc, out, err = await _run(["nft", "-j", "-t", "list", what, family])
        if rc != 0:
            raise DataplaneError(f"nft list {what} failed: {err.decode(errors='replace').strip()}")
        for item in json.loads(out or b"{}").get("nftables", []):
            for kind in ("chain", "set", "map"):
                obj = item.get(kind)
                if isinstance(obj, dict) and obj.get("table") == table:
                    if kind == "chain":
                        chains.append(str(obj["name"]))
                    else:
                        sets[str(obj["name"])] = kind
    return TableContents(chains, sets)


async def nft_table_exists(table: str, family: str = "ip") -> bool:
    rc, out, err = await _run(["nft", "list", "tables", family])
    if rc != 0:
        raise DataplaneError(f"nft list tables failed: {err.decode(errors='replace').strip()}")
    return f"table {family} {table}" in out.decode().splitlines()


async def nft_delete_table(table: str, family: str = "ip") -> bool:
    """Delete the table if it exists; True when something was deleted."""
    if not await nft_table_exists(table, family):
        return False
    await nft_apply(f"add table {family} {table}\ndelete table {family} {table}\n")
    return True


async def nft_list_table(table: str, family: str = "ip") -> str:
    rc, out, _err = await _run(["nft", "list", "table", family, table])
    return out.decode() if rc == 0 else ""


# ---- iptables (fallback mode) -----------------------------------------------------------------
async def iptables_restore(text: str) -> None:
    """Apply `iptables-restore --noflush` input: each table's section commits atomically."""
    rc, _out, err = await _run(["iptables-restore", "--noflush", "-w", "5"], text.encode())
    if rc != 0:
        raise DataplaneError(f"iptables-restore failed ({rc}): {err.decode(errors='replace').strip()[:2000]}")


async def iptables_save(table: str) -> str:
    rc, out, err = await _run(["iptables-save", "-t", table])
    if rc != 0:
        raise DataplaneError(f"iptables-save failed: {err.decode(errors='replace').strip()}")
    return out.decode()


# ---- conntrack --------------------------------------------------------------------------------
async def conntrack_delete(args_list: list[list[str]]) -> int:
    """Run `conntrack` for each argument list; returns how many runs failed (no match is fine)."""
    if not args_list:
        return 0
    if shutil.which("conntrack") is None:
        event(log, "conntrack_missing", logging.WARNING, flushes=len(args_list))
        return len(args_list)
    failed = 0
    for args in args_list:
        rc, _out, err = await _run(["conntrack", *args], timeout=10)
        text = err.decode(errors="replace")
        if rc != 0 and "0 flow entries" not in text:
            failed += 1
            event(log, "conntrack_failed", logging.WARNING, args=args, error=text.strip()[:500])
    return failed


# ---- routes, addresses, links (pyroute2) ------------------------------------------------------
def _ipr() -> IPRoute:
    return IPRoute()


def _local_routes(ipr: IPRoute, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[Any]:
    family = 2 if net.version == 4 else 10
    return [r for r in ipr.get_routes(family=family, table=RT_TABLE_LOCAL)
            if r.get("type") == RTN_LOCAL and r.get("dst_len") == net.prefixlen
            and r.get_attr("RTA_DST") == str(net.network_address)]


def ensure_local_route(cidr: str) -> bool:
    """`ip route replace local <cidr> dev lo table local`; True when it had to be added."""
    net = ipaddress.ip_network(cidr)
    with _ipr() as ipr:
        if _local_routes(ipr, net):
            return False
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.route("replace", dst=str(net.network_address), dst_len=net.prefixlen, type="local", table=RT_TABLE_LOCAL,
                  oif=lo, scope=RT_SCOPE_HOST, proto=RTPROT_STATIC)
    event(log, "service_range_route_added", cidr=str(net))
    return True


def remove_local_route(cidr: str) -> bool:
    """Remove the `local` route of exactly this range (nothing else); True when there was one."""
    net = ipaddress.ip_network(cidr)
    with _ipr() as ipr:
        routes = _local_routes(ipr, net)
        for _r in routes:
            ipr.route("del", dst=str(net.network_address), dst_len=net.prefixlen, type="local", table=RT_TABLE_LOCAL,
                      scope=RT_SCOPE_HOST, oif=_r.get_attr("RTA_OIF"))
    if routes:
        event(log, "service_range_route_removed", cidr=str(net))
    return bool(routes)


def route_type(ip: str) -> str:
    """What `ip route get <ip>` would say the route type is ("local", "unicast", ...), without
    sending anything: it only consults the routing tables."""
    names = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole",
             7: "unreachable", 8: "prohibit"}
    with _ipr() as ipr:
        try:
            routes = ipr.route("get", dst=ip)
        except Exception as e:  # NetlinkError: no route at all
            return f"none ({e})"
        rtype = int(next(iter(routes)).get("type"))
    return names.get(rtype, str(rtype))


def primary_ipv4() -> str | None:
    """The source address the host would use for the default route (`ip -4 route get 1.1.1.1`);
    a route lookup only, no packet is sent."""
    with _ipr() as ipr:
        try:
            routes = list(ipr.route("get", dst="1.1.1.1"))
        except Exception:
            routes = []
        if routes:
            src = routes[0].get_attr("RTA_PREFSRC")
            if src:
                return str(src)
        for addr in ipr.get_addr(family=2):
            ip = str(addr.get_attr("IFA_ADDRESS"))
            if not ip.startswith("127."):
                return ip
    return None


def local_ipv4_addresses() -> list[str]:
    with _ipr() as ipr:
        return sorted({str(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr(family=2)})


def ensure_hairpin(bridges: list[str]) -> int:
    """Turn on hairpin mode on every port of these bridges that lacks it; returns how many changed.

    kubelet's `--hairpin-mode=hairpin-veth` does the same for pod veths in Kubernetes; docker sets
    it itself only with `--userland-proxy=false`."""
    if not bridges:
        return 0
    changed = 0
    with _ipr() as ipr:
        masters: dict[int, str] = {}
        for name in bridges:
            found = ipr.link_lookup(ifname=name)
            if found:
                masters[int(found[0])] = name
        if not masters:
            return 0
        for link in ipr.get_links():
            if link.get_attr("IFLA_MASTER") not in masters:
                continue
            info: Any = link.get_attr("IFLA_LINKINFO")
            data: Any = info.get_attr("IFLA_INFO_SLAVE_DATA") if info is not None else None
            if data is None or info.get_attr("IFLA_INFO_SLAVE_KIND") != "bridge":
                continue
            if data.get_attr("IFLA_BRPORT_MODE"):
                continue
            try:
                ipr.brport("set", index=link["index"], mode=1)
                changed += 1
            except Exception as e:  # the port went away meanwhile
                event(log, "hairpin_failed", logging.DEBUG, port=link.get_attr("IFLA_IFNAME"), error=repr(e))
    return changed
