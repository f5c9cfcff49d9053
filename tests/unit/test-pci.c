/* PCI bus 0: conf1 ports, the host bridge, BAR assignment, sizing and
 * moves, the command register, capabilities, INTx; and the GSI routing
 * table that KVM_SET_GSI_ROUTING receives. No KVM needed. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "vmhop/irq-routing.h"
#include "vmhop/layout.h"
#include "vmhop/pci.h"
#include "vmhop/vm.h"

static struct vm VM;

/* A device with a 4 KiB 32-bit BAR0 and a 1 MiB 64-bit BAR2. */
struct dummy {
	struct pci_device pd;
	struct io_dev bar0, bar2;
	uint32_t reg;
	unsigned maps, unmaps;
	uint64_t last_base;
};

static void dummy_read(struct io_dev *io, uint64_t off, void *data, unsigned size)
{
	struct dummy *d = io->opaque;
	uint32_t v = d->reg + (uint32_t)off;
	memcpy(data, &v, size);
}

static void dummy_write(struct io_dev *io, uint64_t off, const void *data, unsigned size)
{
	struct dummy *d = io->opaque;
	memcpy(&d->reg, data, size);
}

static void dummy_mapped(struct pci_device *pd, unsigned bar, bool mapped, uint64_t base)
{
	struct dummy *d = pd->opaque;
	if (mapped) {
		d->maps++;
		d->last_base = base;
	} else {
		d->unmaps++;
	}
}

static const struct pci_device_ops dummy_ops = { .bar_mapped = dummy_mapped };

static void dummy_add(struct dummy *d)
{
	struct err e = { 0 };
	memset(d, 0, sizeof(*d));
	pci__device_init(&d->pd, 0x1234, 0x5678, 0xFF0000, 3, 0x1234, 0x0001);
	d->bar0 = (struct io_dev){ .name = "dummy0", .opaque = d, .read = dummy_read, .write = dummy_write };
	d->bar2 = (struct io_dev){ .name = "dummy2", .opaque = d, .read = dummy_read, .write = dummy_write };
	ck_assert_int_eq(pci__set_bar(&d->pd, 0, 0x1000, 0, &d->bar0, &e), 0);
	ck_assert_int_eq(pci__set_bar(&d->pd, 2, 0x100000, PCI_BAR_F_64 | PCI_BAR_F_PREFETCH, &d->bar2, &e), 0);
	ck_assert_msg(pci__add_device(VM.pci, &d->pd, &dummy_ops, d, &e) == 0, "%s", e.msg);
}

static void setup(void)
{
	memset(&VM, 0, sizeof(VM));
	VM.vm_fd = -1;
	struct err e = { 0 };
	ck_assert_int_eq(io_bus__init(&VM.pio, "pio"), 0);
	ck_assert_int_eq(io_bus__init(&VM.mmio, "mmio"), 0);
	ck_assert_msg(pci__create(&VM, &e) == 0, "%s", e.msg);
}

static void teardown(void)
{
	pci__destroy(&VM);
	io_bus__destroy(&VM.pio);
	io_bus__destroy(&VM.mmio);
}

static uint32_t conf1_read(unsigned bus, unsigned slot, unsigned off, unsigned size)
{
	uint32_t a = 0x80000000u | bus << 16 | slot << 11 | (off & 0xfc), v = 0;
	ck_assert_int_eq(io_bus__write(&VM.pio, PORT_PCI_CONF_ADDR, &a, 4), 0);
	ck_assert_int_eq(io_bus__read(&VM.pio, PORT_PCI_CONF_DATA + (off & 3), &v, size), 0);
	return v;
}

static void conf1_write(unsigned slot, unsigned off, unsigned size, uint32_t v)
{
	uint32_t a = 0x80000000u | slot << 11 | (off & 0xfc);
	ck_assert_int_eq(io_bus__write(&VM.pio, PORT_PCI_CONF_ADDR, &a, 4), 0);
	ck_assert_int_eq(io_bus__write(&VM.pio, PORT_PCI_CONF_DATA + (off & 3), &v, size), 0);
}

