# tests/unit/harness.mk: KVM tests in the style of Linux's KVM selftests
# (guest code is C in the test binary, see tests/unit/kvm-harness.h) and the
# dirty-log bitmap helpers.

# Guest code runs inside the test VM, which has no sanitizer runtime, no libc
# and no TLS: it is compiled apart, without instrumentation. GCC would also
# turn plain loops into memset/memcpy calls into libc, hence the last flag.
# (A CFLAGS given on the make command line comes after these and can undo
# them; --enable-sanitizers does not.)
KVM_GUEST_CFLAGS = -fno-sanitize=all -fno-stack-protector -fno-tree-loop-distribute-patterns

# A library only to get per-file flags; each test links the guest objects it
# names. noinst, not check_: Makefile.am has no check_LIBRARIES to add to.
noinst_LIBRARIES += tests/unit/libkvm-guest.a
tests_unit_libkvm_guest_a_SOURCES = \
	tests/unit/test-kvm-harness-guest.c \
	tests/unit/test-kvm-dirty-log-guest.c
tests_unit_libkvm_guest_a_CFLAGS = $(AM_CFLAGS) $(KVM_GUEST_CFLAGS)

KVM_HARNESS_SOURCES = tests/unit/kvm-harness.c tests/unit/kvm-harness.h
KVM_TEST_LDADD = tests/unit/libkvm-guest.a $(VMHOP_LIBS) $(CHECK_LIBS)

check_PROGRAMS += tests/unit/test-kvm-harness
tests_unit_test_kvm_harness_SOURCES = tests/unit/test-kvm-harness.c $(KVM_HARNESS_SOURCES)
tests_unit_test_kvm_harness_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_kvm_harness_LDADD = $(KVM_TEST_LDADD)

check_PROGRAMS += tests/unit/test-kvm-dirty-log
tests_unit_test_kvm_dirty_log_SOURCES = tests/unit/test-kvm-dirty-log.c $(KVM_HARNESS_SOURCES)
tests_unit_test_kvm_dirty_log_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_kvm_dirty_log_LDADD = $(KVM_TEST_LDADD)

# vmm/'s own VM and vCPU threads: a pause during a port I/O exit.
check_PROGRAMS += tests/unit/test-vcpu-pause
tests_unit_test_vcpu_pause_SOURCES = tests/unit/test-vcpu-pause.c $(KVM_HARNESS_SOURCES)
tests_unit_test_vcpu_pause_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_vcpu_pause_LDADD = $(KVM_TEST_LDADD)

# Pure bitmap helpers: no KVM needed, never skipped.
check_PROGRAMS += tests/unit/test-kvm-dirty-bitmap
tests_unit_test_kvm_dirty_bitmap_SOURCES = tests/unit/test-kvm-dirty-bitmap.c
tests_unit_test_kvm_dirty_bitmap_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_kvm_dirty_bitmap_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)

TESTS += \
	tests/unit/test-kvm-harness \
	tests/unit/test-kvm-dirty-log \
	tests/unit/test-vcpu-pause \
	tests/unit/test-kvm-dirty-bitmap
