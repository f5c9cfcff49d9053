#!/bin/sh
# tests/fuzz/smoke.sh [SECONDS]: builds the libFuzzer targets with clang in a
# separate build directory and runs each one for SECONDS (default 60), with
# a malloc limit just above the stream's allocation cap. Fails on any crash,
# leak, sanitizer report or over-sized allocation; prints the executions
# reached per target. Longer runs: FUZZ_BUILD_DIR=/tmp/fz tests/fuzz/smoke.sh
# 3600 (the build dir is reused when it exists; new inputs stay in
# $FUZZ_BUILD_DIR/corpus/TARGET, the committed seeds are never written).
set -eu
secs=${1:-60}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/vmhop-fuzz.XXXXXX")}
targets="fuzz-stream fuzz-section fuzz-mem fuzz-release fuzz-mig-frame"
jobs=$(nproc 2>/dev/null || echo 2)

command -v clang >/dev/null || { echo "smoke.sh: clang not found (apt-get install clang)" >&2; exit 1; }
mkdir -p "$build"
if [ ! -x "$build/tree/config.status" ]; then
	# A private copy of the tree: the source tree may itself be configured,
	# which rules out a VPATH build from it.
	mkdir -p "$build/tree"
	if [ -d "$src/.git" ]; then
		(cd "$src" && git ls-files -co --exclude-standard) |
			grep -v -E '\.(o|a)$' | (cd "$src" && tar -cf - -T -) | tar -xf - -C "$build/tree"
	else
		(cd "$src" && tar -cf - --exclude='*.o' --exclude='*.a' --exclude=.deps .) | tar -xf - -C "$build/tree"
	fi
	(cd "$build/tree" && autoreconf -fi >/dev/null 2>&1 &&
		./configure -q --enable-fuzzers CC=clang >"$build/configure.log" 2>&1) ||
		{ echo "smoke.sh: configure failed, see $build/configure.log" >&2; exit 1; }
fi
(cd "$build/tree" && make -j"$jobs" $(for t in $targets; do printf 'tests/fuzz/%s ' "$t"; done) >"$build/make.log" 2>&1) ||
	{ tail -30 "$build/make.log" >&2; echo "smoke.sh: build failed" >&2; exit 1; }

status=0
for t in $targets; do
	seeds="$src/tests/fuzz/corpus/${t#fuzz-}"
	work="$build/corpus/${t#fuzz-}"
	mkdir -p "$work"
	log="$build/$t.log"
	if "$build/tree/tests/fuzz/$t" -max_total_time="$secs" -timeout=10 \
		-malloc_limit_mb=80 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/$t-" "$work" "$seeds" >"$log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
		echo "$t: ok, ${execs:-?} executions in ${secs}s, $cov"
	else
		echo "$t: FAILED (log: $log)"
		grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5
		status=1
	fi
done
exit $status
