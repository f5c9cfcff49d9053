/* vmm/dirty-log.c against KVM: the guest writes a pseudo-random set of pages
 * each iteration (guest_dirty_writer, test-kvm-dirty-log-guest.c), the VMM
 * writes a few more, and the bitmap dirty_log__fetch() returns must be
 * exactly that set: no page missing, none extra. The harness keeps its stack,
 * mailbox and page tables in a slot of its own that is never logged, so the
 * only pages in the logged slots are the ones the test chose.
 *
 * Variants: classic KVM_GET_DIRTY_LOG, manual protect with and without
 * INITIALLY_SET, each on one slot and on vmhop's two-slot layout (RAM past
 * 3 GiB continues at 4 GiB). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "tests/unit/kvm-harness.h"
#include "vmhop/dirty-log.h"
#include "vmhop/util.h"

#define ITERATIONS 12

enum mode { CLASSIC, MANUAL_INITIALLY_SET, MANUAL };
static const char *const mode_names[] = { "classic", "manual protect + initially set",
					  "manual protect" };

struct variant {
	enum mode mode;
	uint64_t ram_size;
};

static const struct variant variants[] = {
	{ CLASSIC, 16 * MiB },
	{ MANUAL_INITIALLY_SET, 16 * MiB },
	{ MANUAL, 16 * MiB },
	/* Two slots: 3 GiB at 0 and 16 MiB at 4 GiB; the memfd stays sparse. */
	{ CLASSIC, 3 * GiB + 16 * MiB },
	{ MANUAL_INITIALLY_SET, 3 * GiB + 16 * MiB },
	{ MANUAL, 3 * GiB + 16 * MiB },
};

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: reproducible from the seed printed on failure. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* Guest-physical address of memfd page `page`. */
static uint64_t page_gpa(const struct guest_mem *m, uint64_t page)
{
	uint64_t off = page * GUEST_PAGE_SIZE;
	for (unsigned i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];
		if (off >= r->offset && off - r->offset < r->size)
			return r->gpa + (off - r->offset);
	}
	ck_abort_msg("page %llu is not RAM", (unsigned long long)page);
	return 0;
}

/* Every page the guest ever wrote: reads go only to the others. Under
 * shadow paging a read of a page whose guest PTE is dirty (written once,
 * ever) may map it writable and log it: a harmless over-report for a
 * migration, but not the exact set this test demands. */
static uint64_t *ever_written;

static void plan_write(struct dirty_plan *p, const struct guest_mem *m, uint64_t page,
		       uint64_t offset, uint64_t *expect)
{
	dirty_bitmap__set(ever_written, page);
	ck_assert_uint_lt(p->nr_writes, DIRTY_PLAN_MAX_WRITES);
	p->pages[p->nr_writes] = page_gpa(m, page) / GUEST_PAGE_SIZE;
	p->offsets[p->nr_writes] = offset;
	p->nr_writes++;
	dirty_bitmap__set(expect, page);
}

/* The pages iteration `it` writes: random ones, plus shapes that catch
 * off-by-ones (first and last page, each slot's edges, a run across a
 * 64-page word, one page written many times). */
static void make_plan(struct dirty_plan *p, uint64_t it, uint64_t *rng, const struct guest_mem *m,
		      uint64_t *expect)
{
	uint64_t nr_pages = m->nr_pages;
	p->iteration = it;
	p->nr_writes = 0;
	p->nr_reads = 0;
	if (it == 1) {
		plan_write(p, m, 0, 0, expect);
		plan_write(p, m, nr_pages - 1, 4088, expect);
		for (unsigned i = 1; i < m->nr_regions; i++) {
			uint64_t first = m->regions[i].offset / GUEST_PAGE_SIZE;
			plan_write(p, m, first - 1, 8, expect);
			plan_write(p, m, first, 16, expect);
		}
	} else if (it == 2) {
		uint64_t start = 64 * (rng_next(rng) % (nr_pages / 64 - 2)) + 60;
		for (uint64_t i = 0; i < 70; i++)
			plan_write(p, m, start + i, 8 * (i % 512), expect);
	} else if (it == 3) {
		uint64_t page = rng_next(rng) % nr_pages;
		for (uint64_t i = 0; i < 50; i++)
			plan_write(p, m, page, 8 * (rng_next(rng) % 512), expect);
	}
	uint64_t extra = it == 4 ? 0 : 1 + rng_next(rng) % 300;	/* 4: a quiet iteration */
	for (uint64_t i = 0; i < extra; i++)
		plan_write(p, m, rng_next(rng) % nr_pages, 8 * (rng_next(rng) % 512), expect);
	/* Reads of clean pages must not show up. */
	for (uint64_t i = 0; i < DIRTY_PLAN_MAX_READS / 2; i++) {
		uint64_t page = rng_next(rng) % nr_pages;
		if (!dirty_bitmap__test(ever_written, page))
			p->reads[p->nr_reads++] = page_gpa(m, page) / GUEST_PAGE_SIZE;
	}
}

