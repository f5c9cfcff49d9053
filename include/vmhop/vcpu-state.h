/* Everything KVM holds for one vCPU, as plain data, and the one order in
 * which it must be put back. Save and load run while the VM is paused. */
#ifndef VMHOP_VCPU_STATE_H
#define VMHOP_VCPU_STATE_H

#include <linux/kvm.h>
#include <stdint.h>

#include "vmhop/err.h"

#define VCPU_STATE_MAX_MSRS 128
#define VCPU_STATE_MAX_CPUID 256

struct vcpu;

struct vcpu_state {
	uint32_t nr_cpuid;
	struct kvm_cpuid_entry2 cpuid[VCPU_STATE_MAX_CPUID];
	struct kvm_mp_state mp_state;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint32_t xsave[1024];		/* struct kvm_xsave's 4 KiB region (FPU/SSE/AVX);
					 * kept as an array: kvm_xsave ends in a flexible member */
	struct kvm_xcrs xcrs;
	struct kvm_debugregs debugregs;
	struct kvm_lapic_state lapic;
	uint32_t nr_msrs;
	struct kvm_msr_entry msrs[VCPU_STATE_MAX_MSRS];
	struct kvm_vcpu_events events;
	uint32_t tsc_khz;
	uint32_t has_xsave, has_xcrs;	/* what the source KVM could save */
};

/* One step of the restore order: name and load function. The save side
 * walks the same table so both stay in one place. */
struct vcpu_state_step {
	const char *name;
	int (*save)(struct vcpu *v, struct vcpu_state *s, struct err *e);
	int (*load)(struct vcpu *v, const struct vcpu_state *s, struct err *e);
};

/* The order, as Firecracker writes it down and KVM requires: CPUID before
 * anything the CPUID shapes; MP state; REGS; SREGS (mode, CR3, EFER);
 * XSAVE and XCRS; debug registers; LAPIC after SREGS (APIC base MSR);
 * MSRs after LAPIC (TSC deadline needs the timer mode); events last (they
 * may inject what everything else must be ready for). */
const struct vcpu_state_step *vcpu_state__steps(unsigned *n);

int vcpu_state__save(struct vcpu *v, struct vcpu_state *s, struct err *e);
int vcpu_state__load(struct vcpu *v, const struct vcpu_state *s, struct err *e);

/* The MSR indexes worth saving on this host: KVM's index list filtered to
 * those KVM_GET_MSRS can actually read. Filled once per VM. */
int vcpu_state__msr_list(int kvm_fd, int vcpu_fd, uint32_t *idx, uint32_t max, uint32_t *n,
			 struct err *e);

#endif
