/* Incremental checkpoints. Every checkpoint carries a `snapshot-chain`
 * section right after the VM configuration: its own random id, and for an
 * incremental one the id and file name of its base. After each checkpoint
 * the VM process keeps a dirty log running (the tracker), so the next
 * incremental holds only the pages written since; a migration or a live
 * checkpoint, which need the dirty log themselves, end the tracking and the
 * next checkpoint must be a full one. */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "snapshot/snapshot-internal.h"
#include "vmhop/blk-track.h"
#include "vmhop/dirty-log.h"
#include "vmhop/virtio-blk.h"
#include "vmhop/vm.h"

struct snapshot_tracker {
	struct dirty_log dl;
	uint64_t *bm;
	struct snapshot_chain_info last;	/* the VM's last checkpoint */
	char last_path[PATH_MAX];
	/* The blocks each writable disk's guest writes since then, and
	 * whether that checkpoint held the disks (disks=include). */
	struct blk_track disk[VM_MAX_DISKS];
	bool disks_included;
};

static void untrack_disks(struct vm *vm, struct snapshot_tracker *t)
{
	for (unsigned i = 0; i < vm->nr_blk; i++)
		if (t->disk[i].bits) {
			virtio_blk__set_tracker(vm->blk[i], BLK_TRACKER_CHECKPOINT, NULL);
			blk_track__free(&t->disk[i]);
		}
}

static const struct section_field chain_fields[] = {
	SECTION_BYTES(struct snapshot_chain_info, uuid, 1),
	SECTION_BYTES(struct snapshot_chain_info, base_uuid, 1),
	SECTION_U32(struct snapshot_chain_info, seq, 1),
	SECTION_BYTES(struct snapshot_chain_info, base_name, 1),
	SECTION_FIELDS_END
};

static const struct section_desc chain_desc = {
	.name = SNAPSHOT_CHAIN_SECTION, .version = 1, .min_version = 1, .fields = chain_fields,
};

int snapshot_chain__new(struct snapshot_chain_info *c, struct err *e)
{
	memset(c, 0, sizeof(*c));
	if (getrandom(c->uuid, sizeof(c->uuid), 0) != (ssize_t)sizeof(c->uuid))
		return err__setsys(e, errno, "making a checkpoint id");
	return 0;
}

bool snapshot_chain__is_full(const struct snapshot_chain_info *c)
{
	static const uint8_t zero[sizeof(c->base_uuid)];
	return !memcmp(c->base_uuid, zero, sizeof(zero));
}

int snapshot_chain__write(struct stream_writer *w, struct snapshot_chain_info *c, struct err *e)
{
	struct section_registry reg;
	section__registry_init(&reg);
	int rc = section__register(&reg, &chain_desc, 0, c, e);
	if (!rc)
		rc = section__save_one(&reg, w, SNAPSHOT_CHAIN_SECTION, e);
	section__registry_free(&reg);
	return rc;
}

int snapshot_chain__is_chain(const uint8_t *payload, size_t len, uint64_t base)
{
	struct section_info info;
	struct err ignore = { 0 };
	return section__parse_info(payload, len, base, &info, &ignore) == 0 &&
	       !strcmp(info.name, SNAPSHOT_CHAIN_SECTION);
}

int snapshot_chain__decode(const uint8_t *payload, size_t len, uint64_t base,
			   struct snapshot_chain_info *c, struct err *e)
{
	struct section_registry reg;
	section__registry_init(&reg);
	memset(c, 0, sizeof(*c));
	int rc = section__register(&reg, &chain_desc, 0, c, e);
	if (!rc)
		rc = section__decode(&reg, payload, len, base, e);
	section__registry_free(&reg);
	c->base_name[sizeof(c->base_name) - 1] = 0;
	if (!rc && !snapshot_chain__is_full(c) &&
	    (!c->base_name[0] || strchr(c->base_name, '/')))
		rc = err__set(e, EINVAL, "the checkpoint names its base '%s', not a file name",
			      c->base_name);
	return rc;
}

/* ---- the tracker, owned by the VM process ---------------------------------- */

void snapshot__track_drop(struct vm *vm)
{
	struct snapshot_tracker *t = vm->ckpt;
	if (!t)
		return;
	struct err ignore = { 0 };
	untrack_disks(vm, t);
	dirty_log__stop(&t->dl, &ignore);
	dirty_log__destroy(&t->dl);
	free(t->bm);
	free(t);
	vm->ckpt = NULL;
}

/* A tracker whose dirty log starts now. */
static struct snapshot_tracker *new_tracker(struct vm *vm, struct err *e)
{
	struct snapshot_tracker *t = calloc(1, sizeof(*t));
	if (!t) {
		err__set(e, ENOMEM, "out of memory");
		return NULL;
	}
	dirty_log__init(&t->dl, &vm->mem, vm->vm_fd);
	t->bm = calloc(dirty_log__bitmap_words(&t->dl), sizeof(uint64_t));
	struct err ignore = { 0 };
	(void)dirty_log__enable_manual_protect(&t->dl, false, &ignore);
	if (t->bm ? dirty_log__start(&t->dl, e) : err__set(e, ENOMEM, "out of memory")) {
		dirty_log__destroy(&t->dl);
		free(t->bm);
		free(t);
		return NULL;
	}
	return t;
}

