/* The dirty-log bitmap helpers and dirty_log's checks that need no KVM:
 * every helper against a bit-by-bit reference on random bitmaps of awkward
 * sizes (0, 1, 63, 64, 65, ...). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "vmhop/dirty-log.h"
#include "vmhop/util.h"

static const uint64_t sizes[] = { 0, 1, 2, 63, 64, 65, 127, 128, 129, 1000, 4096, 20011 };

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* Random bits with a chosen density, and garbage past nbits in the last word
 * (helpers must ignore it: KVM's and our bitmaps round up to words). */
static uint64_t *random_bitmap(uint64_t nbits, unsigned per_mille, uint64_t *rng)
{
	uint64_t words = dirty_bitmap__words(nbits) + 1;
	uint64_t *bm = calloc(words, sizeof(uint64_t));
	ck_assert_ptr_nonnull(bm);
	for (uint64_t n = 0; n < nbits; n++)
		if (rng_next(rng) % 1000 < per_mille)
			bm[n / 64] |= 1ULL << (n % 64);
	if (nbits % 64)
		bm[nbits / 64] |= ~0ULL << (nbits % 64);
	return bm;
}

static bool ref_test(const uint64_t *bm, uint64_t n)
{
	return (bm[n / 64] >> (n % 64)) & 1;
}

START_TEST(count_next_and_for_each)
{
	static const unsigned densities[] = { 0, 1, 30, 500, 990, 1000 };
	uint64_t rng = 0xb17b17;
	for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
		for (size_t d = 0; d < ARRAY_SIZE(densities); d++) {
			uint64_t nbits = sizes[s];
			uint64_t *bm = random_bitmap(nbits, densities[d], &rng);
			uint64_t count = 0;
			for (uint64_t n = 0; n < nbits; n++)
				count += ref_test(bm, n);
			ck_assert_uint_eq(dirty_bitmap__count(bm, nbits), count);

			/* next / next_clear from every start. (Plain ifs in the loops:
			 * each passing ck_assert costs Check a write.) */
			uint64_t next_set = nbits, next_clear = nbits;
			for (uint64_t from = nbits + 1; from-- > 0;) {
				if (from < nbits) {
					if (ref_test(bm, from))
						next_set = from;
					else
						next_clear = from;
				}
				if (dirty_bitmap__next(bm, nbits, from) != next_set ||
				    dirty_bitmap__next_clear(bm, nbits, from) != next_clear)
					ck_abort_msg("%llu bits, density %u, from %llu: next %llu/%llu, "
						     "next_clear %llu/%llu", (unsigned long long)nbits,
						     densities[d], (unsigned long long)from,
						     (unsigned long long)dirty_bitmap__next(bm, nbits, from),
						     (unsigned long long)next_set,
						     (unsigned long long)dirty_bitmap__next_clear(bm, nbits, from),
						     (unsigned long long)next_clear);
			}
			ck_assert_uint_eq(dirty_bitmap__next(bm, nbits, nbits + 100), nbits);

			uint64_t n, seen = 0, last = 0;
			dirty_bitmap__for_each(n, bm, nbits) {
				if (!ref_test(bm, n) || (seen && n <= last))
					ck_abort_msg("for_each visited %llu", (unsigned long long)n);
				last = n;
				seen++;
			}
			ck_assert_uint_eq(seen, count);
			free(bm);
		}
	}
}
END_TEST

START_TEST(set_and_clear)
{
	uint64_t bm[4] = { 0 };
	dirty_bitmap__set(bm, 0);
	dirty_bitmap__set(bm, 63);
	dirty_bitmap__set(bm, 64);
	dirty_bitmap__set(bm, 255);
	ck_assert_uint_eq(bm[0], 0x8000000000000001ULL);
	ck_assert_uint_eq(bm[1], 1);
	ck_assert_uint_eq(bm[3], 0x8000000000000000ULL);
	ck_assert(dirty_bitmap__test(bm, 63));
	ck_assert(!dirty_bitmap__test(bm, 62));
	dirty_bitmap__clear_bit(bm, 63);
	ck_assert(!dirty_bitmap__test(bm, 63));
	ck_assert_uint_eq(dirty_bitmap__count(bm, 256), 3);
}
END_TEST

START_TEST(ranges)
{
	const uint64_t nbits = 300;
	uint64_t rng = 42;
	for (int round = 0; round < 2000; round++) {
		uint64_t bm[5], ref[5];
		for (int i = 0; i < 5; i++)
			bm[i] = ref[i] = rng_next(&rng);
		uint64_t first = rng_next(&rng) % nbits;
		uint64_t count = rng_next(&rng) % (nbits - first + 1);
		bool set = round % 2;
		if (set)
			dirty_bitmap__set_range(bm, first, count);
		else
			dirty_bitmap__clear_range(bm, first, count);
		for (uint64_t n = first; n < first + count; n++) {
			if (set)
				ref[n / 64] |= 1ULL << (n % 64);
			else
				ref[n / 64] &= ~(1ULL << (n % 64));
		}
		if (memcmp(bm, ref, sizeof(bm)))
			ck_abort_msg("%s range %llu+%llu", set ? "set" : "clear",
				     (unsigned long long)first, (unsigned long long)count);
	}
}
END_TEST

/* What dirty_log checks before it ever calls KVM (vm_fd -1 proves it). */
START_TEST(log_without_kvm)
{
	struct guest_mem m;
	struct err e = { 0 };
	ck_assert_msg(guest_mem__create(&m, 4 * MiB + 4096, "test-dirty", &e) == 0, "%s", e.msg);
	struct dirty_log d;
	dirty_log__init(&d, &m, -1);
	ck_assert_uint_eq(dirty_log__bitmap_words(&d), dirty_bitmap__words(1025));
	uint64_t bm[17] = { 0 };
	ck_assert_int_eq(dirty_log__fetch(&d, bm, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "not started"), "%s", e.msg);
	err__clear(&e);
	/* Classic mode: clearing is a no-op, even for nonsense ranges. */
	ck_assert_int_eq(dirty_log__clear(&d, bm, 0, 1 << 20, &e), 0);
	ck_assert_int_eq(dirty_log__stop(&d, &e), 0);
	/* Pretend manual protect is on: ranges are checked first. */
	d.manual_protect = d.logging = true;
	ck_assert_int_eq(dirty_log__clear(&d, bm, 1000, 26, &e), -ERANGE);
	err__clear(&e);
	ck_assert_int_eq(dirty_log__clear(&d, bm, 1026, 0, &e), -ERANGE);
	err__clear(&e);
	/* In range but nothing set: no KVM call, so no error from fd -1. */
	ck_assert_int_eq(dirty_log__clear(&d, bm, 0, 1025, &e), 0);
	d.manual_protect = d.logging = false;
	ck_assert_int_eq(dirty_log__enable_manual_protect(&d, true, &e), -EOPNOTSUPP);
	dirty_log__destroy(&d);
	guest_mem__destroy(&m);
}
END_TEST

static Suite *bitmap_suite(void)
{
	Suite *s = suite_create("dirty-bitmap");
	TCase *tc = tcase_create("helpers");
	tcase_add_test(tc, count_next_and_for_each);
	tcase_add_test(tc, set_and_clear);
	tcase_add_test(tc, ranges);
	tcase_add_test(tc, log_without_kvm);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(bitmap_suite());
}
