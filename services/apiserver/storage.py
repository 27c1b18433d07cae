"""The etcd gateway: the only module in kubenats that talks to etcd.

It speaks etcd's gRPC API through `grpc.aio` with the protobuf stubs shipped by
`etcd-sdk-python`, so every call is natively async and nothing blocks the event loop (the
synchronous client would need a thread per in-flight call). Writes are transactions that compare
revisions: create requires `create_revision == 0`, update and delete require the `mod_revision`
the caller read. No write in kubenats is blind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from pyetcd.etcdrpc import kv_pb2, rpc_pb2, rpc_pb2_grpc


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change from the etcd watch; `value` is None for a delete (then `prev` holds the old value)."""

    key: str
    value: bytes | None
    prev: bytes | None
    revision: int


KVs = list[KV]
MaybeKVs = list[KV | None]  # one answer per key asked, None where absent
Keys = list[str]
WatchBatch = list[WatchEvent]


class StoreError(Exception):
    """etcd could not be reached or answered with an error."""


class KeyExists(Exception):
    pass


class RevisionMismatch(Exception):
    """A compare failed; `current` is what is stored now (None if the key is gone)."""

    def __init__(self, current: KV | None) -> None:
        super().__init__("revision mismatch")
        self.current = current


class Compacted(Exception):
    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted up to {compact_revision}")
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class Put:
    """One write of a multi-key transaction: put `value` (or delete when None) if the key's
    mod_revision equals `expected` (0 = must not exist; None = no compare)."""

    key: str
    value: bytes | None
    expected: int | None


Guard = tuple[str, int]  # (key, mod_revision it must still have; 0 = must not exist)
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops: reads of many keys are split into txns of this size


def _op(w: Put) -> rpc_pb2.RequestOp:
    """The unconditional etcd operation of one write: a put, or a delete when `value` is None."""
    if w.value is None:
        return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=w.key.encode()))
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=w.key.encode(), value=w.value))


def _unconditional(also: Sequence[Put]) -> list[rpc_pb2.RequestOp]:
    """Operations riding along a guarded write (secondary index keys): no compare of their own."""
    if any(w.expected is not None for w in also):
        raise ValueError("writes riding along a guarded write take no compare (expected=None)")
    return [_op(w) for w in also]


def _compare(key: str, expected: int) -> rpc_pb2.Compare:
    k = key.encode()
    if expected == 0:
        return rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE, key=k, create_revision=0)
    return rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD, key=k, mod_revision=expected)


def prefix_end(prefix: bytes) -> bytes:
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


def _kv(kv: kv_pb2.KeyValue) -> KV:
    return KV(kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision)


def _endpoint(server: str) -> str:
    for scheme in ("http://", "https://"):
        if server.startswith(scheme):
            return server[len(scheme) :].rstrip("/")
    return server


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise StoreError(f"cannot read the etcd {what} {path}: {e.strerror or e}") from None


