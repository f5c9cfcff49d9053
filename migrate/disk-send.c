/* The source's half of a disk copy (disk-copy.h). Runs on the migration
 * engine's thread; the device thread only sets bits in the trackers. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migrate/disk-copy.h"
#include "vmhop/dirty-log.h"
#include "vmhop/disk-sections.h"
#include "vmhop/migrate-proto.h"
#include "vmhop/util.h"
#include "vmhop/virtio-blk.h"
#include "vmhop/vm.h"

#define CHUNK DISK_SECTIONS_CHUNK
#define BLOCK BLK_TRACK_BLOCK

static struct migrate_disk_stats *stats(struct disk_send *ds, unsigned k)
{
	return &ds->st[k];
}

static void add_sent(struct disk_send *ds, unsigned k, uint64_t bytes, uint64_t blocks)
{
	pthread_mutex_lock(ds->lock);
	stats(ds, k)->bytes_sent += bytes;
	stats(ds, k)->blocks_resent += blocks;
	pthread_mutex_unlock(ds->lock);
}

static int find_disk(const struct vm_config *cfg, const char *id)
{
	for (unsigned i = 0; i < cfg->nr_disks; i++)
		if (!strcmp(cfg->disks[i].id, id))
			return (int)i;
	return -1;
}

int disk_send__select(struct disk_send *ds, struct vm *vm, const struct migrate_params *p,
		      struct err *e)
{
	const struct vm_config *cfg = vm->cfg;
	bool want[VM_MAX_DISKS] = { false };
	for (unsigned k = 0; k < p->nr_copy_disks; k++) {
		int i = find_disk(cfg, p->copy_disks[k]);
		if (i < 0)
			return err__set(e, ENOENT, "--copy-disk %s: the VM has no disk with that id",
					p->copy_disks[k]);
		if (cfg->disks[i].readonly)
			return err__set(e, EINVAL, "--copy-disk %s: the disk is read-only; put it on "
					"storage both hosts can read", p->copy_disks[k]);
		want[i] = true;
	}
	for (unsigned i = 0; p->copy_all_disks && i < cfg->nr_disks; i++)
		want[i] |= !cfg->disks[i].readonly;
	ds->n = 0;
	for (unsigned i = 0; i < cfg->nr_disks; i++) {
		if (!want[i])
			continue;
		struct disk_send_one *d = &ds->d[ds->n];
		memset(d, 0, sizeof(*d));
		d->index = i;
		d->fd = -1;
		d->blk = vm->blk[i];
		d->size = d->blk->disk->size;
		/* Incremental where this VM keeps the disk's changes since it
		 * arrived; the destination confirms it still has that copy. */
		d->mode = p->incremental_disks && cfg->disks[i].gen[0] &&
				  d->blk->track[BLK_TRACKER_ARRIVAL] ? DISK_INCREMENTAL : DISK_COPIED;
		if (p->incremental_disks && d->mode != DISK_INCREMENTAL && !p->full_copy_fallback)
			return err__set(e, EINVAL, "disk %s: no incremental copy possible: nothing "
					"records what changed (the disk did not arrive here by a disk "
					"copy, or its change record was dropped when the VM started); "
					"allow a full copy with --full-copy-fallback", cfg->disks[i].id);
		uint8_t rnd[16];
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return err__setsys(e, errno, "getrandom");
		disk_copy__hex(rnd, sizeof(rnd), d->gen);
		struct migrate_disk_stats *s = stats(ds, ds->n);
		pthread_mutex_lock(ds->lock);
		memset(s, 0, sizeof(*s));
		snprintf(s->id, sizeof(s->id), "%s", cfg->disks[i].id);
		snprintf(s->mode, sizeof(s->mode), "%s", disk_copy__mode_name(d->mode));
		s->size = d->size;
		pthread_mutex_unlock(ds->lock);
		ds->n++;
	}
	return 0;
}

