/* Shared by snapshot/'s files; not a public API. */
#ifndef VMHOP_SNAPSHOT_INTERNAL_H
#define VMHOP_SNAPSHOT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"
#include "vmhop/section.h"
#include "vmhop/snapshot.h"
#include "vmhop/stream.h"

#define SNAPSHOT_CHAIN_SECTION "snapshot-chain"
#define SNAPSHOT_CHAIN_MAX 256		/* links a restore follows */
#define SNAPSHOT_DISK_IMAGE_SECTION "disk-image"
#define SNAPSHOT_DISK_DATA_SECTION "disk-data"

struct vm;

/* What the snapshot-chain section holds. A full checkpoint has an all-zero
 * base_uuid and seq 0. */
struct snapshot_chain_info {
	uint8_t uuid[16];
	uint8_t base_uuid[16];
	uint32_t seq;
	char base_name[256];		/* the base's file name, in the same directory */
};

int snapshot_chain__new(struct snapshot_chain_info *c, struct err *e);
bool snapshot_chain__is_full(const struct snapshot_chain_info *c);
int snapshot_chain__write(struct stream_writer *w, struct snapshot_chain_info *c, struct err *e);
/* Is this SECTION payload the chain section? */
int snapshot_chain__is_chain(const uint8_t *payload, size_t len, uint64_t base);
int snapshot_chain__decode(const uint8_t *payload, size_t len, uint64_t base,
			   struct snapshot_chain_info *c, struct err *e);
/* The chain section of a checkpoint file (header, config, chain). */
int snapshot_chain__read_file(const char *path, struct snapshot_chain_info *c, struct err *e);

/* The tracker (snapshot-chain.c). restart: the VM is paused at the instant
 * checkpoint c (at path) was taken; tracking starts over from there. */
int snapshot_track__restart(struct vm *vm, const struct snapshot_chain_info *c, const char *path,
			    struct err *e);
/* Before the pause of a VM not tracked yet: starts the tracker's dirty log
 * while the guest runs, so that restart at the instant keeps it running
 * instead of starting it. True when it did (drop it if the checkpoint
 * fails). */
bool snapshot_track__arm(struct vm *vm);
/* base must be the VM's last checkpoint: fills out's base fields. */
int snapshot_track__check_base(struct vm *vm, const char *base, struct snapshot_chain_info *out,
			       struct err *e);
/* Pages written since the last checkpoint (the tracker's bitmap, updated). */
uint64_t *snapshot_track__fetch(struct vm *vm, struct err *e);
/* Whether the last checkpoint held the disks (disks=include); and for an
 * incremental one, the 64 KiB blocks disk `index` got written since (ORed
 * into bits, blk-track.h), taken. */
void snapshot_track__set_disks(struct vm *vm, bool included);
int snapshot_track__disk_changes(struct vm *vm, unsigned index, uint64_t *bits, struct err *e);

/* disks=include (snapshot-disk.c): the writable disks' data extents, written
 * with the vCPUs stopped; restore creates the images before the VM opens
 * them. */
struct vm_config;
struct disk_restore;
int snapshot_disk__save(struct stream_writer *w, struct vm *vm, bool changes_only, struct err *e);
int snapshot_disk__is_disk(const uint8_t *payload, size_t len, uint64_t base);
struct disk_restore *snapshot_disk__restore_new(struct err *e);
int snapshot_disk__load(struct disk_restore *dr, const uint8_t *payload, size_t len,
			uint64_t base, const struct vm_config *cfg, struct err *e);
/* Puts the images on disk, before the VM opens them. */
int snapshot_disk__sync(struct disk_restore *dr, struct err *e);
/* Closes the images: kept (synced) when ok, removed otherwise. */
int snapshot_disk__restore_end(struct disk_restore *dr, bool ok, struct err *e);

/* The checking pass of a restore (restore-index.c). A checkpoint file
 * mapped read-only and read as a stream from memory: */
struct release_policy;
struct lazy_mem;

