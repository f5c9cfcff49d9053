/* Kernel loaders. Each writes the kernel and its boot information into guest
 * RAM and says where and how vCPUs start. */
#ifndef VMHOP_BOOT_H
#define VMHOP_BOOT_H

#include <stdint.h>

#include "vmhop/err.h"
#include "vmhop/guest-mem.h"

enum boot_protocol { BOOT_PVH, BOOT_LINUX64 };

struct boot_entry {
	enum boot_protocol proto;
	uint64_t entry;		/* guest-physical entry point */
	uint64_t boot_info;	/* start_info (PVH) or boot_params (Linux) */
};

/* Detects the image type and loads it with the initrd and command line. */
int boot__load_kernel(struct guest_mem *mem, const char *kernel, const char *initrd,
		      const char *cmdline, struct boot_entry *out, struct err *e);
/* PVH: ELF (32 or 64 bit) with a XEN_ELFNOTE_PHYS32_ENTRY note. Returns
 * -ENOEXEC when the image is not such an ELF (so other loaders can try). */
int boot__load_pvh(struct guest_mem *mem, const void *img, size_t len, const char *kernel,
		   const char *initrd, const char *cmdline, struct boot_entry *out, struct err *e);
/* Writes an Intel MP table (processors, buses, IOAPIC, ISA interrupts) at
 * LAYOUT_EBDA so guests without ACPI find their CPUs and interrupts. */
int boot__write_mptable(struct guest_mem *mem, unsigned nr_cpus, struct err *e);

/* E820 view of guest RAM shared by all boot protocols. */
struct boot_e820 {
	uint64_t addr, size;
	uint32_t type;		/* 1 RAM, 2 reserved */
};
unsigned boot__e820(const struct guest_mem *mem, struct boot_e820 *out, unsigned max);
/* Loads an initrd file into the highest page-aligned spot of low RAM below
 * `limit`, above `floor`. */
int boot__load_initrd(struct guest_mem *mem, const char *path, uint64_t floor, uint64_t limit,
		      uint64_t *gpa, uint64_t *size, struct err *e);

#endif
