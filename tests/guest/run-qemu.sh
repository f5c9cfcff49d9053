#!/bin/sh
# run-qemu.sh: boot the test guest under QEMU with KVM, serial on stdout.
#
#   run-qemu.sh [options] [key=value ...] [-- extra QEMU arguments]
#
#   key=value        guest parameters (seconds= dirty= rate= verify= disk=
#                    disk_mib= disk_loop= hb= smp=), see tests/guest/README.md
#   --guest ELF      the guest (default: $VMHOP_BUILDDIR/tests/guest/guest.elf,
#                    else guest.elf next to this script)
#   --mem SIZE       guest RAM, QEMU syntax (default 1G)
#   --smp N          N vCPUs; also passes smp=N so the guest starts the APs
#                    itself (SeaBIOS leaves them parked under multiboot)
#   --cpu MODEL      QEMU CPU model (default qemu64; -cpu host aborts on kvm-pvm)
#   --disk IMAGE     raw image as a modern virtio-blk-pci device; repeatable
#                    (the guest drives them in this order, up to 4)
#   --disk-ro        attach the disks read-only (readonly=on)
#   --cache MODE     drive cache mode (default none; use writeback on tmpfs)
#   --pvh            boot through QEMU's PVH path instead of multiboot (a copy
#                    of the guest with its multiboot header disabled), to
#                    exercise the entry that `vmhop run` uses
#   --timeout SEC    kill QEMU after SEC seconds (exit status 124)
#   --qemu PATH      QEMU binary (default: $QEMU_SYSTEM_X86_64 or qemu-system-x86_64)
#   --dry-run        print the command instead of running it
#
# Exit status is QEMU's (0 after the guest powers off).  Judge the run by
# the guest's "VERDICT PASS ..." / "VERDICT FAIL ..." line.
# Extra QEMU arguments (after --) serve migration and control, e.g.
#   -- -monitor unix:/tmp/mon,server,nowait -incoming tcp:127.0.0.1:4444
# The first output comes after ~2-6 s on kvm-pvm (SeaBIOS runs emulated).
# With --pvh the guest counts CPUs from SeaBIOS's MP table and starts none.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
guest=
mem=1G
smp=1
cpu=qemu64
disks=0
disk_ro=
cache=none
pvh=
timeout_s=
qemu=${QEMU_SYSTEM_X86_64:-qemu-system-x86_64}
dry=
params=

die() { echo "run-qemu.sh: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] || die "$1 needs an argument"; }

while [ $# -gt 0 ]; do
	case $1 in
	--guest) need "$@"; guest=$2; shift 2 ;;
	--mem) need "$@"; mem=$2; shift 2 ;;
	--smp) need "$@"; smp=$2; shift 2 ;;
	--cpu) need "$@"; cpu=$2; shift 2 ;;
	--disk) need "$@"; disks=$((disks + 1)); eval "disk_$disks=\$2"; shift 2 ;;
	--disk-ro) disk_ro=1; shift ;;
	--cache) need "$@"; cache=$2; shift 2 ;;
	--pvh) pvh=1; shift ;;
	--timeout) need "$@"; timeout_s=$2; shift 2 ;;
	--qemu) need "$@"; qemu=$2; shift 2 ;;
	--dry-run) dry=1; shift ;;
	--help|-h) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; break ;;
	-*) die "unknown option $1 (try --help)" ;;
	*=*) params="${params:+$params }$1"; shift ;;
	*) die "unexpected argument $1 (guest parameters are key=value)" ;;
	esac
done

if [ -z "$guest" ]; then
	if [ -n "${VMHOP_BUILDDIR:-}" ] && [ -f "$VMHOP_BUILDDIR/tests/guest/guest.elf" ]; then
		guest=$VMHOP_BUILDDIR/tests/guest/guest.elf
	else
		guest=$here/guest.elf
	fi
fi
[ -f "$guest" ] || die "guest not found: $guest (build it with make)"

tmp=
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$pvh" ]; then
	# QEMU tries multiboot before PVH: hide the multiboot magic in a copy.
	tmp=$(mktemp -d)
	python3 - "$guest" "$tmp/guest-pvh.elf" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], 'rb').read())
magic = struct.pack('<I', 0x1BADB002)
off = data.find(magic, 0, 8192)
while off >= 0 and off % 4:
    off = data.find(magic, off + 1, 8192)
if off < 0:
    sys.exit('run-qemu.sh: no multiboot header in ' + sys.argv[1])
data[off:off + 4] = b'\0\0\0\0'
open(sys.argv[2], 'wb').write(data)
PY
	guest=$tmp/guest-pvh.elf
fi

[ "$smp" = 1 ] || params="${params:+$params }smp=$smp"
set -- -machine pc,accel=kvm -cpu "$cpu" -m "$mem" -smp "$smp" \
	-nodefaults -no-user-config -display none -serial stdio -no-reboot \
	-kernel "$guest" -append "$params" "$@"
i=1
while [ "$i" -le "$disks" ]; do
	eval "disk=\$disk_$i"
	[ -f "$disk" ] || die "disk image not found: $disk"
	# d0 for the first disk, as before the option was repeatable.
	id=d$((i - 1))
	drive="file=$disk,if=none,id=$id,format=raw,cache=$cache"
	[ -z "$disk_ro" ] || drive="$drive,readonly=on"
	set -- "$@" -drive "$drive" -device virtio-blk-pci,drive=$id,disable-legacy=on
	i=$((i + 1))
done
if [ -n "$timeout_s" ]; then
	set -- timeout -k 5 "$timeout_s" "$qemu" "$@"
else
	set -- "$qemu" "$@"
fi

if [ -n "$dry" ]; then
	printf '%s\n' "$*"
	exit 0
fi
# Not exec: the PVH copy must be removed afterwards.
status=0
"$@" </dev/null || status=$?
exit $status
