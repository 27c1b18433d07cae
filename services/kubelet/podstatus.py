"""A pod's API status computed from its spec, its containers in the runtime and the kubelet's notes.

Why this exists: `kubectl get pods`, controllers and the official clients read exactly these
fields, so they follow upstream's generateAPIPodStatus / convertToAPIContainerStatuses / getPhase
(kubelet_pods.go) and pkg/kubelet/status/generate.go: phase from the containers' states and the
restart policy, the five kubelet-owned conditions in upstream's order with lastTransitionTime moving
only when a condition's status changes, `lastState` from the previous instance of a container,
`restartCount` from the runtime labels (so it survives a kubelet restart) and waiting reasons
(CrashLoopBackOff, ErrImagePull, ...) from the pod worker. It is a pure function of its inputs: the
status manager compares its output with what was last written and writes only differences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.kubelet.runtime_types import ContainerKind, ContainerState, ContainerStatus
from shared.api.defaults import pod_qos_class

Obj = dict[str, Any]
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
TERMINAL_PHASES = ("Succeeded", "Failed")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def instances_by_name(containers: Sequence[ContainerStatus]) -> dict[str, list[ContainerStatus]]:
    """App and init container instances by container name, newest first."""
    out: dict[str, list[ContainerStatus]] = {}
    for c in containers:
        if c.kind is ContainerKind.CONTAINER:
            out.setdefault(c.container_name, []).append(c)
    for lst in out.values():
        lst.sort(key=lambda c: (c.restart_count, c.created_at or "", c.attempt), reverse=True)
    return out


def sandboxes_of(containers: Sequence[ContainerStatus]) -> list[ContainerStatus]:
    """The pod's sandboxes, newest first."""
    sbs = [c for c in containers if c.kind is ContainerKind.SANDBOX]
    sbs.sort(key=lambda c: (c.attempt, c.created_at or ""), reverse=True)
    return sbs


@dataclass
class StatusInputs:
    pod: Obj
    containers: Sequence[ContainerStatus]
    sandbox: ContainerStatus | None  # the current sandbox, running or not
    reasons: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # container -> (reason, message)
    terminal: bool = False  # the worker decided the pod is done (no more restarts)
    host_ips: Sequence[str] = ()
    scheme: str = "docker"
    ready: Callable[[ContainerStatus], bool] = lambda c: True  # readiness of a running container
    started: Callable[[ContainerStatus], bool] = lambda c: True  # startup state of a running container
    termination_message: Callable[[ContainerStatus], str] = lambda c: ""


def _state_of(c: ContainerStatus, inp: StatusInputs) -> Obj:
    cid = f"{inp.scheme}://{c.id}"
    if c.state is ContainerState.RUNNING:
        return {"running": {"startedAt": c.started_at or c.created_at}}
    if c.state is ContainerState.EXITED or (c.state is ContainerState.CREATED and c.error):
        if c.state is ContainerState.CREATED or (c.error and not c.started_at):
            reason = "StartError"
        elif c.oom_killed:
            reason = "OOMKilled"
        else:
            reason = "Completed" if c.exit_code == 0 else "Error"
        term: Obj = {"exitCode": c.exit_code if c.exit_code is not None else 128, "reason": reason,
                     "startedAt": c.started_at or c.created_at, "finishedAt": c.finished_at or c.started_at or
                     c.created_at, "containerID": cid}
        message = c.error if reason == "StartError" else inp.termination_message(c)
        if message:
            term["message"] = message
        return {"terminated": {k: v for k, v in term.items() if v is not None}}
    return {"waiting": {"reason": "ContainerCreating"}}


