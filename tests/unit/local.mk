# tests/unit/: Check suites, one program per module.
include tests/unit/stream.mk
include tests/unit/devices.mk
include tests/unit/control.mk
include tests/unit/migrate.mk
include tests/unit/harness.mk
include tests/unit/compat.mk
include tests/unit/schedule.mk
# The end of each Check program's main, shared (check_run).
EXTRA_DIST += tests/unit/check-run.h
# The evacuation planner (agent/plan.c).
check_PROGRAMS += tests/unit/test-evacuate-plan
TESTS += tests/unit/test-evacuate-plan
tests_unit_test_evacuate_plan_SOURCES = tests/unit/test-evacuate-plan.c tests/unit/test-compat-util.h
tests_unit_test_evacuate_plan_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_evacuate_plan_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)
# rdma: URIs, and the message on a machine without an RDMA device (the
# transfers are tested in a soft-RoCE guest: tests/rdma/).
check_PROGRAMS += tests/unit/test-channel-rdma
TESTS += tests/unit/test-channel-rdma
tests_unit_test_channel_rdma_SOURCES = tests/unit/test-channel-rdma.c
tests_unit_test_channel_rdma_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_channel_rdma_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)
