#include <stdlib.h>

#include "vmhop/blk-track.h"
#include "vmhop/util.h"

int blk_track__init(struct blk_track *t, uint64_t disk_size, struct err *e)
{
	t->nblocks = (disk_size + BLK_TRACK_BLOCK - 1) >> BLK_TRACK_SHIFT;
	t->bits = calloc(blk_track__words(t) ? blk_track__words(t) : 1, sizeof(*t->bits));
	if (!t->bits)
		return err__set(e, ENOMEM, "out of memory for a disk's write bitmap");
	return 0;
}

void blk_track__free(struct blk_track *t)
{
	free((void *)t->bits);
	t->bits = NULL;
	t->nblocks = 0;
}

void blk_track__mark(struct blk_track *t, uint64_t off, uint64_t len)
{
	if (!len)
		return;
	uint64_t a = off >> BLK_TRACK_SHIFT, b = (off + len - 1) >> BLK_TRACK_SHIFT;
	if (b >= t->nblocks)
		b = t->nblocks - 1;
	for (uint64_t i = a; i <= b && i < t->nblocks; i++)
		atomic_fetch_or_explicit(&t->bits[i / 64], 1ULL << (i % 64), memory_order_release);
}

uint64_t blk_track__take(struct blk_track *t, uint64_t *out)
{
	uint64_t n = 0;
	for (uint64_t w = 0; w < blk_track__words(t); w++) {
		uint64_t v = atomic_exchange_explicit(&t->bits[w], 0, memory_order_acquire);
		out[w] |= v;
		n += (uint64_t)__builtin_popcountll(v);
	}
	return n;
}

void blk_track__give_back(struct blk_track *t, const uint64_t *bits)
{
	for (uint64_t w = 0; w < blk_track__words(t); w++)
		if (bits[w])
			atomic_fetch_or_explicit(&t->bits[w], bits[w], memory_order_release);
}

uint64_t blk_track__count(const struct blk_track *t)
{
	uint64_t n = 0;
	for (uint64_t w = 0; w < blk_track__words(t); w++)
		n += (uint64_t)__builtin_popcountll(atomic_load_explicit(&t->bits[w], memory_order_relaxed));
	return n;
}
