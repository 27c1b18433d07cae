"""A lean HTTP/1.1 keep-alive connection pool on raw asyncio streams: what `ApiClient` talks through.

Why this exists: py-spy profiles at scale showed httpx/httpcore costing 20-30% of the CPU of the
controller manager, the scheduler and the kubelet, most of it not in HTTP itself but in the
machinery around it: the pool's bookkeeping (`_assign_requests_to_connections`, `is_idle`,
`getpeername` per check), anyio stream wrappers (`extra_attributes`), a cancel scope per read and
write. The apiserver speaks one dialect (HTTP/1.1, JSON bodies, keep-alive), so its client needs
little: a request goes out in one `write`, the response head comes in with one `readuntil`, the
body with `readexactly`, and idle connections wait on a stack.

What it does:

- `Pool.request` sends one request and returns (status, headers, body). At most `max_connections`
  are open (streams not counted); idle ones are reused LIFO (the warmest first; the coldest sink to
  the bottom and expire), callers beyond the limit wait FIFO and are handed a connection (or the
  right to open one) the moment another request finishes.
- `timeout` is one deadline for waiting for a connection, connecting, sending and receiving the
  response head, so waiting in the queue uses up part of it. While a body arrives the deadline moves
  forward after every MiB, so a 50 MB LIST is not cut short by a budget meant for the server's think
  time. An expired deadline raises `RequestTimeout`; failures below HTTP raise `TransportError`.
- Idle connections expire after `idle_timeout` (default 4 s): the apiserver is uvicorn, which closes
  keep-alive connections idle for `timeout_keep_alive` = 5 s (its default; the apiserver does not
  change it). Reusing one the server is closing would race; connections whose reader is at EOF or
  whose transport is closing are dropped before reuse too.
- A reused connection that fails before any response byte arrives is retried once on a fresh
  connection, within the same deadline: see `_may_retry` for which methods.
- Responses: Content-Length and chunked bodies, no body for HEAD/1xx/204/304, a body up to EOF
  when neither length is given; `Connection: close` (or an HTTP/1.0 answer) is not reused.
- `Pool.stream` is a request on a dedicated connection (never pooled, no deadline once the head is
  in) whose body is read as it arrives: the apiserver's `?watch=true` responses.

One pool belongs to one event loop; it uses no threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_mod
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from urllib.parse import quote, urlsplit

Headers = dict[str, str]

READ_LIMIT = 1 << 20  # StreamReader limit: the longest response head or chunk-size line accepted
BODY_PIECE = 1 << 20  # bodies larger than this are read in pieces (joined once; the deadline moves on)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_NEEDS_LENGTH = frozenset({"POST", "PUT", "PATCH"})  # bodyless ones still say Content-Length: 0
_QUOTE_SAFE = "/%:@!$&'()*+,;=-._~?"


class TransportError(OSError):
    """The request failed below HTTP: no complete response came back."""


class ConnectError(TransportError):
    """No connection could be opened (refused, unreachable, TLS handshake failed)."""


class RemoteProtocolError(TransportError):
    """The server closed the connection mid-response or sent something that is not HTTP/1.x."""


class RequestTimeout(TransportError, TimeoutError):
    """The request's deadline passed."""


class _Conn:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self) -> bool:
        """False once the server closed its end (EOF), the reader failed or the transport is closing."""
        return not (self.reader.at_eof() or self.reader.exception() is not None or self.writer.transport.is_closing())


def _header_block(headers: Mapping[str, str]) -> str:
    lines = []
    for k, v in headers.items():
        if "\r" in k or "\n" in k or "\r" in v or "\n" in v or ":" in k:
            raise ValueError(f"invalid header {k!r}")
        lines.append(f"{k}: {v}\r\n")
    return "".join(lines)


