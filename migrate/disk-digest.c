/* The digest both sides of a verified disk copy compute (disk-copy.h). */
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/disk-copy.h"
#include "vmhop/util.h"

#define BLOCK BLK_TRACK_BLOCK

void disk_copy__hex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = 0;
}

const char *disk_copy__mode_name(enum disk_copy_mode m)
{
	return m == DISK_COPIED ? "copied" : m == DISK_INCREMENTAL ? "incremental" : "shared";
}

int disk_copy__digest(int fd, uint64_t size, uint8_t out[32], struct err *e)
{
	uint8_t *buf = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || posix_memalign((void **)&buf, 4096, BLOCK)) {
		EVP_MD_CTX_free(ctx);
		return err__set(e, ENOMEM, "out of memory");
	}
	int rc = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 :
		 err__set(e, EIO, "SHA-256 is not available");
	uint64_t off = 0;
	while (!rc && off < size) {
		off_t data = lseek(fd, (off_t)off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0 && errno == EINVAL)	/* a block device: no holes to skip */
			data = (off_t)off;
		if (data < 0) {
			rc = err__setsys(e, errno, "finding the data of a disk image");
			break;
		}
		uint64_t b = (uint64_t)data & ~(BLOCK - 1);
		uint64_t n = MIN(BLOCK, size - b);
		ssize_t got = pread(fd, buf, ALIGN_UP(n, 4096), (off_t)b);
		if (got < 0 || (uint64_t)got < n) {
			rc = err__setsys(e, got < 0 ? errno : EIO, "reading a disk image at %llu",
					 (unsigned long long)b);
			break;
		}
		if (!disk_copy__all_zero(buf, n)) {
			uint8_t le[8];
			for (int i = 0; i < 8; i++)
				le[i] = (uint8_t)(b >> (8 * i));
			if (EVP_DigestUpdate(ctx, le, 8) != 1 || EVP_DigestUpdate(ctx, buf, n) != 1)
				rc = err__set(e, EIO, "SHA-256 failed");
		}
		off = b + BLOCK;
	}
	unsigned len = 0;
	if (!rc && EVP_DigestFinal_ex(ctx, out, &len) != 1)
		rc = err__set(e, EIO, "SHA-256 failed");
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rc;
}
