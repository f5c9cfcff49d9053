# Check suites for the compat matrix: CPU models, host profiles, the
# pre-flight rules (compat-matrix/). Included from tests/unit/local.mk.
COMPAT_TESTS = tests/unit/test-compat-data tests/unit/test-compat-rules
check_PROGRAMS += $(COMPAT_TESTS)
TESTS += $(COMPAT_TESTS)
COMPAT_TEST_UTIL = tests/unit/test-compat-util.h

tests_unit_test_compat_data_SOURCES = tests/unit/test-compat-data.c $(COMPAT_TEST_UTIL)
tests_unit_test_compat_data_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_compat_data_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)
tests_unit_test_compat_rules_SOURCES = tests/unit/test-compat-rules.c $(COMPAT_TEST_UTIL)
tests_unit_test_compat_rules_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_compat_rules_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)
EXTRA_DIST += tests/compat/fixtures
