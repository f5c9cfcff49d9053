/* Raw disk images (regular files or block devices) behind virtio-blk.
 *
 * cache=none opens with O_DIRECT: the host page cache stays out of the way,
 * but every transfer must be aligned (offset, length and memory) to the
 * device's logical block size. Guest buffers aligned to it are transferred
 * in place; anything else goes through an aligned bounce buffer, with
 * read-modify-write of partial blocks. If the image size is not a multiple
 * of the alignment, the tail past the last whole block is served through a
 * second, buffered descriptor, since O_DIRECT cannot write a partial block
 * without growing the file.
 *
 * A struct disk is used by one thread at a time (its device thread): the
 * bounce buffer is shared by all requests. */
#ifndef VMHOP_DISK_H
#define VMHOP_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmhop/err.h"
#include "vmhop/vm-config.h"

#define DISK_SECTOR_SIZE	512
#define DISK_BOUNCE_SIZE	(1u << 20)

struct disk {
	char *path;
	char id[DISK_ID_MAX];
	int fd;			/* O_DIRECT when direct */
	int tail_fd;		/* buffered fd for the unaligned tail, or -1 */
	uint64_t size;		/* bytes, a multiple of 512 */
	bool readonly;
	bool direct;
	unsigned align;		/* O_DIRECT alignment: 512 or 4096 */
	void *bounce;		/* DISK_BOUNCE_SIZE bytes, 4096-aligned */
};

/* Opens dc->path read-write (read-only with dc->readonly), with O_DIRECT
 * for dc->cache_none. Errors name the disk and the path, e.g.
 * "disk vda: cannot open /x/d.img: Permission denied". */
int disk__open(struct disk **out, const struct disk_config *dc, struct err *e);
void disk__close(struct disk *d);

/* Full transfers of [off, off + iov total); the range must lie within the
 * image. Return 0 or -errno (-EIO on a short transfer). */
int disk__readv(struct disk *d, const struct iovec *iov, int iovcnt, uint64_t off);
int disk__writev(struct disk *d, const struct iovec *iov, int iovcnt, uint64_t off);
/* fdatasync: what a guest FLUSH asks for, with or without O_DIRECT. */
int disk__flush(struct disk *d);

/* Overrides the probed O_DIRECT alignment (512 or 4096). For tests and for
 * storage whose requirement the probe misjudges. */
int disk__set_align(struct disk *d, unsigned align, struct err *e);

#endif