def _container_statuses(specs: Sequence[Obj], inp: StatusInputs, by_name: Mapping[str, list[ContainerStatus]],
                        default_reason: str, old: Mapping[str, Obj]) -> list[Obj]:
    out: list[Obj] = []
    for spec in specs:
        name = str(spec.get("name"))
        instances = by_name.get(name) or []
        latest = instances[0] if instances else None
        st: Obj = {"name": name, "state": {"waiting": {"reason": default_reason}}, "lastState": {},
                   "ready": False, "restartCount": 0, "image": str(spec.get("image") or ""), "imageID": "",
                   "started": False}
        if latest is not None:
            st["state"] = _state_of(latest, inp)
            st["restartCount"] = latest.restart_count
            st["image"] = latest.image or st["image"]
            st["imageID"] = f"{inp.scheme}://{latest.image_id}" if latest.image_id else ""
            st["containerID"] = f"{inp.scheme}://{latest.id}"
            if latest.state is ContainerState.RUNNING:
                st["started"] = inp.started(latest)
                st["ready"] = bool(st["started"]) and inp.ready(latest)
            if len(instances) > 1:
                st["lastState"] = _state_of(instances[1], inp)
        elif name in old and "terminated" in (old[name].get("state") or {}) and inp.terminal:
            st = dict(old[name])  # containers removed after the pod finished keep their last word
        reason = inp.reasons.get(name)
        if reason is not None and (latest is None or latest.state is not ContainerState.RUNNING):
            if "terminated" in st["state"]:
                st["lastState"] = st["state"]
            waiting: Obj = {"reason": reason[0]}
            if reason[1]:
                waiting["message"] = reason[1]
            st["state"] = {"waiting": waiting}
        out.append(st)
    return out