struct json_object *disk_send__hello(const struct disk_send *ds, const struct vm *vm)
{
	if (!ds->n)
		return NULL;
	struct json_object *a = json_object_new_array();
	for (unsigned k = 0; a && k < ds->n; k++) {
		const struct disk_send_one *d = &ds->d[k];
		struct json_object *o = json_object_new_object();
		if (!o)
			break;
		json_object_object_add(o, "index", json_object_new_int((int)d->index));
		json_object_object_add(o, "id", json_object_new_string(vm->cfg->disks[d->index].id));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)d->size));
		json_object_object_add(o, "mode", json_object_new_string(disk_copy__mode_name(d->mode)));
		json_object_object_add(o, "gen", json_object_new_string(d->gen));
		if (d->mode == DISK_INCREMENTAL)
			json_object_object_add(o, "base_gen",
					       json_object_new_string(vm->cfg->disks[d->index].gen));
		json_object_array_add(a, o);
	}
	return a;
}

int disk_send__apply_reply(struct disk_send *ds, struct json_object *reply, struct err *e)
{
	struct json_object *a;
	if (!ds->n)
		return 0;
	if (!json_object_object_get_ex(reply, "disks", &a) || !json_object_is_type(a, json_type_array) ||
	    json_object_array_length(a) != ds->n)
		return err__set(e, EPROTO, "the destination did not answer for the copied disks "
				"(an older vmhop?)");
	for (unsigned k = 0; k < ds->n; k++) {
		const char *mode = mig__str(json_object_array_get_idx(a, k), "mode");
		mode = mode ? mode : "";
		if (!strcmp(mode, "copied")) {
			ds->d[k].mode = DISK_COPIED;
		} else if (strcmp(mode, "incremental") || ds->d[k].mode != DISK_INCREMENTAL) {
			return err__set(e, EPROTO, "the destination answered mode '%s' for disk %u",
					mode, ds->d[k].index);
		}
		pthread_mutex_lock(ds->lock);
		snprintf(stats(ds, k)->mode, sizeof(stats(ds, k)->mode), "%s",
			 disk_copy__mode_name(ds->d[k].mode));
		pthread_mutex_unlock(ds->lock);
	}
	return 0;
}

static int open_image(struct disk_send_one *d, const struct disk_config *dc, struct err *e)
{
	/* Our own descriptor: the VM's disk struct belongs to its device
	 * thread. O_DIRECT keeps the copy from flooding the page cache. */
	d->fd = open(dc->path, O_RDONLY | O_CLOEXEC | (dc->cache_none ? O_DIRECT : 0));
	if (d->fd < 0 && errno == EINVAL && dc->cache_none)
		d->fd = open(dc->path, O_RDONLY | O_CLOEXEC);
	if (d->fd < 0)
		return err__setsys(e, errno, "disk %s: opening %s to copy it", dc->id, dc->path);
	return 0;
}

int disk_send__start(struct disk_send *ds, struct vm *vm, struct err *e)
{
	if (ds->n && posix_memalign((void **)&ds->buf, 4096, CHUNK))
		return err__set(e, ENOMEM, "out of memory");
	for (unsigned k = 0; k < ds->n; k++) {
		struct disk_send_one *d = &ds->d[k];
		int rc = open_image(d, &vm->cfg->disks[d->index], e);
		if (rc < 0)
			return rc;
		if ((rc = blk_track__init(&d->track, d->size, e)) < 0)
			return rc;
		size_t words = blk_track__words(&d->track);
		d->pending = calloc(words ? words : 1, sizeof(uint64_t));
		d->taken = calloc(words ? words : 1, sizeof(uint64_t));
		if (!d->pending || !d->taken)
			return err__set(e, ENOMEM, "out of memory");
		if (d->mode == DISK_INCREMENTAL) {
			/* Everything written since arrival, then what comes. */
			d->src = d->blk->track[BLK_TRACKER_ARRIVAL];
			blk_track__take(d->src, d->pending);
			memcpy(d->taken, d->pending, words * sizeof(uint64_t));
		} else {
			/* Before the bulk pass reads anything: a block it reads
			 * before the guest rewrites it is sent again. */
			d->src = &d->track;
			virtio_blk__set_tracker(d->blk, BLK_TRACKER_COPY, &d->track);
		}
	}
	return 0;
}

