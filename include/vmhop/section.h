/* State sections: every stateful thing (vCPU, irqchip, PIT, clock, device,
 * VM config) registers one, and migration and snapshots walk the same
 * registry. A section is a description (name, version, the minimum version it
 * loads, a field list whose fields know the version they appeared in, and/or
 * custom save/load callbacks, optional subsections) plus an instance id and
 * the state it describes.
 *
 *   struct pit_state { uint32_t count[3]; uint8_t mode[3]; uint64_t last; };
 *   static const struct section_field pit_fields[] = {
 *       SECTION_U32_ARRAY(struct pit_state, count, 1),
 *       SECTION_BYTES(struct pit_state, mode, 1),
 *       SECTION_U64(struct pit_state, last, 2),		// added in v2
 *       SECTION_FIELDS_END
 *   };
 *   static const struct section_desc pit_desc = {
 *       .name = "pit", .version = 2, .min_version = 1, .fields = pit_fields,
 *   };
 *   section__register(&reg, &pit_desc, 0, &vm->pit, &err);
 *
 * A thing that cannot be migrated registers with section__register_unmigratable
 * and a reason; section__check_migratable() then fails naming it. */
#ifndef VMHOP_SECTION_H
#define VMHOP_SECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmhop/err.h"
#include "vmhop/stream.h"

#define SECTION_NAME_MAX	63	/* bytes, [A-Za-z0-9_.:/-] */
#define SECTION_MAX_SUBS	32

enum section_type {
	SECTION_T_END = 0,	/* terminates a field list */
	SECTION_T_U8,
	SECTION_T_U16,
	SECTION_T_U32,
	SECTION_T_U64,
	SECTION_T_I64,
	SECTION_T_BOOL,		/* one byte, 0 or 1 on the wire */
	SECTION_T_BYTES,	/* `size` bytes as they are */
	SECTION_T_STRUCT,	/* `count` elements of `size` bytes, each
				 * encoded with the `elem` field list */
};

struct section_field {
	const char *name;
	enum section_type type;
	uint32_t since;		/* section version that added the field */
	size_t offset;		/* offsetof(state, member) */
	size_t size;		/* BYTES: bytes; STRUCT: sizeof one element */
	size_t count;		/* elements (1 for a scalar) */
	size_t msize;		/* sizeof(member): checked at registration */
	const struct section_field *elem;	/* STRUCT: element fields */
};

#define SECTION_MSIZE_(st, m) sizeof(((st *)0)->m)
#define SECTION_ELEMS_(st, m) (sizeof(((st *)0)->m) / sizeof(((st *)0)->m[0]))
#define SECTION_FIELD_(st, m, t, sz, n, v, el)				\
	{ .name = #m, .type = (t), .since = (v), .offset = offsetof(st, m), \
	  .size = (sz), .count = (n), .msize = SECTION_MSIZE_(st, m), .elem = (el) }

#define SECTION_U8(st, m, v)   SECTION_FIELD_(st, m, SECTION_T_U8, 1, 1, v, NULL)
#define SECTION_U16(st, m, v)  SECTION_FIELD_(st, m, SECTION_T_U16, 2, 1, v, NULL)
#define SECTION_U32(st, m, v)  SECTION_FIELD_(st, m, SECTION_T_U32, 4, 1, v, NULL)
#define SECTION_U64(st, m, v)  SECTION_FIELD_(st, m, SECTION_T_U64, 8, 1, v, NULL)
#define SECTION_I64(st, m, v)  SECTION_FIELD_(st, m, SECTION_T_I64, 8, 1, v, NULL)
#define SECTION_BOOL(st, m, v) SECTION_FIELD_(st, m, SECTION_T_BOOL, 1, 1, v, NULL)
/* Fixed arrays of scalars. */
#define SECTION_U8_ARRAY(st, m, v)  SECTION_FIELD_(st, m, SECTION_T_U8, 1, SECTION_ELEMS_(st, m), v, NULL)
#define SECTION_U16_ARRAY(st, m, v) SECTION_FIELD_(st, m, SECTION_T_U16, 2, SECTION_ELEMS_(st, m), v, NULL)
#define SECTION_U32_ARRAY(st, m, v) SECTION_FIELD_(st, m, SECTION_T_U32, 4, SECTION_ELEMS_(st, m), v, NULL)
#define SECTION_U64_ARRAY(st, m, v) SECTION_FIELD_(st, m, SECTION_T_U64, 8, SECTION_ELEMS_(st, m), v, NULL)
/* A byte array member (uint8_t m[N] or any plain-bytes member). */
#define SECTION_BYTES(st, m, v) SECTION_FIELD_(st, m, SECTION_T_BYTES, SECTION_MSIZE_(st, m), 1, v, NULL)
/* A fixed array of structs: et m[N], each element described by `fields`. */
#define SECTION_STRUCT_ARRAY(st, m, et, fields, v) \
	SECTION_FIELD_(st, m, SECTION_T_STRUCT, sizeof(et), SECTION_ELEMS_(st, m), v, fields)
