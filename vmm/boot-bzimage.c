/* Linux x86 boot protocol (2.12 and later), 64-bit entry: the protected-mode
 * part of a bzImage goes to 1 MiB, boot_params (the "zero page") carries the
 * setup header, the E820 map, the command line and the initrd, and the BSP
 * enters at the loaded image + 0x200 in long mode with identity paging. The
 * real-mode setup code is never run: there is no BIOS to serve it. */
#include <stdbool.h>
#include <string.h>

#include "vmhop/boot.h"
#include "vmhop/layout.h"
#include "vmhop/util.h"

/* Offsets in the image and in boot_params (Documentation/arch/x86/boot.rst
 * and zero-page.rst). The setup header sits at the same offset in both. */
#define BP_ACPI_RSDP_ADDR	0x070
#define BP_EXT_RAMDISK_IMAGE	0x0c0
#define BP_EXT_RAMDISK_SIZE	0x0c4
#define BP_EXT_CMD_LINE_PTR	0x0c8
#define BP_E820_ENTRIES		0x1e8
#define BP_SENTINEL		0x1ef
#define BP_E820_TABLE		0x2d0
#define BP_E820_MAX		128
#define BP_SIZE			0x1000

#define HDR_START		0x1f1
#define HDR_SETUP_SECTS		0x1f1
#define HDR_BOOT_FLAG		0x1fe
#define HDR_JUMP		0x200
#define HDR_MAGIC		0x202
#define HDR_VERSION		0x206
#define HDR_TYPE_OF_LOADER	0x210
#define HDR_LOADFLAGS		0x211
#define HDR_RAMDISK_IMAGE	0x218
#define HDR_RAMDISK_SIZE	0x21c
#define HDR_HEAP_END_PTR	0x224
#define HDR_CMD_LINE_PTR	0x228
#define HDR_INITRD_ADDR_MAX	0x22c
#define HDR_XLOADFLAGS		0x236
#define HDR_CMDLINE_SIZE	0x238
#define HDR_INIT_SIZE		0x260

#define LOADFLAG_LOADED_HIGH	0x01
#define LOADFLAG_CAN_USE_HEAP	0x80
#define XLF_KERNEL_64		0x01
#define XLF_CAN_BE_LOADED_ABOVE_4G 0x02
#define LINUX_LOAD_ADDR		LAYOUT_KERNEL_BASE
#define LINUX_ENTRY64_OFFSET	0x200
/* The decompressor puts the kernel at 16 MiB (CONFIG_PHYSICAL_START) or
 * higher; keep the initrd clear of that and of init_size above it. */
#define LINUX_RUN_ADDR		0x1000000ULL

static uint16_t get16(const uint8_t *p, size_t off)
{
	uint16_t v;
	memcpy(&v, p + off, 2);
	return v;
}

static uint32_t get32(const uint8_t *p, size_t off)
{
	uint32_t v;
	memcpy(&v, p + off, 4);
	return v;
}

static void put32(uint8_t *p, size_t off, uint32_t v)
{
	memcpy(p + off, &v, 4);
}

/* Identity map of the low 4 GiB with 2 MiB pages, and a GDT with the flat
 * __BOOT_CS (0x10, 64-bit code) and __BOOT_DS (0x18) the protocol names. */
static int write_long_mode_tables(struct guest_mem *mem, struct err *e)
{
	uint64_t *pml4 = guest_mem__ptr(mem, BOOT_LINUX_PML4, GUEST_PAGE_SIZE);
	uint64_t *pdpt = guest_mem__ptr(mem, BOOT_LINUX_PDPT, GUEST_PAGE_SIZE);
	uint64_t *pd = guest_mem__ptr(mem, BOOT_LINUX_PD, 4 * GUEST_PAGE_SIZE);
	uint64_t *gdt = guest_mem__ptr(mem, BOOT_LINUX_GDT, 4 * sizeof(uint64_t));
	if (!pml4 || !pdpt || !pd || !gdt)
		return err__set(e, ENOSPC, "guest RAM too small for the boot page tables");
	memset(pml4, 0, GUEST_PAGE_SIZE);
	memset(pdpt, 0, GUEST_PAGE_SIZE);
	pml4[0] = BOOT_LINUX_PDPT | 0x3;		/* present, writable */
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (BOOT_LINUX_PD + i * GUEST_PAGE_SIZE) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83;		/* present, writable, 2 MiB */
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00af9b000000ffffULL;	/* 0x10: code, L=1, DPL 0 */
	gdt[3] = 0x00cf93000000ffffULL;	/* 0x18: data, 4 GiB flat */
	return 0;
}

static int write_cmdline(struct guest_mem *mem, const char *cmdline, uint32_t max, struct err *e)
{
	size_t clen = cmdline ? strlen(cmdline) : 0;
	uint64_t room = MIN((uint64_t)max, LAYOUT_CMDLINE_MAX - 1);
	if (clen > room)
		return err__set(e, E2BIG, "--cmdline: longer than the %llu bytes this kernel accepts",
				(unsigned long long)room);
	char *cl = guest_mem__ptr(mem, LAYOUT_CMDLINE, clen + 1);
	if (!cl)
		return err__set(e, ENOSPC, "guest RAM too small for the command line");
	memcpy(cl, cmdline ? cmdline : "", clen);
	cl[clen] = '\0';
	return 0;
}

