/* VM-wide KVM state beside the vCPUs: the in-kernel PIC pair, IOAPIC and
 * PIT, and the kvm-clock base. Plain data, saved while paused. */
#ifndef VMHOP_VM_STATE_H
#define VMHOP_VM_STATE_H

#include <linux/kvm.h>

#include "vmhop/err.h"

struct vm;

struct vm_kvm_state {
	struct kvm_irqchip pic_master;
	struct kvm_irqchip pic_slave;
	struct kvm_irqchip ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

int vm_state__save(struct vm *vm, struct vm_kvm_state *s, struct err *e);
/* Loads the irqchips and PIT, then the clock, so the guest's kvm-clock
 * continues from the value it had when it was paused. */
int vm_state__load(struct vm *vm, const struct vm_kvm_state *s, struct err *e);

#endif
