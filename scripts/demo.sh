#!/usr/bin/env bash
# The main job: install what is missing, build vmhop and its test guest, then
# boot the guest with 2 vCPUs and a cache=none disk, show its console, and
# shut it down through the control socket. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
build=${VMHOP_DEMO_BUILDDIR:-$top/build-demo}

bash scripts/install-deps.sh
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
	autoreconf -fi >/dev/null
fi
mkdir -p "$build"
[ -f "$build/Makefile" ] || (cd "$build" && "$top/configure" -q >/dev/null)
make -s -C "$build" -j"$(nproc)" >/dev/null

if [ ! -e /dev/kvm ]; then
	echo "demo: /dev/kvm is absent: the demo needs KVM" >&2
	exit 1
fi

work=$(mktemp -d /tmp/vmhop-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
truncate -s 64M "$work/disk.img"
sock=$work/vm.sock

echo "== booting the test guest: 2 vCPUs, 1 GiB, a 64 MiB cache=none disk"
"$build/vmhop" run --name demo --kernel "$build/tests/guest/guest.elf" \
	--cpus 2 --memory 1G --disk "$work/disk.img,id=data,cache=none" \
	--control "$sock" --cmdline "seconds=0 dirty=128M rate=200M disk=rw disk_mib=8 hb=500" &
vmm=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
sleep 3
echo "== query-status:"
"$build/vmhop" ctl --control "$sock" query-status
echo "== asking the guest to shut down"
"$build/vmhop" ctl --control "$sock" shutdown >/dev/null
wait $vmm
rc=$?
echo "== vmhop run exited with status $rc"
python3 tests/guest/check-disk.py "$work/disk.img" --mib 8
exit $rc
