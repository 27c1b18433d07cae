"""Validation of workload controllers (apps/v1 and batch/v1) in Kubernetes' words.

Why this exists: Deployments, ReplicaSets, DaemonSets, StatefulSets, Jobs and
CronJobs share selector/template rules (``pkg/apis/apps/validation`` and
``pkg/apis/batch/validation`` plus the registry strategies that make selectors
immutable).  Split out of ``shared.api.validation`` only to keep modules small;
use ``shared.api.validation.validate``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from shared.api.validation_meta import (
    Errs,
    GoRepr,
    as_int,
    as_list,
    as_map,
    as_str,
    child,
    go_map,
    go_selector,
    key,
    label_selector_matches,
    selector_is_empty,
    selector_is_valid,
    validate_label_selector,
    validate_template_meta,
)
from shared.api.validation_pod import validate_pod_template

__all__ = ["WORKLOAD_VALIDATORS"]


_m, _l, _s, _int = as_map, as_list, as_str, as_int


def _immutable(errs: Errs, new: Any, old: Any, path: str, render: Callable[[Any], Any]) -> None:
    if new != old:
        errs.invalid(path, render(new), "field is immutable")


def _go_struct(type_name: str, value: Any) -> GoRepr:
    """Stand-in for Go's %#v of a big struct (Kubernetes prints the whole value)."""
    return GoRepr(type_name + json.dumps(value, sort_keys=True, separators=(",", ":")))


# ---------------------------------------------------------------------------
# apps/v1, batch/v1
# ---------------------------------------------------------------------------


def _template_for_controller(errs: Errs, spec: Mapping[str, Any], kind_name: str, *, full: bool = True) -> None:
    """Selector/template agreement, template validation and restartPolicy Always."""
    template = _m(spec.get("template"))
    if full:
        validate_pod_template(errs, template, "spec.template")
    else:
        validate_template_meta(errs, template.get("metadata"), "spec.template")
    tspec = _m(template.get("spec"))
    restart = tspec.get("restartPolicy") or "Always"
    if restart != "Always":
        errs.not_supported("spec.template.spec.restartPolicy", restart, ("Always",))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.forbidden("spec.template.spec.activeDeadlineSeconds", f"activeDeadlineSeconds in {kind_name} is not Supported")


def _selector_checks(errs: Errs, spec: Mapping[str, Any], kind_word: str, *, daemonset: bool = False,
                     invalid_detail: str = "invalid label selector") -> bool:
    """Selector rules shared by the apps controllers; False when the template must not be validated.

    As in Kubernetes, a missing selector becomes labels.Nothing() (matches no
    labels, so the template check fails too), an empty one matches everything, and
    a selector that cannot be converted skips the template validation entirely.
    """
    sel = spec.get("selector")
    labels = _m(_m(spec.get("template")).get("metadata")).get("labels")
    if sel is None:
        if not daemonset:
            errs.required("spec.selector")
    else:
        validate_label_selector(errs, sel, "spec.selector")
        if selector_is_empty(sel):
            errs.invalid("spec.selector", go_selector(sel), f"empty selector is invalid for {kind_word}")
    if not selector_is_valid(sel):
        if not daemonset:
            errs.invalid("spec.selector", go_selector(sel), invalid_detail)
            return False
        return True
    if not label_selector_matches(sel, _m(labels)):
        errs.invalid("spec.template.metadata.labels", go_map(labels), "`selector` does not match template `labels`")
    return True


