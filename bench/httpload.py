"""A lean HTTP/1.1 keep-alive client for load generation.

httpx costs several milliseconds of CPU per request under concurrency, so with 50 clients
on a 2-core machine the load generator, not the server, was the bottleneck. This client
writes requests and parses responses on raw asyncio streams (Content-Length bodies only).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
from urllib.parse import urlsplit


class Conn:
    """One keep-alive connection; `ssl` and `headers` come from the cluster's admin_kwargs (bench.common.conn)."""

    def __init__(self, url: str, ssl: ssl_mod.SSLContext | None = None, headers: dict[str, str] | None = None) -> None:
        u = urlsplit(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl = ssl
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl, limit=1 << 22)

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json", accept: str = "application/json") -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nAccept: {accept}\r\n{self.extra}\r\n").encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value.strip())
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                data += await self.reader.readexactly(size)
                await self.reader.readline()
            return status, data
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