struct restore_file {
	int fd;
	uint8_t *map;
	size_t len;
	bool handed;			/* map and fd belong to the index now */
	struct stream_header h;
	struct stream_mem mem;
	struct stream_io io;
	struct stream_reader r;
};

/* Opens, maps and reads the header (release checked, END digest left to
 * `snapshot verify`). name: how messages call the file ("" when the caller
 * names it). Close it whatever this returns. */
int restore_file__open(struct restore_file *f, const char *path, const char *name,
		       const struct release_policy *pol, struct err *e);
void restore_file__close(struct restore_file *f);

/* A state section read now, loaded once the memory is in place. */
struct held_section {
	uint8_t *payload;
	uint32_t len;
	uint64_t base;			/* stream offset of the payload */
};

/* Where each page of the restored VM comes from (lm), built file by file,
 * oldest link first; the newest file's state sections held in order. */
struct restore_index {
	struct lazy_mem *lm;
	uint64_t npages;
	unsigned file, files;		/* file being indexed, files so far */
	struct stream_mem_dec dec;
	struct held_section *secs;
	size_t nr_secs, cap_secs;
};

int restore_index__init(struct restore_index *x, uint64_t npages, struct err *e);
void restore_index__free(struct restore_index *x);
/* Takes ownership of payload (freed by restore_index__free). */
int restore_index__hold(struct restore_index *x, uint8_t *payload, uint32_t len, uint64_t base,
			struct err *e);
/* Hands f's mapping and fd to the index (once): its pages are filled from
 * there. restore_index__file does it first thing. */
int restore_index__add(struct restore_index *x, struct restore_file *f, struct err *e);
/* Hands f's mapping to the index, then checks and indexes the rest of f
 * from its reader's position to its END and end of file: MEM records
 * (pages within npages), SECTION records held when hold_sections, others
 * skipped. */
int restore_index__file(struct restore_index *x, struct restore_file *f, bool hold_sections,
			struct err *e);
/* One MEM record of the file last added, its header already read. */
int restore_index__mem(struct restore_index *x, struct restore_file *f,
		       const struct stream_rec *rec, struct err *e);

/* The checkpoint file as a stream's output (snapshot-out.c): io writes
 * straight to fd, or a stage's sink does (ckpt_out__sink, with the stage
 * given to __open, flushed before the digest); either way a thread hashes
 * what was written, for the writer's digest (stream__writer_digest_from). */
struct file_hasher;
struct ckpt_out {
	int fd;
	uint64_t written;
	struct file_hasher *hasher;
	struct stream_stage *stage;
	struct stream_io io;
	struct stream_digest_source digest;
};
int ckpt_out__open(struct ckpt_out *o, int fd, struct stream_stage *stage, struct err *e);
int ckpt_out__sink(void *opaque, const void *buf, size_t len);
/* The checkpoint's stream writer over io (o's own, or a stage sinking into
 * it): this release's format, the tree digest taken by o's hasher. Free w
 * afterwards, also after a failure. */
int ckpt_out__writer(struct ckpt_out *o, struct stream_io *io, struct stream_writer *w,
		     struct err *e);
void ckpt_out__close(struct ckpt_out *o);

/* Called by the live write at the checkpoint's instant: every page and the
 * device state are in the file, the live dirty log is stopped, and the
 * vCPUs are still stopped if `paused` (since pause_t0). The callee resumes
 * them: the END record and its digest are finished while the guest runs. */
typedef void (*snapshot_instant_fn)(void *opaque, bool paused, uint64_t pause_t0);

/* The live write into an open file (snapshot-live.c). Calls at_instant once
 * the checkpoint's content is complete; when it fails before that, returns
 * with the VM paused (*paused set, *pause_t0 when it stopped) for the caller
 * to resume. */
int snapshot__write_live(struct vm *vm, int fd, bool compress, struct snapshot_chain_info *chain,
			 struct snapshot_stats *st, snapshot_instant_fn at_instant, void *opaque,
			 bool *paused, uint64_t *pause_t0, struct err *e);

#endif
