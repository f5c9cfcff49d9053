/* PATH.vmhop-changes (vmm/blk-changes.c): what is saved is taken back bit
 * for bit with its generation; a record that does not describe the image as
 * it is (written since, another size, a flipped byte, cut short, too long,
 * another format, an image that is not a regular file) is dropped with the
 * reason; taken or dropped, it is gone. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/check-run.h"
#include "vmhop/blk-changes.h"
#include "vmhop/util.h"

#define SIZE (64 * MiB)

static char dir[64], img[128], rec[160];
static int fd = -1;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test-blk-changes-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/disk.img", dir);
	snprintf(rec, sizeof(rec), "%s%s", img, BLK_CHANGES_SUFFIX);
	fd = open(img, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, SIZE), 0);
	ck_assert_int_eq(pwrite(fd, "data", 4, 5 * BLK_TRACK_BLOCK), 4);
}

static void teardown(void)
{
	close(fd);
	unlink(rec);
	rmdir(rec);
	unlink(img);
	rmdir(dir);
}

/* Saves blocks 0, 5 and the last one under generation "0123abcd". */
static void save(void)
{
	struct blk_track t;
	struct err e = { 0 };
	ck_assert_int_eq(blk_track__init(&t, SIZE, &e), 0);
	blk_track__mark(&t, 0, 1);
	blk_track__mark(&t, 5 * BLK_TRACK_BLOCK, 4);
	blk_track__mark(&t, SIZE - 1, 1);
	ck_assert_msg(blk_changes__save(img, fd, "0123abcd", &t, &e) == 0, "%s", e.msg);
	blk_track__free(&t);
	ck_assert_int_eq(access(rec, F_OK), 0);
}

/* Takes the record; returns what blk_changes__take said, the reason in why. */
static int take(struct blk_track *t, char *gen, size_t gen_size, struct err *why)
{
	struct err e = { 0 };
	ck_assert_int_eq(blk_track__init(t, SIZE, &e), 0);
	int r = blk_changes__take(img, fd, t, gen, gen_size, why);
	ck_assert_msg(access(rec, F_OK) < 0, "the record outlived its reading");
	return r;
}

static void expect_dropped(const char *reason)
{
	struct blk_track t;
	struct err why = { 0 };
	char gen[33] = "";
	ck_assert_int_eq(take(&t, gen, sizeof(gen), &why), 0);
	ck_assert_msg(strstr(why.msg, reason) && strstr(why.msg, rec), "reason: %s", why.msg);
	ck_assert_uint_eq(blk_track__count(&t), 0);
	ck_assert_str_eq(gen, "");
	blk_track__free(&t);
}

START_TEST(round_trip)
{
	save();
	struct blk_track t;
	struct err why = { 0 };
	char gen[33] = "";
	ck_assert_msg(take(&t, gen, sizeof(gen), &why) == 1, "%s", why.msg);
	ck_assert_str_eq(gen, "0123abcd");
	uint64_t words = blk_track__words(&t), *bits = calloc(words, 8);
	ck_assert_uint_eq(blk_track__take(&t, bits), 3);
	ck_assert_uint_eq(bits[0], 1 | 1ULL << 5);
	ck_assert_uint_eq(bits[words - 1], 1ULL << ((SIZE / BLK_TRACK_BLOCK - 1) % 64));
	free(bits);
	blk_track__free(&t);
}
END_TEST

START_TEST(none)
{
	struct blk_track t;
	struct err why = { 0 };
	char gen[33] = "";
	ck_assert_int_eq(take(&t, gen, sizeof(gen), &why), 0);
	ck_assert_str_eq(why.msg, "");
	blk_track__free(&t);
}
END_TEST

START_TEST(image_written_since)
{
	save();
	/* Not a size change: the same bytes again still move the mtime (past
	 * a coarse clock's tick: file times may be per jiffy). */
	struct timespec ts = { 0, 20000000 };
	nanosleep(&ts, NULL);
	ck_assert_int_eq(pwrite(fd, "data", 4, 5 * BLK_TRACK_BLOCK), 4);
	expect_dropped("written or replaced since");
}
END_TEST

START_TEST(other_disk_size)
{
	save();
	struct blk_track t;
	struct err why = { 0 }, e = { 0 };
	char gen[33] = "";
	ck_assert_int_eq(blk_track__init(&t, SIZE * 2, &e), 0);
	ck_assert_int_eq(blk_changes__take(img, fd, &t, gen, sizeof(gen), &why), 0);
	ck_assert_msg(strstr(why.msg, "another block size or disk size"), "%s", why.msg);
	ck_assert_int_lt(access(rec, F_OK), 0);
	blk_track__free(&t);
}
END_TEST

