#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run the checks and the suite.
#   scripts/test.sh            full run: lint, types, import contracts, pytest
#   scripts/test.sh -k watch   extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v nats-server >/dev/null || need_apt+=(nats-server)
command -v dockerd >/dev/null || need_apt+=(docker.io)
[[ -x /bin/busybox ]] || need_apt+=(busybox-static)
command -v nft >/dev/null || need_apt+=(nftables)
command -v conntrack >/dev/null || need_apt+=(conntrack)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v ss >/dev/null || need_apt+=(iproute2)
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's packages may start their own daemons; tests start their own on free ports.
for svc in etcd nats-server; do (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true; done

# A real Docker engine for the kubelet and proxy tests (no registry: tests build local images).
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  (dockerd >/var/log/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import importlib.metadata as m; m.version('kubenats')" 2>/dev/null \
   || [[ pyproject.toml -nt .venv/.installed ]]; then
  log "pip install -e .[test]"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi

log "ruff"
.venv/bin/ruff check services shared tests bench tools
log "mypy --strict services shared"
.venv/bin/mypy --strict services shared
log "import-linter"
.venv/bin/lint-imports
log "models up to date"
.venv/bin/python tools/gen_models.py --check

log "pytest"
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then echo "pytest collected no tests"; fi
exit $rc
