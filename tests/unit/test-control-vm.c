/* The VM's control commands against a fake VM: this file defines the few
 * vm.h functions the handlers call, so the linker takes them from here and
 * never pulls the real VM (and KVM) out of libvmhop.a. */
#include <check.h>
#include <string.h>

#include "vmhop/control-vm.h"
#include "vmhop/migrate.h"
#include "vmhop/snapshot.h"
#include "vmhop/util.h"

static struct {
	int pauses, resumes, forced_resumes, shutdowns, quits;
	int fail_pause;
} calls;

/* control-vm.c's table names the snapshot handler; a stand-in keeps the real
 * one (and the VM code it needs) out of this fake-VM test. */
int snapshot__control_create(void *ctx, struct json_object *args, struct json_object **result,
			     struct err *e)
{
	return err__set(e, ENOTSUP, "not in this test");
}

/* The same for the migration commands. */
int migrate__control_start(void *ctx, struct json_object *args, struct control_call *call,
			   struct err *e)
{
	return err__set(e, ENOTSUP, "not in this test");
}

int migrate__control_query(void *ctx, struct json_object *args, struct json_object **result,
			   struct err *e)
{
	return err__set(e, ENOTSUP, "not in this test");
}

int migrate__control_cancel(void *ctx, struct json_object *args, struct json_object **result,
			    struct err *e)
{
	return err__set(e, ENOTSUP, "not in this test");
}

enum vm_state vm__state(struct vm *vm)
{
	return vm->state;
}

int vm__pause(struct vm *vm, struct err *e)
{
	if (calls.fail_pause)
		return err__set(e, EIO, "pause failed for a test");
	calls.pauses++;
	vm->state = VM_PAUSED;
	return 0;
}

int vm__resume(struct vm *vm, struct err *e)
{
	calls.resumes++;
	vm->state = VM_RUNNING;
	return 0;
}

int vm__resume_forced(struct vm *vm, struct err *e)
{
	calls.forced_resumes++;
	vm->state = VM_RUNNING;
	return 0;
}

int vm__request_shutdown(struct vm *vm, struct err *e)
{
	calls.shutdowns++;
	return 0;
}

void vm__quit(struct vm *vm)
{
	calls.quits++;
	if (vm->state == VM_RUNNING || vm->state == VM_PAUSED || vm->state == VM_CREATED)
		vm->state = VM_QUIT;
}

static struct vm vm;
static struct vm_config cfg;

static void setup(void)
{
	memset(&calls, 0, sizeof(calls));
	memset(&vm, 0, sizeof(vm));
	vm_config__init(&cfg);
	snprintf(cfg.name, sizeof(cfg.name), "testvm");
	cfg.kernel = strdup("/boot/guest.elf");
	vm.cfg = &cfg;
	vm.state = VM_RUNNING;
	vm.started_ns = util__now_ns() - 1500 * 1000000ULL;
}

static void teardown(void)
{
	vm_config__free(&cfg);
}

/* Runs a command the way the server does (args taken, NULL for none);
 * returns rc, *out the result. */
static int run_args(const char *name, struct json_object *args, struct json_object **out,
		    struct err *e)
{
	size_t n;
	const struct control_cmd *t = control_vm__commands(&n);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(t[i].name, name))
			continue;
		if (!args)
			args = json_object_new_object();
		*out = NULL;
		int r = t[i].fn(&vm, args, out, e);
		json_object_put(args);
		return r;
	}
	ck_abort_msg("no command %s", name);
	return -1;
}

static int run(const char *name, struct json_object **out, struct err *e)
{
	return run_args(name, NULL, out, e);
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	ck_assert_msg(json_object_object_get_ex(o, key, &v), "no %s", key);
	return json_object_get_string(v);
}

/* After a migration's go the VM is handed off: query-status says so and
 * only resume force=true takes the forced path. */
START_TEST(handed_off_resume)
{
	struct json_object *r;
	struct err e = { 0 };
	vm.state = VM_PAUSED;
	vm.handed_off = true;
	ck_assert_int_eq(run("query-status", &r, &e), 0);
	struct json_object *v;
	ck_assert(json_object_object_get_ex(r, "handed_off", &v) && json_object_get_boolean(v));
	json_object_put(r);
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "force", json_object_new_string("yes"));
	ck_assert_int_eq(run_args("resume", args, &r, &e), -EINVAL);
	args = json_object_new_object();
	json_object_object_add(args, "force", json_object_new_boolean(1));
	ck_assert_int_eq(run_args("resume", args, &r, &e), 0);
	ck_assert_int_eq(calls.forced_resumes, 1);
	ck_assert_int_eq(calls.resumes, 0);
}
END_TEST

