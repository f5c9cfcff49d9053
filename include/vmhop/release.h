/* Release levels: which level this build is, which stream format versions
 * each level writes and reads, which source -> destination moves are
 * allowed. The data is compat-matrix/release-levels.conf, compiled into the
 * binary (and installed to $(pkgdatadir) for reading). VMHOP_RELEASE_LEVEL
 * overrides the build's level: a testing aid, so one build can act as an
 * SP3 sender and an SP2 receiver. */
#ifndef VMHOP_RELEASE_H
#define VMHOP_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmhop/err.h"

#define RELEASE_MAX_LEVELS	32
#define RELEASE_NAME_MAX	16	/* including the NUL */
#define RELEASE_ENV		"VMHOP_RELEASE_LEVEL"

struct release_level {
	char name[RELEASE_NAME_MAX];
	uint16_t ordinal;		/* increasing with newer levels */
	uint16_t write_format;		/* stream format version it writes */
	uint16_t read_min, read_max;	/* stream format versions it reads */
};

struct release_matrix {
	struct release_level levels[RELEASE_MAX_LEVELS];
	size_t n;
	uint32_t allow[RELEASE_MAX_LEVELS];	/* bit s of allow[d]: levels[s]
						 * may move to levels[d] */
	size_t build;				/* this build's level */
};

/* What a stream reader or writer needs: the matrix and the level acting. */
struct release_policy {
	const struct release_matrix *matrix;
	const struct release_level *self;
};

/* The embedded data file, NUL-terminated. */
const char *release__builtin_text(size_t *len);
/* Parses the line format described in compat-matrix/README.md and checks it:
 * ordinals increase, every level may move to itself, moves go to the same or
 * a newer level only, and every allowed destination reads what the source
 * writes. Errors name the line. */
int release__parse(struct release_matrix *m, const char *text, size_t len,
		   struct err *e);
int release__builtin(struct release_matrix *m, struct err *e);

const struct release_level *release__find(const struct release_matrix *m,
					  const char *name);
size_t release__index(const struct release_matrix *m,
		      const struct release_level *l);
bool release__allowed(const struct release_matrix *m,
		      const struct release_level *src,
		      const struct release_level *dst);
/* The level acting here: $VMHOP_RELEASE_LEVEL when set (it must name a
 * level in the matrix), else the build's. */
int release__self(const struct release_matrix *m,
		  const struct release_level **out, struct err *e);
/* Builtin matrix + self in one call (the matrix must outlive the policy). */
int release__policy(struct release_matrix *m, struct release_policy *pol,
		    struct err *e);
/* "SP1..SP2" (or "SP1, SP3" when not contiguous): the levels that may move
 * to dst. */
void release__accepts(const struct release_matrix *m,
		      const struct release_level *dst, char *buf, size_t size);
/* May a stream from level (src_name, src_ordinal) in format `format` be
 * loaded by pol->self? 0, or -EPROTO with a message such as
 * "refusing stream from release SP3: this host runs SP2 and accepts
 * SP1..SP2". */
int release__check_incoming(const struct release_policy *pol,
			    const char *src_name, unsigned src_ordinal,
			    unsigned format, struct err *e);

#endif