def _deployments(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = _m(obj.get("spec"))
    errs.nonnegative("spec.replicas", spec.get("replicas"))
    if _selector_checks(errs, spec, "deployment"):
        _template_for_controller(errs, spec, "ReplicaSet")
    strategy = _m(spec.get("strategy"))
    stype = strategy.get("type") or "RollingUpdate"
    if stype == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
    elif stype == "RollingUpdate":
        ru = _m(strategy.get("rollingUpdate"))
        unavailable, surge = ru.get("maxUnavailable", "25%"), ru.get("maxSurge", "25%")
        _int_or_percent(errs, unavailable, "spec.strategy.rollingUpdate.maxUnavailable")
        _int_or_percent(errs, surge, "spec.strategy.rollingUpdate.maxSurge")
        if _ioP_value(unavailable) == 0 and _ioP_value(surge) == 0:
            errs.invalid("spec.strategy.rollingUpdate.maxUnavailable", GoRepr(str(unavailable)),
                         "may not be 0 when `maxSurge` is 0")
        _not_over_100(errs, unavailable, "spec.strategy.rollingUpdate.maxUnavailable")
    else:
        rendered = GoRepr(f"apps.DeploymentStrategy{{Type:{json.dumps(stype)}, "
                          f"RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}")
        errs.not_supported("spec.strategy", rendered, ("Recreate", "RollingUpdate"))
    errs.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    errs.nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    pds = _int(spec.get("progressDeadlineSeconds"))
    if pds is not None:
        errs.nonnegative("spec.progressDeadlineSeconds", pds)
        if pds <= (_int(spec.get("minReadySeconds")) or 0):
            errs.invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds")
    _selector_immutable(errs, obj, old)


def _replicasets(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = _m(obj.get("spec"))
    errs.nonnegative("spec.replicas", spec.get("replicas"))
    errs.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    # sic: Kubernetes says "deployment" for ReplicaSets too
    if _selector_checks(errs, spec, "deployment"):
        _template_for_controller(errs, spec, "ReplicaSet")
    _selector_immutable(errs, obj, old)


def _daemonsets(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = _m(obj.get("spec"))
    _selector_checks(errs, spec, "daemonset", daemonset=True)
    _template_for_controller(errs, spec, "DaemonSet")
    errs.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    errs.nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    strategy = _m(spec.get("updateStrategy"))
    stype = strategy.get("type") or "RollingUpdate"
    if stype == "RollingUpdate":
        ru = _m(strategy.get("rollingUpdate"))
        unavailable, surge = ru.get("maxUnavailable", 1), ru.get("maxSurge", 0)
        path = "spec.updateStrategy.rollingUpdate"
        _int_or_percent(errs, unavailable, child(path, "maxUnavailable"))
        _int_or_percent(errs, surge, child(path, "maxSurge"))
        _not_over_100(errs, unavailable, child(path, "maxUnavailable"))
        _not_over_100(errs, surge, child(path, "maxSurge"))
        has_u, has_s = _ioP_value(unavailable) != 0, _ioP_value(surge) != 0
        if has_u and has_s:
            errs.invalid(child(path, "maxSurge"), GoRepr(str(surge)), "may not be set when maxUnavailable is non-zero")
        elif not has_u and not has_s:
            errs.required(child(path, "maxUnavailable"), "cannot be 0 when maxSurge is 0")
    elif stype != "OnDelete":
        rendered = GoRepr(f"apps.DaemonSetUpdateStrategy{{Type:{json.dumps(stype)}, "
                          f"RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}")
        errs.not_supported("spec.updateStrategy", rendered, ("RollingUpdate", "OnDelete"))
    _selector_immutable(errs, obj, old)


def _statefulsets(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = _m(obj.get("spec"))
    policy = spec.get("podManagementPolicy") or "OrderedReady"
    if policy not in ("OrderedReady", "Parallel"):
        errs.invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'")
    strategy = _m(spec.get("updateStrategy"))
    stype = strategy.get("type") or "RollingUpdate"
    if stype == "OnDelete" and strategy.get("rollingUpdate") is not None:
        errs.invalid("spec.updateStrategy.rollingUpdate", _go_struct("apps.RollingUpdateStatefulSetStrategy",
                     strategy.get("rollingUpdate")), "only allowed for updateStrategy 'RollingUpdate'")
    elif stype == "RollingUpdate":
        ru = _m(strategy.get("rollingUpdate"))
        errs.nonnegative("spec.updateStrategy.rollingUpdate.partition", ru.get("partition"))
    elif stype != "OnDelete":
        errs.invalid("spec.updateStrategy", _go_struct("apps.StatefulSetUpdateStrategy", strategy),
                     "must be 'RollingUpdate' or 'OnDelete'")
    retention = _m(spec.get("persistentVolumeClaimRetentionPolicy"))
    for f in ("whenDeleted", "whenScaled"):
        v = retention.get(f)
        if v not in (None, "") and v not in ("Retain", "Delete"):
            errs.not_supported(child("spec.persistentVolumeClaimRetentionPolicy", f), v, ("Retain", "Delete"))
    errs.nonnegative("spec.replicas", spec.get("replicas"))
    errs.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    # Kubernetes does not validate a StatefulSet's pod spec (volumeClaimTemplates supply volumes).
    if _selector_checks(errs, spec, "statefulset", invalid_detail=""):
        _template_for_controller(errs, spec, "StatefulSet", full=False)
    if old is not None:
        keep = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds")
        new_rest = {k: v for k, v in spec.items() if k not in keep and v is not None}
        old_rest = {k: v for k, v in _m(old.get("spec")).items() if k not in keep and v is not None}
        if new_rest != old_rest:
            errs.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                           "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                           "'minReadySeconds' are forbidden")


def _selector_immutable(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    if old is not None:
        _immutable(errs, _m(obj.get("spec")).get("selector"), _m(old.get("spec")).get("selector"), "spec.selector",
                   go_selector)


def _int_or_percent(errs: Errs, value: Any, path: str) -> None:
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+%", value):
            errs.invalid(path, GoRepr(value), "a valid percent string must be a numeric string followed by an "
                         "ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")
    elif _int(value) is not None:
        errs.nonnegative(path, value)
    else:
        errs.invalid(path, value, "must be an integer or percentage (e.g '5%%')")


def _ioP_value(value: Any) -> int:
    """getIntOrPercentValue: "25%" -> 25, and (like intstr.IntValue) "7" -> 7, junk -> 0."""
    if isinstance(value, str):
        digits = value[:-1] if re.fullmatch(r"[0-9]+%", value) else value
        return int(digits) if re.fullmatch(r"[+-]?[0-9]+", digits) else 0
    return _int(value) or 0


def _not_over_100(errs: Errs, value: Any, path: str) -> None:
    if isinstance(value, str) and re.fullmatch(r"[0-9]+%", value) and int(value[:-1]) > 100:
        errs.invalid(path, GoRepr(value), "must not be greater than 100%")


def _job_spec(errs: Errs, spec: Mapping[str, Any], path: str) -> None:
    for f in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit"):
        errs.nonnegative(child(path, f), spec.get(f))
    mode = spec.get("completionMode")
    if mode not in (None, "") and mode not in ("NonIndexed", "Indexed"):
        errs.not_supported(child(path, "completionMode"), mode, ("NonIndexed", "Indexed"))
    template = _m(spec.get("template"))
    validate_pod_template(errs, template, child(path, "template"))
    restart = _m(template.get("spec")).get("restartPolicy") or "Always"
    if restart not in ("OnFailure", "Never"):
        errs.not_supported(child(path, "template", "spec", "restartPolicy"), restart, ("OnFailure", "Never"))


_JOB_LABELS: Final = (("controller-uid", "uid"), ("job-name", "name"),
                      ("batch.kubernetes.io/controller-uid", "uid"), ("batch.kubernetes.io/job-name", "name"))


def _jobs(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec, meta = _m(obj.get("spec")), _m(obj.get("metadata"))
    manual = spec.get("manualSelector") is True
    sel = spec.get("selector")
    labels = _m(_m(_m(spec.get("template")).get("metadata")).get("labels"))
    if not manual and sel is not None and meta.get("uid"):
        for label, field_name in _JOB_LABELS:
            want = _s(meta.get(field_name))
            p = key("spec.template.metadata.labels", label)
            if label not in labels:
                errs.required(p, f"must be '{want}'")
            elif labels[label] != want:
                errs.invalid(p, go_map(labels), f"must be '{want}'")
        expected = {"batch.kubernetes.io/controller-uid": _s(meta.get("uid")),
                    "batch.kubernetes.io/job-name": _s(meta.get("name"))}
        if selector_is_valid(sel) and not label_selector_matches(sel, expected):
            errs.invalid("spec.selector", go_selector(sel), "`selector` not auto-generated")
    _job_spec(errs, spec, "spec")
    if sel is None:
        # Without manualSelector the selector is generated (apply_job_selector) before storage.
        if manual:
            errs.required("spec.selector")
            raw_labels = _m(_m(spec.get("template")).get("metadata")).get("labels")
            errs.invalid("spec.template.metadata.labels", go_map(raw_labels),
                         "`selector` does not match template `labels`")
    else:
        validate_label_selector(errs, sel, "spec.selector")
        if selector_is_valid(sel) and not label_selector_matches(sel, labels):
            errs.invalid("spec.template.metadata.labels", go_map(labels), "`selector` does not match template `labels`")
    if old is not None:
        old_spec = _m(old.get("spec"))
        indexed_scale = spec.get("completionMode") == "Indexed" and spec.get("completions") == spec.get("parallelism")
        if spec.get("completions") != old_spec.get("completions") and not indexed_scale:
            errs.invalid("spec.completions", spec.get("completions"), "field is immutable")
        _immutable(errs, sel, old_spec.get("selector"), "spec.selector", go_selector)
        _immutable(errs, spec.get("template"), old_spec.get("template"), "spec.template",
                   lambda t: _go_struct("core.PodTemplateSpec", t))


_CRON_FIELDS: Final[tuple[tuple[str, int, int, dict[str, int]], ...]] = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
                       ("month", 1, 12, {m: i + 1 for i, m in enumerate(
                           ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}),
                       ("day of week", 0, 6, {d: i for i, d in enumerate(
                           ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}))
_CRON_DESCRIPTORS: Final = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _cron_error(schedule: str) -> str | None:
    """A robfig/cron ParseStandard error message, or None when the schedule parses."""
    if schedule.startswith("@"):
        if schedule in _CRON_DESCRIPTORS or re.fullmatch(r"@every \S+", schedule):
            return None
        return f"unrecognized descriptor: {schedule}"
    fields = schedule.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    for text, (_, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for expr in text.split(","):
            range_part, _, step = expr.partition("/")
            if "/" in step:
                return f"too many slashes: {expr}"
            bounds = range_part.split("-")
            if len(bounds) > 2:
                return f"too many hyphens: {expr}"
            values: list[int] = []
            for b in bounds if range_part not in ("*", "?") else []:
                v = names.get(b.lower()) if b.lower() in names else (int(b) if b.isdigit() else None)
                if v is None:
                    return f'failed to parse int from {b}: strconv.Atoi: parsing "{b}": invalid syntax'
                values.append(v)
            if values and values[0] < low:
                return f"beginning of range ({values[0]}) below minimum ({low}): {expr}"
            if values and values[-1] > high:
                return f"end of range ({values[-1]}) above maximum ({high}): {expr}"
            if len(values) == 2 and values[0] > values[1]:
                return f"beginning of range ({values[0]}) beyond end of range ({values[1]}): {expr}"
            if step and (not step.isdigit() or int(step) <= 0):
                return f"step of range should be a positive number: {expr}"
    return None


def _cronjobs(errs: Errs, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = _m(obj.get("spec"))
    name = _s(_m(obj.get("metadata")).get("name"))
    if len(name) > 52:
        errs.invalid("metadata.name", name, "must be no more than 52 characters")
    schedule = _s(spec.get("schedule"))
    if not schedule:
        errs.required("spec.schedule")
    elif "TZ" in schedule:
        errs.invalid("spec.schedule", schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    else:
        msg = _cron_error(schedule)
        if msg:
            errs.invalid("spec.schedule", schedule, msg)
    if spec.get("timeZone") == "":
        errs.invalid("spec.timeZone", "", "timeZone must be nil or non-empty string")
    for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs.nonnegative(child("spec", f), spec.get(f))
    policy = spec.get("concurrencyPolicy") or "Allow"
    if policy not in ("Allow", "Forbid", "Replace"):
        errs.not_supported("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace"))
    jt = _m(spec.get("jobTemplate"))
    validate_template_meta(errs, jt.get("metadata"), "spec.jobTemplate")
    jspec = _m(jt.get("spec"))
    _job_spec(errs, jspec, "spec.jobTemplate.spec")
    if jspec.get("selector") is not None:
        errs.invalid("spec.jobTemplate.spec.selector", go_selector(jspec["selector"]),
                     "`selector` will be auto-generated")
    if jspec.get("manualSelector") is True:
        errs.not_supported("spec.jobTemplate.spec.manualSelector", True, ("nil", "false"))


_Validator = Callable[[Errs, Mapping[str, Any], Mapping[str, Any] | None], None]

WORKLOAD_VALIDATORS: Final[dict[str, _Validator]] = {
    "deployments": _deployments, "replicasets": _replicasets, "daemonsets": _daemonsets,
    "statefulsets": _statefulsets, "jobs": _jobs, "cronjobs": _cronjobs,
}
