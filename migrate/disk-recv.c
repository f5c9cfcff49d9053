/* The destination's half of a disk copy (disk-copy.h): where each copied
 * disk goes, the files it creates (and only those it removes), the data
 * written as it comes, durability before `ready`, digests when asked. */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migrate/disk-copy.h"
#include "vmhop/disk-sections.h"
#include "vmhop/migrate-proto.h"
#include "vmhop/util.h"

#define PARTIAL_SUFFIX ".vmhop-partial"
#define WRITEBACK_STEP (8ULL << 20)

static int64_t num(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

/* --disk-map ID=PATH, else --disk-dir DIR (DIR/ID.img). */
static int target(const struct migrate_recv_opts *o, const char *id, char *out, size_t size,
		  struct err *e)
{
	for (unsigned k = 0; k < o->nr_maps; k++)
		if (!strcmp(o->map_from[k], id)) {
			snprintf(out, size, "%s", o->map_to[k]);
			return 0;
		}
	if (o->disk_dir) {
		snprintf(out, size, "%s/%s.img", o->disk_dir, id);
		return 0;
	}
	return err__set(e, EINVAL, "disk %s is copied with the VM: give migrate-recv --disk-dir DIR "
			"or --disk-map %s=PATH for its copy", id, id);
}

/* Does PATH still hold the copy the VM left, generation base_gen? NULL
 * when it does, else why not (into why). */
static const char *same_generation(const char *path, const char *base_gen, char *why, size_t size)
{
	char rec[4200];
	snprintf(rec, sizeof(rec), "%s%s", path, DISK_GEN_SUFFIX);
	struct json_object *j = json_object_from_file(rec);
	struct stat st;
	if (!j) {
		snprintf(why, size, "%.1024s has no record of the copy the VM left there (%.1100s is "
			 "missing or unreadable)", path, rec);
		return why;
	}
	const char *gen = mig__str(j, "gen");
	bool match = gen && base_gen && !strcmp(gen, base_gen);
	if (!match) {
		snprintf(why, size, "%.1024s holds generation %.32s, but the VM's disk descends from %.32s",
			 path, gen ? gen : "(none)", base_gen ? base_gen : "(none)");
	} else if (stat(path, &st) < 0 || (int64_t)st.st_size != num(j, "size") ||
		   (int64_t)st.st_ino != num(j, "ino") || (int64_t)st.st_dev != num(j, "dev") ||
		   (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec != num(j, "mtime_ns")) {
		snprintf(why, size, "%.1024s was modified (or replaced) after the VM left it", path);
		match = false;
	}
	json_object_put(j);
	return match ? NULL : why;
}

static int create_image(struct disk_recv_one *d, const char *path, bool dry_run, struct err *e)
{
	snprintf(d->path, sizeof(d->path), "%s", path);
	if (dry_run) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s", path);
		if (access(dirname(dir), W_OK) < 0)
			return err__setsys(e, errno, "disk %s: cannot create its copy in %s", d->id, dir);
		return 0;
	}
	d->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (d->fd < 0)
		return err__setsys(e, errno, "disk %s: creating %s", d->id, path);
	d->created = true;
	if (ftruncate(d->fd, (off_t)d->size) < 0)
		return err__setsys(e, errno, "disk %s: sizing %s", d->id, path);
	return 0;
}

static int plan_one(struct disk_recv_one *d, struct json_object *o, const struct migrate_recv_opts *mo,
		    bool fallback, bool dry_run, struct err *e)
{
	const char *id = mig__str(o, "id"), *mode = mig__str(o, "mode"), *gen = mig__str(o, "gen");
	int64_t index = num(o, "index"), size = num(o, "size");
	if (!id || !mode || !gen || index < 0 || index >= VM_MAX_DISKS || size <= 0 ||
	    strlen(id) >= sizeof(d->id) || strlen(gen) >= sizeof(d->gen))
		return err__set(e, EPROTO, "the source's hello describes a copied disk badly");
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->gen, sizeof(d->gen), "%s", gen);
	d->index = (unsigned)index;
	d->size = (uint64_t)size;
	d->fd = -1;
	char path[4096];
	int rc = target(mo, id, path, sizeof(path), e);
	if (rc < 0)
		return rc;
	struct stat st;
	bool exists = lstat(path, &st) == 0;
	if (!strcmp(mode, "copied")) {
		d->mode = DISK_COPIED;
		if (exists)
			return err__set(e, EEXIST, "disk %s: %s exists; migrate-recv never writes over a "
					"file it did not create: remove it, or give another --disk-dir "
					"or --disk-map", id, path);
		return create_image(d, path, dry_run, e);
	}
	if (strcmp(mode, "incremental"))
		return err__set(e, EPROTO, "the source asks for disk mode '%s'", mode);
	char why[4600];
	const char *bad = exists ? same_generation(path, mig__str(o, "base_gen"), why, sizeof(why)) : NULL;
	if (exists && !bad) {
		if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != d->size)
			return err__set(e, EINVAL, "disk %s: %s is not a %llu-byte image", id, path,
					(unsigned long long)d->size);
		d->mode = DISK_INCREMENTAL;
		snprintf(d->path, sizeof(d->path), "%s", path);
		if (dry_run)
			return 0;
		d->fd = open(path, O_RDWR | O_CLOEXEC);
		return d->fd < 0 ? err__setsys(e, errno, "disk %s: opening %s", id, path) : 0;
	}
	if (!fallback)
		return err__set(e, ESTALE, "disk %s: no incremental copy: %s; allow a full copy with "
				"migrate-send --full-copy-fallback", id,
				bad ? bad : "there is no earlier copy at that path");
	d->mode = DISK_COPIED;
	if (!exists)
		return create_image(d, path, dry_run, e);
	/* The old copy stays untouched until go, then the new one replaces it. */
	char partial[4200];
	snprintf(d->final, sizeof(d->final), "%s", path);
	snprintf(partial, sizeof(partial), "%s%s", path, PARTIAL_SUFFIX);
	if (strlen(partial) >= sizeof(d->path))
		return err__set(e, ENAMETOOLONG, "disk %s: path too long", id);
	if (!lstat(partial, &st))
		return err__set(e, EEXIST, "disk %s: %s exists (left by an earlier migration?); remove it",
				id, partial);
	return create_image(d, partial, dry_run, e);
}

