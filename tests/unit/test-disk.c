/* Disk backend: error messages, buffered and O_DIRECT transfers, the bounce
 * path for unaligned guest buffers and offsets (512 and 4096 alignment),
 * the unaligned tail of an image, and a randomized comparison against an
 * in-memory model. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/check-run.h"
#include "vmhop/disk.h"
#include "vmhop/util.h"

static char dir[256];

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/vmhop-disk-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static char *path_of(const char *name)
{
	static char p[2][512];
	static int k;
	k ^= 1;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
	return p[k];
}

static uint8_t *make_file(const char *name, uint64_t size, mode_t mode)
{
	uint8_t *buf = malloc(size ? size : 1);
	for (uint64_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i * 31 + (i >> 9));
	int fd = open(path_of(name), O_CREAT | O_TRUNC | O_WRONLY, mode);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(util__write_all(fd, buf, size), 0);
	close(fd);
	return buf;
}

static struct disk_config dc_for(const char *name, bool direct, bool ro)
{
	struct disk_config dc = { .path = path_of(name), .cache_none = direct, .readonly = ro };
	snprintf(dc.id, sizeof(dc.id), "vda");
	return dc;
}

static void check_file(const char *name, const uint8_t *model, uint64_t size)
{
	struct stat st;
	ck_assert_int_eq(stat(path_of(name), &st), 0);
	ck_assert_uint_eq((uint64_t)st.st_size, size);
	uint8_t *buf = malloc(size);
	int fd = open(path_of(name), O_RDONLY);
	ck_assert_int_eq(util__pread_all(fd, buf, size, 0), 0);
	close(fd);
	for (uint64_t i = 0; i < size; i++)
		ck_assert_msg(buf[i] == model[i], "byte %llu: file %u model %u",
			      (unsigned long long)i, buf[i], model[i]);
	free(buf);
}

START_TEST(open_errors)
{
	struct disk *d;
	struct err e = { 0 };
	struct disk_config dc = dc_for("missing.img", false, false);
	ck_assert_int_eq(disk__open(&d, &dc, &e), -ENOENT);
	char want[600];
	snprintf(want, sizeof(want), "disk vda: cannot open %s: No such file or directory", dc.path);
	ck_assert_str_eq(e.msg, want);

	free(make_file("odd.img", 1000, 0644));
	err__clear(&e);
	dc = dc_for("odd.img", false, false);
	ck_assert_int_eq(disk__open(&d, &dc, &e), -EINVAL);
	snprintf(want, sizeof(want), "disk vda: %s is 1000 bytes, not a multiple of 512", dc.path);
	ck_assert_str_eq(e.msg, want);

	err__clear(&e);
	ck_assert_int_eq(mkdir(path_of("adir"), 0755), 0);
	dc = dc_for("adir", false, true);
	ck_assert_int_eq(disk__open(&d, &dc, &e), -EINVAL);
	snprintf(want, sizeof(want), "disk vda: %s is not a regular file or block device", dc.path);
	ck_assert_str_eq(e.msg, want);
}
END_TEST

/* Permission errors need a non-root opener: root ignores file modes, so
 * when we are root the check runs in a child that drops to nobody. */
