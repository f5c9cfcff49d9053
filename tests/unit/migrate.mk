# Check suites for the live-migration handshake: TCP, TLS and unix channels
# over loopback (transport/) and the framed JSON messages, hello and fault-hook specs
# (migrate/mig-proto.c, migrate/mig-fault.c). Included from
# tests/unit/local.mk.
MIGRATE_TESTS = \
	tests/unit/test-channel \
	tests/unit/test-channel-tls \
	tests/unit/test-channel-faults \
	tests/unit/test-mig-proto
check_PROGRAMS += $(MIGRATE_TESTS)
TESTS += $(MIGRATE_TESTS)

tests_unit_test_channel_SOURCES = tests/unit/test-channel.c tests/unit/test-pattern.h
tests_unit_test_channel_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_channel_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)

tests_unit_test_mig_proto_SOURCES = tests/unit/test-mig-proto.c
tests_unit_test_mig_proto_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_mig_proto_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)

tests_unit_test_channel_tls_SOURCES = tests/unit/test-channel-tls.c tests/unit/test-pattern.h
# The certificates come from contrib/make-test-ca.sh in the source tree.
tests_unit_test_channel_tls_CPPFLAGS = $(AM_CPPFLAGS) -DTEST_SRCDIR='"$(abs_top_srcdir)"'
tests_unit_test_channel_tls_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_channel_tls_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)

# 1 GiB over each transport (tcp, unix, tls, file), peers that go away or
# stall, refusals, every fault of the wrapper, and a real stream corrupted
# on its way (the stream reader's CRC must name the record).
tests_unit_test_channel_faults_SOURCES = tests/unit/test-channel-faults.c tests/unit/test-pattern.h \
	$(STREAM_TEST_UTIL)
tests_unit_test_channel_faults_CPPFLAGS = $(AM_CPPFLAGS) -DTEST_SRCDIR='"$(abs_top_srcdir)"'
tests_unit_test_channel_faults_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_channel_faults_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)
