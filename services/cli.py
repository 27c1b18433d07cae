"""The `kubenats` command: one subcommand per component, like k3s's single binary.

Each component lives in `services/<name>/main.py` with `add_arguments(parser)` and
`run(args) -> int`; only the chosen component's module is imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMPONENTS = {
    "apiserver": ("services.apiserver.main", "the API server: Kubernetes REST on etcd, changes published on NATS"),
    "scheduler": ("services.scheduler.main", "assigns pending pods to nodes"),
    "controllers": ("services.controllers.main", "the controller manager (replicasets, deployments, ...)"),
    "kubelet": ("services.kubelet.main", "the node agent: runs pods on Docker"),
    "proxy": ("services.proxy.main", "programs Services into kernel NAT rules"),
    "events": ("services.events.main", "tail the cluster's event subjects, one line per change"),
    "init": ("services.up.init", "write a cluster's certificates, kubeconfigs and NATS users (Compose runs it first)"),
    "up": ("services.up.main", "a whole single-host cluster (etcd, nats, all components) as child processes"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="kubenats", description="A Kubernetes-compatible orchestrator on etcd and NATS")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (modname, help_text) in COMPONENTS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            try:
                module = importlib.import_module(modname)
            except ModuleNotFoundError as e:
                if e.name != modname:
                    raise
                print(f"kubenats: the {name} component is not built yet", file=sys.stderr)
                return 2
            module.add_arguments(p)
    args = parser.parse_args(argv)
    assert module is not None
    result: int = module.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
