/* Disk copy during a live migration (vmhop-migrate-send(1) --copy-disk),
 * shared by the source's engine (disk-send.c, mig-source.c) and the
 * destination (disk-recv.c, mig-dest.c). Not a public API.
 *
 * The source sends each copied disk's allocated extents (or, moving back
 * incrementally, only the blocks written since the disk arrived) beside the
 * memory rounds as disk-data sections, then in every round the blocks the
 * guest wrote meanwhile (vmm/blk-track.c), and the last ones with the vCPUs
 * and devices stopped. The destination writes them into files it created
 * (and removes them if the migration fails before go), makes them durable
 * before `ready`, and compares digests when asked.
 *
 * Generations: every copy gets a random id. After the move the source
 * records it beside its old image (PATH.vmhop-gen: the id and the image's
 * size, inode and mtime as it left it); the destination's VM keeps the id
 * with the disk and tracks every write from arrival. Moving back with
 * --incremental-disks, the old host accepts only an image whose record
 * still matches, and gets only the blocks written since. */
#ifndef VMHOP_MIGRATE_DISK_COPY_H
#define VMHOP_MIGRATE_DISK_COPY_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "vmhop/blk-track.h"
#include "vmhop/err.h"
#include "vmhop/migrate.h"
#include "vmhop/stream.h"
#include "vmhop/vm-config.h"

struct vm;
struct virtio_blk;

#define DISK_GEN_SUFFIX ".vmhop-gen"

enum disk_copy_mode { DISK_SHARED, DISK_COPIED, DISK_INCREMENTAL };
const char *disk_copy__mode_name(enum disk_copy_mode m);

/* SHA-256 of the image's non-zero 64 KiB blocks, each preceded by its
 * offset (u64 little endian): equal contents give equal digests whatever
 * is allocated, and holes cost nothing to hash. */
int disk_copy__digest(int fd, uint64_t size, uint8_t out[32], struct err *e);
/* n bytes of zeros (a block the copy may leave a hole for). */
static inline bool disk_copy__all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}
void disk_copy__hex(const uint8_t *p, size_t n, char *out);

/* ---- source ---- */

/* A range of an image to copy (the bulk pass), at most DISK_CHUNK_MAX. */
#define DISK_CHUNK_MAX (1u << 20)
struct disk_chunk {
	uint64_t off;
	uint32_t len;
};

struct readahead;
int readahead__start(struct readahead **out, int fd, const struct disk_chunk *v, size_t n,
		     struct err *e);
/* The next chunk in order and its bytes (valid until the next call): 1, 0
 * at the end, or -errno when it could not be read. */
int readahead__next(struct readahead *ra, const uint8_t **buf, const struct disk_chunk **c);
void readahead__stop(struct readahead *ra);

struct disk_send_one {
	unsigned index;			/* in the VM's configuration */
	struct virtio_blk *blk;
	enum disk_copy_mode mode;
	int fd;				/* our own read descriptor */
	uint64_t size;
	struct blk_track track;		/* full copies: writes since the copy began */
	struct blk_track *src;		/* where new writes are taken from */
	uint64_t *pending;		/* blocks to send */
	uint64_t *taken;		/* incremental: taken from the arrival tracker */
	char gen[DISK_GEN_MAX];		/* the new copy's generation */
	bool bulk_done;
	uint64_t bulk_ns;		/* the bulk pass's duration */
};

struct disk_send {
	struct disk_send_one d[VM_MAX_DISKS];
	unsigned n;
	uint8_t *buf;			/* one aligned chunk */
	struct migrate_disk_stats *st;	/* the migration's, under *lock */
	pthread_mutex_t *lock;
};

/* Which disks to copy, from the parameters: checks ids and rules (a
 * read-only disk is never copied: both hosts only read it). */
int disk_send__select(struct disk_send *ds, struct vm *vm, const struct migrate_params *p,
		      struct err *e);
/* The hello's "disks" array (NULL when nothing is copied). */
struct json_object *disk_send__hello(const struct disk_send *ds, const struct vm *vm);
/* The destination's decisions from its hello: full copies it falls back to. */
int disk_send__apply_reply(struct disk_send *ds, struct json_object *reply, struct err *e);
/* Opens the images and starts watching writes: call before the bulk pass. */
int disk_send__start(struct disk_send *ds, struct vm *vm, struct err *e);
/* The bulk pass, chunk by chunk; `fault` runs after the first chunk. */
int disk_send__bulk(struct disk_send *ds, struct stream_writer *w,
		    int (*after_first)(void *opaque), void *opaque, struct err *e);
/* Takes the writes since the last call; returns the bytes now pending. */
uint64_t disk_send__collect(struct disk_send *ds);
uint64_t disk_send__pending_bytes(const struct disk_send *ds);
int disk_send__send_pending(struct disk_send *ds, struct stream_writer *w, struct err *e);
/* With the devices stopped: digests of the source's images into the stream. */
int disk_send__digests(struct disk_send *ds, struct stream_writer *w, struct err *e);
/* The end: trackers removed; on success the generation records written
 * beside the images, on failure an incremental copy's blocks given back. */
void disk_send__finish(struct disk_send *ds, bool completed);

/* ---- destination ---- */

struct disk_recv_one {
	unsigned index;
	char id[DISK_ID_MAX];
	enum disk_copy_mode mode;
	uint64_t size;
	char path[4096];		/* where the VM opens it */
	char final[4096];		/* a fallback copy is renamed here at go */
	int fd;
	bool created;			/* ours: removed if the migration fails */
	bool synced;
	uint64_t bytes;
	uint64_t flushed_at;		/* bytes when writeback was last started */
	char gen[DISK_GEN_MAX];
	bool have_src_digest;
	uint8_t src_digest[32], digest[32];
};

struct disk_recv {
	struct disk_recv_one d[VM_MAX_DISKS];
	unsigned n;
	bool verify;
	bool dirty;			/* written since the last sync */
};

/* From the source's hello: where each copied disk goes, whether an
 * existing image there may take an incremental copy; creates the files
 * (dry_run: checks only). Errors name the disk and the path. */
int disk_recv__plan(struct disk_recv *dr, struct json_object *hello, const struct migrate_recv_opts *o,
		    bool dry_run, struct err *e);
/* The destination hello's "disks" array. */
struct json_object *disk_recv__reply(const struct disk_recv *dr);
/* The VM opens the copies (and keeps their generation). */
int disk_recv__apply(const struct disk_recv *dr, struct vm_config *cfg, struct err *e);
/* A disk section record's payload. */
int disk_recv__section(struct disk_recv *dr, const uint8_t *payload, size_t len, uint64_t base,
		       struct err *e);
/* Makes everything written so far durable (between rounds, and at the end). */
int disk_recv__sync(struct disk_recv *dr, struct err *e);
/* At the end of the stream: durable, and digests compared when asked. */
int disk_recv__finish(struct disk_recv *dr, struct err *e);
/* The ready message's "disks" (digests). */
struct json_object *disk_recv__ready(const struct disk_recv *dr);
/* After go: fallback copies renamed into place. Failure before go: every
 * file we created removed. */
int disk_recv__commit(struct disk_recv *dr, struct err *e);
void disk_recv__abort(struct disk_recv *dr);

#endif
