"""A local, indexed cache of one resource, kept current from NATS events and periodic relists.

Components never hold HTTP watches: they subscribe to the event subjects the apiserver publishes
on and read from this cache. Core NATS delivery is at-most-once and the publisher can repeat a
revision (a restarted or second apiserver replica), so the informer is level-triggered:

1. subscribe first, then LIST through the API (revision R) and load the cache;
2. apply an event only if its revision is newer than R and than what the cache already holds
   for that key (so late, duplicate and buffered events are harmless);
3. relist whenever messages may have been missed (`Bus` reports a reconnect or a slow
   consumer), when the apiserver publishes `kube.control.resync`, and every `resync_period`.
   A relist diffs the new list against the cache and emits adds, updates and deletes, so the
   handlers always see a picture consistent with the API.

The periodic relist is only a safety net: a lost message is noticed through the reconnect and
slow-consumer callbacks (a server-side slow consumer is disconnected, so it reconnects) and the
resync message, each of which relists at once. A full LIST of every pod costs the apiserver and
the client a decode of the whole collection, so the default period (`DEFAULT_RESYNC_PERIOD`,
30 min, with 10% jitter) is long; pass a shorter one only for small, cheap views.

A relist reads the collection page by page (`LIST_PAGE_SIZE`) when the client is an
`ApiClient`, and turns each page into cache entries before the next is read, so with a
`transform` that strips objects the full decoded collection never exists at once.

`transform` (client-go's `SetTransform`) is applied to every object before it enters the cache,
from lists and from events, after the informer's own selectors were matched on the full object:
handlers and indexes only ever see transformed objects. Components use it to drop the fields
they never read (a pod cache of 30,000 pods is most of a component's memory).

Cached objects are shared, read-only and may be stripped: handlers and readers must not mutate
them, and must never send one back to the API as a whole (an update or update_status of a
stripped object would erase the fields the transform dropped). Write with a patch of the fields
being changed, or with an object read through the API. Handlers are synchronous and should only
enqueue keys into a `shared.workqueue.WorkQueue`.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson

from shared import bus as busmod
from shared.api.resources import Resource
from shared.client import ApiClient
from shared.log import event
from shared.selectors import object_fields, parse_field_selector, parse_label_selector

log = logging.getLogger("kubenats.informer")

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], list[str]]
AddHandler = Callable[[Obj], None]
UpdateHandler = Callable[[Obj, Obj], None]
DeleteHandler = Callable[[Obj], None]
Transform = Callable[[Obj], Obj]

NAMESPACE_INDEX = "namespace"
DEFAULT_RESYNC_PERIOD = 1800.0  # seconds between safety-net relists (each one +-10%)
LIST_PAGE_SIZE = 500


class Lister(Protocol):
    """What the informer needs from `shared.client.ApiClient` (an ApiClient itself is read page
    by page through `request`; any other Lister, such as a test double, through `list`)."""

    async def list(self, res: Resource, namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "") -> dict[str, Any]: ...


def key_of(obj: Obj) -> str:
    """The cache key of an object: `namespace/name`, or `name` when cluster-scoped."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    name = str(meta.get("name") or "")
    return f"{ns}/{name}" if ns else name


def split_key(key: str) -> tuple[str, str]:
    """`namespace/name` -> (namespace, name); `name` -> ("", name)."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else ("", ns)


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def intern_strings(value: Any) -> Any:
    """A copy of a JSON value whose strings are interned (`sys.intern`), dicts and lists rebuilt.

    For transforms: orjson shares dict keys between decoded objects but not values, so every
    cached pod holds its own copy of the namespace, node name, label values, owner, toleration
    keys, phase, condition types, timestamps... Interned, equal strings are one object. Use it
    on the parts that repeat across objects; strings unique to one object (name, uid,
    resourceVersion, IPs) gain nothing and are better copied as they are."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return {sys.intern(k): intern_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [intern_strings(v) for v in value]
    return value


