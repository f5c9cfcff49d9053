#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "vmhop/util.h"

int util__parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int util__parse_size(const char *s, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: return -EINVAL;
	}
	/* Accept an optional "iB"/"B" so "512MiB" and "1GB" read naturally. */
	if (shift && (end[0] == 'i' || end[0] == 'I') && (end[1] == 'B' || end[1] == 'b'))
		end += 2;
	else if (shift && (end[0] == 'B' || end[0] == 'b'))
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

/* One loop for the four helpers: off < 0 uses the fd's own position. A
 * zero-byte transfer before len is done reports eof_err. */
static int transfer_all(int fd, void *buf, size_t len, off_t off, bool out, int eof_err)
{
	char *p = buf;
	while (len) {
		ssize_t n;
		if (out)
			n = off < 0 ? write(fd, p, len) : pwrite(fd, p, len, off);
		else
			n = off < 0 ? read(fd, p, len) : pread(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return eof_err;
		p += n;
		if (off >= 0)
			off += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The write paths never store through buf: the casts only share the loop. */
int util__write_all(int fd, const void *buf, size_t len)
{
	return transfer_all(fd, (void *)buf, len, -1, true, -EPIPE);
}

int util__read_all(int fd, void *buf, size_t len)
{
	return transfer_all(fd, buf, len, -1, false, -ENODATA);
}

int util__pread_all(int fd, void *buf, size_t len, off_t off)
{
	if (off < 0)
		return -EINVAL;	/* what pread itself answers */
	return transfer_all(fd, buf, len, off, false, -ENODATA);
}

int util__pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	if (off < 0)
		return -EINVAL;
	return transfer_all(fd, (void *)buf, len, off, true, -EIO);
}

uint64_t util__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int util__read_file(const char *path, size_t max, char **out, size_t *len, struct err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err__setsys(e, errno, "%s", path);
	char *buf = malloc(max + 1);
	size_t off = 0;
	int r = buf ? 0 : err__set(e, ENOMEM, "out of memory");
	while (!r) {
		ssize_t n = read(fd, buf + off, max + 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = err__setsys(e, errno, "reading %s", path);
		else if (n == 0)
			break;
		else if ((off += (size_t)n) > max)
			r = err__set(e, EFBIG, "%s: larger than %zu bytes", path, max);
	}
	if (close(fd) < 0 && !r)
		r = err__setsys(e, errno, "closing %s", path);
	if (r) {
		free(buf);
		return r;
	}
	*out = buf;
	*len = off;
	return 0;
}
