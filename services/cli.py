"""The `kubenats` command: one subcommand per component, like k3s's single binary."""

from __future__ import annotations

import argparse
import importlib
import sys

COMPONENTS = {
    "apiserver": "services.apiserver.main",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubenats", description="A Kubernetes-compatible orchestrator on etcd and NATS")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, modname in COMPONENTS.items():
        mod = importlib.import_module(modname)
        modules[name] = mod
        p = sub.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0])
        mod.add_arguments(p)
    args = parser.parse_args(argv)
    result: int = modules[args.command].run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
