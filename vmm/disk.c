#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmhop/disk.h"
#include "vmhop/util.h"

#define IOV_BATCH 64

static const char *disk_name(const struct disk_config *dc)
{
	return dc->id[0] ? dc->id : "?";
}

static int open_tail_fd(struct disk *d, struct err *e)
{
	if (d->tail_fd >= 0 || !d->direct || d->size % d->align == 0)
		return 0;
	d->tail_fd = open(d->path, (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (d->tail_fd < 0)
		return err__setsys(e, errno, "disk %s: cannot open %s", d->id, d->path);
	return 0;
}

/* The logical block size O_DIRECT wants. Block devices say it; for files
 * the filesystem decides, so try a 512-byte read and fall back to 4096. */
static int probe_align(struct disk *d, bool blkdev, struct err *e)
{
	d->align = DISK_SECTOR_SIZE;
	if (blkdev) {
		int ssz = 0;
		if (ioctl(d->fd, BLKSSZGET, &ssz) == 0 && ssz > DISK_SECTOR_SIZE)
			d->align = (unsigned)ssz;
	} else if (d->size >= DISK_SECTOR_SIZE &&
		   pread(d->fd, d->bounce, DISK_SECTOR_SIZE, 0) < 0) {
		if (errno != EINVAL)
			return err__setsys(e, errno, "disk %s: cannot read %s", d->id, d->path);
		d->align = 4096;
	}
	if (d->align != DISK_SECTOR_SIZE && d->align != 4096)
		return err__set(e, EINVAL, "disk %s: %s needs %u-byte aligned I/O (only 512 and 4096 are supported)",
				d->id, d->path, d->align);
	if (d->size >= d->align && pread(d->fd, d->bounce, d->align, 0) < 0)
		return err__setsys(e, errno, "disk %s: O_DIRECT read of %s fails at %u-byte alignment",
				   d->id, d->path, d->align);
	return 0;
}

int disk__open(struct disk **out, const struct disk_config *dc, struct err *e)
{
	const char *name = disk_name(dc);
	struct disk *d = calloc(1, sizeof(*d));
	if (!d || !(d->path = strdup(dc->path))) {
		free(d);
		return err__set(e, ENOMEM, "disk %s: out of memory", name);
	}
	snprintf(d->id, sizeof(d->id), "%s", name);
	d->fd = d->tail_fd = -1;
	d->readonly = dc->readonly;
	d->direct = dc->cache_none;
	d->align = DISK_SECTOR_SIZE;
	int r = 0;
	int flags = (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (d->direct ? O_DIRECT : 0);
	d->fd = open(d->path, flags);
	if (d->fd < 0) {
		if (errno == EINVAL && d->direct)
			r = err__set(e, EINVAL, "disk %s: cannot open %s with O_DIRECT (cache=none): "
				     "the filesystem does not support it; use cache=writeback", name, d->path);
		else
			r = err__setsys(e, errno, "disk %s: cannot open %s", name, d->path);
		goto fail;
	}
	struct stat st;
	if (fstat(d->fd, &st) < 0) {
		r = err__setsys(e, errno, "disk %s: cannot stat %s", name, d->path);
		goto fail;
	}
	bool blkdev = S_ISBLK(st.st_mode);
	if (S_ISREG(st.st_mode)) {
		d->size = (uint64_t)st.st_size;
	} else if (blkdev) {
		if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0) {
			r = err__setsys(e, errno, "disk %s: cannot get the size of %s", name, d->path);
			goto fail;
		}
	} else {
		r = err__set(e, EINVAL, "disk %s: %s is not a regular file or block device", name, d->path);
		goto fail;
	}
	if (d->size % DISK_SECTOR_SIZE) {
		r = err__set(e, EINVAL, "disk %s: %s is %llu bytes, not a multiple of %d",
			     name, d->path, (unsigned long long)d->size, DISK_SECTOR_SIZE);
		goto fail;
	}
	if (posix_memalign(&d->bounce, 4096, DISK_BOUNCE_SIZE)) {
		d->bounce = NULL;
		r = err__set(e, ENOMEM, "disk %s: out of memory", name);
		goto fail;
	}
	if (d->direct && ((r = probe_align(d, blkdev, e)) < 0 || (r = open_tail_fd(d, e)) < 0))
		goto fail;
	*out = d;
	return 0;
fail:
	disk__close(d);
	return r;
}

void disk__close(struct disk *d)
{
	if (!d)
		return;
	if (d->fd >= 0)
		close(d->fd);
	if (d->tail_fd >= 0)
		close(d->tail_fd);
	free(d->bounce);
	free(d->path);
	free(d);
}

int disk__set_align(struct disk *d, unsigned align, struct err *e)
{
	if (align != DISK_SECTOR_SIZE && align != 4096)
		return err__set(e, EINVAL, "disk %s: alignment %u is not 512 or 4096", d->id, align);
	d->align = align;
	return open_tail_fd(d, e);
}

static uint64_t iov_total(const struct iovec *iov, int cnt)
{
	uint64_t t = 0;
	for (int i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* preadv/pwritev until every byte moved. Works on a copy of the iovecs,
 * IOV_BATCH at a time, since short transfers advance them. */
static int rw_full(int fd, const struct iovec *iov, int cnt, uint64_t off, bool write)
{
	struct iovec v[IOV_BATCH];
	for (int first = 0; first < cnt; first += IOV_BATCH) {
		int n = MIN(cnt - first, IOV_BATCH), i = 0;
		memcpy(v, iov + first, (size_t)n * sizeof(*v));
		while (i < n) {
			ssize_t got = write ? pwritev(fd, v + i, n - i, (off_t)off)
					    : preadv(fd, v + i, n - i, (off_t)off);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0)
				return -errno;
			if (got == 0)
				return -EIO;	/* EOF inside the image: it shrank */
			off += (uint64_t)got;
			size_t left = (size_t)got;
			while (i < n && left >= v[i].iov_len)
				left -= v[i++].iov_len;
			if (left) {
				v[i].iov_base = (char *)v[i].iov_base + left;
				v[i].iov_len -= left;
			}
			while (i < n && !v[i].iov_len)
				i++;
		}
	}
	return 0;
}

/* Position in an iovec array, for copying to/from the bounce buffer. */
struct cursor {
	const struct iovec *iov;
	int cnt, i;
	size_t off;
};

static void cursor_copy(struct cursor *c, void *buf, size_t n, bool to_iov)
{
	char *b = buf;
	while (n && c->i < c->cnt) {
		const struct iovec *v = &c->iov[c->i];
		size_t k = MIN(n, v->iov_len - c->off);
		if (to_iov)
			memcpy((char *)v->iov_base + c->off, b, k);
		else
			memcpy(b, (const char *)v->iov_base + c->off, k);
		b += k;
		n -= k;
		c->off += k;
		if (c->off == v->iov_len) {
			c->i++;
			c->off = 0;
		}
	}
}

static int pio(int fd, void *buf, size_t len, uint64_t off, bool write)
{
	int r = write ? util__pwrite_all(fd, buf, len, (off_t)off) : util__pread_all(fd, buf, len, (off_t)off);
	return r == -ENODATA || r == -EPIPE ? -EIO : r;
}

/* O_DIRECT transfer of anything unaligned, through the bounce buffer. */
static int bounce_rw(struct disk *d, const struct iovec *iov, int cnt, uint64_t off, uint64_t len,
		     bool write)
{
	const uint64_t a = d->align;
	const uint64_t tail_start = d->size & ~(a - 1);
	struct cursor c = { .iov = iov, .cnt = cnt };
	uint64_t cur = off, end = off + len;
	char *bb = d->bounce;
	int r;
	while (cur < end) {
		if (cur >= tail_start) {
			/* Past the last whole block: buffered, no alignment. */
			size_t n = (size_t)MIN(end - cur, (uint64_t)DISK_BOUNCE_SIZE);
			if (write)
				cursor_copy(&c, bb, n, false);
			if ((r = pio(d->tail_fd, bb, n, cur, write)) < 0)
				return r;
			if (!write)
				cursor_copy(&c, bb, n, true);
			cur += n;
			continue;
		}
		uint64_t as = cur & ~(a - 1);
		uint64_t ce = MIN(MIN(end, as + DISK_BOUNCE_SIZE), tail_start);
		uint64_t ae = ALIGN_UP(ce, a);
		size_t head = (size_t)(cur - as), n = (size_t)(ce - cur);
		if (!write) {
			if ((r = pio(d->fd, bb, ae - as, as, false)) < 0)
				return r;
			cursor_copy(&c, bb + head, n, true);
		} else {
			/* Partial first and last blocks: read them, patch, write whole. */
			if (cur != as && (r = pio(d->fd, bb, a, as, false)) < 0)
				return r;
			if (ce != ae && (ae - a != as || cur == as) &&
			    (r = pio(d->fd, bb + (ae - a - as), a, ae - a, false)) < 0)
				return r;
			cursor_copy(&c, bb + head, n, false);
			if ((r = pio(d->fd, bb, ae - as, as, true)) < 0)
				return r;
		}
		cur = ce;
	}
	return 0;
}

static bool iov_aligned(const struct iovec *iov, int cnt, uint64_t a)
{
	for (int i = 0; i < cnt; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & (a - 1))
			return false;
	return true;
}

static int transfer(struct disk *d, const struct iovec *iov, int cnt, uint64_t off, bool write)
{
	uint64_t len = iov_total(iov, cnt);
	if (off > d->size || len > d->size - off)
		return -EINVAL;
	if (write && d->readonly)
		return -EROFS;
	if (!len)
		return 0;
	if (!d->direct)
		return rw_full(d->fd, iov, cnt, off, write);
	uint64_t a = d->align;
	if (!((off | len) & (a - 1)) && off + len <= (d->size & ~(a - 1)) && iov_aligned(iov, cnt, a))
		return rw_full(d->fd, iov, cnt, off, write);
	return bounce_rw(d, iov, cnt, off, len, write);
}

int disk__readv(struct disk *d, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return transfer(d, iov, iovcnt, off, false);
}

int disk__writev(struct disk *d, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return transfer(d, iov, iovcnt, off, true);
}

int disk__flush(struct disk *d)
{
	if (d->readonly)
		return 0;
	/* The whole file, whichever descriptor wrote it. */
	return fdatasync(d->fd) < 0 ? -errno : 0;
}