START_TEST(open_permission_denied)
{
	free(make_file("ro.img", 4096, 0444));
	free(make_file("none.img", 4096, 0000));
	ck_assert_int_eq(chmod(dir, 0755), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(10);
		struct disk *d;
		struct err e = { 0 };
		struct disk_config dc = dc_for("ro.img", false, false);
		char want[600];
		if (disk__open(&d, &dc, &e) != -EACCES)
			_exit(11);
		snprintf(want, sizeof(want), "disk vda: cannot open %s: Permission denied", dc.path);
		if (strcmp(e.msg, want))
			_exit(12);
		/* read-only is fine for a read-only disk */
		dc.readonly = true;
		if (disk__open(&d, &dc, &e) != 0)
			_exit(13);
		disk__close(d);
		err__clear(&e);
		dc = dc_for("none.img", false, true);
		if (disk__open(&d, &dc, &e) != -EACCES)
			_exit(14);
		_exit(0);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", WEXITSTATUS(st));
}
END_TEST

START_TEST(buffered_roundtrip)
{
	uint8_t *model = make_file("b.img", 8192, 0644);
	struct disk *d;
	struct err e = { 0 };
	struct disk_config dc = dc_for("b.img", false, false);
	ck_assert_msg(disk__open(&d, &dc, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(d->size, 8192);
	char a[100], b[412];
	memset(a, 'A', sizeof(a));
	memset(b, 'B', sizeof(b));
	struct iovec w[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	ck_assert_int_eq(disk__writev(d, w, 2, 1024), 0);
	memcpy(model + 1024, a, sizeof(a));
	memcpy(model + 1124, b, sizeof(b));
	uint8_t r[8192];
	struct iovec rv = { r, sizeof(r) };
	ck_assert_int_eq(disk__readv(d, &rv, 1, 0), 0);
	ck_assert_mem_eq(r, model, sizeof(r));
	ck_assert_int_eq(disk__flush(d), 0);
	/* out of range */
	ck_assert_int_eq(disk__readv(d, &rv, 1, 512), -EINVAL);
	ck_assert_int_eq(disk__writev(d, &rv, 1, UINT64_MAX - 100), -EINVAL);
	disk__close(d);
	check_file("b.img", model, 8192);
	free(model);
}
END_TEST

START_TEST(readonly_writes_refused)
{
	uint8_t *model = make_file("r.img", 4096, 0644);
	struct disk *d;
	struct err e = { 0 };
	struct disk_config dc = dc_for("r.img", true, true);
	ck_assert_msg(disk__open(&d, &dc, &e) == 0, "%s", e.msg);
	uint8_t buf[512] = { 0 };
	struct iovec v = { buf, sizeof(buf) };
	ck_assert_int_eq(disk__writev(d, &v, 1, 0), -EROFS);
	ck_assert_int_eq(disk__flush(d), 0);
	disk__close(d);
	check_file("r.img", model, 4096);
	free(model);
}
END_TEST

static bool direct_ok(struct disk **d, const char *name, struct err *e)
{
	struct disk_config dc = dc_for(name, true, false);
	int r = disk__open(d, &dc, e);
	if (r == -EINVAL && strstr(e->msg, "O_DIRECT")) {
		fprintf(stderr, "skipping: %s\n", e->msg);
		return false;
	}
	ck_assert_msg(r == 0, "%s", e->msg);
	return true;
}

/* Guest buffers anywhere in memory, offsets on 512-byte sectors. */
START_TEST(direct_unaligned_buffers)
{
	uint8_t *model = make_file("d.img", 64 * 1024, 0644);
	struct disk *d;
	struct err e = { 0 };
	if (!direct_ok(&d, "d.img", &e))
		return;
	ck_assert(d->direct);
	uint8_t *mem = malloc(3 * 4096 + 64);
	/* read 3 sectors at sector 7 into a buffer at an odd address, in 3 odd pieces */
	uint8_t *p = mem + 3;
	struct iovec v[3] = { { p, 100 }, { p + 100, 1000 }, { p + 1100, 436 } };
	ck_assert_int_eq(disk__readv(d, v, 3, 7 * 512), 0);
	ck_assert_mem_eq(p, model + 7 * 512, 1536);
	/* aligned buffer, aligned offset: the zero-copy path */
	uint8_t *al;
	ck_assert_int_eq(posix_memalign((void **)&al, 4096, 8192), 0);
	struct iovec va = { al, 8192 };
	ck_assert_int_eq(disk__readv(d, &va, 1, 4096), 0);
	ck_assert_mem_eq(al, model + 4096, 8192);
	/* write from an odd buffer */
	for (int i = 0; i < 1536; i++)
		p[i] = (uint8_t)(i ^ 0xC3);
	ck_assert_int_eq(disk__writev(d, v, 3, 31 * 512), 0);
	memcpy(model + 31 * 512, p, 1536);
	ck_assert_int_eq(disk__flush(d), 0);
	disk__close(d);
	check_file("d.img", model, 64 * 1024);
	free(al);
	free(mem);
	free(model);
}
END_TEST

/* A 4096-byte logical block device, simulated: 512-byte writes become
 * read-modify-write of whole blocks, and the image size is not a multiple
 * of 4096 so the last 1.5 KiB go through the buffered descriptor. */
START_TEST(direct_4k_rmw_and_tail)
{
	const uint64_t size = 3 * 4096 + 1536;
	uint8_t *model = make_file("t.img", size, 0644);
	struct disk *d;
	struct err e = { 0 };
	if (!direct_ok(&d, "t.img", &e))
		return;
	ck_assert_int_eq(disk__set_align(d, 4096, &e), 0);
	ck_assert_int_ge(d->tail_fd, 0);
	uint8_t buf[6 * 512];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(0x80 + i);
	/* one sector in the middle of a block */
	struct iovec v = { buf, 512 };
	ck_assert_int_eq(disk__writev(d, &v, 1, 4096 + 1024), 0);
	memcpy(model + 4096 + 1024, buf, 512);
	/* across a block boundary, both ends partial */
	v = (struct iovec){ buf + 1, 5 * 512 };
	ck_assert_int_eq(disk__writev(d, &v, 1, 4096 + 7 * 512), 0);
	memcpy(model + 4096 + 7 * 512, buf + 1, 5 * 512);
	/* from the last whole block into the tail, and the tail alone */
	v = (struct iovec){ buf, 4 * 512 };
	ck_assert_int_eq(disk__writev(d, &v, 1, size - 4 * 512), 0);
	memcpy(model + size - 4 * 512, buf, 4 * 512);
	v = (struct iovec){ buf + 7, 512 };
	ck_assert_int_eq(disk__writev(d, &v, 1, size - 512), 0);
	memcpy(model + size - 512, buf + 7, 512);
	/* read everything back through the odd paths */
	uint8_t *r = malloc(size + 1);
	struct iovec rv[2] = { { r + 1, 5000 }, { r + 1 + 5000, size - 5000 } };
	ck_assert_int_eq(disk__readv(d, rv, 2, 0), 0);
	ck_assert_mem_eq(r + 1, model, size);
	ck_assert_int_eq(disk__flush(d), 0);
	disk__close(d);
	check_file("t.img", model, size);	/* the size did not grow */
	free(r);
	free(model);
}
END_TEST

/* Random transfers (random sector ranges, random iovec splits, random
 * buffer misalignment) against an in-memory model, for each mode. */
static void random_ops(bool direct, unsigned align, uint64_t size, unsigned seed)
{
	uint8_t *model = make_file("rnd.img", size, 0644);
	struct disk *d;
	struct err e = { 0 };
	if (direct) {
		if (!direct_ok(&d, "rnd.img", &e)) {
			free(model);
			return;
		}
		ck_assert_int_eq(disk__set_align(d, align, &e), 0);
	} else {
		struct disk_config dc = dc_for("rnd.img", false, false);
		ck_assert_int_eq(disk__open(&d, &dc, &e), 0);
	}
	srand(seed);
	uint8_t *mem = malloc(256 * 1024 + 4096), *chk = malloc(256 * 1024);
	for (int op = 0; op < 300; op++) {
		uint64_t sectors = size / 512;
		uint64_t first = (uint64_t)rand() % sectors;
		uint64_t n = 1 + (uint64_t)rand() % MIN(sectors - first, 400ULL);
		uint64_t len = n * 512;
		uint8_t *base = mem + (rand() % 2 ? 0 : rand() % 4096);
		if (rand() % 4 == 0)
			base = mem + 4096 - ((uintptr_t)mem % 4096);	/* page aligned */
		struct iovec v[8];
		int cnt = 0;
		uint64_t left = len, at = 0;
		while (left && cnt < 7) {
			uint64_t k = rand() % 3 ? (1 + (uint64_t)rand() % left) : MIN(left, 4096ULL);
			v[cnt++] = (struct iovec){ base + at, k };
			at += k;
			left -= k;
		}
		if (left)
			v[cnt++] = (struct iovec){ base + at, left };
		if (rand() % 2) {
			for (uint64_t i = 0; i < len; i++)
				base[i] = (uint8_t)rand();
			ck_assert_int_eq(disk__writev(d, v, cnt, first * 512), 0);
			memcpy(model + first * 512, base, len);
		} else {
			ck_assert_int_eq(disk__readv(d, v, cnt, first * 512), 0);
			ck_assert_msg(!memcmp(base, model + first * 512, len),
				      "op %d: read of %llu sectors at %llu differs", op,
				      (unsigned long long)n, (unsigned long long)first);
		}
	}
	struct iovec all = { chk, size };
	ck_assert_int_eq(disk__readv(d, &all, 1, 0), 0);
	ck_assert_mem_eq(chk, model, size);
	disk__close(d);
	check_file("rnd.img", model, size);
	free(mem);
	free(chk);
	free(model);
}

START_TEST(random_buffered)
{
	random_ops(false, 512, 200 * 1024, 1);
}
END_TEST

START_TEST(random_direct_512)
{
	random_ops(true, 512, 200 * 1024, 2);
}
END_TEST

START_TEST(random_direct_4096)
{
	random_ops(true, 4096, 200 * 1024 + 1024, 3);	/* with a tail */
}
END_TEST

/* Transfers larger than the bounce buffer are chunked. */
START_TEST(direct_large)
{
	const uint64_t size = 3 * DISK_BOUNCE_SIZE + 4096;
	uint8_t *model = make_file("big.img", size, 0644);
	struct disk *d;
	struct err e = { 0 };
	if (!direct_ok(&d, "big.img", &e)) {
		free(model);
		return;
	}
	uint8_t *m = malloc(size + 1);
	struct iovec v = { m + 1, size - 512 };
	ck_assert_int_eq(disk__readv(d, &v, 1, 512), 0);
	ck_assert_mem_eq(m + 1, model + 512, size - 512);
	for (uint64_t i = 0; i < size - 512; i++)
		m[1 + i] = (uint8_t)(i * 13);
	ck_assert_int_eq(disk__writev(d, &v, 1, 512), 0);
	memcpy(model + 512, m + 1, size - 512);
	disk__close(d);
	check_file("big.img", model, size);
	free(m);
	free(model);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("disk");
	TCase *tc = tcase_create("open");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, open_errors);
	tcase_add_test(tc, open_permission_denied);
	suite_add_tcase(s, tc);

	tc = tcase_create("io");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, buffered_roundtrip);
	tcase_add_test(tc, readonly_writes_refused);
	tcase_add_test(tc, direct_unaligned_buffers);
	tcase_add_test(tc, direct_4k_rmw_and_tail);
	tcase_add_test(tc, random_buffered);
	tcase_add_test(tc, random_direct_512);
	tcase_add_test(tc, random_direct_4096);
	tcase_add_test(tc, direct_large);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(suite());
}
