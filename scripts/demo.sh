#!/usr/bin/env bash
# The main job: install what is missing, build vmhop and its test guest, boot
# the guest (2 vCPUs, 1 GiB, two cache=none disks it keeps rewriting, memory
# dirtied and verified by the guest itself) under `vmhop run`, live-migrate it
# over loopback TCP to a second VMM process started with `vmhop migrate-recv`,
# one disk staying on shared storage and the other copied during the move,
# show that it keeps running there (heartbeats continue with the next sequence
# number), then shut it down on the destination and show its verdict and both
# disks checked from the host. Exits 0 only if all of that
# worked. Safe to run again; every process it starts is stopped when it ends.
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

vmhop=$build/vmhop
guest=$build/tests/guest/guest.elf
work=$(mktemp -d /tmp/vmhop-demo.XXXXXX)
pids=()

# Stops what this script started (by pid, nothing else), then removes its
# files. A VM left paused by an unconfirmed migration ends with SIGTERM too.
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

fail() {
	echo "demo: FAILED: $*" >&2
	exit 1
}

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
	local t=$1
	shift
	for _ in $(seq $((t * 20))); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

# wait_exit PID SECONDS: the process's exit status, or 124 when it is still
# running after SECONDS (it is left to the cleanup then).
wait_exit() {
	local rc=0
	wait_for "$2" eval "! kill -0 $1 2>/dev/null" || return 124
	wait "$1" || rc=$?
	return $rc
}

hb_count() {
	local n
	n=$(grep -c '^HB seq=' "$1" 2>/dev/null) || true
	echo "${n:-0}"
}

src_sock=$work/src.sock
dst_sock=$work/dst.sock
src_console=$work/src.console
dst_console=$work/dst.console
truncate -s 64M "$work/shared.img"
truncate -s 256M "$work/data.img"
mkdir "$work/dst-disks"
cmdline="seconds=0 dirty=64M rate=50M verify=1 disk=rw disk_mib=8 disk_loop=1 disk_rate=4M hb=200"

echo "== source: booting the test guest: 2 vCPUs, 1 GiB, two cache=none disks:"
echo "   'shared' (64 MiB, on storage both VMM processes see) and 'data' (256 MiB,"
echo "   to be copied with the VM); the guest rewrites 8 MiB on each, 4 MiB/s"
echo "   guest workload: $cmdline"
"$vmhop" run --name demo --kernel "$guest" --cpus 2 --memory 1G \
	--disk "$work/shared.img,id=shared,cache=none" --disk "$work/data.img,id=data,cache=none" \
	--serial "file:$src_console" --control "$src_sock" --cmdline "$cmdline" 2>"$work/src.err" &
src=$!
pids+=("$src")
wait_for 10 test -S "$src_sock" || { cat "$work/src.err" >&2; fail "the source VM did not start"; }
wait_for 30 eval '[ "$(hb_count "$src_console")" -ge 10 ]' ||
	{ cat "$work/src.err" "$src_console" >&2; fail "the guest did not start its heartbeats"; }
echo "== source console (first lines):"
sed -n '1,6p' "$src_console" | sed 's/^/   src| /'
echo "== source query-status:"
"$vmhop" ctl --control "$src_sock" query-status | sed 's/^/   /'

echo "== destination: vmhop migrate-recv --listen tcp:127.0.0.1:0 --disk-dir DST-DISKS"
"$vmhop" migrate-recv --listen tcp:127.0.0.1:0 --control "$dst_sock" \
	--serial "file:$dst_console" --disk-dir "$work/dst-disks" 2>"$work/recv.err" &
