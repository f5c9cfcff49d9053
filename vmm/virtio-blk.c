#define LOG_TAG "virtio-blk"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/blk-changes.h"
#include "vmhop/log.h"
#include "vmhop/util.h"
#include "vmhop/virtio-blk.h"
#include "vmhop/vm.h"

#define BLK_CLASS_CODE	0x010000	/* mass storage, as QEMU's virtio-blk */

static uint8_t do_rw(struct virtio_blk *blk, struct virtq *vq, const struct virtq_elem *elem,
		     uint64_t sector, bool write)
{
	struct disk *d = blk->disk;
	uint64_t len = write ? elem->out_len - sizeof(struct virtio_blk_outhdr) : elem->in_len - 1;
	uint64_t cap = d->size / DISK_SECTOR_SIZE;
	if (write && d->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (len % DISK_SECTOR_SIZE || sector > cap || len / DISK_SECTOR_SIZE > cap - sector)
		return VIRTIO_BLK_S_IOERR;
	int n = virtq__iov(elem, !write, write ? sizeof(struct virtio_blk_outhdr) : 0, len,
			   blk->iov, VIRTQ_MAX_SIZE);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR;
	uint64_t off = sector * DISK_SECTOR_SIZE;
	int r = write ? disk__writev(d, blk->iov, n, off) : disk__readv(d, blk->iov, n, off);
	/* After the write, even a failed one (part of it may have landed):
	 * see blk-track.h. */
	for (unsigned i = 0; write && i < BLK_TRACKERS; i++)
		if (blk->track[i])
			blk_track__mark(blk->track[i], off, len);
	if (!write) {
		/* Even a failed read may have filled part of the buffers. */
		virtq__mark_in_dirty(vq, elem, 0, len);
		blk->stats.reads++;
		blk->stats.bytes_read += r < 0 ? 0 : len;
	} else {
		blk->stats.writes++;
		blk->stats.bytes_written += r < 0 ? 0 : len;
	}
	return r < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

/* Serves one request. Returns -EIO (with *why) when the chain cannot carry
 * a request at all: then there is not even a status byte to answer in. */
static int serve(struct virtio_blk *blk, struct virtq *vq, const struct virtq_elem *elem,
		 uint32_t *used_len, const char **why)
{
	struct virtio_blk_outhdr hdr;
	if (elem->out_len < sizeof(hdr) || elem->in_len < 1) {
		*why = "virtio-blk request without header or status byte";
		return -EIO;
	}
	virtq__read_out(elem, 0, &hdr, sizeof(hdr));
	uint64_t status_off = elem->in_len - 1;
	uint8_t status;
	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
		status = do_rw(blk, vq, elem, hdr.sector, false);
		break;
	case VIRTIO_BLK_T_OUT:
		status = do_rw(blk, vq, elem, hdr.sector, true);
		break;
	case VIRTIO_BLK_T_FLUSH:
		blk->stats.flushes++;
		status = disk__flush(blk->disk) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		/* 20 bytes, NUL-padded, not necessarily NUL-terminated. */
		char id[VIRTIO_BLK_ID_BYTES] = { 0 };
		memcpy(id, blk->disk->id, MIN(strlen(blk->disk->id), sizeof(id)));
		virtq__write_in(vq, elem, 0, id, (size_t)MIN(status_off, (uint64_t)sizeof(id)));
		blk->stats.get_ids++;
		status = VIRTIO_BLK_S_OK;
		break;
	}
	default:
		blk->stats.unsupported++;
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (status == VIRTIO_BLK_S_IOERR)
		blk->stats.errors++;
	virtq__write_in(vq, elem, status_off, &status, 1);
	/* As QEMU does: the whole writable part counts as written. */
	*used_len = (uint32_t)MIN(elem->in_len, (uint64_t)UINT32_MAX);
	return 0;
}

static void blk_handle_queue(struct virtio_pci *vp, unsigned q)
{
	struct virtio_blk *blk = vp->opaque;
	struct virtq *vq = &vp->vq[q];
	bool pushed = false;
	while (!virtio_pci__pausing(vp)) {
		const char *why = NULL;
		uint32_t len = 0;
		int r = virtq__pop(vq, &blk->elem, &why);
		if (r == 0)
			break;
		if (r < 0 || serve(blk, vq, &blk->elem, &len, &why) < 0) {
			virtio_pci__set_broken(vp, why);
			break;
		}
		virtq__push(vq, &blk->elem, len);
		pushed = true;
	}
	if (pushed && virtq__needs_interrupt(vq))
		virtio_pci__signal_queue(vp, q);
}

static void blk_config_read(struct virtio_pci *vp, unsigned off, void *data, unsigned size)
{
	struct virtio_blk *blk = vp->opaque;
	memcpy(data, (const uint8_t *)&blk->cfg + off, size);	/* bounded by config_len */
}

static const struct virtio_dev_ops blk_ops = {
	.device_type = 2,	/* VIRTIO_ID_BLOCK */
	.class_code = BLK_CLASS_CODE,
	.config_len = sizeof(struct virtio_blk_config),
	.config_read = blk_config_read,
	/* Nothing in our config is writable (no CONFIG_WCE). */
	.handle_queue = blk_handle_queue,
};

/* A VM booted on an image a VM that arrived by copy left behind takes its
 * change record into blk->arrival: the blocks written since the arrival,
 * and the generation (into dc->gen) an incremental move back must match. */
static int take_record(struct virtio_blk *blk, struct disk_config *dc, struct err *e)
{
	struct err why = { 0 };
	int r = blk_changes__take(dc->path, blk->disk->fd, &blk->arrival, dc->gen, sizeof(dc->gen), &why);
	if (r < 0)
		return err__set(e, -r, "disk %s: %s", dc->id, why.msg);
	if (r == 0 && why.msg[0])
		pr_warn("disk %s: %s: dropped, a move back with --incremental-disks will "
			"find no generation for it", dc->id, why.msg);
	if (r == 1) {
		pr_info("disk %s: %llu block(s) written since it arrived (generation %s), from %s%s",
			dc->id, (unsigned long long)blk_track__count(&blk->arrival), dc->gen, dc->path,
			BLK_CHANGES_SUFFIX);
		blk->took_record = true;
	}
	return 0;
}

int virtio_blk__create(struct vm *vm, struct disk_config *dc, struct err *e)
{
	if (vm->nr_blk >= VM_MAX_DISKS)
		return err__set(e, E2BIG, "disk %s: at most %d disks", dc->id, VM_MAX_DISKS);
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	if (!blk)
		return err__set(e, ENOMEM, "disk %s: out of memory", dc->id);
	blk->vm = vm;
	int r = disk__open(&blk->disk, dc, e);
	if (r < 0) {
		free(blk);
		return r;
	}
	struct virtio_blk_config *c = &blk->cfg;
	c->capacity = blk->disk->size / DISK_SECTOR_SIZE;
	/* A disk that arrived by copy (with this VM, or with one that left
	 * its change record here) keeps what changes from now on, so it can
	 * move back by sending only that (migrate/disk-send.c). */
	if (!dc->readonly && (dc->gen[0] || vm->cold_boot)) {
		if ((r = blk_track__init(&blk->arrival, blk->disk->size, e)) < 0 ||
		    (!dc->gen[0] && (r = take_record(blk, dc, e)) < 0)) {
			blk_track__free(&blk->arrival);
			disk__close(blk->disk);
			free(blk);
			return r;
		}
		if (dc->gen[0]) {
			blk->track[BLK_TRACKER_ARRIVAL] = &blk->arrival;
			snprintf(blk->gen, sizeof(blk->gen), "%s", dc->gen);
		} else {
			blk_track__free(&blk->arrival);
		}
	}
	c->size_max = VIRTIO_BLK_SIZE_MAX;
	c->seg_max = VIRTIO_BLK_SEG_MAX;
	/* 512 whatever the host needs: a guest's view must not change when it
	 * migrates to a host with other storage; disk.c bounces instead. */
	c->blk_size = DISK_SECTOR_SIZE;
	c->num_queues = 1;
	uint64_t features = (1ULL << VIRTIO_BLK_F_SIZE_MAX) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
			    (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH);
	if (dc->readonly)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	char name[48];
	snprintf(name, sizeof(name), "virtio-blk-%s", blk->disk->id);
	r = virtio_pci__init(&blk->vp, vm, &blk_ops, blk, name, 1, VIRTIO_BLK_QUEUE_SIZE, features, e);
	if (r < 0) {
		blk_track__free(&blk->arrival);
		disk__close(blk->disk);
		free(blk);
		return r;
	}
	vm->blk[vm->nr_blk++] = blk;
	return 0;
}

/* After the device stopped: no write is in flight. A VM that never ran here
 * leaves a record only if it took one (an incoming migration that failed
 * must leave nothing beside the files it removes). */
static void leave_record(struct virtio_blk *blk)
{
	struct vm *vm = blk->vm;
	if (!blk->track[BLK_TRACKER_ARRIVAL])
		return;
	pthread_mutex_lock(&vm->lock);
	bool leave = !vm->handed_off && (vm->started_ns || blk->took_record);
	pthread_mutex_unlock(&vm->lock);
	if (!leave)
		return;
	struct err e = { 0 };
	if (blk_changes__save(blk->disk->path, blk->disk->fd, blk->gen, &blk->arrival, &e) < 0)
		pr_warn("disk %s: %s: a move back will need a full copy", blk->disk->id, e.msg);
}

void virtio_blk__destroy(struct virtio_blk *blk)
{
	if (!blk)
		return;
	virtio_pci__exit(&blk->vp);
	leave_record(blk);
	disk__close(blk->disk);
	blk_track__free(&blk->arrival);
	free(blk);
}

void virtio_blk__pause(struct virtio_blk *blk)
{
	virtio_pci__pause(&blk->vp);
}

void virtio_blk__resume(struct virtio_blk *blk)
{
	virtio_pci__resume(&blk->vp);
}

struct blk_track *virtio_blk__set_tracker(struct virtio_blk *blk, enum virtio_blk_tracker which,
					  struct blk_track *t)
{
	pthread_mutex_lock(&blk->vp.lock);
	struct blk_track *old = blk->track[which];
	blk->track[which] = t;
	pthread_mutex_unlock(&blk->vp.lock);
	return old;
}