/* len bytes of the image at off, in buf, into disk-data sections. With
 * skip_zero (the bulk pass into a new, empty copy) all-zero 64 KiB blocks
 * are left out: they are holes there already. */
static int send_buf(struct disk_send *ds, unsigned k, struct stream_writer *w, uint64_t off,
		    const uint8_t *buf, uint32_t n, bool skip_zero, struct err *e)
{
	struct disk_send_one *d = &ds->d[k];
	uint32_t a = 0;
	while (a < n) {
		uint32_t b = a;
		/* A run of blocks to send: [a, b). */
		while (b < n) {
			uint32_t step = (uint32_t)MIN((uint64_t)BLOCK - (off + b) % BLOCK, (uint64_t)(n - b));
			if (skip_zero && disk_copy__all_zero(buf + b, step))
				break;
			b += step;
		}
		if (b > a) {
			int rc = disk_sections__write_data(w, d->index, off + a, buf + a, b - a, e);
			if (rc < 0)
				return rc;
			add_sent(ds, k, b - a, 0);
		}
		/* Skip the zero block that ended the run. */
		if (b < n)
			b += (uint32_t)MIN((uint64_t)BLOCK - (off + b) % BLOCK, (uint64_t)(n - b));
		a = b;
	}
	return 0;
}

static int read_error(struct disk_send *ds, unsigned k, uint64_t off, int err, struct err *e)
{
	const struct disk_config *dc = &ds->d[k].blk->vm->cfg->disks[ds->d[k].index];
	return err__setsys(e, err, "disk %s: reading %s at %llu", dc->id, dc->path,
			   (unsigned long long)off);
}

/* [off, off + len) of the image, read now, into disk-data sections. */
static int send_range(struct disk_send *ds, unsigned k, struct stream_writer *w, uint64_t off,
		      uint64_t len, bool skip_zero, struct err *e)
{
	struct disk_send_one *d = &ds->d[k];
	while (len) {
		uint32_t n = (uint32_t)MIN((uint64_t)CHUNK, len);
		ssize_t got = pread(d->fd, ds->buf, ALIGN_UP((size_t)n, 4096), (off_t)off);
		if (got < 0 || (uint64_t)got < n)
			return read_error(ds, k, off, got < 0 ? errno : EIO, e);
		int rc = send_buf(ds, k, w, off, ds->buf, n, skip_zero, e);
		if (rc < 0)
			return rc;
		off += n;
		len -= n;
	}
	return 0;
}

static int send_blocks(struct disk_send *ds, unsigned k, struct stream_writer *w, bool resend,
		       struct err *e)
{
	struct disk_send_one *d = &ds->d[k];
	uint64_t nb = d->track.nblocks;
	uint64_t a = dirty_bitmap__next(d->pending, nb, 0);
	uint64_t blocks = 0;
	while (a < nb) {
		uint64_t b = dirty_bitmap__next_clear(d->pending, nb, a);
		uint64_t off = a * BLOCK, end = MIN(b * BLOCK, d->size);
		dirty_bitmap__clear_range(d->pending, a, b - a);
		int rc = send_range(ds, k, w, off, end - off, false, e);
		if (rc < 0)
			return rc;
		blocks += b - a;
		a = dirty_bitmap__next(d->pending, nb, b);
	}
	if (blocks) {
		pthread_mutex_lock(ds->lock);
		stats(ds, k)->rounds++;
		if (resend)
			stats(ds, k)->blocks_resent += blocks;
		pthread_mutex_unlock(ds->lock);
	}
	return 0;
}

