# Check suites for the stream codec, state sections and release levels
# (migrate/, compat-matrix/). Included from tests/unit/local.mk.
STREAM_TESTS = \
	tests/unit/test-stream \
	tests/unit/test-stream-bad \
	tests/unit/test-stream-mem \
	tests/unit/test-stream-info \
	tests/unit/test-file-hasher \
	tests/unit/test-section \
	tests/unit/test-release
check_PROGRAMS += $(STREAM_TESTS)
TESTS += $(STREAM_TESTS)

STREAM_TEST_UTIL = tests/unit/test-stream-util.c tests/unit/test-stream-util.h
STREAM_TEST_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
STREAM_TEST_LIBS = $(VMHOP_LIBS) $(CHECK_LIBS)

tests_unit_test_stream_SOURCES = tests/unit/test-stream.c $(STREAM_TEST_UTIL)
tests_unit_test_stream_CFLAGS = $(STREAM_TEST_CFLAGS)
tests_unit_test_stream_LDADD = $(STREAM_TEST_LIBS)
tests_unit_test_file_hasher_SOURCES = tests/unit/test-file-hasher.c tests/unit/test-pattern.h
tests_unit_test_file_hasher_CFLAGS = $(STREAM_TEST_CFLAGS)
tests_unit_test_file_hasher_LDADD = $(STREAM_TEST_LIBS)
tests_unit_test_stream_bad_SOURCES = tests/unit/test-stream-bad.c $(STREAM_TEST_UTIL)
tests_unit_test_stream_bad_CFLAGS = $(STREAM_TEST_CFLAGS)
tests_unit_test_stream_bad_LDADD = $(STREAM_TEST_LIBS)
tests_unit_test_stream_mem_SOURCES = tests/unit/test-stream-mem.c $(STREAM_TEST_UTIL)
tests_unit_test_stream_mem_CFLAGS = $(STREAM_TEST_CFLAGS)
tests_unit_test_stream_mem_LDADD = $(STREAM_TEST_LIBS)
tests_unit_test_section_SOURCES = tests/unit/test-section.c $(STREAM_TEST_UTIL)
tests_unit_test_section_CFLAGS = $(STREAM_TEST_CFLAGS)
tests_unit_test_section_LDADD = $(STREAM_TEST_LIBS)
tests_unit_test_release_SOURCES = tests/unit/test-release.c $(STREAM_TEST_UTIL)
tests_unit_test_release_CFLAGS = $(STREAM_TEST_CFLAGS)
tests_unit_test_release_LDADD = $(STREAM_TEST_LIBS)
tests_unit_test_stream_info_SOURCES = tests/unit/test-stream-info.c $(STREAM_TEST_UTIL)
tests_unit_test_stream_info_CFLAGS = $(STREAM_TEST_CFLAGS)
tests_unit_test_stream_info_LDADD = $(STREAM_TEST_LIBS)
# test-stream-info runs the vmhop binary (built by check-am's all-am).
EXTRA_DIST += tests/fuzz/corpus/files
