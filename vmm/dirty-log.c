/* Dirty page tracking: KVM's per-slot dirty log merged with the VMM's own
 * writes into one bitmap by memfd page (see include/vmhop/dirty-log.h). */
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmhop/dirty-log.h"
#include "vmhop/util.h"

/* ---- bitmap helpers ---------------------------------------------------- */

uint64_t dirty_bitmap__count(const uint64_t *bm, uint64_t nbits)
{
	uint64_t n = 0, full = nbits / 64;
	for (uint64_t i = 0; i < full; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	if (nbits % 64)
		n += (uint64_t)__builtin_popcountll(bm[full] & ((1ULL << (nbits % 64)) - 1));
	return n;
}

/* Shared by next/next_clear: `invert` turns a search for clear bits into one
 * for set bits, so both skip whole words the same way. */
static uint64_t find_next(const uint64_t *bm, uint64_t nbits, uint64_t from, uint64_t invert)
{
	if (from >= nbits)
		return nbits;
	uint64_t i = from / 64;
	uint64_t w = (bm[i] ^ invert) & (~0ULL << (from % 64));
	for (;;) {
		if (w) {
			uint64_t n = i * 64 + (uint64_t)__builtin_ctzll(w);
			return n < nbits ? n : nbits;
		}
		if (++i >= dirty_bitmap__words(nbits))
			return nbits;
		w = bm[i] ^ invert;
	}
}

uint64_t dirty_bitmap__next(const uint64_t *bm, uint64_t nbits, uint64_t from)
{
	return find_next(bm, nbits, from, 0);
}

uint64_t dirty_bitmap__next_clear(const uint64_t *bm, uint64_t nbits, uint64_t from)
{
	return find_next(bm, nbits, from, ~0ULL);
}

/* Mask of bits [lo, hi) within one word, 0 <= lo < hi <= 64. */
static uint64_t word_mask(unsigned lo, unsigned hi)
{
	uint64_t m = hi == 64 ? ~0ULL : (1ULL << hi) - 1;
	return m & (~0ULL << lo);
}

static void change_range(uint64_t *bm, uint64_t first, uint64_t count, bool set)
{
	uint64_t end = first + count;
	while (first < end) {
		unsigned lo = (unsigned)(first % 64);
		unsigned hi = (unsigned)MIN(64, lo + (end - first));
		uint64_t m = word_mask(lo, hi);
		if (set)
			bm[first / 64] |= m;
		else
			bm[first / 64] &= ~m;
		first += hi - lo;
	}
}

void dirty_bitmap__set_range(uint64_t *bm, uint64_t first, uint64_t count)
{
	change_range(bm, first, count, true);
}

void dirty_bitmap__clear_range(uint64_t *bm, uint64_t first, uint64_t count)
{
	change_range(bm, first, count, false);
}

/* dst bits [at, at + nbits) |= src bits [0, nbits). Regions start on any
 * page, so the slot's bitmap may land at any bit of the RAM-wide one. */
static void or_at(uint64_t *dst, uint64_t at, const uint64_t *src, uint64_t nbits)
{
	if (at % 64 == 0) {
		uint64_t full = nbits / 64;
		for (uint64_t i = 0; i < full; i++)
			dst[at / 64 + i] |= src[i];
		if (nbits % 64)
			dst[at / 64 + full] |= src[full] & ((1ULL << (nbits % 64)) - 1);
		return;
	}
	uint64_t n;
	dirty_bitmap__for_each(n, src, nbits)
		dirty_bitmap__set(dst, at + n);
}

/* ---- KVM dirty log ----------------------------------------------------- */

static uint64_t region_pages(const struct guest_mem_region *r)
{
	return r->size / GUEST_PAGE_SIZE;
}

void dirty_log__init(struct dirty_log *d, struct guest_mem *mem, int vm_fd)
{
	memset(d, 0, sizeof(*d));
	d->mem = mem;
	d->vm_fd = vm_fd;
}

void dirty_log__destroy(struct dirty_log *d)
{
	if (d->logging) {
		struct err e = { 0 };
		dirty_log__stop(d, &e);
	}
	for (size_t i = 0; i < ARRAY_SIZE(d->scratch); i++) {
		free(d->scratch[i]);
		d->scratch[i] = NULL;
	}
}

uint64_t dirty_log__bitmap_words(const struct dirty_log *d)
{
	return dirty_bitmap__words(d->mem->nr_pages);
}

int dirty_log__enable_manual_protect(struct dirty_log *d, bool initially_set, struct err *e)
{
	if (d->logging)
		return err__set(e, EBUSY, "manual dirty-log protect must be chosen before logging starts");
	/* The answer is the set of flags KVM accepts, not just yes or no. */
	int caps = ioctl(d->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (caps <= 0 || !(caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		return err__set(e, EOPNOTSUPP, "KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
	uint64_t flags = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	if (initially_set && (caps & KVM_DIRTY_LOG_INITIALLY_SET))
		flags |= KVM_DIRTY_LOG_INITIALLY_SET;
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args = { flags },
	};
	if (ioctl(d->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return err__setsys(e, errno, "KVM_ENABLE_CAP MANUAL_DIRTY_LOG_PROTECT2");
	d->manual_protect = true;
	d->initially_set = flags & KVM_DIRTY_LOG_INITIALLY_SET;
	return 0;
}

int dirty_log__start(struct dirty_log *d, struct err *e)
{
	struct guest_mem *m = d->mem;
	if (d->logging)
		return 0;
	/* Changes are tracked against a whole RAM: a restore still filling it
	 * (lazy-mem.h) finishes first. */
	int w = guest_mem__wait_whole(m, e);
	if (w < 0)
		return w;
	for (unsigned i = 0; i < m->nr_regions; i++) {
		if (d->scratch[i])
			continue;
		d->scratch[i] = calloc(dirty_bitmap__words(region_pages(&m->regions[i])), sizeof(uint64_t));
		if (!d->scratch[i])
			return err__set(e, ENOMEM, "out of memory for the dirty bitmap of slot %u",
					m->regions[i].slot);
	}
	/* VMM writes are recorded first: one made while the slots are being
	 * switched over must not fall between the two logs. */
	int r = guest_mem__track_vmm_writes(m, true);
	if (r < 0)
		return err__set(e, -r, "out of memory for the VMM dirty bitmap");
	r = guest_mem__register(m, d->vm_fd, KVM_MEM_LOG_DIRTY_PAGES, e);
	if (r < 0) {
		/* Leave every slot as it was: some may already log. */
		struct err ignored = { 0 };
		guest_mem__register(m, d->vm_fd, 0, &ignored);
		guest_mem__track_vmm_writes(m, false);
		return r;
	}
	d->logging = true;
	return 0;
}

int dirty_log__stop(struct dirty_log *d, struct err *e)
{
	if (!d->logging)
		return 0;
	int r = guest_mem__register(d->mem, d->vm_fd, 0, e);
	if (r < 0)
		return r;
	/* Frees vmm_dirty: only safe with devices quiesced, which is when a
	 * migration or snapshot ends anyway. */
	guest_mem__track_vmm_writes(d->mem, false);
	d->logging = false;
	return 0;
}

int dirty_log__fetch(struct dirty_log *d, uint64_t *bm, struct err *e)
{
	struct guest_mem *m = d->mem;
	if (!d->logging)
		return err__set(e, EINVAL, "dirty logging is not started");
	for (unsigned i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];
		struct kvm_dirty_log log = { .slot = r->slot, .dirty_bitmap = d->scratch[i] };
		if (ioctl(d->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return err__setsys(e, errno, "KVM_GET_DIRTY_LOG slot %u", r->slot);
		or_at(bm, r->offset / GUEST_PAGE_SIZE, d->scratch[i], region_pages(r));
	}
	/* Exchange, not read-then-zero: a device thread may mark a page
	 * between the two, and that mark must reach the next fetch. */
	if (m->vmm_dirty) {
		uint64_t words = dirty_bitmap__words(m->nr_pages);
		for (uint64_t w = 0; w < words; w++) {
			if (atomic_load_explicit(&m->vmm_dirty[w], memory_order_relaxed))
				bm[w] |= atomic_exchange_explicit(&m->vmm_dirty[w], 0,
								  memory_order_acq_rel);
		}
	}
	return 0;
}

int dirty_log__clear(struct dirty_log *d, const uint64_t *bm, uint64_t first, uint64_t count,
		     struct err *e)
{
	struct guest_mem *m = d->mem;
	if (!d->manual_protect)
		return 0;
	if (!d->logging)
		return err__set(e, EINVAL, "dirty logging is not started");
	if (first > m->nr_pages || count > m->nr_pages - first)
		return err__set(e, ERANGE, "dirty-log clear of pages %llu+%llu beyond %llu pages of RAM",
				(unsigned long long)first, (unsigned long long)count,
				(unsigned long long)m->nr_pages);
	uint64_t end = first + count;
	for (unsigned i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];
		uint64_t rfirst = r->offset / GUEST_PAGE_SIZE, rpages = region_pages(r);
		uint64_t lo = MAX(first, rfirst), hi = MIN(end, rfirst + rpages);
		if (lo >= hi)
			continue;
		/* KVM wants first_page and num_pages in multiples of 64 (except
		 * at the slot's end): widen the range, but copy only the
		 * caller's bits, so pages outside it stay as they are. */
		uint64_t slo = (lo - rfirst) & ~63ULL;
		uint64_t shi = MIN(ALIGN_UP(hi - rfirst, 64), rpages);
		if (shi - slo > UINT32_MAX)	/* num_pages is 32 bits: 16 TiB per call */
			return err__set(e, E2BIG, "dirty-log clear of more than 2^32 pages at once");
		uint64_t p = dirty_bitmap__next(bm, hi, lo);
		if (p >= hi)
			continue;	/* nothing to re-arm: spare KVM the walk */
		uint64_t *tmp = d->scratch[i];
		memset(tmp, 0, (size_t)dirty_bitmap__words(shi - slo) * sizeof(uint64_t));
		for (; p < hi; p = dirty_bitmap__next(bm, hi, p + 1))
			dirty_bitmap__set(tmp, p - rfirst - slo);
		struct kvm_clear_dirty_log c = {
			.slot = r->slot,
			.num_pages = (uint32_t)(shi - slo),
			.first_page = slo,
			.dirty_bitmap = tmp,
		};
		if (ioctl(d->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			return err__setsys(e, errno, "KVM_CLEAR_DIRTY_LOG slot %u pages %llu+%llu", r->slot,
					   (unsigned long long)slo, (unsigned long long)(shi - slo));
	}
	return 0;
}