START_TEST(conf1_host_bridge)
{
	ck_assert_uint_eq(conf1_read(0, 0, 0, 4), 0x12378086);
	ck_assert_uint_eq(conf1_read(0, 0, 2, 2), 0x1237);
	ck_assert_uint_eq(conf1_read(0, 0, 0x0B, 1), 0x06);	/* bridge */
	ck_assert_uint_eq(conf1_read(0, 0, 0x0A, 1), 0x00);	/* host */
	ck_assert_uint_eq(conf1_read(0, 5, 0, 4), 0xFFFFFFFF);	/* empty slot */
	ck_assert_uint_eq(conf1_read(1, 0, 0, 4), 0xFFFFFFFF);	/* other bus */
	uint32_t v = 0, a = 0x80000000u | 1 << 8;	/* function 1 */
	io_bus__write(&VM.pio, PORT_PCI_CONF_ADDR, &a, 4);
	io_bus__read(&VM.pio, PORT_PCI_CONF_DATA, &v, 4);
	ck_assert_uint_eq(v, 0xFFFFFFFF);
	/* the latch reads back; without the enable bit nothing decodes */
	a = 0x00000000;
	io_bus__write(&VM.pio, PORT_PCI_CONF_ADDR, &a, 4);
	io_bus__read(&VM.pio, PORT_PCI_CONF_DATA, &v, 4);
	ck_assert_uint_eq(v, 0xFFFFFFFF);
	a = 0x80001234;
	io_bus__write(&VM.pio, PORT_PCI_CONF_ADDR, &a, 4);
	io_bus__read(&VM.pio, PORT_PCI_CONF_ADDR, &v, 4);
	ck_assert_uint_eq(v, 0x80001234 & 0x80FFFFFC);
	/* Linux's conf1 probe: a byte to 0xCFB must not disturb the latch */
	uint8_t b = 1;
	io_bus__write(&VM.pio, PORT_PCI_CONF_ADDR + 3, &b, 1);
	io_bus__read(&VM.pio, PORT_PCI_CONF_ADDR, &v, 4);
	ck_assert_uint_eq(v, 0x80001234 & 0x80FFFFFC);
}
END_TEST

static uint8_t cf9_seen;
static void cf9_write(struct io_dev *io, uint64_t off, const void *data, unsigned size)
{
	cf9_seen = *(const uint8_t *)data;
}

START_TEST(cf9_forwarded)
{
	struct io_dev rst = { .name = "reset", .write = cf9_write };
	pci__set_cf9(VM.pci, &rst);
	uint8_t b = 0x06;
	ck_assert_int_eq(io_bus__write(&VM.pio, PORT_RESET, &b, 1), 0);
	ck_assert_uint_eq(cf9_seen, 0x06);
}
END_TEST

/* pm.c registers the reset port before the PCI bus exists: pci__create
 * takes it over, and pci__destroy gives it back. */
START_TEST(cf9_adopted)
{
	struct vm vm;
	memset(&vm, 0, sizeof(vm));
	vm.vm_fd = -1;
	struct err e = { 0 };
	ck_assert_int_eq(io_bus__init(&vm.pio, "pio"), 0);
	ck_assert_int_eq(io_bus__init(&vm.mmio, "mmio"), 0);
	struct io_dev rst = { .name = "reset", .base = PORT_RESET, .len = 1, .write = cf9_write };
	ck_assert_int_eq(io_bus__add(&vm.pio, &rst, &e), 0);
	ck_assert_msg(pci__create(&vm, &e) == 0, "%s", e.msg);
	uint8_t b = 0x0E;
	cf9_seen = 0;
	ck_assert_int_eq(io_bus__write(&vm.pio, PORT_RESET, &b, 1), 0);
	ck_assert_uint_eq(cf9_seen, 0x0E);
	uint32_t a = 0x80000000, v = 0;
	io_bus__write(&vm.pio, PORT_PCI_CONF_ADDR, &a, 4);
	io_bus__read(&vm.pio, PORT_PCI_CONF_DATA, &v, 4);
	ck_assert_uint_eq(v, 0x12378086);
	pci__destroy(&vm);
	ck_assert_ptr_null(vm.pci);
	b = 0x06;
	ck_assert_int_eq(io_bus__write(&vm.pio, PORT_RESET, &b, 1), 0);
	ck_assert_uint_eq(cf9_seen, 0x06);
	ck_assert_int_eq(io_bus__read(&vm.pio, PORT_PCI_CONF_ADDR, &v, 4), -ENOENT);
	io_bus__remove(&vm.pio, &rst);
	io_bus__destroy(&vm.pio);
	io_bus__destroy(&vm.mmio);
}
END_TEST

