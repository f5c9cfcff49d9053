/* `vmhop ctl` (cli/cmd-ctl.c, compiled into this test) against a server with
 * a fake table: request building, printing, exit codes. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/commands.h"
#include "tests/unit/test-control-harness.h"

static int echo(void *ctx, struct json_object *args, struct json_object **result, struct err *e)
{
	*result = json_object_get(args);
	return 0;
}

static int do_fail(void *ctx, struct json_object *args, struct json_object **result, struct err *e)
{
	return err__set(e, EBUSY, "cannot pause: the VM is shutdown");
}

static int status(void *ctx, struct json_object *args, struct json_object **result, struct err *e)
{
	*result = json_tokener_parse("{\"status\":\"running\",\"running\":true,\"uptime_ms\":12,"
				     "\"disks\":[{\"id\":\"vda\",\"ro\":false}],\"empty\":{},\"none\":[]}");
	return 0;
}

static struct control_call *hung;

static int hang(void *ctx, struct json_object *args, struct control_call *call, struct err *e)
{
	hung = call;	/* answered only after the server is gone (teardown) */
	return 0;
}

static const char *const echo_params[] = { "s", "n", "b", "o", "nul", "q", NULL };

static const struct control_cmd table[] = {
	{ "echo", echo, "returns its arguments", echo_params, NULL },
	{ "fail", do_fail, "fails", NULL, NULL },
	{ "status", status, "a nested result", NULL, NULL },
	{ "hang", NULL, "never answers", NULL, hang },
};

static struct harness H;

static void setup(void)
{
	harness__mkdir(&H);
	harness__start(&H, table, sizeof(table) / sizeof(table[0]), NULL);
}

static void teardown(void)
{
	harness__stop(&H);
	if (hung)
		control__call_done(hung, 0, NULL, NULL);	/* sends nothing, frees */
	hung = NULL;
	harness__rmdir(&H);
}

struct result {
	int status;
	char out[8192];
	char err[8192];
};

static void slurp(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;
	while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
}

/* Runs cmd_ctl("ctl", args..., NULL) in a child, as `vmhop ctl args...`. */
static void ctl(struct result *res, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	va_start(ap, res);
	argv[argc++] = "ctl";
	for (char *a; (a = va_arg(ap, char *));)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;

	char outname[] = "/tmp/vmhop-ctl-out-XXXXXX", errname[] = "/tmp/vmhop-ctl-err-XXXXXX";
	int out = mkstemp(outname), err = mkstemp(errname);
	ck_assert(out >= 0 && err >= 0);
	unlink(outname);
	unlink(errname);
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(out, 1);
		dup2(err, 2);
		int rc = cmd_ctl(argc, argv);
		fflush(NULL);
		_exit(rc);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st), "%s: killed by signal %d", argv[1], WTERMSIG(st));
	res->status = WEXITSTATUS(st);
	lseek(out, 0, SEEK_SET);
	lseek(err, 0, SEEK_SET);
	slurp(out, res->out, sizeof(res->out));
	slurp(err, res->err, sizeof(res->err));
	close(out);
	close(err);
}

START_TEST(prints_result)
{
	struct result r;
	ctl(&r, "--control", H.path, "status", NULL);
	ck_assert_msg(r.status == 0, "%d %s", r.status, r.err);
	ck_assert_str_eq(r.out, "status: running\nrunning: true\nuptime_ms: 12\n"
			 "disks:\n  - id: vda\n    ro: false\nempty: {}\nnone: []\n");
	ck_assert_str_eq(r.err, "");
}
END_TEST

START_TEST(json_output)
{
	struct result r;
	ctl(&r, "-c", H.path, "--json", "echo", "s=x", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.out, "{\"return\":{\"s\":\"x\"},\"id\":1}\n");
}
END_TEST

START_TEST(argument_values)
{
	struct result r;
	ctl(&r, "--control", H.path, "--json", "echo", "s=/tmp/a b", "n=42", "b=true", "o={\"k\":[1]}",
	    "nul=null", "q=\"7\"", NULL);
	ck_assert_msg(r.status == 0, "%s", r.err);
	ck_assert_str_eq(r.out, "{\"return\":{\"s\":\"/tmp/a b\",\"n\":42,\"b\":true,\"o\":{\"k\":[1]},"
			 "\"nul\":null,\"q\":\"7\"},\"id\":1}\n");
	ctl(&r, "--control", H.path, "echo", "noequals", NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "expected NAME=VALUE"));
	ctl(&r, "--control", H.path, "echo", "n=1", "n=2", NULL);
	ck_assert_int_eq(r.status, 2);
}
END_TEST

