#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmhop/util.h"
#include "vmhop/vcpu-state.h"
#include "vmhop/vcpu.h"
#include "vmhop/vm.h"

#define IOC_SAVE(fn, req, field)                                               \
	static int fn(struct vcpu *v, struct vcpu_state *s, struct err *e)     \
	{                                                                      \
		if (ioctl(v->fd, req, &s->field) < 0)                          \
			return err__setsys(e, errno, #req " vCPU %u", v->id);  \
		return 0;                                                      \
	}
#define IOC_LOAD(fn, req, field)                                                   \
	static int fn(struct vcpu *v, const struct vcpu_state *s, struct err *e)   \
	{                                                                          \
		if (ioctl(v->fd, req, &s->field) < 0)                              \
			return err__setsys(e, errno, #req " vCPU %u", v->id);      \
		return 0;                                                          \
	}

IOC_SAVE(save_mp, KVM_GET_MP_STATE, mp_state)
IOC_LOAD(load_mp, KVM_SET_MP_STATE, mp_state)
IOC_SAVE(save_regs, KVM_GET_REGS, regs)
IOC_LOAD(load_regs, KVM_SET_REGS, regs)
IOC_SAVE(save_sregs, KVM_GET_SREGS, sregs)
IOC_LOAD(load_sregs, KVM_SET_SREGS, sregs)
IOC_SAVE(save_dregs, KVM_GET_DEBUGREGS, debugregs)
IOC_LOAD(load_dregs, KVM_SET_DEBUGREGS, debugregs)
IOC_SAVE(save_lapic, KVM_GET_LAPIC, lapic)
IOC_LOAD(load_lapic, KVM_SET_LAPIC, lapic)
IOC_SAVE(save_events, KVM_GET_VCPU_EVENTS, events)
IOC_LOAD(load_events, KVM_SET_VCPU_EVENTS, events)

static int save_cpuid(struct vcpu *v, struct vcpu_state *s, struct err *e)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + VCPU_STATE_MAX_CPUID * sizeof(c->entries[0]));
	if (!c)
		return err__set(e, ENOMEM, "out of memory");
	c->nent = VCPU_STATE_MAX_CPUID;
	int r = 0;
	if (ioctl(v->fd, KVM_GET_CPUID2, c) < 0)
		r = err__setsys(e, errno, "KVM_GET_CPUID2 vCPU %u", v->id);
	else {
		s->nr_cpuid = c->nent;
		memcpy(s->cpuid, c->entries, c->nent * sizeof(c->entries[0]));
	}
	free(c);
	return r;
}

static int load_cpuid(struct vcpu *v, const struct vcpu_state *s, struct err *e)
{
	if (s->nr_cpuid > VCPU_STATE_MAX_CPUID)
		return err__set(e, EINVAL, "vCPU %u: %u CPUID entries (at most %d)", v->id, s->nr_cpuid,
				VCPU_STATE_MAX_CPUID);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + s->nr_cpuid * sizeof(c->entries[0]));
	if (!c)
		return err__set(e, ENOMEM, "out of memory");
	c->nent = s->nr_cpuid;
	memcpy(c->entries, s->cpuid, s->nr_cpuid * sizeof(c->entries[0]));
	int r = 0;
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		r = err__setsys(e, errno, "KVM_SET_CPUID2 vCPU %u", v->id);
	free(c);
	return r;
}

/* XSAVE/XCRS are optional capabilities: a host without them saves none and
 * the FPU state travels in the legacy area of `xsave` through KVM_GET_FPU. */
static int save_xsave(struct vcpu *v, struct vcpu_state *s, struct err *e)
{
	struct kvm_xsave *xs = calloc(1, sizeof(*xs));
	if (!xs)
		return err__set(e, ENOMEM, "out of memory");
	s->has_xsave = ioctl(v->fd, KVM_GET_XSAVE, xs) == 0;
	memcpy(s->xsave, xs->region, sizeof(s->xsave));
	free(xs);
	s->has_xcrs = ioctl(v->fd, KVM_GET_XCRS, &s->xcrs) == 0;
	return 0;
}

static int load_xsave(struct vcpu *v, const struct vcpu_state *s, struct err *e)
{
	if (s->has_xsave) {
		struct kvm_xsave *xs = calloc(1, sizeof(*xs));
		if (!xs)
			return err__set(e, ENOMEM, "out of memory");
		memcpy(xs->region, s->xsave, sizeof(s->xsave));
		int r = ioctl(v->fd, KVM_SET_XSAVE, xs);
		int saved = errno;
		free(xs);
		if (r < 0)
			return err__setsys(e, saved, "KVM_SET_XSAVE vCPU %u", v->id);
	}
	if (s->has_xcrs && ioctl(v->fd, KVM_SET_XCRS, &s->xcrs) < 0)
		return err__setsys(e, errno, "KVM_SET_XCRS vCPU %u", v->id);
	return 0;
}

static int msr_ioctl(struct vcpu *v, unsigned long req, struct kvm_msr_entry *ents, uint32_t n)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
	if (!m)
		return -ENOMEM;
	m->nmsrs = n;
	memcpy(m->entries, ents, n * sizeof(*ents));
	int r = ioctl(v->fd, req, m);
	if (r > 0 && req == KVM_GET_MSRS)
		memcpy(ents, m->entries, (size_t)r * sizeof(*ents));
	free(m);
	return r < 0 ? -errno : r;
}

