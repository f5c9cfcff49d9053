/* The vCPU state each boot protocol starts from. */
#include <string.h>
#include <sys/ioctl.h>

#include "vmhop/boot.h"
#include "vmhop/vcpu.h"

static struct kvm_segment segment64(uint16_t sel, uint8_t type, bool code)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type, .present = 1,
		.dpl = 0, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1,
	};
}

/* Linux 64-bit entry: long mode with the loader's identity paging and GDT,
 * __BOOT_CS/__BOOT_DS loaded, interrupts off, RSI = boot_params. */
static int setup_linux64(struct vcpu *v, const struct boot_entry *be, struct err *e)
{
	struct kvm_sregs sregs;
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return err__setsys(e, errno, "KVM_GET_SREGS vCPU %u", v->id);
	sregs.cs = segment64(0x10, 0xb, true);
	sregs.ds = segment64(0x18, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = 0x20,
					  .type = 0xb, .present = 1, .s = 0 };
	sregs.gdt.base = BOOT_LINUX_GDT;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = 0x80000031;	/* PG | NE | ET | PE */
	sregs.cr3 = BOOT_LINUX_PML4;
	sregs.cr4 = 0x20;	/* PAE */
	sregs.efer = 0x500;	/* LME | LMA */
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return err__setsys(e, errno, "KVM_SET_SREGS vCPU %u", v->id);
	struct kvm_regs regs = { .rip = be->entry, .rsi = be->boot_info, .rflags = 0x2 };
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return err__setsys(e, errno, "KVM_SET_REGS vCPU %u", v->id);
	return 0;
}

int boot__setup_vcpu(struct vcpu *v, const struct boot_entry *be, struct err *e)
{
	/* With the in-kernel LAPIC, KVM resets application processors to
	 * "wait for INIT/SIPI": exactly what a Linux guest brings up itself. */
	if (be->bsp_only && v->id != 0)
		return 0;
	switch (be->proto) {
	case BOOT_PVH:
		return vcpu__setup_pvh(v, be->entry, be->boot_info, e);
	case BOOT_LINUX64:
		return setup_linux64(v, be, e);
	}
	return err__set(e, EINVAL, "unknown boot protocol %d", (int)be->proto);
}