class Store:
    """An async etcd client limited to what the apiserver needs.

    `https://` servers are reached over TLS: `ca_file` verifies etcd's certificate (the system's
    roots when empty) and `cert_file`/`key_file` are the client certificate etcd asks for when it
    runs with `--client-cert-auth` (Kubernetes' --etcd-cafile, --etcd-certfile, --etcd-keyfile).
    `http://` servers are plain gRPC as before; mixing the two is refused."""

    def __init__(self, servers: Sequence[str], *, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        if not servers:
            raise ValueError("no etcd servers given")
        secure = {s.startswith("https://") for s in servers}
        if len(secure) > 1:
            raise ValueError(f"etcd servers mix http:// and https://: {', '.join(servers)}")
        if bool(cert_file) != bool(key_file):
            raise ValueError("the etcd client certificate and key go together (--etcd-certfile, --etcd-keyfile)")
        self._urls = list(servers)
        self._tls = secure == {True}
        self._ca_file = ca_file or None
        self._cert_file = cert_file or None
        self._key_file = key_file or None
        self._servers = [_endpoint(s) for s in servers]
        self._channel: grpc.aio.Channel | None = None
        self._kv: rpc_pb2_grpc.KVStub | None = None
        self._watch: rpc_pb2_grpc.WatchStub | None = None

    def _credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self._ca_file, "CA file (--etcd-cafile)") if self._ca_file else None,
            private_key=_read(self._key_file, "client key (--etcd-keyfile)") if self._key_file else None,
            certificate_chain=_read(self._cert_file, "client certificate (--etcd-certfile)") if self._cert_file else None,
        )

    async def open(self) -> None:
        target = self._servers[0] if len(self._servers) == 1 else "ipv4:" + ",".join(self._servers)
        options = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
        if self._tls:
            self._channel = grpc.aio.secure_channel(target, self._credentials(), options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self._kv = rpc_pb2_grpc.KVStub(self._channel)
        self._watch = rpc_pb2_grpc.WatchStub(self._channel)

    def _error(self, what: str, e: grpc.aio.AioRpcError) -> StoreError:
        text = f"etcd {what}: {e.code().name}: {e.details()}"
        if self._tls and e.code() == grpc.StatusCode.UNAVAILABLE:
            text += (f" (TLS to {', '.join(self._urls)} with CA {self._ca_file or 'system roots'}, client certificate "
                     f"{self._cert_file or 'none'}: a refused or unverifiable certificate shows up as UNAVAILABLE; "
                     f"check --etcd-cafile, --etcd-certfile, --etcd-keyfile)")
        return StoreError(text)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    @property
    def kv(self) -> rpc_pb2_grpc.KVStub:
        if self._kv is None:
            raise StoreError("store is not open")
        return self._kv

    async def _call(self, method: str, request: object, timeout: float = 10.0) -> object:
        try:
            return await getattr(self.kv, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.OUT_OF_RANGE:
                raise Compacted(0) from e
            raise self._error(method, e) from e

    async def revision(self) -> int:
        resp = await self._call("Range", rpc_pb2.RangeRequest(key=b"\0", limit=1, count_only=True))
        assert isinstance(resp, rpc_pb2.RangeResponse)
        return int(resp.header.revision)

    async def get(self, key: str, revision: int = 0) -> KV | None:
        resp = await self._call("Range", rpc_pb2.RangeRequest(key=key.encode(), revision=revision))
        assert isinstance(resp, rpc_pb2.RangeResponse)
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def get_at(self, key: str) -> tuple[KV | None, int]:
        """The key and the store revision of the same read."""
        resp = await self._call("Range", rpc_pb2.RangeRequest(key=key.encode()))
        assert isinstance(resp, rpc_pb2.RangeResponse)
        return (_kv(resp.kvs[0]) if resp.kvs else None), int(resp.header.revision)

    async def list(
        self, prefix: str, *, start: str | None = None, limit: int = 0, revision: int = 0
    ) -> tuple[KVs, int, int]:
        """Keys under prefix from `start` (inclusive), at `revision` (0 = now).

        Returns (kvs, etcd's current revision, number of keys left after these); the revision is
        the one read at only when `revision` is 0 (etcd's header always carries its newest)."""
        p = prefix.encode()
        req = rpc_pb2.RangeRequest(
            key=start.encode() if start else p, range_end=prefix_end(p), limit=limit, revision=revision
        )
        resp = await self._call("Range", req, timeout=60.0)
        assert isinstance(resp, rpc_pb2.RangeResponse)
        kvs = [_kv(kv) for kv in resp.kvs]
        remaining = max(0, int(resp.count) - len(kvs)) if resp.more else 0
        return kvs, int(resp.header.revision), remaining

    async def keys(
        self, prefix: str, *, start: str | None = None, limit: int = 0, revision: int = 0
    ) -> tuple[Keys, int, int]:
        """As `list`, keys only (no values read or sent): (keys, etcd's current revision, keys left)."""
        p = prefix.encode()
        req = rpc_pb2.RangeRequest(key=start.encode() if start else p, range_end=prefix_end(p), limit=limit,
                                   revision=revision, keys_only=True)
        resp = await self._call("Range", req, timeout=60.0)
        assert isinstance(resp, rpc_pb2.RangeResponse)
        keys = [kv.key.decode() for kv in resp.kvs]
        return keys, int(resp.header.revision), max(0, int(resp.count) - len(keys)) if resp.more else 0

    async def get_many(self, keys: Sequence[str], revision: int) -> MaybeKVs:
        """Each key as of `revision` (None where absent), in the order asked.

        One read-only transaction per MAX_TXN_OPS keys, all in flight together; every range names
        the revision, so the answers are one consistent snapshot. Raises Compacted when etcd no
        longer has `revision` (or does not have it yet)."""
        chunks = [keys[i : i + MAX_TXN_OPS] for i in range(0, len(keys), MAX_TXN_OPS)]
        answers = await asyncio.gather(*(self._get_chunk(c, revision) for c in chunks))
        return [kv for answer in answers for kv in answer]

    async def _get_chunk(self, keys: Sequence[str], revision: int) -> MaybeKVs:
        ops = [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k.encode(), revision=revision)) for k in keys]
        resp = await self._call("Txn", rpc_pb2.TxnRequest(success=ops), timeout=60.0)
        assert isinstance(resp, rpc_pb2.TxnResponse)
        out: MaybeKVs = []
        for r in resp.responses:
            kvs = r.response_range.kvs
            out.append(_kv(kvs[0]) if kvs else None)
        return out

    async def count(self, prefix: str) -> int:
        p = prefix.encode()
        resp = await self._call("Range", rpc_pb2.RangeRequest(key=p, range_end=prefix_end(p), count_only=True))
        assert isinstance(resp, rpc_pb2.RangeResponse)
        return int(resp.count)

    async def create(self, key: str, value: bytes, *, also: Sequence[Put] = ()) -> int:
        """Put key only if it does not exist; returns the new revision or raises KeyExists.

        `also`: more writes (expected=None) committed in the same transaction, e.g. index keys."""
        k = key.encode()
        txn = rpc_pb2.TxnRequest(
            compare=[_compare(key, 0)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value)), *_unconditional(also)],
        )
        resp = await self._call("Txn", txn)
        assert isinstance(resp, rpc_pb2.TxnResponse)
        if not resp.succeeded:
            raise KeyExists(key)
        return int(resp.header.revision)

    async def update(self, key: str, value: bytes, expected: int, *, also: Sequence[Put] = ()) -> int:
        """Put key only if its mod_revision is `expected`; raises RevisionMismatch otherwise.

        `also`: more writes (expected=None) committed in the same transaction, e.g. index keys."""
        return await self._guarded(key, _op(Put(key, value, None)), expected, also)

    async def delete(self, key: str, expected: int, *, also: Sequence[Put] = ()) -> int:
        return await self._guarded(key, _op(Put(key, None, None)), expected, also)

    async def _guarded(self, key: str, op: rpc_pb2.RequestOp, expected: int, also: Sequence[Put] = ()) -> int:
        k = key.encode()
        txn = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD, key=k, mod_revision=expected)],
            success=[op, *_unconditional(also)],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k))],
        )
        resp = await self._call("Txn", txn)
        assert isinstance(resp, rpc_pb2.TxnResponse)
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            raise RevisionMismatch(_kv(kvs[0]) if kvs else None)
        return int(resp.header.revision)

    async def txn(self, writes: Sequence[Put], *, guards: Sequence[Guard] = ()) -> int:
        """Apply several guarded writes atomically; raises RevisionMismatch(None) if any compare fails.

        `guards`: keys that are not written but must still have the given mod_revision (0 = absent)."""
        compares = [_compare(key, expected) for key, expected in guards]
        compares += [_compare(w.key, w.expected) for w in writes if w.expected is not None]
        resp = await self._call("Txn", rpc_pb2.TxnRequest(compare=compares, success=[_op(w) for w in writes]))
        assert isinstance(resp, rpc_pb2.TxnResponse)
        if not resp.succeeded:
            raise RevisionMismatch(None)
        return int(resp.header.revision)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchBatch]:
        """Yield batches of changes under prefix from start_revision on, in revision order.

        Raises Compacted if start_revision is older than etcd's compaction point, StoreError when
        the stream breaks (the caller resumes from the last revision it handled)."""
        if self._watch is None:
            raise StoreError("store is not open")
        p = prefix.encode()
        create = rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=p, range_end=prefix_end(p), start_revision=start_revision, prev_kv=True, progress_notify=True
            )
        )
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[rpc_pb2.WatchRequest]:
            yield create
            await stop.wait()

        call = self._watch.Watch(requests())
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(int(resp.compact_revision))
                if resp.canceled:
                    raise StoreError(f"etcd watch canceled: {resp.cancel_reason}")
                if not resp.events:
                    continue
                batch = []
                for ev in resp.events:
                    deleted = ev.type == kv_pb2.Event.DELETE
                    batch.append(
                        WatchEvent(
                            key=ev.kv.key.decode(),
                            value=None if deleted else ev.kv.value,
                            prev=ev.prev_kv.value if ev.HasField("prev_kv") else None,
                            revision=int(ev.kv.mod_revision),
                        )
                    )
                yield batch
        except grpc.aio.AioRpcError as e:
            raise self._error("watch", e) from e
        finally:
            stop.set()
            call.cancel()

    async def compact(self, revision: int) -> None:
        await self._call("Compact", rpc_pb2.CompactionRequest(revision=revision, physical=True))

    async def healthy(self) -> bool:
        try:
            await asyncio.wait_for(self.revision(), 2.0)
            return True
        except (StoreError, TimeoutError, Compacted):
            return False