int vcpu_state__msr_list(int kvm_fd, int vcpu_fd, uint32_t *idx, uint32_t max, uint32_t *n,
			 struct err *e)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + 1024 * sizeof(uint32_t));
	if (!l)
		return err__set(e, ENOMEM, "out of memory");
	l->nmsrs = 1024;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int r = err__setsys(e, errno, "KVM_GET_MSR_INDEX_LIST");
		free(l);
		return r;
	}
	struct vcpu probe = { .fd = vcpu_fd };
	*n = 0;
	for (uint32_t i = 0; i < l->nmsrs && *n < max; i++) {
		struct kvm_msr_entry en = { .index = l->indices[i] };
		/* KVM lists MSRs the guest's CPUID may not enable: keep those it reads. */
		if (msr_ioctl(&probe, KVM_GET_MSRS, &en, 1) == 1)
			idx[(*n)++] = l->indices[i];
	}
	free(l);
	return 0;
}

/* Saves run on one thread with the VM paused, so filling the cache here
 * needs no lock. */
static int vm_msr_list(struct vcpu *v, struct err *e)
{
	struct vm *vm = v->vm;
	if (vm->msr_index)
		return 0;
	uint32_t *idx = calloc(VCPU_STATE_MAX_MSRS, sizeof(*idx));
	if (!idx)
		return err__set(e, ENOMEM, "out of memory");
	uint32_t n;
	int r = vcpu_state__msr_list(vm->kvm_fd, v->fd, idx, VCPU_STATE_MAX_MSRS, &n, e);
	if (r < 0) {
		free(idx);
		return r;
	}
	vm->msr_index = idx;
	vm->nr_msr_index = n;
	return 0;
}

static int save_msrs(struct vcpu *v, struct vcpu_state *s, struct err *e)
{
	int r = vm_msr_list(v, e);
	if (r < 0)
		return r;
	uint32_t n = v->vm->nr_msr_index;
	for (uint32_t i = 0; i < n; i++)
		s->msrs[i] = (struct kvm_msr_entry){ .index = v->vm->msr_index[i] };
	r = msr_ioctl(v, KVM_GET_MSRS, s->msrs, n);
	if (r < 0 || (uint32_t)r != n)
		return err__set(e, EIO, "KVM_GET_MSRS vCPU %u: read %d of %u MSRs", v->id, r, n);
	s->nr_msrs = n;
	return 0;
}

static int load_msrs(struct vcpu *v, const struct vcpu_state *s, struct err *e)
{
	if (s->nr_msrs > VCPU_STATE_MAX_MSRS)
		return err__set(e, EINVAL, "vCPU %u: %u MSRs (at most %d)", v->id, s->nr_msrs,
				VCPU_STATE_MAX_MSRS);
	struct kvm_msr_entry ents[VCPU_STATE_MAX_MSRS];
	memcpy(ents, s->msrs, s->nr_msrs * sizeof(ents[0]));
	int r = msr_ioctl(v, KVM_SET_MSRS, ents, s->nr_msrs);
	if (r < 0 || (uint32_t)r != s->nr_msrs)
		return err__set(e, EIO, "KVM_SET_MSRS vCPU %u: MSR 0x%x refused", v->id,
				r >= 0 && (uint32_t)r < s->nr_msrs ? s->msrs[r].index : 0);
	return 0;
}

static int save_tsc_khz(struct vcpu *v, struct vcpu_state *s, struct err *e)
{
	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	s->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	return 0;
}

static int load_tsc_khz(struct vcpu *v, const struct vcpu_state *s, struct err *e)
{
	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	if (!s->tsc_khz || khz == (int)s->tsc_khz)
		return 0;
	/* Without TSC scaling the guest would see time run at another rate. */
	if (ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)s->tsc_khz) < 0)
		return err__setsys(e, errno, "vCPU %u: TSC runs at %d kHz here, the guest's at %u kHz, "
				   "and KVM cannot scale it", v->id, khz, s->tsc_khz);
	return 0;
}

static const struct vcpu_state_step steps[] = {
	{ "cpuid", save_cpuid, load_cpuid },
	{ "tsc-khz", save_tsc_khz, load_tsc_khz },
	{ "mp-state", save_mp, load_mp },
	{ "regs", save_regs, load_regs },
	{ "sregs", save_sregs, load_sregs },
	{ "xsave", save_xsave, load_xsave },
	{ "debugregs", save_dregs, load_dregs },
	{ "lapic", save_lapic, load_lapic },
	{ "msrs", save_msrs, load_msrs },
	{ "events", save_events, load_events },
};

const struct vcpu_state_step *vcpu_state__steps(unsigned *n)
{
	*n = ARRAY_SIZE(steps);
	return steps;
}

int vcpu_state__save(struct vcpu *v, struct vcpu_state *s, struct err *e)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		int r = steps[i].save(v, s, e);
		if (r < 0)
			return r;
	}
	return 0;
}

int vcpu_state__load(struct vcpu *v, const struct vcpu_state *s, struct err *e)
{
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		int r = steps[i].load(v, s, e);
		if (r < 0)
			return r;
	}
	return 0;
}
