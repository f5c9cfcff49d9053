/* PATH.vmhop-changes: an arrived disk's change record across VM restarts
 * (include/vmhop/blk-changes.h). Layout, little endian:
 *   magic "VMHOPCHG" | u32 version (1) | u32 block size | u64 image size |
 *   u64 st_dev | u64 st_ino | i64 mtime (ns) | gen[32] (hex, NUL padded) |
 *   u64 blocks | u64 words[ceil(blocks / 64)] | u32 CRC32C of all before */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmhop/blk-changes.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"

#define MAGIC "VMHOPCHG"
#define VERSION 1
#define GEN_FIELD 32
#define HEAD_SIZE (8 + 4 + 4 + 8 + 8 + 8 + 8 + GEN_FIELD + 8)
/* A header claiming more blocks is not ours (its length would overflow):
 * 64 KiB blocks of a 64 TiB image. */
#define MAX_WORDS (1ULL << 24)

struct head {
	uint32_t version, block;
	uint64_t size, dev, ino, blocks;
	int64_t mtime_ns;
	char gen[GEN_FIELD + 1];
};

static void record_path(const char *path, char *out, size_t size)
{
	snprintf(out, size, "%s%s", path, BLK_CHANGES_SUFFIX);
}

static int64_t mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

static void encode_head(uint8_t *p, const struct head *h)
{
	memcpy(p, MAGIC, 8);
	stream__le32(p + 8, h->version);
	stream__le32(p + 12, h->block);
	stream__le64(p + 16, h->size);
	stream__le64(p + 24, h->dev);
	stream__le64(p + 32, h->ino);
	stream__le64(p + 40, (uint64_t)h->mtime_ns);
	memset(p + 48, 0, GEN_FIELD);
	memcpy(p + 48, h->gen, strnlen(h->gen, GEN_FIELD));
	stream__le64(p + 48 + GEN_FIELD, h->blocks);
}

/* Why a record does not describe this image, or NULL when it does. */
static const char *mismatch(const uint8_t *buf, size_t len, const struct stat *st,
			    const struct blk_track *t, struct head *h)
{
	if (len < HEAD_SIZE + 4 || memcmp(buf, MAGIC, 8))
		return "not a change record";
	h->version = stream__rd32(buf + 8);
	h->block = stream__rd32(buf + 12);
	h->size = stream__rd64(buf + 16);
	h->dev = stream__rd64(buf + 24);
	h->ino = stream__rd64(buf + 32);
	h->mtime_ns = (int64_t)stream__rd64(buf + 40);
	memcpy(h->gen, buf + 48, GEN_FIELD);
	h->gen[GEN_FIELD] = 0;
	h->blocks = stream__rd64(buf + 48 + GEN_FIELD);
	if (h->version != VERSION)
		return "a change record of another version";
	if (h->blocks > MAX_WORDS * 64 || len != HEAD_SIZE + (h->blocks + 63) / 64 * 8 + 4)
		return "a change record of the wrong length (truncated?)";
	if (crc32c__update(0, buf, len - 4) != stream__rd32(buf + len - 4))
		return "a change record with a bad checksum";
	if (h->block != BLK_TRACK_BLOCK || h->blocks != t->nblocks || !h->gen[0])
		return "a change record for another block size or disk size";
	if (!S_ISREG(st->st_mode))
		return "the image is not a regular file (its times do not show writes)";
	if (h->size != (uint64_t)st->st_size || h->dev != (uint64_t)st->st_dev ||
	    h->ino != (uint64_t)st->st_ino || h->mtime_ns != mtime_ns(st))
		return "the image was written or replaced since the record was saved";
	return NULL;
}

