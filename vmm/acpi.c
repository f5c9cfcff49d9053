/* Minimal ACPI tables for Linux guests without firmware: RSDP, RSDT/XSDT,
 * FADT (+FACS), MADT and a DSDT holding the PCI host bridge (resources and
 * INTx routing) and the S5 sleep package. They describe what vmhop has:
 * the PM1a block at 0x600 (SLP_EN powers off), the 0xCF9 reset register, no
 * i8042, no CMOS RTC, no VGA. A kernel booted with acpi=off falls back to
 * the MP table, which describes the same machine. */
#include <string.h>

#include "vmhop/boot.h"
#include "vmhop/layout.h"
#include "vmhop/pm.h"
#include "vmhop/util.h"

/* PCI INTA# wiring as vmm/pci.c assigns it (see mptable.c). */
#define ACPI_PCI_SLOTS		32
#define ACPI_PCI_GSI_BASE	16
#define ACPI_PCI_NR_GSI		8
#define ACPI_SCI_IRQ		PM_SCI_IRQ

struct sdt_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

struct rsdp {
	char signature[8];	/* "RSD PTR " */
	uint8_t checksum;	/* over the first 20 bytes */
	char oem_id[6];
	uint8_t revision;	/* 2: ACPI 2.0+, XSDT present */
	uint32_t rsdt;
	uint32_t length;
	uint64_t xsdt;
	uint8_t ext_checksum;	/* over all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));

struct gas {
	uint8_t space;		/* 1: system I/O */
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;	/* 1 byte, 2 word, 3 dword */
	uint64_t address;
} __attribute__((packed));

struct fadt {
	struct sdt_header h;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
	uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
	struct gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
	struct gas sleep_control, sleep_status;
	uint64_t hypervisor_id;
} __attribute__((packed));

struct facs {
	char signature[4];
	uint32_t length;
	uint32_t hw_signature;
	uint32_t waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_waking_vector;
	uint8_t version;
	uint8_t reserved[31];
} __attribute__((packed));

#define FADT_F_WBINVD		(1u << 0)
#define FADT_F_PROC_C1		(1u << 2)
#define FADT_F_SLP_BUTTON	(1u << 5)	/* no fixed sleep button */
#define FADT_F_FIX_RTC		(1u << 6)	/* no RTC wake status */
#define FADT_F_RESET_REG_SUP	(1u << 10)
#define BOOT_ARCH_VGA_NOT_PRESENT (1u << 2)
#define BOOT_ARCH_CMOS_RTC_NOT_PRESENT (1u << 5)
/* Bits 0 (legacy devices) and 1 (8042) stay clear: there is neither. */

_Static_assert(sizeof(struct fadt) == 276, "FADT revision 6 is 276 bytes");
_Static_assert(sizeof(struct rsdp) == 36, "RSDP is 36 bytes");

/* Hands out 64-byte aligned room for one table in the ACPI area. */
static uint64_t place(uint64_t *at, uint64_t size)
{
	uint64_t p = *at;
	*at = ALIGN_UP(*at + size, 64);
	return p;
}

static uint8_t checksum(const void *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += ((const uint8_t *)p)[i];
	return (uint8_t)-sum;
}

static void header(void *table, const char *sig, uint32_t len, uint8_t rev)
{
	struct sdt_header *h = table;
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, "VMHOP ", 6);
	memcpy(h->oem_table_id, "VMHOPVM ", 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, "VMHP", 4);
	h->creator_revision = 1;
	h->checksum = 0;
	h->checksum = checksum(table, len);
}

static struct gas io_reg(uint16_t port, uint8_t bits)
{
	return (struct gas){ .space = 1, .bit_width = bits, .access_size = bits <= 8 ? 1 : bits <= 16 ? 2 : 3,
			     .address = port };
}

/* ---- AML: just enough encoding for the DSDT below ---- */

struct aml {
	uint8_t *buf;
	size_t len, cap;
	bool overflow;
};

