"""Secrets encrypted at rest: what etcd holds under `/registry/secrets/` is AES-GCM ciphertext.

As kube-apiserver's EncryptionConfiguration with the `aesgcm` provider: values are written as
`k8s:enc:aesgcm:v1:<key name>:<nonce><ciphertext>` with the first key of the key file and read
with any of its keys; a value without the prefix (written before encryption was switched on) is
read as plaintext and encrypted on its next write. The etcd key is bound into each ciphertext as
associated data, so a value copied to another key does not decrypt. Everything above the store
(objects, the publisher) sees plaintext; the publisher never puts a Secret's data on NATS
(see `publisher.messages_for`), so JetStream's files hold none either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from shared.pki import SecretBox

from .storage import KV, Guard, KVs, MaybeKVs, Put, Store, WatchBatch, WatchEvent

PREFIX = "/registry/secrets/"


class EncryptingStore(Store):
    def __init__(self, servers: Sequence[str], box: SecretBox, **options: Any) -> None:
        super().__init__(servers, **options)
        self.box = box

    def _seal(self, key: str, value: bytes) -> bytes:
        return self.box.seal(value, context=key.encode()) if key.startswith(PREFIX) else value

    def _open(self, key: str, value: bytes) -> bytes:
        return self.box.open(value, context=key.encode()) if key.startswith(PREFIX) else value

    def _plain(self, kv: KV | None) -> KV | None:
        if kv is None or not kv.key.startswith(PREFIX):
            return kv
        return KV(kv.key, self._open(kv.key, kv.value), kv.mod_revision, kv.create_revision)

    async def get(self, key: str, revision: int = 0) -> KV | None:
        return self._plain(await super().get(key, revision))

    async def get_at(self, key: str) -> tuple[KV | None, int]:
        kv, rev = await super().get_at(key)
        return self._plain(kv), rev

    async def list(self, prefix: str, *, start: str | None = None, limit: int = 0,
                   revision: int = 0) -> tuple[KVs, int, int]:
        kvs, rev, left = await super().list(prefix, start=start, limit=limit, revision=revision)
        if prefix.startswith(PREFIX) or PREFIX.startswith(prefix):
            kvs = [k for k in (self._plain(kv) for kv in kvs) if k is not None]
        return kvs, rev, left

    async def get_many(self, keys: Sequence[str], revision: int) -> MaybeKVs:
        return [self._plain(kv) for kv in await super().get_many(keys, revision)]

    def _sealed(self, writes: Sequence[Put]) -> Sequence[Put]:
        return [Put(w.key, None if w.value is None else self._seal(w.key, w.value), w.expected) for w in writes]

    async def create(self, key: str, value: bytes, *, also: Sequence[Put] = ()) -> int:
        return await super().create(key, self._seal(key, value), also=self._sealed(also))

    async def update(self, key: str, value: bytes, expected: int, *, also: Sequence[Put] = ()) -> int:
        return await super().update(key, self._seal(key, value), expected, also=self._sealed(also))

    async def delete(self, key: str, expected: int, *, also: Sequence[Put] = ()) -> int:
        return await super().delete(key, expected, also=self._sealed(also))

    async def txn(self, writes: Sequence[Put], *, guards: Sequence[Guard] = ()) -> int:
        return await super().txn(self._sealed(writes), guards=guards)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchBatch]:
        async for batch in super().watch(prefix, start_revision):
            yield [self._event(ev) for ev in batch]

    def _event(self, ev: WatchEvent) -> WatchEvent:
        if not ev.key.startswith(PREFIX):
            return ev
        return WatchEvent(ev.key, None if ev.value is None else self._open(ev.key, ev.value),
                          None if ev.prev is None else self._open(ev.key, ev.prev), ev.revision)