class SharedValues:
    """Equal JSON values made one shared object, for transforms (hash-consing).

    Pods of one workload repeat the same sub-objects: labels, owner references, tolerations,
    container lists, a running pod's Ready condition (down to the second it became ready), its
    container statuses. Each decoded copy costs a dict of 200+ bytes per level; `values(x)`
    returns the one object equal to x that was seen before (the first time, a copy of x with
    its strings interned), so 30,000 pods hold a few hundred of them. Only sound because cached objects
    are read-only: a mutation would change every pod sharing the value.

    Values are recognised by their JSON encoding. Strings are interned, other scalars returned
    as they are. At most `max_entries` encodings are remembered; when full the memory starts
    over (values already shared stay shared), so values unique to one object cost little
    more than their encoding while they are remembered. Pass only values that do repeat."""

    def __init__(self, max_entries: int = 16384) -> None:
        self.max_entries = max_entries
        self._values: dict[bytes, Any] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return sys.intern(value)
        if not isinstance(value, (dict, list)):
            return value
        key = orjson.dumps(value)
        shared = self._values.get(key)
        if shared is not None:
            self.hits += 1
            return shared
        self.misses += 1
        if len(self._values) >= self.max_entries:
            self._values.clear()
        shared = self._values[key] = intern_strings(value)
        return shared

    def pick(self, src: Obj, plain: tuple[str, ...], shared: tuple[str, ...]) -> Obj:
        """A new dict of `src`'s `plain` keys as they are and its `shared` keys through this cache."""
        out: Obj = {k: src[k] for k in plain if k in src}
        for k in shared:
            if k in src:
                out[k] = self(src[k])
        return out

    def __len__(self) -> int:
        return len(self._values)


def _namespace_index(obj: Obj) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


