/* Which blocks of a disk the guest wrote: one bit per BLK_TRACK_BLOCK bytes,
 * set by the device thread after each write has completed, taken (read and
 * cleared) by whoever copies the disk. Setting the bit only after the data
 * is in the image is what makes a concurrent copy safe: a block read before
 * the write lands is marked again and sent again. */
#ifndef VMHOP_BLK_TRACK_H
#define VMHOP_BLK_TRACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"

#define BLK_TRACK_SHIFT	16		/* 64 KiB blocks */
#define BLK_TRACK_BLOCK	(1ULL << BLK_TRACK_SHIFT)

struct blk_track {
	_Atomic uint64_t *bits;
	uint64_t nblocks;
};

int blk_track__init(struct blk_track *t, uint64_t disk_size, struct err *e);
void blk_track__free(struct blk_track *t);
static inline uint64_t blk_track__words(const struct blk_track *t)
{
	return (t->nblocks + 63) / 64;
}
/* Marks every block [off, off + len) touches. Any thread. */
void blk_track__mark(struct blk_track *t, uint64_t off, uint64_t len);
/* ORs the set bits into out (blk_track__words() words) and clears them, so a
 * write completing meanwhile lands in one or the other. Returns how many
 * bits were taken. */
uint64_t blk_track__take(struct blk_track *t, uint64_t *out);
/* ORs bits back (a copy that failed and must not lose what it took). */
void blk_track__give_back(struct blk_track *t, const uint64_t *bits);
uint64_t blk_track__count(const struct blk_track *t);

#endif