static void rewrite_record(long off, const void *p, size_t n, long truncate_to)
{
	int r = open(rec, O_RDWR);
	ck_assert_int_ge(r, 0);
	if (p)
		ck_assert_int_eq(pwrite(r, p, n, off), (ssize_t)n);
	if (truncate_to >= 0)
		ck_assert_int_eq(ftruncate(r, truncate_to), 0);
	close(r);
}

START_TEST(flipped_byte)
{
	save();
	struct stat st;
	ck_assert_int_eq(stat(rec, &st), 0);
	/* Anywhere: in the header, the bitmap or the checksum itself. */
	long off = (long)((unsigned)_i * 37 % (unsigned)st.st_size);
	uint8_t b;
	int r = open(rec, O_RDONLY);
	ck_assert_int_eq(pread(r, &b, 1, off), 1);
	close(r);
	b ^= 0x10;
	rewrite_record(off, &b, 1, -1);
	struct blk_track t;
	struct err why = { 0 };
	char gen[33] = "";
	ck_assert_int_eq(take(&t, gen, sizeof(gen), &why), 0);
	ck_assert_msg(why.msg[0], "byte %ld flipped: no reason given", off);
	ck_assert_uint_eq(blk_track__count(&t), 0);
	blk_track__free(&t);
}
END_TEST

START_TEST(cut_short)
{
	save();
	rewrite_record(0, NULL, 0, 100);
	expect_dropped("wrong length");
}
END_TEST

START_TEST(too_long)
{
	save();
	struct stat st;
	ck_assert_int_eq(stat(rec, &st), 0);
	rewrite_record(st.st_size, "more", 4, -1);
	expect_dropped("wrong length");
}
END_TEST

/* A record that cannot be read is an error naming it, not a missing one:
 * the VM does not start believing the disk has no history. */
START_TEST(unreadable)
{
	ck_assert_int_eq(mkdir(rec, 0700), 0);
	struct blk_track t;
	struct err e = { 0 }, why = { 0 };
	char gen[33] = "";
	ck_assert_int_eq(blk_track__init(&t, SIZE, &e), 0);
	ck_assert_int_eq(blk_changes__take(img, fd, &t, gen, sizeof(gen), &why), -EISDIR);
	ck_assert_msg(strstr(why.msg, rec), "%s", why.msg);
	ck_assert_str_eq(gen, "");
	blk_track__free(&t);
}
END_TEST

START_TEST(not_a_record)
{
	save();
	rewrite_record(0, "NOTCHGS!", 8, -1);
	expect_dropped("not a change record");
}
END_TEST

/* A block device's times do not show writes: no record is kept for one,
 * and one found beside it is not believed. (/dev/null stands in.) */
START_TEST(not_a_regular_file)
{
	int dev = open("/dev/null", O_RDWR);
	ck_assert_int_ge(dev, 0);
	struct blk_track t;
	struct err e = { 0 }, why = { 0 };
	ck_assert_int_eq(blk_track__init(&t, SIZE, &e), 0);
	ck_assert_int_eq(blk_changes__save(img, dev, "0123abcd", &t, &e), -ENOTSUP);
	ck_assert_msg(strstr(e.msg, "not a regular file"), "%s", e.msg);
	ck_assert_int_lt(access(rec, F_OK), 0);
	save();
	char gen[33] = "";
	ck_assert_int_eq(blk_changes__take(img, dev, &t, gen, sizeof(gen), &why), 0);
	ck_assert_msg(strstr(why.msg, "not a regular file"), "%s", why.msg);
	ck_assert_int_lt(access(rec, F_OK), 0);
	ck_assert_uint_eq(blk_track__count(&t), 0);
	blk_track__free(&t);
	close(dev);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("blk-changes");
	TCase *tc = tcase_create("record");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, none);
	tcase_add_test(tc, image_written_since);
	tcase_add_test(tc, other_disk_size);
	tcase_add_loop_test(tc, flipped_byte, 0, 40);
	tcase_add_test(tc, cut_short);
	tcase_add_test(tc, too_long);
	tcase_add_test(tc, not_a_record);
	tcase_add_test(tc, not_a_regular_file);
	tcase_add_test(tc, unreadable);
	suite_add_tcase(s, tc);
	return check_run(s);
}
