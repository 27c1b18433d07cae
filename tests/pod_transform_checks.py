"""What the scheduler's and the controller manager's pod-transform tests share: building pod
variants from one full pod, and the check that every reader answers the same for the full pod
and the stripped one (`tests/scheduler/test_pod_transform.py`, `tests/controllers/...`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson

Obj = dict[str, Any]


def override(pod: Obj, over: dict[str, Any]) -> Obj:
    """Set `a__b__c=value` paths in pod (None removes the leaf); returns pod."""
    for path, value in over.items():
        *parents, leaf = path.split("__")
        target = pod
        for p in parents:
            target = target.setdefault(p, {})
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return pod


def assert_readers_agree(strip: Callable[[Obj], Obj], describe: Callable[[Obj], Any], pod: Obj,
                         may_not_shrink: bool) -> None:
    """strip leaves its input alone, every reader (`describe`) answers the same for the stripped
    pod, and the stripped pod is smaller (unless `may_not_shrink`: a bare pod)."""
    before = copy.deepcopy(pod)
    stripped = strip(pod)
    assert pod == before, "the transform leaves its input alone"
    assert describe(stripped) == describe(pod)
    assert len(orjson.dumps(stripped)) < len(orjson.dumps(pod)) or may_not_shrink
