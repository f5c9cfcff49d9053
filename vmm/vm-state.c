#include <string.h>
#include <sys/ioctl.h>

#include "vmhop/vm-state.h"
#include "vmhop/vm.h"

static int get_chip(struct vm *vm, struct kvm_irqchip *c, unsigned id, struct err *e)
{
	memset(c, 0, sizeof(*c));
	c->chip_id = id;
	if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, c) < 0)
		return err__setsys(e, errno, "KVM_GET_IRQCHIP %u", id);
	return 0;
}

static int set_chip(struct vm *vm, const struct kvm_irqchip *c, unsigned id, struct err *e)
{
	if (c->chip_id != id)
		return err__set(e, EINVAL, "irqchip state %u carries chip id %u", id, c->chip_id);
	if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, c) < 0)
		return err__setsys(e, errno, "KVM_SET_IRQCHIP %u", id);
	return 0;
}

int vm_state__save(struct vm *vm, struct vm_kvm_state *s, struct err *e)
{
	memset(s, 0, sizeof(*s));
	int r = get_chip(vm, &s->pic_master, KVM_IRQCHIP_PIC_MASTER, e);
	if (!r)
		r = get_chip(vm, &s->pic_slave, KVM_IRQCHIP_PIC_SLAVE, e);
	if (!r)
		r = get_chip(vm, &s->ioapic, KVM_IRQCHIP_IOAPIC, e);
	if (!r && ioctl(vm->vm_fd, KVM_GET_PIT2, &s->pit) < 0)
		r = err__setsys(e, errno, "KVM_GET_PIT2");
	if (!r && ioctl(vm->vm_fd, KVM_GET_CLOCK, &s->clock) < 0)
		r = err__setsys(e, errno, "KVM_GET_CLOCK");
	return r;
}

int vm_state__load(struct vm *vm, const struct vm_kvm_state *s, struct err *e)
{
	int r = set_chip(vm, &s->pic_master, KVM_IRQCHIP_PIC_MASTER, e);
	if (!r)
		r = set_chip(vm, &s->pic_slave, KVM_IRQCHIP_PIC_SLAVE, e);
	if (!r)
		r = set_chip(vm, &s->ioapic, KVM_IRQCHIP_IOAPIC, e);
	if (!r && ioctl(vm->vm_fd, KVM_SET_PIT2, &s->pit) < 0)
		r = err__setsys(e, errno, "KVM_SET_PIT2");
	if (!r) {
		/* Only the clock value travels: flags such as KVM_CLOCK_TSC_STABLE
		 * describe the source host, and realtime pairing is not offered. */
		struct kvm_clock_data c = { .clock = s->clock.clock };
		if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &c) < 0)
			r = err__setsys(e, errno, "KVM_SET_CLOCK");
	}
	return r;
}
