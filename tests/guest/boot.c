/*
 * boot.c: read the boot information before the workload may overwrite it:
 * PVH hvm_start_info (our VMM) or multiboot v1 info (QEMU -kernel), and the
 * number of CPUs from the Intel MP table (PVH only: under multiboot SeaBIOS
 * keeps the APs parked, so we run alone).
 */
#include <stdbool.h>

#include "boot.h"
#include "layout.h"
#include "lib.h"

#define PVH_MAGIC		0x336ec578
#define MB_BOOT_MAGIC		0x2BADB002
#define MB_INFO_MEM		(1u << 0)
#define MB_INFO_CMDLINE		(1u << 2)
#define MB_INFO_MMAP		(1u << 6)
#define E820_RAM		1

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;		/* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

struct mb_info {
	uint32_t flags;
	uint32_t mem_lower;
	uint32_t mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count;
	uint32_t mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length;
	uint32_t mmap_addr;
};

struct mb_mmap_entry {
	uint32_t size;			/* of the rest of the entry */
	uint64_t addr;
	uint64_t len;
	uint32_t type;
} __attribute__((packed));

extern uint32_t mb_magic;		/* EAX at the multiboot entry (entry.S) */

static void *phys(uint64_t pa)
{
	return (void *)(uintptr_t)pa;
}

static void copy_cmdline(struct boot_info *bi, uint64_t pa)
{
	const char *s = phys(pa);
	unsigned i = 0;

	if (pa && pa < 4 * GIB)
		for (; s[i] && i < BOOT_CMDLINE - 1; i++)
			bi->cmdline[i] = s[i];
	bi->cmdline[i] = '\0';
}

static void add_ram(struct boot_info *bi, uint64_t addr, uint64_t size)
{
	unsigned i;

	if (!size || bi->nram == BOOT_MAX_RAM)
		return;
	bi->ram_bytes += size;
	for (i = bi->nram; i > 0 && bi->ram[i - 1].start > addr; i--)
		bi->ram[i] = bi->ram[i - 1];
	bi->ram[i] = (struct ram_range){ addr, addr + size };
	bi->nram++;
}

static int parse_pvh(struct boot_info *bi, uint32_t pa, char *err, unsigned errlen)
{
	const struct hvm_start_info *si = phys(pa);

	if (si->magic != PVH_MAGIC) {
		fmt__snprintf(err, errlen, "boot: bad hvm_start_info magic 0x%x at 0x%x",
			      si->magic, pa);
		return -1;
	}
	copy_cmdline(bi, si->cmdline_paddr);
	if (si->version >= 1 && si->memmap_paddr && si->memmap_paddr < 4 * GIB) {
		const struct hvm_memmap_entry *e = phys(si->memmap_paddr);

		for (uint32_t i = 0; i < si->memmap_entries; i++)
			if (e[i].type == E820_RAM)
				add_ram(bi, e[i].addr, e[i].size);
	}
	return 0;
}

static int parse_multiboot(struct boot_info *bi, uint32_t pa, char *err, unsigned errlen)
{
	const struct mb_info *mi = phys(pa);

	if (mb_magic != MB_BOOT_MAGIC) {
		fmt__snprintf(err, errlen, "boot: bad multiboot magic 0x%x", mb_magic);
		return -1;
	}
	if (mi->flags & MB_INFO_CMDLINE)
		copy_cmdline(bi, mi->cmdline);
	if (mi->flags & MB_INFO_MMAP) {
		uint32_t off = 0;

		while (off + sizeof(struct mb_mmap_entry) <= mi->mmap_length) {
			const struct mb_mmap_entry *e = phys(mi->mmap_addr + off);

			if (e->type == E820_RAM)
				add_ram(bi, e->addr, e->len);
			off += e->size + 4;
		}
	} else if (mi->flags & MB_INFO_MEM) {
		add_ram(bi, 0, (uint64_t)mi->mem_lower * KIB);
		add_ram(bi, MIB, (uint64_t)mi->mem_upper * KIB);
	}
	return 0;
}

static bool checksum_ok(const uint8_t *p, unsigned len)
{
	uint8_t sum = 0;

	while (len--)
		sum = (uint8_t)(sum + *p++);
	return sum == 0;
}

/* Enabled processor entries in the MP configuration table of floating pointer fp. */
static unsigned mp_count_cpus(const uint8_t *fp)
{
	uint32_t cfg_pa;
	const uint8_t *cfg, *e;
	uint16_t len, count;
	unsigned cpus = 0;

	memcpy(&cfg_pa, fp + 4, 4);
	if (!cfg_pa)
		return 0;
	cfg = phys(cfg_pa);
	memcpy(&len, cfg + 4, 2);
	memcpy(&count, cfg + 34, 2);
	if (memcmp(cfg, "PCMP", 4) || len < 44 || !checksum_ok(cfg, len))
		return 0;
	e = cfg + 44;
	for (unsigned i = 0; i < count && e < cfg + len; i++) {
		if (e[0] == 0) {		/* processor, 20 bytes */
			if (e[3] & 1)
				cpus++;
			e += 20;
		} else if (e[0] <= 4) {		/* bus, I/O APIC, interrupts: 8 bytes */
			e += 8;
		} else {
			break;
		}
	}
	return cpus;
}

static unsigned mp_scan(uint64_t start, uint64_t end)
{
	for (uint64_t a = start; a + 16 <= end; a += 16) {
		const uint8_t *p = phys(a);

		if (!memcmp(p, "_MP_", 4) && p[8] == 1 && checksum_ok(p, 16))
			return mp_count_cpus(p);
	}
	return 0;
}

int boot__parse(struct boot_info *bi, unsigned kind, uint32_t info_paddr, char *err, unsigned errlen)
{
	int r;

	memset(bi, 0, sizeof(*bi));
	bi->kind = kind;
	bi->ncpus = 1;
	if (kind == BOOT_PVH) {
		bi->kind_name = "pvh";
		r = parse_pvh(bi, info_paddr, err, errlen);
		if (r == 0) {
			unsigned n = mp_scan(0x9FC00, 0xA0000);

			if (!n)
				n = mp_scan(0xF0000, 0x100000);
			if (n)
				bi->ncpus = n > MAX_CPUS ? MAX_CPUS : n;
		}
	} else {
		bi->kind_name = "multiboot";
		r = parse_multiboot(bi, info_paddr, err, errlen);
	}
	return r;
}
