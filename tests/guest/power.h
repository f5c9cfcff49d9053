/* power.h: ACPI-style power button and power off (PIIX4 PM block at 0x600). */
#ifndef GUEST_POWER_H
#define GUEST_POWER_H

#include <stdbool.h>

/* Enable the power button event (PM1a_EN.PWRBTN_EN). */
void power__init(void);
/* True (once per press) when the host asked for a shutdown (PM1a_STS.PWRBTN_STS). */
bool power__shutdown_requested(void);
void power__off(void) __attribute__((noreturn));

#endif