/* What a device model does: write guest RAM from the VMM and say so. */
static void vmm_write(struct guest_mem *m, uint64_t *rng, uint64_t *expect)
{
	uint64_t page = rng_next(rng) % m->nr_pages;
	uint64_t gpa = page_gpa(m, page);
	/* Across a page boundary when the next page is in the same slot. */
	uint64_t len = 8;
	if (guest_mem__ptr(m, gpa + GUEST_PAGE_SIZE - 8, 16)) {
		gpa += GUEST_PAGE_SIZE - 8;
		len = 16;
		dirty_bitmap__set(expect, page + 1);
	}
	memset(guest_mem__ptr(m, gpa, len), 0xab, len);
	guest_mem__mark_dirty(m, gpa, len);
	dirty_bitmap__set(expect, page);
}

static void compare(const uint64_t *got, const uint64_t *expect, uint64_t nbits, const char *when)
{
	uint64_t missing = 0, extra = 0, first_missing = nbits, first_extra = nbits;
	for (uint64_t n = 0; n < nbits; n = MIN(nbits, (n | 63) + 1)) {
		if (got[n / 64] == expect[n / 64])
			continue;
		for (uint64_t b = n; b < MIN(nbits, (n | 63) + 1); b++) {
			bool g = dirty_bitmap__test(got, b), x = dirty_bitmap__test(expect, b);
			if (x && !g && !missing++)
				first_missing = b;
			if (g && !x && !extra++)
				first_extra = b;
		}
	}
	ck_assert_msg(!missing && !extra,
		      "%s: dirty log differs from the pages written: %llu missing (first %llu), "
		      "%llu extra (first %llu), %llu expected",
		      when, (unsigned long long)missing, (unsigned long long)first_missing,
		      (unsigned long long)extra, (unsigned long long)first_extra,
		      (unsigned long long)dirty_bitmap__count(expect, nbits));
}

/* Re-arms the fetched pages in uneven chunks, as a sender clearing just
 * ahead of what it copies would, to catch range and alignment errors. */
static void clear_fetched(struct dirty_log *d, const uint64_t *got, uint64_t *rng)
{
	struct err e = { 0 };
	uint64_t nr_pages = d->mem->nr_pages;
	for (uint64_t first = 0; first < nr_pages;) {
		uint64_t chunk = 1 + rng_next(rng) % 5000;	/* not inside MIN(): evaluated twice */
		uint64_t count = MIN(nr_pages - first, chunk);
		ck_assert_msg(dirty_log__clear(d, got, first, count, &e) == 0, "%s", e.msg);
		first += count;
	}
}

START_TEST(log_is_exact)
{
	const struct variant *v = &variants[_i];
	if (v->mode != CLASSIC && kvm_harness__check_cap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0) {
		KVM_HARNESS_SKIP("KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (%s)", mode_names[v->mode]);
		return;
	}
	struct kvm_harness *h = kvm_harness__new(v->ram_size);
	struct guest_mem *m = &h->mem;
	struct err e = { 0 };
	struct dirty_log d;
	dirty_log__init(&d, m, h->vm_fd);
	if (v->mode != CLASSIC) {
		int r = dirty_log__enable_manual_protect(&d, v->mode == MANUAL_INITIALLY_SET, &e);
		ck_assert_msg(r == 0, "%s", e.msg);
		ck_assert(d.manual_protect);
		if (v->mode == MANUAL_INITIALLY_SET && !d.initially_set) {
			KVM_HARNESS_SKIP("KVM lacks KVM_DIRTY_LOG_INITIALLY_SET");
			dirty_log__destroy(&d);
			kvm_harness__destroy(h);
			return;
		}
	}
	/* Written before logging starts: must never be reported. */
	memset(m->base, 0x11, GUEST_PAGE_SIZE);
	ck_assert_msg(dirty_log__start(&d, &e) == 0, "%s", e.msg);

	uint64_t nbits = m->nr_pages, words = dirty_log__bitmap_words(&d);
	ck_assert_uint_eq(words, dirty_bitmap__words(nbits));
	uint64_t *got = calloc(words, sizeof(uint64_t));
	uint64_t *expect = calloc(words, sizeof(uint64_t));
	ever_written = calloc(words, sizeof(uint64_t));
	ck_assert(got && expect && ever_written);
	uint64_t seed = 0x5eed0000 + (uint64_t)_i, rng = seed;

	uint64_t plan_gva;
	struct dirty_plan *plan = kvm_harness__alloc_shared(h, sizeof(*plan), &plan_gva);
	ck_assert_ptr_nonnull(plan);
	ck_assert_msg(kvm_harness__start(h, guest_dirty_writer, plan_gva, KVM_HARNESS_RAM_GVA, &e) == 0,
		      "%s", e.msg);
	kvm_harness__expect_sync(h, 0);

	/* Starting point: all of RAM with INITIALLY_SET, else nothing. */
	ck_assert_msg(dirty_log__fetch(&d, got, &e) == 0, "%s", e.msg);
	if (v->mode == MANUAL_INITIALLY_SET)
		dirty_bitmap__set_range(expect, 0, nbits);
	compare(got, expect, nbits, "before the guest ran");
	clear_fetched(&d, got, &rng);

	for (uint64_t it = 1; it <= ITERATIONS; it++) {
		memset(got, 0, words * sizeof(uint64_t));
		memset(expect, 0, words * sizeof(uint64_t));
		make_plan(plan, it, &rng, m, expect);
		vmm_write(m, &rng, expect);
		kvm_harness__expect_sync(h, it);

		ck_assert_msg(dirty_log__fetch(&d, got, &e) == 0, "%s", e.msg);
		char when[160];
		snprintf(when, sizeof(when), "%s, %llu MiB, seed 0x%llx, iteration %llu",
			 mode_names[v->mode], (unsigned long long)(v->ram_size / MiB),
			 (unsigned long long)seed, (unsigned long long)it);
		compare(got, expect, nbits, when);
		for (uint64_t i = 0; i < plan->nr_writes; i++) {
			uint64_t gpa = plan->pages[i] * GUEST_PAGE_SIZE + plan->offsets[i];
			uint64_t val;
			memcpy(&val, guest_mem__ptr(m, gpa, 8), 8);
			ck_assert_msg(val == it, "%s: gpa 0x%llx holds %llu", when,
				      (unsigned long long)gpa, (unsigned long long)val);
		}
		clear_fetched(&d, got, &rng);
	}
	plan->iteration = 0;
	kvm_harness__expect_done(h);

	ck_assert_msg(dirty_log__stop(&d, &e) == 0, "%s", e.msg);
	ck_assert_ptr_null((void *)m->vmm_dirty);
	free(got);
	free(expect);
	free(ever_written);
	dirty_log__destroy(&d);
	kvm_harness__destroy(h);
}
END_TEST