class Informer:
    """Cache + event handlers for one resource (optionally one namespace, label and field selector)."""

    def __init__(
        self,
        bus: busmod.Bus,
        client: Lister,
        res: Resource,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        subject: str | None = None,
        resync_period: float = DEFAULT_RESYNC_PERIOD,
        transform: Transform | None = None,
    ) -> None:
        self.bus = bus
        self.client = client
        self.res = res
        self.namespace = namespace if res.namespaced else ""
        self.label_selector = label_selector
        self.field_selector = field_selector
        self._labels = parse_label_selector(label_selector)
        self._fields = parse_field_selector(field_selector).for_resource(res.plural)
        ns_token = busmod.token(self.namespace) if self.namespace else "*"
        self.subject = subject or f"kube.events.{busmod.token(res.group_label)}.{res.plural}.{ns_token}.*"
        self.resync_period = resync_period
        self.transform = transform
        self.name = f"{res.key}/{self.namespace or '*'}"

        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: _namespace_index}
        self._indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        # Revision at which a key left this view (deleted or stopped matching): a late or repeated
        # event for it at or below this revision must not bring it back.
        self._tombstones: dict[str, int] = {}
        self._handlers: builtins.list[tuple[AddHandler | None, UpdateHandler | None, DeleteHandler | None]] = []
        self._list_revision = 0
        self._buffer: builtins.list[busmod.Message] | None = None  # events held while a list is in flight
        self._relist_wanted = asyncio.Event()
        self._relist_reason = ""
        self._synced = asyncio.Event()
        self._subs: builtins.list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

        self.relists = 0
        self.relist_failures = 0
        self.events_applied = 0  # events that changed the cache
        self.events_stale = 0  # events not newer than the list or the cached object
        self.events_ignored = 0  # events for objects outside this informer's view
        self.events_bad = 0  # undecodable payloads
        self.transform_failures = 0  # objects cached untransformed because the transform raised

    # ---- configuration ----------------------------------------------------------------------
    def add_handler(self, on_add: AddHandler | None = None, on_update: UpdateHandler | None = None,
                    on_delete: DeleteHandler | None = None) -> None:
        """Register callbacks; objects already cached are replayed to on_add."""
        self._handlers.append((on_add, on_update, on_delete))
        if on_add is not None:
            for obj in list(self._items.values()):
                self._call(on_add, obj)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Index the cache by fn(obj) (a list of values); objects already cached are indexed now."""
        if name in self._indexers:
            raise ValueError(f"index {name!r} already exists")
        self._indexers[name] = fn
        index: dict[str, set[str]] = {}
        self._indices[name] = index
        for key, obj in self._items.items():
            for value in self._index_values(fn, obj):
                index.setdefault(value, set()).add(key)

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe, then list in the background; `await wait_synced()` for the first list."""
        if self._task is not None or self._stopped:
            raise RuntimeError("an informer can be started once")
        self._buffer = []
        self._subs.append(await self.bus.subscribe(self.subject, self._on_message, on_gap=self._on_gap))
        self._subs.append(await self.bus.subscribe(busmod.RESYNC_SUBJECT, self._on_resync, on_gap=self._on_gap))
        await self.bus.flush()  # the server has our subscriptions before we list
        self._task = asyncio.create_task(self._run(), name=f"informer {self.name}")

    async def stop(self) -> None:
        """Unsubscribe and stop relisting; the cache keeps its last content."""
        self._stopped = True  # Bus.unsubscribe skips the NATS UNSUB while disconnected: ignore stragglers
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await self.bus.unsubscribe(sub)
            except Exception as e:  # closing anyway
                event(log, "informer_unsubscribe_failed", logging.DEBUG, informer=self.name, error=repr(e))
        self._buffer = None

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait for the first successful list (raises TimeoutError after timeout seconds)."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def request_relist(self, reason: str = "manual") -> None:
        """Ask for a relist soon (coalesced with any already pending)."""
        if not self._relist_wanted.is_set():
            self._relist_reason = reason
            self._relist_wanted.set()

    # ---- reading ----------------------------------------------------------------------------
    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list(self) -> builtins.list[Obj]:
        return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        """Objects whose index `name` contains `value` (`namespace` is always available)."""
        if name not in self._indices:
            raise KeyError(f"no index {name!r}")
        return [self._items[k] for k in self._indices[name].get(value, ()) if k in self._items]

    @property
    def list_revision(self) -> int:
        """The revision of the last successful list."""
        return self._list_revision

    # ---- events -----------------------------------------------------------------------------
    async def _on_message(self, msg: busmod.Message) -> None:
        if self._stopped:
            return
        if self._buffer is not None:
            self._buffer.append(msg)
            return
        self._apply(msg)

    async def _on_resync(self, msg: busmod.Message) -> None:
        self.request_relist("resync_message")

    async def _on_gap(self) -> None:
        # Called inside nats-py's reconnect and read paths: only flag, never block or raise.
        self.request_relist("gap")

    def _in_view(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace and (meta.get("namespace") or "") != self.namespace:
            return False
        if not self._labels.empty and not self._labels.matches(meta.get("labels") or {}):
            return False
        return self._fields.empty or self._fields.matches(object_fields(self.res.plural, obj))

    def _apply(self, msg: busmod.Message) -> None:
        try:
            data = orjson.loads(msg.data)
            etype = str(data["type"])
            obj: Obj = data["object"]
            key = key_of(obj)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            self.events_bad += 1
            event(log, "informer_bad_event", logging.WARNING, informer=self.name, subject=msg.subject, error=repr(e))
            return
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            self.events_ignored += 1
            return
        if data.get("partial") and etype != "DELETED":
            # the object was too large for one NATS message: only its metadata came; read it whole
            self.request_relist("partial_event")
            return
        if self.namespace and ((obj.get("metadata") or {}).get("namespace") or "") != self.namespace:
            self.events_ignored += 1
            return
        revision = msg.revision or _rv(obj)
        cached = self._items.get(key)
        floor = max(self._list_revision, _rv(cached) if cached is not None else self._tombstones.get(key, 0))
        if revision <= floor:
            self.events_stale += 1
            return
        if etype != "DELETED" and self._in_view(obj):
            self._tombstones.pop(key, None)
            obj = self._transformed(obj)
            self._put(key, obj)
            self.events_applied += 1
            self._notify(cached, obj)
            return
        if cached is None:
            self.events_ignored += 1
            return
        self._remove(key)
        self._tombstones[key] = revision
        self.events_applied += 1
        self._notify(cached, None)

    # ---- relisting --------------------------------------------------------------------------
    async def _run(self) -> None:
        reason = "initial"
        backoff = 0.1
        while True:
            self._relist_wanted.clear()
            try:
                await self._relist(reason)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.relist_failures += 1
                self._end_buffering()
                event(log, "informer_relist_failed", logging.WARNING, informer=self.name, reason=reason,
                      error=f"{type(e).__name__}: {e}", retry_in_s=backoff)
                reason = "retry"
                try:  # retry after the backoff, or sooner if a gap or resync asks for it
                    await asyncio.wait_for(self._relist_wanted.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 10.0)
                continue
            # jitter so that many informers started together do not relist in lockstep
            period = self.resync_period * random.uniform(0.9, 1.1)
            try:
                await asyncio.wait_for(self._relist_wanted.wait(), period)
                reason = self._relist_reason or "requested"
            except TimeoutError:
                reason = "periodic"

    async def _relist(self, reason: str) -> None:
        started = time.monotonic()
        if self._buffer is None:
            self._buffer = []
        # Events are buffered until the list is applied, so the cache cannot change while pages
        # are read: an item the cache already holds at the same revision keeps its cached object
        # (no transform, no second copy), a newer one is transformed as soon as its page arrives.
        fresh: dict[str, Obj] = {}
        revision = 0
        added = updated = deleted = kept_newer = 0
        async for page_revision, items in self._list_pages():
            revision = revision or page_revision
            for i, obj in enumerate(items):
                items[i] = None  # the page's list lets go of each decoded object as it is consumed
                if not self._in_view(obj):
                    continue
                key = key_of(obj)
                cached = self._items.get(key)
                if cached is not None and _rv(cached) >= _rv(obj):
                    if _rv(cached) > _rv(obj):  # came from an event newer than the list
                        kept_newer += 1
                    fresh[key] = cached
                else:
                    fresh[key] = self._transformed(obj)
            del items
        # From here to the end nothing awaits: events queue up behind this in the loop.
        for key, old in list(self._items.items()):
            if key in fresh:
                continue
            if _rv(old) > revision:  # came from an event newer than the list
                kept_newer += 1
                continue
            self._remove(key)
            deleted += 1
            self._notify(old, None)
        for key, obj in fresh.items():
            old_obj = self._items.get(key)
            if old_obj is not None and _rv(old_obj) >= _rv(obj):
                if _rv(old_obj) > _rv(obj):
                    kept_newer += 1
                continue
            if self._tombstones.get(key, 0) > revision:  # deleted by an event newer than the list
                continue
            self._put(key, obj)
            if old_obj is None:
                added += 1
            else:
                updated += 1
            self._notify(old_obj, obj)
        del fresh
        self._list_revision = max(self._list_revision, revision)
        self._tombstones = {k: r for k, r in self._tombstones.items() if r > self._list_revision}
        buffered = self._end_buffering()
        self.relists += 1
        first = not self._synced.is_set()
        self._synced.set()
        event(log, "informer_relist", informer=self.name, reason=reason, revision=revision,
              items=len(self._items), added=added, updated=updated, deleted=deleted, kept_newer=kept_newer,
              buffered=buffered, initial=first, duration_ms=round((time.monotonic() - started) * 1000, 1))

    async def _list_pages(self) -> AsyncIterator[tuple[int, builtins.list[Any]]]:
        """The collection as (revision, items) pages; the revision is the list's (every page's
        items are at the first page's revision: continue tokens pin it).

        An `ApiClient` is read through `list_pages`, each page handed over before the next is
        fetched; any other `Lister` gives its whole list as one page."""
        if not isinstance(self.client, ApiClient):
            result = await self.client.list(self.res, self.namespace, label_selector=self.label_selector,
                                            field_selector=self.field_selector)
            revision = int((result.get("metadata") or {}).get("resourceVersion") or 0)
            items = list(result.pop("items", None) or [])  # a copy: the consumer clears it as it goes
            del result
            yield revision, items
            return
        revision = 0
        async for page in self.client.list_pages(self.res, self.namespace, label_selector=self.label_selector,
                                                  field_selector=self.field_selector, page_size=LIST_PAGE_SIZE):
            revision = revision or int((page.get("metadata") or {}).get("resourceVersion") or 0)
            items = page.pop("items", None) or []
            del page
            yield revision, items
            del items

    def _end_buffering(self) -> int:
        """Stop buffering and apply what was buffered; returns how many events that was."""
        buffered, self._buffer = self._buffer or [], None
        for msg in buffered:
            self._apply(msg)
        return len(buffered)

    # ---- cache and indexes ------------------------------------------------------------------
    def _transformed(self, obj: Obj) -> Obj:
        """The object as it is cached: `transform(obj)`, or obj itself when there is none or it
        fails (a full object is never wrong, a missing one would be)."""
        if self.transform is None:
            return obj
        try:
            return self.transform(obj)
        except Exception as e:
            self.transform_failures += 1
            event(log, "informer_transform_failed", logging.WARNING, informer=self.name, key=key_of(obj),
                  error=f"{type(e).__name__}: {e}")
            return obj

    @staticmethod
    def _index_values(fn: IndexFunc, obj: Obj) -> builtins.list[str]:
        try:
            return fn(obj)
        except Exception as e:
            event(log, "informer_index_failed", logging.WARNING, key=key_of(obj), error=repr(e))
            return []

    def _put(self, key: str, obj: Obj) -> None:
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in self._index_values(fn, obj):
                index.setdefault(value, set()).add(key)

    def _remove(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in self._index_values(fn, obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    # ---- handlers ---------------------------------------------------------------------------
    def _notify(self, old: Obj | None, new: Obj | None) -> None:
        for on_add, on_update, on_delete in self._handlers:
            if new is None:
                if old is not None and on_delete is not None:
                    self._call(on_delete, old)
            elif old is None:
                if on_add is not None:
                    self._call(on_add, new)
            elif on_update is not None:
                self._call(on_update, old, new)

    def _call(self, fn: Callable[..., None], *args: Obj) -> None:
        try:
            fn(*args)
        except Exception as e:
            event(log, "informer_handler_failed", logging.ERROR, informer=self.name,
                  key=key_of(args[-1]), error=f"{type(e).__name__}: {e}")
