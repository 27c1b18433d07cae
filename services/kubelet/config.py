"""The kubelet's settings and the well-known names it shares with the rest of Kubernetes.

Why this exists: the same `Kubelet` runs as a real node (one per process, on Docker) and as one of
a thousand hollow nodes in one process, from flags (`main.py`) or from tests. Every tunable lives
in one frozen dataclass so each piece (pod workers, PLEG, node agent, static pods) reads the same
values, and tests can shrink the slow upstream defaults (10 s CrashLoopBackOff base, 10 s lease)
without touching code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KUBELET_VERSION = "v1.31.0-kubenats"
DEFAULT_PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
NODE_LEASE_NAMESPACE = "kube-node-lease"

# Annotations of static and mirror pods (pkg/kubelet/types/pod_update.go).
CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"
CONFIG_HASH_ANNOTATION = "kubernetes.io/config.hash"
CONFIG_MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CONFIG_SEEN_ANNOTATION = "kubernetes.io/config.seen"
SOURCE_FILE = "file"
SOURCE_API = "api"


@dataclass(frozen=True)
class KubeletConfig:
    node_name: str
    root_dir: Path = Path("/var/lib/kubenats/kubelet")
    pause_image: str = DEFAULT_PAUSE_IMAGE
    pod_manifest_path: str = ""
    node_ip: str = ""  # empty: the machine's primary IPv4 (hollow: a loopback address)
    port: int = 10250  # status.daemonEndpoints.kubeletEndpoint.Port
    hollow: bool = False
    hollow_pod_cidr: str = ""  # hollow: the process-wide loopback pool of pod IPs ("": 127.64.0.0/10)
    # capacity (empty: from the machine; hollow nodes always use these)
    cpu: str = ""
    memory: str = ""
    max_pods: int = 110
    node_labels: dict[str, str] = field(default_factory=dict)
    # restart and pull back-off (upstream: 10 s doubling to 5 min, reset after 2 x max without failing)
    crash_backoff_base: float = 10.0
    crash_backoff_max: float = 300.0
    image_backoff_base: float = 10.0
    image_backoff_max: float = 300.0
    # loops
    pleg_period: float = 1.0
    sync_frequency: float = 60.0  # periodic resync of every pod worker
    housekeeping_period: float = 2.0
    file_check_frequency: float = 2.0
    pod_resync_period: float = 1800.0  # the pod informer's safety-net relist (gaps relist at once)
    node_lease_renew_interval: float = 10.0
    node_lease_duration: int = 40
    node_lease_offset: float = 0.0  # delay before the first renewal (spreads many hollow nodes)
    node_status_update_frequency: float = 10.0
    node_status_report_frequency: float = 60.0
    api_retry_max: float = 10.0  # cap of the back-off between API retries while it is down

    @property
    def pods_dir(self) -> Path:
        return self.root_dir / "pods"
