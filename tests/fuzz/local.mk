# tests/fuzz/: libFuzzer targets for every decoder of untrusted input, built
# only with ./configure --enable-fuzzers CC=clang. The decoders are compiled
# into each target with the fuzzer's coverage instrumentation. Seeds live in
# tests/fuzz/corpus/<target>/ (made by gen-corpus); tests/fuzz/smoke.sh
# SECONDS builds them in a separate directory and runs each for SECONDS.
EXTRA_DIST += tests/fuzz/smoke.sh tests/fuzz/corpus

if FUZZERS
FUZZ_FLAGS = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB = \
	migrate/crc32c.c migrate/stream-io.c migrate/stream-buf.c \
	migrate/stream-header.c migrate/stream-types.c migrate/stream-write.c \
	migrate/stream-read.c migrate/stream-hash.c migrate/stream-mem-enc.c \
	migrate/stream-mem-dec.c \
	migrate/stream-index.c migrate/section.c migrate/section-codec.c \
	migrate/section-stream.c compat-matrix/release.c \
	compat-matrix/release-data.c lib/err.c lib/util.c \
	tests/fuzz/fuzz-common.c tests/fuzz/fuzz-common.h
FUZZ_LDADD = $(ZSTD_LIBS) $(CRYPTO_LIBS)
FUZZ_TARGETS = tests/fuzz/fuzz-stream tests/fuzz/fuzz-section \
	tests/fuzz/fuzz-mem tests/fuzz/fuzz-release tests/fuzz/fuzz-mig-frame
noinst_PROGRAMS += $(FUZZ_TARGETS) tests/fuzz/gen-corpus

tests_fuzz_fuzz_stream_SOURCES = tests/fuzz/fuzz-stream.c $(FUZZ_LIB)
tests_fuzz_fuzz_stream_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_stream_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_stream_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_section_SOURCES = tests/fuzz/fuzz-section.c $(FUZZ_LIB)
tests_fuzz_fuzz_section_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_section_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_section_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_mem_SOURCES = tests/fuzz/fuzz-mem.c $(FUZZ_LIB)
tests_fuzz_fuzz_mem_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_mem_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_mem_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_release_SOURCES = tests/fuzz/fuzz-release.c $(FUZZ_LIB)
tests_fuzz_fuzz_release_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_release_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_release_LDADD = $(FUZZ_LDADD)

# The migration handshake's framed JSON messages, read from a socketpair.
# Its seeds (corpus/mig-frame: a source's hello, the same cut short, a
# destination's hello then ready and running, an error) are not made by
# gen-corpus yet: hand-made frames, the same bytes mig__send writes.
tests_fuzz_fuzz_mig_frame_SOURCES = tests/fuzz/fuzz-mig-frame.c $(FUZZ_LIB) \
	migrate/mig-proto.c transport/channel.c transport/uri.c transport/tcp.c \
	transport/unix.c transport/tls.c transport/file.c transport/fault.c \
	transport/rdma.c transport/rdma-io.c transport/region.c
tests_fuzz_fuzz_mig_frame_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_mig_frame_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_mig_frame_LDADD = $(FUZZ_LDADD) $(SSL_LIBS) $(CRYPTO_LIBS) $(JSONC_LIBS) \
	$(RDMACM_LIBS) $(IBVERBS_LIBS)

tests_fuzz_gen_corpus_SOURCES = tests/fuzz/gen-corpus.c $(FUZZ_LIB)
tests_fuzz_gen_corpus_CFLAGS = $(AM_CFLAGS)
tests_fuzz_gen_corpus_LDADD = $(FUZZ_LDADD)
endif
