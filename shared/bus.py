"""The NATS gateway: the only module in kubenats that imports nats-py.

Everything that crosses the broker goes through here: the apiserver's JetStream publishing of
committed changes, the core subscriptions that informers and the watch bridge use, and the
replay that `kubenats events --since` reads. Keeping it in one place means subject naming,
headers and reconnect handling cannot drift between components.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.api
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from shared.log import event

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
    """How to reach NATS. Defaults: no authentication, plain TCP (or the client's default TLS
    when the server requires TLS).

    user/password (or token): this component's NATS user (see shared/natsconf.py).
    tls_ca: CA file that verifies the server's certificate; tls_cert/tls_key: optional client
    certificate; tls_hostname: the name to verify when it differs from the URL's host."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_hostname: str | None = None
    stream_max_age_s: float = 0
    stream_max_bytes: int = 4 * 1024 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)


def options_from_args(user: str, password_file: str, ca_file: str) -> BusOptions:
    """BusOptions from the `--nats-user`, `--nats-password-file` and `--nats-ca-file` flags
    (empty strings: not given). The password file holds the password alone; surrounding
    whitespace is ignored."""
    password: str | None = None
    if password_file:
        try:
            password = Path(password_file).read_text().strip()
        except OSError as e:
            raise ValueError(f"cannot read the NATS password file {password_file}: {e.strerror or e}") from None
        if not password:
            raise ValueError(f"the NATS password file {password_file} is empty")
        if not user:
            raise ValueError("--nats-password-file needs --nats-user")
    if ca_file and not Path(ca_file).is_file():
        raise ValueError(f"the NATS CA file {ca_file} does not exist")
    return BusOptions(user=user or None, password=password, tls_ca=ca_file or None)


_PERMISSION = re.compile(r"Permissions Violation for (\w+) (?:to|on) \"?([^\"'\s]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PermissionViolation:
    operation: str  # "publish" or "subscribe"
    subject: str  # lowercase, as nats-py reports it, unless it is one of this Bus's subscriptions
    error: str


def _is_auth_error(e: BaseException) -> bool:
    return isinstance(e, nats.errors.AuthorizationError) or "authorization violation" in str(e).lower()


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
        self._connecting = False
        self._connect_error: Exception | None = None  # the last error nats-py reported while connecting
        self.reconnects = 0
        # what the server refused (most recent last): tests and health checks read it
        self.permission_violations: deque[PermissionViolation] = deque(maxlen=100)

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("bus is not connected")
        return self._nc

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def _tls_context(self) -> ssl.SSLContext | None:
        o = self._opts
        if not (o.tls_ca or o.tls_cert):
            return None
        try:
            ctx = ssl.create_default_context(cafile=o.tls_ca or None)
            if o.tls_cert:
                ctx.load_cert_chain(o.tls_cert, o.tls_key or None)
        except (OSError, ssl.SSLError) as e:
            raise ConnectionError(f"NATS TLS files (ca={o.tls_ca}, cert={o.tls_cert}, key={o.tls_key}): {e}") from e
        return ctx

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect, retrying an unreachable server for up to `timeout` seconds (then
        ConnectionError). Refused credentials and an unverifiable server certificate raise
        ConnectionError at once: retrying cannot fix them. Once connected, reconnects are
        automatic and endless."""
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
        ctx = self._tls_context()
        if ctx is not None:
            kwargs["tls"] = ctx
        if self._opts.tls_hostname:
            kwargs["tls_hostname"] = self._opts.tls_hostname
        kwargs.update(self._opts.extra)
        # nats-py retries a failed first connect forever when reconnects are allowed, and it never
        # gives up on a server it cannot reach (max_reconnect_attempts=-1), saying nothing either
        # way: bound each attempt by the deadline, let refusals surface, and allow reconnects once
        # connected.
        reconnect = bool(kwargs["allow_reconnect"])
        kwargs["allow_reconnect"] = False
        who = f"user {self._opts.user!r}" if self._opts.user else "no user"
        deadline = time.monotonic() + timeout
        self._connecting = True
        self._connect_error = None
        try:
            while True:
                nc = Client()
                try:
                    await asyncio.wait_for(nc.connect(**kwargs), max(deadline - time.monotonic(), 0.1))
                    nc.options["allow_reconnect"] = reconnect
                    self._nc = nc
                    return
                except ssl.SSLCertVerificationError as e:
                    await self._discard(nc)
                    event(log, "nats_tls_failed", logging.ERROR, connection=self._name, servers=self._servers,
                          ca=self._opts.tls_ca, error=str(e))
                    raise ConnectionError(f"cannot verify the NATS server certificate at {self._servers} "
                                          f"(CA file: {self._opts.tls_ca or 'system default'}): {e}") from e
                except (nats.errors.Error, OSError, TimeoutError) as e:
                    await self._discard(nc)
                    if _is_auth_error(e):
                        event(log, "nats_auth_failed", logging.ERROR, connection=self._name, user=self._opts.user,
                              servers=self._servers)
                        raise ConnectionError(f"NATS at {self._servers} refused the connection as {who}: "
                                              f"Authorization Violation (wrong user or password?)") from e
                    if time.monotonic() >= deadline:
                        last = self._connect_error or e
                        raise ConnectionError(f"cannot reach NATS at {self._servers} in {timeout:g}s: "
                                              f"{last!r}") from e
                    await asyncio.sleep(0.2)
        finally:
            self._connecting = False

    @staticmethod
    async def _discard(nc: Client) -> None:
        """Close a client whose first connect failed (its socket may still be open)."""
        try:
            await asyncio.wait_for(nc.close(), 2)
        except Exception as e:
            log.debug("closing a failed connection: %r", e)

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
        elif "permissions violation" in str(e).lower():
            self._on_permission_violation(str(e))
        elif self._connecting:
            self._connect_error = e
        elif _is_auth_error(e):
            # refused while reconnecting (password changed?): nats-py keeps retrying; say so
            event(log, "nats_auth_failed", logging.ERROR, connection=self._name, user=self._opts.user,
                  servers=self._servers)
        else:
            log.debug("nats error: %s", e)

    def _on_permission_violation(self, text: str) -> None:
        """The server refused a publish or subscription of this user: the connection stays up,
        the message is dropped (or the subscription receives nothing). One line per refusal."""
        m = _PERMISSION.search(text)
        op = (m.group(1).lower() if m else "unknown")
        operation = "subscribe" if op.startswith("sub") else op
        subject = m.group(2) if m else ""
        # nats-py lowercases the server's error line; subjects of our own subscriptions get their case back
        subject = next((sub.subject for sub in self._subs if sub.subject.lower() == subject), subject)
        v = PermissionViolation(operation, subject, text.removeprefix("nats: ").strip("'"))
        self.permission_violations.append(v)
        event(log, "nats_permission_violation", logging.ERROR, connection=self._name, user=self._opts.user,
              operation=operation, subject=subject, error=v.error)

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
        """Return once the server has processed everything sent so far (subscriptions included).

        nats-py's flush writes its PING straight to the socket, ahead of commands still queued
        for its flusher task, so its PONG can come back before the server saw a SUB or PUB sent
        just before (measured: 1-4% of fresh subscriptions missed the next message). Hand the
        queue to the socket first."""
        nc = self.nc
        flush_pending = getattr(nc, "_flush_pending", None)
        if flush_pending is not None and nc.is_connected:
            await flush_pending(force_flush=True)
        await nc.flush(int(timeout))

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
