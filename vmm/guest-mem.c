#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmhop/guest-mem.h"
#include "vmhop/lazy-mem.h"
#include "vmhop/layout.h"
#include "vmhop/util.h"

int guest_mem__create(struct guest_mem *m, uint64_t size, const char *name, struct err *e)
{
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	if (size < 2 * MiB || size % GUEST_PAGE_SIZE)
		return err__set(e, EINVAL, "guest memory must be a page multiple of at least 2M");
	int fd = memfd_create(name ? name : "vmhop-ram", MFD_CLOEXEC);
	if (fd < 0)
		return err__setsys(e, errno, "memfd_create");
	if (ftruncate(fd, (off_t)size) < 0) {
		int r = err__setsys(e, errno, "sizing guest memory to %llu bytes",
				    (unsigned long long)size);
		close(fd);
		return r;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED) {
		int r = err__setsys(e, errno, "mapping %llu bytes of guest memory",
				    (unsigned long long)size);
		close(fd);
		return r;
	}
	/* Guest RAM is large and mostly cold: keep it out of core dumps. */
	madvise(p, size, MADV_DONTDUMP);
	m->memfd = fd;
	m->base = p;
	m->size = size;
	m->nr_pages = size / GUEST_PAGE_SIZE;

	uint64_t low = MIN(size, LAYOUT_LOW_RAM_END);
	m->regions[0] = (struct guest_mem_region){ .gpa = 0, .size = low, .offset = 0, .slot = 0 };
	m->nr_regions = 1;
	if (size > low) {
		m->regions[1] = (struct guest_mem_region){
			.gpa = LAYOUT_HIGH_RAM_BASE, .size = size - low, .offset = low, .slot = 1 };
		m->nr_regions = 2;
	}
	return 0;
}

void guest_mem__destroy(struct guest_mem *m)
{
	/* Its threads write into the mapping: they end before it goes. */
	lazy_mem__destroy(m->lazy);
	if (m->base)
		munmap(m->base, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	free((void *)m->vmm_dirty);
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
}

int guest_mem__register(struct guest_mem *m, int vm_fd, uint32_t flags, struct err *e)
{
	for (unsigned i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = r->slot,
			.flags = flags,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)(m->base + r->offset),
		};
		if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			return err__setsys(e, errno, "KVM_SET_USER_MEMORY_REGION slot %u", r->slot);
	}
	return 0;
}

uint64_t guest_mem__offset(const struct guest_mem *m, uint64_t gpa)
{
	for (unsigned i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r->offset + (gpa - r->gpa);
	}
	return UINT64_MAX;
}

void *guest_mem__ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return m->base + r->offset + (gpa - r->gpa);
	}
	return NULL;
}

void guest_mem__mark_dirty(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	_Atomic uint64_t *bm = m->vmm_dirty;
	if (!bm || !len)
		return;
	uint64_t off = guest_mem__offset(m, gpa);
	if (off == UINT64_MAX)
		return;
	uint64_t first = off >> GUEST_PAGE_SHIFT;
	uint64_t last = (off + len - 1) >> GUEST_PAGE_SHIFT;
	for (uint64_t p = first; p <= last && p < m->nr_pages; p++)
		atomic_fetch_or_explicit(&bm[p / 64], 1ULL << (p % 64), memory_order_relaxed);
}

int guest_mem__track_vmm_writes(struct guest_mem *m, bool on)
{
	if (on && !m->vmm_dirty) {
		uint64_t words = (m->nr_pages + 63) / 64;
		m->vmm_dirty = calloc(words, sizeof(uint64_t));
		if (!m->vmm_dirty)
			return -ENOMEM;
	} else if (!on && m->vmm_dirty) {
		free((void *)m->vmm_dirty);
		m->vmm_dirty = NULL;
	}
	return 0;
}

int guest_mem__wait_whole(struct guest_mem *m, struct err *e)
{
	return lazy_mem__wait(m->lazy, e);
}
