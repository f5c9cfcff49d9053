# bench: sources and tests are added here
# bench/stream: stream codec throughput against memcpy (make bench; not a test).
bench_stream_bench_stream_SOURCES = bench/stream/bench-stream.c
bench_stream_bench_stream_LDADD = $(VMHOP_LIBS)
# Built on demand only (EXTRA_PROGRAMS has rules, no default build); other
# benchmarks add theirs with +=.
EXTRA_PROGRAMS = bench/stream/bench-stream
CLEANFILES += bench/stream/bench-stream
bench: bench/stream/bench-stream
.PHONY: bench
# bench/boot: process start to the test guest's first heartbeat, vmhop beside
# QEMU on the same image (make bench-boot; not a test). Options for the
# script: make bench-boot BENCH_BOOT_ARGS="--runs 10".
EXTRA_DIST += bench/boot/run.py
bench-boot: vmhop$(EXEEXT) tests/guest/guest.elf
	$(PYTHON3) $(srcdir)/bench/boot/run.py --vmhop $(abs_top_builddir)/vmhop$(EXEEXT) \
		--guest $(abs_top_builddir)/tests/guest/guest.elf $(BENCH_BOOT_ARGS)
.PHONY: bench-boot
