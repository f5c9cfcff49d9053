#!/bin/sh
# qemu-boot.sh: boot the test guest under QEMU/KVM and check its verdicts:
# two CPUs with disk=rw (+disk_loop) then check-disk.py on the image;
# disk=ro on the same image (the write must be refused, the image must not
# change); the PVH entry through QEMU's PVH loader; a dirty set too big for
# RAM.  Skipped (77) without QEMU or /dev/kvm.  Takes ~15 s.
set -u

src=${VMHOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${VMHOP_BUILDDIR:-$src}
qemu=${QEMU_SYSTEM_X86_64:-qemu-system-x86_64}
guest=$build/tests/guest/guest.elf
run="sh $src/tests/guest/run-qemu.sh --guest $guest --qemu $qemu --timeout 120"

command -v "$qemu" >/dev/null 2>&1 || { echo "SKIP: $qemu not found"; exit 77; }
[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "SKIP: /dev/kvm not usable"; exit 77; }
[ -f "$guest" ] || { echo "FAIL: $guest not built"; exit 99; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
img=$tmp/disk.img
truncate -s 16M "$img"
failed=0

# boot NAME EXPECT [run-qemu args...]: EXPECT is a regex the verdict must match.
boot() {
	name=$1 expect=$2
	shift 2
	# shellcheck disable=SC2086
	$run "$@" >"$tmp/$name.log" 2>&1
	status=$?
	verdict=$(grep -a '^VERDICT' "$tmp/$name.log" | tail -n 1)
	if [ $status -eq 0 ] && printf '%s\n' "$verdict" | grep -Eq "$expect"; then
		echo "ok   $name: $verdict"
	else
		echo "FAIL $name (qemu exit $status): ${verdict:-no verdict}"
		sed 's/^/  | /' "$tmp/$name.log" | grep -v '| HB ' | tail -n 20
		failed=1
	fi
}

boot rw '^VERDICT PASS cpus=2 rounds=[1-9][0-9]* pages_verified=[1-9][0-9]* disk=ok$' \
	--smp 2 --disk "$img" --cache writeback seconds=2 dirty=32M rate=64M disk=rw disk_mib=4 disk_loop=1
grep -aq '^DISK ok mib=4 gen=1$' "$tmp/rw.log" || { echo "FAIL rw: no 'DISK ok mib=4 gen=1'"; failed=1; }
grep -aq '^HB seq=1 tsc=[0-9]* t_ms=[0-9]*$' "$tmp/rw.log" || { echo "FAIL rw: no heartbeat"; failed=1; }
python3 "$src/tests/guest/check-disk.py" "$img" --mib 4 || failed=1

before=$(cksum <"$img")
boot ro '^VERDICT PASS cpus=1 rounds=0 pages_verified=0 disk=ro-refused$' \
	--disk "$img" --disk-ro --cache writeback seconds=1 disk=ro disk_mib=4
grep -aq '^DISK readonly write refused$' "$tmp/ro.log" || { echo "FAIL ro: write not refused"; failed=1; }
[ "$before" = "$(cksum <"$img")" ] || { echo "FAIL ro: the image changed"; failed=1; }

boot pvh '^VERDICT PASS cpus=1 rounds=[1-9][0-9]* ' --pvh seconds=1 dirty=16M verify=1
grep -aq '^VMHOP-GUEST start cpus=1 mem_mib=[0-9]* tsc_khz=[1-9][0-9]* boot=pvh$' "$tmp/pvh.log" ||
	{ echo "FAIL pvh: no 'boot=pvh' start line"; failed=1; }

boot too-big '^VERDICT FAIL mem: ' --mem 256M seconds=1 dirty=1G

exit $failed
