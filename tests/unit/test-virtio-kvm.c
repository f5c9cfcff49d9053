/* The KVM side of the devices, on a real VM with an in-kernel irqchip and
 * one vCPU that never runs: KVM accepts our full GSI routing table, an
 * MSI-X interrupt sent through its irqfd and an INTx level through the
 * IOAPIC both land in the vCPU's LAPIC IRR, and the queue ioeventfd follows
 * the BAR when the guest moves it. Skipped (77) without /dev/kvm. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/check-run.h"
#include "vmhop/irq-routing.h"
#include "vmhop/pci.h"
#include "test-virtio-util.h"

static struct tg T;
static char *disk_path;
static int vcpu_fd = -1;

#define MSI_VECTOR	0x41
#define INTX_VECTOR	0x51

static void setup(void)
{
	tg_init(&T);
	struct vm *vm = &T.vm;
	struct err e = { 0 };
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(vm->kvm_fd, 0);
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	ck_assert_int_ge(vm->vm_fd, 0);
	ck_assert_int_eq(ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0), 0);
	ck_assert_int_eq(guest_mem__register(&vm->mem, vm->vm_fd, 0, &e), 0);
	ck_assert_int_eq(irq_routing__create(&vm->irq, vm->vm_fd, &e), 0);
	vcpu_fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0);
	ck_assert_int_ge(vcpu_fd, 0);
	/* Software-enable the LAPIC (SVR bit 8) so it accepts interrupts. */
	struct kvm_lapic_state l;
	ck_assert_int_eq(ioctl(vcpu_fd, KVM_GET_LAPIC, &l), 0);
	uint32_t svr;
	memcpy(&svr, &l.regs[0xF0], 4);
	svr |= 0x1FF;
	memcpy(&l.regs[0xF0], &svr, 4);
	ck_assert_int_eq(ioctl(vcpu_fd, KVM_SET_LAPIC, &l), 0);

	disk_path = tg_make_disk(&T, "k.img", 64 * 1024);
	ck_assert_msg(tg_add_blk(&T, disk_path, "vdk", false, false, &e) == 0, "%s", e.msg);
	virtio_pci__set_irq_hook(&T.blk->vp, NULL, NULL);	/* the real path */
}

static void teardown(void)
{
	struct vm *vm = &T.vm;
	int vm_fd = vm->vm_fd, kvm_fd = vm->kvm_fd;
	tg_fini(&T);	/* devices first: they release routes and irqfds */
	irq_routing__destroy(vm->irq);
	close(vcpu_fd);
	close(vm_fd);
	close(kvm_fd);
	free(disk_path);
}

