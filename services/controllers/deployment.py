"""The Deployment controller: rolls pod templates out through ReplicaSets.

A port of pkg/controller/deployment (deployment_controller.go and sync.go; the rollout
strategies and progress reporting are in `deployment_rollout.py`). Each Deployment owns
ReplicaSets named `<deployment>-<pod-template-hash>`; the one whose template equals the
Deployment's is the *new* ReplicaSet, all others are old. `reconcile(key)` claims ReplicaSets
by selector and controller reference, then either only scales (paused Deployments, or a change
of spec.replicas: replicas are spread proportionally over the active ReplicaSets) or rolls out
(RollingUpdate within maxSurge/maxUnavailable, or Recreate), cleans up old revisions beyond
revisionHistoryLimit and writes the status `kubectl rollout status` reads. A template that
equals an old ReplicaSet's (what `kubectl rollout undo` patches in) revives that ReplicaSet
under a new revision instead of creating another. Every ReplicaSet write carries the cached
resourceVersion, so a decision taken on a stale cache fails with a conflict and is retried.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from shared.api.resources import BY_PLURAL
from shared.errors import ApiError
from shared.informer import key_of
from shared.log import event
from shared.workqueue import WorkQueue

from . import deployment_rollout as rollout
from . import deployment_util as du
from .base import ControllerContext, OwnWrites, ensure_index
from .controller_utils import (
    Obj,
    controller_ref,
    filter_active_replica_sets,
    is_deleting,
    labels_of,
    matching_owners,
    meta,
    new_controller_ref,
    resolve_controller,
    selector_of,
    spec,
    spec_replicas,
    status,
    uid_of,
)
from .ref_manager import RefManager
from .replicaset import CONTROLLER_UID_INDEX, PODS, RS, controller_uid_index, namespace_terminating

log = logging.getLogger("kubenats.controllers.deployment")

DEPLOY = BY_PLURAL[("apps", "deployments")]


@dataclass
class Sync:
    """One reconcile's view of the Deployment; `d` is replaced by what each write returns."""

    d: Obj


