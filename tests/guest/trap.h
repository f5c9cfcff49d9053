/* trap.h: exception gates; a fault is a bug, reported as a failed verdict. */
#ifndef GUEST_TRAP_H
#define GUEST_TRAP_H

#include <stdint.h>

/* Fill the IDT (called in ring 3 by the BSP: the IDT is plain user-mapped data). */
void trap__init(void);
/* Ring 0, from entry.S: print VERDICT FAIL exception ... and power off. */
void trap__report(uint64_t vec, uint64_t err, uint64_t rip, uint64_t cr2, uint64_t cs)
	__attribute__((noreturn));

#endif
