/* The populated parts of guest RAM (memfd data extents), by page number. */
#ifndef VMHOP_RAM_EXTENTS_H
#define VMHOP_RAM_EXTENTS_H

#include <stddef.h>
#include <stdint.h>

#include "vmhop/err.h"

#define RAM_EXTENT_PAGE 4096ULL

struct ram_extent {
	uint64_t first, count;	/* pages */
};

struct ram_extents {
	struct ram_extent *v;
	size_t n;
	uint64_t pages;		/* populated pages in all */
};

/* Lists the data extents of memfd's first npages pages, in order. Pages of
 * holes were never written and read as zero. */
int ram_extents__list(int memfd, uint64_t npages, struct ram_extents *x, struct err *e);
void ram_extents__free(struct ram_extents *x);

#endif
