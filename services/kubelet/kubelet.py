"""The kubelet of one node: pod sources, the pod manager, dispatch to pod workers, housekeeping.

Why this exists: it is the hub upstream's kubelet.go syncLoop is — everything that can change what
should run on the node ends up in `dispatch(uid)`, which wakes (or starts) the pod's worker:

- the API source: an informer on the node's own NATS subject `kube.nodes.<node>.pods.>` with a
  `spec.nodeName=<node>` field selector for its lists (and its periodic relist); mirror pods are
  told apart and tracked separately, never run;
- the file source (`static.FileSource`) for static pods, which needs no API server at all;
- the PLEG (runtime changes) and the prober (probe results).

Everything API-dependent tolerates the API server and NATS being away: the informer only starts
once NATS answers and retries its lists, status writes and mirror pods retry, the node agent
retries registration. Housekeeping (every `housekeeping_period`) removes containers of pods no
source wants (once every source has reported — a restarted kubelet must not kill pods it merely
has not heard about yet), mirror pods whose static pod is gone and volume folders of gone pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from services.kubelet.backoff import Backoff
from services.kubelet.config import KubeletConfig
from services.kubelet.env import ConfigError
from services.kubelet.mirror import MirrorPods, target_of
from services.kubelet.node import NodeAgent
from services.kubelet.pleg import Pleg, RuntimeCache
from services.kubelet.podstatus import KUBELET_CONDITIONS
from services.kubelet.podworker import PodWorker
from services.kubelet.probes import ProbeManager
from services.kubelet.runtime_types import ContainerRuntime
from services.kubelet.static import FileSource, full_name, is_mirror, mirror_hash
from services.kubelet.status import StatusManager, Target
from services.kubelet.volumes import VolumeManager
from shared import bus as busmod
from shared.api.resources import BY_PLURAL
from shared.client import ApiClient
from shared.errors import ApiError
from shared.informer import Informer
from shared.log import event
from shared.recorder import EventRecorder

log = logging.getLogger("kubenats.kubelet")
PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
CONFIGMAPS = BY_PLURAL[("", "configmaps")]
SECRETS = BY_PLURAL[("", "secrets")]
Obj = dict[str, Any]
BusProvider = Callable[[], Awaitable[busmod.Bus]]


def _only_status_changed(old: Obj, new: Obj) -> bool:
    """Whether an update changed nothing but the status the kubelet owns (not spec, metadata that
    matters, or conditions others own, such as readiness gates')."""
    if (old.get("spec") or {}) != (new.get("spec") or {}):
        return False
    skip = ("resourceVersion", "managedFields")
    om = {k: v for k, v in (old.get("metadata") or {}).items() if k not in skip}
    nm = {k: v for k, v in (new.get("metadata") or {}).items() if k not in skip}
    if om != nm:
        return False

    def foreign(pod: Obj) -> list[Any]:
        return [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") not in KUBELET_CONDITIONS]

    return foreign(old) == foreign(new)


def _deleting(pod: Obj | None) -> bool:
    return bool(((pod or {}).get("metadata") or {}).get("deletionTimestamp"))


class ApiObjects:
    """ConfigMaps and Secrets for env and volumes, read through the API (None = not found)."""

    def __init__(self, client: ApiClient | None) -> None:
        self.client = client

    async def _get(self, res: Any, namespace: str, name: str) -> Obj | None:
        if self.client is None:
            raise ConfigError("no API server configured")
        try:
            return await self.client.get(res, namespace, name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise ConfigError(e.message) from None

    async def configmap(self, namespace: str, name: str) -> Obj | None:
        return await self._get(CONFIGMAPS, namespace, name)

    async def secret(self, namespace: str, name: str) -> Obj | None:
        return await self._get(SECRETS, namespace, name)


class Kubelet:
    def __init__(self, cfg: KubeletConfig, runtime: ContainerRuntime, *, client: ApiClient | None,
                 status: StatusManager | None = None, recorder: EventRecorder | None = None,
                 node_informer: bool = True, heartbeat_client: ApiClient | None = None) -> None:
        self.cfg = cfg
        self.runtime = runtime
        self.client = client
        self.pods_res = PODS
        self.cache = RuntimeCache(runtime)
        self.pleg = Pleg(self.cache, cfg.pleg_period, self._pleg_changed)
        self._own_status = status is None and client is not None
        self.status = status or StatusManager(client, retry_max=cfg.api_retry_max)
        self.recorder = recorder
        self.objects = ApiObjects(client)
        self.volumes = VolumeManager(cfg.pods_dir, self.objects, enabled=not cfg.hollow)
        self.probes = ProbeManager(runtime, self._probe_changed, self._probe_event, network=not cfg.hollow)
        self.crash_backoff = Backoff(cfg.crash_backoff_base, cfg.crash_backoff_max)
        self.image_backoff = Backoff(cfg.image_backoff_base, cfg.image_backoff_max)
        hb = heartbeat_client or client
        self.node = NodeAgent(cfg, hb, runtime.version, self._ready) if hb is not None else None
        if self.node is not None:
            self.node.on_registered.append(self._wake_static)
        self.node_informer = node_informer
        self.scheme = "docker"
        # the pod manager
        self.pods: dict[str, Obj] = {}  # uid -> desired pod (API or static)
        self._api_pods: dict[str, Obj] = {}
        self._api_uid_by_name: dict[str, str] = {}
        self._static: dict[str, Obj] = {}
        self.mirrors = MirrorPods(client, cfg.node_name)
        self.workers: dict[str, PodWorker] = {}
        self._finished: dict[str, float] = {}  # uids whose worker finished a deletion
        self.file_source = (FileSource(cfg.pod_manifest_path, cfg.node_name, cfg.file_check_frequency,
                                       self._static_changed) if cfg.pod_manifest_path else None)
        self.informer: Informer | None = None
        self.api_synced = False
        self._bg: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.started_at = time.monotonic()

    # ---- small services for the workers ------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as e:
                event(log, "background_failed", logging.DEBUG, task=name, error=f"{type(e).__name__}: {e}")

        task = asyncio.get_running_loop().create_task(guarded(), name=name)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def host_ips(self) -> list[str]:
        return self.node.host_ips if self.node is not None else [self.cfg.node_ip or "127.0.0.1"]

    def allocatable(self) -> dict[str, str]:
        return self.node.allocatable() if self.node is not None else {}

    def is_static_uid(self, uid: str) -> bool:
        return uid in self._static

    def record(self, pod: Obj, type_: str, reason: str, message: str, container: str = "") -> None:
        if self.recorder is None:
            return
        field_path = ""
        if container:
            spec = pod.get("spec") or {}
            init = any(c.get("name") == container for c in spec.get("initContainers") or [])
            field_path = f"spec.{'initContainers' if init else 'containers'}{{{container}}}"
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": pod.get("metadata") or {}}
        self.recorder.record(obj, type_, reason, message, field_path)

    def _ready(self) -> tuple[bool, str]:
        if self.pleg.healthy():
            return True, ""
        if self.pleg.relists == 0:
            return False, "container runtime status check may not have completed yet"
        return False, "PLEG is not healthy: the container runtime did not answer for 3m0s"

    def status_target(self, pod: Obj) -> Target | None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid"))
        if uid in self._static:
            mirror = self.mirrors.matching(pod)
            return target_of(mirror) if mirror is not None else None
        return Target(str(meta.get("namespace")), str(meta.get("name")), uid)

    def prior_probe_state(self, uid: str) -> dict[str, tuple[bool, bool]]:
        """container ID -> (ready, started) as the API status last said (seeds adopted probes)."""
        pod = self.pods.get(uid) or {}
        status = pod.get("status") or {}
        if uid in self._static:
            status = (self.mirrors.get(full_name(pod)) or {}).get("status") or {}
        out: dict[str, tuple[bool, bool]] = {}
        for cs in status.get("containerStatuses") or []:
            cid = str(cs.get("containerID") or "").partition("://")[2]
            if cid:
                out[cid] = (bool(cs.get("ready")), bool(cs.get("started")))
        return out

    # ---- dispatch ---------------------------------------------------------------------------

    def dispatch(self, uid: str) -> None:
        if self._stopping:
            return
        w = self.workers.get(uid)
        if w is not None:
            w.wake()
            return
        pod = self.pods.get(uid)
        if pod is None or (_deleting(pod) and uid in self._finished):
            return
        self._start_worker(uid)

    def _start_worker(self, uid: str) -> None:
        w = PodWorker(self, uid)
        self.workers[uid] = w
        w.start()

    def worker_finished(self, w: PodWorker) -> None:
        if self.workers.get(w.uid) is w:
            del self.workers[w.uid]
        if w.terminated:
            self._finished[w.uid] = time.monotonic()
        pod = self.pods.get(w.uid)
        if not self._stopping and pod is not None and not _deleting(pod) and w.terminated:
            self._finished.pop(w.uid, None)
            self.dispatch(w.uid)  # wanted again (a static manifest put back)

    def _pleg_changed(self, uids: set[str]) -> None:
        for uid in uids:
            if uid in self.workers or uid in self.pods:
                self.dispatch(uid)
            elif self.sources_ready():
                self._start_worker(uid)  # an orphan: its worker terminates it

    def _probe_changed(self, uid: str) -> None:
        self.dispatch(uid)

    def _probe_event(self, uid: str, container: str, type_: str, reason: str, message: str) -> None:
        pod = self.pods.get(uid)
        if pod is not None:
            self.record(pod, type_, reason, message, container)

    def sources_ready(self) -> bool:
        return (self.file_source is None or self.file_source.ready) and (self.client is None or self.api_synced)

    # ---- the API source ---------------------------------------------------------------------

    def _on_api_pod(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        name = full_name(pod)
        if is_mirror(pod):
            self.mirrors.seen(pod)
            static_uid = mirror_hash(pod)
            if static_uid in self._static:
                if not _deleting(pod):
                    self.status.observe(static_uid, target_of(pod), pod.get("status"),
                                        int(meta.get("resourceVersion") or 0))
                self.dispatch(static_uid)
            return
        uid = str(meta.get("uid"))
        old_uid = self._api_uid_by_name.get(name)
        if old_uid is not None and old_uid != uid:
            self._forget_api_pod(old_uid)
        self._api_uid_by_name[name] = uid
        self._api_pods[uid] = pod
        self.pods[uid] = pod
        self.status.observe(uid, Target(str(meta.get("namespace")), str(meta.get("name")), uid), pod.get("status"),
                            int(meta.get("resourceVersion") or 0))
        self.dispatch(uid)

    def _on_api_update(self, old: Obj, new: Obj) -> None:
        if not is_mirror(new) and _only_status_changed(old, new):
            # our own status write coming back (upstream: a RECONCILE, not a sync): record it only
            meta = new.get("metadata") or {}
            uid = str(meta.get("uid"))
            if uid in self._api_pods:
                self._api_pods[uid] = new
                self.pods[uid] = new
                self.status.observe(uid, Target(str(meta.get("namespace")), str(meta.get("name")), uid),
                                    new.get("status"), int(meta.get("resourceVersion") or 0))
                if uid not in self.workers:
                    self.dispatch(uid)
                return
        self._on_api_pod(new)

    def _forget_api_pod(self, uid: str) -> None:
        pod = self._api_pods.pop(uid, None)
        if pod is not None and self._api_uid_by_name.get(full_name(pod)) == uid:
            del self._api_uid_by_name[full_name(pod)]
        self.pods.pop(uid, None)
        self._finished.pop(uid, None)
        self.dispatch(uid)

    def _on_api_delete(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        if is_mirror(pod):
            self.mirrors.gone(pod)
            if mirror_hash(pod) in self._static:
                self.dispatch(mirror_hash(pod))
            return
        self._forget_api_pod(str(meta.get("uid")))

    async def _run_informers(self, bus_provider: BusProvider) -> None:
        assert self.client is not None
        bus = await bus_provider()
        node = self.cfg.node_name
        informer = Informer(bus, self.client, PODS, field_selector=f"spec.nodeName={node}",
                            subject=f"kube.nodes.{busmod.token(node)}.pods.>", resync_period=self.cfg.pod_resync_period)
        informer.add_handler(self._on_api_pod, self._on_api_update, self._on_api_delete)
        self.informer = informer
        node_informer: Informer | None = None
        if self.node_informer and self.node is not None:
            agent = self.node
            node_informer = Informer(bus, self.client, NODES, field_selector=f"metadata.name={node}",
                                     subject=busmod.event_subject("", "nodes", "", node),
                                     resync_period=self.cfg.pod_resync_period)
            node_informer.add_handler(agent.node_changed, lambda _old, new: agent.node_changed(new),
                                      lambda _obj: agent.node_changed(None))
            await node_informer.start()
        await informer.start()
        try:
            await informer.wait_synced()
            self.api_synced = True
            event(log, "api_source_ready", node=node, pods=len(informer))
            await asyncio.Event().wait()
        finally:
            await informer.stop()
            if node_informer is not None:
                await node_informer.stop()

    # ---- the file source and mirror pods -----------------------------------------------------

    def _static_changed(self, pods: dict[str, Obj]) -> None:
        for uid in [u for u in self._static if u not in pods]:
            del self._static[uid]
            self.pods.pop(uid, None)
            self.dispatch(uid)
        for uid, pod in pods.items():
            if uid not in self._static:
                self._static[uid] = pod
                self.pods[uid] = pod
                self._finished.pop(uid, None)
                mirror = self.mirrors.matching(pod)
                if mirror is not None:
                    self.status.observe(uid, target_of(mirror), mirror.get("status"),
                                        int(mirror["metadata"].get("resourceVersion") or 0))
                self.dispatch(uid)

    def _wake_static(self) -> None:
        for uid in list(self._static):
            self.dispatch(uid)

    async def ensure_mirror(self, pod: Obj, worker: PodWorker) -> None:
        """Make the static pod's mirror exist and match (called from its worker's sync)."""
        if self.node is None or not self.node.uid or not self.node.registered.is_set():
            return
        uid = str(pod["metadata"]["uid"])
        try:
            created = await self.mirrors.ensure(pod, self.node.uid)
        except ApiError as e:
            event(log, "mirror_pod_failed", logging.DEBUG, pod=full_name(pod), code=e.code, error=e.message)
            worker.wake_in(min(2.0, self.cfg.api_retry_max))
            return
        if created is not None:
            if mirror_hash(created) == uid:
                self.status.observe(uid, target_of(created), created.get("status"),
                                    int(created["metadata"].get("resourceVersion") or 0))
            else:
                worker.wake_in(1.0)  # an old mirror was in the way: try again

    # ---- housekeeping -----------------------------------------------------------------------

    async def housekeeping(self) -> None:
        snap = self.cache.latest
        if snap is not None and self.sources_ready():
            for uid in snap.by_pod:
                if uid not in self.workers and uid not in self.pods:
                    event(log, "orphan_pod", uid=uid, containers=len(snap.by_pod[uid]))
                    self._start_worker(uid)
            for uid in self.volumes.known_pod_dirs():
                if uid not in self.pods and uid not in self.workers and uid not in snap.by_pod:
                    self.volumes.cleanup(uid)
        if self.client is not None and self.api_synced and (self.file_source is None or self.file_source.ready):
            await self.mirrors.delete_orphans(self._static.values())
        self.crash_backoff.gc()
        self.image_backoff.gc()
        cutoff = time.monotonic() - 600
        self._finished = {k: v for k, v in self._finished.items() if v > cutoff or k in self.pods}

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.housekeeping_period)
            try:
                await self.housekeeping()
            except Exception as e:
                event(log, "housekeeping_failed", logging.WARNING, error=f"{type(e).__name__}: {e}")

    # ---- lifecycle --------------------------------------------------------------------------

    async def _init_runtime(self) -> None:
        delay = 0.5
        while True:
            try:
                version = await self.runtime.version()
                self.scheme = version.partition("://")[0] or "docker"
                break
            except Exception as e:
                event(log, "runtime_unavailable", logging.WARNING, error=f"{type(e).__name__}: {e}", retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        with contextlib.suppress(Exception):
            await self.pleg.relist()

    async def run(self, bus_provider: BusProvider | None = None) -> None:
        """Run until cancelled; containers are left running (a restarted kubelet adopts them)."""
        if not self.cfg.hollow:
            self.cfg.pods_dir.mkdir(parents=True, exist_ok=True)
        await self._init_runtime()
        if self._own_status:
            self.status.start()
        event(log, "kubelet_started", node=self.cfg.node_name, runtime=self.scheme, hollow=self.cfg.hollow,
              manifests=self.cfg.pod_manifest_path or None, api=self.client is not None)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.pleg.run(), name=f"pleg {self.cfg.node_name}")
                tg.create_task(self._housekeeping_loop(), name=f"housekeeping {self.cfg.node_name}")
                if self.file_source is not None:
                    self.file_source.poll()
                    tg.create_task(self.file_source.run(), name=f"static pods {self.cfg.node_name}")
                if self.node is not None:
                    tg.create_task(self.node.run(), name=f"node {self.cfg.node_name}")
                if bus_provider is not None and self.client is not None:
                    tg.create_task(self._run_informers(bus_provider), name=f"pod source {self.cfg.node_name}")
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        self._stopping = True
        workers = list(self.workers.values())
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        await self.probes.close()
        for t in list(self._bg):
            t.cancel()
        if self._own_status:
            await self.status.stop()
