"""The EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices for every Service with a selector.

A port of pkg/controller/endpointslice. EndpointSlices are how current consumers (the proxy,
DNS, ingress controllers) find a Service's backends: at most 100 endpoints per slice, each with
its address, node, zone, pod reference and the `ready`/`serving`/`terminating` conditions, so
a terminating pod stays visible (ready=false) while it drains. Events only enqueue service keys:
service changes, pod changes that matter to an endpoint, changes to our own slices (an edited
or deleted slice is put back), and a node joining (its pods may have been skipped while it was
unknown). `reconcile(key)` computes the desired endpoints per address family and port set, and
`endpointslice_reconciler` turns them into the fewest creates, updates and deletes. Slices
carry an owner reference to the Service, so the garbage collector removes them with it.

Like upstream's EndpointSliceTracker, the controller remembers the slices it wrote or deleted
until its cache shows them, and skips a service meanwhile: acting on a lagging cache would
create duplicate slices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from shared.api.resources import BY_PLURAL
from shared.errors import ApiError
from shared.informer import key_of
from shared.log import event
from shared.workqueue import WorkQueue

from .base import ControllerContext, ensure_index
from .controller_utils import Obj, is_deleting, labels_of, meta, spec
from .endpoint_utils import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    LABEL_ZONE,
    endpoint_relevant,
    selects,
    service_families,
    service_selector,
    services_for_pod,
)
from .endpointslice_reconciler import (
    CONTROLLER_NAME,
    MAX_ENDPOINTS_PER_SLICE,
    Plan,
    desired_endpoints,
    owned_by,
    reconcile_family,
)
from .taints import pod_node_index

log = logging.getLogger("kubenats.controllers.endpointslice")

SERVICES = BY_PLURAL[("", "services")]
PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
SLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]
SERVICE_INDEX = "endpointslice-service"
NODE_NAME_INDEX = "node-name"


def slice_service_index(s: Obj) -> list[str]:
    """Managed slices by `namespace/service`."""
    labels = labels_of(s)
    if labels.get(LABEL_MANAGED_BY) != CONTROLLER_NAME or not labels.get(LABEL_SERVICE_NAME):
        return []
    return [f"{meta(s).get('namespace', '')}/{labels[LABEL_SERVICE_NAME]}"]


class SliceTracker:
    """The slices we wrote (their resourceVersion) or deleted, per service, until the cache shows
    it (EndpointSliceTracker.StaleSlices); entries expire after `ttl` seconds."""

    def __init__(self, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._expected: dict[str, dict[str, tuple[int, float]]] = {}

    def wrote(self, service: str, s: Obj) -> None:
        rv = int(meta(s).get("resourceVersion") or 0)
        self._expected.setdefault(service, {})[str(meta(s).get("name"))] = (rv, self._clock())

    def deleted(self, service: str, name: str) -> None:
        self._expected.setdefault(service, {})[name] = (-1, self._clock())

    def stale(self, service: str, cached: list[Obj]) -> bool:
        entries = self._expected.get(service)
        if not entries:
            return False
        by_name = {str(meta(s).get("name")): s for s in cached}
        now = self._clock()
        for name, (rv, at) in list(entries.items()):
            current = by_name.get(name)
            if now - at > self._ttl:
                caught_up = True
            elif rv < 0:
                caught_up = current is None
            else:
                caught_up = current is not None and int(meta(current).get("resourceVersion") or 0) >= rv
            if caught_up:
                del entries[name]
        if not entries:
            del self._expected[service]
            return False
        return True

    def forget(self, service: str) -> None:
        self._expected.pop(service, None)


class EndpointSliceController:
    name = "endpointslice"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.services = ctx.informers.get(SERVICES)
        self.pods = ctx.informers.get(PODS)
        self.nodes = ctx.informers.get(NODES)
        self.slices = ctx.informers.get(SLICES)
        ensure_index(self.slices, SERVICE_INDEX, slice_service_index)
        ensure_index(self.pods, NODE_NAME_INDEX, pod_node_index)
        self.recorder = ctx.recorder("endpoint-slice-controller")
        self.queue = WorkQueue("endpointslice")
        self.tracker = SliceTracker()
        self.max_endpoints_per_slice = MAX_ENDPOINTS_PER_SLICE
        self.services.add_handler(self._enqueue, lambda _old, cur: self._enqueue(cur), self._enqueue)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_added)
        self.slices.add_handler(self._slice_changed, self._slice_updated, self._slice_changed)
        self.nodes.add_handler(self._node_added, self._node_updated, None)

    # ---- event handlers ---------------------------------------------------------------------
    def _enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def _pod_added(self, pod: Obj) -> None:
        for key in services_for_pod(self.services, pod):
            self.queue.add(key)

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if endpoint_relevant(old) == endpoint_relevant(cur):
            return
        for key in {*services_for_pod(self.services, old), *services_for_pod(self.services, cur)}:
            self.queue.add(key)

    def _slice_changed(self, s: Obj) -> None:
        for key in slice_service_index(s):
            self.queue.add(key)

    def _slice_updated(self, old: Obj, cur: Obj) -> None:
        for key in {*slice_service_index(old), *slice_service_index(cur)}:
            self.queue.add(key)

    def _node_added(self, node: Obj) -> None:
        if not self.nodes.has_synced:
            return  # the first list: services are synced anyway
        for pod in self.pods.by_index(NODE_NAME_INDEX, str(meta(node).get("name") or "")):
            self._pod_added(pod)

    def _node_updated(self, old: Obj, cur: Obj) -> None:
        if labels_of(old).get(LABEL_ZONE) != labels_of(cur).get(LABEL_ZONE):
            self._node_added(cur)

    # ---- reconcile ----------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None:
            self.tracker.forget(key)
            return  # the garbage collector deletes the slices through their owner reference
        selector = service_selector(svc)
        if selector is None:
            return  # slices of this service are created out of band
        existing = self.slices.by_index(SERVICE_INDEX, key)
        if self.tracker.stale(key, existing):
            return  # our last writes are not in the cache yet; their events bring us back
        ns = meta(svc).get("namespace", "")
        pods = [p for p in self.pods.by_index("namespace", ns) if selects(selector, p)]
        nodes = {n: self.nodes.get(n) for n in {spec(p).get("nodeName") or "" for p in pods} if n}
        families = service_families(svc)
        plan = Plan()
        missing: list[str] = []
        for s in existing:
            if not owned_by(s, svc) or s.get("addressType") not in families:
                plan.delete.append(s)
        for family in families:
            desired, skipped = desired_endpoints(svc, pods, nodes, family)
            missing.extend(skipped)
            mine = [s for s in existing if owned_by(s, svc) and s.get("addressType") == family]
            part = reconcile_family(svc, family, desired, mine, self.max_endpoints_per_slice)
            plan.create.extend(part.create)
            plan.update.extend(part.update)
            plan.delete.extend(part.delete)
        if not plan.empty():
            await self._apply(key, svc, plan)
        if missing:
            raise RuntimeError(f"skipping Pod(s) {', '.join(sorted(set(missing)))} for Service {key}: Node not found")

    async def _apply(self, key: str, svc: Obj, plan: Plan) -> None:
        """Creates, then updates, then deletes (finalize), so consumers never see a gap."""
        ns = meta(svc).get("namespace", "")
        if is_deleting(svc):
            plan.create = []
        results = await asyncio.gather(
            *(self._write(key, ns, s, create=True) for s in plan.create),
            *(self._write(key, ns, s, create=False) for s in plan.update), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if not errors:
            results = await asyncio.gather(*(self._delete(key, s) for s in plan.delete), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
        event(log, "endpointslices_synced", logging.DEBUG, service=key, created=len(plan.create),
              updated=len(plan.update), deleted=len(plan.delete), errors=len(errors))
        if errors:
            first = errors[0]
            if not (isinstance(first, ApiError) and first.code == 403 and "being terminated" in first.message):
                self.recorder.record(svc, "Warning", "FailedToUpdateEndpointSlices",
                                     f"Error updating Endpoint Slices for Service {key}: {first}")
            raise first

    async def _write(self, key: str, ns: str, s: Obj, create: bool) -> None:
        if create:
            written = await self.client.create(SLICES, ns, s)
        else:
            try:
                written = await self.client.update(SLICES, s)
            except ApiError as e:
                if e.code != 404:
                    raise
                self.tracker.deleted(key, str(meta(s).get("name")))
                return
        self.tracker.wrote(key, written)

    async def _delete(self, key: str, s: Obj) -> None:
        m = meta(s)
        try:
            await self.client.delete(SLICES, m.get("namespace", ""), m["name"], uid=m.get("uid"))
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        self.tracker.deleted(key, str(m["name"]))
