# bench: sources and tests are added here
# bench/stream: stream codec throughput against memcpy (make bench; not a test).
bench_stream_bench_stream_SOURCES = bench/stream/bench-stream.c
bench_stream_bench_stream_LDADD = $(VMHOP_LIBS)
# Built on demand only (EXTRA_PROGRAMS has rules, no default build); other
# benchmarks add theirs with +=.
# bench/transport/bench-channel: the channel layer alone, tcp: beside tls:.
bench_transport_bench_channel_SOURCES = bench/transport/bench-channel.c
bench_transport_bench_channel_LDADD = $(VMHOP_LIBS)
EXTRA_PROGRAMS = bench/stream/bench-stream bench/transport/bench-channel
CLEANFILES += bench/stream/bench-stream bench/transport/bench-channel
bench: bench/stream/bench-stream bench/transport/bench-channel
.PHONY: bench
# bench/boot: process start to the test guest's first heartbeat, vmhop beside
# QEMU on the same image (make bench-boot; not a test). Options for the
# script: make bench-boot BENCH_BOOT_ARGS="--runs 10".
EXTRA_DIST += bench/boot/run.py
bench-boot: vmhop$(EXEEXT) tests/guest/guest.elf
	$(PYTHON3) $(srcdir)/bench/boot/run.py --vmhop $(abs_top_builddir)/vmhop$(EXEEXT) \
		--guest $(abs_top_builddir)/tests/guest/guest.elf $(BENCH_BOOT_ARGS)
.PHONY: bench-boot
# bench/migrate: live migration over loopback TCP, vmhop migrate-send/recv
# beside QEMU's migrate on the same guest, three scenarios (make bench-migrate;
# not a test). Options: make bench-migrate BENCH_MIGRATE_ARGS="--scenario dirty".
EXTRA_DIST += bench/migrate/run.py
bench-migrate: vmhop$(EXEEXT) tests/guest/guest.elf
	$(PYTHON3) $(srcdir)/bench/migrate/run.py --vmhop $(abs_top_builddir)/vmhop$(EXEEXT) \
		--guest $(abs_top_builddir)/tests/guest/guest.elf $(BENCH_MIGRATE_ARGS)
.PHONY: bench-migrate
# bench/compat: an offline compat-check of a typical VM on the recorded
# fixtures, in-process and as the whole command, against the 50 ms target
# (make bench-compat; not a test). BENCH_COMPAT_ITERS sets the iterations.
bench_compat_bench_compat_SOURCES = bench/compat/bench-compat.c
bench_compat_bench_compat_LDADD = $(VMHOP_LIBS)
EXTRA_PROGRAMS += bench/compat/bench-compat
CLEANFILES += bench/compat/bench-compat
BENCH_COMPAT_ITERS = 2000
bench-compat: bench/compat/bench-compat vmhop$(EXEEXT)
	bench/compat/bench-compat $(abs_top_srcdir)/tests/compat/fixtures \
		$(abs_top_builddir)/vmhop$(EXEEXT) $(BENCH_COMPAT_ITERS)
.PHONY: bench-compat
EXTRA_DIST += bench/compat/README.md
# bench/snapshot: checkpoint and restore, vmhop snapshot create/restore beside
# QEMU's migrate to a file and -incoming from it, on the same guest (make
# bench-snapshot; not a test). Options: make bench-snapshot
# BENCH_SNAPSHOT_ARGS="--scenario idle --runs 5". bench/lib/vmbench.py holds
# what the Python benchmarks share (bench-migrate uses it too).
EXTRA_DIST += bench/snapshot/run.py bench/lib/vmbench.py
bench-snapshot: vmhop$(EXEEXT) tests/guest/guest.elf
	$(PYTHON3) $(srcdir)/bench/snapshot/run.py --vmhop $(abs_top_builddir)/vmhop$(EXEEXT) \
		--guest $(abs_top_builddir)/tests/guest/guest.elf $(BENCH_SNAPSHOT_ARGS)
.PHONY: bench-snapshot
# bench/diskcopy: live migration with a disk copy (1 GiB image, 256 MiB of
# data, the guest writing 10 MiB/s), vmhop migrate-send --copy-disk beside
# QEMU's drive-mirror to an NBD export on the destination, and an O_DIRECT
# read of the image as the throughput reference (make bench-diskcopy; not a
# test). Options: make bench-diskcopy BENCH_DISKCOPY_ARGS="--runs 5".
EXTRA_DIST += bench/diskcopy/run.py
bench-diskcopy: vmhop$(EXEEXT) tests/guest/guest.elf
	$(PYTHON3) $(srcdir)/bench/diskcopy/run.py --vmhop $(abs_top_builddir)/vmhop$(EXEEXT) \
		--guest $(abs_top_builddir)/tests/guest/guest.elf $(BENCH_DISKCOPY_ARGS)
.PHONY: bench-diskcopy
# bench/transport: bench-migrate's idle and dirty runs (and a bulk one) over
# vmhop's tcp:, tls: and 2/4 channels beside QEMU's tcp, TLS (tls-creds-x509)
# and multifd, with throughput ratios (make bench-transport; not a test). It
# makes a test CA with contrib/make-test-ca.sh. Options: make bench-transport
# BENCH_TRANSPORT_ARGS="--scenario bulk --runs 5".
EXTRA_DIST += bench/transport/run.py
# bench/transport/threads.py: each thread's CPU over one bulk migration, tcp:
# beside tls: (run directly, see its --help).
EXTRA_DIST += bench/transport/threads.py
bench-transport: vmhop$(EXEEXT) tests/guest/guest.elf
	$(PYTHON3) $(srcdir)/bench/transport/run.py --vmhop $(abs_top_builddir)/vmhop$(EXEEXT) \
		--guest $(abs_top_builddir)/tests/guest/guest.elf $(BENCH_TRANSPORT_ARGS)
.PHONY: bench-transport
