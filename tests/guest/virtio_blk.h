/* virtio_blk.h: a polled driver for a modern (virtio 1.x) PCI block device. */
#ifndef GUEST_VIRTIO_BLK_H
#define GUEST_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"

#define VIRTIO_BLK_T_IN		0
#define VIRTIO_BLK_T_OUT	1
#define VIRTIO_BLK_T_FLUSH	4

#define VIRTIO_BLK_S_OK		0
#define VIRTIO_BLK_S_IOERR	1
#define VIRTIO_BLK_S_UNSUPP	2

#define VIRTIO_BLK_BUSY		(-2)	/* virtio_blk__poll: still in flight */

#define SECTOR_SIZE		512
#define VIRTIO_BLK_MAX		4	/* devices the driver can run at once */

struct virtio_blk_vq;

struct virtio_blk {
	unsigned bdf;
	struct virtio_blk_vq *vq;		/* this device's queue memory */
	uint64_t common, notify, device;	/* MMIO addresses of the config structures */
	uint32_t notify_mult;
	uint16_t notify_off;
	uint16_t queue_size;
	uint16_t avail_idx, used_idx;
	uint64_t capacity;			/* in 512-byte sectors */
	bool ro_offered;			/* VIRTIO_BLK_F_RO (not accepted, only noted) */
	bool busy;				/* a request is in flight */
	struct timeout timeout;			/* of the request in flight */
};

/* How many 1af4:1042 functions bus 0 holds. */
unsigned virtio_blk__count(void);
/*
 * Find and initialise the nth (from 0, in bus order; below VIRTIO_BLK_MAX)
 * 1af4:1042 on bus 0; -1 with a reason in err.
 */
int virtio_blk__init(struct virtio_blk *d, unsigned nth, char *err, unsigned errlen);
/* Start a request (none may be in flight); buf must stay untouched until it completes. */
void virtio_blk__submit(struct virtio_blk *d, uint32_t type, uint64_t sector, void *buf,
			uint32_t len);
/* VIRTIO_BLK_BUSY, the status byte (VIRTIO_BLK_S_*), or -1 if the device never answered. */
int virtio_blk__poll(struct virtio_blk *d);
/* Submit and poll to completion. */
int virtio_blk__request(struct virtio_blk *d, uint32_t type, uint64_t sector, void *buf, uint32_t len);

#endif
