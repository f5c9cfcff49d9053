/* Helpers shared by the stream, section and release tests. */
#ifndef TEST_STREAM_UTIL_H
#define TEST_STREAM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmhop/release.h"
#include "vmhop/section.h"
#include "vmhop/stream.h"

/* A sample device state covering every field type. */
struct demo_elem {
	uint16_t a;
	uint64_t b;
};

struct demo_state {
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	bool flag;
	uint8_t bytes[13];
	uint32_t arr[4];
	struct demo_elem elems[3];
	uint64_t added_v2;	/* field since version 2 */
	uint32_t sub_value;	/* in subsection "extra" */
	bool want_sub;
	uint8_t custom[5];	/* custom save/load */
	int post_loads;
};

extern const struct section_desc demo_desc_v2;
extern const struct section_desc demo_desc_v1;
void demo_fill(struct demo_state *s, unsigned seed);

/* Guest RAM of `npages` with a mix of zero, random and compressible pages. */
uint8_t *test_ram(uint64_t npages, unsigned seed);

/* A stream with every record type written at `format` into m (growable). */
struct sample_opts {
	uint16_t format;
	bool digest;
	bool index;
	bool compress;
	uint64_t npages;
};
void sample_stream(struct stream_mem *m, const struct sample_opts *o);

/* Reads a whole stream (no registry: sections parsed, pages verified);
 * returns 0 or -errno with the message in e. */
int walk_stream(const uint8_t *p, size_t len, const struct release_policy *pol,
		struct err *e);

/* A channel over memory that returns at most `step` bytes per read. */
struct short_io {
	const uint8_t *p;
	size_t len, pos, step;
};
void short_io_init(struct stream_io *io, struct short_io *s, const void *p,
		   size_t len, size_t step);

/* Offset N from an error message "offset N: ..." (or "... offset N)"). */
long long err_offset(const char *msg);

#endif
