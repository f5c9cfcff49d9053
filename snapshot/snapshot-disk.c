/* disks=include: the writable disks' contents in the checkpoint, so the
 * checkpoint is consistent with them (written while the vCPUs are stopped,
 * right after the chain section). Only the image's data extents are stored
 * (SEEK_DATA / SEEK_HOLE), in disk-data sections of up to 1 MiB, after one
 * disk-image section per disk giving its id and size. Restore creates each
 * image at its (mapped) path before the VM opens it, and never writes over
 * an existing file. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "snapshot/snapshot-internal.h"
#include "vmhop/disk-sections.h"
#include "vmhop/blk-track.h"
#include "vmhop/dirty-log.h"
#include "vmhop/disk.h"
#include "vmhop/util.h"
#include "vmhop/virtio-blk.h"
#include "vmhop/vm-config.h"
#include "vmhop/vm.h"

#define CHUNK DISK_SECTIONS_CHUNK

/* Restore side: the images being created, by disk index. */
struct disk_restore {
	int fd[VM_MAX_DISKS];
	char path[VM_MAX_DISKS][4096];
	uint64_t size[VM_MAX_DISKS];
	const struct vm_config *cfg;	/* while loading one section */
};

/* One disk's data extents, read through the VM's own disk (O_DIRECT with
 * its bounce rules), chunk by chunk. */
static int save_disk(struct stream_writer *w, struct disk *dk, uint32_t index, uint8_t *buf,
		     struct err *e)
{
	struct disk_image_sec im = { .index = index, .size = dk->size };
	memcpy(im.id, dk->id, sizeof(im.id) < sizeof(dk->id) ? sizeof(im.id) : sizeof(dk->id));
	int rc = disk_sections__write_image(w, &im, e);
	off_t off = 0, size = (off_t)dk->size;
	while (!rc && off < size) {
		off_t data = lseek(dk->fd, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		off_t hole = data < 0 ? -1 : lseek(dk->fd, data, SEEK_HOLE);
		if (data < 0 && errno == EINVAL) {	/* a block device: all data */
			data = off;
			hole = size;
		}
		if (data < 0 || hole < 0)
			return err__setsys(e, errno, "disk %s: finding its data", dk->id);
		/* Whole 4 KiB blocks, so O_DIRECT accepts every transfer. */
		uint64_t a = (uint64_t)data & ~4095ULL, end = ALIGN_UP((uint64_t)hole, 4096);
		if (end > dk->size)
			end = dk->size;
		for (; !rc && a < end; a += CHUNK) {
			uint32_t n = (uint32_t)MIN((uint64_t)CHUNK, end - a);
			struct iovec iov = { buf, n };
			if (disk__readv(dk, &iov, 1, a) < 0)
				return err__setsys(e, errno, "disk %s: reading it", dk->id);
			rc = disk_sections__write_data(w, index, a, buf, n, e);
		}
		off = (off_t)end;
	}
	return rc;
}

/* An incremental checkpoint: only the 64 KiB blocks written since the
 * base checkpoint (snapshot-chain.c's tracker); restore applies them onto
 * the image the chain's earlier links rebuild. */
static int save_changes(struct stream_writer *w, struct vm *vm, unsigned index, uint8_t *buf,
			struct err *e)
{
	struct disk *dk = vm->blk[index]->disk;
	uint64_t nblocks = (dk->size + BLK_TRACK_BLOCK - 1) >> BLK_TRACK_SHIFT;
	uint64_t *bits = calloc((nblocks + 63) / 64 ? (nblocks + 63) / 64 : 1, sizeof(uint64_t));
	if (!bits)
		return err__set(e, ENOMEM, "out of memory");
	struct disk_image_sec im = { .index = index, .size = dk->size, .changes_only = 1 };
	memcpy(im.id, dk->id, sizeof(im.id) < sizeof(dk->id) ? sizeof(im.id) : sizeof(dk->id));
	int rc = snapshot_track__disk_changes(vm, index, bits, e);
	if (!rc)
		rc = disk_sections__write_image(w, &im, e);
	for (uint64_t a = rc ? nblocks : dirty_bitmap__next(bits, nblocks, 0); a < nblocks;) {
		uint64_t b = dirty_bitmap__next_clear(bits, nblocks, a);
		uint64_t off = a << BLK_TRACK_SHIFT, end = MIN(b << BLK_TRACK_SHIFT, dk->size);
		for (; !rc && off < end; off += CHUNK) {
			uint32_t n = (uint32_t)MIN((uint64_t)CHUNK, end - off);
			struct iovec iov = { buf, n };
			int r = disk__readv(dk, &iov, 1, off);
			rc = r < 0 ? err__setsys(e, -r, "disk %s: reading it", dk->id) :
				     disk_sections__write_data(w, index, off, buf, n, e);
		}
		if (rc)
			break;
		a = dirty_bitmap__next(bits, nblocks, b);
	}
	free(bits);
	return rc;
}

int snapshot_disk__save(struct stream_writer *w, struct vm *vm, bool changes_only, struct err *e)
{
	uint8_t *buf = NULL;
	if (posix_memalign((void **)&buf, 4096, CHUNK))
		return err__set(e, ENOMEM, "out of memory");
	int rc = 0;
	for (unsigned i = 0; !rc && i < vm->nr_blk; i++)
		if (!vm->cfg->disks[i].readonly)
			rc = changes_only ? save_changes(w, vm, i, buf, e) :
					    save_disk(w, vm->blk[i]->disk, i, buf, e);
	free(buf);
	return rc;
}

int snapshot_disk__is_disk(const uint8_t *payload, size_t len, uint64_t base)
{
	return disk_sections__is_disk(payload, len, base);
}

struct disk_restore *snapshot_disk__restore_new(struct err *e)
{
	struct disk_restore *dr = calloc(1, sizeof(*dr));
	if (!dr) {
		err__set(e, ENOMEM, "out of memory");
		return NULL;
	}
	for (unsigned i = 0; i < VM_MAX_DISKS; i++)
		dr->fd[i] = -1;
	return dr;
}

/* A disk-image section: creates the image at the disk's (mapped) path,
 * never over an existing file. */
static int start_image(void *opaque, const struct disk_image_sec *im, struct err *e)
{
	struct disk_restore *dr = opaque;
	const struct vm_config *cfg = dr->cfg;
	if (im->index >= cfg->nr_disks)
		return err__set(e, EINVAL, "the checkpoint holds disk %u, which the VM does not have",
				im->index);
	if (dr->fd[im->index] >= 0) {
		/* A later link of the chain: its changes go onto the image. */
		if (!im->changes_only || dr->size[im->index] != im->size)
			return err__set(e, EINVAL, "the checkpoint holds disk %u twice, or a chain "
					"link holds it at another size", im->index);
		return 0;
	}
	const char *path = cfg->disks[im->index].path;
	/* An incremental checkpoint's changes go onto the image the chain's
	 * earlier links made. */
	if (im->changes_only)
		return err__set(e, EINVAL, "disk %s: the checkpoint holds only the blocks changed "
				"since its base, and no earlier link of the chain holds the disk",
				cfg->disks[im->index].id);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST)
		return err__set(e, EEXIST, "disk %s: %s exists; the checkpoint holds this disk's "
				"contents and restore never writes over a file: remove it, or restore "
				"to another path with --disk-map", cfg->disks[im->index].id, path);
	if (fd < 0)
		return err__setsys(e, errno, "disk %s: creating %s", cfg->disks[im->index].id, path);
	if (ftruncate(fd, (off_t)im->size) < 0) {
		int r = err__setsys(e, errno, "disk %s: sizing %s", cfg->disks[im->index].id, path);
		close(fd);
		unlink(path);
		return r;
	}
	dr->fd[im->index] = fd;
	dr->size[im->index] = im->size;
	snprintf(dr->path[im->index], sizeof(dr->path[im->index]), "%s", path);
	return 0;
}

