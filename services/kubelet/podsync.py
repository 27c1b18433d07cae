"""One sync of a running pod: upstream's computePodActions + SyncPod, against a fresh runtime view.

Why this exists: this is the kubelet's core decision, kept apart from the worker loop so it reads
top to bottom like kuberuntime_manager.go:

1. the sandbox: if the newest is not running, kill what is left and create a new one (attempt+1),
   except for a restartPolicy=Never pod whose containers already ran (it is finishing);
2. init containers, in order, in the current sandbox: start the next, wait for a running one,
   restart a failed one (CrashLoopBackOff applies) or fail the pod (Never);
3. app containers, once initialised: restart those that exited as the restart policy says (after
   back-off), kill and restart those whose spec changed or whose liveness/startup probe failed;
4. status: generated from the fresh view and handed to the status manager; a pod whose phase
   became Succeeded/Failed stops its sandbox and is never restarted again.

Starting a container is upstream's startContainer: image per pull policy (ErrImagePull, then
ImagePullBackOff while the pull back-off lasts), volumes, environment, create, start — each
failure becomes the container's waiting reason and an Event. A restarted kubelet adopts what
runs: containers whose labels match (pod UID, name, spec hash) are left alone, restart counts come
from the labels.
"""

from __future__ import annotations

import calendar
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from services.kubelet.containerspec import build_config, port_mappings, spec_hash
from services.kubelet.env import ConfigError, expand_command, make_env
from services.kubelet.grace import grace_of
from services.kubelet.podstatus import (
    TERMINAL_PHASES,
    StatusInputs,
    generate,
    instances_by_name,
    sandboxes_of,
)
from services.kubelet.probes import LIVENESS, STARTUP
from services.kubelet.runtime_types import (
    ContainerKind,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
    ImagePullError,
    Mount,
    PullPolicy,
    default_pull_policy,
)
from services.kubelet.volumes import MountError, Volume
from shared.log import event

if TYPE_CHECKING:
    from services.kubelet.kubelet import Kubelet
    from services.kubelet.podworker import PodWorker

log = logging.getLogger("kubenats.kubelet.sync")
Obj = dict[str, Any]


