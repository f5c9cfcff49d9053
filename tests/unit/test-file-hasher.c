/* The tree digest: one pass (stream_hash) against the file hasher's
 * threads over the same bytes written in odd pieces; a stream whose digest
 * the file hasher took, read back and verified by the reader; and the
 * hasher's errors. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "tests/unit/check-run.h"
#include "vmhop/file-hasher.h"
#include "vmhop/stream-hash.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"

#include "test-pattern.h"

static uint8_t *pattern(size_t n, uint32_t seed)
{
	uint8_t *p = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(p);
	test_pattern(p, n, seed);
	return p;
}

/* The definition (stream.h), spelled out with one-shot SHA-256s. */
static void tree_by_hand(const uint8_t *p, size_t n, uint8_t md[32])
{
	size_t chunks = (n + STREAM_TREE_CHUNK - 1) / STREAM_TREE_CHUNK;
	uint8_t *sums = malloc(chunks * 32);
	ck_assert_ptr_nonnull(sums);
	for (size_t i = 0; i < chunks; i++) {
		size_t len = MIN(n - i * STREAM_TREE_CHUNK, (size_t)STREAM_TREE_CHUNK);
		ck_assert_int_eq(EVP_Digest(p + i * STREAM_TREE_CHUNK, len, sums + i * 32, NULL,
					    EVP_sha256(), NULL), 1);
	}
	ck_assert_int_eq(EVP_Digest(sums, chunks * 32, md, NULL, EVP_sha256(), NULL), 1);
	free(sums);
}

static const size_t sizes[] = { 1, STREAM_TREE_CHUNK - 1, STREAM_TREE_CHUNK, STREAM_TREE_CHUNK + 1,
				3 * STREAM_TREE_CHUNK + 12345 };

START_TEST(one_pass_matches_definition)
{
	size_t n = sizes[_i];
	uint8_t *p = pattern(n, (uint32_t)_i + 1), want[32], got[32];
	tree_by_hand(p, n, want);
	struct stream_hash h;
	ck_assert_int_eq(stream_hash__init(&h, true), 0);
	/* in odd pieces, across chunk ends */
	for (size_t off = 0, step = 1; off < n; off += step, step = step * 3 + 7)
		stream_hash__update(&h, p + off, MIN(step, n - off));
	ck_assert_int_eq(stream_hash__final(&h, got), 0);
	ck_assert(!memcmp(want, got, 32));
	ck_assert(!stream_hash__active(&h));
	free(p);
}
END_TEST

START_TEST(threads_match_one_pass)
{
	size_t n = sizes[_i];
	uint8_t *p = pattern(n, (uint32_t)_i + 7), want[32], got[32];
	tree_by_hand(p, n, want);
	FILE *f = tmpfile();
	ck_assert_ptr_nonnull(f);
	int fd = fileno(f);
	struct err e = { 0 };
	struct file_hasher *h;
	ck_assert_int_eq(file_hasher__start(&h, fd, &e), 0);
	for (size_t off = 0, step = 4096 + 17; off < n; off += step, step *= 2) {
		size_t c = MIN(step, n - off);
		ck_assert_int_eq(util__write_all(fd, p + off, c), 0);
		file_hasher__wrote(h, off + c);
	}
	ck_assert_int_eq(file_hasher__final(h, n, got, &e), 0);
	ck_assert(!memcmp(want, got, 32));
	file_hasher__free(h);
	fclose(f);
	free(p);
}
END_TEST