int boot__load_bzimage(struct guest_mem *mem, const void *image, size_t len, const char *kernel,
		       const char *initrd, const char *cmdline, struct boot_entry *out, struct err *e)
{
	const uint8_t *img = image;
	if (len < 0x270 || memcmp(img + HDR_MAGIC, "HdrS", 4) || get16(img, HDR_BOOT_FLAG) != 0xaa55)
		return -ENOEXEC;
	uint16_t version = get16(img, HDR_VERSION);
	if (version < 0x020c)
		return err__set(e, ENOEXEC,
				"--kernel %s: boot protocol %u.%02u is too old (the 64-bit entry needs 2.12)",
				kernel, version >> 8, version & 0xff);
	if (!(get16(img, HDR_XLOADFLAGS) & XLF_KERNEL_64))
		return err__set(e, ENOEXEC, "--kernel %s: bzImage without a 64-bit entry point (32-bit kernel?)",
				kernel);
	if (!(img[HDR_LOADFLAGS] & LOADFLAG_LOADED_HIGH))
		return err__set(e, ENOEXEC, "--kernel %s: zImage (loaded low) kernels are not supported", kernel);
	unsigned setup_sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	size_t setup_size = (size_t)(setup_sects + 1) * 512;
	size_t hdr_end = HDR_JUMP + 2 + (size_t)img[HDR_JUMP + 1];
	if (setup_size >= len || hdr_end > BP_E820_TABLE || hdr_end > len)
		return err__set(e, ENOEXEC, "--kernel %s: bzImage setup header is inconsistent", kernel);
	size_t pm_size = len - setup_size;
	uint64_t init_size = get32(img, HDR_INIT_SIZE);
	uint8_t *dst = guest_mem__ptr(mem, LINUX_LOAD_ADDR, MAX(pm_size, init_size));
	if (!dst)
		return err__set(e, ENOSPC,
				"--kernel %s: needs %llu MiB of RAM above 1 MiB to load and decompress",
				kernel, (unsigned long long)(MAX(pm_size, init_size) >> 20) + 1);
	memcpy(dst, img + setup_size, pm_size);

	uint8_t *bp = guest_mem__ptr(mem, LAYOUT_BOOT_INFO, BP_SIZE);
	if (!bp)
		return err__set(e, ENOSPC, "guest RAM too small for boot_params");
	memset(bp, 0, BP_SIZE);
	memcpy(bp + HDR_START, img + HDR_START, hdr_end - HDR_START);
	bp[BP_SENTINEL] = 0;
	bp[HDR_TYPE_OF_LOADER] = 0xff;		/* "undefined" loader */
	bp[HDR_LOADFLAGS] = (uint8_t)(bp[HDR_LOADFLAGS] & ~LOADFLAG_CAN_USE_HEAP);
	memset(bp + HDR_HEAP_END_PTR, 0, 2);

	uint32_t cmdline_max = version >= 0x0206 ? get32(img, HDR_CMDLINE_SIZE) : 255;
	int r = write_cmdline(mem, cmdline, cmdline_max, e);
	if (r < 0)
		return r;
	put32(bp, HDR_CMD_LINE_PTR, (uint32_t)LAYOUT_CMDLINE);
	put32(bp, BP_EXT_CMD_LINE_PTR, 0);

	if (initrd) {
		/* initrd_addr_max is the address of the last byte it may use. */
		uint64_t limit = (uint64_t)get32(img, HDR_INITRD_ADDR_MAX) + 1;
		uint64_t floor = ALIGN_UP(LINUX_RUN_ADDR + MAX(init_size, pm_size), GUEST_PAGE_SIZE);
		uint64_t gpa, size;
		r = boot__load_initrd(mem, initrd, floor, MIN(limit, LAYOUT_LOW_RAM_END), &gpa, &size, e);
		if (r < 0)
			return r;
		put32(bp, HDR_RAMDISK_IMAGE, (uint32_t)gpa);
		put32(bp, HDR_RAMDISK_SIZE, (uint32_t)size);
		put32(bp, BP_EXT_RAMDISK_IMAGE, (uint32_t)(gpa >> 32));
		put32(bp, BP_EXT_RAMDISK_SIZE, (uint32_t)(size >> 32));
	}

	struct boot_e820 map[BP_E820_MAX];
	unsigned n = boot__e820(mem, map, ARRAY_SIZE(map));
	for (unsigned i = 0; i < n; i++) {
		uint8_t *ent = bp + BP_E820_TABLE + 20 * i;
		memcpy(ent, &map[i].addr, 8);
		memcpy(ent + 8, &map[i].size, 8);
		memcpy(ent + 16, &map[i].type, 4);
	}
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	/* Where boot__write_acpi puts the RSDP (saves the kernel its scan). */
	uint64_t rsdp = BOOT_ACPI_BASE;
	memcpy(bp + BP_ACPI_RSDP_ADDR, &rsdp, 8);

	r = write_long_mode_tables(mem, e);
	if (r < 0)
		return r;
	*out = (struct boot_entry){ .proto = BOOT_LINUX64, .entry = LINUX_LOAD_ADDR + LINUX_ENTRY64_OFFSET,
				    .boot_info = LAYOUT_BOOT_INFO, .bsp_only = true };
	return 0;
}
