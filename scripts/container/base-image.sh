#!/usr/bin/env bash
# A local base image from Debian packages only, for building the Dockerfile where no image
# registry is reachable: localhost/debian:bookworm-py (Debian bookworm minbase with python3,
# venv and pip). Prints its name. Needs root; installs podman, buildah, debootstrap and runc
# from apt when missing. Idempotent: an existing image is reused.
#   podman build --build-arg BASE=$(scripts/container/base-image.sh) -t ctxlog .
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
image=localhost/debian:bookworm-py
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null || ! command -v runc >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah debootstrap runc >/dev/null
fi
if podman image exists "$image"; then echo "$image"; exit 0; fi
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "$image"
