/*
 * disk_work.h: the block-device check, run by the BSP between heartbeats and
 * memory slices, one request in flight at a time per disk, one disk_work per
 * virtio-blk device.  rw: write a generation-stamped pattern over the first
 * disk_mib MiB, read it back, optionally keep rewriting it; ro: reads work
 * and a write is refused.
 */
#ifndef GUEST_DISK_WORK_H
#define GUEST_DISK_WORK_H

#include <stdbool.h>
#include <stdint.h>

#include "cmdline.h"
#include "virtio_blk.h"

enum disk_phase {
	DISK_PH_IDLE,		/* nothing (left) to do during the run */
	DISK_PH_WRITE,		/* rw: first pass, generation 1 */
	DISK_PH_VERIFY,		/* rw: read the first pass back */
	DISK_PH_LOOP,		/* rw + disk_loop: verify then rewrite, generation after generation */
	DISK_PH_RO_READ,	/* ro: read the region */
	DISK_PH_RO_WRITE,	/* ro: one write, which must be refused */
};

#define MAX_DISKS	VIRTIO_BLK_MAX

struct disk_work {
	unsigned index;		/* 0 for the first device; its pattern carries the index */
	char tag[8];		/* output lines start with it: "DISK", "DISK1", ... */
	char ftag[8];		/* failure reasons: "disk", "disk1", ... */
	enum disk_mode mode;
	enum disk_phase phase;
	struct virtio_blk dev;
	uint8_t *buf;		/* one chunk, this disk's own: its request may be in flight */
	uint64_t mib, chunks;
	uint64_t chunk;		/* next chunk of the current pass */
	uint64_t gen;		/* generation of the current pass */
	uint64_t rewrites;	/* chunks rewritten by the loop */
	bool loop;
	bool loop_write;	/* loop: chunk verified, its rewrite is next */
	uint64_t cost;		/* disk_rate: TSC ticks per chunk written; 0: unlimited */
	uint64_t next_tsc;	/* earliest TSC for the next write */
	uint64_t burst;		/* most credit (in ticks) kept across a pause */
	const char *verdict;	/* "none", "ok", "ro-refused" once passed */
	char fail[200];
};

/* How many disks to drive: disks=N, else every virtio-blk found (at least 1, at most MAX_DISKS). */
unsigned disk_work__count(const struct params *p);
/*
 * Find and set up the index-th virtio-blk device (bus order), print its DISK
 * line; -1 with dw->fail set.  With disk=none: prints "DISK none" (index 0).
 */
int disk_work__start(struct disk_work *dw, const struct params *p, unsigned index);
/* Start or complete one request: 1 if it did so, 0 if idle or waiting, -1 on failure. */
int disk_work__step(struct disk_work *dw);
/* True while there is disk work to do or a request in flight. */
bool disk_work__active(const struct disk_work *dw);
/* Complete the initial passes if the run ended first, then re-verify (rw); 0 or -1. */
int disk_work__finish(struct disk_work *dw);

#endif