static int write_data(void *opaque, uint32_t index, uint64_t off, const uint8_t *p, uint32_t len,
		      struct err *e)
{
	struct disk_restore *dr = opaque;
	if (index >= VM_MAX_DISKS || dr->fd[index] < 0)
		return err__set(e, EINVAL, "disk data for disk %u, which the checkpoint did not announce",
				index);
	if (off > dr->size[index] || len > dr->size[index] - off)
		return err__set(e, EINVAL, "disk %u: %u bytes at %llu do not fit the %llu-byte image",
				index, len, (unsigned long long)off,
				(unsigned long long)dr->size[index]);
	if (util__pwrite_all(dr->fd[index], p, len, (off_t)off) < 0)
		return err__setsys(e, errno, "writing %s", dr->path[index]);
	return 0;
}

int snapshot_disk__load(struct disk_restore *dr, const uint8_t *payload, size_t len,
			uint64_t base, const struct vm_config *cfg, struct err *e)
{
	const struct disk_sections_sink sink = { .opaque = dr, .image = start_image,
						 .data = write_data };
	dr->cfg = cfg;
	return disk_sections__decode(payload, len, base, &sink, e);
}

int snapshot_disk__sync(struct disk_restore *dr, struct err *e)
{
	for (unsigned i = 0; i < VM_MAX_DISKS; i++)
		if (dr->fd[i] >= 0 && fsync(dr->fd[i]) < 0)
			return err__setsys(e, errno, "writing %s", dr->path[i]);
	return 0;
}

int snapshot_disk__restore_end(struct disk_restore *dr, bool ok, struct err *e)
{
	int rc = 0;
	if (!dr)
		return 0;
	for (unsigned i = 0; i < VM_MAX_DISKS; i++) {
		if (dr->fd[i] < 0)
			continue;
		if (ok && !rc && fsync(dr->fd[i]) < 0)
			rc = err__setsys(e, errno, "writing %s", dr->path[i]);
		close(dr->fd[i]);
		/* A failed restore leaves no half-written image behind. */
		if (!ok || rc)
			unlink(dr->path[i]);
	}
	free(dr);
	return rc;
}
