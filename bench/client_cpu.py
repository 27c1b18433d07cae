"""Client-side CPU per API request: httpx (how `ApiClient` used to talk) against `shared.http11`.

Why this exists: py-spy put httpx/httpcore at 20-30% of the CPU of the controller manager, the
scheduler and the kubelet, so `ApiClient` moved to the lean pool in shared/http11.py. This measures
what one request costs the *client* process (time.process_time: the apiserver, etcd and nats-server
are child processes and not counted), with the wall time beside it, for GETs and creates at several
concurrencies. The old way is rebuilt here as it was: an httpx.AsyncClient with the same limits,
headers, TLS context and timeout, and the same request/decode/error code around it.

Run: `.venv/bin/python -m bench.client_cpu [--gets 5000 --creates 2000 --concurrency 1 16 64 --runs 3]`.
Starts its own etcd, nats-server and apiserver (tests/servers.py); prints medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
import orjson

from shared.api.resources import BY_PLURAL
from shared.client import path_of
from shared.errors import ApiError
from tests.servers import Cluster

CM = BY_PLURAL[("", "configmaps")]
NS = BY_PLURAL[("", "namespaces")]


class Client(Protocol):
    async def request(self, method: str, path: str, *, body: Any = None,
                      params: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class HttpxClient:
    """`ApiClient.request` as it was before shared/http11.py: httpx underneath."""

    def __init__(self, c: Cluster, timeout: float = 30.0) -> None:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        headers = {"User-Agent": "bench-httpx", "Accept": "application/json"}
        self._http = httpx.AsyncClient(base_url=c.apiserver.url, headers=headers, verify=c.ssl, timeout=timeout,
                                       limits=limits)

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        content = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            r = await self._http.request(method, path, content=content, params=params, headers=headers)
        except httpx.HTTPError as e:
            raise ApiError(503, "ServiceUnavailable", f"apiserver unreachable: {e}") from e
        try:
            data: dict[str, Any] = orjson.loads(r.content) if r.content else {}
        except orjson.JSONDecodeError:
            data = {"message": r.text}
        if r.status_code >= 400:
            raise ApiError(r.status_code, str(data.get("reason", "Unknown")), str(data.get("message", r.text)))
        return data


def pool_client(c: Cluster) -> Client:
    return c.api_client("bench-http11")


async def run_n(n: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """(client CPU seconds, wall seconds) for `n` calls of `op`, `concurrency` at a time."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0, time.perf_counter() - wall0


async def measure(client: Client, ns: str, gets: int, creates: int, concurrency: int) -> dict[str, tuple[float, float]]:
    get_path = path_of(CM, ns, "target")
    create_path = path_of(CM, ns)
    tag = uuid.uuid4().hex[:6]

    async def get(i: int) -> object:
        return await client.request("GET", get_path)

    async def create(i: int) -> object:
        return await client.request("POST", create_path,
                                    body={"metadata": {"name": f"c-{tag}-{concurrency}-{i}"}, "data": {"k": "v" * 64}})

    await run_n(concurrency * 2, concurrency, get)  # warm: connections open (TLS handshakes not measured)
    return {"GET": await run_n(gets, concurrency, get), "create": await run_n(creates, concurrency, create)}


async def main_async(c: Cluster, args: argparse.Namespace) -> None:
    ns = "cpu-" + uuid.uuid4().hex[:6]
    setup = c.api_client()
    await setup.request("POST", path_of(NS, ""), body={"metadata": {"name": ns}})
    await setup.request("POST", path_of(CM, ns), body={"metadata": {"name": "target"}, "data": {"k": "v" * 512}})
    await setup.close()
    makers: dict[str, Callable[[Cluster], Client]] = {"httpx": HttpxClient, "http11": pool_client}
    results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    for run in range(args.runs):
        for conc in args.concurrency:
            for name, make in makers.items():  # interleaved, so drift hits both alike
                client = make(c)
                try:
                    got = await measure(client, ns, args.gets, args.creates, conc)
                finally:
                    await client.close()
                for op, v in got.items():
                    results.setdefault((name, conc, op), []).append(v)
                print(f"run {run + 1}/{args.runs} c={conc:<3} {name:<6} "
                      + "  ".join(f"{op} {cpu / (args.gets if op == 'GET' else args.creates) * 1e6:6.0f} us/req "
                                  f"{wall:5.2f} s" for op, (cpu, wall) in got.items()), flush=True)
    print(f"\nmedian of {args.runs} runs; CPU = client process time per request; "
          f"{args.gets} GETs, {args.creates} creates per cell")
    print(f"{'op':<7}{'conc':>5}  {'httpx CPU/req':>14}{'http11 CPU/req':>16}{'ratio':>7}"
          f"  {'httpx wall':>11}{'http11 wall':>12}  {'httpx req/s':>11}{'http11 req/s':>13}")
    for op, n in (("GET", args.gets), ("create", args.creates)):
        for conc in args.concurrency:
            cell = {name: (statistics.median(v[0] for v in results[(name, conc, op)]) / n * 1e6,
                           statistics.median(v[1] for v in results[(name, conc, op)])) for name in makers}
            (hc, hw), (pc, pw) = cell["httpx"], cell["http11"]
            print(f"{op:<7}{conc:>5}  {hc:>11.0f} us{pc:>13.0f} us{pc / hc:>7.2f}"
                  f"  {hw:>9.2f} s{pw:>10.2f} s  {n / hw:>11.0f}{n / pw:>13.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--gets", type=int, default=5000)
    p.add_argument("--creates", type=int, default=2000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    c = Cluster().start()
    try:
        asyncio.run(main_async(c, args))
    finally:
        c.stop()


if __name__ == "__main__":
    main()
