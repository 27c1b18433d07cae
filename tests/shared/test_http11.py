"""`shared.http11`: the keep-alive pool under `ApiClient`, against real servers.

Protocol edge cases run against a scriptable asyncio server written here (it counts connections
and records every request it reads); TLS, client certificates, paging and watches against the
real apiserver (the session `cluster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from shared import http11
from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from tests.servers import Cluster, free_port

CM = BY_PLURAL[("", "configmaps")]
NS = BY_PLURAL[("", "namespaces")]


@dataclass
class Req:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    conn: int  # which connection (1, 2, ...)
    nth: int  # which request on that connection (0 = first)


Handler = Callable[[Req], Awaitable[bytes | None]]  # raw response bytes, or None: close without answering


def ok(body: bytes = b"ok", status: int = 200, extra: str = "") -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def chunked(*chunks: bytes, trailer: str = "", ext: str = "") -> bytes:
    out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    out += [b"%x%s\r\n%s\r\n" % (len(c), ext.encode(), c) for c in chunks]
    out.append(f"0\r\n{trailer}\r\n".encode())
    return b"".join(out)


@dataclass
class Server:
    """HTTP/1.1 on 127.0.0.1; `handler` answers each request; `keep_alive` closes idle connections
    (as uvicorn's timeout_keep_alive does)."""

    handler: Handler
    keep_alive: float = 30.0
    requests: list[Req] = field(default_factory=list)
    connections: int = 0
    open: int = 0
    peak: int = 0
    url: str = ""
    _server: asyncio.Server | None = None

    async def start(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            for nth in range(1 << 30):
                try:
                    async with asyncio.timeout(self.keep_alive):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                req = Req(method, target, headers, body, conn, nth)
                self.requests.append(req)
                resp = await self.handler(req)
                if resp is None:
                    return
                writer.write(resp)
                await writer.drain()
                if _server_closes(resp):
                    return
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()


def _server_closes(resp: bytes) -> bool:
    """Does this response end its connection (said so, HTTP/1.0, or a body that ends with it)?"""
    low = resp.lower()
    unframed = b"content-length" not in low and b"transfer-encoding" not in low and resp[9:12] not in (b"204", b"304")
    return b"connection: close" in low or resp.startswith(b"HTTP/1.0") or unframed


@contextlib.asynccontextmanager
async def serving(handler: Handler, keep_alive: float = 30.0) -> AsyncIterator[Server]:
    s = await Server(handler, keep_alive).start()
    try:
        yield s
    finally:
        if s._server is not None:
            s._server.close()


def answer(resp: bytes) -> Handler:
    async def handler(req: Req) -> bytes | None:
        return resp
    return handler


async def echo(req: Req) -> bytes | None:
    return ok(orjson.dumps({"method": req.method, "target": req.target, "body": req.body.decode(),
                            "headers": req.headers}))


# ---------------------------------------------------------------- response parsing

# name, raw response, method, expected (status, body), connection kept for the next request?
PARSING = [
    ("content-length", ok(b"hello"), "GET", (200, b"hello"), True),
    ("empty content-length", ok(b""), "GET", (200, b""), True),
    ("chunked", chunked(b"hel", b"lo ", b"world"), "GET", (200, b"hello world"), True),
    ("chunked with extensions and trailers", chunked(b"a" * 300, b"b", ext=";x=y", trailer="X-T: 1\r\n"),
     "GET", (200, b"a" * 300 + b"b"), True),
    ("chunked, no chunks", chunked(), "GET", (200, b""), True),
    ("connection: close", ok(b"bye", extra="Connection: close\r\n"), "GET", (200, b"bye"), False),
    ("no length: body until EOF", b"HTTP/1.1 200 OK\r\n\r\nuntil the end", "GET", (200, b"until the end"), False),
    ("http/1.0 without keep-alive", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", "GET", (200, b"hi"), False),
    ("204 has no body", b"HTTP/1.1 204 No Content\r\n\r\n", "DELETE", (204, b""), True),
    ("304 has no body", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", (304, b""), True),
    ("HEAD has no body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD", (200, b""), True),
    ("100 continue first", b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final"), "POST", (200, b"final"), True),
    ("error status", ok(b'{"reason":"NotFound"}', 404), "GET", (404, b'{"reason":"NotFound"}'), True),
    ("headers folded case", b"HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 3\r\n\r\nabc", "GET", (200, b"abc"), True),
]


@pytest.mark.parametrize(("resp", "method", "expected", "kept"), [p[1:] for p in PARSING], ids=[p[0] for p in PARSING])
async def test_response_parsing(resp: bytes, method: str, expected: tuple[int, bytes], kept: bool) -> None:
    async with serving(answer(resp)) as s:
        pool = http11.Pool(s.url)
        try:
            for _ in range(2):
                status, _, body = await pool.request(method, "/x")
                assert (status, body) == expected
            assert s.connections == (1 if kept else 2)
        finally:
            await pool.close()


async def test_response_headers_and_request_head() -> None:
    async with serving(echo) as s:
        pool = http11.Pool(s.url + "/prefix/", headers={"User-Agent": "ua/1", "Authorization": "Bearer t"})
        try:
            status, headers, body = await pool.request("PATCH", "/a/b?x=1", b'{"k":1}', {"Content-Type": "x/y"})
            assert status == 200 and headers["content-length"] == str(len(body))
            seen = orjson.loads(body)
            assert seen["method"] == "PATCH" and seen["target"] == "/prefix/a/b?x=1" and seen["body"] == '{"k":1}'
            assert seen["headers"]["host"] == s.url.removeprefix("http://")
            assert seen["headers"]["user-agent"] == "ua/1" and seen["headers"]["authorization"] == "Bearer t"
            assert seen["headers"]["content-type"] == "x/y" and seen["headers"]["content-length"] == "7"
            # a POST without a body still says how long it is; a GET does not
            seen = orjson.loads((await pool.request("POST", "/p"))[2])
            assert seen["headers"]["content-length"] == "0"
            assert "content-length" not in orjson.loads((await pool.request("GET", "/g"))[2])["headers"]
            with pytest.raises(ValueError):
                await pool.request("GET", "/", headers={"X": "a\r\nInjected: 1"})
        finally:
            await pool.close()


MALFORMED = [
    ("not http", b"garbage\r\n\r\n"),
    ("bad status", b"HTTP/1.1 abc\r\n\r\n"),
    ("bad header", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"),
    ("short body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort"),
    ("short chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\nshort"),
    ("bad chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
]


@pytest.mark.parametrize("resp", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_responses_are_transport_errors(resp: bytes) -> None:
    async with serving(answer(resp)) as s:
        pool = http11.Pool(s.url)
        try:
            with pytest.raises(http11.RemoteProtocolError):
                await pool.request("GET", "/")
            assert pool.connections == 0 and pool._open == 0
        finally:
            await pool.close()


async def test_large_bodies() -> None:
    big = bytes(range(256)) * (20 * 4096)  # 20 MiB
    async def handler(req: Req) -> bytes | None:
        if req.target == "/cl":
            return ok(big)
        if req.target == "/chunked":
            return chunked(*(big[i:i + 3_000_000] for i in range(0, len(big), 3_000_000)))
        return ok(str(len(req.body)).encode())

    async with serving(handler) as s:
        pool = http11.Pool(s.url)
        try:
            for target in ("/cl", "/chunked"):
                status, _, body = await pool.request("GET", target)
                assert status == 200 and body == big
            assert (await pool.request("PUT", "/upload", big))[2] == str(len(big)).encode()
            assert s.connections == 1
        finally:
            await pool.close()


# ---------------------------------------------------------------- keep-alive, retries

async def test_idle_connections_are_reused_lifo_and_expire() -> None:
    async with serving(echo) as s:
        pool = http11.Pool(s.url, idle_timeout=0.3)
        try:
            await asyncio.gather(*(pool.request("GET", f"/{i}") for i in range(3)))
            assert s.connections == 3 and len(pool._idle) == 3
            before = list(pool._idle)
            await pool.request("GET", "/again")
            assert pool._idle == before  # the warmest (top) connection served it and came back on top
            await asyncio.sleep(0.5)  # the pool closes them before a server would
            assert pool.connections == 0 and pool._open == 0
            await pool.request("GET", "/fresh")
            assert s.connections == 4
        finally:
            await pool.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_server_closing_an_idle_connection(method: str) -> None:
    """The server's keep-alive timeout ends the connection while it sits idle in the pool (the
    client's idle timeout is longer): the next request notices and opens a fresh one."""
    async with serving(echo, keep_alive=0.1) as s:
        pool = http11.Pool(s.url, idle_timeout=60)
        try:
            assert (await pool.request(method, "/1", b"{}"))[0] == 200
            await asyncio.sleep(0.3)
            assert (await pool.request(method, "/2", b"{}"))[0] == 200
            assert s.connections == 2 and [r.target for r in s.requests] == ["/1", "/2"]
        finally:
            await pool.close()


# method, retried when the server reads the request on a reused connection and hangs up without answering?
RACES = [("GET", True), ("HEAD", True), ("PUT", True), ("DELETE", True), ("POST", False), ("PATCH", False)]


@pytest.mark.parametrize(("method", "retried"), RACES)
async def test_reused_connection_dropped_with_the_request(method: str, retried: bool) -> None:
    """The race the idle timeout avoids: the server closes a keep-alive connection just as a
    request arrives on it. Idempotent requests are retried on a fresh connection; for POST and
    PATCH the server may have acted, so no second copy is sent and the caller gets the error."""
    async def handler(req: Req) -> bytes | None:
        if req.target == "/victim" and req.nth > 0:
            return None  # read it, then hang up
        return ok(b"done")

    async with serving(handler) as s:
        pool = http11.Pool(s.url)
        try:
            await pool.request("GET", "/warm")
            if retried:
                status, _, body = await pool.request(method, "/victim", b"{}")
                assert status == 200 and body == (b"" if method == "HEAD" else b"done")
            else:
                with pytest.raises(http11.TransportError, match="closed the connection"):
                    await pool.request(method, "/victim", b"{}")
            victims = [r for r in s.requests if r.target == "/victim"]
            assert len(victims) == (2 if retried else 1)
            assert pool._open == pool.connections == (1 if retried else 0)
        finally:
            await pool.close()


async def test_post_retried_when_the_write_itself_fails() -> None:
    """A write that fails never delivered the request: even a POST goes again, once."""
    async with serving(echo) as s:
        pool = http11.Pool(s.url)
        try:
            await pool.request("GET", "/warm")
            conn = pool._idle[-1]

            def broken(data: bytes) -> None:
                conn.writer.transport.abort()  # the send fails: the connection is reset under us

            conn.writer.write = broken  # type: ignore[method-assign]
            status, _, body = await pool.request("POST", "/create", b'{"a":1}')
            assert status == 200 and orjson.loads(body)["body"] == '{"a":1}'
            assert [r.target for r in s.requests] == ["/warm", "/create"] and s.connections == 2
        finally:
            await pool.close()


async def test_fresh_connection_failures_are_not_retried() -> None:
    async def handler(req: Req) -> bytes | None:
        return None

    async with serving(handler) as s:
        pool = http11.Pool(s.url)
        try:
            with pytest.raises(http11.RemoteProtocolError):
                await pool.request("GET", "/")
            assert len(s.requests) == 1 and pool._open == 0
        finally:
            await pool.close()


async def test_connect_errors() -> None:
    pool = http11.Pool(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(http11.ConnectError, match="cannot connect"):
            await pool.request("GET", "/")
        assert pool._open == 0
    finally:
        await pool.close()


# ---------------------------------------------------------------- timeouts, limits, cancellation

async def test_timeout() -> None:
    async def handler(req: Req) -> bytes | None:
        if req.target == "/slow":
            await asyncio.sleep(3)
        return ok()

    async with serving(handler) as s:
        pool = http11.Pool(s.url, timeout=0.3)
        try:
            t0 = time.monotonic()
            with pytest.raises(http11.RequestTimeout, match=r"GET /slow: no response within 0.3 s"):
                await pool.request("GET", "/slow")
            assert time.monotonic() - t0 < 1.5
            assert pool._open == 0 and pool.connections == 0  # the connection is gone with its request
            assert (await pool.request("GET", "/fast"))[0] == 200
        finally:
            await pool.close()


async def test_timeout_moves_on_while_a_body_arrives() -> None:
    """The deadline bounds waiting for the head; a big body that keeps arriving is not cut off."""
    async def slow_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        n = 6 * http11.BODY_PIECE
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
        for _ in range(6):
            writer.write(b"x" * http11.BODY_PIECE)
            await writer.drain()
            await asyncio.sleep(0.15)
        writer.close()

    server = await asyncio.start_server(slow_body, "127.0.0.1", 0)
    pool = http11.Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=0.5)
    try:
        status, _, body = await pool.request("GET", "/")  # 0.9 s in all, never 0.5 s without progress
        assert status == 200 and len(body) == 6 * http11.BODY_PIECE
    finally:
        await pool.close()
        server.close()


async def test_pool_limit_and_fifo_waiters() -> None:
    async def handler(req: Req) -> bytes | None:
        await asyncio.sleep(0.01)
        return ok(req.target.encode())

    async with serving(handler) as s:
        pool = http11.Pool(s.url, max_connections=10)
        try:
            results = await asyncio.gather(*(pool.request("GET", f"/{i}") for i in range(200)))
            assert [r[2] for r in results] == [f"/{i}".encode() for i in range(200)]
            assert s.connections <= 10 and s.peak <= 10 and pool.connections <= 10
            assert len(s.requests) == 200 and not pool._waiters
        finally:
            await pool.close()


async def test_cancelled_waiters_do_not_leak_slots() -> None:
    gate = asyncio.Event()

    async def handler(req: Req) -> bytes | None:
        await gate.wait()
        return ok()

    async with serving(handler) as s:
        pool = http11.Pool(s.url, max_connections=2)
        try:
            tasks = [asyncio.create_task(pool.request("GET", f"/{i}")) for i in range(6)]
            await asyncio.sleep(0.2)
            assert len(pool._waiters) == 4
            for t in tasks[1:4]:  # one in flight, two waiting
                t.cancel()
            gate.set()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert [isinstance(d, asyncio.CancelledError) for d in done] == [False, True, True, True, False, False]
            assert pool._open == pool.connections <= 2 and not pool._waiters
            # the cancelled in-flight request took its connection with it; the pool still serves 2 at a time
            await asyncio.gather(*(pool.request("GET", "/more") for _ in range(10)))
            assert pool._open <= 2 and s.peak <= 2
        finally:
            await pool.close()


async def test_close() -> None:
    async with serving(echo) as s:
        pool = http11.Pool(s.url)
        await pool.request("GET", "/")
        await pool.close()
        assert pool.connections == 0
        await asyncio.sleep(0.1)
        assert s.open == 0
        with pytest.raises(RuntimeError, match="closed"):
            await pool.request("GET", "/")


# ---------------------------------------------------------------- streaming

async def test_stream_lines_across_chunk_boundaries() -> None:
    release = asyncio.Event()
    closed = asyncio.Event()

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b'{"a":', b'1}\n{"b":2}\r\n\n{"c"', b':3}\n'):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.05)
        await release.wait()  # the stream stays open: the client ends it
        try:
            while await reader.read(100):
                pass
        finally:
            closed.set()
            writer.close()

    server = await asyncio.start_server(watch, "127.0.0.1", 0)
    pool = http11.Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=0.2)
    try:
        lines = []
        async with pool.stream("GET", "/watch") as r:
            assert r.status == 200
            async for line in r.iter_lines():
                lines.append(line)
                if len(lines) == 4:
                    break
            await asyncio.sleep(0.4)  # longer than the timeout: a stream has none once open
            assert pool.connections == 1
        assert lines == [b'{"a":1}', b'{"b":2}', b"", b'{"c":3}']
        assert pool.connections == 0
        release.set()
        await asyncio.wait_for(closed.wait(), 5)
    finally:
        await pool.close()
        server.close()


# ---------------------------------------------------------------- ApiClient over the pool

async def test_api_client_query_and_errors() -> None:
    async def handler(req: Req) -> bytes | None:
        if req.target.startswith("/status"):
            return ok(b'{"kind":"Status","reason":"Conflict","message":"nope","details":{"name":"x"}}', 409)
        if req.target.startswith("/text"):
            return ok(b"plain failure", 500)
        return await echo(req)

    async with serving(handler) as s:
        client = ApiClient(s.url, token="tok", user_agent="ua-test")
        try:
            seen = await client.request("GET", "/x", params={"limit": 500, "labelSelector": "a in (b,c)",
                                                              "watch": True, "continue": "k=="})
            assert seen["target"] == "/x?limit=500&labelSelector=a+in+%28b%2Cc%29&watch=true&continue=k%3D%3D"
            assert seen["headers"]["authorization"] == "Bearer tok" and seen["headers"]["user-agent"] == "ua-test"
            assert seen["headers"]["accept"] == "application/json"
            seen = await client.request("PATCH", "/p", body={"a": 1}, content_type="application/merge-patch+json")
            assert seen["headers"]["content-type"] == "application/merge-patch+json" and seen["body"] == '{"a":1}'
            with pytest.raises(ApiError) as e:
                await client.request("GET", "/status")
            assert (e.value.code, e.value.reason, e.value.name) == (409, "Conflict", "x")
            with pytest.raises(ApiError) as e:
                await client.request("GET", "/text")
            assert (e.value.code, str(e.value)) == (500, "plain failure")
        finally:
            await client.close()
    down = ApiClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ApiError) as e:
        await down.request("GET", "/")
    assert e.value.code == 503 and e.value.reason == "ServiceUnavailable"
    assert str(e.value).startswith("apiserver unreachable: cannot connect to 127.0.0.1")
    await down.close()


async def test_api_client_timeout_is_503() -> None:
    async def handler(req: Req) -> bytes | None:
        await asyncio.sleep(2)
        return ok()

    async with serving(handler) as s:
        client = ApiClient(s.url, timeout=0.2)
        try:
            with pytest.raises(ApiError) as e:
                await client.request("GET", "/slow")
            assert e.value.code == 503 and "no response within 0.2 s" in str(e.value)
        finally:
            await client.close()


# ---------------------------------------------------------------- the real apiserver (TLS, client certificates)

async def test_apiserver_tls_paging_and_watch(cluster: Cluster) -> None:
    client = cluster.api_client()
    ns = "h11-" + uuid.uuid4().hex[:8]
    try:
        await client.create(NS, "", {"metadata": {"name": ns}})
        for i in range(7):
            await client.create(CM, ns, {"metadata": {"name": f"c{i}"}, "data": {"i": str(i)}})
        listing = await client.list(CM, ns, page_size=3)
        assert sorted(o["metadata"]["name"] for o in listing["items"]) == [f"c{i}" for i in range(7)]
        assert "continue" not in listing["metadata"]
        with pytest.raises(ApiError) as e:
            await client.get(CM, ns, "missing")
        assert e.value.code == 404 and e.value.reason == "NotFound"
        # concurrency over a handful of TLS connections
        got = await asyncio.gather(*(client.get(CM, ns, f"c{i % 7}") for i in range(50)))
        assert {g["data"]["i"] for g in got} == {str(i) for i in range(7)}
        assert client._pool.connections <= 50

        events: list[dict[str, Any]] = []
        stream = client.watch_lines(f"/api/v1/namespaces/{ns}/configmaps",
                                    {"resourceVersion": listing["metadata"]["resourceVersion"]})

        async def follow() -> None:
            async for ev in stream:
                events.append(ev)
                if len(events) == 2:
                    return

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        await client.create(CM, ns, {"metadata": {"name": "w"}})
        await client.delete(CM, ns, "c0")
        await asyncio.wait_for(task, 15)
        await stream.aclose()
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "w"), ("DELETED", "c0")]
        assert client._pool.connections == len(client._pool._idle)  # the watch's connection is gone
    finally:
        with contextlib.suppress(ApiError):
            await client.delete(NS, "", ns)
        await client.close()


async def test_apiserver_hostname_ip_and_certificates(cluster: Cluster) -> None:
    ca = str(cluster.pki.ca.cert)
    admin = cluster.pki.clients["admin"]
    cert = (str(admin.cert), str(admin.key))
    by_name = cluster.apiserver.url.replace("127.0.0.1", "localhost")
    for url in (cluster.apiserver.url, by_name):  # the certificate names both
        async with ApiClient(url, ca_file=ca, cert=cert) as c:
            assert (await c.get(NS, "", "default"))["metadata"]["name"] == "default"
    async with ApiClient(cluster.apiserver.url, ca_file=ca) as anonymous:  # TLS, but no client certificate
        with pytest.raises(ApiError) as e:
            await anonymous.get(NS, "", "default")
        assert e.value.code in (401, 403)
    async with ApiClient(cluster.apiserver.url, cert=cert) as untrusting:  # the system CAs do not vouch for it
        with pytest.raises(ApiError) as e:
            await untrusting.get(NS, "", "default")
        assert e.value.code == 503 and "CERTIFICATE_VERIFY_FAILED" in str(e.value)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(*cert)
    pool = http11.Pool(cluster.apiserver.url.replace("127.0.0.1", "127.0.0.2"), ctx)  # an IP it does not name
    try:
        with pytest.raises(http11.ConnectError):
            await pool.request("GET", "/readyz")
    finally:
        await pool.close()
