/* Disk rules: writable disks on shared storage use cache=none (the source's
 * page cache would hold writes the destination never sees), and every disk
 * not copied is reachable on the destination at its (mapped) path, the same
 * size and the same file. A copied disk is read back through this host's
 * page cache and made durable on the destination, so any cache mode is safe. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vmhop/compat.h"

void compat_rule__disk_cache(struct compat_ctx *c)
{
	const struct vm_config *vm = c->vm;
	if (!vm->nr_disks) {
		compat__row(c, "disk-cache", COMPAT_PASS, NULL, "no disks");
		return;
	}
	for (unsigned i = 0; i < vm->nr_disks; i++) {
		const struct disk_config *d = &vm->disks[i];
		if (d->readonly)
			compat__row(c, "disk-cache", COMPAT_PASS, NULL,
				    "disk %s: read-only, any cache mode is safe", d->id);
		else if (d->cache_none)
			compat__row(c, "disk-cache", COMPAT_PASS, NULL, "disk %s: cache=none", d->id);
		else if (c->opts->disk_copied && c->opts->disk_copied[i])
			compat__row(c, "disk-cache", COMPAT_PASS, NULL,
				    "disk %s: cache=writeback, copied with the VM (read back through this "
				    "host's page cache)", d->id);
		else if (c->opts->unsafe)
			compat__row(c, "disk-cache", COMPAT_WARN,
				    "restart the VM with cache=none before the next move",
				    "disk %s: cache=writeback on a writable disk, allowed by --unsafe: writes cached on the source may be lost",
				    d->id);
		else
			compat__row(c, "disk-cache", COMPAT_FAIL,
				    "restart the VM with cache=none or pass --unsafe",
				    "disk %s: cache=writeback; writable disks must use cache=none to migrate safely",
				    d->id);
	}
}

static const struct compat_disk_view *view(const struct host_profile *p, const char *id)
{
	if (!p->have_disks)
		return NULL;
	for (size_t i = 0; i < p->ndisks; i++)
		if (!strcmp(p->disks[i].id, id))
			return &p->disks[i];
	return NULL;
}

static void one(struct compat_ctx *c, unsigned i)
{
	static const char share[] =
		"put the disk on storage both hosts share, or map its path on the destination (migrate-recv --disk-map OLD=NEW)";
	const struct disk_config *d = &c->vm->disks[i];
	if (c->opts->disk_copied && c->opts->disk_copied[i]) {
		compat__row(c, "disk-reach", COMPAT_PASS, NULL, "disk %s: copied with the VM, not checked", d->id);
		return;
	}
	const struct compat_disk_view *dv = view(c->dst, d->id), *sv = view(c->src, d->id);
	if (!dv) {
		compat__row(c, "disk-reach", COMPAT_WARN,
			    "record the destination's profile with 'vmhop host-profile --vm-config FILE' there, or make sure the path is on shared storage",
			    "disk %s: not checked: the destination's profile has no view of %s", d->id, d->path);
		return;
	}
	if (!dv->exists) {
		compat__row(c, "disk-reach", COMPAT_FAIL, share,
			    "disk %s: %s cannot be opened as a disk on the destination", d->id, dv->path);
		return;
	}
	if (!d->readonly && !dv->writable) {
		compat__row(c, "disk-reach", COMPAT_FAIL,
			    "give the destination's vmhop write access to the disk",
			    "disk %s: %s is not writable on the destination", d->id, dv->path);
		return;
	}
	if (!sv || !sv->exists) {
		compat__row(c, "disk-reach", COMPAT_WARN,
			    "record the source's profile with 'vmhop host-profile --vm-config FILE' to compare the two views",
			    "disk %s: %s exists on the destination (%" PRIu64 " bytes); identity not compared: the source's profile has no view of it",
			    d->id, dv->path, dv->size);
		return;
	}
	if (sv->size != dv->size) {
		compat__row(c, "disk-reach", COMPAT_FAIL, share,
			    "disk %s: size differs: %" PRIu64 " bytes at %s on the source, %" PRIu64 " bytes at %s on the destination",
			    d->id, sv->size, sv->path, dv->size, dv->path);
		return;
	}
	bool same_boot = c->src->boot_id[0] && !strcmp(c->src->boot_id, c->dst->boot_id);
	if (same_boot && (sv->dev != dv->dev || sv->ino != dv->ino)) {
		compat__row(c, "disk-reach", COMPAT_FAIL, share,
			    "disk %s: %s on the destination is another file than %s on the source (same host, different device/inode)",
			    d->id, dv->path, sv->path);
		return;
	}
	/* On one host the inode says it all; the head of a disk in use may
	 * change between the two views. */
	if (!same_boot && sv->head_sha256[0] && dv->head_sha256[0] &&
	    strcmp(sv->head_sha256, dv->head_sha256)) {
		compat__row(c, "disk-reach", COMPAT_WARN,
			    "check that both hosts see the same shared disk (the guest may also have written between the two profiles)",
			    "disk %s: the first 64 KiB of %s differ between the source's and the destination's view",
			    d->id, dv->path);
		return;
	}
	compat__row(c, "disk-reach", COMPAT_PASS, NULL,
		    "disk %s: %s on the destination, same size (%" PRIu64 " bytes) and %s", d->id,
		    dv->path, dv->size, same_boot ? "the same file" : "the same first 64 KiB");
}

void compat_rule__disk_reach(struct compat_ctx *c)
{
	if (!c->vm->nr_disks) {
		compat__row(c, "disk-reach", COMPAT_PASS, NULL, "no disks");
		return;
	}
	for (unsigned i = 0; i < c->vm->nr_disks; i++)
		one(c, i);
}