/* A full copy's bulk: the image's data extents only (SEEK_DATA/SEEK_HOLE),
 * and of those the blocks that are not all zero, so holes stay holes on the
 * destination. A block device has no holes to ask for: all of it is read. */
static int list_chunks(struct disk_send *ds, unsigned k, struct disk_chunk **out, size_t *count,
		       struct err *e)
{
	struct disk_send_one *d = &ds->d[k];
	const struct disk_config *dc = &d->blk->vm->cfg->disks[d->index];
	struct disk_chunk *v = NULL;
	size_t n = 0, cap = 0;
	uint64_t off = 0;
	while (off < d->size) {
		off_t data = lseek(d->fd, (off_t)off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		off_t hole = data < 0 ? -1 : lseek(d->fd, data, SEEK_HOLE);
		if (data < 0 && errno == EINVAL) {
			data = (off_t)off;
			hole = (off_t)d->size;
		}
		if (data < 0 || hole < 0) {
			free(v);
			return err__setsys(e, errno, "disk %s: finding the data in %s", dc->id, dc->path);
		}
		uint64_t a = (uint64_t)data & ~4095ULL, end = MIN(ALIGN_UP((uint64_t)hole, 4096), d->size);
		for (; a < end; a += CHUNK) {
			if (n == cap) {
				cap = cap ? 2 * cap : 64;
				struct disk_chunk *nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					free(v);
					return err__set(e, ENOMEM, "out of memory");
				}
				v = nv;
			}
			v[n++] = (struct disk_chunk){ a, (uint32_t)MIN((uint64_t)CHUNK, end - a) };
		}
		off = end;
	}
	*out = v;
	*count = n;
	return 0;
}

/* A full copy's bulk: the image's data extents only (SEEK_DATA/SEEK_HOLE),
 * and of those the blocks that are not all zero, so holes stay holes on the
 * destination. A block device has no holes to ask for: all of it is read.
 * The reads run ahead on their own thread. */
static int bulk_extents(struct disk_send *ds, unsigned k, struct stream_writer *w,
			int (*after_first)(void *), void *opaque, bool *first, struct err *e)
{
	struct disk_chunk *v = NULL;
	size_t n = 0;
	struct readahead *ra = NULL;
	int rc = list_chunks(ds, k, &v, &n, e);
	if (rc < 0)
		return rc;
	if (n && (rc = readahead__start(&ra, ds->d[k].fd, v, n, e)) < 0) {
		free(v);
		return rc;
	}
	const uint8_t *buf;
	const struct disk_chunk *c;
	while (!rc && n && (rc = readahead__next(ra, &buf, &c)) != 0) {
		if (rc < 0) {
			rc = read_error(ds, k, c->off, -rc, e);
			break;
		}
		rc = send_buf(ds, k, w, c->off, buf, c->len, true, e);
		if (!rc && *first) {
			*first = false;
			rc = after_first(opaque);
		}
	}
	readahead__stop(ra);
	free(v);
	return rc;
}

int disk_send__bulk(struct disk_send *ds, struct stream_writer *w,
		    int (*after_first)(void *opaque), void *opaque, struct err *e)
{
	bool first = true;
	for (unsigned k = 0; k < ds->n; k++) {
		struct disk_send_one *d = &ds->d[k];
		struct disk_image_sec im = { .index = d->index, .size = d->size };
		snprintf((char *)im.id, sizeof(im.id), "%s", d->blk->vm->cfg->disks[d->index].id);
		uint64_t t0 = util__now_ns();
		int rc = disk_sections__write_image(w, &im, e);
		if (rc < 0)
			return rc;
		if (d->mode == DISK_INCREMENTAL)
			rc = send_blocks(ds, k, w, false, e);
		else
			rc = bulk_extents(ds, k, w, after_first, opaque, &first, e);
		if (rc < 0)
			return rc;
		d->bulk_done = true;
		d->bulk_ns = util__now_ns() - t0;
		pthread_mutex_lock(ds->lock);
		stats(ds, k)->bulk_ns = d->bulk_ns;
		pthread_mutex_unlock(ds->lock);
	}
	return 0;
}