int disk_recv__plan(struct disk_recv *dr, struct json_object *hello, const struct migrate_recv_opts *o,
		    bool dry_run, struct err *e)
{
	struct json_object *a;
	memset(dr, 0, sizeof(*dr));
	for (unsigned k = 0; k < VM_MAX_DISKS; k++)
		dr->d[k].fd = -1;
	dr->verify = mig__flag(hello, "verify_disks");
	if (!json_object_object_get_ex(hello, "disks", &a))
		return 0;
	if (!json_object_is_type(a, json_type_array) || json_object_array_length(a) > VM_MAX_DISKS)
		return err__set(e, EPROTO, "the source's hello lists its copied disks badly");
	bool fallback = mig__flag(hello, "full_copy_fallback");
	for (size_t k = 0; k < json_object_array_length(a); k++) {
		int rc = plan_one(&dr->d[k], json_object_array_get_idx(a, k), o, fallback, dry_run, e);
		dr->n = (unsigned)k + 1;
		if (rc < 0) {
			disk_recv__abort(dr);
			return rc;
		}
	}
	return 0;
}

struct json_object *disk_recv__reply(const struct disk_recv *dr)
{
	struct json_object *a = json_object_new_array();
	for (unsigned k = 0; a && k < dr->n; k++) {
		struct json_object *o = json_object_new_object();
		if (!o)
			break;
		json_object_object_add(o, "id", json_object_new_string(dr->d[k].id));
		json_object_object_add(o, "mode", json_object_new_string(disk_copy__mode_name(dr->d[k].mode)));
		json_object_object_add(o, "path", json_object_new_string(dr->d[k].final[0] ?
									 dr->d[k].final : dr->d[k].path));
		json_object_array_add(a, o);
	}
	return a;
}

int disk_recv__apply(const struct disk_recv *dr, struct vm_config *cfg, struct err *e)
{
	for (unsigned k = 0; k < dr->n; k++) {
		const struct disk_recv_one *d = &dr->d[k];
		if (d->index >= cfg->nr_disks || strcmp(cfg->disks[d->index].id, d->id))
			return err__set(e, EPROTO, "disk %s: the stream's VM has no such disk at index %u",
					d->id, d->index);
		char *p = strdup(d->path);
		if (!p)
			return err__set(e, ENOMEM, "out of memory");
		free(cfg->disks[d->index].path);
		cfg->disks[d->index].path = p;
		snprintf(cfg->disks[d->index].gen, sizeof(cfg->disks[d->index].gen), "%s", d->gen);
	}
	return 0;
}

static struct disk_recv_one *by_index(struct disk_recv *dr, uint32_t index)
{
	for (unsigned k = 0; k < dr->n; k++)
		if (dr->d[k].index == index)
			return &dr->d[k];
	return NULL;
}

static int on_image(void *opaque, const struct disk_image_sec *im, struct err *e)
{
	struct disk_recv_one *d = by_index(opaque, im->index);
	if (!d || d->size != im->size)
		return err__set(e, EPROTO, "the stream announces disk %u (%llu bytes), which the "
				"hello did not", im->index, (unsigned long long)im->size);
	return 0;
}

