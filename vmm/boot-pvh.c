/* PVH direct boot: load an ELF's segments at their physical addresses and
 * enter at the XEN_ELFNOTE_PHYS32_ENTRY address with an hvm_start_info. */
#include <elf.h>
#include <stdbool.h>
#include <string.h>

#include "vmhop/boot.h"
#include "vmhop/layout.h"
#include "vmhop/util.h"

#define XEN_ELFNOTE_GUEST_OS 6
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578

/* Layouts from Xen's public/arch-x86/hvm/start_info.h (version 1). */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

/* A program header reduced to what loading needs, from either ELF class. */
struct seg {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz;
};

static bool in_file(size_t len, uint64_t off, uint64_t size)
{
	return off <= len && size <= len - off;
}

static int get_seg(const uint8_t *img, size_t len, bool is64, unsigned i, uint64_t phoff,
		   uint64_t phentsize, struct seg *s)
{
	uint64_t at = phoff + (uint64_t)i * phentsize;
	if (is64) {
		Elf64_Phdr p;
		if (phentsize < sizeof(p) || !in_file(len, at, sizeof(p)))
			return -1;
		memcpy(&p, img + at, sizeof(p));
		*s = (struct seg){ p.p_type, p.p_offset, p.p_paddr, p.p_filesz, p.p_memsz };
	} else {
		Elf32_Phdr p;
		if (phentsize < sizeof(p) || !in_file(len, at, sizeof(p)))
			return -1;
		memcpy(&p, img + at, sizeof(p));
		*s = (struct seg){ p.p_type, p.p_offset, p.p_paddr, p.p_filesz, p.p_memsz };
	}
	return 0;
}

/* Walks the notes of one PT_NOTE segment for the PVH entry, and notes
 * whether the kernel calls itself Linux (XEN_ELFNOTE_GUEST_OS "linux"). */
static bool find_pvh_note(const uint8_t *img, const struct seg *s, uint64_t *entry, bool *linux_os)
{
	bool found = false;
	uint64_t off = 0;
	while (off + 12 <= s->filesz) {
		uint32_t namesz, descsz, type;
		memcpy(&namesz, img + s->offset + off, 4);
		memcpy(&descsz, img + s->offset + off + 4, 4);
		memcpy(&type, img + s->offset + off + 8, 4);
		uint64_t name_at = off + 12;
		uint64_t desc_at = name_at + ALIGN_UP((uint64_t)namesz, 4);
		uint64_t next = desc_at + ALIGN_UP((uint64_t)descsz, 4);
		if (next > s->filesz || next <= off)
			return found;
		bool xen = namesz == 4 && !memcmp(img + s->offset + name_at, "Xen", 4);
		if (xen && type == XEN_ELFNOTE_GUEST_OS && descsz >= 5 &&
		    !memcmp(img + s->offset + desc_at, "linux", 5))
			*linux_os = true;
		if (xen && type == XEN_ELFNOTE_PHYS32_ENTRY && descsz >= 4) {
			uint32_t e32;
			uint64_t e64;
			if (descsz >= 8) {
				memcpy(&e64, img + s->offset + desc_at, 8);
				*entry = e64;
			} else {
				memcpy(&e32, img + s->offset + desc_at, 4);
				*entry = e32;
			}
			found = true;
		}
		off = next;
	}
	return found;
}

static int write_start_info(struct guest_mem *mem, const char *initrd, const char *cmdline,
			    uint64_t kernel_end, struct err *e)
{
	struct hvm_start_info si = { .magic = HVM_START_MAGIC, .version = 1 };
	size_t clen = cmdline ? strlen(cmdline) : 0;
	if (clen >= LAYOUT_CMDLINE_MAX)
		return err__set(e, E2BIG, "--cmdline: longer than %llu bytes",
				(unsigned long long)LAYOUT_CMDLINE_MAX - 1);
	char *cl = guest_mem__ptr(mem, LAYOUT_CMDLINE, clen + 1);
	memcpy(cl, cmdline ? cmdline : "", clen);
	cl[clen] = '\0';
	si.cmdline_paddr = LAYOUT_CMDLINE;
	si.rsdp_paddr = BOOT_ACPI_BASE;		/* written by boot__write_acpi */

	struct boot_e820 map[8];
	unsigned n = boot__e820(mem, map, ARRAY_SIZE(map));
	struct hvm_memmap_table_entry *mm =
		guest_mem__ptr(mem, LAYOUT_BOOT_MEMMAP, n * sizeof(*mm));
	for (unsigned i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_table_entry){ map[i].addr, map[i].size, map[i].type, 0 };
	si.memmap_paddr = LAYOUT_BOOT_MEMMAP;
	si.memmap_entries = n;

	if (initrd) {
		uint64_t gpa, size;
		int r = boot__load_initrd(mem, initrd, kernel_end, LAYOUT_LOW_RAM_END, &gpa, &size, e);
		if (r < 0)
			return r;
		uint64_t mod_at = LAYOUT_BOOT_INFO + 0x100;
		struct hvm_modlist_entry *mod = guest_mem__ptr(mem, mod_at, sizeof(*mod));
		*mod = (struct hvm_modlist_entry){ .paddr = gpa, .size = size };
		si.nr_modules = 1;
		si.modlist_paddr = mod_at;
	}
	memcpy(guest_mem__ptr(mem, LAYOUT_BOOT_INFO, sizeof(si)), &si, sizeof(si));
	return 0;
}