START_TEST(bars_assigned_and_mapped)
{
	struct dummy d;
	dummy_add(&d);
	ck_assert_uint_eq(d.pd.slot, 1);
	ck_assert_uint_eq(conf1_read(0, 1, 0, 4), 0x56781234);
	uint64_t b0 = pci__bar_base(&d.pd, 0), b2 = pci__bar_base(&d.pd, 2);
	ck_assert_uint_ge(b0, LAYOUT_PCI_MMIO_BASE);
	ck_assert_uint_eq(b0 % 0x1000, 0);
	ck_assert_uint_eq(b2 % 0x100000, 0);
	ck_assert_uint_lt(b2 + 0x100000, LAYOUT_PCI_MMIO_END + 1);
	ck_assert(b2 >= b0 + 0x1000 || b2 + 0x100000 <= b0);
	ck_assert_uint_eq(conf1_read(0, 1, 0x18, 4) & 0xF, PCI_BAR_MEM_64 | PCI_BAR_PREFETCH);
	ck_assert_uint_eq(conf1_read(0, 1, 0x1C, 4), b2 >> 32);
	ck_assert(conf1_read(0, 1, PCI_REG_COMMAND, 2) & PCI_CMD_MEM);
	ck_assert(conf1_read(0, 1, PCI_REG_COMMAND, 2) & PCI_CMD_MASTER);
	uint32_t v;
	d.reg = 0x100;
	ck_assert_int_eq(io_bus__read(&VM.mmio, b0 + 8, &v, 4), 0);
	ck_assert_uint_eq(v, 0x108);
	ck_assert_int_eq(io_bus__read(&VM.mmio, b2 + 0xFFFFC, &v, 4), 0);
	ck_assert_uint_eq(d.maps, 2);
	/* a second device gets slot 2 and BARs that do not overlap */
	struct dummy d2;
	dummy_add(&d2);
	ck_assert_uint_eq(d2.pd.slot, 2);
	ck_assert_uint_ge(pci__bar_base(&d2.pd, 0), b2 + 0x100000);
	ck_assert_uint_eq(conf1_read(0, 2, PCI_REG_INT_PIN, 1), 1);
	ck_assert_uint_eq(conf1_read(0, 2, PCI_REG_INT_LINE, 1), d2.pd.gsi);
	ck_assert_uint_eq(d.pd.gsi, 16);
	ck_assert_uint_eq(d2.pd.gsi, 17);
	pci__remove_device(VM.pci, &d2.pd);
	pci__remove_device(VM.pci, &d.pd);
	ck_assert_int_eq(io_bus__read(&VM.mmio, b0 + 8, &v, 4), -ENOENT);
	ck_assert_uint_eq(conf1_read(0, 1, 0, 4), 0xFFFFFFFF);
}
END_TEST

