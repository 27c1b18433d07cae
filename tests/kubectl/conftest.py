"""Fixtures that drive the real kubectl binary against the session's apiserver.

`kubectl(*args, input=None)` runs `kubectl --kubeconfig <cluster> --cache-dir <tmp>` with HOME
pointed at a temporary folder (no discovery or OpenAPI cache leaks in from, or out to, the
user's ~/.kube), a 60 s timeout on every call, and returns the CompletedProcess (text mode)
for the test to check. `kns` is a fresh namespace per test; `parse_table` reads kubectl's
column-aligned output back into dicts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from tests.servers import Cluster

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
TIMEOUT = 60


class Kubectl(Protocol):
    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
                 timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture(scope="session")
def kubectl_env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("kubectl-home")
    kubeconfig = cluster.kubeconfig()
    return {**{k: v for k, v in os.environ.items() if not k.startswith("KUBE")}, "HOME": str(home),
            "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(home / "cache")}


@pytest.fixture(scope="session")
def kubectl(kubectl_env: dict[str, str]) -> Kubectl:
    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        argv = [KUBECTL, "--kubeconfig", kubectl_env["KUBECONFIG"], "--cache-dir", kubectl_env["KUBECACHEDIR"], *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env={**kubectl_env, **(env or {})})
    return run


@pytest.fixture(scope="session")
def http(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(**cluster.admin_kwargs(), timeout=30) as c:
        yield c


@pytest.fixture
def kns(http: httpx.Client) -> str:
    name = "k-" + uuid.uuid4().hex[:10]
    r = http.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return name


def parse_table(text: str) -> list[dict[str, str]]:
    """kubectl's human-readable table: columns start where their header starts."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[max(i - 2, 0):i] == "  ")]
    names = [header[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for ln in lines[1:]:
        cells = [ln[s:e].strip() if e is not None else ln[s:].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"kubectl failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
