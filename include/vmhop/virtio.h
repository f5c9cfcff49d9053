/* Split virtqueues (virtio 1.x, 2.7): walking descriptor chains the guest
 * offers and returning them through the used ring.
 *
 * The ring lives in guest RAM and the guest can write anything into it at
 * any time, so every address goes through guest_mem__ptr(), every field is
 * read once into a local copy, chains are bounded by the queue size (which
 * also catches loops), and a malformed ring is reported to the caller, who
 * marks the device DEVICE_NEEDS_RESET instead of trusting it further.
 *
 * Every write the VMM makes into guest RAM (used ring, data for the guest)
 * is recorded with guest_mem__mark_dirty(): KVM's dirty log cannot see it
 * and migration would otherwise send stale pages.
 *
 * Spec constants come from the Linux uapi headers (linux/virtio_*.h). */
#ifndef VMHOP_VIRTIO_H
#define VMHOP_VIRTIO_H

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmhop/guest-mem.h"

#define VIRTQ_MAX_SIZE		256	/* largest queue size offered */
#define VIRTIO_NO_VECTOR	0xFFFF	/* VIRTIO_MSI_NO_VECTOR */

/* Queue state as the driver configured it plus the device's ring cursors:
 * plain data, saved and loaded by migration as is. */
struct virtq_state {
	uint64_t desc;			/* guest-physical ring addresses */
	uint64_t avail;
	uint64_t used;
	uint16_t size;
	uint16_t msix_vector;
	uint16_t last_avail_idx;	/* next avail entry the device reads */
	uint16_t used_idx;		/* next used entry the device writes */
	uint8_t enabled;
	uint8_t pad[7];
};

/* One buffer of a chain: host pointer validated against guest RAM. */
struct virtq_seg {
	void *host;
	uint64_t gpa;
	uint32_t len;
};

/* A popped chain: device-readable segments first, then device-writable
 * ones (the spec orders them so; a chain that does not is malformed). */
struct virtq_elem {
	uint16_t head;
	unsigned nr_out;		/* readable: seg[0 .. nr_out) */
	unsigned nr_in;			/* writable: seg[nr_out .. nr_out + nr_in) */
	uint64_t out_len;
	uint64_t in_len;
	struct virtq_seg seg[VIRTQ_MAX_SIZE];
};

struct virtq {
	struct virtq_state *st;		/* points into the device's state */
	struct guest_mem *mem;
	uint16_t max_size;
	bool indirect;			/* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	/* Host views of the rings, valid while st->enabled. */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
};

void virtq__init(struct virtq *vq, struct virtq_state *st, struct guest_mem *mem, uint16_t max_size);
/* Back to the state after device reset: size max_size, no vector, disabled. */
void virtq__reset(struct virtq *vq);
/* Validates the configured size and ring addresses and maps them. On a bad
 * configuration returns -EINVAL with *why set and leaves the queue off. */
int virtq__enable(struct virtq *vq, const char **why);
/* Whether the guest has offered chains not yet popped. */
bool virtq__has_work(struct virtq *vq);
/* Takes the next available chain: 1 with *elem filled, 0 when the ring is
 * empty, -EIO when the ring is malformed (*why says how). */
int virtq__pop(struct virtq *vq, struct virtq_elem *elem, const char **why);
/* Returns a chain through the used ring; `len` is the byte count the device
 * wrote into its writable part. */
void virtq__push(struct virtq *vq, const struct virtq_elem *elem, uint32_t len);
/* After pushing: whether the driver wants an interrupt (no EVENT_IDX, so
 * VRING_AVAIL_F_NO_INTERRUPT decides). */
bool virtq__needs_interrupt(struct virtq *vq);

/* Copies out of the readable part starting `off` bytes in; returns bytes copied. */
size_t virtq__read_out(const struct virtq_elem *elem, uint64_t off, void *dst, size_t n);
/* Copies into the writable part starting `off` bytes in, marking the bytes
 * dirty; returns bytes copied. */
size_t virtq__write_in(struct virtq *vq, const struct virtq_elem *elem, uint64_t off,
		       const void *src, size_t n);
/* iovecs over [off, off+len) of the readable (in = false) or writable part.
 * Returns the count, or -ENOSPC when more than `max` would be needed, or
 * -EINVAL when the part is shorter than off+len. */
int virtq__iov(const struct virtq_elem *elem, bool in, uint64_t off, uint64_t len,
	       struct iovec *iov, int max);
/* Records a write the caller made itself (e.g. preadv) into [off, off+len)
 * of the writable part. */
void virtq__mark_in_dirty(struct virtq *vq, const struct virtq_elem *elem, uint64_t off, uint64_t len);

#endif