START_TEST(bar_sizing)
{
	struct dummy d;
	dummy_add(&d);
	uint32_t orig0 = conf1_read(0, 1, 0x10, 4);
	/* what Linux does: decoding off, all ones, read, restore, decoding on */
	uint16_t cmd = (uint16_t)conf1_read(0, 1, PCI_REG_COMMAND, 2);
	conf1_write(1, PCI_REG_COMMAND, 2, cmd & ~PCI_CMD_MEM);
	ck_assert_uint_eq(d.unmaps, 2);
	conf1_write(1, 0x10, 4, 0xFFFFFFFF);
	ck_assert_uint_eq(conf1_read(0, 1, 0x10, 4), 0xFFFFF000);
	conf1_write(1, 0x10, 4, orig0);
	/* 64-bit BAR: both halves */
	uint32_t lo = conf1_read(0, 1, 0x18, 4), hi = conf1_read(0, 1, 0x1C, 4);
	conf1_write(1, 0x18, 4, 0xFFFFFFFF);
	conf1_write(1, 0x1C, 4, 0xFFFFFFFF);
	ck_assert_uint_eq(conf1_read(0, 1, 0x18, 4), 0xFFF0000C);
	ck_assert_uint_eq(conf1_read(0, 1, 0x1C, 4), 0xFFFFFFFF);
	conf1_write(1, 0x18, 4, lo);
	conf1_write(1, 0x1C, 4, hi);
	/* unused BARs and the ROM size as zero */
	conf1_write(1, 0x14, 4, 0xFFFFFFFF);
	ck_assert_uint_eq(conf1_read(0, 1, 0x14, 4), 0);
	conf1_write(1, PCI_REG_ROM, 4, 0xFFFFFFFF);
	ck_assert_uint_eq(conf1_read(0, 1, PCI_REG_ROM, 4), 0);
	conf1_write(1, PCI_REG_COMMAND, 2, cmd);
	ck_assert_uint_eq(conf1_read(0, 1, 0x10, 4), orig0);
	uint32_t v;
	ck_assert_int_eq(io_bus__read(&VM.mmio, orig0, &v, 4), 0);
	ck_assert_uint_eq(d.maps, 4);
	pci__remove_device(VM.pci, &d.pd);
}
END_TEST

START_TEST(bar_reprogrammed)
{
	struct dummy d;
	dummy_add(&d);
	uint64_t old = pci__bar_base(&d.pd, 0);
	/* moved while decoding stays on (allowed, if unusual) */
	conf1_write(1, 0x10, 4, 0xE0000000);
	ck_assert_uint_eq(d.last_base, 0xE0000000);
	uint32_t v;
	ck_assert_int_eq(io_bus__read(&VM.mmio, old, &v, 4), -ENOENT);
	ck_assert_int_eq(io_bus__read(&VM.mmio, 0xE0000000, &v, 4), 0);
	/* 64-bit BAR moved above 4 GiB */
	conf1_write(1, PCI_REG_COMMAND, 2, PCI_CMD_MASTER);
	conf1_write(1, 0x18, 4, 0x00000000);
	conf1_write(1, 0x1C, 4, 0x00000010);
	conf1_write(1, PCI_REG_COMMAND, 2, PCI_CMD_MASTER | PCI_CMD_MEM);
	ck_assert_uint_eq(pci__bar_base(&d.pd, 2), 0x1000000000ULL);
	ck_assert_int_eq(io_bus__read(&VM.mmio, 0x1000000000ULL + 4, &v, 4), 0);
	/* onto the other BAR: the bus refuses the overlap, the moved BAR stops
	 * decoding and the other keeps its place */
	conf1_write(1, 0x1C, 4, 0);
	conf1_write(1, 0x18, 4, 0xE0000000);
	ck_assert(!d.pd.bars[2].mapped);
	ck_assert(d.pd.bars[0].mapped);
	ck_assert_int_eq(io_bus__read(&VM.mmio, 0xE0000000, &v, 4), 0);
	ck_assert_int_eq(io_bus__read(&VM.mmio, 0x1000000000ULL + 4, &v, 4), -ENOENT);
	/* and decodes again once given a free address */
	conf1_write(1, 0x18, 4, 0xE0100000);
	ck_assert(d.pd.bars[2].mapped);
	ck_assert_uint_eq(d.bar2.base, 0xE0100000);
	/* address 0 means unassigned */
	conf1_write(1, 0x10, 4, 0x00000000);
	ck_assert(!d.pd.bars[0].mapped);
	pci__remove_device(VM.pci, &d.pd);
}
END_TEST

