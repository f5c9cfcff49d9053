/* Small helpers shared by every module. */
#ifndef VMHOP_UTIL_H
#define VMHOP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmhop/err.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#ifndef MIN	/* sys/param.h, pulled in by some headers, has the same ones */
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

/* "512M", "1G", "4096", "64k": bytes. Returns 0 or -EINVAL/-ERANGE. */
int util__parse_size(const char *s, uint64_t *out);
/* Decimal unsigned integer within [min, max]. */
int util__parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Full read/write loops that retry on EINTR and short transfers.
 * Return 0, -errno, or -EPIPE/-ENODATA on early EOF. */
int util__write_all(int fd, const void *buf, size_t len);
int util__read_all(int fd, void *buf, size_t len);
int util__pread_all(int fd, void *buf, size_t len, off_t off);
int util__pwrite_all(int fd, const void *buf, size_t len, off_t off);

uint64_t util__now_ns(void);
/* A whole file of at most max bytes into a malloc'ed buffer (one spare byte
 * at the end, so callers may NUL-terminate); a larger file is refused
 * before it is all read. Errors name the path. */
int util__read_file(const char *path, size_t max, char **out, size_t *len, struct err *e);	/* CLOCK_MONOTONIC */

#endif
