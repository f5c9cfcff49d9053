/* boot.h: what the loader told us (PVH start info or multiboot info), copied to safety. */
#ifndef GUEST_BOOT_H
#define GUEST_BOOT_H

#include <stdint.h>

#define BOOT_MAX_RAM	64
#define BOOT_CMDLINE	1024

struct ram_range {
	uint64_t start, end;	/* [start, end) */
};

struct boot_info {
	unsigned kind;		/* BOOT_PVH or BOOT_MULTIBOOT */
	const char *kind_name;
	char cmdline[BOOT_CMDLINE];
	struct ram_range ram[BOOT_MAX_RAM];	/* sorted, type 1 only */
	unsigned nram;
	uint64_t ram_bytes;
	unsigned ncpus;
};

/* Returns 0, or -1 with a reason in err. */
int boot__parse(struct boot_info *bi, unsigned kind, uint32_t info_paddr, char *err, unsigned errlen);

#endif