START_TEST(command_register)
{
	struct dummy d;
	dummy_add(&d);
	conf1_write(1, PCI_REG_COMMAND, 2, 0xFFFF);
	ck_assert_uint_eq(conf1_read(0, 1, PCI_REG_COMMAND, 2),
			  PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER | 0x40 | 0x100 | PCI_CMD_INTX_DISABLE);
	ck_assert_uint_eq(pci__command(&d.pd) & PCI_CMD_INTX_DISABLE, PCI_CMD_INTX_DISABLE);
	/* status is read-only */
	uint16_t st = (uint16_t)conf1_read(0, 1, PCI_REG_STATUS, 2);
	conf1_write(1, PCI_REG_STATUS, 2, 0xFFFF);
	ck_assert_uint_eq(conf1_read(0, 1, PCI_REG_STATUS, 2), st);
	/* IDs are read-only */
	conf1_write(1, 0, 4, 0);
	ck_assert_uint_eq(conf1_read(0, 1, 0, 4), 0x56781234);
	/* INTx: level shows in status; the line follows INTx disable */
	pci__set_intx(&d.pd, 1);
	ck_assert(conf1_read(0, 1, PCI_REG_STATUS, 2) & PCI_STATUS_INTX);
	ck_assert(!d.pd.intx_asserted);
	conf1_write(1, PCI_REG_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_MASTER);
	ck_assert(d.pd.intx_asserted);
	ck_assert_uint_eq(VM.pci->gsi_count[16], 1);
	pci__set_intx(&d.pd, 0);
	ck_assert(!(conf1_read(0, 1, PCI_REG_STATUS, 2) & PCI_STATUS_INTX));
	ck_assert_uint_eq(VM.pci->gsi_count[16], 0);
	pci__remove_device(VM.pci, &d.pd);
}
END_TEST

START_TEST(shared_gsi)
{
	/* slots 1 and 9 share GSI 16: the line stays up while either asserts */
	struct dummy *d = calloc(9, sizeof(*d));
	for (int i = 0; i < 9; i++) {
		d[i].pd.slot = 0;
		dummy_add(&d[i]);
	}
	ck_assert_uint_eq(d[8].pd.slot, 9);
	ck_assert_uint_eq(d[8].pd.gsi, 16);
	pci__set_intx(&d[0].pd, 1);
	pci__set_intx(&d[8].pd, 1);
	ck_assert_uint_eq(VM.pci->gsi_count[16], 2);
	pci__set_intx(&d[0].pd, 0);
	ck_assert_uint_eq(VM.pci->gsi_count[16], 1);
	pci__remove_device(VM.pci, &d[8].pd);
	ck_assert_uint_eq(VM.pci->gsi_count[16], 0);
	for (int i = 0; i < 8; i++)
		pci__remove_device(VM.pci, &d[i].pd);
	free(d);
}
END_TEST

START_TEST(capability_list)
{
	struct pci_device pd;
	struct err e = { 0 };
	pci__device_init(&pd, 1, 2, 0, 0, 0, 0);
	ck_assert(!(pci__cfg_get(&pd, PCI_REG_STATUS, 2) & PCI_STATUS_CAP_LIST));
	uint8_t a[6] = { 0, 0, 0xAA, 0xBB, 0xCC, 0xDD }, b[13] = { 0, 0, 0x11 };
	int oa = pci__add_cap(&pd, PCI_CAP_ID_VNDR, a, sizeof(a), &e);
	int ob = pci__add_cap(&pd, PCI_CAP_ID_MSIX, b, sizeof(b), &e);
	int oc = pci__add_cap(&pd, PCI_CAP_ID_VNDR, a, sizeof(a), &e);
	ck_assert_int_eq(oa, PCI_CAP_START);
	ck_assert_int_eq(ob, PCI_CAP_START + 8);	/* dword aligned */
	ck_assert_int_eq(oc, PCI_CAP_START + 8 + 16);
	ck_assert(pci__cfg_get(&pd, PCI_REG_STATUS, 2) & PCI_STATUS_CAP_LIST);
	/* walk */
	unsigned seen[3], n = 0;
	for (unsigned p = pd.st.config[PCI_REG_CAP_PTR]; p; p = pd.st.config[p + 1])
		seen[n++] = p;
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(seen[0], (unsigned)oa);
	ck_assert_uint_eq(pd.st.config[seen[1]], PCI_CAP_ID_MSIX);
	ck_assert_uint_eq(pd.st.config[seen[0] + 2], 0xAA);
	/* capability bytes are read-only unless a device opens them */
	ck_assert_uint_eq(pd.wmask[oa + 2], 0);
	/* no room left */
	uint8_t big[200] = { 0 };
	ck_assert_int_eq(pci__add_cap(&pd, PCI_CAP_ID_VNDR, big, sizeof(big), &e), -ENOSPC);
}
END_TEST

