"""The controller manager's command line: `--controllers` as Kubernetes parses it, the kubeconfig,
the per-controller worker counts; and the own-writes guard every controller uses."""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
from pathlib import Path

import pytest

from services.controllers import config
from services.controllers.base import OwnWrites
from services.controllers.main import add_arguments, enabled_controllers, workers_from_args

ALL = ["replicaset", "deployment", "garbagecollector", "namespace", "endpoint", "endpointslice", "nodelifecycle",
       "daemonset", "job"]


@pytest.mark.parametrize(("spec", "want"), [
    ("*", ALL),
    ("", []),
    ("*,-garbagecollector", [c for c in ALL if c != "garbagecollector"]),
    ("-garbagecollector,*", [c for c in ALL if c != "garbagecollector"]),
    ("replicaset,deployment", ["replicaset", "deployment"]),
    ("namespace,-namespace", ["namespace"]),  # first match wins
    ("-namespace,namespace,*", [c for c in ALL if c != "namespace"]),
    (" * , -deployment ", [c for c in ALL if c != "deployment"]),
])
def test_enabled_controllers(spec: str, want: list[str]) -> None:
    assert enabled_controllers(spec) == want


@pytest.mark.parametrize("spec", ["*,-nosuchcontroller", "bogus", "-*x"])
def test_unknown_controllers_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="not in the list of known controllers"):
        enabled_controllers(spec)


def test_cli_rejects_unknown_controllers() -> None:
    r = subprocess.run([sys.executable, "-m", "services.cli", "controllers", "--controllers=*,-bogus"],
                       cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "'bogus' is not in the list of known controllers" in r.stderr


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_worker_flags() -> None:
    assert workers_from_args(parse()) == {"replicaset": 5, "deployment": 5, "garbagecollector": 20, "namespace": 10,
                                          "endpoint": 5, "endpointslice": 5, "daemonset": 2, "job": 5}
    assert workers_from_args(parse("--concurrent-workers", "2", "--concurrent-gc-syncs", "7")) == {
        "replicaset": 2, "deployment": 2, "garbagecollector": 7, "namespace": 2, "endpoint": 2, "endpointslice": 2,
        "daemonset": 2, "job": 2}


def test_kubeconfig(tmp_path: Path) -> None:
    assert config.load("", "").server == config.DEFAULT_MASTER
    assert config.load("", "http://x:1").server == "http://x:1"
    ca = base64.b64encode(b"CA PEM").decode()
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
current-context: b
clusters:
- name: one
  cluster: {{server: "https://one:6443"}}
- name: two
  cluster: {{server: "https://two:6443", certificate-authority-data: {ca}}}
contexts:
- name: a
  context: {{cluster: one, user: u}}
- name: b
  context: {{cluster: two, user: u}}
users:
- name: u
  user: {{token: secret}}
""")
    cfg = config.load(str(path))
    assert (cfg.server, cfg.token, cfg.cert) == ("https://two:6443", "secret", None)
    assert cfg.ca_file is not None and Path(cfg.ca_file).read_bytes() == b"CA PEM"
    assert config.load(str(path), "http://override:1").server == "http://override:1"
    path.write_text("current-context: missing\ncontexts: []\n")
    with pytest.raises(config.ConfigError):
        config.load(str(path))


def test_own_writes() -> None:
    clock = [0.0]
    w = OwnWrites(ttl=10, clock=lambda: clock[0])
    assert not w.stale("k", {"metadata": {"resourceVersion": "1"}})
    w.wrote("k", {"metadata": {"resourceVersion": "7"}})
    assert w.stale("k", {"metadata": {"resourceVersion": "6"}})
    assert w.stale("k", None)  # created by us, not cached yet
    assert not w.stale("k", {"metadata": {"resourceVersion": "7"}})  # caught up: forgotten
    assert not w.stale("k", {"metadata": {"resourceVersion": "6"}})
    w.wrote("k", {"metadata": {"resourceVersion": "9"}})
    clock[0] = 11
    assert not w.stale("k", None)  # expired: never wait forever