static bool irr_has(unsigned vec, int timeout_ms)
{
	for (int i = 0; i <= timeout_ms; i++) {
		struct kvm_lapic_state l;
		ck_assert_int_eq(ioctl(vcpu_fd, KVM_GET_LAPIC, &l), 0);
		uint32_t irr;
		memcpy(&irr, &l.regs[0x200 + 0x10 * (vec / 32)], 4);
		if (irr & (1u << (vec % 32)))
			return true;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return false;
}

START_TEST(routing_accepted_by_kvm)
{
	struct irq_routing *r = T.vm.irq;
	struct err e = { 0 };
	unsigned g1, g2;
	ck_assert_msg(irq_routing__msi_add(r, 0xFEE00000, 0x61, &g1, &e) == 0, "%s", e.msg);
	ck_assert_msg(irq_routing__msi_add(r, 0xFEE00000, 0x62, &g2, &e) == 0, "%s", e.msg);
	int fd = eventfd(0, EFD_CLOEXEC);
	ck_assert_msg(irq_routing__irqfd_assign(r, fd, g2, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(irq_routing__msi_update(r, g2, 0xFEE00000, 0x63, &e), 0);
	uint64_t one = 1;
	ck_assert_int_eq(write(fd, &one, 8), 8);
	ck_assert(irr_has(0x63, 1000));		/* the irqfd follows the updated route */
	irq_routing__irqfd_deassign(r, fd, g2);
	irq_routing__msi_free(r, g1);
	irq_routing__msi_free(r, g2);
	ck_assert_int_eq(irq_routing__signal_msi(r, 0xFEE00000, 0x64), 0);
	ck_assert(irr_has(0x64, 0));
	close(fd);
}
END_TEST

START_TEST(msix_through_irqfd)
{
	struct virtio_pci *vp = &T.blk->vp;
	unsigned m = 0;
	for (unsigned p = pci__config_read(T.vm.pci, vp->pci.slot, 0, PCI_REG_CAP_PTR, 1); p;
	     p = pci__config_read(T.vm.pci, vp->pci.slot, 0, p + 1, 1))
		if (pci__config_read(T.vm.pci, vp->pci.slot, 0, p, 1) == PCI_CAP_ID_MSIX)
			m = p;
	ck_assert_uint_ne(m, 0);
	pci__config_write(T.vm.pci, vp->pci.slot, 0, m + 2, 2, 0x8000);
	ck_assert_uint_eq(tg_driver_init(&T, 0, 16), 0x0f);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	uint64_t ent = VIRTIO_PCI_MSIX_TABLE_OFF + 16;
	tg_wr(&T, ent, 4, 0xFEE00000);
	tg_wr(&T, ent + 4, 4, 0);
	tg_wr(&T, ent + 8, 4, MSI_VECTOR);
	tg_wr(&T, ent + 12, 4, 0);
	uint8_t buf[512];
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert(irr_has(MSI_VECTOR, 1000));
	ck_assert_int_ge(vp->msix_rt[1].gsi, IRQ_ROUTING_MSI_BASE);	/* irqfd, not the fallback */
	ck_assert(!vp->msix_rt[1].failed);
}
END_TEST

START_TEST(intx_through_ioapic)
{
	struct virtio_pci *vp = &T.blk->vp;
	unsigned pin = vp->pci.gsi;
	ck_assert_uint_ge(pin, 16);
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };
	ck_assert_int_eq(ioctl(T.vm.vm_fd, KVM_GET_IRQCHIP, &chip), 0);
	/* fixed, physical, level-triggered, unmasked, to APIC 0 */
	chip.chip.ioapic.redirtbl[pin].bits = INTX_VECTOR | (1ULL << 15);
	ck_assert_int_eq(ioctl(T.vm.vm_fd, KVM_SET_IRQCHIP, &chip), 0);
	ck_assert_uint_eq(tg_driver_init(&T, 0, 16), 0x0f);
	uint8_t buf[512];
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert(irr_has(INTX_VECTOR, 1000));
	ck_assert(vp->pci.intx_asserted);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_QUEUE);
	ck_assert(!vp->pci.intx_asserted);
}
END_TEST

/* KVM refuses a second ioeventfd with the same address, length and
 * datamatch (EEXIST): that tells where ours is. */
static int probe_ioeventfd(uint64_t addr)
{
	int fd = eventfd(0, EFD_CLOEXEC);
	struct kvm_ioeventfd ev = { .datamatch = 0, .addr = addr, .len = 2, .fd = fd,
				    .flags = KVM_IOEVENTFD_FLAG_DATAMATCH };
	int r = ioctl(T.vm.vm_fd, KVM_IOEVENTFD, &ev) < 0 ? -errno : 0;
	if (r == 0) {
		ev.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
		ioctl(T.vm.vm_fd, KVM_IOEVENTFD, &ev);
	}
	close(fd);
	return r;
}

START_TEST(ioeventfd_follows_bar)
{
	struct virtio_pci *vp = &T.blk->vp;
	unsigned slot = vp->pci.slot;
	uint64_t old = T.bar, nbar = 0xD8000000;
	ck_assert(vp->ioeventfd[0]);
	ck_assert_int_eq(probe_ioeventfd(old + VIRTIO_PCI_NOTIFY_OFF), -EEXIST);
	uint32_t cmd = pci__config_read(T.vm.pci, slot, 0, PCI_REG_COMMAND, 2);
	pci__config_write(T.vm.pci, slot, 0, PCI_REG_COMMAND, 2, cmd & ~PCI_CMD_MEM);
	ck_assert(!vp->ioeventfd[0]);
	ck_assert_int_eq(probe_ioeventfd(old + VIRTIO_PCI_NOTIFY_OFF), 0);
	pci__config_write(T.vm.pci, slot, 0, PCI_REG_BAR0, 4, (uint32_t)nbar);
	pci__config_write(T.vm.pci, slot, 0, PCI_REG_COMMAND, 2, cmd);
	ck_assert(vp->ioeventfd[0]);
	ck_assert_int_eq(probe_ioeventfd(nbar + VIRTIO_PCI_NOTIFY_OFF), -EEXIST);
	ck_assert_int_eq(probe_ioeventfd(old + VIRTIO_PCI_NOTIFY_OFF), 0);
	/* moved while decoding stays on */
	pci__config_write(T.vm.pci, slot, 0, PCI_REG_BAR0, 4, (uint32_t)old);
	ck_assert_int_eq(probe_ioeventfd(old + VIRTIO_PCI_NOTIFY_OFF), -EEXIST);
	ck_assert_int_eq(probe_ioeventfd(nbar + VIRTIO_PCI_NOTIFY_OFF), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("virtio-kvm");
	TCase *tc = tcase_create("kvm");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, routing_accepted_by_kvm);
	tcase_add_test(tc, msix_through_irqfd);
	tcase_add_test(tc, intx_through_ioapic);
	tcase_add_test(tc, ioeventfd_follows_bar);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("SKIP: test-virtio-kvm: /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	close(fd);
	return check_run(suite());
}
