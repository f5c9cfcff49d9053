/* Guest code of test-kvm-dirty-log.c: writes what the host planned, nothing
 * else, so the host can demand that the dirty log equals the plan. Compiled
 * without instrumentation (tests/unit/harness.mk). */
#include <stdint.h>

#include "tests/unit/kvm-harness.h"

void guest_dirty_writer(uint64_t plan_gva, uint64_t ram_gva)
{
	struct dirty_plan *plan = (struct dirty_plan *)plan_gva;
	GUEST_SYNC(0);
	/* Each GUEST_SYNC clobbers memory: the plan is read afresh. */
	while (plan->iteration) {
		uint64_t it = plan->iteration;
		for (uint64_t i = 0; i < plan->nr_writes; i++)
			*(volatile uint64_t *)(ram_gva + plan->pages[i] * 4096 + plan->offsets[i]) = it;
		uint64_t sum = 0;
		for (uint64_t i = 0; i < plan->nr_reads; i++)
			sum += *(volatile uint64_t *)(ram_gva + plan->reads[i] * 4096);
		/* Reads must not count as writes; keep them from being elided. */
		__asm__ volatile("" : : "r"(sum));
		GUEST_SYNC(it);
	}
	GUEST_DONE();
}
