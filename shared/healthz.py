"""A tiny plain-HTTP health endpoint (kube-proxy's 10256, the kubelet's 10248).

Liveness probes and Compose healthchecks hold no client certificate, so these answer over plain
HTTP on their own port and say only whether the process is well. A raw asyncio server rather
than a web framework: one request per connection, no keep-alive, nothing else served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# path -> (status code, body, content type) for the paths a server answers; None: 404
Answer = Callable[[str], tuple[int, bytes, str] | None]
REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


async def serve(host: str, port: int, answer: Answer) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode(errors="replace").split()
            path = parts[1].split("?")[0] if len(parts) > 1 else "/"
            code, body, ctype = answer(path) or (404, b"404 page not found\n", "text/plain; charset=utf-8")
            writer.write(f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
