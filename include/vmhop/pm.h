/* Power management without firmware: a PIIX4-style PM1a block at 0x600
 * (power button status, SLP_EN power-off), the 0xCF9 reset register and the
 * i8042 reset line. Guest power-off and reset both end the VM cleanly. */
#ifndef VMHOP_PM_H
#define VMHOP_PM_H

#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"

struct vm;

/* The ACPI SCI: ISA IRQ 9, level-triggered, as the FADT and MADT say. */
#define PM_SCI_IRQ 9

struct pm_state {
	uint16_t pm1_sts;
	uint16_t pm1_en;
	uint16_t pm1_cnt;
	uint8_t reset_cf9;
};

struct pm_dev;

int pm__create(struct vm *vm, struct pm_dev **out, struct err *e);
void pm__destroy(struct pm_dev *pm);
struct pm_state *pm__state(struct pm_dev *pm);
/* Presses the power button: sets PWRBTN_STS for the guest to see, and
 * raises the SCI when the guest enabled the event (an ACPI guest). */
void pm__power_button(struct pm_dev *pm);

#endif