uint64_t disk_send__collect(struct disk_send *ds)
{
	for (unsigned k = 0; k < ds->n; k++) {
		struct disk_send_one *d = &ds->d[k];
		if (d->mode == DISK_INCREMENTAL) {
			uint64_t words = blk_track__words(&d->track);
			uint64_t *fresh = d->taken;	/* what is new is also kept */
			for (uint64_t i = 0; i < words; i++) {
				uint64_t v = atomic_exchange(&d->src->bits[i], 0);
				d->pending[i] |= v;
				fresh[i] |= v;
			}
		} else {
			blk_track__take(d->src, d->pending);
		}
	}
	return disk_send__pending_bytes(ds);
}

uint64_t disk_send__pending_bytes(const struct disk_send *ds)
{
	uint64_t n = 0;
	for (unsigned k = 0; k < ds->n; k++)
		n += dirty_bitmap__count(ds->d[k].pending, ds->d[k].track.nblocks) * BLOCK;
	return n;
}

int disk_send__send_pending(struct disk_send *ds, struct stream_writer *w, struct err *e)
{
	for (unsigned k = 0; k < ds->n; k++) {
		int rc = send_blocks(ds, k, w, true, e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int disk_send__digests(struct disk_send *ds, struct stream_writer *w, struct err *e)
{
	for (unsigned k = 0; k < ds->n; k++) {
		struct disk_send_one *d = &ds->d[k];
		struct disk_digest_sec dg = { .index = d->index };
		int rc = disk_copy__digest(d->fd, d->size, dg.sha256, e);
		if (rc < 0)
			return rc;
		pthread_mutex_lock(ds->lock);
		disk_copy__hex(dg.sha256, 32, stats(ds, k)->sha256_src);
		pthread_mutex_unlock(ds->lock);
		if ((rc = disk_sections__write_digest(w, &dg, e)) < 0)
			return rc;
	}
	return 0;
}

/* PATH.vmhop-gen: the generation the destination's copy started from and
 * this image as it was left, so a later incremental move back can tell
 * whether anything touched it since. */
static void record_generation(const struct disk_send_one *d, const struct disk_config *dc)
{
	struct stat st;
	char path[4200], tmp[4220];
	if (fstat(d->fd, &st) < 0)
		return;
	snprintf(path, sizeof(path), "%s%s", dc->path, DISK_GEN_SUFFIX);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "we");
	if (!f)
		return;
	fprintf(f, "{\"gen\":\"%s\",\"size\":%llu,\"dev\":%llu,\"ino\":%llu,\"mtime_ns\":%lld}\n",
		d->gen, (unsigned long long)st.st_size, (unsigned long long)st.st_dev,
		(unsigned long long)st.st_ino,
		(long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
	if (fflush(f) || fsync(fileno(f)) < 0 || fclose(f) || rename(tmp, path) < 0)
		unlink(tmp);
}

void disk_send__finish(struct disk_send *ds, bool completed)
{
	for (unsigned k = 0; k < ds->n; k++) {
		struct disk_send_one *d = &ds->d[k];
		if (d->mode != DISK_INCREMENTAL && d->src)
			virtio_blk__set_tracker(d->blk, BLK_TRACKER_COPY, NULL);
		/* A failed incremental move must still find every change. */
		if (d->mode == DISK_INCREMENTAL && d->src && !completed)
			blk_track__give_back(d->src, d->taken);
		if (completed && d->fd >= 0)
			record_generation(d, &d->blk->vm->cfg->disks[d->index]);
		if (d->fd >= 0)
			close(d->fd);
		d->fd = -1;
		blk_track__free(&d->track);
		free(d->pending);
		free(d->taken);
		d->pending = d->taken = NULL;
		d->src = NULL;
	}
	free(ds->buf);
	ds->buf = NULL;
}
