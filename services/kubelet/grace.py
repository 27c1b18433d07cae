"""How long a container gets between SIGTERM and SIGKILL.

Why this exists: the answer depends on who asks (a deletion's `deletionGracePeriodSeconds`, the
pod's `terminationGracePeriodSeconds`, or, for an orphan nobody describes any more, the grace the
container was labelled with when it was created), and both the pod worker and the sync need it;
0 is a valid grace period and must never fall back to a default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.kubelet.runtime_types import ContainerStatus


def grace_of(pod: dict[str, Any] | None, containers: Sequence[ContainerStatus]) -> int:
    """Seconds between SIGTERM and SIGKILL: the deletion's grace, else the pod's, else the labels'."""
    if pod is not None:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if meta.get("deletionGracePeriodSeconds") is not None:
            return max(0, int(meta["deletionGracePeriodSeconds"]))
        if spec.get("terminationGracePeriodSeconds") is not None:
            return max(0, int(spec["terminationGracePeriodSeconds"]))
        return 30
    graces = [c.termination_grace_seconds for c in containers if c.termination_grace_seconds is not None]
    return max(graces) if graces else 2