START_TEST(bar_validation)
{
	struct pci_device pd;
	struct io_dev io = { .name = "x" };
	struct err e = { 0 };
	pci__device_init(&pd, 1, 2, 0, 0, 0, 0);
	ck_assert_int_eq(pci__set_bar(&pd, 0, 0x1800, 0, &io, &e), -EINVAL);
	ck_assert_int_eq(pci__set_bar(&pd, 6, 0x1000, 0, &io, &e), -EINVAL);
	ck_assert_int_eq(pci__set_bar(&pd, 5, 0x1000, PCI_BAR_F_64, &io, &e), -EINVAL);
	ck_assert_int_eq(pci__set_bar(&pd, 0, 0x1000, PCI_BAR_F_64, &io, &e), 0);
	ck_assert_int_eq(pci__set_bar(&pd, 1, 0x1000, 0, &io, &e), -EBUSY);
}
END_TEST

/* ---- GSI routing ---- */

static const struct kvm_irq_routing_entry *find(const struct kvm_irq_routing_entry *t, size_t n,
						unsigned gsi, unsigned chip)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].gsi == gsi && t[i].type == KVM_IRQ_ROUTING_IRQCHIP && t[i].u.irqchip.irqchip == chip)
			return &t[i];
	return NULL;
}

START_TEST(routing_default_table)
{
	struct irq_routing *r;
	struct err e = { 0 };
	ck_assert_int_eq(irq_routing__create(&r, -1, &e), 0);
	struct kvm_irq_routing_entry t[64];
	size_t n = irq_routing__table(r, t, 64);
	ck_assert_uint_eq(n, IRQ_ROUTING_NR_DEFAULT);
	for (unsigned g = 0; g < 24; g++) {
		const struct kvm_irq_routing_entry *io = find(t, n, g, KVM_IRQCHIP_IOAPIC);
		ck_assert_ptr_nonnull(io);
		ck_assert_uint_eq(io->u.irqchip.pin, g);
		const struct kvm_irq_routing_entry *m = find(t, n, g, KVM_IRQCHIP_PIC_MASTER);
		const struct kvm_irq_routing_entry *s = find(t, n, g, KVM_IRQCHIP_PIC_SLAVE);
		if (g < 8) {
			ck_assert_ptr_nonnull(m);
			ck_assert_uint_eq(m->u.irqchip.pin, g);
			ck_assert_ptr_null(s);
		} else if (g < 16) {
			ck_assert_ptr_null(m);
			ck_assert_ptr_nonnull(s);
			ck_assert_uint_eq(s->u.irqchip.pin, g - 8);
		} else {
			ck_assert_ptr_null(m);
			ck_assert_ptr_null(s);
		}
	}
	irq_routing__destroy(r);
}
END_TEST