START_TEST(error_reply)
{
	struct result r;
	ctl(&r, "--control", H.path, "fail", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_str_eq(r.err, "vmhop ctl: GenericError: cannot pause: the VM is shutdown\n");
	ck_assert_str_eq(r.out, "");
	ctl(&r, "--control", H.path, "nosuch", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_str_eq(r.err, "vmhop ctl: CommandNotFound: unknown command 'nosuch' "
			 "(query-commands lists them)\n");
	ctl(&r, "--control", H.path, "echo", "bad=1", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "InvalidParameter"));
	ctl(&r, "--control", H.path, "--json", "fail", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.out, "\"class\":\"GenericError\""));
}
END_TEST

START_TEST(raw_requests)
{
	struct result r;
	ctl(&r, "--control", H.path, "--raw", "{\n \"execute\": \"echo\",\n \"arguments\": {\"n\": 1}, \"id\": 7}",
	    "--json", NULL);
	ck_assert_msg(r.status == 0, "%s", r.err);
	ck_assert_str_eq(r.out, "{\"return\":{\"n\":1},\"id\":7}\n");
	ctl(&r, "--control", H.path, "--raw", "not json", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "InvalidRequest: malformed JSON"));
	ctl(&r, "--control", H.path, "--raw", "{\"execute\":\"echo\"}", "extra", NULL);
	ck_assert_int_eq(r.status, 2);
}
END_TEST

START_TEST(query_commands)
{
	struct result r;
	ctl(&r, "--control", H.path, "query-commands", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "commands:\n  - name: echo\n    help: returns its arguments\n"
				     "    arguments:\n      - s\n"));
}
END_TEST

START_TEST(connection_errors)
{
	struct result r;
	char path[256];
	snprintf(path, sizeof(path), "%s/absent.sock", H.dir);
	ctl(&r, "--control", path, "query-status", NULL);
	ck_assert_int_eq(r.status, 2);
	char want[512];
	snprintf(want, sizeof(want), "vmhop ctl: cannot connect to %s: No such file or directory\n", path);
	ck_assert_str_eq(r.err, want);

	ctl(&r, "--control", H.path, "--timeout", "1", "hang", NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "no reply"));
}
END_TEST

START_TEST(usage_errors)
{
	struct result r;
	ctl(&r, "query-status", NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "--control PATH is required"));
	ctl(&r, "--control", H.path, NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "no COMMAND"));
	ctl(&r, "--control", H.path, "--bogus", "x", NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "unknown option '--bogus'"));
	ctl(&r, "--control", H.path, "--timeout", "soon", "x", NULL);
	ck_assert_int_eq(r.status, 2);
	ctl(&r, "--control", NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "needs a value"));
	ctl(&r, "--help", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "usage: vmhop ctl --control PATH"));
}
END_TEST

/* --help lists each option the man page documents, and the other way round. */
START_TEST(help_matches_man)
{
	const char *srcdir = getenv("VMHOP_SRCDIR");
	char path[1024];
	snprintf(path, sizeof(path), "%s/man/vmhop-ctl.1", srcdir ? srcdir : ".");
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	static char man[65536];
	size_t n = fread(man, 1, sizeof(man) - 1, f);
	man[n] = '\0';
	fclose(f);
	struct result r;
	ctl(&r, "--help", NULL);
	static const char *const opts[] = { "control", "json", "timeout", "raw", "help" };
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		char help_form[64], man_form[64];
		snprintf(help_form, sizeof(help_form), "--%s", opts[i]);
		snprintf(man_form, sizeof(man_form), "\\-\\-%s", opts[i]);
		ck_assert_msg(strstr(r.out, help_form), "--help lacks %s", help_form);
		ck_assert_msg(strstr(man, man_form), "man page lacks %s", help_form);
	}
	ck_assert_ptr_nonnull(strstr(r.out, "default 30"));
	ck_assert_ptr_nonnull(strstr(man, "default 30"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("control-cli");
	TCase *tc = tcase_create("ctl");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, prints_result);
	tcase_add_test(tc, json_output);
	tcase_add_test(tc, argument_values);
	tcase_add_test(tc, error_reply);
	tcase_add_test(tc, raw_requests);
	tcase_add_test(tc, query_commands);
	tcase_add_test(tc, connection_errors);
	tcase_add_test(tc, usage_errors);
	tcase_add_test(tc, help_matches_man);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
