"""The apiserver's configuration, and what both of its kinds of process build from it.

Why this module exists: the publisher process (`publishproc`) needs the store and the index
backfill but none of the HTTP stack; keeping them here lets it start without importing FastAPI,
uvicorn and the routes (about 40 MiB of RSS per process).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from shared.bus import BusOptions
from shared.log import event
from shared.pki import SecretBox

from .allocator import DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR
from .encryption import EncryptingStore
from .objects import Objects
from .storage import Store

log = logging.getLogger("kubenats.apiserver")


@dataclass
class Config:
    etcd_servers: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    nats_url: str = "nats://127.0.0.1:4222"
    bind_address: str = "127.0.0.1"
    port: int = 6443
    publish: bool = True
    service_cluster_ip_range: str = DEFAULT_SERVICE_CIDR
    service_node_port_range: str = DEFAULT_NODE_PORT_RANGE
    bus_options: BusOptions = field(default_factory=BusOptions)
    token_auth_file: str = ""
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    kubelet_ssl: ssl.SSLContext | None = None  # client cert + CA for the kubelets' HTTPS port
    etcd_ca: str | None = None
    etcd_cert: tuple[str, str] | None = None  # client certificate and key for etcd
    secret_box: SecretBox | None = None  # encrypt Secrets at rest
    build_indexes: bool = True  # backfill the pods-by-node index if missing (worker 0 of `--workers N`)


def make_store(cfg: Config) -> Store:
    """The etcd store of `cfg`: client certificates when given, Secrets sealed when a key is."""
    tls: dict[str, Any] = {}
    if cfg.etcd_ca or cfg.etcd_cert:
        tls = {"ca_file": cfg.etcd_ca, "cert_file": cfg.etcd_cert[0] if cfg.etcd_cert else None,
               "key_file": cfg.etcd_cert[1] if cfg.etcd_cert else None}
    if cfg.secret_box is not None:
        return EncryptingStore(cfg.etcd_servers, cfg.secret_box, **tls)
    return Store(cfg.etcd_servers, **tls)



async def build_node_index(objects: Objects) -> None:
    """Backfill the pods-by-node index of a cluster written before it existed, retrying on errors;
    lists scan until it is done, and writes keep the index from the start."""
    delay = 0.5
    while True:
        try:
            await objects.backfill_node_index()
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            event(log, "pod_index_backfill_retry", logging.WARNING, error=f"{type(e).__name__}: {e}", retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
