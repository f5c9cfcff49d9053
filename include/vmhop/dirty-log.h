/* Dirty page tracking over guest RAM: KVM's per-slot dirty log plus the pages
 * the VMM itself wrote (guest_mem's vmm_dirty), merged into one bitmap indexed
 * by memfd page offset (guest_mem__offset() / GUEST_PAGE_SIZE), so callers
 * (pre-copy rounds, incremental snapshots) never deal with slots.
 *
 * Two KVM modes:
 * - classic: KVM_GET_DIRTY_LOG returns the slot's bits and, in the same
 *   call, clears them and write-protects those pages again;
 * - manual protect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): KVM_GET_DIRTY_LOG only
 *   copies the bits out; a page stays reported by every fetch until the
 *   caller re-arms it with dirty_log__clear(), just before reading it.
 *   Clearing little and late keeps the write-protect faults (the cost of
 *   logging) off pages not yet sent.
 *
 * Either way the rule for a consumer is: fetch, clear what you are about to
 * copy (a no-op in classic mode), then copy. A write after the clear is
 * reported by the next fetch. VMM writes (vmm_dirty) are handed over once,
 * by the fetch that sees them, in both modes.
 *
 * The log may over-report, never under-report: with shadow paging (kvm-pvm)
 * a read of a page whose guest PTE is already dirty can map it writable and
 * log it. Consumers must treat the set as "maybe changed". */
#ifndef VMHOP_DIRTY_LOG_H
#define VMHOP_DIRTY_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"
#include "vmhop/guest-mem.h"

/* One thread at a time per dirty_log (fetch and clear share the scratch
 * bitmaps); guest_mem__mark_dirty() may run concurrently from any thread. */
struct dirty_log {
	struct guest_mem *mem;
	int vm_fd;
	bool logging;		/* slots registered with KVM_MEM_LOG_DIRTY_PAGES */
	bool manual_protect;	/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled */
	bool initially_set;	/* ... with KVM_DIRTY_LOG_INITIALLY_SET */
	/* One slot-sized scratch bitmap per region, so fetching allocates
	 * nothing while the guest is paused at the end of a migration. */
	uint64_t *scratch[2];
};

/* Binds the log to a VM's RAM. Nothing is enabled yet; cannot fail. */
void dirty_log__init(struct dirty_log *d, struct guest_mem *mem, int vm_fd);
/* Stops logging if it is on and frees the scratch bitmaps. */
void dirty_log__destroy(struct dirty_log *d);

/* Asks KVM for manual protect (with INITIALLY_SET when `initially_set` and
 * supported: the first fetch then reports every page and no page is
 * write-protected until cleared, which suits a first full copy). Must come
 * before dirty_log__start(). -EOPNOTSUPP when KVM lacks the capability: the
 * caller may carry on in classic mode. */
int dirty_log__enable_manual_protect(struct dirty_log *d, bool initially_set, struct err *e);

/* Re-registers every RAM slot with KVM_MEM_LOG_DIRTY_PAGES and starts
 * recording VMM writes. Pages written before this call are not reported. */
int dirty_log__start(struct dirty_log *d, struct err *e);
/* Re-registers the slots without logging and stops recording VMM writes. */
int dirty_log__stop(struct dirty_log *d, struct err *e);

/* Number of uint64_t words of a bitmap covering all of guest RAM. */
uint64_t dirty_log__bitmap_words(const struct dirty_log *d);

/* ORs every page dirtied since the previous fetch (by the guest, per KVM, or
 * by the VMM) into `bm`, which has dirty_log__bitmap_words() words. OR, not
 * overwrite, so a caller can accumulate pages it has not sent yet. */
int dirty_log__fetch(struct dirty_log *d, uint64_t *bm, struct err *e);

/* Manual protect only (a no-op otherwise): write-protects again the pages in
 * [first, first + count) (memfd page numbers) whose bit is set in `bm`, so
 * that the guest's next write to them is logged. */
int dirty_log__clear(struct dirty_log *d, const uint64_t *bm, uint64_t first, uint64_t count,
		     struct err *e);

/* Bitmap helpers: bit n is word n / 64, bit n % 64 (KVM's layout on x86). */
static inline uint64_t dirty_bitmap__words(uint64_t nbits)
{
	return (nbits + 63) / 64;
}

static inline bool dirty_bitmap__test(const uint64_t *bm, uint64_t n)
{
	return (bm[n / 64] >> (n % 64)) & 1;
}

static inline void dirty_bitmap__set(uint64_t *bm, uint64_t n)
{
	bm[n / 64] |= 1ULL << (n % 64);
}

static inline void dirty_bitmap__clear_bit(uint64_t *bm, uint64_t n)
{
	bm[n / 64] &= ~(1ULL << (n % 64));
}

/* Set bits among the first `nbits`. */
uint64_t dirty_bitmap__count(const uint64_t *bm, uint64_t nbits);
/* First set bit at or after `from`, or `nbits` if none: skips clear words
 * whole, so walking a sparse bitmap of a large guest is cheap. */
uint64_t dirty_bitmap__next(const uint64_t *bm, uint64_t nbits, uint64_t from);
/* First clear bit at or after `from`, or `nbits` (the end of a run). */
uint64_t dirty_bitmap__next_clear(const uint64_t *bm, uint64_t nbits, uint64_t from);
/* Sets or clears bits [first, first + count). */
void dirty_bitmap__set_range(uint64_t *bm, uint64_t first, uint64_t count);
void dirty_bitmap__clear_range(uint64_t *bm, uint64_t first, uint64_t count);

/* for (n = first set bit; n < nbits; n = next set bit) */
#define dirty_bitmap__for_each(n, bm, nbits) \
	for ((n) = dirty_bitmap__next((bm), (nbits), 0); (n) < (nbits); \
	     (n) = dirty_bitmap__next((bm), (nbits), (n) + 1))

#endif
