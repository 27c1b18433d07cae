"""The NATS gateway: the only module in kubenats that imports nats-py.

Everything that crosses the broker goes through here: the apiserver's JetStream publishing of
committed changes, the core subscriptions that informers and the watch bridge use, and the
replay that `kubenats events --since` reads. Keeping it in one place means subject naming,
headers and reconnect handling cannot drift between components.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nats
import nats.errors
import nats.js.api
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

log = logging.getLogger("kubenats.bus")

STREAM = "KUBE"
STREAM_SUBJECTS = ["kube.events.>", "kube.nodes.>", "kube.control.>"]
RESYNC_SUBJECT = "kube.control.resync"
REVISION_HEADER = "Kube-Revision"
MSG_ID_HEADER = "Nats-Msg-Id"


def token(value: str) -> str:
    """A subject token for a group, namespace or name: dots (and wildcards) become `_`.

    Kubernetes names may contain dots, which NATS reads as token separators. Group names and
    DNS names never contain `_`, so the mapping is readable and, for them, unambiguous.
    Subjects are routing hints only: the payload carries the exact object."""
    if not value:
        return "_"
    return value.replace(".", "_").replace("*", "_").replace(">", "_").replace(" ", "_")


def event_subject(group: str, plural: str, namespace: str, name: str) -> str:
    return f"kube.events.{token(group or 'core')}.{plural}.{token(namespace)}.{token(name)}"


def node_pod_subject(node: str, namespace: str, name: str) -> str:
    return f"kube.nodes.{token(node)}.pods.{token(namespace)}.{token(name)}"


def msg_id(revision: int, subject: str) -> str:
    """The JetStream dedup id: revision *and* subject, since one change goes to two subjects."""
    return f"{revision}:{subject}"


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    data: bytes
    headers: dict[str, str]
    seq: int = 0  # JetStream stream sequence, when read from the stream

    @property
    def revision(self) -> int:
        try:
            return int(self.headers.get(REVISION_HEADER, "0"))
        except ValueError:
            return 0


Handler = Callable[[Message], Awaitable[None]]
Listener = Callable[[], Awaitable[None]]


@dataclass
class _Sub:
    subject: str
    handler: Handler
    on_gap: Listener | None
    nats_sub: NatsSubscription | None = None


@dataclass
class BusOptions:
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    stream_max_age_s: float = 0
    stream_max_bytes: int = 4 * 1024 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)


class Bus:
    """One NATS connection with reconnect, gap notification and JetStream helpers."""

    def __init__(self, servers: str | list[str], name: str, options: BusOptions | None = None) -> None:
        self._servers = [servers] if isinstance(servers, str) else servers
        self._name = name
        self._opts = options or BusOptions()
        self._nc: Client | None = None
        self._subs: list[_Sub] = []
        self._gap_listeners: list[Listener] = []
        self._js: Any = None
        self._gap_pending: set[int] = set()
        self.reconnects = 0

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("bus is not connected")
        return self._nc

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self, timeout: float = 10.0) -> None:
        kwargs: dict[str, Any] = {
            "servers": self._servers,
            "name": self._name,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "connect_timeout": 2,
            "allow_reconnect": True,
            "disconnected_cb": self._on_disconnect,
            "reconnected_cb": self._on_reconnect,
            "error_cb": self._on_error,
            "pending_size": 64 * 1024 * 1024,
        }
        if self._opts.user:
            kwargs["user"], kwargs["password"] = self._opts.user, self._opts.password
        if self._opts.token:
            kwargs["token"] = self._opts.token
        if self._opts.tls_ca:
            import ssl

            ctx = ssl.create_default_context(cafile=self._opts.tls_ca)
            if self._opts.tls_cert and self._opts.tls_key:
                ctx.load_cert_chain(self._opts.tls_cert, self._opts.tls_key)
            kwargs["tls"] = ctx
        kwargs.update(self._opts.extra)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._nc = await nats.connect(**kwargs)
                return
            except (nats.errors.NoServersError, OSError, TimeoutError) as e:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"cannot reach NATS at {self._servers}: {e}") from e
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        """Drain subscriptions (handlers finish what they hold) and close."""
        if self._nc is None:
            return
        nc, self._nc = self._nc, None
        try:
            if nc.is_connected:
                await asyncio.wait_for(nc.drain(), 5)
        except Exception as e:  # closing anyway
            log.debug("drain failed: %s", e)
        finally:
            if not nc.is_closed:
                await nc.close()

    def on_gap(self, listener: Listener) -> None:
        """Call listener whenever messages may have been missed (reconnect, slow consumer)."""
        self._gap_listeners.append(listener)

    async def _notify_gap(self, subs: list[_Sub]) -> None:
        """Run gap listeners in their own tasks: never inside nats-py's read loop, never failing it.

        A burst of slow-consumer errors for one subscription coalesces into one notification."""
        for s in subs:
            if s.on_gap is not None and id(s) not in self._gap_pending:
                self._gap_pending.add(id(s))
                asyncio.get_running_loop().create_task(self._run_listener(s.on_gap, id(s)))
        for listener in self._gap_listeners:
            asyncio.get_running_loop().create_task(self._run_listener(listener, None))

    async def _run_listener(self, listener: Listener, pending_id: int | None) -> None:
        try:
            await listener()
        except Exception as e:
            log.warning('{"event":"gap_listener_failed","error":"%s"}', str(e).replace('"', "'"))
        finally:
            if pending_id is not None:
                self._gap_pending.discard(pending_id)

    async def _on_disconnect(self) -> None:
        if self._nc is not None:
            log.warning('{"event":"nats_disconnected"}')

    async def _on_reconnect(self) -> None:
        self.reconnects += 1
        log.warning('{"event":"nats_reconnected","count":%d}', self.reconnects)
        await self._notify_gap(list(self._subs))

    async def _on_error(self, e: Exception) -> None:
        if isinstance(e, nats.errors.SlowConsumerError):
            log.warning('{"event":"nats_slow_consumer","subject":"%s"}', e.subject)
            await self._notify_gap([s for s in self._subs if s.nats_sub is not None and s.nats_sub._id == e.sid])
        else:
            log.debug("nats error: %s", e)

    # ---- core pub/sub -------------------------------------------------------------------
    async def subscribe(self, subject: str, handler: Handler, on_gap: Listener | None = None) -> _Sub:
        sub = _Sub(subject, handler, on_gap)

        async def cb(msg: Msg) -> None:
            await handler(Message(msg.subject, msg.data, dict(msg.headers or {})))

        sub.nats_sub = await self.nc.subscribe(
            subject, cb=cb, pending_msgs_limit=500_000, pending_bytes_limit=512 * 1024 * 1024
        )
        self._subs.append(sub)
        return sub

    async def unsubscribe(self, sub: _Sub) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        if sub.nats_sub is not None and self._nc is not None and not self._nc.is_closed:
            try:
                await sub.nats_sub.unsubscribe()
            except Exception as e:  # not connected: nats-py still forgets the subscription
                log.debug("unsubscribe: %s", e)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        await self.nc.publish(subject, data, headers=headers)

    async def flush(self, timeout: int = 5) -> None:
        await self.nc.flush(int(timeout))

    # ---- JetStream ----------------------------------------------------------------------
    async def ensure_stream(self) -> None:
        js = self.nc.jetstream()
        cfg = nats.js.api.StreamConfig(
            name=STREAM,
            subjects=STREAM_SUBJECTS,
            storage=nats.js.api.StorageType.FILE,
            max_age=self._opts.stream_max_age_s,  # 0 = no age limit: the stream is the outbox's marker
            max_bytes=self._opts.stream_max_bytes,
            duplicate_window=120.0,
            discard=nats.js.api.DiscardPolicy.OLD,
        )
        try:
            await js.add_stream(cfg)
        except nats.js.errors.BadRequestError:
            await js.update_stream(cfg)

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    async def js_publish(self, subject: str, data: bytes, revision: int) -> asyncio.Future[Any]:
        """Publish into the stream without waiting; the future resolves with the ack."""
        if self._js is None:
            self._js = self.nc.jetstream(publish_async_max_pending=20000)
        headers = {REVISION_HEADER: str(revision), MSG_ID_HEADER: msg_id(revision, subject)}
        fut: asyncio.Future[Any] = await self._js.publish_async(subject, data, headers=headers)
        return fut

    async def last_published(self) -> Message | None:
        """The newest message in the stream (None when empty)."""
        js = self.nc.jetstream()
        try:
            info = await js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            return None
        if not info.state.last_seq or not info.state.messages:
            return None
        raw = await js.get_msg(STREAM, info.state.last_seq)
        return Message(raw.subject or "", raw.data or b"", dict(raw.headers or {}), raw.seq or 0)

    async def replay(self, subject: str, since_s: float, idle_s: float | None = 0.5) -> AsyncIterator[Message]:
        """Stored messages on subject from `since_s` seconds ago, ending when the stream is caught up
        (idle for `idle_s`), or never when idle_s is None (then new messages follow)."""
        js = self.nc.jetstream()
        start = time.time() - since_s
        opt = nats.js.api.ConsumerConfig(
            deliver_policy=nats.js.api.DeliverPolicy.BY_START_TIME,
            opt_start_time=datetime.fromtimestamp(start, UTC),
            ack_policy=nats.js.api.AckPolicy.NONE,
        )
        sub = await js.subscribe(subject, ordered_consumer=True, config=opt)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=idle_s if idle_s is not None else 3600.0)
                except nats.errors.TimeoutError:
                    if idle_s is None:
                        continue
                    return
                seq = msg.metadata.sequence.stream if msg.reply else 0
                yield Message(msg.subject, msg.data, dict(msg.headers or {}), seq)
        finally:
            await sub.unsubscribe()
