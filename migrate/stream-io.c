/* Ready-made byte channels for the stream codec: a file descriptor and a
 * memory buffer. Transports provide their own struct stream_io. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmhop/stream.h"
#include "vmhop/util.h"

static ssize_t fd_read(void *opaque, void *buf, size_t len)
{
	int fd = (int)(intptr_t)opaque;
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

static ssize_t fd_write(void *opaque, const void *buf, size_t len)
{
	int fd = (int)(intptr_t)opaque;
	for (;;) {
		ssize_t n = write(fd, buf, len);
		if (n > 0)
			return n;
		if (n == 0)
			return -EPIPE;
		if (errno != EINTR)
			return -errno;
	}
}

void stream__io_fd(struct stream_io *io, int fd)
{
	memset(io, 0, sizeof(*io));
	io->read = fd_read;
	io->write = fd_write;
	io->opaque = (void *)(intptr_t)fd;
}

static ssize_t mem_read(void *opaque, void *buf, size_t len)
{
	struct stream_mem *m = opaque;
	size_t n = MIN(len, m->len - m->pos);
	memcpy(buf, m->buf + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

static int mem_room(struct stream_mem *m, size_t want)
{
	if (m->cap - m->len >= want)
		return 0;
	if (!m->grow)
		return -ENOSPC;
	size_t cap = m->cap ? m->cap : 65536;
	while (cap - m->len < want) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	uint8_t *p = realloc(m->buf, cap);
	if (!p)
		return -ENOMEM;
	m->buf = p;
	m->cap = cap;
	return 0;
}

static ssize_t mem_write(void *opaque, const void *buf, size_t len)
{
	struct stream_mem *m = opaque;
	int rc = mem_room(m, len);
	if (rc)
		return rc;
	memcpy(m->buf + m->len, buf, len);
	m->len += len;
	return (ssize_t)len;
}

static void *mem_reserve(void *opaque, size_t want, size_t *got)
{
	struct stream_mem *m = opaque;
	if (mem_room(m, want))
		return NULL;
	void *p = m->buf + m->len;
	m->len += want;
	*got = want;
	return p;
}

static const void *mem_borrow(void *opaque, size_t want, size_t *got)
{
	struct stream_mem *m = opaque;
	size_t n = MIN(want, m->len - m->pos);
	const void *p = m->buf + m->pos;
	m->pos += n;
	*got = n;
	return p;
}

void stream__io_mem(struct stream_io *io, struct stream_mem *m)
{
	io->read = mem_read;
	io->write = mem_write;
	io->reserve = mem_reserve;
	io->borrow = mem_borrow;
	io->opaque = m;
}

void stream__mem_init_read(struct stream_mem *m, const void *buf, size_t len)
{
	memset(m, 0, sizeof(*m));
	m->buf = (uint8_t *)(uintptr_t)buf;
	m->len = m->cap = len;
}

void stream__mem_init_fixed(struct stream_mem *m, void *buf, size_t cap)
{
	memset(m, 0, sizeof(*m));
	m->buf = buf;
	m->cap = cap;
}

void stream__mem_init_grow(struct stream_mem *m)
{
	memset(m, 0, sizeof(*m));
	m->grow = true;
	m->owned = true;
}

void stream__mem_free(struct stream_mem *m)
{
	if (m->owned)
		free(m->buf);
	memset(m, 0, sizeof(*m));
}
