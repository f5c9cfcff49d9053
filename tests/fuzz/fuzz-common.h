/* Shared by the fuzz targets and the corpus generator. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "vmhop/section.h"
#include "vmhop/stream.h"

struct fz_elem {
	uint16_t a;
	uint64_t b;
};

struct fz_state {
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	bool flag;
	uint8_t bytes[11];
	uint32_t arr[3];
	struct fz_elem elems[2];
	uint64_t v2;
	uint32_t sub;
	bool want_sub;
	uint8_t custom[16];
	uint8_t custom_len;
};

/* "fz" v2 (min 1): every field type, a subsection, custom data. */
extern const struct section_desc fz_desc;
void fz_fill(struct fz_state *s, unsigned seed);
/* A registry with fz instances 0 and 1 over st[0], st[1]. */
void fz_registry(struct section_registry *reg, struct fz_state st[2]);

/* A stream of header + records with valid checksums: each record is
 * (type, flags, payload); an END record is appended. */
size_t fz_frame(uint8_t *out, size_t cap, uint16_t format, uint16_t type,
		const uint8_t *payload, size_t len);
/* Recomputes the header CRC and every record CRC it can find in place. */
void fz_fix_crcs(uint8_t *p, size_t len);

#endif
