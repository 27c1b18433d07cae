"""API clients for the kubelet: a cap on requests in flight, lanes, and priority for leases.

Why this exists: one process may host a thousand hollow nodes, and their registrations, informer
lists, status writes and Events all go to one API server. Unbounded, such a burst overloads it:
requests time out client-side while the server still works on them, clients retry, and it never
recovers (measured: 1,000 concurrent creates took 24 s, and a 1,000-node start stalled for
minutes). Upstream bounds every kubelet's client (kubeAPIQPS/Burst) and gives node status and
leases their own `HeartbeatClient`, so heartbeats never queue behind bulk work. `LimitedClient` is
`shared.client.ApiClient` with a slot count around each request (waiting for a slot costs no
timeout); waiters are served by priority, and lease renewals run at `PRIORITY` 1 so a burst of
node-status reports cannot delay them. The kubelet uses one client for heartbeats (registration,
node status, leases) and one for everything else.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
from typing import Any

from shared.client import ApiClient

PRIORITY: contextvars.ContextVar[int] = contextvars.ContextVar("kubelet_api_priority", default=0)


class LimitedClient(ApiClient):
    def __init__(self, server: str, *, max_in_flight: int, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self.max_in_flight = max_in_flight
        self._free = max_in_flight
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def _acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # handed a slot, but cancelled: pass it on
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        await self._acquire(PRIORITY.get())
        try:
            return await super().request(method, path, body=body, params=params, content_type=content_type)
        finally:
            self._release()


def clients(server: str, node: str, *, nodes: int = 1, **kwargs: Any) -> tuple[LimitedClient, LimitedClient]:
    """(bulk client, heartbeat client) for a process hosting `nodes` nodes. A fleet keeps its bulk
    lane narrow: the API server, not the lane, is the bottleneck, and a narrow lane leaves the
    server (and this process's event loop) room for the heartbeats."""
    bulk = LimitedClient(server, max_in_flight=8 if nodes > 1 else 32, user_agent=f"kubenats-kubelet/{node}", **kwargs)
    # a lease every 10 s per node: 1,000 nodes renew 100 times a second, and at a loaded server's
    # 0.3 s per request that needs 30 in flight (8 let renewals fall minutes behind: nodes went
    # Unknown and their pods were evicted in the 30,000-pod run)
    heartbeat = LimitedClient(server, max_in_flight=min(64, max(8, nodes // 16)),
                              user_agent=f"kubenats-kubelet-heartbeat/{node}", **kwargs)
    return bulk, heartbeat