def _parse_head(head: bytes) -> tuple[int, Headers, bool]:
    """(status, headers with lower-case names, keep-alive?) of a response head ending in CRLFCRLF."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or len(rest) < 3 or not rest[:3].isdigit():
        raise RemoteProtocolError(f"malformed status line {lines[0][:100]!r}")
    status = int(rest[:3])
    headers: Headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise RemoteProtocolError(f"malformed header line {line[:100]!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return status, headers, keep


# what reading and writing raise besides our own errors; reported as TransportError
_WRAPPED = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
_CLOSED_MID_RESPONSE = "the server closed the connection before the response was complete"


def _wrap(e: BaseException) -> TransportError:
    if isinstance(e, TransportError):
        return e
    if isinstance(e, asyncio.IncompleteReadError):
        return RemoteProtocolError(_CLOSED_MID_RESPONSE)
    if isinstance(e, asyncio.LimitOverrunError):
        return RemoteProtocolError(f"response head or chunk line longer than {READ_LIMIT} bytes")
    if isinstance(e, ValueError):
        return RemoteProtocolError(f"malformed response: {e}")
    return TransportError(f"connection failed: {e!r}" if not str(e) else f"connection failed: {e}")


def _may_retry(method: str, sent: bool, e: BaseException) -> bool:
    """May a request that failed on a *reused* connection be sent again on a fresh one?

    Only if no byte of a response arrived (EOF or a reset while waiting for the head: a keep-alive
    connection the server had closed, or a restarted server). Then:
    - GET, HEAD, PUT, DELETE: always. Sending them twice does what sending them once does (in
      Kubernetes a PUT replaces the object, with its resourceVersion precondition if it had one; a
      repeated DELETE at worst answers 404).
    - POST, PATCH: only if the request never fully left this process, i.e. the write itself failed
      (`sent` is False: the transport broke while the bytes were still ours). The server cannot
      have acted on a request it did not receive whole (its body is framed by Content-Length).
      Once the bytes are in the kernel, an EOF may mean "closed before reading it" as well as
      "acted on it, then died": a second create could duplicate an object (generateName) or apply
      a JSON patch twice, so the caller gets the error and decides.
    """
    if isinstance(e, asyncio.IncompleteReadError):
        if e.partial:
            return False
    elif not isinstance(e, OSError) or isinstance(e, TransportError):
        return False  # malformed answers, our own errors: no
    return method in IDEMPOTENT or not sent


class StreamResponse:
    """A response whose body is read as it arrives (`Pool.stream`)."""

    def __init__(self, reader: asyncio.StreamReader, status: int, headers: Headers, has_body: bool) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader
        self._has_body = has_body

    async def iter_bytes(self) -> AsyncGenerator[bytes, None]:
        """The body in the pieces it arrives in (chunk framing removed)."""
        if not self._has_body:
            return
        reader = self._reader
        try:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                            pass
                        return
                    while size > 0:
                        piece = await reader.read(min(size, BODY_PIECE))
                        if not piece:
                            raise RemoteProtocolError(_CLOSED_MID_RESPONSE)
                        size -= len(piece)
                        yield piece
                    if await reader.readexactly(2) != b"\r\n":
                        raise RemoteProtocolError("chunk not followed by CRLF")
            elif "content-length" in self.headers:
                left = int(self.headers["content-length"])
                while left > 0:
                    piece = await reader.read(min(left, BODY_PIECE))
                    if not piece:
                        raise RemoteProtocolError(_CLOSED_MID_RESPONSE)
                    left -= len(piece)
                    yield piece
            else:
                while piece := await reader.read(BODY_PIECE):
                    yield piece
        except _WRAPPED as e:
            raise _wrap(e) from e

    async def iter_lines(self) -> AsyncGenerator[bytes, None]:
        """The body split at LF (a CR before it dropped); the last line may lack its LF."""
        pending: list[bytes] = []
        async with contextlib.aclosing(self.iter_bytes()) as pieces:
            async for chunk in pieces:
                start = 0
                while (nl := chunk.find(b"\n", start)) >= 0:
                    if pending:
                        pending.append(chunk[start:nl])
                        line = b"".join(pending)
                        pending.clear()
                    else:
                        line = chunk[start:nl]
                    yield line[:-1] if line.endswith(b"\r") else line
                    start = nl + 1
                if start < len(chunk):
                    pending.append(chunk[start:])
        if pending:
            yield b"".join(pending)

    async def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        async with contextlib.aclosing(self.iter_bytes()) as pieces:
            async for piece in pieces:
                parts.append(piece)
        return b"".join(parts)


class Pool:
    """Keep-alive HTTP/1.1 connections to one server (`url`: http:// or https://, maybe with a path
    prefix); `headers` go with every request. See the module docstring for the rules."""

    def __init__(self, url: str, ssl_context: ssl_mod.SSLContext | None = None,
                 headers: Mapping[str, str] | None = None, *, max_connections: int = 100,
                 timeout: float | None = 30.0, idle_timeout: float = 4.0) -> None:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = u.hostname
        default_port = 443 if u.scheme == "https" else 80
        self.port = u.port or default_port
        # https: the caller's context, or the system's trust store; the host (name or IP address) is
        # what the certificate is checked against (asyncio passes it as server_hostname)
        self.ssl = (ssl_context or ssl_mod.create_default_context()) if u.scheme == "https" else None
        self.prefix = u.path.rstrip("/")
        self.max_connections = max_connections
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._fixed = _header_block({"Host": host if self.port == default_port else f"{host}:{self.port}",
                                     **(headers or {})})
        self._idle: list[_Conn] = []  # a stack: idle_since grows from the bottom up
        self._conns: set[_Conn] = set()  # every open connection, pooled or streaming (close() ends them)
        self._open = 0  # slots taken against max_connections: connections open, opening, or handed on
        self._waiters: deque[asyncio.Future[_Conn | None]] = deque()  # None: "a slot is yours, open one"
        self._prune_handle: asyncio.TimerHandle | None = None
        self._closed = False

    # ------------------------------------------------------------------ requests

    async def request(self, method: str, target: str, body: bytes | None = None,
                      headers: Mapping[str, str] | None = None) -> tuple[int, Headers, bytes]:
        """Send `method target` (path and query, already encoded) and return (status, headers, body).
        Raises RequestTimeout, ConnectError or another TransportError; RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        head = self._head(method, target, body, headers)
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                return await self._exchange(method, head, body, deadline)
        except TimeoutError as e:
            if isinstance(e, TransportError) or not deadline.expired():
                raise
            raise RequestTimeout(f"{method} {target}: no response within {self.timeout:g} s") from None

    def _head(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str] | None) -> bytes:
        if not target.isascii():
            target = quote(target, safe=_QUOTE_SAFE)
        head = f"{method} {self.prefix}{target} HTTP/1.1\r\n{self._fixed}"
        if headers:
            head += _header_block(headers)
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        elif method in _NEEDS_LENGTH:
            head += "Content-Length: 0\r\n"
        return (head + "\r\n").encode("latin-1")

    async def _exchange(self, method: str, head: bytes, body: bytes | None,
                        deadline: asyncio.Timeout) -> tuple[int, Headers, bytes]:
        conn, reused = await self._acquire()
        while True:
            stage = 0  # 0: writing, 1: sent, waiting for the head, 2: reading the body
            try:
                # no await between the usability check in _acquire and this write: nothing the
                # server did in between can have gone unnoticed
                _write(conn.writer, head, body)
                await conn.writer.drain()
                stage = 1
                status, headers, keep = await _read_head(conn.reader)
                stage = 2
                data, keep = await self._read_body(conn.reader, method, status, headers, keep, deadline)
            except BaseException as e:
                self._close(conn)
                if reused and stage < 2 and isinstance(e, Exception) and _may_retry(method, stage == 1, e):
                    reused = False
                    conn = await self._open_in_slot()  # in the failed connection's slot
                    continue
                self._free_slot()
                if isinstance(e, _WRAPPED):
                    raise _wrap(e) from e
                raise
            self._release(conn, keep)
            return status, headers, data

    async def _read_body(self, reader: asyncio.StreamReader, method: str, status: int, headers: Headers,
                         keep: bool, deadline: asyncio.Timeout) -> tuple[bytes, bool]:
        """(body, connection reusable?)"""
        if method == "HEAD" or status in (204, 304) or status < 200:
            return b"", keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    break
                parts.append(await self._read_exactly(reader, size, deadline))
                if await reader.readexactly(2) != b"\r\n":
                    raise RemoteProtocolError("chunk not followed by CRLF")
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts), keep
        length = headers.get("content-length")
        if length is not None:
            return await self._read_exactly(reader, int(length), deadline), keep
        parts = []  # neither: the body ends with the connection
        while piece := await reader.read(BODY_PIECE):
            parts.append(piece)
            self._extend(deadline)
        return b"".join(parts), False

    async def _read_exactly(self, reader: asyncio.StreamReader, n: int, deadline: asyncio.Timeout) -> bytes:
        if n <= BODY_PIECE:
            return await reader.readexactly(n)
        parts = []
        while n > 0:
            piece = await reader.readexactly(min(n, BODY_PIECE))
            parts.append(piece)
            n -= len(piece)
            self._extend(deadline)
        return b"".join(parts)

    def _extend(self, deadline: asyncio.Timeout) -> None:
        """The body is arriving: the deadline moves `timeout` past now."""
        if self.timeout is not None:
            deadline.reschedule(asyncio.get_running_loop().time() + self.timeout)

    @contextlib.asynccontextmanager
    async def stream(self, method: str, target: str, body: bytes | None = None,
                     headers: Mapping[str, str] | None = None) -> AsyncIterator[StreamResponse]:
        """A request on a connection of its own, its body read as it arrives (watches). `timeout`
        covers connecting and the response head, nothing after; the connection is closed when the
        block ends (e.g. the generator reading it is closed or cancelled)."""
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        head = self._head(method, target, body, headers)
        deadline = asyncio.timeout(self.timeout)
        conn: _Conn | None = None
        try:
            async with deadline:
                conn = await self._connect()
                _write(conn.writer, head, body)
                await conn.writer.drain()
                status, hdrs, _ = await _read_head(conn.reader)
        except BaseException as e:
            if conn is not None:
                self._close(conn)
            if isinstance(e, TimeoutError) and not isinstance(e, TransportError) and deadline.expired():
                raise RequestTimeout(f"{method} {target}: no response within {self.timeout:g} s") from None
            if isinstance(e, _WRAPPED):
                raise _wrap(e) from e
            raise
        has_body = not (method == "HEAD" or status in (204, 304) or status < 200)
        try:
            yield StreamResponse(conn.reader, status, hdrs, has_body)
        finally:
            self._close(conn)

    # ------------------------------------------------------------------ connections

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl, limit=READ_LIMIT)
        except OSError as e:  # ssl.SSLError and socket timeouts are OSErrors too
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {e}") from e
        conn = _Conn(reader, writer)
        if self._closed:  # closed while we connected
            writer.close()
            raise RuntimeError("the connection pool is closed")
        self._conns.add(conn)
        return conn

    async def _acquire(self) -> tuple[_Conn, bool]:
        """A connection for one request, and whether it served requests before."""
        idle = self._idle
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                if now - conn.idle_since < self.idle_timeout and conn.usable():
                    return conn, True
                self._close(conn)
                self._free_slot()
        if self._open < self.max_connections:
            self._open += 1
            return await self._open_in_slot(), False
        fut: asyncio.Future[_Conn | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            got = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed something, but cancelled: pass it on
                handed = fut.result()
                if handed is None:
                    self._free_slot()
                else:
                    self._release(handed, True)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise
        if got is not None:
            if got.usable():
                return got, True
            self._close(got)  # keep its slot
        return await self._open_in_slot(), False

    async def _open_in_slot(self) -> _Conn:
        """Open a connection in a slot the caller holds (given back if that fails)."""
        try:
            return await self._connect()
        except BaseException:
            self._free_slot()
            raise

    def _free_slot(self) -> None:
        """A slot is free: to the first waiter, else back to the count."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._open -= 1

    def _release(self, conn: _Conn, reusable: bool) -> None:
        """A request is done with `conn`: to the first waiter, or onto the idle stack, or closed."""
        if not reusable or self._closed:
            self._close(conn)
            self._free_slot()
            return
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._prune_handle is None:
            self._prune_handle = loop.call_at(conn.idle_since + self.idle_timeout, self._prune)

    def _prune(self) -> None:
        """Close connections idle for `idle_timeout` (before the server does; one timer per pool)."""
        self._prune_handle = None
        idle = self._idle
        loop = asyncio.get_running_loop()
        now = loop.time()
        n = 0
        while n < len(idle) and now - idle[n].idle_since >= self.idle_timeout:
            n += 1
        expired = idle[:n]
        del idle[:n]
        for conn in expired:
            self._close(conn)
            self._free_slot()
        if idle and not self._closed:
            self._prune_handle = loop.call_at(idle[0].idle_since + self.idle_timeout, self._prune)

    def _close(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        conn.writer.close()

    @property
    def connections(self) -> int:
        """Connections open now (pooled and streaming)."""
        return len(self._conns)

    async def close(self) -> None:
        """Close every connection (requests in flight fail with TransportError); further requests
        raise RuntimeError."""
        self._closed = True
        if self._prune_handle is not None:
            self._prune_handle.cancel()
            self._prune_handle = None
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(TransportError("the connection pool was closed"))
        conns = list(self._conns)
        self._conns.clear()
        self._idle.clear()
        for conn in conns:
            conn.writer.close()
        if conns:  # let TLS say goodbye, but not for long
            waits = [asyncio.ensure_future(_wait_closed(c.writer)) for c in conns]
            _, pending = await asyncio.wait(waits, timeout=1)
            for conn, task in zip(conns, waits, strict=True):
                if task in pending:
                    task.cancel()
                    conn.writer.transport.abort()


async def _wait_closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, Headers, bool]:
    while True:
        status, headers, keep = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        if status >= 200 or status == 101:
            return status, headers, keep  # 1xx: an interim answer, the real one follows


def _write(writer: asyncio.StreamWriter, head: bytes, body: bytes | None) -> None:
    if body and len(body) <= 65536:
        writer.write(head + body)  # one segment for the usual small body
    else:
        writer.write(head)
        if body:
            writer.write(body)