START_TEST(hasher_errors)
{
	struct err e = { 0 };
	struct file_hasher *h;
	uint8_t md[32];
	/* asked for more than was written */
	FILE *f = tmpfile();
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(file_hasher__start(&h, fileno(f), &e), 0);
	ck_assert_int_eq(util__write_all(fileno(f), "abc", 3), 0);
	file_hasher__wrote(h, 3);
	ck_assert_int_eq(file_hasher__final(h, 4, md, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "4 bytes asked, 3 written"), "%s", e.msg);
	file_hasher__free(h);
	fclose(f);
	/* a file it cannot read back */
	char path[] = "/tmp/vmhop-hasher-XXXXXX";
	int w = mkstemp(path);
	ck_assert_int_ge(w, 0);
	int wo = open(path, O_WRONLY);
	ck_assert_int_ge(wo, 0);
	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(file_hasher__start(&h, wo, &e), 0);
	uint8_t *p = pattern(STREAM_TREE_CHUNK + 5, 3);
	ck_assert_int_eq(util__write_all(wo, p, STREAM_TREE_CHUNK + 5), 0);
	file_hasher__wrote(h, STREAM_TREE_CHUNK + 5);
	ck_assert_int_eq(file_hasher__final(h, STREAM_TREE_CHUNK + 5, md, &e), -EBADF);
	ck_assert_msg(strstr(e.msg, "reading the checkpoint back"), "%s", e.msg);
	file_hasher__free(h);
	/* stopped before the end: the threads let go */
	ck_assert_int_eq(file_hasher__start(&h, w, &e), 0);
	file_hasher__wrote(h, 2 * STREAM_TREE_CHUNK);
	file_hasher__free(h);
	file_hasher__free(NULL);
	free(p);
	close(wo);
	close(w);
	unlink(path);
}
END_TEST

/* The writer's io: the file, and the hasher told of every write. */
struct out {
	int fd;
	uint64_t written;
	struct file_hasher *h;
};

static ssize_t out_write(void *opaque, const void *buf, size_t len)
{
	struct out *o = opaque;
	if (util__write_all(o->fd, buf, len))
		return -EIO;
	o->written += len;
	file_hasher__wrote(o->h, o->written);
	return (ssize_t)len;
}

static int out_final(void *opaque, uint64_t len, uint8_t md[32], struct err *e)
{
	struct out *o = opaque;
	return file_hasher__final(o->h, len, md, e);
}

START_TEST(stream_digest_from_threads_verifies)
{
	FILE *f = tmpfile();
	ck_assert_ptr_nonnull(f);
	struct err e = { 0 };
	struct out o = { .fd = fileno(f) };
	ck_assert_int_eq(file_hasher__start(&o.h, o.fd, &e), 0);
	struct stream_io io = { .write = out_write, .opaque = &o };
	struct stream_digest_source src = { .final = out_final, .opaque = &o };
	struct stream_writer w;
	struct stream_writer_opts wo = { .format = 3, .release = "T1", .release_ordinal = 1,
					 .features = STREAM_FEAT_DIGEST | STREAM_FEAT_DIGEST_TREE };
	ck_assert_int_eq(stream__writer_init(&w, &io, &wo), 0);
	stream__writer_digest_from(&w, &src);
	size_t big = 1536 * 1024;	/* five records: across several chunks */
	uint8_t *p = pattern(big, 9);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(stream__write_record(&w, 0x7777, STREAM_REC_F_SKIPPABLE, p, big), 0);
	ck_assert_int_eq(stream__finish(&w), 0);
	stream__writer_free(&w);
	file_hasher__free(o.h);

	ck_assert_int_eq(lseek(o.fd, 0, SEEK_SET), 0);
	struct stream_io rio;
	stream__io_fd(&rio, o.fd);
	struct stream_reader r;
	ck_assert_int_eq(stream__reader_init(&r, &rio), 0);
	ck_assert_int_eq(stream__read_header(&r, NULL, NULL), 0);
	struct stream_rec rec;
	int rc;
	while ((rc = stream__next_record(&r, &rec)) == 1)
		ck_assert_int_eq(stream__rec_skip(&r), 0);
	ck_assert_msg(rc == 0 && r.ended, "%s", r.err.msg);
	stream__reader_free(&r);
	free(p);
	fclose(f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("file-hasher");
	TCase *tc = tcase_create("tree");
	tcase_set_timeout(tc, 120);
	int nsizes = (int)(sizeof(sizes) / sizeof(sizes[0]));
	tcase_add_loop_test(tc, one_pass_matches_definition, 0, nsizes);
	tcase_add_loop_test(tc, threads_match_one_pass, 0, nsizes);
	tcase_add_test(tc, hasher_errors);
	tcase_add_test(tc, stream_digest_from_threads_verifies);
	suite_add_tcase(s, tc);
	return check_run(s);
}
