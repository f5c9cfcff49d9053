/* `vmhop stream-info`: text and JSON output on real streams, stdin, and the
 * first defect reported with its offset and a non-zero exit. Uses the
 * streams committed under tests/fuzz/corpus/files (made by gen-corpus). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tests/unit/check-run.h"
#include "test-stream-util.h"

static char out[65536], errbuf[4096];

/* Runs "$VMHOP stream-info ARGS", stdout into out, stderr into errbuf. */
static int run(const char *args)
{
	const char *vmhop = getenv("VMHOP");
	char cmd[8192], errf[] = "/tmp/stream-info-err.XXXXXX";
	int efd = mkstemp(errf);
	ck_assert_int_ge(efd, 0);
	snprintf(cmd, sizeof(cmd), "%s stream-info %s 2>%s", vmhop ? vmhop : "./vmhop", args, errf);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	ssize_t k = read(efd, errbuf, sizeof(errbuf) - 1);
	errbuf[k > 0 ? k : 0] = '\0';
	close(efd);
	unlink(errf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void file(char *buf, size_t n, const char *name)
{
	const char *src = getenv("VMHOP_SRCDIR");
	snprintf(buf, n, "%s/tests/fuzz/corpus/files/%s", src ? src : ".", name);
}

START_TEST(text_output)
{
	char path[4096], args[4200];
	file(path, sizeof(path), "v3-diz.vmhop");
	snprintf(args, sizeof(args), "'%s'", path);
	ck_assert_int_eq(run(args), 0);
	ck_assert_msg(strstr(out, "header: format 3, release SP3 (level 3)"), "%s", out);
	ck_assert_msg(strstr(out, "section fz"), "%s", out);
	ck_assert_msg(strstr(out, "subsections: sub v1"), "%s", out);
	ck_assert_msg(strstr(out, "memory: 2 records, 6 pages"), "%s", out);
	ck_assert_msg(strstr(out, "SHA-256 digest verified"), "%s", out);
	/* from standard input */
	snprintf(args, sizeof(args), "- < '%s'", path);
	ck_assert_int_eq(run(args), 0);
	ck_assert_msg(strstr(out, "stream -"), "%s", out);
	ck_assert_int_eq(run("--help"), 0);
	ck_assert_int_eq(run(""), 2);
}
END_TEST

START_TEST(json_output)
{
	char path[4096], args[4200];
	file(path, sizeof(path), "v2-dz.vmhop");
	snprintf(args, sizeof(args), "--json '%s'", path);
	ck_assert_int_eq(run(args), 0);
	json_object *j = json_tokener_parse(out);
	ck_assert_ptr_nonnull(j);
	json_object *h, *v, *secs, *mem;
	ck_assert(json_object_object_get_ex(j, "header", &h));
	ck_assert(json_object_object_get_ex(h, "format", &v));
	ck_assert_int_eq(json_object_get_int(v), 2);
	ck_assert(json_object_object_get_ex(j, "sections", &secs));
	ck_assert_int_eq(json_object_array_length(secs), 2);
	ck_assert(json_object_object_get_ex(j, "memory", &mem));
	ck_assert(json_object_object_get_ex(mem, "pages", &v));
	ck_assert_int_eq(json_object_get_int(v), 6);
	ck_assert(json_object_object_get_ex(j, "ok", &v));
	ck_assert(json_object_get_boolean(v));
	json_object_put(j);
}
END_TEST

START_TEST(defect_exits_nonzero)
{
	char path[4096];
	file(path, sizeof(path), "v1-plain.vmhop");
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	char tmp[] = "/tmp/stream-info-bad.XXXXXX";
	int fd = mkstemp(tmp);
	buf[n / 2] ^= 0x10;
	ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
	close(fd);
	char args[4200];
	snprintf(args, sizeof(args), "'%s'", tmp);
	ck_assert_int_eq(run(args), 1);
	ck_assert_msg(strstr(errbuf, ": offset ") && strstr(errbuf, "checksum mismatch"), "%s", errbuf);
	/* JSON says so too */
	snprintf(args, sizeof(args), "--json '%s'", tmp);
	ck_assert_int_eq(run(args), 1);
	json_object *j = json_tokener_parse(out), *v;
	ck_assert_ptr_nonnull(j);
	ck_assert(json_object_object_get_ex(j, "ok", &v) && !json_object_get_boolean(v));
	ck_assert(json_object_object_get_ex(j, "error", &v));
	ck_assert_msg(strstr(json_object_get_string(v), "offset "), "%s", out);
	json_object_put(j);
	/* truncated */
	fd = open(tmp, O_WRONLY | O_TRUNC);
	buf[n / 2] ^= 0x10;
	ck_assert_int_eq(write(fd, buf, n - 5), (ssize_t)(n - 5));
	close(fd);
	snprintf(args, sizeof(args), "'%s'", tmp);
	ck_assert_int_eq(run(args), 1);
	ck_assert_msg(strstr(errbuf, "truncated"), "%s", errbuf);
	unlink(tmp);
	ck_assert_int_eq(run("/nonexistent/file"), 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stream-info");
	TCase *tc = tcase_create("cli");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, text_output);
	tcase_add_test(tc, json_output);
	tcase_add_test(tc, defect_exits_nonzero);
	suite_add_tcase(s, tc);
	return check_run(s);
}