bool snapshot_track__arm(struct vm *vm)
{
	if (vm->ckpt)
		return false;
	struct err ignore = { 0 };
	/* No last checkpoint yet (last_path empty): nothing can build on it. */
	vm->ckpt = new_tracker(vm, &ignore);
	return vm->ckpt != NULL;
}

/* Whatever the log holds from before this instant is fetched, write-
 * protected again and forgotten: writes from now on are reported. */
static int forget_until_now(struct vm *vm, struct snapshot_tracker *t, struct err *e)
{
	int rc = dirty_log__fetch(&t->dl, t->bm, e);
	if (!rc)
		rc = dirty_log__clear(&t->dl, t->bm, 0, vm->mem.nr_pages, e);
	memset(t->bm, 0, dirty_log__bitmap_words(&t->dl) * sizeof(uint64_t));
	untrack_disks(vm, t);
	memset(t->disk, 0, sizeof(t->disk));
	return rc;
}

int snapshot_track__restart(struct vm *vm, const struct snapshot_chain_info *c, const char *path,
			    struct err *e)
{
	/* A log that runs already (the last checkpoint's, or one armed before
	 * the pause) is kept: turning logging off and on re-registers every
	 * slot and write-protects all of RAM, inside the guest's pause. */
	struct snapshot_tracker *t = vm->ckpt;
	int rc = 0;
	if (t && t->dl.logging) {
		rc = forget_until_now(vm, t, e);
	} else {
		snapshot__track_drop(vm);
		if (!(t = new_tracker(vm, e)))
			return -e->code;
		vm->ckpt = t;
	}
	/* The file is not under its name yet: resolve its directory. */
	char *copy = strdup(path);
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
	if (!rc && !copy)
		rc = err__set(e, ENOMEM, "out of memory");
	if (!rc && !realpath(dirname(copy), dir))
		rc = err__setsys(e, errno, "%s", path);
	if (!rc && (size_t)snprintf(t->last_path, sizeof(t->last_path), "%s/%s", dir, name) >=
		   sizeof(t->last_path))
		rc = err__set(e, ENAMETOOLONG, "%s: path too long", path);
	free(copy);
	/* The guest is paused: the disks' changes count from this instant too. */
	for (unsigned i = 0; !rc && i < vm->nr_blk; i++)
		if (!vm->cfg->disks[i].readonly && (rc = blk_track__init(&t->disk[i], vm->blk[i]->disk->size, e)) == 0)
			virtio_blk__set_tracker(vm->blk[i], BLK_TRACKER_CHECKPOINT, &t->disk[i]);
	if (rc < 0) {
		snapshot__track_drop(vm);
		return rc;
	}
	t->last = *c;
	return 0;
}

void snapshot_track__set_disks(struct vm *vm, bool included)
{
	if (vm->ckpt)
		vm->ckpt->disks_included = included;
}

int snapshot_track__disk_changes(struct vm *vm, unsigned index, uint64_t *bits, struct err *e)
{
	struct snapshot_tracker *t = vm->ckpt;
	if (!t || !t->disks_included)
		return err__set(e, EINVAL, "the base checkpoint holds no disks, so an incremental one "
				"cannot hold only their changes: take a full checkpoint with --disks include");
	if (index >= vm->nr_blk || !t->disk[index].bits)
		return err__set(e, EINVAL, "disk %u is not tracked", index);
	blk_track__take(&t->disk[index], bits);
	return 0;
}

int snapshot_track__check_base(struct vm *vm, const char *base, struct snapshot_chain_info *out,
			       struct err *e)
{
	struct snapshot_tracker *t = vm->ckpt;
	char real[PATH_MAX];
	if (!realpath(base, real))
		return err__setsys(e, errno, "base %s", base);
	if (!t || !t->last_path[0])
		return err__set(e, EINVAL, "base %s: this VM has no checkpoint to build on since it "
				"started, migrated or took a live checkpoint: take a full one", base);
	if (strcmp(real, t->last_path))
		return err__set(e, EINVAL, "base %s is not this VM's last checkpoint (%s is): take a "
				"full checkpoint, or use that one as the base", base, t->last_path);
	struct snapshot_chain_info onfile;
	int rc = snapshot_chain__read_file(real, &onfile, e);
	if (rc < 0)
		return rc;
	if (memcmp(onfile.uuid, t->last.uuid, sizeof(onfile.uuid)))
		return err__set(e, EINVAL, "base %s was replaced since this VM wrote it: take a full "
				"checkpoint", base);
	const char *slash = strrchr(real, '/'), *name = slash ? slash + 1 : real;
	memset(out, 0, sizeof(*out));
	if (strlen(name) >= sizeof(out->base_name))
		return err__set(e, ENAMETOOLONG, "base %s: the file name is longer than %zu bytes",
				base, sizeof(out->base_name) - 1);
	memcpy(out->base_uuid, t->last.uuid, sizeof(out->base_uuid));
	out->seq = t->last.seq + 1;
	memcpy(out->base_name, name, strlen(name) + 1);
	return 0;
}

uint64_t *snapshot_track__fetch(struct vm *vm, struct err *e)
{
	struct snapshot_tracker *t = vm->ckpt;
	if (dirty_log__fetch(&t->dl, t->bm, e) < 0)
		return NULL;
	return t->bm;
}
