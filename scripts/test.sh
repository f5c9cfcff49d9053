#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root) or a
# developer's tree: installs what is missing, builds with AddressSanitizer and
# UndefinedBehaviorSanitizer, runs `make check`, then the fuzz smoke run, and
# ends with one line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD

bash scripts/install-deps.sh || exit 1

build=${VMHOP_TEST_BUILDDIR:-$top/build-test}
jobs=$(nproc 2>/dev/null || echo 2)
logdir=$build/test-logs
status=0

step() { printf '\n=== %s\n' "$*"; }

step "configure (--enable-sanitizers) in $build"
# A VPATH build needs an unconfigured source tree.
if [ -f config.status ]; then
	echo "the source tree was configured in place: make distclean first"
	make -s distclean >/dev/null 2>&1 || true
fi
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
	autoreconf -fi >/dev/null || exit 1
fi
mkdir -p "$build" "$logdir"
rm -f "$logdir/extra-results"
(cd "$build" && "$top/configure" -q --enable-sanitizers >/dev/null) || { echo "configure failed"; exit 1; }

step "build"
make -s -C "$build" -j"$jobs" >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

step "make check (unit, guest and end-to-end tests)"
# ASan's leak checker needs ptrace-free /proc access; it works as root here.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
make -C "$build" -j"$jobs" check >"$logdir/make-check.out" 2>&1 || status=1
grep -E '^(PASS|FAIL|XFAIL|XPASS|SKIP|ERROR):' "$logdir/make-check.out"
# make check can also stop without a failed test (a test that cannot be
# built): that must count as a failure in the total too.
if [ $status -ne 0 ] && ! grep -qE '^(FAIL|ERROR|XPASS):' "$logdir/make-check.out"; then
	grep -E '\*\*\*|Stop\.' "$logdir/make-check.out" | head -5
	echo "FAIL: make check stopped before its tests ended"
	echo "FAIL: make-check" >>"$logdir/extra-results"
fi
grep -E '^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR):' "$logdir/make-check.out"

if [ -f tests/fuzz/smoke.sh ]; then
	step "fuzz smoke run (each libFuzzer target ${VMHOP_FUZZ_SECONDS:-15} s)"
	if bash tests/fuzz/smoke.sh "${VMHOP_FUZZ_SECONDS:-15}" >"$logdir/fuzz.out" 2>&1; then
		echo "PASS: fuzz smoke"
		echo "PASS: fuzz-smoke" >>"$logdir/extra-results"
	else
		tail -n 30 "$logdir/fuzz.out"
		echo "FAIL: fuzz smoke"
		echo "FAIL: fuzz-smoke" >>"$logdir/extra-results"
		status=1
	fi
fi

if [ $status -ne 0 ]; then
	step "failed test logs"
	for f in $(find "$build" -name '*.log' ! -name 'test-suite.log' ! -name config.log); do
		trs=${f%.log}.trs
		if [ -f "$trs" ] && grep -qE ':test-result: (FAIL|ERROR|XPASS)' "$trs"; then
			echo "--- $f"
			tail -n 40 "$f"
		fi
	done
fi

step "summary"
python3 scripts/summarize-tests.py "$build" "$logdir/extra-results"
rc=$?
[ $status -ne 0 ] && rc=1
exit $rc