START_TEST(routing_msi)
{
	struct irq_routing *r;
	struct err e = { 0 };
	ck_assert_int_eq(irq_routing__create(&r, -1, &e), 0);
	unsigned g1, g2, g3;
	ck_assert_int_eq(irq_routing__msi_add(r, 0xFEE00000, 0x41, &g1, &e), 0);
	ck_assert_int_eq(irq_routing__msi_add(r, 0xFEE01000, 0x42, &g2, &e), 0);
	ck_assert_uint_eq(g1, 24);
	ck_assert_uint_eq(g2, 25);
	struct kvm_irq_routing_entry t[64];
	size_t n = irq_routing__table(r, t, 64);
	ck_assert_uint_eq(n, IRQ_ROUTING_NR_DEFAULT + 2);
	/* every commit carries the irqchip entries too */
	ck_assert_ptr_nonnull(find(t, n, 4, KVM_IRQCHIP_PIC_MASTER));
	ck_assert_uint_eq(t[n - 1].type, KVM_IRQ_ROUTING_MSI);
	ck_assert_uint_eq(t[n - 1].gsi, 25);
	ck_assert_uint_eq(t[n - 1].u.msi.address_lo, 0xFEE01000);
	ck_assert_uint_eq(t[n - 1].u.msi.data, 0x42);
	unsigned commits = r->nr_commits;
	ck_assert_int_eq(irq_routing__msi_update(r, g1, 0xFEE00000, 0x41, &e), 0);
	ck_assert_uint_eq(r->nr_commits, commits);	/* unchanged: no ioctl */
	ck_assert_int_eq(irq_routing__msi_update(r, g1, 0x1FEE00000ULL, 0x51, &e), 0);
	ck_assert_uint_eq(r->nr_commits, commits + 1);
	n = irq_routing__table(r, t, 64);
	ck_assert_uint_eq(t[n - 2].u.msi.address_hi, 1);
	ck_assert_uint_eq(t[n - 2].u.msi.data, 0x51);
	irq_routing__msi_free(r, g1);
	ck_assert_uint_eq(irq_routing__table(r, t, 64), IRQ_ROUTING_NR_DEFAULT + 1);
	ck_assert_int_eq(irq_routing__msi_add(r, 0xFEE00000, 0x43, &g3, &e), 0);
	ck_assert_uint_eq(g3, 24);	/* reused */
	ck_assert_int_eq(irq_routing__msi_update(r, 3, 0, 0, &e), -EINVAL);	/* not MSI */
	ck_assert_int_eq(irq_routing__msi_update(r, 30, 0, 0, &e), -EINVAL);	/* not allocated */
	/* a NULL routing swallows INTx (VMs without an irqchip in tests) */
	ck_assert_int_eq(irq_routing__line(NULL, 16, 1), 0);
	irq_routing__destroy(r);
}
END_TEST

START_TEST(routing_exhaustion)
{
	struct irq_routing *r;
	struct err e = { 0 };
	ck_assert_int_eq(irq_routing__create(&r, -1, &e), 0);
	unsigned g;
	for (int i = 0; i < IRQ_ROUTING_MAX_MSI; i++)
		ck_assert_int_eq(irq_routing__msi_add(r, 0xFEE00000, (uint32_t)i, &g, &e), 0);
	ck_assert_int_eq(irq_routing__msi_add(r, 0xFEE00000, 0, &g, &e), -ENOSPC);
	ck_assert_str_eq(e.msg, "irq routing: all 512 MSI routes in use");
	irq_routing__destroy(r);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("pci");
	TCase *tc = tcase_create("bus");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, conf1_host_bridge);
	tcase_add_test(tc, cf9_forwarded);
	tcase_add_test(tc, bars_assigned_and_mapped);
	tcase_add_test(tc, bar_sizing);
	tcase_add_test(tc, bar_reprogrammed);
	tcase_add_test(tc, command_register);
	tcase_add_test(tc, shared_gsi);
	suite_add_tcase(s, tc);

	tc = tcase_create("ports");
	tcase_add_test(tc, cf9_adopted);
	suite_add_tcase(s, tc);

	tc = tcase_create("config");
	tcase_add_test(tc, capability_list);
	tcase_add_test(tc, bar_validation);
	suite_add_tcase(s, tc);

	tc = tcase_create("routing");
	tcase_add_test(tc, routing_default_table);
	tcase_add_test(tc, routing_msi);
	tcase_add_test(tc, routing_exhaustion);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(suite());
}
