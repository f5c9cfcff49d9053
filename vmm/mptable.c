/* Intel MultiProcessor Specification 1.4 tables: the firmware-less way for a
 * guest to find its CPUs, the IOAPIC and how ISA/PCI interrupts are wired. */
#include <string.h>

#include "vmhop/boot.h"
#include "vmhop/layout.h"

#define MP_IOAPIC_ID_OFFSET 0	/* IOAPIC id follows the CPUs */
#define IOAPIC_PINS 24
/* PCI INTA# wiring, as vmm/pci.c assigns it: slot s (1-31) on GSI
 * 16 + (s - 1) % 8. Linux matches MP interrupt entries of a PCI bus against
 * the PCI bus number, so the PCI bus must have MP bus id 0. */
#define MP_PCI_SLOTS 32
#define MP_PCI_GSI_BASE 16
#define MP_PCI_NR_GSI 8

struct mpf {
	char signature[4];	/* "_MP_" */
	uint32_t physptr;
	uint8_t length;		/* in 16-byte units */
	uint8_t specrev;
	uint8_t checksum;
	uint8_t feature[5];
} __attribute__((packed));

struct mpc_table {
	char signature[4];	/* "PCMP" */
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;
	uint32_t lapic;
	uint16_t extlen;
	uint8_t extsum;
	uint8_t reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type;		/* 0 */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t cpuflag;	/* bit 0 enabled, bit 1 boot processor */
	uint32_t cpufeature;
	uint32_t featureflag;
	uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type;		/* 1 */
	uint8_t busid;
	char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type;		/* 2 */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t flags;
	uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {
	uint8_t type;		/* 3 io interrupt, 4 local interrupt */
	uint8_t irqtype;	/* 0 INT, 1 NMI, 3 ExtINT */
	uint16_t irqflag;
	uint8_t srcbus;
	uint8_t srcbusirq;
	uint8_t dstapic;
	uint8_t dstirq;
} __attribute__((packed));

static uint8_t checksum(const void *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += ((const uint8_t *)p)[i];
	return (uint8_t)-sum;
}

int boot__write_mptable(struct guest_mem *mem, unsigned nr_cpus, struct err *e)
{
	const uint8_t bus_pci = 0, bus_isa = 1;
	const uint8_t ioapic_id = (uint8_t)(nr_cpus + MP_IOAPIC_ID_OFFSET);
	size_t size = sizeof(struct mpf) + sizeof(struct mpc_table) +
		      nr_cpus * sizeof(struct mpc_cpu) + 2 * sizeof(struct mpc_bus) +
		      sizeof(struct mpc_ioapic) +
		      (16 + (MP_PCI_SLOTS - 1) + 2) * sizeof(struct mpc_intsrc);
	if (nr_cpus > 254 || size > 0x100000 - LAYOUT_EBDA)
		return err__set(e, E2BIG, "MP table: %u CPUs do not fit below 1 MiB", nr_cpus);
	uint8_t *base = guest_mem__ptr(mem, LAYOUT_EBDA, size);
	if (!base)
		return err__set(e, ENOSPC, "MP table: no RAM at 0x%llx", (unsigned long long)LAYOUT_EBDA);
	memset(base, 0, size);

	struct mpf *mpf = (struct mpf *)base;
	struct mpc_table *tbl = (struct mpc_table *)(mpf + 1);
	uint8_t *p = (uint8_t *)(tbl + 1);
	uint16_t count = 0;

	for (unsigned i = 0; i < nr_cpus; i++) {
		struct mpc_cpu *c = (struct mpc_cpu *)p;
		*c = (struct mpc_cpu){ .type = 0, .apicid = (uint8_t)i, .apicver = 0x14,
				       .cpuflag = (uint8_t)(1 | (i == 0 ? 2 : 0)),
				       .cpufeature = 0x600, .featureflag = 0x201 };
		p += sizeof(*c);
		count++;
	}
	struct mpc_bus *b = (struct mpc_bus *)p;
	*b = (struct mpc_bus){ .type = 1, .busid = bus_pci };
	memcpy(b->bustype, "PCI   ", 6);
	p += sizeof(*b);
	b = (struct mpc_bus *)p;
	*b = (struct mpc_bus){ .type = 1, .busid = bus_isa };
	memcpy(b->bustype, "ISA   ", 6);
	p += sizeof(*b);
	count += 2;

	struct mpc_ioapic *io = (struct mpc_ioapic *)p;
	*io = (struct mpc_ioapic){ .type = 2, .apicid = ioapic_id, .apicver = 0x11, .flags = 1,
				   .apicaddr = (uint32_t)LAYOUT_IOAPIC_BASE };
	p += sizeof(*io);
	count++;

	/* ISA IRQs are identity-mapped onto IOAPIC pins, as KVM's default GSI
	 * routing delivers them (the PIT included, on pin 0). PCI INTx lines use
	 * pins 16-23, listed per slot below (level-triggered, low-active: the
	 * PCI bus's own conventions, "conforming" in MP terms). */
	for (uint8_t irq = 0; irq < 16; irq++) {
		if (irq == 2)
			continue;
		struct mpc_intsrc *s = (struct mpc_intsrc *)p;
		*s = (struct mpc_intsrc){ .type = 3, .irqtype = 0, .irqflag = 0, .srcbus = bus_isa,
					  .srcbusirq = irq, .dstapic = ioapic_id,
					  .dstirq = irq };
		p += sizeof(*s);
		count++;
	}
	for (uint8_t slot = 1; slot < MP_PCI_SLOTS; slot++) {
		struct mpc_intsrc *s = (struct mpc_intsrc *)p;
		*s = (struct mpc_intsrc){ .type = 3, .irqtype = 0, .irqflag = 0, .srcbus = bus_pci,
					  .srcbusirq = (uint8_t)(slot << 2),	/* INTA# */
					  .dstapic = ioapic_id,
					  .dstirq = (uint8_t)(MP_PCI_GSI_BASE + (slot - 1) % MP_PCI_NR_GSI) };
		p += sizeof(*s);
		count++;
	}
	struct mpc_intsrc *lint = (struct mpc_intsrc *)p;
	*lint = (struct mpc_intsrc){ .type = 4, .irqtype = 3, .srcbus = bus_isa, .dstapic = 0xff, .dstirq = 0 };
	p += sizeof(*lint);
	lint = (struct mpc_intsrc *)p;
	*lint = (struct mpc_intsrc){ .type = 4, .irqtype = 1, .srcbus = bus_isa, .dstapic = 0xff, .dstirq = 1 };
	p += sizeof(*lint);
	count += 2;

	memcpy(tbl->signature, "PCMP", 4);
	tbl->length = (uint16_t)(p - (uint8_t *)tbl);
	tbl->spec = 4;
	memcpy(tbl->oem, "VMHOP   ", 8);
	memcpy(tbl->productid, "VMHOP-VM    ", 12);
	tbl->oemcount = count;
	tbl->lapic = (uint32_t)LAYOUT_LAPIC_BASE;
	tbl->checksum = checksum(tbl, tbl->length);

	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = (uint32_t)(LAYOUT_EBDA + sizeof(*mpf));
	mpf->length = 1;
	mpf->specrev = 4;
	mpf->checksum = checksum(mpf, sizeof(*mpf));
	return 0;
}
