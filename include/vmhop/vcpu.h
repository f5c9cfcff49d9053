/* One vCPU: its KVM fd, the shared kvm_run page and the thread running it. */
#ifndef VMHOP_VCPU_H
#define VMHOP_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id;		/* KVM vcpu id == initial APIC id */
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	bool throttle_pending;	/* under vm->lock: sleep before the next KVM_RUN */
	bool io_pending;	/* vCPU thread only: the last exit was port or MMIO I/O, which
			 * KVM finishes (RIP, an IN's RAX) in the next KVM_RUN */
};

int vcpu__create(struct vm *vm, unsigned id, struct vcpu **out, struct err *e);
void vcpu__destroy(struct vcpu *v);
/* Sets the registers a PVH entry expects (32-bit flat protected mode,
 * paging off, EBX = start_info) and makes application processors runnable. */
int vcpu__setup_pvh(struct vcpu *v, uint64_t entry, uint64_t start_info, struct err *e);
int vcpu__start(struct vcpu *v, struct err *e);
/* Makes the vCPU leave KVM_RUN soon; the caller has set the reason under
 * vm->lock before calling. */
void vcpu__kick(struct vcpu *v);
/* Called by a vCPU thread after KVM_RUN was interrupted: sleeps the
 * throttle's share when the throttle kicked it (vmm/throttle.c). */
void vcpu__throttle_sleep(struct vcpu *v);
/* Multi-line dump of the general and segment registers (malloc'd). */
char *vcpu__dump_regs(struct vcpu *v);

#endif
