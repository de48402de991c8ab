#!/usr/bin/env bash
# Installs Debian's podman, runc and debootstrap for the image tests (tests/deploy/test_images.py):
# this machine kind has no Docker engine and no Docker Hub, so the tests bootstrap a Debian base
# image and build and run the images with podman.
# Idempotent: does nothing when all three are present. Needs root (or passwordless sudo) for
# apt-get; without it, it says so and exits 0, and the image tests skip with a reason (they
# fail instead when CI=true).
set -euo pipefail

if command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 \
  && command -v debootstrap >/dev/null 2>&1; then
  echo "install-podman: podman, runc and debootstrap are present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "install-podman: not root and no passwordless sudo; skipping" >&2
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-podman: apt-get not found; install podman, runc and debootstrap by hand" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends podman runc debootstrap uidmap fuse-overlayfs
podman --version