/* Writes while logging is off are not reported, and logging restarts clean. */
START_TEST(stop_and_restart)
{
	struct kvm_harness *h = kvm_harness__new(8 * MiB);
	struct guest_mem *m = &h->mem;
	struct err e = { 0 };
	struct dirty_log d;
	dirty_log__init(&d, m, h->vm_fd);
	uint64_t words = dirty_log__bitmap_words(&d);
	uint64_t *got = calloc(words, sizeof(uint64_t));
	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(dirty_log__fetch(&d, got, &e), -EINVAL);
	err__clear(&e);

	uint64_t plan_gva;
	struct dirty_plan *plan = kvm_harness__alloc_shared(h, sizeof(*plan), &plan_gva);
	ck_assert_msg(kvm_harness__start(h, guest_dirty_writer, plan_gva, KVM_HARNESS_RAM_GVA, &e) == 0,
		      "%s", e.msg);
	kvm_harness__expect_sync(h, 0);

	ck_assert_msg(dirty_log__start(&d, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(dirty_log__enable_manual_protect(&d, false, &e), -EBUSY);
	err__clear(&e);
	*plan = (struct dirty_plan){ .iteration = 1, .nr_writes = 1, .pages = { 10 } };
	kvm_harness__expect_sync(h, 1);
	ck_assert_msg(dirty_log__stop(&d, &e) == 0, "%s", e.msg);

	*plan = (struct dirty_plan){ .iteration = 2, .nr_writes = 1, .pages = { 20 } };
	kvm_harness__expect_sync(h, 2);
	guest_mem__mark_dirty(m, 30 * GUEST_PAGE_SIZE, 8);	/* not tracking: a no-op */

	ck_assert_msg(dirty_log__start(&d, &e) == 0, "%s", e.msg);
	*plan = (struct dirty_plan){ .iteration = 3, .nr_writes = 1, .pages = { 40 } };
	kvm_harness__expect_sync(h, 3);
	ck_assert_msg(dirty_log__fetch(&d, got, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(dirty_bitmap__count(got, m->nr_pages), 1);
	ck_assert(dirty_bitmap__test(got, 40));
	/* Classic mode: the fetch cleared it, and clear is a no-op. */
	ck_assert_int_eq(dirty_log__clear(&d, got, 0, m->nr_pages, &e), 0);
	memset(got, 0, words * sizeof(uint64_t));
	ck_assert_msg(dirty_log__fetch(&d, got, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(dirty_bitmap__count(got, m->nr_pages), 0);

	plan->iteration = 0;
	kvm_harness__expect_done(h);
	free(got);
	dirty_log__destroy(&d);	/* stops logging too */
	ck_assert(!d.logging);
	kvm_harness__destroy(h);
}
END_TEST

static Suite *dirty_log_suite(void)
{
	Suite *s = suite_create("kvm-dirty-log");
	TCase *tc = tcase_create("guest");
	tcase_add_loop_test(tc, log_is_exact, 0, (int)ARRAY_SIZE(variants));
	tcase_add_test(tc, stop_and_restart);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	kvm_harness__require_kvm();
	return check_run(dirty_log_suite());
}
