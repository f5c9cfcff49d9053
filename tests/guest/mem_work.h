/*
 * mem_work.h: each CPU dirties its own region of pages, round after round,
 * checking before each write that the page still holds the previous round.
 */
#ifndef GUEST_MEM_WORK_H
#define GUEST_MEM_WORK_H

#include <stdbool.h>
#include <stdint.h>

#include "boot.h"

struct mem_worker {
	unsigned cpu;
	uint64_t base;			/* guest-physical address of the first page */
	uint64_t npages;
	uint64_t round;			/* the round being written now (from 1) */
	uint64_t pos;			/* pages [0, pos) already hold `round` */
	uint64_t pages_verified;
	bool verify;
	uint64_t cost;			/* TSC ticks per page, 16.16 fixed point; 0: unlimited */
	uint64_t next_tsc;		/* earliest TSC for the next page */
	uint32_t next_frac;
	uint64_t burst;			/* most credit (in ticks) kept across a pause */
	uint64_t passes;		/* stop writing after this many rounds; 0: never */
	char fail[200];			/* set once, on the first mismatch */
} __attribute__((aligned(64)));

/*
 * Give each of the ncpus workers bytes/ncpus of RAM above 32 MiB and below
 * 4 GiB (the identity map).  -1 with a reason in err if it does not fit.
 */
int mem_work__plan(struct mem_worker *w, unsigned ncpus, const struct boot_info *bi,
		   uint64_t bytes, uint64_t rate, bool verify, char *err, unsigned errlen);
/*
 * Process pages until TSC `until` or until the rate limit says wait.
 * Returns pages written (>= 0), or -1 on a mismatch (w->fail says which).
 */
long mem_work__step(struct mem_worker *w, uint64_t until);
/* Check every page holds the round it last got; 0 or -1 (w->fail). */
int mem_work__finish(struct mem_worker *w);
/* Rounds completed in full. */
uint64_t mem_work__rounds(const struct mem_worker *w);

#endif
