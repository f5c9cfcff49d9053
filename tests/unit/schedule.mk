# The checkpoint scheduler's naming and pruning decisions (snapshot/schedule-prune.c).
check_PROGRAMS += tests/unit/test-schedule
TESTS += tests/unit/test-schedule
tests_unit_test_schedule_SOURCES = tests/unit/test-schedule.c
tests_unit_test_schedule_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_schedule_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)