def go_duration(seconds: float) -> str:
    """Go's time.Duration String() for the back-off messages: 500ms, 10s, 1m20s, 5m0s."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, secs = divmod(seconds, 60)
    s = f"{secs:g}s"
    return f"{int(minutes)}m{s}" if minutes else s


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return float(calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def _probe_grace(probe: Any, default: int) -> int:
    """A probe's own terminationGracePeriodSeconds overrides the pod's for its kill."""
    if isinstance(probe, dict) and probe.get("terminationGracePeriodSeconds") is not None:
        return int(probe["terminationGracePeriodSeconds"])
    return default


def should_restart(policy: str, c: ContainerStatus) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return c.exit_code != 0 or bool(c.error)
    return False


class PodSync:
    def __init__(self, kubelet: Kubelet, worker: PodWorker) -> None:
        self.kl = kubelet
        self.w = worker
        self.uid = worker.uid
        self.reasons: dict[str, tuple[str, str]] = {}  # container -> waiting (reason, message)
        self.terminal = False
        self._exit_seen: dict[str, float] = {}
        self._volumes: dict[str, Volume] | None = None
        self._volumes_at = 0.0
        self._volumes_sandbox = ""
        self._host_network_warned = False

    # ---- helpers ---------------------------------------------------------------------------

    def _record(self, pod: Obj, type_: str, reason: str, message: str, container: str = "") -> None:
        self.kl.record(pod, type_, reason, message, container)

    def _exit_time(self, c: ContainerStatus) -> float:
        """When the container's exit happened, as precisely as we know: when we first saw it
        exited (sub-second), or its finishedAt (whole seconds) if that is clearly older."""
        seen = self._exit_seen.get(c.id)
        if seen is None:
            seen = self._exit_seen[c.id] = time.time()
        finished = _epoch(c.finished_at)
        if finished is not None and finished < seen - 2:
            return finished
        return seen

    def _backoff_key(self, pod: Obj, container: Obj) -> str:
        meta = pod.get("metadata") or {}
        return f"{self.uid}_{meta.get('name')}_{meta.get('namespace')}_{container.get('name')}_{spec_hash(container)}"

    # ---- the sync --------------------------------------------------------------------------

    async def sync(self, pod: Obj) -> None:
        kl = self.kl
        spec = pod.get("spec") or {}
        policy = str(spec.get("restartPolicy") or "Always")
        snap = await kl.cache.get(time.monotonic())
        containers = snap.by_pod.get(self.uid, [])
        if kl.is_static_uid(self.uid):
            await kl.ensure_mirror(pod, self.w)
        if spec.get("hostNetwork") and not self._host_network_warned:
            self._host_network_warned = True
            event(log, "host_network_unsupported", logging.WARNING, pod=self.w._pod_name(),
                  detail="hostNetwork pods run on the bridge: the runtime has no host network mode")

        last = kl.status.last(self.uid) or pod.get("status") or {}
        if last.get("phase") in TERMINAL_PHASES:
            self.terminal = True  # finished before (e.g. before a kubelet restart): never restart it
        if self.terminal:
            await self.w.stop_sandbox(containers)
            snap = await kl.cache.get(time.monotonic())
            self._set_status(pod, snap.by_pod.get(self.uid, []))
            return

        changed = False
        sandboxes = sandboxes_of(containers)
        sandbox = sandboxes[0] if sandboxes else None
        by_name = instances_by_name(containers)
        sandbox_ok = sandbox is not None and sandbox.state is ContainerState.RUNNING and (sandbox.ip or kl.cfg.hollow)
        app_ran = any(by_name.get(str(c.get("name"))) for c in spec.get("containers") or [])
        if not sandbox_ok and not (policy == "Never" and sandbox is not None and app_ran):
            if sandbox is not None:
                self._record(pod, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
                await self.w.kill_pod(pod, [c for c in containers if c.state is ContainerState.RUNNING],
                                      grace_of(pod, []), reason="sandbox changed")
            sandbox = await self._create_sandbox(pod, (sandbox.attempt + 1) if sandbox is not None else 0)
            if sandbox is None:
                return
            changed = True
            snap = await kl.cache.get(time.monotonic())
            containers = snap.by_pod.get(self.uid, [])
            by_name = instances_by_name(containers)
        if sandbox is not None and sandbox.state is ContainerState.RUNNING:
            changed |= await self._containers(pod, policy, sandbox, by_name)
        if changed:
            snap = await kl.cache.get(time.monotonic())
            containers = snap.by_pod.get(self.uid, [])
        self._gc(containers)
        running = {c.container_name: c for c in containers
                   if c.kind is ContainerKind.CONTAINER and c.state is ContainerState.RUNNING
                   and not any(ic.get("name") == c.container_name for ic in spec.get("initContainers") or [])}
        sandboxes = sandboxes_of(containers)
        ip = sandboxes[0].ip if sandboxes and sandboxes[0].state is ContainerState.RUNNING else ""
        kl.probes.sync(pod, running, ip, kl.prior_probe_state(self.uid))
        status = self._set_status(pod, containers, publish=False)
        if status["phase"] in TERMINAL_PHASES and not self.terminal:
            # finished: stop the sandbox first, so the first terminal status is the final one
            self.terminal = True
            event(log, "pod_finished", pod=self.w._pod_name(), uid=self.uid, phase=status["phase"])
            await self.w.stop_sandbox(containers)
            kl.probes.remove_pod(self.uid)
            snap = await kl.cache.get(time.monotonic())
            self._set_status(pod, snap.by_pod.get(self.uid, []), old=status)  # keeps the pod IP
        else:
            kl.status.set(self.uid, kl.status_target(pod), status)

    def _set_status(self, pod: Obj, containers: list[ContainerStatus], publish: bool = True,
                    old: Obj | None = None) -> Obj:
        kl = self.kl
        sbs = sandboxes_of(containers)
        spec_of = {str(c.get("name")): c for c in (pod.get("spec") or {}).get("containers") or []}

        def ready(c: ContainerStatus) -> bool:
            s = spec_of.get(c.container_name) or {}
            return kl.probes.ready(c.id) if isinstance(s.get("readinessProbe"), dict) else True

        def started(c: ContainerStatus) -> bool:
            s = spec_of.get(c.container_name) or {}
            return kl.probes.started(c.id) if isinstance(s.get("startupProbe"), dict) else True

        inputs = StatusInputs(
            pod=pod, containers=containers, sandbox=sbs[0] if sbs else None, reasons=dict(self.reasons),
            terminal=self.terminal, host_ips=kl.host_ips(), scheme=kl.scheme, ready=ready, started=started,
            termination_message=lambda c: kl.volumes.termination_message(self.uid, c.container_name, c.restart_count),
        )
        status = generate(inputs, old or kl.status.last(self.uid) or pod.get("status"))
        if publish:
            kl.status.set(self.uid, kl.status_target(pod), status)
        return status

    # ---- sandbox ---------------------------------------------------------------------------

    async def _create_sandbox(self, pod: Obj, attempt: int) -> ContainerStatus | None:
        kl = self.kl
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        try:
            await kl.runtime.ensure_image(kl.cfg.pause_image, PullPolicy.IF_NOT_PRESENT)
            info = await kl.runtime.run_sandbox(
                self.uid, str(meta.get("name")), str(meta.get("namespace") or "default"), attempt, kl.cfg.pause_image,
                str(spec.get("hostname") or meta.get("name") or ""), port_mappings=port_mappings(pod))
        except ContainerRuntimeError as e:
            self._record(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e.message}")
            raise
        self._volumes = None  # the downward API may read the new pod IP
        return await kl.runtime.inspect(info.id)

    # ---- containers ------------------------------------------------------------------------

    async def _containers(self, pod: Obj, policy: str, sandbox: ContainerStatus,
                          by_name: dict[str, list[ContainerStatus]]) -> bool:
        spec = pod.get("spec") or {}
        changed = False
        for ic in spec.get("initContainers") or []:
            name = str(ic.get("name"))
            mine = [c for c in by_name.get(name, []) if c.sandbox_id == sandbox.id]
            latest = mine[0] if mine else None
            if latest is not None and latest.state is ContainerState.RUNNING:
                return changed
            if latest is not None and latest.state is ContainerState.EXITED and latest.exit_code == 0 and not latest.error:
                self.reasons.pop(name, None)
                continue
            if latest is None:
                prior = by_name.get(name, [])
                changed |= await self._start(pod, ic, sandbox, prior[0].restart_count + 1 if prior else 0)
                return changed
            if latest.state is ContainerState.CREATED and not latest.error:
                changed |= await self._start(pod, ic, sandbox, latest.restart_count)
                return changed
            if policy == "Never":
                return changed  # the init container failed: the pod fails (getPhase)
            changed |= await self._restart_after_backoff(pod, ic, sandbox, latest)
            return changed

        for c in spec.get("containers") or []:
            name = str(c.get("name"))
            instances = by_name.get(name, [])
            latest = instances[0] if instances else None
            if latest is not None and latest.state is ContainerState.RUNNING:
                why = ""
                grace = grace_of(pod, [])
                if latest.sandbox_id and latest.sandbox_id != sandbox.id:
                    why = f"Container {name} is not in the pod's current sandbox, it will be killed"
                elif latest.spec_hash and latest.spec_hash != spec_hash(c):
                    why = f"Container {name} definition changed, will be restarted"
                elif self.kl.probes.failed(latest.id, LIVENESS):
                    why = f"Container {name} failed liveness probe, will be restarted"
                    grace = _probe_grace(c.get("livenessProbe"), grace)
                elif self.kl.probes.failed(latest.id, STARTUP):
                    why = f"Container {name} failed startup probe, will be restarted"
                    grace = _probe_grace(c.get("startupProbe"), grace)
                if why:
                    self._record(pod, "Normal", "Killing", why, name)
                    with contextlib.suppress(ContainerRuntimeError):
                        await self.kl.runtime.stop_container(latest.id, grace)
                    self.w.wake()  # restart it on the next pass (back-off applies)
                    changed = True
                else:
                    self.reasons.pop(name, None)
                continue
            if latest is None:
                changed |= await self._start(pod, c, sandbox, 0)
            elif latest.state is ContainerState.CREATED and not latest.error:
                changed |= await self._start(pod, c, sandbox, latest.restart_count)
            elif should_restart(policy, latest):
                changed |= await self._restart_after_backoff(pod, c, sandbox, latest)
            else:
                self.reasons.pop(name, None)
        return changed

    async def _restart_after_backoff(self, pod: Obj, c: Obj, sandbox: ContainerStatus, latest: ContainerStatus) -> bool:
        kl = self.kl
        key = self._backoff_key(pod, c)
        ts = self._exit_time(latest)
        name = str(c.get("name"))
        if kl.crash_backoff.in_backoff_since(key, ts):
            meta = pod.get("metadata") or {}
            full = f"{meta.get('name')}_{meta.get('namespace')}({self.uid})"
            delay = kl.crash_backoff.get(key)
            self.reasons[name] = ("CrashLoopBackOff", f"back-off {go_duration(delay)} restarting failed container={name} pod={full}")
            self._record(pod, "Warning", "BackOff", f"Back-off restarting failed container {name} in pod {full}", name)
            self.w.wake_in(kl.crash_backoff.remaining(key, ts) + 0.05)
            return False
        kl.crash_backoff.next(key, ts)
        return await self._start(pod, c, sandbox, latest.restart_count + 1)

    async def _volume_set(self, pod: Obj, sandbox: ContainerStatus) -> dict[str, Volume]:
        kl = self.kl
        fresh = self._volumes is not None and self._volumes_sandbox == sandbox.id and \
            time.monotonic() - self._volumes_at < kl.cfg.sync_frequency
        if not fresh:
            self._volumes = await kl.volumes.setup(pod, pod_ips=[sandbox.ip] if sandbox.ip else [],
                                                   host_ips=kl.host_ips(), allocatable=kl.allocatable())
            self._volumes_at = time.monotonic()
            self._volumes_sandbox = sandbox.id
        return self._volumes or {}

    async def _start(self, pod: Obj, c: Obj, sandbox: ContainerStatus, restart_count: int) -> bool:
        """startContainer: image, config, create, start. True when the container started."""
        kl = self.kl
        name, image = str(c.get("name")), str(c.get("image") or "")
        if not await self._ensure_image(pod, c):
            return False
        try:
            volumes = await self._volume_set(pod, sandbox)
            env = await make_env(pod, c, kl.objects, pod_ips=[sandbox.ip] if sandbox.ip else [],
                                 host_ips=kl.host_ips(), allocatable=kl.allocatable())
            command, args = expand_command(c, env)
            mounts = kl.volumes.mounts(c, volumes)
            if kl.volumes.enabled:
                mounts.append(Mount(kl.volumes.termination_log(self.uid, name, restart_count),
                                    str(c.get("terminationMessagePath") or "/dev/termination-log")))
            config = build_config(pod, c, env=env, command=command, args=args, mounts=mounts,
                                  restart_count=restart_count)
        except MountError as e:
            self._record(pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {e}")
            self.w.wake_in(min(2.0, kl.cfg.api_retry_max))
            return False
        except ConfigError as e:
            self.reasons[name] = ("CreateContainerConfigError", str(e))
            self._record(pod, "Warning", "Failed", f"Error: {e}", name)
            self.w.wake_in(min(2.0, kl.cfg.api_retry_max))
            return False
        try:
            cid = await kl.runtime.create_container(sandbox.id, config)
        except ContainerRuntimeError as e:
            self.reasons[name] = ("CreateContainerError", e.message)
            self._record(pod, "Warning", "Failed", f"Error: {e.message}", name)
            self.w.wake_in(2.0)
            return True
        self._record(pod, "Normal", "Created", f"Created container {name}", name)
        try:
            await kl.runtime.start_container(cid)
        except ContainerRuntimeError as e:
            self.reasons[name] = ("RunContainerError", e.message)
            self._record(pod, "Warning", "Failed", f'Error: failed to start container "{name}": {e.message}', name)
            self.w.wake_in(0.5)
            return True
        self.reasons.pop(name, None)
        self._record(pod, "Normal", "Started", f"Started container {name}", name)
        event(log, "container_started", pod=self.w._pod_name(), container=name, image=image, restart_count=restart_count,
              id=cid[:12])
        return True

    async def _ensure_image(self, pod: Obj, c: Obj) -> bool:
        kl = self.kl
        name, image = str(c.get("name")), str(c.get("image") or "")
        policy = str(c.get("imagePullPolicy") or default_pull_policy(image))
        key = f"{self.uid}_{image}"
        try:
            present = await kl.runtime.image_present(image) if policy != PullPolicy.ALWAYS else None
        except ImagePullError as e:  # InvalidImageName
            self.reasons[name] = (e.reason, e.message)
            self._record(pod, "Warning", "InspectFailed", e.message, name)
            return False
        if present:
            kl.image_backoff.forget_prefix(key)
            self._record(pod, "Normal", "Pulled", f'Container image "{image}" already present on machine', name)
            return True
        if policy == PullPolicy.NEVER:
            msg = f'Container image "{image}" is not present with pull policy of Never'
            self.reasons[name] = ("ErrImageNeverPull", msg)
            self._record(pod, "Warning", "ErrImageNeverPull", msg, name)
            return False
        if kl.image_backoff.in_backoff_since_update(key):
            msg = f'Back-off pulling image "{image}"'
            self.reasons[name] = ("ImagePullBackOff", msg)
            self._record(pod, "Normal", "BackOff", msg, name)
            last = kl.image_backoff.last_update(key) or time.time()
            self.w.wake_in(kl.image_backoff.remaining(key, last) + 0.05)
            return False
        self._record(pod, "Normal", "Pulling", f'Pulling image "{image}"', name)
        t0 = time.monotonic()
        try:
            await kl.runtime.ensure_image(image, policy)
        except ImagePullError as e:
            kl.image_backoff.next(key, time.time())
            self.reasons[name] = (e.reason, e.message)
            self._record(pod, "Warning", "Failed", f'Failed to pull image "{image}": {e.message}', name)
            self._record(pod, "Warning", "Failed", f"Error: {e.reason}", name)
            # look again inside the back-off window (ImagePullBackOff), then when it ends
            self.w.wake_in(min(1.0, kl.image_backoff.get(key) / 2))
            return False
        kl.image_backoff.forget_prefix(key)
        self._record(pod, "Normal", "Pulled", f'Successfully pulled image "{image}" in {time.monotonic() - t0:.3f}s', name)
        return True

    # ---- garbage ---------------------------------------------------------------------------

    def _gc(self, containers: list[ContainerStatus]) -> None:
        """Keep the newest two instances per container (the current one and its lastState) and the
        newest sandbox; remove older exited ones in the background."""
        doomed: list[str] = []
        for instances in instances_by_name(containers).values():
            doomed += [c.id for c in instances[2:] if c.state is not ContainerState.RUNNING]
        doomed += [c.id for c in sandboxes_of(containers)[1:] if c.state is not ContainerState.RUNNING]
        live = {c.id for c in containers}
        self._exit_seen = {k: v for k, v in self._exit_seen.items() if k in live}
        for cid in doomed:
            self.kl.spawn(self.kl.runtime.remove_container(cid), f"remove {cid[:12]}")
