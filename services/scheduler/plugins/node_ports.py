"""NodePorts: a pod asking for host ports fits only nodes where those ports are free.

Why this exists: two pods binding the same hostPort on one node cannot both start. Upstream's
``HostPortInfo.CheckConflict`` rules: a missing hostIP means 0.0.0.0 and a missing protocol TCP;
a 0.0.0.0 request conflicts with that (protocol, port) on any IP, a specific IP conflicts with
0.0.0.0 and with itself; different protocols never conflict. Resolvable by preemption, so the
reason is a plain string.
"""

from __future__ import annotations

from typing import Final

from services.scheduler.framework import CycleState, FilterResult, NodeInfo, Obj

__all__ = ["ERR_REASON_PORTS", "NodePorts"]

ERR_REASON_PORTS: Final = "node(s) didn't have free ports for the requested pod ports"


class NodePorts:
    """Reject nodes where any requested (protocol, hostIP, hostPort) is taken."""

    name = "NodePorts"

    def pre_filter(self, pod: Obj, state: CycleState) -> bool:
        return bool(state.pod_info.host_ports)

    def filter(self, pod: Obj, node_info: NodeInfo, state: CycleState) -> FilterResult:
        for protocol, host_ip, port in state.pod_info.host_ports:
            if node_info.port_conflict(protocol, host_ip, port):
                return ERR_REASON_PORTS
        return None
