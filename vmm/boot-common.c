#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmhop/boot.h"
#include "vmhop/layout.h"
#include "vmhop/util.h"

unsigned boot__e820(const struct guest_mem *mem, struct boot_e820 *out, unsigned max)
{
	unsigned n = 0;
	uint64_t low = mem->regions[0].size;
	struct boot_e820 map[] = {
		{ 0, LAYOUT_EBDA, 1 },
		{ LAYOUT_EBDA, 0x100000 - LAYOUT_EBDA, 2 },	/* EBDA, VGA hole, BIOS area */
		{ LAYOUT_KERNEL_BASE, low - LAYOUT_KERNEL_BASE, 1 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(map) && n < max; i++)
		out[n++] = map[i];
	if (mem->nr_regions > 1 && n < max)
		out[n++] = (struct boot_e820){ mem->regions[1].gpa, mem->regions[1].size, 1 };
	return n;
}

static int map_file(const char *what, const char *path, void **p, size_t *len, struct err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err__setsys(e, errno, "%s %s", what, path);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int r = err__setsys(e, errno, "%s %s", what, path);
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		return err__set(e, EINVAL, "%s %s: not a regular non-empty file", what, path);
	}
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	int saved = errno;
	close(fd);
	if (m == MAP_FAILED)
		return err__setsys(e, saved, "%s %s", what, path);
	*p = m;
	*len = (size_t)st.st_size;
	return 0;
}

int boot__load_initrd(struct guest_mem *mem, const char *path, uint64_t floor, uint64_t limit,
		      uint64_t *gpa, uint64_t *size, struct err *e)
{
	void *img;
	size_t len;
	int r = map_file("--initrd", path, &img, &len, e);
	if (r < 0)
		return r;
	uint64_t top = MIN(limit, mem->regions[0].size);
	uint64_t at = (top - len) & ~(GUEST_PAGE_SIZE - 1);
	if (len > top || at < floor) {
		munmap(img, len);
		return err__set(e, ENOSPC, "--initrd %s: %zu bytes do not fit in guest memory", path, len);
	}
	memcpy(guest_mem__ptr(mem, at, len), img, len);
	munmap(img, len);
	*gpa = at;
	*size = len;
	return 0;
}

int boot__load_kernel(struct guest_mem *mem, const char *kernel, const char *initrd,
		      const char *cmdline, struct boot_entry *out, struct err *e)
{
	void *img;
	size_t len;
	int r = map_file("--kernel", kernel, &img, &len, e);
	if (r < 0)
		return r;
	r = boot__load_pvh(mem, img, len, kernel, initrd, cmdline, out, e);
	if (r == -ENOEXEC)
		r = boot__load_bzimage(mem, img, len, kernel, initrd, cmdline, out, e);
	if (r == -ENOEXEC)
		r = err__set(e, ENOEXEC,
			     "--kernel %s: unrecognised kernel image (expected an ELF with a PVH note or a bzImage)",
			     kernel);
	munmap(img, len);
	return r;
}
