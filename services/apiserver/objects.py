"""REST semantics of Kubernetes objects on top of the etcd gateway.

This is where an API request becomes a guarded etcd write: server-set metadata (uid,
creationTimestamp, generation, resourceVersion), defaulting and validation, optimistic
concurrency, graceful deletion with deletionTimestamp and finalizers, the status, scale and
binding subresources, and lists with selectors and pagination. HTTP lives in `app.py`; this
module knows nothing about requests.

Pods by node: every kubelet lists `spec.nodeName=<node>`, and a scan of all pods per node is
O(nodes x pods). So every pod write also keeps a secondary index in the SAME etcd transaction:
an empty key `/kubenats/index/pods-by-node/<node>/<namespace>/<name>` exists exactly while the
pod is stored with that spec.nodeName (written on create and bind, moved if nodeName ever changes,
removed with the pod on every deletion path). It lives outside `/registry/`, like the allocator's
keys, so the publisher never sees it. A nodeName list reads the index range at revision R and
then only those pods at R, which is the scan's answer at R (each pod is re-checked, so a stale
key could never add a wrong item). Clusters written before the index get it from a one-time
backfill (`backfill_node_index`, run at apiserver start) that ends by writing the marker key;
until the marker exists lists scan as before.
"""

from __future__ import annotations

import base64
import copy
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared import errors, selectors
from shared.api import defaults, validation
from shared.api.resources import BY_PLURAL, Resource, parse_storage_key, storage_key
from shared.errors import ApiError
from shared.log import event

from . import admission, schema
from .allocator import ServiceAllocator, prepare_update
from .storage import KV, Compacted, KeyExists, KVs, Put, RevisionMismatch, Store, StoreError

GENERATION_KINDS = frozenset({"deployments", "replicasets", "daemonsets", "statefulsets", "jobs", "cronjobs"})
STATUS_WIPED_ON_CREATE = frozenset({"deployments", "replicasets", "daemonsets", "statefulsets", "jobs", "cronjobs", "services"})
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
NS_CACHE_SECONDS = 1.0
Mutator = Callable[[dict[str, Any]], None]
Items = list[dict[str, Any]]
Strs = list[str]
log = logging.getLogger("kubenats.apiserver.objects")

PODS = BY_PLURAL[("", "pods")]
POD_INDEX_PREFIX = "/kubenats/index/pods-by-node/"  # outside /registry/: no resource key, never published
POD_INDEX_MARKER = "/kubenats/index/pods-by-node.v1"  # written once the index covers every stored pod
INDEX_CHECK_SECONDS = 1.0  # until the marker is seen, look for it at most this often
BACKFILL_BATCH = 100  # pods per backfill transaction (etcd allows 128 operations per txn)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode(raw: bytes, rev: int) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(raw)
    obj["metadata"]["resourceVersion"] = str(rev)
    return obj


def _encode(obj: dict[str, Any]) -> bytes:
    meta = obj["metadata"]
    rv = meta.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


def _parse_rv(value: Any, what: str = "resourceVersion") -> int:
    try:
        rv = int(value)
        if rv < 0:
            raise ValueError
        return rv
    except (TypeError, ValueError):
        raise errors.bad_request(f"invalid {what}: {value!r}") from None


