/* Guest RAM: one memfd mapped shared into the VMM and split into KVM memory
 * slots around the 32-bit MMIO hole. Migration and snapshots rely on the
 * memfd (SEEK_DATA/SEEK_HOLE to skip never-populated pages, mapping images). */
#ifndef VMHOP_GUEST_MEM_H
#define VMHOP_GUEST_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"

struct lazy_mem;

#define GUEST_PAGE_SIZE 4096ULL
#define GUEST_PAGE_SHIFT 12

struct guest_mem_region {
	uint64_t gpa;		/* guest-physical start */
	uint64_t size;		/* bytes */
	uint64_t offset;	/* offset into the memfd and into base */
	uint32_t slot;		/* KVM memory slot id */
};

struct guest_mem {
	int memfd;
	uint8_t *base;		/* whole memfd, MAP_SHARED */
	uint64_t size;		/* total RAM bytes */
	struct guest_mem_region regions[2];
	unsigned nr_regions;
	/* Pages the VMM itself wrote (virtio rings, DMA into guest buffers),
	 * indexed by memfd offset / page size. KVM's dirty log cannot see these
	 * writes; NULL until tracking is enabled. */
	_Atomic uint64_t *vmm_dirty;
	uint64_t nr_pages;
	/* Pages still being filled from a checkpoint after a restore (vmm/
	 * lazy-mem.c, owned here once started); NULL otherwise. */
	struct lazy_mem *lazy;
};

/* Creates the memfd of `size` bytes (a multiple of 2 MiB is not required, a
 * page multiple is) and lays out regions. Does not touch KVM. */
int guest_mem__create(struct guest_mem *m, uint64_t size, const char *name, struct err *e);
void guest_mem__destroy(struct guest_mem *m);
/* Registers every region as a KVM memory slot (flags: KVM_MEM_LOG_DIRTY_PAGES or 0). */
int guest_mem__register(struct guest_mem *m, int vm_fd, uint32_t flags, struct err *e);
/* Host pointer for [gpa, gpa+len) if it lies inside one RAM region, else NULL.
 * Guest-supplied addresses must always go through this check. */
void *guest_mem__ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* memfd offset of a guest-physical address, or UINT64_MAX if not RAM. */
uint64_t guest_mem__offset(const struct guest_mem *m, uint64_t gpa);
/* Records a VMM write into guest RAM (no-op unless tracking is enabled). */
void guest_mem__mark_dirty(struct guest_mem *m, uint64_t gpa, uint64_t len);
int guest_mem__track_vmm_writes(struct guest_mem *m, bool on);
/* Waits until every page of a restore being filled lazily is in place: call
 * before reading RAM wholesale through the memfd (its data extents) or
 * starting a dirty log that must describe changes to the whole of it. At
 * once when RAM is not being filled. -EIO (e says why) if filling failed. */
int guest_mem__wait_whole(struct guest_mem *m, struct err *e);

#endif
