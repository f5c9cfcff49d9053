/* The control commands of a VM process: a table for control__start() whose
 * ctx is the struct vm. Handlers run on the loop's thread while the vCPU
 * threads run, so they go through vm.h's locked API only. */
#include <string.h>

#include "vmhop/control-vm.h"
#include "vmhop/migrate.h"
#include "vmhop/snapshot.h"
#include "vmhop/util.h"
#include "vmhop/vm-config-json.h"

/* The protocol's names, kept here rather than borrowed from vm.h's
 * vm__state_name() so that clients' view cannot change by accident. */
static const char *status_name(enum vm_state s)
{
	switch (s) {
	case VM_CREATED: return "created";
	case VM_RUNNING: return "running";
	case VM_PAUSED: return "paused";
	case VM_SHUTDOWN: return "shutdown";
	case VM_QUIT: return "quit";
	case VM_CRASHED: return "crashed";
	case VM_MIGRATED: return "migrated";
	}
	return "unknown";
}

static int query_status(void *ctx, struct json_object *args, struct json_object **result,
			struct err *e)
{
	struct vm *vm = ctx;
	enum vm_state st = vm__state(vm);
	/* started_ns is written before the vCPUs start and never again. */
	uint64_t up = vm->started_ns ? (util__now_ns() - vm->started_ns) / 1000000 : 0;
	struct json_object *o = json_object_new_object();
	if (!o)
		return err__set(e, ENOMEM, "out of memory");
	json_object_object_add(o, "status", json_object_new_string(status_name(st)));
	json_object_object_add(o, "running", json_object_new_boolean(st == VM_RUNNING));
	json_object_object_add(o, "name", json_object_new_string(vm->cfg ? vm->cfg->name : ""));
	json_object_object_add(o, "uptime_ms", json_object_new_uint64(up));
	pthread_mutex_lock(&vm->lock);
	bool handed_off = vm->handed_off;
	pthread_mutex_unlock(&vm->lock);
	if (handed_off)
		json_object_object_add(o, "handed_off", json_object_new_boolean(true));
	*result = o;
	return 0;
}

/* pause and resume are idempotent, as in QMP: asking for the state the VM is
 * already in is not an error. */
static int do_pause(void *ctx, struct json_object *args, struct json_object **result,
		    struct err *e)
{
	struct vm *vm = ctx;
	enum vm_state st = vm__state(vm);
	if (st == VM_PAUSED)
		return 0;
	if (st != VM_RUNNING)
		return err__set(e, EBUSY, "cannot pause: the VM is %s", status_name(st));
	pthread_mutex_lock(&vm->lock);
	bool migrating = vm->migrating;
	pthread_mutex_unlock(&vm->lock);
	if (migrating)
		return err__set(e, EBUSY, "cannot pause: a migration is running (migrate-cancel stops it)");
	return vm__pause(vm, e);
}

static int do_resume(void *ctx, struct json_object *args, struct json_object **result,
		     struct err *e)
{
	struct vm *vm = ctx;
	enum vm_state st = vm__state(vm);
	if (st == VM_RUNNING)
		return 0;
	if (st != VM_PAUSED)
		return err__set(e, EBUSY, "cannot resume: the VM is %s", status_name(st));
	bool force = false;
	int r = control__arg_bool(args, "resume", "force", &force, e);
	if (r < 0)
		return r;
	return force ? vm__resume_forced(vm, e) : vm__resume(vm, e);
}

static int do_shutdown(void *ctx, struct json_object *args, struct json_object **result,
		       struct err *e)
{
	struct vm *vm = ctx;
	enum vm_state st = vm__state(vm);
	if (vm__state_ended(st))
		return err__set(e, EBUSY, "cannot shut down: the VM is %s", status_name(st));
	return vm__request_shutdown(vm, e);
}

static int do_quit(void *ctx, struct json_object *args, struct json_object **result,
		   struct err *e)
{
	/* Always succeeds, even on an ended VM: the caller wants the process
	 * gone, and vm__quit's first-caller-wins rule keeps the real cause. */
	vm__quit(ctx);
	return 0;
}

static int query_config(void *ctx, struct json_object *args, struct json_object **result,
			struct err *e)
{
	struct vm *vm = ctx;
	if (!vm->cfg)
		return err__set(e, ENODATA, "the VM has no configuration");
	if (vm_config__to_json(vm->cfg, result))
		return err__set(e, ENOMEM, "out of memory");
	return 0;
}

static const char *const snapshot_params[] = { "path", "compress", "disks", "live", "base", NULL };
static const char *const resume_params[] = { "force", NULL };
static const char *const migrate_params[] = {
	"uri", "max_downtime_ms", "max_bandwidth", "compress", "auto_converge", "timeout",
	"io_timeout", "unsafe", "check_only", "fault", "tls_ca", "tls_cert", "tls_key", "tls_name",
	"copy_disks", "copy_all_disks", "verify_disks", "incremental_disks", "full_copy_fallback",
	"channels", NULL
};

static const struct control_cmd vm_commands[] = {
	{ "query-status", query_status, "state of the VM: status, running, name, uptime_ms", NULL, NULL },
	{ "pause", do_pause, "stop every vCPU (the VM keeps its state)", NULL, NULL },
	{ "resume", do_resume, "run the vCPUs again after pause (force: even after a migration's go)",
	  resume_params, NULL },
	{ "shutdown", do_shutdown, "ask the guest to power off", NULL, NULL },
	{ "quit", do_quit, "stop the VM now and end the process", NULL, NULL },
	{ "query-config", query_config, "the VM's configuration", NULL, NULL },
	{ "snapshot-create", snapshot__control_create,
	  "checkpoint the VM to a new file: path, compress, live, base, disks=include|external", snapshot_params, NULL },
	{ "migrate", NULL,
	  "live-migrate to uri (tcp:HOST:PORT, tls:HOST:PORT, unix:PATH); replies when done: "
	  "max_downtime_ms, max_bandwidth, compress, auto_converge, timeout, io_timeout, unsafe, "
	  "check_only (pre-flight only), tls_ca, tls_cert, tls_key, tls_name (tls:)", migrate_params, migrate__control_start },
	{ "query-migrate", migrate__control_query, "progress or result of the last migration", NULL, NULL },
	{ "migrate-cancel", migrate__control_cancel,
	  "stop a running migration before its commit; the guest keeps running here", NULL, NULL },
};

const struct control_cmd *control_vm__commands(size_t *n)
{
	*n = ARRAY_SIZE(vm_commands);
	return vm_commands;
}