def get_phase(pod: Mapping[str, Any], init: Sequence[Obj], app: Sequence[Obj], terminal: bool) -> str:
    """Upstream getPhase over API container statuses."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    pending_init = failed_init = 0
    for st in init:
        state, last = st.get("state") or {}, st.get("lastState") or {}
        if "running" in state:
            pending_init += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode") != 0:
                failed_init += 1
        elif "waiting" in state:
            if "terminated" in last:
                if last["terminated"].get("exitCode") != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    running = waiting = stopped = succeeded = unknown = 0
    for st in app:
        state, last = st.get("state") or {}, st.get("lastState") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if "terminated" in last:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init > 0 and policy == "Never":
        return "Failed"
    any_started = any("running" in (st.get("state") or {}) or "terminated" in (st.get("state") or {}) for st in app)
    if (pending_init > 0 and not any_started) or waiting > 0:
        return "Pending"
    if running > 0 and unknown == 0:
        return "Running"
    if running == 0 and stopped > 0 and unknown == 0:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _go_list(names: Sequence[str]) -> str:
    return "[" + " ".join(names) + "]"


def _conditions(pod: Mapping[str, Any], inp: StatusInputs, init: Sequence[Obj], app: Sequence[Obj],
                phase: str) -> list[Obj]:
    spec = pod.get("spec") or {}
    conds: list[Obj] = []
    sandbox_ready = inp.sandbox is not None and inp.sandbox.state is ContainerState.RUNNING and not inp.terminal
    conds.append({"type": "PodReadyToStartContainers", "status": "True" if sandbox_ready else "False"})

    # Initialized
    if not spec.get("initContainers"):
        conds.append({"type": "Initialized", "status": "True"})
    else:
        incomplete = [st["name"] for st in init
                      if (st.get("state") or {}).get("terminated", {}).get("exitCode", 1) != 0
                      or "terminated" not in (st.get("state") or {})]
        started = any("running" in (st.get("state") or {}) or "terminated" in (st.get("state") or {}) for st in app)
        if phase == "Succeeded":
            conds.append({"type": "Initialized", "status": "True", "reason": "PodCompleted"})
        elif not incomplete or started:
            conds.append({"type": "Initialized", "status": "True"})
        else:
            conds.append({"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
                          "message": f"containers with incomplete status: {_go_list(incomplete)}"})

    # ContainersReady, then Ready (= ContainersReady + readiness gates)
    if phase == "Succeeded":
        cr: Obj = {"type": "ContainersReady", "status": "False", "reason": "PodCompleted"}
    elif phase == "Failed":
        cr = {"type": "ContainersReady", "status": "False", "reason": "PodFailed"}
    else:
        unready = [st["name"] for st in app if not st.get("ready")]
        if unready:
            cr = {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
                  "message": f"containers with unready status: {_go_list(unready)}"}
        else:
            cr = {"type": "ContainersReady", "status": "True"}
    if cr["status"] != "True":
        ready = {**cr, "type": "Ready"}
    else:
        existing = {c.get("type"): c for c in ((pod.get("status") or {}).get("conditions") or [])}
        msgs = []
        for gate in spec.get("readinessGates") or []:
            ctype = gate.get("conditionType")
            c = existing.get(ctype)
            if c is None:
                msgs.append(f'corresponding condition of pod readiness gate "{ctype}" does not exist.')
            elif c.get("status") != "True":
                msgs.append(f'the status of pod readiness gate "{ctype}" is not "True", but {c.get("status")}')
        ready = ({"type": "Ready", "status": "False", "reason": "ReadinessGatesNotReady", "message": ", ".join(msgs)}
                 if msgs else {"type": "Ready", "status": "True"})
    conds.append(ready)
    conds.append(cr)
    conds.append({"type": "PodScheduled", "status": "True"})
    return conds


def generate(inp: StatusInputs, old: Mapping[str, Any] | None) -> Obj:
    """The pod's status; `old` is the status last written (or read from the API)."""
    old = old or {}
    pod = inp.pod
    spec = pod.get("spec") or {}
    by_name = instances_by_name(inp.containers)
    init_specs = spec.get("initContainers") or []
    old_init = {s.get("name"): s for s in old.get("initContainerStatuses") or []}
    old_app = {s.get("name"): s for s in old.get("containerStatuses") or []}
    default_reason = "PodInitializing" if init_specs else "ContainerCreating"
    init = _container_statuses(init_specs, inp, by_name, default_reason, old_init)
    app = _container_statuses(spec.get("containers") or [], inp, by_name, default_reason, old_app)
    app.sort(key=lambda s: str(s["name"]))
    phase = get_phase(pod, init, app, inp.terminal)
    if old.get("phase") in TERMINAL_PHASES:
        phase = str(old["phase"])  # a terminal phase never changes
    now = now_rfc3339()
    old_conds = {c.get("type"): c for c in old.get("conditions") or []}
    conditions = [c for c in old.get("conditions") or [] if c.get("type") not in KUBELET_CONDITIONS]
    for c in _conditions(pod, inp, init, app, phase):
        prev = old_conds.get(c["type"])
        c["lastTransitionTime"] = (prev.get("lastTransitionTime") if prev is not None and prev.get("status") == c["status"]
                                   and prev.get("lastTransitionTime") else now)
        conditions.append(c)
    status: Obj = {"phase": phase, "conditions": conditions}
    if inp.host_ips:
        status["hostIP"] = inp.host_ips[0]
        status["hostIPs"] = [{"ip": ip} for ip in inp.host_ips]
    ip = inp.sandbox.ip if inp.sandbox is not None and inp.sandbox.state is ContainerState.RUNNING else ""
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    elif old.get("podIP"):
        status["podIP"] = old["podIP"]
        status["podIPs"] = old.get("podIPs") or [{"ip": old["podIP"]}]
    status["startTime"] = old.get("startTime") or now
    if init_specs:
        status["initContainerStatuses"] = init
    status["containerStatuses"] = app
    status["qosClass"] = old.get("qosClass") or pod_qos_class(pod)
    for key in ("nominatedNodeName", "reason", "message", "resize", "resourceClaimStatuses"):
        if old.get(key) is not None and key not in status:
            status[key] = old[key]
    return status


def comparable(status: Mapping[str, Any] | None) -> Any:
    """A status with None values dropped, for "did it change" comparisons."""
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(dict(status or {}))
