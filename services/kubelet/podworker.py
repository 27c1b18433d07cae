"""One worker per pod UID: the loop that turns a desired pod into containers and back into nothing.

Why this exists: upstream's pod_workers.go gives each pod its own goroutine so a slow pod (a pull,
a 30 s stop) never holds up another, and a pod's syncs never overlap. `PodWorker` is that: it
sleeps until woken (a spec change from a pod source, a PLEG event, a probe result, a back-off
deadline or the periodic resync), then runs one sync against a fresh view of the runtime:

- pod removed from its source, or being deleted: terminate (SIGTERM, SIGKILL after the grace
  period, remove containers, sandbox and volumes), then finish the API deletion (`DELETE` with
  grace 0 and a UID precondition) or delete the static pod's mirror, and end the worker;
- pod finished (Succeeded/Failed): stop the sandbox, keep the exited containers, write status;
- otherwise `PodSync.sync` (podsync.py) does what kuberuntime's computePodActions decides.

Termination preempts a running sync (it is cancelled), as upstream cancels a sync's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from services.kubelet.grace import grace_of
from services.kubelet.podstatus import sandboxes_of
from services.kubelet.podsync import PodSync
from services.kubelet.runtime_types import (
    ContainerKind,
    ContainerRuntimeError,
    ContainerState,
    ContainerStatus,
)
from services.kubelet.static import is_static, mirror_hash
from shared.errors import ApiError
from shared.log import event

if TYPE_CHECKING:
    from services.kubelet.kubelet import Kubelet

log = logging.getLogger("kubenats.kubelet.worker")
Obj = dict[str, Any]


class PodWorker:
    def __init__(self, kubelet: Kubelet, uid: str) -> None:
        self.kl = kubelet
        self.uid = uid
        self.pod: Obj | None = kubelet.pods.get(uid)  # the last desired pod seen
        self.sync = PodSync(kubelet, self)
        self._wake = asyncio.Event()
        self._deadline: float | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.terminated = False  # containers of a removed/deleted pod are gone
        self.syncs = 0
        self.errors = 0

    # ---- scheduling ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"pod worker {self.uid}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        self._wake.set()
        if self._sync_task is not None and not self._sync_task.done() and self._should_terminate(self.kl.pods.get(self.uid)):
            self._sync_task.cancel()  # termination preempts a sync in progress

    def wake_in(self, delay: float) -> None:
        at = time.monotonic() + max(0.0, delay)
        if self._deadline is None or at < self._deadline:
            self._deadline = at

    async def _wait(self) -> None:
        if self._wake.is_set():
            self._wake.clear()
            return
        resync = self.kl.cfg.sync_frequency * random.uniform(0.9, 1.1)
        timeout = resync if self._deadline is None else max(0.0, min(resync, self._deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    @staticmethod
    def _should_terminate(pod: Obj | None) -> bool:
        return pod is None or bool((pod.get("metadata") or {}).get("deletionTimestamp"))

    async def _run(self) -> None:
        me = asyncio.current_task()
        retry = 0.5
        try:
            first = True
            while True:
                if not first:
                    await self._wait()
                first = False
                self._deadline = None
                pod = self.kl.pods.get(self.uid)
                if pod is not None:
                    self.pod = pod
                try:
                    if self._should_terminate(pod):
                        if await self._terminate(pod):
                            return
                        continue
                    self._sync_task = asyncio.get_running_loop().create_task(self.sync.sync(pod or {}))
                    try:
                        await self._sync_task
                    finally:
                        self._sync_task = None
                    self.syncs += 1
                    retry = 0.5
                except asyncio.CancelledError:
                    if me is not None and me.cancelling():
                        raise
                    continue  # our sync was preempted by a termination: go round
                except Exception as e:
                    self.errors += 1
                    event(log, "pod_sync_failed", logging.WARNING, pod=self._pod_name(), uid=self.uid,
                          error=f"{type(e).__name__}: {e}", retry_in_s=retry)
                    self.wake_in(retry)
                    retry = min(retry * 2, 10.0)
        finally:
            self.kl.worker_finished(self)

    def _pod_name(self) -> str:
        meta = (self.pod or {}).get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}" if meta else self.uid

    # ---- termination -----------------------------------------------------------------------

    async def _terminate(self, pod: Obj | None) -> bool:
        """Kill everything of the pod; True when the worker is finished."""
        if not self.terminated:
            snap = await self.kl.cache.get(time.monotonic())
            containers = snap.by_pod.get(self.uid, [])
            await self.kill_pod(pod or self.pod, containers, grace_of(pod or self.pod, containers),
                                reason="deleted" if pod is not None else "removed")
            self.kl.volumes.cleanup(self.uid)
            self.kl.probes.remove_pod(self.uid)
            self.kl.crash_backoff.forget_prefix(self.uid)
            self.terminated = True
        last = pod or self.pod
        try:
            if pod is not None and not is_static(pod):
                await self._finish_deletion(pod)
            elif last is not None and is_static(last) and pod is None:
                await self.kl.mirrors.delete_for(last)
        except ApiError as e:
            event(log, "pod_finalize_failed", logging.WARNING, pod=self._pod_name(), code=e.code, error=e.message)
            self.wake_in(min(2.0 * (1 + self.errors), self.kl.cfg.api_retry_max))
            self.errors += 1
            return False
        self.kl.status.forget(self.uid)
        event(log, "pod_terminated", pod=self._pod_name(), uid=self.uid)
        return True

    async def _finish_deletion(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        if self.kl.client is None:
            return
        try:
            await self.kl.client.delete(self.kl.pods_res, str(meta.get("namespace")), str(meta.get("name")),
                                        grace_period=0, uid=str(meta.get("uid")))
        except ApiError as e:
            if e.code not in (404, 409):  # gone already, or replaced by a new pod of that name
                raise

    async def kill_pod(self, pod: Obj | None, containers: list[ContainerStatus], grace: int, reason: str) -> None:
        """Stop app containers (in parallel, `grace` seconds each), then sandboxes; remove all."""
        rt = self.kl.runtime
        apps = [c for c in containers if c.kind is ContainerKind.CONTAINER]
        sandboxes = [c for c in containers if c.kind is ContainerKind.SANDBOX]

        async def stop(c: ContainerStatus, seconds: float, record: bool) -> None:
            if c.state is ContainerState.RUNNING:
                if record and pod is not None:
                    self.kl.record(pod, "Normal", "Killing", f"Stopping container {c.container_name}",
                                   c.container_name)
                with contextlib.suppress(ContainerRuntimeError):
                    await rt.stop_container(c.id, seconds)

        await asyncio.gather(*(stop(c, grace, True) for c in apps))
        await asyncio.gather(*(stop(c, min(grace, 2), False) for c in sandboxes))
        for c in [*apps, *sandboxes]:
            with contextlib.suppress(ContainerRuntimeError):
                await rt.remove_container(c.id)
        if apps or sandboxes:
            event(log, "pod_killed", pod=self._pod_name(), uid=self.uid, reason=reason, grace_s=grace,
                  containers=len(apps), sandboxes=len(sandboxes))

    async def stop_sandbox(self, containers: list[ContainerStatus]) -> None:
        """A finished pod: stop whatever still runs (its sandbox), keep the exited containers."""
        for c in containers:
            if c.state is ContainerState.RUNNING and c.kind is ContainerKind.CONTAINER:
                with contextlib.suppress(ContainerRuntimeError):
                    await self.kl.runtime.stop_container(c.id, grace_of(self.pod, containers))
        for sb in sandboxes_of(containers):
            if sb.state is ContainerState.RUNNING:
                with contextlib.suppress(ContainerRuntimeError):
                    await self.kl.runtime.stop_container(sb.id, 2)

    def mirror_matches(self, mirror: Obj | None) -> bool:
        return mirror is not None and mirror_hash(mirror) == self.uid
