/* virtio-blk (virtio 1.x, 5.2) on the virtio-pci transport, one request
 * queue, requests served synchronously on the device thread.
 *
 * Features offered: VERSION_1, RING_INDIRECT_DESC, SIZE_MAX, SEG_MAX,
 * BLK_SIZE, FLUSH, and RO for a readonly disk. Requests: IN, OUT, FLUSH,
 * GET_ID (the disk id); anything else is UNSUPP. A write to a readonly disk
 * and any access beyond the capacity complete with IOERR. */
#ifndef VMHOP_VIRTIO_BLK_H
#define VMHOP_VIRTIO_BLK_H

#include <linux/virtio_blk.h>
#include <stdint.h>

#include "vmhop/disk.h"
#include "vmhop/err.h"
#include "vmhop/virtio-pci.h"
#include "vmhop/vm-config.h"

struct vm;

#define VIRTIO_BLK_QUEUE_SIZE	256
#define VIRTIO_BLK_SEG_MAX	(VIRTIO_BLK_QUEUE_SIZE - 2)	/* + header + status */
#define VIRTIO_BLK_SIZE_MAX	(1u << 20)

struct virtio_blk_stats {
	uint64_t reads, writes, flushes, get_ids, unsupported, errors;
	uint64_t bytes_read, bytes_written;
};

struct virtio_blk {
	struct virtio_pci vp;		/* state: vp.st and vp.pci.st */
	/* Runtime only. */
	struct vm *vm;
	struct disk *disk;
	struct virtio_blk_config cfg;	/* built from the disk at creation */
	struct virtq_elem elem;		/* the request being served */
	struct iovec iov[VIRTQ_MAX_SIZE];
	struct virtio_blk_stats stats;
};

/* Opens the disk, builds the PCI function on vm->pci (which must exist) and
 * appends it to vm->blk[]. */
int virtio_blk__create(struct vm *vm, const struct disk_config *dc, struct err *e);
/* Stops the device, removes it from the bus and closes the disk. Does not
 * touch vm->blk[]. */
void virtio_blk__destroy(struct virtio_blk *blk);

/* Quiesce for pause and migration: returns once no request is in flight
 * and none will start before virtio_blk__resume. */
void virtio_blk__pause(struct virtio_blk *blk);
void virtio_blk__resume(struct virtio_blk *blk);

#endif
