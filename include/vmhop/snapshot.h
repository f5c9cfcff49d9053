/* Checkpoints of a VM into a file in the stream format, and VMs rebuilt from
 * them. The file is written under a temporary name and renamed only once it
 * is complete and on disk, so a crash or a full disk never leaves a half
 * file under the final name. */
#ifndef VMHOP_SNAPSHOT_H
#define VMHOP_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"

struct vm;
struct vm_config;

struct snapshot_stats {
	uint64_t bytes;			/* file size */
	uint8_t uuid[16];		/* this checkpoint's id */
	bool incremental;
	uint64_t pages_zero, pages_raw, pages_zstd;
	uint64_t pause_ns;		/* vCPUs stopped for the checkpoint */
	uint64_t total_ns;
};

/* Pauses the VM (if running), writes every state section and all RAM to
 * path, resumes it. Refuses an existing path. With `live` the guest runs
 * while its memory is written (pre-copy rounds into the file) and is paused
 * only for the last pages and the device state. */
struct snapshot_create_opts {
	bool compress;
	bool live;
	const char *base;	/* incremental since this checkpoint (the VM's last) */
	bool include_disks;	/* the writable disks' contents too */
};
int snapshot__create(struct vm *vm, const char *path, const struct snapshot_create_opts *o,
		     struct snapshot_stats *st, struct err *e);
/* Ends the dirty tracking kept since the VM's last checkpoint (a migration
 * needs the dirty log); the next checkpoint must be a full one. */
void snapshot__track_drop(struct vm *vm);

/* Settings of the restoring process that are not the checkpoint's. */
#define SNAPSHOT_MAX_MAPS 16

/* How a restore puts guest memory in place: lazily (the vCPUs start while
 * pages are filled on first touch and in the background, lazy-mem.h),
 * eagerly (all copied before the vCPUs start), or auto: lazily unless this
 * host is so slow that the fill would take longer than a second (measured
 * by the checking pass), when the guest would stall on first touches for
 * that long. */
enum snapshot_fill {
	SNAPSHOT_FILL_AUTO,
	SNAPSHOT_FILL_LAZY,
	SNAPSHOT_FILL_EAGER,
};

struct snapshot_restore_opts {
	const char *serial;		/* "stdio", "none", "file:PATH"; NULL keeps stdio */
	const char *control;		/* control socket path or NULL */
	const char *const *maps;	/* "OLD=NEW" disk path rewrites */
	unsigned nr_maps;
	enum snapshot_fill fill;
};

/* Builds a VM from a checkpoint file, ready for vm_loop__run. The release
 * level is checked at the header, before anything else is read. */
int snapshot__restore(const char *path, const struct snapshot_restore_opts *o,
		      struct vm **out, struct vm_config **cfg_out, struct err *e);

/* The control socket's snapshot-create handler (ctx is the struct vm). */
struct json_object;
int snapshot__control_create(void *ctx, struct json_object *args, struct json_object **result,
			     struct err *e);

#endif
