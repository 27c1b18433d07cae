"""Table rows for pods and the workload kinds, plus the formatting helpers every printer shares.

`kubectl get` prints whatever columns the server's Table carries, so these functions port the
printers of kube-apiserver (pkg/printers/internalversion/printers.go) cell for cell: the same
column names, types and priorities, the same STATUS logic for pods, the same `<none>` and
`<unset>` placeholders, and apimachinery's short durations (`5s`, `3m2s`, `4h`, `2d3h`).
The server always fills the wide (priority 1) cells; kubectl hides them unless `-o wide`.
Objects are the stored JSON dicts (v1, already defaulted) and are never modified here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import selectors

Obj = Mapping[str, Any]
Cell = str | int | bool | None
Column = dict[str, Any]


@dataclass(frozen=True)
class Row:
    cells: list[Cell]
    conditions: list[dict[str, str]] | None = None


Printer = Callable[[Obj], Row]

NAME_DOC = ("Name must be unique within a namespace. Is required when creating resources, although some resources "
            "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
            "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
            "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
CREATED_DOC = ("CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
               "guaranteed to be set in happens-before order across separate operations. Clients may not set this "
               "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null "
               "for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
               "api-conventions.md#metadata")
CONTAINERS_DOC = "Names of each container in the template."
IMAGES_DOC = "Images referenced by each container in the template."


def col(name: str, type_: str = "string", description: str = "", *, priority: int = 0, fmt: str = "") -> Column:
    """One TableColumnDefinition, serialised as the Go struct is (no omitempty)."""
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


NAME = col("Name", "string", NAME_DOC, fmt="name")
AGE = col("Age", "string", CREATED_DOC)


# ---------------------------------------------------------------------------------- helpers
def parse_time(value: Any) -> datetime | None:
    """A metav1.Time / MicroTime string, or None for null, empty or garbage (Go's zero time)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def human_duration(seconds_total: float) -> str:
    """apimachinery's duration.HumanDuration: about two significant figures."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def since(value: Any, now: datetime | None = None) -> str:
    """translateTimestampSince: `<unknown>` for a zero time."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - t).total_seconds())


def age(obj: Obj) -> str:
    return since(meta(obj).get("creationTimestamp"))


def meta(obj: Obj) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def sub(obj: Obj, *path: str) -> Mapping[str, Any]:
    """A nested object, {} where anything on the way is missing (Go's zero struct)."""
    cur: Any = obj
    for p in path:
        cur = cur.get(p) if isinstance(cur, Mapping) else None
    return cur if isinstance(cur, Mapping) else {}


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def num(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def name(obj: Obj) -> str:
    return str(meta(obj).get("name") or "")


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted `k=v` joined with commas, `<none>` when empty."""
    if not isinstance(labels, Mapping) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_string(sel: Any) -> str | None:
    """metav1.LabelSelectorAsSelector(sel).String(); None when the selector does not parse."""
    if sel is None:
        return ""
    if not isinstance(sel, Mapping):
        return None
    try:
        return str(selectors.LabelSelector.from_api(sel))
    except (selectors.SelectorError, TypeError, AttributeError):
        return None


def format_label_selector(sel: Any) -> str:
    """metav1.FormatLabelSelector: `<none>` for an empty selector, `<error>` for a bad one."""
    if sel is None:
        return "<none>"
    text = selector_string(sel)
    if text is None:
        return "<error>"
    return text or "<none>"


def container_cells(template_spec: Mapping[str, Any]) -> tuple[str, str]:
    """layoutContainerCells: container names and images, comma separated."""
    containers = [c for c in items(template_spec.get("containers")) if isinstance(c, Mapping)]
    return (",".join(str(c.get("name") or "") for c in containers),
            ",".join(str(c.get("image") or "") for c in containers))


def condition_true(conditions: Any, ctype: str) -> bool:
    """hasJobCondition: the first condition of the type decides."""
    for c in items(conditions):
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return bool(c.get("status") == "True")
    return False


# --------------------------------------------------------------------------------- pods
POD_COLUMNS = [
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the "
        "last container in this pod has restarted."),
    AGE,
    col("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet "
        "allocated.", priority=1),
    col("Node", "string", "NodeName indicates in which node this pod is scheduled.", priority=1),
    col("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, "
        "but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
        priority=1),
    col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.",
        priority=1),
]
_POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]
_POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]


def _later(a: datetime | None, b: Any) -> datetime | None:
    t = parse_time(b)
    if t is None:
        return a
    return t if a is None or a < t else a


def print_pod(pod: Obj) -> Row:
    """printPod: READY, STATUS (phase overridden by container states), RESTARTS with `(Xm ago)`."""
    spec, status = sub(pod, "spec"), sub(pod, "status")
    restarts = restartable_restarts = 0
    containers = items(spec.get("containers"))
    total = len(containers)
    ready = 0
    last_restart: datetime | None = None
    last_restartable: datetime | None = None
    phase = str(status.get("phase") or "")
    reason = str(status.get("reason") or "") or phase
    for cond in items(status.get("conditions")):
        if isinstance(cond, Mapping) and cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    conditions = _POD_SUCCEEDED if phase == "Succeeded" else _POD_FAILED if phase == "Failed" else None

    init_specs = [c for c in items(spec.get("initContainers")) if isinstance(c, Mapping)]
    restartable = {str(c.get("name")) for c in init_specs if c.get("restartPolicy") == "Always"}
    total += len(restartable)

    initializing = False
    for i, cs in enumerate(items(status.get("initContainerStatuses"))):
        if not isinstance(cs, Mapping):
            continue
        restarts += num(cs.get("restartCount"))
        last_term = sub(cs, "lastState", "terminated")
        if last_term:
            last_restart = _later(last_restart, last_term.get("finishedAt"))
        is_restartable = cs.get("name") in restartable
        if is_restartable:
            restartable_restarts += num(cs.get("restartCount"))
            if last_term:
                last_restartable = _later(last_restartable, last_term.get("finishedAt"))
        state = sub(cs, "state")
        terminated, waiting = sub(state, "terminated"), sub(state, "waiting")
        is_terminated = isinstance(state.get("terminated"), Mapping)
        if is_terminated and num(terminated.get("exitCode")) == 0:
            continue
        if is_restartable and cs.get("started") is True:
            if cs.get("ready") is True:
                ready += 1
            continue
        if is_terminated:
            if not terminated.get("reason"):
                signal = num(terminated.get("signal"))
                reason = f"Init:Signal:{signal}" if signal else f"Init:ExitCode:{num(terminated.get('exitCode'))}"
            else:
                reason = f"Init:{terminated['reason']}"
        elif waiting and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or condition_true(status.get("conditions"), "Initialized"):
        restarts, last_restart = restartable_restarts, last_restartable
        has_running = False
        for cs in reversed(items(status.get("containerStatuses"))):
            if not isinstance(cs, Mapping):
                continue
            restarts += num(cs.get("restartCount"))
            last_term = sub(cs, "lastState", "terminated")
            if last_term:
                last_restart = _later(last_restart, last_term.get("finishedAt"))
            state = sub(cs, "state")
            waiting, terminated = sub(state, "waiting"), sub(state, "terminated")
            if waiting and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated and terminated.get("reason"):
                reason = str(terminated["reason"])
            elif "terminated" in state and isinstance(state.get("terminated"), Mapping):
                signal = num(terminated.get("signal"))
                reason = f"Signal:{signal}" if signal else f"ExitCode:{num(terminated.get('exitCode'))}"
            elif cs.get("ready") is True and isinstance(state.get("running"), Mapping):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if condition_true(status.get("conditions"), "Ready") else "NotReady"

    deleting = bool(meta(pod).get("deletionTimestamp"))
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((datetime.now(UTC) - last_restart).total_seconds())} ago)"

    ips = [p for p in items(status.get("podIPs")) if isinstance(p, Mapping)]
    pod_ip = str(ips[0].get("ip") or "") if ips else str(status.get("podIP") or "")
    gates = [g for g in items(spec.get("readinessGates")) if isinstance(g, Mapping)]
    gates_text = "<none>"
    if gates:
        true_count = 0
        for gate in gates:
            for cond in items(status.get("conditions")):
                if isinstance(cond, Mapping) and cond.get("type") == gate.get("conditionType"):
                    true_count += cond.get("status") == "True"
                    break
        gates_text = f"{true_count}/{len(gates)}"
    cells: list[Cell] = [name(pod), f"{ready}/{total}", reason, restarts_text, age(pod),
                         pod_ip or "<none>", str(spec.get("nodeName") or "") or "<none>",
                         str(status.get("nominatedNodeName") or "") or "<none>", gates_text]
    return Row(cells, conditions)


# ---------------------------------------------------------------------------- workloads
DEPLOYMENT_COLUMNS = [
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the "
        "desired template spec."),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by "
        "this deployment."),
    AGE,
    col("Containers", "string", CONTAINERS_DOC, priority=1),
    col("Images", "string", IMAGES_DOC, priority=1),
    col("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will "
        "be the ones affected by this deployment.", priority=1),
]


def print_deployment(obj: Obj) -> Row:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    names, images = container_cells(sub(spec, "template", "spec"))
    sel = selector_string(spec.get("selector"))
    return Row([name(obj), f"{num(status.get('readyReplicas'))}/{num(spec.get('replicas'), 1)}",
                num(status.get("updatedReplicas")), num(status.get("availableReplicas")), age(obj),
                names, images, "<invalid>" if sel is None else sel])


REPLICASET_COLUMNS = [
    NAME,
    col("Desired", "integer", "Replicas is the number of desired replicas."),
    col("Current", "integer", "Replicas is the most recently observed number of replicas."),
    col("Ready", "integer", "The number of ready replicas for this replica set."),
    AGE,
    col("Containers", "string", CONTAINERS_DOC, priority=1),
    col("Images", "string", IMAGES_DOC, priority=1),
    col("Selector", "string", "Selector is a label query over pods that should match the replica count.", priority=1),
]


def print_replicaset(obj: Obj) -> Row:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    names, images = container_cells(sub(spec, "template", "spec"))
    return Row([name(obj), num(spec.get("replicas"), 1), num(status.get("replicas")), num(status.get("readyReplicas")),
                age(obj), names, images, format_label_selector(spec.get("selector"))])


DAEMONSET_COLUMNS = [
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run "
        "the daemon pod."),
    col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the "
        "daemon pod running and ready."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of "
        "the daemon pod running and available."),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    col("Containers", "string", CONTAINERS_DOC, priority=1),
    col("Images", "string", IMAGES_DOC, priority=1),
    col("Selector", "string", "A label query over pods that are managed by the daemon set.", priority=1),
]


def print_daemonset(obj: Obj) -> Row:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    pod_spec = sub(spec, "template", "spec")
    names, images = container_cells(pod_spec)
    return Row([name(obj), num(status.get("desiredNumberScheduled")), num(status.get("currentNumberScheduled")),
                num(status.get("numberReady")), num(status.get("updatedNumberScheduled")),
                num(status.get("numberAvailable")), format_labels(pod_spec.get("nodeSelector")), age(obj),
                names, images, format_label_selector(spec.get("selector"))])


STATEFULSET_COLUMNS = [
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    col("Containers", "string", CONTAINERS_DOC, priority=1),
    col("Images", "string", IMAGES_DOC, priority=1),
]


def print_statefulset(obj: Obj) -> Row:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    names, images = container_cells(sub(spec, "template", "spec"))
    return Row([name(obj), f"{num(status.get('readyReplicas'))}/{num(spec.get('replicas'), 1)}", age(obj),
                names, images])


JOB_COLUMNS = [
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", "The number of pods which reached phase Succeeded."),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    col("Containers", "string", CONTAINERS_DOC, priority=1),
    col("Images", "string", IMAGES_DOC, priority=1),
    col("Selector", "string", "A label query over pods that should match the pod count.", priority=1),
]


def print_job(obj: Obj) -> Row:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    succeeded = num(status.get("succeeded"))
    if isinstance(spec.get("completions"), int):
        completions = f"{succeeded}/{spec['completions']}"
    else:
        parallelism = num(spec.get("parallelism"))
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration(((end or datetime.now(UTC)) - start).total_seconds())
    conds = status.get("conditions")
    if condition_true(conds, "Complete"):
        state = "Complete"
    elif condition_true(conds, "Failed"):
        state = "Failed"
    elif meta(obj).get("deletionTimestamp"):
        state = "Terminating"
    elif condition_true(conds, "Suspended"):
        state = "Suspended"
    elif condition_true(conds, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = container_cells(sub(spec, "template", "spec"))
    return Row([name(obj), state, completions, duration, age(obj), names, images,
                format_label_selector(spec.get("selector"))])


CRONJOB_COLUMNS = [
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col("Timezone", "string", "The time zone name for the given schedule, see "
        "https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
    col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply "
        "to already started executions.  Defaults to false."),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    col("Containers", "string", CONTAINERS_DOC, priority=1),
    col("Images", "string", IMAGES_DOC, priority=1),
    col("Selector", "string", "A label query over pods that should match the pod count.", priority=1),
]


def print_cronjob(obj: Obj) -> Row:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    job_spec = sub(spec, "jobTemplate", "spec")
    names, images = container_cells(sub(job_spec, "template", "spec"))
    suspend = spec.get("suspend")
    last = status.get("lastScheduleTime")
    tz = spec.get("timeZone")
    return Row([name(obj), str(spec.get("schedule") or ""), tz if isinstance(tz, str) else "<none>",
                "<unset>" if not isinstance(suspend, bool) else ("True" if suspend else "False"),
                len(items(status.get("active"))), since(last) if last else "<none>", age(obj),
                names, images, format_label_selector(job_spec.get("selector"))])


WORKLOAD_PRINTERS: dict[tuple[str, str], tuple[list[Column], Printer]] = {
    ("", "pods"): (POD_COLUMNS, print_pod),
    ("apps", "deployments"): (DEPLOYMENT_COLUMNS, print_deployment),
    ("apps", "replicasets"): (REPLICASET_COLUMNS, print_replicaset),
    ("apps", "daemonsets"): (DAEMONSET_COLUMNS, print_daemonset),
    ("apps", "statefulsets"): (STATEFULSET_COLUMNS, print_statefulset),
    ("batch", "jobs"): (JOB_COLUMNS, print_job),
    ("batch", "cronjobs"): (CRONJOB_COLUMNS, print_cronjob),
}