int blk_changes__take(const char *path, int image_fd, struct blk_track *t, char *gen,
		      size_t gen_size, struct err *why)
{
	char rec[4200];
	record_path(path, rec, sizeof(rec));
	struct stat st;
	if (fstat(image_fd, &st) < 0)
		return err__setsys(why, errno, "stat of %s", path);
	/* This disk's record is exactly this long: a longer file is not read
	 * whole, only found too long. */
	char *buf = NULL;
	size_t len = 0;
	int rc = util__read_file(rec, HEAD_SIZE + blk_track__words(t) * 8 + 4, &buf, &len, why);
	if (rc < 0 && rc != -EFBIG) {
		if (rc != -ENOENT)
			return rc;
		err__clear(why);
		return 0;
	}
	err__clear(why);
	struct head h;
	const char *bad = rc ? "a change record of the wrong length (truncated?)" :
			       mismatch((const uint8_t *)buf, len, &st, t, &h);
	if (!bad && strlen(h.gen) >= gen_size)
		bad = "a change record with an overlong generation";
	if (!bad) {
		uint64_t words = blk_track__words(t);
		uint64_t *bits = malloc(words ? words * 8 : 8);
		if (!bits) {
			free(buf);
			return err__set(why, ENOMEM, "out of memory");
		}
		for (uint64_t i = 0; i < words; i++)
			bits[i] = stream__rd64((const uint8_t *)buf + HEAD_SIZE + i * 8);
		blk_track__give_back(t, bits);
		free(bits);
		snprintf(gen, gen_size, "%s", h.gen);
	}
	free(buf);
	/* Taken or not, it must not outlive this open: the running VM's own
	 * tracker is the truth from now on. */
	if (unlink(rec) < 0)
		return err__setsys(why, errno, "removing %s", rec);
	if (bad) {
		err__set(why, ESTALE, "%s: %s", rec, bad);
		return 0;
	}
	return 1;
}

int blk_changes__save(const char *path, int image_fd, const char *gen, const struct blk_track *t,
		      struct err *e)
{
	struct stat st;
	if (fstat(image_fd, &st) < 0)
		return err__setsys(e, errno, "stat of %s", path);
	/* A block device's mtime does not move when it is written: nothing
	 * could tell a record that no longer holds. */
	if (!S_ISREG(st.st_mode))
		return err__set(e, ENOTSUP, "%s is not a regular file: no change record is kept for it",
				path);
	/* The times recorded are those after the last write is durable. */
	if (fdatasync(image_fd) < 0 || fstat(image_fd, &st) < 0)
		return err__setsys(e, errno, "syncing %s", path);
	if (strlen(gen) > GEN_FIELD)
		return err__set(e, EINVAL, "generation %s is too long", gen);
	struct head h = { .version = VERSION, .block = BLK_TRACK_BLOCK, .size = (uint64_t)st.st_size,
			  .dev = (uint64_t)st.st_dev, .ino = (uint64_t)st.st_ino,
			  .mtime_ns = mtime_ns(&st), .blocks = t->nblocks };
	snprintf(h.gen, sizeof(h.gen), "%s", gen);
	uint64_t words = blk_track__words(t);
	size_t len = HEAD_SIZE + words * 8 + 4;
	uint8_t *buf = malloc(len);
	if (!buf)
		return err__set(e, ENOMEM, "out of memory");
	encode_head(buf, &h);
	for (uint64_t i = 0; i < words; i++)
		stream__le64(buf + HEAD_SIZE + i * 8, atomic_load(&t->bits[i]));
	stream__le32(buf + len - 4, crc32c__update(0, buf, len - 4));

	char rec[4200], tmp[4220];
	record_path(path, rec, sizeof(rec));
	snprintf(tmp, sizeof(tmp), "%s.tmp", rec);
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		rc = err__setsys(e, errno, "creating %s", tmp);
	else {
		if ((rc = util__write_all(fd, buf, len)) < 0)
			rc = err__setsys(e, -rc, "writing %s", tmp);
		else if (fsync(fd) < 0)
			rc = err__setsys(e, errno, "writing %s", tmp);
		if (close(fd) < 0 && !rc)
			rc = err__setsys(e, errno, "writing %s", tmp);
		if (!rc && rename(tmp, rec) < 0)
			rc = err__setsys(e, errno, "renaming %s to %s", tmp, rec);
		if (rc)
			unlink(tmp);
	}
	free(buf);
	if (!rc) {
		/* The rename itself must survive a crash too. */
		char dir[4200];
		snprintf(dir, sizeof(dir), "%s", rec);
		int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) < 0)
			rc = err__setsys(e, errno, "syncing the directory of %s", rec);
		if (dfd >= 0)
			close(dfd);
	}
	return rc;
}
