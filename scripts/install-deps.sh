#!/usr/bin/env bash
# Installs everything vmhop builds, tests and benchmarks with, from Debian's
# packages. Idempotent: does nothing when all packages are present.
set -euo pipefail

packages=(
	build-essential autoconf automake pkg-config binutils
	libzstd-dev libssl-dev openssl libuv1-dev librdmacm-dev libibverbs-dev
	libjson-c-dev check python3 clang
	qemu-system-x86 qemu-utils iproute2 busybox-static cpio kmod e2fsprogs
	pacemaker corosync crmsh resource-agents
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
