"""`kubenats apiserver`: command-line flags to a running uvicorn server."""

from __future__ import annotations

import argparse

import uvicorn

from shared.log import setup

from .app import Config, create_app


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="comma-separated etcd client URLs")
    p.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--secure-port", "--port", dest="port", type=int, default=6443)
    p.add_argument("--no-publish", action="store_true", help="do not run the etcd->NATS publisher in this replica")
    p.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    setup("apiserver", args.log_level)
    cfg = Config(
        etcd_servers=[s for s in args.etcd_servers.split(",") if s],
        nats_url=args.nats_url,
        bind_address=args.bind_address,
        port=args.port,
        publish=not args.no_publish,
    )
    uvicorn.run(create_app(cfg), host=cfg.bind_address, port=cfg.port, log_config=None, access_log=False,
                lifespan="on", timeout_graceful_shutdown=5)
    return 0
