/* clock.h: time from rdtsc (the TSC frequency comes from the VMM or the PIT). */
#ifndef GUEST_CLOCK_H
#define GUEST_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

extern uint64_t clock_khz;

/* Find the TSC frequency; returns the source ("cpuid" or "pit"). */
const char *clock__init(void);
uint64_t clock__ms_to_ticks(uint64_t ms);
uint64_t clock__us_to_ticks(uint64_t us);
uint64_t clock__ticks_to_ms(uint64_t ticks);

/*
 * A timeout for polling that survives a pause of the VM: it counts TSC time
 * between polls, each gap capped at 100 ms, so a migration that freezes
 * the guest for seconds does not fire it by itself.
 */
struct timeout {
	uint64_t last, left;
};

void timeout__start(struct timeout *t, uint64_t ms);
bool timeout__expired(struct timeout *t);

#endif
