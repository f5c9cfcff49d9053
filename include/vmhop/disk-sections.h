/* Disk contents in a stream: one disk-image section per disk (its index in
 * the VM's configuration, size and id), then disk-data sections of up to
 * DISK_SECTIONS_CHUNK bytes each, and for a verified migration one
 * disk-digest section per disk. Checkpoints (disks=include) and migrations
 * that copy disks write the same sections, so vmhop stream-info reads both. */
#ifndef VMHOP_DISK_SECTIONS_H
#define VMHOP_DISK_SECTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmhop/err.h"
#include "vmhop/stream.h"
#include "vmhop/vm-config.h"

#define DISK_IMAGE_SECTION	"disk-image"
#define DISK_DATA_SECTION	"disk-data"
#define DISK_DIGEST_SECTION	"disk-digest"
#define DISK_SECTIONS_CHUNK	(1u << 20)

struct disk_image_sec {
	uint32_t index;
	uint64_t size;
	uint8_t id[DISK_ID_MAX];
	/* Version 2: only the blocks changed since the base checkpoint follow
	 * (an incremental checkpoint); the image itself is an earlier link's. */
	uint8_t changes_only;
};

struct disk_digest_sec {
	uint32_t index;
	uint8_t sha256[32];
};

/* What a decoded disk section calls: image, data (bytes at off) or digest. */
struct disk_sections_sink {
	void *opaque;
	int (*image)(void *opaque, const struct disk_image_sec *im, struct err *e);
	int (*data)(void *opaque, uint32_t index, uint64_t off, const uint8_t *p, uint32_t len,
		    struct err *e);
	int (*digest)(void *opaque, const struct disk_digest_sec *d, struct err *e);
};

int disk_sections__write_image(struct stream_writer *w, const struct disk_image_sec *im,
			       struct err *e);
/* buf must stay as it is until this returns (stream__put_stable): a buffer
 * the image was read into, never memory a guest can write. */
int disk_sections__write_data(struct stream_writer *w, uint32_t index, uint64_t off,
			      const void *buf, uint32_t len, struct err *e);
int disk_sections__write_digest(struct stream_writer *w, const struct disk_digest_sec *d,
				struct err *e);
/* 1 when a section record's payload is one of the disk sections. */
bool disk_sections__is_disk(const uint8_t *payload, size_t len, uint64_t base);
/* Decodes one and hands it to the sink (a NULL callback refuses that kind). */
int disk_sections__decode(const uint8_t *payload, size_t len, uint64_t base,
			  const struct disk_sections_sink *sink, struct err *e);

#endif
