/* The change record of a disk that arrived by copy: PATH.vmhop-changes, the
 * blocks written since arrival (the arrival tracker of vmm/blk-track.c) and
 * the copy's generation, saved when the VM ends on this host and taken back
 * by the next VM booted on the image (vmhop run), so a VM restarted from cold
 * can still move back with --incremental-disks.
 *
 * The record is only good for the image exactly as it was saved: it holds
 * the image's size, device, inode and mtime, and a VM that finds any of them
 * changed (the file was written or replaced meanwhile) drops the record with
 * a warning. A VM takes the record when it opens the image and removes it at
 * once: from then on its own tracker is the truth, and a VM that ends
 * without saving (killed, or moved away) leaves nothing that could be
 * believed later. Only regular files get one: a block device's mtime does
 * not show writes. Layout: vmm/blk-changes.c; for users: DISK COPY in
 * vmhop-migrate-send(1). */
#ifndef VMHOP_BLK_CHANGES_H
#define VMHOP_BLK_CHANGES_H

#include <stddef.h>

#include "vmhop/blk-track.h"
#include "vmhop/err.h"

#define BLK_CHANGES_SUFFIX ".vmhop-changes"

/* Loads the record beside `path` (open as image_fd) into t (initialised for
 * the image's size) and gen (gen_size bytes). Returns 1 when taken, 0 when
 * there is none or it did not match (then it is removed and *why says so),
 * -errno when it cannot be read or removed. */
int blk_changes__take(const char *path, int image_fd, struct blk_track *t, char *gen,
		      size_t gen_size, struct err *why);
/* Writes the record for `path` from t: the image is made durable first, the
 * record goes through a temporary file, fsync and rename. */
int blk_changes__save(const char *path, int image_fd, const char *gen, const struct blk_track *t,
		      struct err *e);

#endif