static int on_data(void *opaque, uint32_t index, uint64_t off, const uint8_t *p, uint32_t len,
		   struct err *e)
{
	struct disk_recv *dr = opaque;
	struct disk_recv_one *d = by_index(dr, index);
	if (!d || d->fd < 0)
		return err__set(e, EPROTO, "disk data for disk %u, which is not being copied", index);
	if (off > d->size || len > d->size - off)
		return err__set(e, EPROTO, "disk %s: %u bytes at %llu do not fit its %llu bytes", d->id,
				len, (unsigned long long)off, (unsigned long long)d->size);
	if (d->mode == DISK_INCREMENTAL && !d->bytes) {
		/* From the first write the old copy is no longer the one the
		 * record describes. */
		char rec[4200];
		snprintf(rec, sizeof(rec), "%s%s", d->path, DISK_GEN_SUFFIX);
		if (unlink(rec) < 0 && errno != ENOENT)
			return err__setsys(e, errno, "disk %s: removing %s", d->id, rec);
	}
	if (util__pwrite_all(d->fd, p, len, (off_t)off) < 0)
		return err__setsys(e, errno, "disk %s: writing %s", d->id, d->path);
	d->bytes += len;
	d->synced = false;
	dr->dirty = true;
	/* Start writing back what arrived (without waiting), so the sync
	 * before ready, inside the guest's pause, finds little left. */
	if (d->bytes - d->flushed_at >= WRITEBACK_STEP) {
		(void)sync_file_range(d->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		d->flushed_at = d->bytes;
	}
	return 0;
}

static int on_digest(void *opaque, const struct disk_digest_sec *dg, struct err *e)
{
	struct disk_recv_one *d = by_index(opaque, dg->index);
	if (!d)
		return err__set(e, EPROTO, "a digest for disk %u, which is not being copied", dg->index);
	memcpy(d->src_digest, dg->sha256, 32);
	d->have_src_digest = true;
	return 0;
}

int disk_recv__section(struct disk_recv *dr, const uint8_t *payload, size_t len, uint64_t base,
		       struct err *e)
{
	const struct disk_sections_sink sink = { .opaque = dr, .image = on_image, .data = on_data,
						 .digest = on_digest };
	/* image and digest get the whole set; data looks up its disk. */
	struct disk_sections_sink s = sink;
	return disk_sections__decode(payload, len, base, &s, e);
}

int disk_recv__sync(struct disk_recv *dr, struct err *e)
{
	if (!dr->dirty)
		return 0;
	for (unsigned k = 0; k < dr->n; k++) {
		struct disk_recv_one *d = &dr->d[k];
		if (d->fd >= 0 && !d->synced) {
			if (fdatasync(d->fd) < 0)
				return err__setsys(e, errno, "disk %s: making %s durable", d->id, d->path);
			d->synced = true;
		}
	}
	dr->dirty = false;
	return 0;
}

int disk_recv__finish(struct disk_recv *dr, struct err *e)
{
	int rc = disk_recv__sync(dr, e);
	for (unsigned k = 0; !rc && k < dr->n; k++) {
		struct disk_recv_one *d = &dr->d[k];
		if (d->created && fsync(d->fd) < 0)	/* its size and allocation too */
			rc = err__setsys(e, errno, "disk %s: making %s durable", d->id, d->path);
		if (rc || !dr->verify)
			continue;
		if (!d->have_src_digest)
			return err__set(e, EPROTO, "disk %s: --verify-disks, but the source sent no digest",
					d->id);
		if ((rc = disk_copy__digest(d->fd, d->size, d->digest, e)) < 0)
			break;
		if (memcmp(d->digest, d->src_digest, 32)) {
			char a[65], b[65];
			disk_copy__hex(d->src_digest, 32, a);
			disk_copy__hex(d->digest, 32, b);
			rc = err__set(e, EIO, "disk %s: the copy differs from the source (SHA-256 %.16s... "
				      "here, %.16s... there)", d->id, b, a);
		}
	}
	return rc;
}

struct json_object *disk_recv__ready(const struct disk_recv *dr)
{
	struct json_object *a = json_object_new_array();
	for (unsigned k = 0; a && k < dr->n; k++) {
		struct json_object *o = json_object_new_object();
		if (!o)
			break;
		char hex[65] = "";
		if (dr->verify)
			disk_copy__hex(dr->d[k].digest, 32, hex);
		json_object_object_add(o, "id", json_object_new_string(dr->d[k].id));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)dr->d[k].bytes));
		if (dr->verify)
			json_object_object_add(o, "sha256", json_object_new_string(hex));
		json_object_array_add(a, o);
	}
	return a;
}

static void close_all(struct disk_recv *dr)
{
	for (unsigned k = 0; k < dr->n; k++)
		if (dr->d[k].fd >= 0) {
			close(dr->d[k].fd);
			dr->d[k].fd = -1;
		}
}

int disk_recv__commit(struct disk_recv *dr, struct err *e)
{
	int rc = 0;
	close_all(dr);
	for (unsigned k = 0; k < dr->n; k++) {
		struct disk_recv_one *d = &dr->d[k];
		if (!d->final[0])
			continue;
		if (rename(d->path, d->final) < 0 && !rc)
			rc = err__setsys(e, errno, "disk %s: putting the copy in place of %s", d->id, d->final);
		char rec[4200];
		snprintf(rec, sizeof(rec), "%s%s", d->final, DISK_GEN_SUFFIX);
		unlink(rec);
	}
	dr->n = 0;
	return rc;
}

void disk_recv__abort(struct disk_recv *dr)
{
	close_all(dr);
	for (unsigned k = 0; k < dr->n; k++)
		if (dr->d[k].created)
			unlink(dr->d[k].path);
	dr->n = 0;
}