static void put(struct aml *a, const void *p, size_t n)
{
	if (a->len + n > a->cap) {
		a->overflow = true;
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void put8(struct aml *a, uint8_t v)
{
	put(a, &v, 1);
}

static void put16(struct aml *a, uint16_t v)
{
	put(a, &v, 2);
}

static void put32(struct aml *a, uint32_t v)
{
	put(a, &v, 4);
}

static void integer(struct aml *a, uint32_t v)
{
	if (v == 0) {
		put8(a, 0x00);			/* ZeroOp */
	} else if (v == 1) {
		put8(a, 0x01);			/* OneOp */
	} else if (v <= 0xff) {
		put8(a, 0x0a);			/* BytePrefix */
		put8(a, (uint8_t)v);
	} else if (v <= 0xffff) {
		put8(a, 0x0b);			/* WordPrefix */
		put16(a, (uint16_t)v);
	} else {
		put8(a, 0x0c);			/* DWordPrefix */
		put32(a, v);
	}
}

/* Objects with a PkgLength are built in place: open() reserves 4 bytes for
 * the length, close() encodes it and moves the body up if fewer are needed. */
static size_t open_pkg(struct aml *a)
{
	size_t at = a->len;
	put32(a, 0);
	return at;
}

static void close_pkg(struct aml *a, size_t at)
{
	if (a->overflow)
		return;
	size_t body = a->len - at - 4;
	unsigned nbytes = body + 1 < 0x40 ? 1 : body + 2 < 0x1000 ? 2 : body + 3 < 0x100000 ? 3 : 4;
	size_t total = body + nbytes;
	uint8_t enc[4];
	if (nbytes == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)(((nbytes - 1) << 6) | (total & 0xf));
		for (unsigned i = 1; i < nbytes; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	memmove(a->buf + at + nbytes, a->buf + at + 4, body);
	memcpy(a->buf + at, enc, nbytes);
	a->len = at + nbytes + body;
}

static void name(struct aml *a, const char *seg)	/* NameOp + one NameSeg */
{
	put8(a, 0x08);
	put(a, seg, 4);
}

static void pci_crs(struct aml *a)
{
	put8(a, 0x11);				/* BufferOp */
	size_t buf = open_pkg(a);
	size_t size_at = a->len;
	put8(a, 0x0b);				/* WordPrefix: size, patched below */
	put16(a, 0);
	size_t start = a->len;
	/* WordBusNumber: producer, MinFixed, MaxFixed, buses 0-255. */
	put8(a, 0x88); put16(a, 13); put8(a, 2); put8(a, 0x0c); put8(a, 0);
	put16(a, 0); put16(a, 0); put16(a, 0xff); put16(a, 0); put16(a, 0x100);
	/* IO: the configuration ports 0xCF8-0xCFF. */
	put8(a, 0x47); put8(a, 1); put16(a, 0xcf8); put16(a, 0xcf8); put8(a, 1); put8(a, 8);
	/* WordIO windows around them. */
	put8(a, 0x88); put16(a, 13); put8(a, 1); put8(a, 0x0c); put8(a, 3);
	put16(a, 0); put16(a, 0); put16(a, 0xcf7); put16(a, 0); put16(a, 0xcf8);
	put8(a, 0x88); put16(a, 13); put8(a, 1); put8(a, 0x0c); put8(a, 3);
	put16(a, 0); put16(a, 0xd00); put16(a, 0xffff); put16(a, 0); put16(a, 0xf300);
	/* DWordMemory: the 32-bit BAR window. */
	put8(a, 0x87); put16(a, 23); put8(a, 0); put8(a, 0x0c); put8(a, 1);
	put32(a, 0); put32(a, (uint32_t)LAYOUT_PCI_MMIO_BASE); put32(a, (uint32_t)LAYOUT_PCI_MMIO_END - 1);
	put32(a, 0); put32(a, (uint32_t)(LAYOUT_PCI_MMIO_END - LAYOUT_PCI_MMIO_BASE));
	put8(a, 0x79); put8(a, 0);		/* end tag */
	if (!a->overflow) {
		uint16_t n = (uint16_t)(a->len - start);
		memcpy(a->buf + size_at + 1, &n, 2);
	}
	close_pkg(a, buf);
}

static void pci_prt(struct aml *a)
{
	put8(a, 0x12);				/* PackageOp */
	size_t pkg = open_pkg(a);
	put8(a, ACPI_PCI_SLOTS - 1);
	for (uint32_t slot = 1; slot < ACPI_PCI_SLOTS; slot++) {
		put8(a, 0x12);
		size_t e = open_pkg(a);
		put8(a, 4);
		integer(a, (slot << 16) | 0xffff);	/* any function of the slot */
		integer(a, 0);				/* INTA# */
		integer(a, 0);				/* no link device: a GSI */
		integer(a, ACPI_PCI_GSI_BASE + (slot - 1) % ACPI_PCI_NR_GSI);
		close_pkg(a, e);
	}
	close_pkg(a, pkg);
}

static void dsdt_body(struct aml *a)
{
	put8(a, 0x10);				/* ScopeOp \_SB_ */
	size_t scope = open_pkg(a);
	put8(a, '\\');
	put(a, "_SB_", 4);
	put8(a, 0x5b);				/* DeviceOp PCI0 */
	put8(a, 0x82);
	size_t dev = open_pkg(a);
	put(a, "PCI0", 4);
	name(a, "_HID");
	integer(a, 0x030ad041);			/* EisaId("PNP0A03") */
	name(a, "_UID");
	integer(a, 0);
	name(a, "_BBN");
	integer(a, 0);
	name(a, "_CRS");
	pci_crs(a);
	name(a, "_PRT");
	pci_prt(a);
	close_pkg(a, dev);
	close_pkg(a, scope);
	/* \_S5_: SLP_TYP 5 (vmhop powers off on any SLP_EN). */
	put8(a, 0x08);
	put8(a, '\\');
	put(a, "_S5_", 4);
	put8(a, 0x12);
	size_t s5 = open_pkg(a);
	put8(a, 4);
	integer(a, 5);
	integer(a, 5);
	integer(a, 0);
	integer(a, 0);
	close_pkg(a, s5);
}

int boot__write_acpi(struct guest_mem *mem, unsigned nr_cpus, struct err *e)
{
	const uint64_t base = BOOT_ACPI_BASE;
	uint8_t *area = guest_mem__ptr(mem, base, BOOT_ACPI_SIZE);
	if (!area)
		return err__set(e, ENOSPC, "ACPI tables: no RAM at 0x%llx", (unsigned long long)base);
	if (nr_cpus > 254)
		return err__set(e, E2BIG, "ACPI tables: at most 254 vCPUs (%u asked)", nr_cpus);
	memset(area, 0, BOOT_ACPI_SIZE);
	uint64_t at = base + 0x40;		/* after the RSDP */

	uint64_t facs_at = place(&at, sizeof(struct facs));
	struct facs *facs = guest_mem__ptr(mem, facs_at, sizeof(*facs));
	memcpy(facs->signature, "FACS", 4);
	facs->length = sizeof(*facs);
	facs->version = 2;

	uint64_t dsdt_at = at;
	struct aml a = { .buf = area + (dsdt_at - base) + sizeof(struct sdt_header),
			 .cap = BOOT_ACPI_SIZE / 2 };
	dsdt_body(&a);
	if (a.overflow)
		return err__set(e, ENOSPC, "ACPI tables: DSDT larger than %llu bytes",
				(unsigned long long)BOOT_ACPI_SIZE / 2);
	uint32_t dsdt_len = (uint32_t)(sizeof(struct sdt_header) + a.len);
	place(&at, dsdt_len);
	header(guest_mem__ptr(mem, dsdt_at, dsdt_len), "DSDT", dsdt_len, 2);

	uint64_t fadt_at = place(&at, sizeof(struct fadt));
	struct fadt *f = guest_mem__ptr(mem, fadt_at, sizeof(*f));
	f->firmware_ctrl = (uint32_t)facs_at;
	f->dsdt = (uint32_t)dsdt_at;
	f->sci_int = ACPI_SCI_IRQ;
	f->smi_cmd = 0;				/* always in ACPI mode */
	f->pm1a_evt_blk = PORT_PM1A_STS;
	f->pm1a_cnt_blk = PORT_PM1A_CNT;
	f->pm1_evt_len = 4;
	f->pm1_cnt_len = 2;
	f->p_lvl2_lat = 101;			/* > 100: no C2 */
	f->p_lvl3_lat = 1001;			/* > 1000: no C3 */
	f->iapc_boot_arch = BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_CMOS_RTC_NOT_PRESENT;
	f->flags = FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_FIX_RTC |
		   FADT_F_RESET_REG_SUP;
	f->reset_reg = io_reg(PORT_RESET, 8);
	f->reset_value = 0x06;
	f->x_firmware_ctrl = facs_at;
	f->x_dsdt = dsdt_at;
	f->x_pm1a_evt_blk = io_reg(PORT_PM1A_STS, 32);
	f->x_pm1a_cnt_blk = io_reg(PORT_PM1A_CNT, 16);
	memcpy(&f->hypervisor_id, "VMHOP\0\0\0", 8);
	header(f, "FACP", sizeof(*f), 6);

	uint32_t madt_len = 44 + 8 * nr_cpus + 12 + 10 + 6;
	uint64_t madt_at = place(&at, madt_len);
	uint8_t *m = guest_mem__ptr(mem, madt_at, madt_len);
	uint32_t lapic = (uint32_t)LAYOUT_LAPIC_BASE, pcat = 1, ioapic = (uint32_t)LAYOUT_IOAPIC_BASE;
	memcpy(m + 36, &lapic, 4);
	memcpy(m + 40, &pcat, 4);		/* PCAT_COMPAT: 8259s present */
	uint8_t *p = m + 44;
	for (unsigned i = 0; i < nr_cpus; i++, p += 8) {
		uint32_t enabled = 1;
		p[0] = 0;			/* processor local APIC */
		p[1] = 8;
		p[2] = (uint8_t)i;		/* ACPI processor UID */
		p[3] = (uint8_t)i;		/* APIC id == vCPU id */
		memcpy(p + 4, &enabled, 4);
	}
	p[0] = 1;				/* I/O APIC, id after the CPUs as in the MP table */
	p[1] = 12;
	p[2] = (uint8_t)nr_cpus;
	memcpy(p + 4, &ioapic, 4);		/* GSI base 0 at p + 8 */
	p += 12;
	uint32_t sci_gsi = ACPI_SCI_IRQ;
	uint16_t sci_flags = 0xd;		/* active high, level */
	p[0] = 2;				/* interrupt source override: the SCI */
	p[1] = 10;
	p[2] = 0;
	p[3] = ACPI_SCI_IRQ;
	memcpy(p + 4, &sci_gsi, 4);
	memcpy(p + 8, &sci_flags, 2);
	p += 10;
	p[0] = 4;				/* local APIC NMI: all CPUs, LINT1 */
	p[1] = 6;
	p[2] = 0xff;
	p[5] = 1;
	header(m, "APIC", madt_len, 3);

	uint64_t tables[] = { fadt_at, madt_at };
	uint32_t xsdt_len = (uint32_t)(sizeof(struct sdt_header) + 8 * ARRAY_SIZE(tables));
	uint64_t xsdt_at = place(&at, xsdt_len);
	uint8_t *x = guest_mem__ptr(mem, xsdt_at, xsdt_len);
	memcpy(x + sizeof(struct sdt_header), tables, sizeof(tables));
	header(x, "XSDT", xsdt_len, 1);
	uint32_t rsdt_len = (uint32_t)(sizeof(struct sdt_header) + 4 * ARRAY_SIZE(tables));
	uint64_t rsdt_at = place(&at, rsdt_len);
	uint8_t *rs = guest_mem__ptr(mem, rsdt_at, rsdt_len);
	for (size_t i = 0; i < ARRAY_SIZE(tables); i++) {
		uint32_t t32 = (uint32_t)tables[i];
		memcpy(rs + sizeof(struct sdt_header) + 4 * i, &t32, 4);
	}
	header(rs, "RSDT", rsdt_len, 1);
	if (at > base + BOOT_ACPI_SIZE)
		return err__set(e, ENOSPC, "ACPI tables: more than %llu bytes",
				(unsigned long long)BOOT_ACPI_SIZE);

	struct rsdp *r = (struct rsdp *)area;
	memcpy(r->signature, "RSD PTR ", 8);
	memcpy(r->oem_id, "VMHOP ", 6);
	r->revision = 2;
	r->rsdt = (uint32_t)rsdt_at;
	r->length = sizeof(*r);
	r->xsdt = xsdt_at;
	r->checksum = checksum(r, 20);
	r->ext_checksum = checksum(r, sizeof(*r));
	return 0;
}
