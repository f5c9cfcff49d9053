/* Where a guest's RAM is populated: the memfd's data extents, asked of the
 * kernel (SEEK_DATA / SEEK_HOLE), so a first copy reads and sends only pages
 * the guest ever touched and costs what the guest uses, not its size. */
#include <stdlib.h>
#include <unistd.h>

#include "vmhop/ram-extents.h"

int ram_extents__list(int memfd, uint64_t npages, struct ram_extents *x, struct err *e)
{
	*x = (struct ram_extents){ 0 };
	off_t size = (off_t)(npages * RAM_EXTENT_PAGE), off = 0;
	size_t cap = 0;
	while (off < size) {
		off_t data = lseek(memfd, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		off_t hole = data < 0 ? -1 : lseek(memfd, data, SEEK_HOLE);
		if (data < 0 || hole < 0) {
			int r = err__setsys(e, errno, "finding the guest's populated memory");
			ram_extents__free(x);
			return r;
		}
		uint64_t first = (uint64_t)data / RAM_EXTENT_PAGE;
		uint64_t end = ((uint64_t)hole + RAM_EXTENT_PAGE - 1) / RAM_EXTENT_PAGE;
		if (end > npages)
			end = npages;
		if (x->n == cap) {
			cap = cap ? 2 * cap : 64;
			struct ram_extent *nv = realloc(x->v, cap * sizeof(*nv));
			if (!nv) {
				ram_extents__free(x);
				return err__set(e, ENOMEM, "out of memory");
			}
			x->v = nv;
		}
		x->v[x->n++] = (struct ram_extent){ first, end - first };
		x->pages += end - first;
		off = (off_t)(end * RAM_EXTENT_PAGE);
	}
	return 0;
}

void ram_extents__free(struct ram_extents *x)
{
	free(x->v);
	*x = (struct ram_extents){ 0 };
}