int boot__load_pvh(struct guest_mem *mem, const void *image, size_t len, const char *kernel,
		   const char *initrd, const char *cmdline, struct boot_entry *out, struct err *e)
{
	const uint8_t *img = image;
	if (len < EI_NIDENT || memcmp(img, ELFMAG, SELFMAG))
		return -ENOEXEC;
	bool is64 = img[EI_CLASS] == ELFCLASS64;
	if ((!is64 && img[EI_CLASS] != ELFCLASS32) || img[EI_DATA] != ELFDATA2LSB)
		return err__set(e, ENOEXEC, "--kernel %s: not a little-endian ELF32/ELF64", kernel);
	uint64_t phoff, phentsize, phnum;
	uint16_t machine;
	if (is64) {
		Elf64_Ehdr h;
		if (len < sizeof(h))
			return err__set(e, ENOEXEC, "--kernel %s: truncated ELF header", kernel);
		memcpy(&h, img, sizeof(h));
		phoff = h.e_phoff, phentsize = h.e_phentsize, phnum = h.e_phnum, machine = h.e_machine;
	} else {
		Elf32_Ehdr h;
		if (len < sizeof(h))
			return err__set(e, ENOEXEC, "--kernel %s: truncated ELF header", kernel);
		memcpy(&h, img, sizeof(h));
		phoff = h.e_phoff, phentsize = h.e_phentsize, phnum = h.e_phnum, machine = h.e_machine;
	}
	if (machine != EM_X86_64 && machine != EM_386)
		return err__set(e, ENOEXEC, "--kernel %s: ELF for another architecture (machine %u)",
				kernel, machine);

	uint64_t entry = 0;
	bool have_entry = false, linux_os = false;
	struct seg s;
	for (unsigned i = 0; i < phnum; i++) {
		if (get_seg(img, len, is64, i, phoff, phentsize, &s) < 0)
			return err__set(e, ENOEXEC, "--kernel %s: program header %u outside the file", kernel, i);
		if (s.type == PT_NOTE && in_file(len, s.offset, s.filesz) &&
		    find_pvh_note(img, &s, &entry, &linux_os))
			have_entry = true;
	}
	if (!have_entry)
		return err__set(e, ENOEXEC,
				"--kernel %s: ELF without a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)", kernel);

	uint64_t kernel_end = LAYOUT_KERNEL_BASE;
	for (unsigned i = 0; i < phnum; i++) {
		get_seg(img, len, is64, i, phoff, phentsize, &s);
		if (s.type != PT_LOAD || !s.memsz)
			continue;
		if (s.filesz > s.memsz || !in_file(len, s.offset, s.filesz))
			return err__set(e, ENOEXEC, "--kernel %s: segment %u lies outside the file", kernel, i);
		uint8_t *dst = guest_mem__ptr(mem, s.paddr, s.memsz);
		if (s.paddr < LAYOUT_KERNEL_BASE || !dst)
			return err__set(e, ENOSPC,
					"--kernel %s: segment at 0x%llx+0x%llx does not fit in guest RAM above 1 MiB",
					kernel, (unsigned long long)s.paddr, (unsigned long long)s.memsz);
		memcpy(dst, img + s.offset, s.filesz);
		memset(dst + s.filesz, 0, s.memsz - s.filesz);
		kernel_end = MAX(kernel_end, ALIGN_UP(s.paddr + s.memsz, GUEST_PAGE_SIZE));
	}
	int r = write_start_info(mem, initrd, cmdline, kernel_end, e);
	if (r < 0)
		return r;
	/* Linux brings its application processors up with INIT/SIPI itself;
	 * vmhop's test guests expect every vCPU at the entry. */
	*out = (struct boot_entry){ .proto = BOOT_PVH, .entry = entry, .boot_info = LAYOUT_BOOT_INFO,
				    .bsp_only = linux_os };
	return 0;
}
