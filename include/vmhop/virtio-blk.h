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

#include "vmhop/blk-track.h"
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

/* Who watches the guest's writes: a disk copy in progress (migration), the
 * changes since the disk arrived by copy (for an incremental move back), and
 * the changes since the last checkpoint. */
enum virtio_blk_tracker {
	BLK_TRACKER_COPY,
	BLK_TRACKER_ARRIVAL,
	BLK_TRACKER_CHECKPOINT,
	BLK_TRACKERS
};

struct virtio_blk {
	struct virtio_pci vp;		/* state: vp.st and vp.pci.st */
	/* Runtime only. */
	struct vm *vm;
	/* Read by the device thread under vp.lock; changed only under it
	 * (virtio_blk__set_tracker), so no request is in flight meanwhile. */
	struct blk_track *track[BLK_TRACKERS];
	struct blk_track arrival;	/* track[ARRIVAL] points here when used */
	char gen[DISK_GEN_MAX];		/* the arrival's generation, with `arrival` */
	bool took_record;		/* arrival came from PATH.vmhop-changes */
	struct disk *disk;
	struct virtio_blk_config cfg;	/* built from the disk at creation */
	struct virtq_elem elem;		/* the request being served */
	struct iovec iov[VIRTQ_MAX_SIZE];
	struct virtio_blk_stats stats;
};

/* Opens the disk, builds the PCI function on vm->pci (which must exist) and
 * appends it to vm->blk[]. */
int virtio_blk__create(struct vm *vm, struct disk_config *dc, struct err *e);
/* Stops the device, removes it from the bus and closes the disk. Does not
 * touch vm->blk[]. A disk that arrived by copy leaves its change record
 * when the VM ran here and was not handed to a migration's destination. */
void virtio_blk__destroy(struct virtio_blk *blk);
/* Installs (t) or removes (NULL) a write tracker; returns the one it
 * replaced. Waits for the request in flight, if any. */
struct blk_track *virtio_blk__set_tracker(struct virtio_blk *blk, enum virtio_blk_tracker which,
					  struct blk_track *t);

/* Quiesce for pause and migration: returns once no request is in flight
 * and none will start before virtio_blk__resume. */
void virtio_blk__pause(struct virtio_blk *blk);
void virtio_blk__resume(struct virtio_blk *blk);

#endif