class DeploymentController:
    name = "deployment"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.d_informer = ctx.informers.get(DEPLOY)
        self.rs_informer = ctx.informers.get(RS)
        self.pod_informer = ctx.informers.get(PODS)
        ensure_index(self.rs_informer, CONTROLLER_UID_INDEX, controller_uid_index)
        ensure_index(self.pod_informer, CONTROLLER_UID_INDEX, controller_uid_index)
        self.recorder = ctx.recorder("deployment-controller")
        self.queue = WorkQueue("deployment")
        self.own_writes = OwnWrites()
        self.rs_writes = OwnWrites()  # replica sets this controller created or scaled
        self._rs_written: dict[str, set[str]] = {}  # deployment key -> those replica sets' keys
        self.d_informer.add_handler(self._enqueue, lambda old, cur: self._enqueue(cur), self._deleted)
        self.rs_informer.add_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pod_informer.add_handler(None, None, self._pod_deleted)

    # ---- event handlers ---------------------------------------------------------------------------
    def _enqueue(self, d: Obj) -> None:
        self.queue.add(key_of(d))

    def _deleted(self, d: Obj) -> None:
        self.own_writes.forget(key_of(d))
        for rs_key in self._rs_written.pop(key_of(d), ()):
            self.rs_writes.forget(rs_key)
        self.queue.add(key_of(d))

    def _wrote_rs(self, d: Obj, rs: Obj) -> None:
        self.rs_writes.wrote(key_of(rs), rs)
        self._rs_written.setdefault(key_of(d), set()).add(key_of(rs))

    def _caches_stale(self, key: str, cached: Obj) -> bool:
        """Our last writes of this Deployment or its ReplicaSets are not in the caches yet."""
        if self.own_writes.stale(key, cached):
            return True
        written = self._rs_written.get(key)
        for rs_key in list(written or ()):
            if self.rs_writes.stale(rs_key, self.rs_informer.get(rs_key)):
                return True
            written.discard(rs_key)  # type: ignore[union-attr]
        if written is not None and not written:
            del self._rs_written[key]
        return False

    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        return resolve_controller(self.d_informer, DEPLOY.kind, namespace, ref)

    def _matching_deployments(self, rs: Obj) -> list[Obj]:
        return matching_owners(self.d_informer, rs)

    def _rs_added(self, rs: Obj) -> None:
        if is_deleting(rs):
            self._rs_deleted(rs)
            return
        ref = controller_ref(rs)
        if ref is not None:
            d = self._resolve(meta(rs).get("namespace", ""), ref)
            if d is not None:
                self._enqueue(d)
            return
        for d in self._matching_deployments(rs):
            self._enqueue(d)

    def _rs_updated(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        ns = meta(cur).get("namespace", "")
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        if cur_ref != old_ref and old_ref is not None:
            prev = self._resolve(ns, old_ref)
            if prev is not None:
                self._enqueue(prev)
        if cur_ref is not None:
            d = self._resolve(ns, cur_ref)
            if d is not None:
                self._enqueue(d)
            return
        if labels_of(old) != labels_of(cur) or cur_ref != old_ref:
            for d in self._matching_deployments(cur):
                self._enqueue(d)

    def _rs_deleted(self, rs: Obj) -> None:
        d = self._resolve(meta(rs).get("namespace", ""), controller_ref(rs))
        if d is not None:
            self._enqueue(d)

    def _pod_deleted(self, pod: Obj) -> None:
        """Recreate waits for the old pods to be gone: their deletion may unblock it."""
        ns = meta(pod).get("namespace", "")
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != RS.kind:
            return
        rs = self.rs_informer.get(f"{ns}/{ref.get('name')}")
        if rs is None or uid_of(rs) != ref.get("uid"):
            return
        d = self._resolve(ns, controller_ref(rs))
        if d is not None and (spec(d).get("strategy") or {}).get("type") == "Recreate":
            self._enqueue(d)

    # ---- reconcile --------------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        cached = self.d_informer.get(key)
        if cached is None or self._caches_stale(key, cached):
            return
        st = Sync(copy.deepcopy(cached))
        d = st.d
        if not du.normalize(spec(d).get("selector") or {}):
            self.recorder.record(d, "Warning", "SelectingAll",
                                 "This deployment is selecting all pods. A non-empty selector is required.")
            if int(status(d).get("observedGeneration") or 0) < int(meta(d).get("generation") or 0):
                d.setdefault("status", {})["observedGeneration"] = int(meta(d).get("generation") or 0)
                await self.update_status(st)
            return
        rs_list = await self._claim_replica_sets(d)
        pod_map = self._pod_map(d, rs_list)
        if is_deleting(d):
            await self.sync_status_only(st, rs_list)
            return
        await self._check_paused_conditions(st)
        if spec(st.d).get("paused"):
            await self.sync(st, rs_list)
            return
        if await self._is_scaling_event(st, rs_list):
            await self.sync(st, rs_list)
            return
        strategy = (spec(st.d).get("strategy") or {}).get("type", "RollingUpdate")
        if strategy == "Recreate":
            await rollout.rollout_recreate(self, st, rs_list, pod_map)
        elif strategy == "RollingUpdate":
            await rollout.rollout_rolling(self, st, rs_list)
        else:
            raise ValueError(f"unexpected deployment strategy type: {strategy}")

    async def _claim_replica_sets(self, d: Obj) -> list[Obj]:
        ns, name = meta(d).get("namespace", ""), meta(d)["name"]

        async def recheck() -> Obj:
            return await self.client.get(DEPLOY, ns, name)

        candidates = self.rs_informer.by_index("namespace", ns)
        return await RefManager(self.client, d, DEPLOY, selector_of(d), RS, recheck).claim(candidates)

    def _pod_map(self, d: Obj, rs_list: list[Obj]) -> dict[str, list[Obj]]:
        """Pods of each claimed ReplicaSet, terminating ones included (Recreate needs them)."""
        selector = selector_of(d)
        return {uid_of(rs): [p for p in self.pod_informer.by_index(CONTROLLER_UID_INDEX, uid_of(rs))
                             if selector.matches(labels_of(p))] for rs in rs_list}

    async def update_status(self, st: Sync) -> None:
        st.d = await self.client.update_status(DEPLOY, st.d)
        self.own_writes.wrote(key_of(st.d), st.d)

    async def _check_paused_conditions(self, st: Sync) -> None:
        d = st.d
        if not du.has_progress_deadline(d):
            return
        cond = du.get_condition(status(d), "Progressing")
        if cond is not None and cond.get("reason") == du.TIMED_OUT:
            return
        paused_cond = cond is not None and cond.get("reason") == du.PAUSED
        st_obj = d.setdefault("status", {})
        if spec(d).get("paused") and not paused_cond:
            du.set_condition(st_obj, du.new_condition("Progressing", "Unknown", du.PAUSED, "Deployment is paused"))
        elif not spec(d).get("paused") and paused_cond:
            du.set_condition(st_obj, du.new_condition("Progressing", "Unknown", du.RESUMED, "Deployment is resumed"))
        else:
            return
        await self.update_status(st)

    # ---- replica sets -------------------------------------------------------------------------------
    async def get_all_replica_sets(self, st: Sync, rs_list: list[Obj], create: bool) -> tuple[Obj | None, list[Obj]]:
        """(the new ReplicaSet, possibly created now; all old ReplicaSets), revisions synced."""
        _, all_old = du.find_old_replica_sets(st.d, rs_list)
        new_rs = await self._get_new_replica_set(st, rs_list, all_old, create)
        return new_rs, all_old

    async def _get_new_replica_set(self, st: Sync, rs_list: list[Obj], old_rss: list[Obj], create: bool) -> Obj | None:
        d = st.d
        existing = du.find_new_replica_set(d, rs_list)
        new_revision = str(du.max_revision(old_rss) + 1)
        if existing is not None:
            rs = copy.deepcopy(existing)
            annotations_updated = du.set_new_replica_set_annotations(d, rs, new_revision, True)
            min_ready = int(spec(d).get("minReadySeconds") or 0)
            if annotations_updated or int(spec(rs).get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                updated: Obj = await self.client.update(RS, rs)
                self._wrote_rs(d, updated)
                return updated
            needs_update = du.set_deployment_revision(d, (meta(rs).get("annotations") or {}).get(du.REVISION, ""))
            if du.has_progress_deadline(d) and du.get_condition(status(d), "Progressing") is None:
                du.set_condition(d.setdefault("status", {}), du.new_condition(
                    "Progressing", "True", du.FOUND_NEW_RS, f'Found new replica set "{meta(rs)["name"]}"'))
                needs_update = True
            if needs_update:
                await self.update_status(st)
            return rs
        if not create:
            return None
        return await self._create_new_replica_set(st, old_rss, new_revision)

    async def _create_new_replica_set(self, st: Sync, old_rss: list[Obj], new_revision: str) -> Obj:
        d = st.d
        ns = meta(d).get("namespace", "")
        template = copy.deepcopy(spec(d).get("template") or {})
        pod_hash = du.compute_hash(template, status(d).get("collisionCount"))
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), du.HASH_LABEL: pod_hash}
        selector = copy.deepcopy(spec(d).get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), du.HASH_LABEL: pod_hash}
        name = f"{meta(d)['name']}-{pod_hash}"
        new_rs: Obj = {
            "apiVersion": RS.api_version, "kind": RS.kind,
            "metadata": {"name": name, "namespace": ns, "labels": dict(tmeta["labels"]),
                         "ownerReferences": [new_controller_ref(d, DEPLOY.api_version, DEPLOY.kind)]},
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        if spec(d).get("minReadySeconds"):
            new_rs["spec"]["minReadySeconds"] = int(spec(d)["minReadySeconds"])
        replicas = du.new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
        new_rs["spec"]["replicas"] = replicas
        du.set_new_replica_set_annotations(d, new_rs, new_revision, False)
        already_exists = False
        try:
            created: Obj = await self.client.create(RS, ns, new_rs)
            self._wrote_rs(d, created)
        except ApiError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                already_exists = True
                created = await self._existing_or_collision(st, name, e)
            elif namespace_terminating(e):
                raise
            else:
                msg = f'Failed to create new replica set "{name}": {e.message}'
                if du.has_progress_deadline(d):
                    du.set_condition(d.setdefault("status", {}),
                                     du.new_condition("Progressing", "False", du.FAILED_RS_CREATE, msg))
                    try:
                        await self.update_status(st)
                    except ApiError:
                        pass
                self.recorder.record(d, "Warning", du.FAILED_RS_CREATE, msg)
                raise
        if not already_exists:
            event(log, "replicaset_created", deployment=key_of(d), replicaset=name, replicas=replicas,
                  revision=new_revision)
            if replicas > 0:
                self.recorder.record(d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {name} to {replicas}")
        d = st.d
        needs_update = du.set_deployment_revision(d, new_revision)
        if not already_exists and du.has_progress_deadline(d):
            du.set_condition(d.setdefault("status", {}), du.new_condition(
                "Progressing", "True", du.NEW_REPLICA_SET, f'Created new replica set "{name}"'))
            needs_update = True
        if needs_update:
            await self.update_status(st)
        return created

    async def _existing_or_collision(self, st: Sync, name: str, error: ApiError) -> Obj:
        """The name is taken: ours (a slow cache) or a hash collision (bump collisionCount)."""
        d = st.d
        ns = meta(d).get("namespace", "")
        rs = self.rs_informer.get(f"{ns}/{name}") or await self.client.get(RS, ns, name)
        ref = controller_ref(rs)
        if ref is not None and ref.get("uid") == uid_of(d) and \
                du.equal_ignore_hash(spec(d).get("template"), spec(rs).get("template")):
            return rs
        st_obj = d.setdefault("status", {})
        before = st_obj.get("collisionCount")
        st_obj["collisionCount"] = int(before or 0) + 1
        try:
            await self.update_status(st)
            event(log, "hash_collision", deployment=key_of(d), replicaset=name,
                  old_collision_count=before, new_collision_count=st_obj["collisionCount"])
        except ApiError:
            pass
        raise error

    async def scale_replica_set(self, st: Sync, rs: Obj, new_scale: int) -> tuple[bool, Obj]:
        """Write spec.replicas and the desired/max-replicas annotations when either changed."""
        d = st.d
        desired, max_replicas = spec_replicas(d), spec_replicas(d) + du.max_surge(d)
        size_changes = spec_replicas(rs) != new_scale
        if not size_changes and not du.replicas_annotations_need_update(rs, desired, max_replicas):
            return False, rs
        old_scale = spec_replicas(rs)
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = new_scale
        du.set_replicas_annotations(body, desired, max_replicas)
        updated: Obj = await self.client.update(RS, body)
        self._wrote_rs(d, updated)
        if size_changes:
            direction = "up" if old_scale < new_scale else "down"
            self.recorder.record(d, "Normal", "ScalingReplicaSet",
                                 f"Scaled {direction} replica set {meta(rs)['name']} to {new_scale} from {old_scale}")
            event(log, "replicaset_scaled", deployment=key_of(d), replicaset=meta(rs)["name"], direction=direction,
                  old=old_scale, new=new_scale)
        return size_changes, updated

    async def scale_and_record(self, st: Sync, rs: Obj, new_scale: int) -> tuple[bool, Obj]:
        if spec_replicas(rs) == new_scale:
            return False, rs
        return await self.scale_replica_set(st, rs, new_scale)

    # ---- scaling without a rollout -------------------------------------------------------------------
    async def _is_scaling_event(self, st: Sync, rs_list: list[Obj]) -> bool:
        new_rs, old_rss = await self.get_all_replica_sets(st, rs_list, False)
        for rs in filter_active_replica_sets([*old_rss, new_rs]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != spec_replicas(st.d):
                return True
        return False

    async def sync(self, st: Sync, rs_list: list[Obj]) -> None:
        """Scaling (paused Deployments, or spec.replicas changed): no rollout progress."""
        new_rs, old_rss = await self.get_all_replica_sets(st, rs_list, False)
        await self._scale(st, new_rs, old_rss)
        if spec(st.d).get("paused"):
            await self.cleanup(st, old_rss)
        await self.sync_deployment_status(st, [*old_rss, new_rs], new_rs)

    async def sync_status_only(self, st: Sync, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self.get_all_replica_sets(st, rs_list, False)
        await self.sync_deployment_status(st, [*old_rss, new_rs], new_rs)

    async def _scale(self, st: Sync, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        d = st.d
        replicas = spec_replicas(d)
        only = du.find_active_or_latest(new_rs, old_rss)
        if only is not None:
            if spec_replicas(only) != replicas:
                await self.scale_and_record(st, only, replicas)
            return
        if du.is_saturated(d, new_rs):
            for old in filter_active_replica_sets(old_rss):
                await self.scale_and_record(st, old, 0)
            return
        if not du.is_rolling_update(d):
            return
        active = filter_active_replica_sets([*old_rss, new_rs])
        allowed = replicas + du.max_surge(d) if replicas > 0 else 0
        to_add = allowed - du.replica_count(active)
        if to_add > 0:
            active = du.sort_by_size_newer(active)
        elif to_add < 0:
            active = du.sort_by_size_older(active)
        added = 0
        sizes: dict[str, int] = {}
        for rs in active:
            if to_add != 0:
                proportion = du.replica_set_proportion(rs, d, to_add, added)
                sizes[meta(rs)["name"]] = spec_replicas(rs) + proportion
                added += proportion
            else:
                sizes[meta(rs)["name"]] = spec_replicas(rs)
        for i, rs in enumerate(active):
            name = meta(rs)["name"]
            if i == 0 and to_add != 0:
                sizes[name] = max(sizes[name] + to_add - added, 0)
            await self.scale_replica_set(st, rs, sizes[name])

    async def cleanup(self, st: Sync, old_rss: list[Obj]) -> None:
        """Delete the oldest zero-sized old ReplicaSets beyond revisionHistoryLimit."""
        d = st.d
        if not du.has_revision_history_limit(d):
            return
        cleanable = sorted((rs for rs in old_rss if not is_deleting(rs)), key=du.by_revision_key)
        diff = len(cleanable) - int(spec(d).get("revisionHistoryLimit") or 0)
        for rs in cleanable[:max(diff, 0)]:
            if int(status(rs).get("replicas") or 0) != 0 or spec_replicas(rs) != 0 or \
                    int(meta(rs).get("generation") or 0) > int(status(rs).get("observedGeneration") or 0):
                continue
            try:
                await self.client.delete(RS, meta(rs).get("namespace", ""), meta(rs)["name"], uid=uid_of(rs))
            except ApiError as e:
                if e.code != 404:
                    raise
            event(log, "old_replicaset_deleted", deployment=key_of(d), replicaset=meta(rs)["name"],
                  revision=du.revision(rs))

    async def sync_deployment_status(self, st: Sync, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        new_status = du.calculate_status(all_rss, new_rs, st.d)
        if du.same_status(status(st.d), new_status):
            return
        st.d = {**st.d, "status": new_status}
        await self.update_status(st)