dst=$!
pids+=("$dst")
port_of() { sed -n 's/^vmhop migrate-recv: listening on tcp:127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$work/recv.err"; }
wait_for 10 eval '[ -n "$(port_of)" ]' || { cat "$work/recv.err" >&2; fail "migrate-recv did not start listening"; }
port=$(port_of)
sed 's/^/   /' "$work/recv.err"

# The link is capped at 100 MiB/s so that the pre-copy takes a few rounds to
# watch; uncapped, this guest moves over loopback in about half a second.
# The progress line goes to standard error (one line per phase and round, or
# a line updated in place on a terminal); the summary and the JSON object to
# standard output.
echo "== live migration: vmhop migrate-send --control SRC --to tcp:127.0.0.1:$port --max-bandwidth 100M"
echo "   --copy-disk data --verify-disks"
send_rc=0
"$vmhop" migrate-send --control "$src_sock" --to "tcp:127.0.0.1:$port" --max-bandwidth 100M \
	--copy-disk data --verify-disks --timeout 120 --json 2>&1 >"$work/send.out" || send_rc=$?
grep -v '^{' "$work/send.out" | sed 's/^/   /' || true
echo "   JSON summary: $(tail -n 1 "$work/send.out")"
[ "$send_rc" -eq 0 ] || fail "migrate-send exited with status $send_rc"
status=$(tail -n 1 "$work/send.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
[ "$status" = completed ] || fail "the migration ended with status $status"

src_rc=0
wait_exit "$src" 10 || src_rc=$?
echo "== the source VM process exited with status $src_rc (the guest left it)"
[ "$src_rc" -eq 0 ] || { cat "$work/src.err" >&2; fail "the source process exited with $src_rc"; }

# A few heartbeats from the destination, then: the guest's console is one
# stream across the move (a line it was printing when it stopped on the
# source is finished on the destination), and its heartbeats in it are
# numbered 1, 2, 3, ... with no gap or repeat.
wait_for 20 eval '[ "$(hb_count "$dst_console")" -ge 5 ]' ||
	{ cat "$work/recv.err" "$dst_console" >&2; fail "no heartbeats on the destination"; }
echo "== the guest's last console lines on the source, then its first on the destination:"
tail -n 3 "$src_console" | sed 's/^/   src| /'
[ -z "$(tail -c 1 "$src_console")" ] || echo "   (the move came in the middle of that line)"
head -n 3 "$dst_console" | sed 's/^/   dst| /'
python3 - "$src_console" "$dst_console" <<'EOF_PY' || fail "the heartbeats do not continue consecutively"
import re, sys
src, dst = (open(p).read() for p in sys.argv[1:3])
def seqs(text):
    return [int(m.group(1)) for m in re.finditer(r"^HB seq=(\d+) tsc=\d+ t_ms=\d+$", text, re.M)]
whole = seqs(src + dst)
# The destination's part: heartbeat lines that end there.
cut = src.count("\n")
after = seqs("\n".join((src + dst).split("\n")[cut:]))
ok = bool(whole) and bool(after) and whole == list(range(1, len(whole) + 1))
last_src = whole[len(whole) - len(after) - 1] if len(whole) > len(after) else None
print(f"   heartbeats: seq=1..{last_src} on the source, seq={after[0] if after else '?'}.."
      f"{after[-1] if after else '?'} on the destination: "
      f"{'consecutive, no gap or repeat' if ok else 'NOT consecutive'}")
sys.exit(0 if ok else 1)
EOF_PY
echo "== destination query-status:"
"$vmhop" ctl --control "$dst_sock" query-status | sed 's/^/   /'

echo "== asking the guest to shut down, on the destination"
"$vmhop" ctl --control "$dst_sock" shutdown >/dev/null
dst_rc=0
wait_exit "$dst" 60 || dst_rc=$?
sed -n '/^FINISH/,$p' "$dst_console" | sed 's/^/   dst| /'
echo "== vmhop migrate-recv exited with status $dst_rc"
verdict=$(grep '^VERDICT' "$dst_console" || true)
[ "$dst_rc" -eq 0 ] || { cat "$work/recv.err" >&2; fail "migrate-recv exited with status $dst_rc"; }
case $verdict in
"VERDICT PASS"*) ;;
*) fail "the guest's verdict: ${verdict:-none}" ;;
esac
echo "== the disks, checked from the host: the shared image, and the copy in DST-DISKS"
python3 tests/guest/check-disk.py "$work/shared.img" --mib 8 --disk 0 | sed 's/^/   /' ||
	fail "the shared disk's pattern is wrong"
python3 tests/guest/check-disk.py "$work/dst-disks/data.img" --mib 8 --disk 1 | sed 's/^/   /' ||
	fail "the copied disk's pattern is wrong"
echo "   the copy: $(du -h --apparent-size "$work/dst-disks/data.img" | cut -f1) long, $(du -h "$work/dst-disks/data.img" | cut -f1) allocated (sparse)"
echo "== demo: the guest moved while running and verified PASS on the destination"