#define SECTION_FIELDS_END { .name = NULL, .type = SECTION_T_END }

struct section_desc;

struct section_sub {
	const struct section_desc *desc;
	/* Sent only when this returns true (NULL: always). */
	bool (*needed)(void *opaque);
	/* A reader that does not know the subsection may skip it; otherwise
	 * it is mandatory and an unknown one is refused. */
	bool skippable;
};

struct section_desc {
	const char *name;
	uint32_t version;		/* what this build saves */
	uint32_t min_version;		/* oldest version it loads */
	const struct section_field *fields;	/* NULL or SECTION_FIELDS_END-terminated */
	/* Custom state after the fields: written into b / read from c (c is
	 * bounded to exactly what save wrote). */
	int (*save)(void *opaque, struct stream_buf *b, struct err *e);
	int (*load)(void *opaque, struct stream_cur *c, uint32_t version,
		    struct err *e);
	int (*pre_save)(void *opaque, struct err *e);
	int (*post_load)(void *opaque, uint32_t version, struct err *e);
	const struct section_sub *subs;	/* NULL or ended by { .desc = NULL } */
};

struct section_entry {
	const struct section_desc *desc;	/* NULL: unmigratable */
	char name[SECTION_NAME_MAX + 1];
	uint32_t instance;
	void *opaque;
	char reason[160];			/* why unmigratable */
	bool loaded;
	uint32_t loaded_version;
};

/* The registry is a plain value: no global state. */
struct section_registry {
	struct section_entry *v;
	size_t n, cap;
};

void section__registry_init(struct section_registry *reg);
void section__registry_free(struct section_registry *reg);
/* Checks the description (name, version window, every field's since and
 * member size, subsections) and that (name, instance) is new. Sections are
 * saved in registration order. */
int section__register(struct section_registry *reg,
		      const struct section_desc *desc, uint32_t instance,
		      void *opaque, struct err *e);
int section__register_unmigratable(struct section_registry *reg,
				   const char *name, uint32_t instance,
				   const char *reason, struct err *e);
/* Fails naming every unmigratable registrant. */
int section__check_migratable(const struct section_registry *reg,
			      struct err *e);
struct section_entry *section__find(struct section_registry *reg,
				    const char *name, uint32_t instance);

/* Encoding one section's payload (the SECTION record body). */
int section__encode(const struct section_entry *s, struct stream_buf *b,
		    struct err *e);
/* Decoding one SECTION payload into the registered state: version window,
 * fields, custom data, subsections. base = stream offset of payload[0]. */
int section__decode(struct section_registry *reg, const uint8_t *payload,
		    size_t len, uint64_t base, struct err *e);

/* The section header as stored (for tools that have no registry). */
struct section_info {
	char name[SECTION_NAME_MAX + 1];
	uint32_t instance;
	uint32_t version;
	uint32_t fields_len, custom_len;
	uint8_t nsubs;
	char subs[SECTION_MAX_SUBS][SECTION_NAME_MAX + 1];
	uint32_t sub_versions[SECTION_MAX_SUBS];
};
/* Parses and checks the framing of a SECTION payload without a registry. */
int section__parse_info(const uint8_t *payload, size_t len, uint64_t base,
			struct section_info *info, struct err *e);

/* Writing all sections: check_migratable, then one SECTION record each. */
int section__save_all(const struct section_registry *reg,
		      struct stream_writer *w, struct err *e);
/* The same, leaving out the sections named skip (NULL: none); a migration
 * sends vm-config first and the rest at the end. */
int section__save_except(const struct section_registry *reg,
			 struct stream_writer *w, const char *skip, struct err *e);
/* One SECTION record: the section (name, instance 0). */
int section__save_one(struct section_registry *reg, struct stream_writer *w,
		      const char *name, struct err *e);
/* One SECTION record from a reader (header from stream__next_record). */
int section__load_record(struct section_registry *reg, struct stream_reader *r,
			 const struct stream_rec *rec, struct err *e);
/* After END: every registered section must have been loaded. */
int section__check_all_loaded(const struct section_registry *reg,
			      struct err *e);

/* Whole-stream drivers used by migration and snapshots.
 * save: header was written by stream__writer_init; writes every section,
 * then memory pages 0..ram->npages-1, then finishes the stream.
 * load: reads the header (release policy), every record to END, sections
 * into reg and pages into dst, then checks all sections arrived. */
int section__save_stream(const struct section_registry *reg,
			 struct stream_writer *w, struct stream_mem_enc *enc,
			 const struct stream_ram *ram, struct err *e);
int section__load_stream(struct section_registry *reg, struct stream_reader *r,
			 const struct release_policy *pol,
			 struct stream_mem_dec *dec,
			 const struct stream_mem_dst *dst, struct err *e);

#endif