START_TEST(table_complete)
{
	size_t n;
	const struct control_cmd *t = control_vm__commands(&n);
	static const char *const want[] = { "query-status", "pause", "resume", "shutdown", "quit",
					    "query-config" };
	for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
		bool found = false;
		for (size_t i = 0; i < n; i++)
			if (!strcmp(t[i].name, want[w])) {
				found = true;
				ck_assert(t[i].fn && t[i].help && t[i].help[0]);
			}
		ck_assert_msg(found, "missing %s", want[w]);
	}
}
END_TEST

START_TEST(status_pause_resume)
{
	struct err e = { 0 };
	struct json_object *r;
	ck_assert_int_eq(run("query-status", &r, &e), 0);
	ck_assert_str_eq(get_str(r, "status"), "running");
	ck_assert_str_eq(get_str(r, "running"), "true");
	ck_assert_str_eq(get_str(r, "name"), "testvm");
	struct json_object *up;
	ck_assert(json_object_object_get_ex(r, "uptime_ms", &up));
	ck_assert_int_ge(json_object_get_int64(up), 1500);
	json_object_put(r);

	ck_assert_int_eq(run("pause", &r, &e), 0);
	ck_assert_int_eq(run("pause", &r, &e), 0);	/* idempotent */
	ck_assert_int_eq(calls.pauses, 1);
	ck_assert_int_eq(run("query-status", &r, &e), 0);	/* answers while paused */
	ck_assert_str_eq(get_str(r, "status"), "paused");
	ck_assert_str_eq(get_str(r, "running"), "false");
	json_object_put(r);
	ck_assert_int_eq(run("resume", &r, &e), 0);
	ck_assert_int_eq(run("resume", &r, &e), 0);
	ck_assert_int_eq(calls.resumes, 1);
	ck_assert_int_eq(vm.state, VM_RUNNING);
}
END_TEST

START_TEST(errors_from_vm)
{
	struct err e = { 0 };
	struct json_object *r;
	calls.fail_pause = 1;
	ck_assert_int_eq(run("pause", &r, &e), -EIO);
	ck_assert_str_eq(e.msg, "pause failed for a test");
	err__clear(&e);
	vm.state = VM_SHUTDOWN;
	ck_assert_int_eq(run("resume", &r, &e), -EBUSY);
	ck_assert_str_eq(e.msg, "cannot resume: the VM is shutdown");
	err__clear(&e);
	ck_assert_int_eq(run("shutdown", &r, &e), -EBUSY);
	err__clear(&e);
	ck_assert_int_eq(run("query-status", &r, &e), 0);
	ck_assert_str_eq(get_str(r, "status"), "shutdown");
	json_object_put(r);
}
END_TEST

START_TEST(shutdown_and_quit)
{
	struct err e = { 0 };
	struct json_object *r;
	ck_assert_int_eq(run("shutdown", &r, &e), 0);
	ck_assert_int_eq(calls.shutdowns, 1);
	ck_assert_int_eq(run("quit", &r, &e), 0);
	ck_assert_int_eq(calls.quits, 1);
	ck_assert_int_eq(vm.state, VM_QUIT);
	ck_assert_int_eq(run("quit", &r, &e), 0);	/* quitting twice is fine */
}
END_TEST

START_TEST(query_config)
{
	struct err e = { 0 };
	struct json_object *r;
	ck_assert_int_eq(run("query-config", &r, &e), 0);
	ck_assert_str_eq(get_str(r, "name"), "testvm");
	ck_assert_str_eq(get_str(r, "kernel"), "/boot/guest.elf");
	struct json_object *mem;
	ck_assert(json_object_object_get_ex(r, "memory", &mem));
	ck_assert_uint_eq(json_object_get_uint64(mem), 512 * MiB);
	json_object_put(r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("control-vm");
	TCase *tc = tcase_create("commands");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, table_complete);
	tcase_add_test(tc, status_pause_resume);
	tcase_add_test(tc, handed_off_resume);
	tcase_add_test(tc, errors_from_vm);
	tcase_add_test(tc, shutdown_and_quit);
	tcase_add_test(tc, query_config);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