def _spec_of(res: Resource, obj: dict[str, Any]) -> Any:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def encode_continue(revision: int, next_key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": "kubenats/1", "rv": revision, "start": next_key})).decode()


def decode_continue(token: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except Exception:
        raise errors.bad_request("continue key is not valid: illegal base64 data or format") from None


class Objects:
    """Create, read, update, patch, delete and list any resource in the table."""

    def __init__(self, store: Store, allocator: ServiceAllocator | None = None, *, node_index: bool = True) -> None:
        self.store = store
        self.allocator = allocator  # ClusterIPs and NodePorts of core Services (None: not allocated)
        self._ns_cache: dict[str, float] = {}
        self.node_index = node_index  # serve spec.nodeName lists from the index (False: always scan)
        self._node_index_ready = False
        self._node_index_check_at = 0.0

    def _allocates(self, res: Resource) -> bool:
        return self.allocator is not None and res.plural == "services" and not res.group

    async def _delete_key(self, res: Resource, key: str, obj: dict[str, Any], mod_revision: int) -> int:
        """Delete a stored object; a Service releases its IP and node ports in the same transaction,
        a pod its pods-by-node index key."""
        if self.allocator is not None and self._allocates(res):
            return await self.allocator.delete(key, obj, mod_revision)
        return await self.store.delete(key, mod_revision, also=index_writes(key, obj, None))

    # ---- reads --------------------------------------------------------------------------
    async def get(self, res: Resource, ns: str, name: str) -> dict[str, Any]:
        kv = await self.store.get(storage_key(res, ns, name))
        if kv is None:
            raise errors.not_found(res.plural, name, res.group)
        return _decode(kv.value, kv.mod_revision)

    async def list(
        self,
        res: Resource,
        ns: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        revision: int = 0,
    ) -> dict[str, Any]:
        """A list as of `revision` (0: now; a continue token's revision wins)."""
        lsel = _label_selector(label_selector)
        fsel = _field_selector(res, field_selector)
        prefix = storage_key(res, ns or None)
        pinned = revision
        start = None
        if continue_token:
            revision, start = decode_continue(continue_token)
        name_only = fsel.value_for("metadata.name") if fsel is not None else None
        if fsel is not None and name_only is not None and res.namespaced and ns and not fsel_has_other(fsel) and not pinned:
            items: Items = []
            kv, rev = await self.store.get_at(prefix + name_only)
            if kv is not None:
                obj = _decode(kv.value, kv.mod_revision)
                if lsel.matches(obj["metadata"].get("labels")):
                    items.append(obj)
            return self._list_body(res, items, rev, "", None)
        node = indexed_node(res, fsel)
        # a continue token made by the index path goes on there (the index was complete at its
        # revision); one made by a scan goes on scanning
        if node and (start.startswith(POD_INDEX_PREFIX) if start else await self.node_index_ready()):
            return await self._list_node(res, ns, node, lsel, fsel, limit, revision, start)
        return await self._list_scan(res, prefix, lsel, fsel, limit, revision, start)

    async def _list_scan(
        self, res: Resource, prefix: str, lsel: selectors.LabelSelector, fsel: selectors.FieldSelector | None,
        limit: int, revision: int, start: str | None,
    ) -> dict[str, Any]:
        """Range over every object under prefix at `revision`, decode each, keep what matches."""
        if start and not start.startswith(prefix):
            raise _bad_continue()
        items: Items = []
        filtering = not (lsel.empty and fsel is None)
        remaining: int | None = None
        next_token = ""
        while True:
            want = 0 if not limit else (limit - len(items)) + (1 if not filtering else max(50, limit))
            try:
                kvs, rev, left = await self.store.list(prefix, start=start, limit=want, revision=revision)
            except Compacted:
                raise _expired() from None
            revision = revision or rev  # etcd's header carries its current revision, not the one read at
            for i, kv in enumerate(kvs):
                obj = _decode(kv.value, kv.mod_revision)
                if filtering and not _selected(res, obj, lsel, fsel):
                    continue
                if limit and len(items) == limit:
                    next_token = encode_continue(revision, kv.key)
                    if not filtering:
                        remaining = left + (len(kvs) - i)
                    break
                items.append(obj)
            else:
                if left and kvs:
                    start = kvs[-1].key + "\0"
                    continue
            break
        return self._list_body(res, items, revision, next_token, remaining)

    async def _list_node(
        self, res: Resource, ns: str, node: str, lsel: selectors.LabelSelector, fsel: selectors.FieldSelector | None,
        limit: int, revision: int, start: str | None,
    ) -> dict[str, Any]:
        """The pods of one node from the pods-by-node index: the index keys at `revision`, then
        only those pods at the same revision. Same items, order and paging as `_list_scan`."""
        prefix = index_key(node, ns, "") if ns else f"{POD_INDEX_PREFIX}{node}/"
        if start and not start.startswith(prefix):
            raise _bad_continue()
        items: Items = []
        # other selectors may drop pods: then read ahead as the scan does
        extra = 1 if lsel.empty and fsel is not None and len(fsel.requirements) == 1 else max(50, limit)
        while True:
            want = limit - len(items) + extra if limit else 0
            try:
                keys, rev, left = await self.store.keys(prefix, start=start, limit=want, revision=revision)
                revision = revision or rev  # etcd's header carries its current revision, not the one read at
                kvs = await self.store.get_many([indexed_pod_key(k) for k in keys], revision)
            except Compacted:
                raise _expired() from None
            for ikey, kv in zip(keys, kvs, strict=True):
                obj = _pod_on_node(kv, node)
                if obj is None or not _selected(res, obj, lsel, fsel):
                    continue
                if limit and len(items) == limit:
                    return self._list_body(res, items, revision, encode_continue(revision, ikey), None)
                items.append(obj)
            if not (left and keys):
                return self._list_body(res, items, revision, "", None)
            start = keys[-1] + "\0"

    async def node_index_ready(self) -> bool:
        """Whether the pods-by-node index covers every pod (its marker exists); cached once true."""
        if not self.node_index or self._node_index_ready:
            return self.node_index
        now_s = time.monotonic()
        if now_s < self._node_index_check_at:
            return False
        self._node_index_check_at = now_s + INDEX_CHECK_SECONDS
        self._node_index_ready = await self.store.get(POD_INDEX_MARKER) is not None
        return self._node_index_ready

    async def backfill_node_index(self) -> bool:
        """Give every stored pod with a spec.nodeName its index key, then write the marker.

        For pods stored before the index existed; a no-op (False) once the marker is there.
        Idempotent and safe beside concurrent writers (other workers, other replicas): each key
        is put only while its pod still has the revision it was read at, and a pod changed in
        between is re-read, so no key is left for a pod that was deleted or moved meanwhile."""
        if await self.store.get(POD_INDEX_MARKER) is not None:
            self._node_index_ready = True
            return False
        started = time.monotonic()
        pods = indexed = 0
        start: str | None = None
        while True:
            kvs, _rev, left = await self.store.list(storage_key(PODS, None), start=start, limit=BACKFILL_BATCH)
            pods += len(kvs)
            indexed += await self._index_batch(kvs)
            if not (left and kvs):
                break
            start = kvs[-1].key + "\0"
        marker = orjson.dumps({"pods": pods, "indexed": indexed, "at": now()})
        try:
            await self.store.create(POD_INDEX_MARKER, marker)
        except KeyExists:
            pass  # another worker or replica finished first
        self._node_index_ready = True
        event(log, "pod_index_backfilled", pods=pods, indexed=indexed,
              duration_ms=round((time.monotonic() - started) * 1000, 1))
        return True

    async def _index_batch(self, kvs: KVs) -> int:
        """Index keys for one page of pods in one transaction guarded by each pod's revision;
        if any pod changed since the page was read, fall back to one pod at a time."""
        puts: list[Put] = []
        guards: list[tuple[str, int]] = []
        for kv in kvs:
            writes = index_writes(kv.key, None, orjson.loads(kv.value))
            if writes:
                puts += writes
                guards.append((kv.key, kv.mod_revision))
        if not puts:
            return 0
        try:
            await self.store.txn(puts, guards=guards)
            return len(puts)
        except RevisionMismatch:
            return sum([await self._index_one(key) for key, _ in guards])

    async def _index_one(self, key: str) -> int:
        for _attempt in range(20):
            kv = await self.store.get(key)
            puts = index_writes(key, None, orjson.loads(kv.value)) if kv is not None else []
            if kv is None or not puts:
                return 0
            try:
                await self.store.txn(puts, guards=[(key, kv.mod_revision)])
                return 1
            except RevisionMismatch:
                continue
        raise StoreError(f"pod {key} kept changing while the pods-by-node index was built")

    @staticmethod
    def _list_body(
        res: Resource, items: Items, revision: int, token: str, remaining: int | None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if token:
            meta["continue"] = token
            if remaining is not None:
                meta["remainingItemCount"] = remaining
        for item in items:
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        return {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta, "items": items}

    # ---- create -------------------------------------------------------------------------
    async def create(
        self, res: Resource, ns: str, body: Any, *, field_validation: str = "Warn", dry_run: bool = False
    ) -> tuple[dict[str, Any], Strs]:
        obj = self._check_body(res, body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if res.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            gen = meta.get("generateName")
            if gen and isinstance(gen, str):
                meta["name"] = gen + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
        warnings = schema.check(res.api_version, res.kind, obj, field_validation)
        name = str(meta.get("name") or "")
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if res.plural in GENERATION_KINDS:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if res.plural in STATUS_WIPED_ON_CREATE:
            obj.pop("status", None)
        if res.plural == "pods" and not res.group:
            obj["status"] = {}
        if res.plural == "jobs":
            defaults.apply_job_selector(obj, meta["uid"])
        defaults.apply_defaults(res.plural, obj)
        self._validate(res, obj, None)
        admission.check("create", res, "", ns, name, obj, None)
        if res.namespaced:
            await self._check_namespace(ns)
        if self.allocator is not None and self._allocates(res):
            # ClusterIP and NodePorts are claimed in the same etcd transaction as the Service
            rev = await self.allocator.create(storage_key(res, ns, name), obj, _encode, dry_run=dry_run)
            if not dry_run:
                meta["resourceVersion"] = str(rev)
            return obj, warnings
        if dry_run:
            return obj, warnings
        key = storage_key(res, ns, name)
        try:
            rev = await self.store.create(key, _encode(obj), also=index_writes(key, None, obj))
        except KeyExists:
            raise errors.already_exists(res.plural, name, res.group) from None
        meta["resourceVersion"] = str(rev)
        return obj, warnings

    def _check_body(self, res: Resource, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of the request must be a {res.kind} object")
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind is not None and kind != res.kind:
            raise errors.bad_request(f"the kind of the provided object ({kind}) does not match the resource ({res.kind})")
        if api_version is not None and api_version != res.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({res.api_version})"
            )
        obj = copy.deepcopy(body)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        return obj

    def _validate(self, res: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        causes = validation.validate(res.plural, obj, old)
        if causes:
            raise errors.invalid(
                res.kind,
                str(obj.get("metadata", {}).get("name") or ""),
                [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes],
                res.group,
            )

    async def _check_namespace(self, ns: str) -> None:
        """The namespace must exist and not be terminating.

        Like Kubernetes' NamespaceLifecycle admission, which reads a cache: an existing, active
        namespace is remembered for a second; anything else is read from etcd every time."""
        now_s = time.monotonic()
        if self._ns_cache.get(ns, 0.0) > now_s:
            return
        kv = await self.store.get(storage_key(BY_PLURAL[("", "namespaces")], None, ns))
        if kv is None:
            raise errors.not_found("namespaces", ns)
        nsobj = orjson.loads(kv.value)
        if not nsobj.get("metadata", {}).get("deletionTimestamp"):
            if len(self._ns_cache) > 10000:
                self._ns_cache.clear()
            self._ns_cache[ns] = now_s + NS_CACHE_SECONDS
            return
        if nsobj.get("metadata", {}).get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {ns} because it is being terminated",
                name=ns,
                kind="namespaces",
            )

    # ---- update / patch -----------------------------------------------------------------
    async def update(
        self,
        res: Resource,
        ns: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        field_validation: str = "Warn",
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], Strs]:
        new = self._check_body(res, body)
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if res.namespaced and meta.get("namespace") not in (None, "", ns):
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        warnings = schema.check(res.api_version, res.kind, new, field_validation)
        expected = _parse_rv(meta["resourceVersion"]) if meta.get("resourceVersion") else None

        def mutate(cur: dict[str, Any]) -> None:
            if expected is not None and int(cur["metadata"]["resourceVersion"]) != expected:
                raise errors.conflict(res.plural, name, res.group)
            repl = copy.deepcopy(new)
            cur.clear()
            cur.update(repl)

        obj = await self.guaranteed_update(res, ns, name, mutate, subresource=subresource, dry_run=dry_run, retry=expected is None)
        return obj, warnings

    async def patch(
        self,
        res: Resource,
        ns: str,
        name: str,
        apply: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        subresource: str = "",
        field_validation: str = "Warn",
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], Strs]:
        warnings: Strs = []

        def mutate(cur: dict[str, Any]) -> None:
            rv = cur["metadata"]["resourceVersion"]
            patched = apply(copy.deepcopy(cur))
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata", {}), dict):
                raise errors.bad_request("the patch did not produce an object")
            prm = patched.get("metadata", {}).get("resourceVersion")
            if prm is not None and str(prm) != rv:
                raise errors.conflict(res.plural, name, res.group)
            if patched.get("kind", res.kind) != res.kind or patched.get("apiVersion", res.api_version) != res.api_version:
                raise errors.bad_request("a patch may not change kind or apiVersion")
            warnings[:] = schema.check(res.api_version, res.kind, patched, field_validation)
            cur.clear()
            cur.update(patched)

        obj = await self.guaranteed_update(res, ns, name, mutate, subresource=subresource, dry_run=dry_run)
        return obj, warnings

    async def guaranteed_update(
        self,
        res: Resource,
        ns: str,
        name: str,
        mutate: Mutator,
        *,
        subresource: str = "",
        dry_run: bool = False,
        retry: bool = True,
    ) -> dict[str, Any]:
        """Read, apply `mutate` to a copy, merge by the subresource's rules, write guarded by revision.

        Retries on a concurrent write when the caller did not pin a resourceVersion."""
        key = storage_key(res, ns, name)
        for _attempt in range(20):
            kv = await self.store.get(key)
            if kv is None:
                raise errors.not_found(res.plural, name, res.group)
            old = _decode(kv.value, kv.mod_revision)
            cand = copy.deepcopy(old)
            mutate(cand)
            new = self._merge(res, old, cand, subresource)
            if self._allocates(res) and not subresource:
                prepare_update(old, new)  # keep allocated values a client left out; drop type-dependent ones
            if new == old:
                return old
            # binding sets spec.nodeName, which is otherwise immutable: validate it as a new object
            self._validate(res, new, None if subresource == "binding" else old)
            admission.check("update", res, subresource, ns, name, new, old)
            if dry_run:
                if self.allocator is not None and self._allocates(res) and not subresource:
                    await self.allocator.update(key, old, new, kv.mod_revision, _encode, dry_run=True)
                return new
            if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") and (
                res.plural != "pods" or new["metadata"].get("deletionGracePeriodSeconds") == 0
            ) and not _spec_finalizers(res, new):
                try:
                    rev = await self._delete_key(res, key, old, kv.mod_revision)
                except RevisionMismatch:
                    if retry:
                        continue
                    raise errors.conflict(res.plural, name, res.group) from None
                new["metadata"]["resourceVersion"] = str(rev)
                return new
            try:
                if self.allocator is not None and self._allocates(res) and not subresource:
                    rev = await self.allocator.update(key, old, new, kv.mod_revision, _encode)
                else:
                    rev = await self.store.update(key, _encode(new), kv.mod_revision, also=index_writes(key, old, new))
            except RevisionMismatch as e:
                if e.current is None:
                    raise errors.not_found(res.plural, name, res.group) from None
                if retry:
                    continue
                raise errors.conflict(res.plural, name, res.group) from None
            new["metadata"]["resourceVersion"] = str(rev)
            return new
        raise errors.conflict(res.plural, name, res.group, "too many concurrent updates; try again")

    def _merge(self, res: Resource, old: dict[str, Any], cand: dict[str, Any], subresource: str) -> dict[str, Any]:
        """Apply the write rules of the main resource or of a subresource."""
        has_status = "status" in res.subresources
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in cand:
                new["status"] = cand["status"]
            else:
                new.pop("status", None)
            # the status writer may also change labels and annotations (kubelet does)
            for field in ("labels", "annotations"):
                if field in cand.get("metadata", {}):
                    new["metadata"][field] = cand["metadata"][field]
        elif subresource == "binding":
            new = cand  # the binding mutator sets spec.nodeName and the PodScheduled condition only
        elif subresource == "finalize":
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["finalizers"] = (cand.get("spec") or {}).get("finalizers") or []
        else:
            new = cand
            if has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            defaults.apply_defaults(res.plural, new, create=False)
        nmeta, ometa = new.setdefault("metadata", {}), old["metadata"]
        for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace", "name"):
            if field in ometa:
                nmeta[field] = ometa[field]
            else:
                nmeta.pop(field, None)
        nmeta.pop("managedFields", None)
        nmeta["resourceVersion"] = ometa["resourceVersion"]
        if ometa.get("deletionTimestamp"):
            # while deleting, finalizers may only be removed
            nf = nmeta.get("finalizers") or []
            of = ometa.get("finalizers") or []
            if any(f not in of for f in nf):
                raise errors.invalid(res.kind, ometa["name"], [{
                    "reason": "FieldValueForbidden", "field": "metadata.finalizers",
                    "message": "Forbidden: no new finalizers can be added if the object is being deleted"}], res.group)
        if res.plural in GENERATION_KINDS and _spec_of(res, new) != _spec_of(res, old):
            nmeta["generation"] = int(ometa.get("generation") or 1) + 1
        return new

    # ---- delete -------------------------------------------------------------------------
    async def delete(
        self, res: Resource, ns: str, name: str, options: dict[str, Any] | None, *, dry_run: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """Delete or start a graceful deletion. Returns (object, gone)."""
        opts = options or {}
        pre = opts.get("preconditions") or {}
        grace = opts.get("gracePeriodSeconds")
        policy = opts.get("propagationPolicy")
        if opts.get("orphanDependents") is True:
            policy = "Orphan"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.invalid("DeleteOptions", "", [{"reason": "FieldValueNotSupported", "field": "propagationPolicy",
                                 "message": f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"'}])
        key = storage_key(res, ns, name)
        for _attempt in range(20):
            kv = await self.store.get(key)
            if kv is None:
                raise errors.not_found(res.plural, name, res.group)
            obj = _decode(kv.value, kv.mod_revision)
            meta = obj["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(res.plural, name, res.group,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}")
            if pre.get("resourceVersion") and str(pre["resourceVersion"]) != meta["resourceVersion"]:
                raise errors.conflict(res.plural, name, res.group,
                                      f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                                      f"ResourceVersion in object meta: {meta['resourceVersion']}")
            admission.check("delete", res, "", ns, name, None, obj)
            finalizers = list(meta.get("finalizers") or [])
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            graceful = self._grace(res, obj, grace)
            if not finalizers and not graceful and not _spec_finalizers(res, obj):
                if dry_run:
                    return obj, True
                try:
                    rev = await self._delete_key(res, key, obj, kv.mod_revision)
                except RevisionMismatch:
                    continue
                meta["resourceVersion"] = str(rev)
                return obj, True
            new = copy.deepcopy(obj)
            nmeta = new["metadata"]
            nmeta["finalizers"] = finalizers
            if not finalizers:
                nmeta.pop("finalizers")
            if not nmeta.get("deletionTimestamp"):
                nmeta["deletionTimestamp"] = (datetime.now(UTC) + timedelta(seconds=graceful)).strftime("%Y-%m-%dT%H:%M:%SZ")
                nmeta["deletionGracePeriodSeconds"] = graceful
            elif graceful < int(nmeta.get("deletionGracePeriodSeconds") or 0):
                nmeta["deletionGracePeriodSeconds"] = graceful
            if res.plural == "namespaces" and not res.group:
                new.setdefault("status", {})["phase"] = "Terminating"
            if new == obj:
                return obj, False
            if dry_run:
                return new, False
            try:
                rev = await self.store.update(key, _encode(new), kv.mod_revision, also=index_writes(key, obj, new))
            except RevisionMismatch:
                continue
            nmeta["resourceVersion"] = str(rev)
            return new, False
        raise errors.conflict(res.plural, name, res.group, "too many concurrent updates; try again")

    @staticmethod
    def _grace(res: Resource, obj: dict[str, Any], requested: Any) -> int:
        """Seconds of graceful termination: only pods running on a node get any."""
        if res.plural != "pods" or res.group:
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is None:
            requested = spec.get("terminationGracePeriodSeconds", 30)
        try:
            grace = int(requested)
        except (TypeError, ValueError):
            raise errors.bad_request("gracePeriodSeconds must be an integer") from None
        return max(grace, 0) if grace >= 0 else 0

    # ---- subresources -------------------------------------------------------------------
    async def bind(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        res = BY_PLURAL[("", "pods")]
        if not isinstance(body, dict) or not isinstance(body.get("target"), dict):
            raise errors.bad_request("a Binding needs a target")
        target = body["target"]
        node = target.get("name")
        if not node:
            raise errors.invalid("Binding", name, [{"reason": "FieldValueRequired", "message": "Required value", "field": "target.name"}])
        if target.get("kind") not in (None, "", "Node"):
            raise errors.invalid("Binding", name, [{"reason": "FieldValueNotSupported", "field": "target.kind",
                                                    "message": f'Unsupported value: "{target.get("kind")}": supported values: "Node"'}])
        want_uid = (body.get("metadata") or {}).get("uid")

        def mutate(pod: dict[str, Any]) -> None:
            meta, spec = pod["metadata"], pod.setdefault("spec", {})
            if want_uid and want_uid != meta.get("uid"):
                raise errors.conflict("pods", name, "", "the UID in the bind request does not match the pod")
            if meta.get("deletionTimestamp"):
                raise errors.conflict("pods", name, "", "pod is being deleted, cannot be assigned to a host")
            if spec.get("nodeName"):
                raise errors.conflict("pods", name, "", f"pod {name} is already assigned to node \"{spec['nodeName']}\"")
            spec["nodeName"] = node
            conds = [c for c in (pod.setdefault("status", {}).get("conditions") or []) if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now()})
            pod["status"]["conditions"] = conds

        return await self.guaranteed_update(res, ns, name, mutate, subresource="binding")

    async def get_scale(self, res: Resource, ns: str, name: str) -> dict[str, Any]:
        return to_scale(res, await self.get(res, ns, name))


def to_scale(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    sel = (obj.get("spec") or {}).get("selector") or {}
    try:
        sel_str = str(selectors.LabelSelector.from_api(sel))
    except selectors.SelectorError:
        sel_str = ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
        "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
        "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0)), "selector": sel_str},
    }


def _spec_finalizers(res: Resource, obj: dict[str, Any]) -> bool:
    """Namespaces also wait for `spec.finalizers` (the namespace controller's `kubernetes`)."""
    return res.plural == "namespaces" and not res.group and bool((obj.get("spec") or {}).get("finalizers"))


def fsel_has_other(fsel: selectors.FieldSelector) -> bool:
    return any(f not in ("metadata.name", "metadata.namespace") for f, _op, _v in fsel.requirements)


def _label_selector(text: str) -> selectors.LabelSelector:
    try:
        return selectors.parse_label_selector(text or "")
    except selectors.SelectorError as e:
        raise errors.bad_request(f"unable to parse requirement: {e}" if "unable to parse" not in str(e) else str(e)) from None


def _field_selector(res: Resource, text: str) -> selectors.FieldSelector | None:
    if not text:
        return None
    try:
        fsel = selectors.parse_field_selector(text).for_resource(res.plural)
    except selectors.SelectorError as e:
        raise errors.bad_request(str(e)) from None
    return fsel


def _selected(res: Resource, obj: dict[str, Any], lsel: selectors.LabelSelector,
              fsel: selectors.FieldSelector | None) -> bool:
    if not lsel.matches(obj["metadata"].get("labels")):
        return False
    return fsel is None or fsel.matches(selectors.object_fields(res.plural, obj))


def _expired() -> ApiError:
    return errors.expired(
        "The provided continue parameter is too old to display a consistent list result. "
        "You can start a new list without the continue parameter."
    )


def _bad_continue() -> ApiError:
    return errors.bad_request("continue key is not valid: the key does not belong to this list")


# ---- the pods-by-node index ---------------------------------------------------------------------
def _is_pods(res: Resource) -> bool:
    return res.plural == "pods" and not res.group


def pod_node(obj: dict[str, Any] | None) -> str:
    """The node a stored pod is bound to ("" if none)."""
    node = ((obj or {}).get("spec") or {}).get("nodeName")
    return node if isinstance(node, str) else ""


def index_key(node: str, ns: str, name: str) -> str:
    return f"{POD_INDEX_PREFIX}{node}/{ns}/{name}"


def indexed_pod_key(ikey: str) -> str:
    """The pod key an index key stands for (node names hold no `/`; the last two parts are ns/name)."""
    _node, ns, name = ikey[len(POD_INDEX_PREFIX):].rsplit("/", 2)
    return storage_key(PODS, ns, name)


def index_writes(key: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Put]:
    """The index keys to delete and put, in the same transaction, when the object stored at `key`
    goes from `old` to `new` (None: absent). Empty for anything but a pod whose node changes."""
    parsed = parse_storage_key(key)
    if parsed is None or not _is_pods(parsed[0]):
        return []
    _res, ns, name = parsed
    before, after = pod_node(old), pod_node(new)
    if before == after:
        return []
    out = [Put(index_key(before, ns, name), None, None)] if before else []
    if after:
        out.append(Put(index_key(after, ns, name), b"", None))
    return out


def indexed_node(res: Resource, fsel: selectors.FieldSelector | None) -> str:
    """The node a pod list pins with `spec.nodeName=<node>`, which the index serves ("" if none)."""
    if not _is_pods(res) or fsel is None:
        return ""
    return fsel.value_for("spec.nodeName") or ""


def _pod_on_node(kv: KV | None, node: str) -> dict[str, Any] | None:
    """The pod an index key pointed at, if it still exists on that node (a stale key yields None)."""
    if kv is None:
        return None
    obj = _decode(kv.value, kv.mod_revision)
    return obj if pod_node(obj) == node else None
