/* Kernel loaders. Each writes the kernel and its boot information into guest
 * RAM and says where and how vCPUs start. */
#ifndef VMHOP_BOOT_H
#define VMHOP_BOOT_H

#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"
#include "vmhop/guest-mem.h"

enum boot_protocol { BOOT_PVH, BOOT_LINUX64 };

struct boot_entry {
	enum boot_protocol proto;
	uint64_t entry;		/* guest-physical entry point */
	uint64_t boot_info;	/* start_info (PVH) or boot_params (Linux) */
	bool bsp_only;		/* only vCPU 0 starts; the others wait for INIT/SIPI
				 * from the guest (Linux), instead of all starting
				 * at the entry (vmhop's own test guests) */
};

/* Long-mode boot structures for the Linux 64-bit entry, in low RAM beside
 * LAYOUT_BOOT_INFO (boot_params). Only used until the kernel has its own. */
#define BOOT_LINUX_GDT		0x8000ULL	/* 4 descriptors */
#define BOOT_LINUX_PML4		0xA000ULL
#define BOOT_LINUX_PDPT		0xB000ULL
#define BOOT_LINUX_PD		0xC000ULL	/* 4 pages: 0-4 GiB in 2 MiB pages */

/* ACPI tables (RSDP first, where Linux's scan of 0xE0000-0xFFFFF finds it),
 * in the reserved area below 1 MiB. */
#define BOOT_ACPI_BASE		0xE0000ULL
#define BOOT_ACPI_SIZE		0x10000ULL

struct vcpu;

/* Detects the image type and loads it with the initrd and command line. */
int boot__load_kernel(struct guest_mem *mem, const char *kernel, const char *initrd,
		      const char *cmdline, struct boot_entry *out, struct err *e);
/* PVH: ELF (32 or 64 bit) with a XEN_ELFNOTE_PHYS32_ENTRY note. Returns
 * -ENOEXEC when the image is not such an ELF (so other loaders can try). */
int boot__load_pvh(struct guest_mem *mem, const void *img, size_t len, const char *kernel,
		   const char *initrd, const char *cmdline, struct boot_entry *out, struct err *e);
/* Linux bzImage (boot protocol 2.12+, 64-bit entry). Returns -ENOEXEC when
 * the image has no Linux setup header. */
int boot__load_bzimage(struct guest_mem *mem, const void *img, size_t len, const char *kernel,
		       const char *initrd, const char *cmdline, struct boot_entry *out, struct err *e);
/* Puts one vCPU in the state `be` asks for: the entry state for vCPU 0 (and
 * for every vCPU unless bsp_only); otherwise KVM's wait-for-SIPI reset state. */
int boot__setup_vcpu(struct vcpu *v, const struct boot_entry *be, struct err *e);
/* Writes an Intel MP table (processors, buses, IOAPIC, ISA interrupts) at
 * LAYOUT_EBDA so guests without ACPI find their CPUs and interrupts. */
int boot__write_mptable(struct guest_mem *mem, unsigned nr_cpus, struct err *e);

/* Writes ACPI tables (RSDP, RSDT/XSDT, FADT, FACS, MADT, DSDT with the PCI
 * host bridge and \_S5) at BOOT_ACPI_BASE for guests that use ACPI. */
int boot__write_acpi(struct guest_mem *mem, unsigned nr_cpus, struct err *e);

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
