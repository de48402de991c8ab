#!/usr/bin/env bash
# Builds the CPU images with podman on a machine with no Docker engine and no Docker Hub
# (tests/deploy/test_images.py; recipe in docs/DEPLOY.md): bootstraps a Debian bookworm base
# with Python 3.11 from Debian's packages once, then builds the given Dockerfile on it with
# the host's pip configuration, CA bundle and local wheels mounted (pip inside a build reaches
# the package index the way the host does). Layers are cached by podman, so a rebuild with
# unchanged sources takes seconds.
#   deploy/podman-build.sh DOCKERFILE TAG
set -euo pipefail

DOCKERFILE="$1"
TAG="$2"
WORK="${OSPO_PODMAN_WORK:-/var/tmp/ospo-podman}"
BASE=localhost/ospo-debian-min:bookworm
PYBASE=localhost/ospo-python:3.11-bookworm
mkdir -p "$WORK"
# One build at a time: the base bootstrap and the layer cache are shared.
exec 9>"$WORK/lock"
flock 9

CONF="$WORK/containers.conf"
printf '[containers]\ndefault_ulimits = []\n' > "$CONF"
export CONTAINERS_CONF="$CONF"
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)

clean_rootfs() {
  # A failed debootstrap can leave proc and sys mounted inside the tree.
  if [ -d "$WORK/rootfs" ]; then
    grep -o " $WORK/rootfs[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l || true
    rm -rf "$WORK/rootfs"
  fi
}
if ! "${PODMAN[@]}" image exists "$BASE"; then
  clean_rootfs
  debootstrap --variant=minbase bookworm "$WORK/rootfs" >"$WORK/debootstrap.log" 2>&1
  # What a slim base image leaves out; a later layer could hide but never shrink them.
  rm -rf "$WORK/rootfs"/var/cache/apt/archives/*.deb "$WORK/rootfs"/var/lib/apt/lists/* \
    "$WORK/rootfs"/usr/share/doc/* "$WORK/rootfs"/usr/share/man/* "$WORK/rootfs"/usr/share/locale/* \
    "$WORK/rootfs"/usr/share/info/*
  tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import - "$BASE"
  clean_rootfs
fi
if ! "${PODMAN[@]}" image exists "$PYBASE"; then
  printf 'FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 ca-certificates && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* /usr/share/locale/*\n' "$BASE" \
    > "$WORK/Containerfile.python"
  "${PODMAN[@]}" build --network host -t "$PYBASE" -f "$WORK/Containerfile.python" "$WORK"
fi

# pip inside RUN steps: `podman build --env` does not reach them here; a mounted config does.
PIPCONF="$WORK/pip.conf"
{
  echo "[global]"
  echo "cert = /etc/ssl/certs/ca-certificates.crt"
  if [ -d /opt/wheels ]; then echo "find-links = /opt/wheels"; fi
  if [ -f /etc/xdg/pip/constraints.txt ]; then echo "constraint = /etc/xdg/pip/constraints.txt"; fi
} > "$PIPCONF"
MOUNTS=(-v /etc/ssl/certs:/etc/ssl/certs:ro -v "$PIPCONF:/etc/pip.conf:ro")
if [ -d /opt/wheels ]; then MOUNTS+=(-v /opt/wheels:/opt/wheels:ro); fi
if [ -f /etc/xdg/pip/constraints.txt ]; then
  MOUNTS+=(-v /etc/xdg/pip/constraints.txt:/etc/xdg/pip/constraints.txt:ro)
fi
# With a local CPU torch wheel in /opt/wheels, the public index plus those links resolves
# torch to the CPU build; elsewhere keep the Dockerfile's CPU wheel index.
TORCH_ARGS=()
if ls /opt/wheels/torch-*+cpu-*.whl >/dev/null 2>&1; then
  TORCH_ARGS=(--build-arg TORCH_INDEX_URL=https://pypi.org/simple)
fi

"${PODMAN[@]}" build --network host "${MOUNTS[@]}" "${TORCH_ARGS[@]}" \
  --build-arg PYTHON_IMAGE="$PYBASE" -f "$DOCKERFILE" -t "$TAG" .
"${PODMAN[@]}" image inspect "$TAG" --format '{{.Size}}'
