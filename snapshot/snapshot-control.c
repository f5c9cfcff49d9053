/* The snapshot-create request of the control socket. */
#include <json-c/json.h>
#include <string.h>

#include "vmhop/control.h"
#include "vmhop/snapshot.h"
#include "vmhop/vm.h"

int snapshot__control_create(void *ctx, struct json_object *args, struct json_object **result,
			     struct err *e)
{
	struct vm *vm = ctx;
	const char *path = NULL, *disks = NULL;
	bool compress = false;
	int r = control__arg_str(args, "snapshot-create", "path", 4096, &path, e);
	if (r == 0)
		return err__set(e, EINVAL, "snapshot-create: 'path' is required");
	if (r < 0)
		return r;
	if (control__arg_bool(args, "snapshot-create", "compress", &compress, e) < 0)
		return -EINVAL;
	bool live = false;
	if (control__arg_bool(args, "snapshot-create", "live", &live, e) < 0)
		return -EINVAL;
	if (control__arg_str(args, "snapshot-create", "disks", 16, &disks, e) < 0)
		return -EINVAL;
	if (disks && strcmp(disks, "external") && strcmp(disks, "include"))
		return err__set(e, EINVAL, "snapshot-create: disks must be 'include' or 'external'");
	bool writable = false;
	for (unsigned i = 0; i < vm->cfg->nr_disks; i++)
		writable |= !vm->cfg->disks[i].readonly;
	/* Memory without its disks as they were at that instant is no checkpoint. */
	if (writable && !disks)
		return err__set(e, EINVAL, "the VM has writable disks: choose disks=include (store "
				"them in the checkpoint) or disks=external (you snapshot them yourself)");

	pthread_mutex_lock(&vm->lock);
	bool migrating = vm->migrating;
	pthread_mutex_unlock(&vm->lock);
	if (migrating)
		return err__set(e, EBUSY, "a migration is running: checkpoint after it ends");
	struct snapshot_stats st;
	const char *base = NULL;
	if (control__arg_str(args, "snapshot-create", "base", 4096, &base, e) < 0)
		return -EINVAL;
	struct snapshot_create_opts co = { .compress = compress, .live = live, .base = base,
					   .include_disks = writable && !strcmp(disks, "include") };
	r = snapshot__create(vm, path, &co, &st, e);
	if (r < 0)
		return r;
	struct json_object *o = json_object_new_object();
	if (!o)
		return err__set(e, ENOMEM, "out of memory");
	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "bytes", json_object_new_uint64(st.bytes));
	json_object_object_add(o, "pages_zero", json_object_new_uint64(st.pages_zero));
	json_object_object_add(o, "pages_raw", json_object_new_uint64(st.pages_raw));
	json_object_object_add(o, "pages_compressed", json_object_new_uint64(st.pages_zstd));
	json_object_object_add(o, "pause_ms", json_object_new_double((double)st.pause_ns / 1e6));
	json_object_object_add(o, "total_ms", json_object_new_double((double)st.total_ns / 1e6));
	json_object_object_add(o, "live", json_object_new_boolean(live));
	char id[33];
	for (size_t i = 0; i < sizeof(st.uuid); i++)
		snprintf(id + 2 * i, 3, "%02x", st.uuid[i]);
	json_object_object_add(o, "uuid", json_object_new_string(id));
	if (base)
		json_object_object_add(o, "base", json_object_new_string(base));
	json_object_object_add(o, "disks", json_object_new_string(!writable ? "none" :
				co.include_disks ? "include" : "external"));
	*result = o;
	return 0;
}
