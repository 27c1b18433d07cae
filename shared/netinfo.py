"""This machine's addresses, as the kubelet reports them and as certificates must name them.

The kubelet advertises the address of the interface holding the default route as its node's
InternalIP; the apiserver connects there for logs and exec and checks the kubelet's serving
certificate against it, so whoever issues that certificate (`kubenats up`, `kubenats init`)
must use the same answer. Reads /proc and one ioctl: no packet is sent.
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFADDR = 0x8915


def read_text(path: str) -> str:
    """A small system file's text, stripped; "" when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def primary_ipv4() -> str:
    """The IPv4 address of the interface holding the default route (127.0.0.1 without one)."""
    iface = ""
    for line in read_text("/proc/net/route").splitlines()[1:]:
        parts = line.split()
        if len(parts) > 2 and parts[1] == "00000000":
            iface = parts[0]
            break
    if iface:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", iface[:15].encode()))
                return socket.inet_ntoa(packed[20:24])
        except OSError:
            pass
    return "127.0.0.1"


def host_addresses() -> tuple[list[str], list[str]]:
    """(names, IPv4 addresses) of this machine: its host name, the primary address, and what
    the host name resolves to locally."""
    name = socket.gethostname()
    ips = {primary_ipv4()}
    try:
        for info in socket.getaddrinfo(name, None, socket.AF_INET):
            ips.add(str(info[4][0]))
    except OSError:
        pass
    return ([name.lower()] if name else []), sorted(ips)
