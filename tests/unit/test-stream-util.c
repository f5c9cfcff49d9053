#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test-stream-util.h"

static const struct section_field elem_fields[] = {
	SECTION_U16(struct demo_elem, a, 1),
	SECTION_U64(struct demo_elem, b, 1),
	SECTION_FIELDS_END
};

#define DEMO_FIELDS(V2)							\
	SECTION_U8(struct demo_state, u8, 1),				\
	SECTION_U16(struct demo_state, u16, 1),				\
	SECTION_U32(struct demo_state, u32, 1),				\
	SECTION_U64(struct demo_state, u64, 1),				\
	SECTION_I64(struct demo_state, i64, 1),				\
	SECTION_BOOL(struct demo_state, flag, 1),			\
	SECTION_BYTES(struct demo_state, bytes, 1),			\
	SECTION_U32_ARRAY(struct demo_state, arr, 1),			\
	SECTION_STRUCT_ARRAY(struct demo_state, elems, struct demo_elem, elem_fields, 1), \
	V2

static const struct section_field demo_fields_v2[] = {
	DEMO_FIELDS(SECTION_U64(struct demo_state, added_v2, 2)),
	SECTION_FIELDS_END
};

static const struct section_field demo_fields_v1[] = {
	DEMO_FIELDS(SECTION_FIELDS_END)
};

static const struct section_field extra_fields[] = {
	SECTION_U32(struct demo_state, sub_value, 1),
	SECTION_FIELDS_END
};

static const struct section_desc extra_desc = {
	.name = "extra", .version = 1, .min_version = 1, .fields = extra_fields,
};

static bool extra_needed(void *opaque)
{
	return ((struct demo_state *)opaque)->want_sub;
}

static const struct section_sub demo_subs[] = {
	{ .desc = &extra_desc, .needed = extra_needed },
	{ .desc = NULL }
};

static int demo_save(void *opaque, struct stream_buf *b, struct err *e)
{
	struct demo_state *s = opaque;
	stream_buf__put(b, s->custom, sizeof(s->custom));
	return 0;
}

static int demo_load(void *opaque, struct stream_cur *c, uint32_t version,
		     struct err *e)
{
	struct demo_state *s = opaque;
	stream_cur__get(c, s->custom, sizeof(s->custom));
	return 0;
}

static int demo_post_load(void *opaque, uint32_t version, struct err *e)
{
	((struct demo_state *)opaque)->post_loads++;
	return 0;
}

const struct section_desc demo_desc_v2 = {
	.name = "demo", .version = 2, .min_version = 1, .fields = demo_fields_v2,
	.save = demo_save, .load = demo_load, .post_load = demo_post_load,
	.subs = demo_subs,
};

const struct section_desc demo_desc_v1 = {
	.name = "demo", .version = 1, .min_version = 1, .fields = demo_fields_v1,
	.save = demo_save, .load = demo_load, .post_load = demo_post_load,
	.subs = demo_subs,
};

void demo_fill(struct demo_state *s, unsigned seed)
{
	memset(s, 0, sizeof(*s));
	s->u8 = (uint8_t)(0xa0 + seed);
	s->u16 = (uint16_t)(0xbeef + seed);
	s->u32 = 0xdeadbeef + seed;
	s->u64 = 0x0123456789abcdefULL + seed;
	s->i64 = -1234567890123LL - seed;
	s->flag = seed & 1;
	for (size_t i = 0; i < sizeof(s->bytes); i++)
		s->bytes[i] = (uint8_t)(i * 7 + seed);
	for (size_t i = 0; i < 4; i++)
		s->arr[i] = (uint32_t)(i * 0x01010101u + seed);
	for (size_t i = 0; i < 3; i++) {
		s->elems[i].a = (uint16_t)(i + 100 + seed);
		s->elems[i].b = 0xfeedfacecafef00dULL ^ (i + seed);
	}
	s->added_v2 = 0x2222222222222222ULL + seed;
	s->sub_value = 0x5ab5ab00u + seed;
	s->want_sub = true;
	memcpy(s->custom, "cust", 5);
	s->custom[4] = (uint8_t)seed;
}

uint8_t *test_ram(uint64_t npages, unsigned seed)
{
	uint8_t *ram = calloc(npages, STREAM_PAGE_SIZE);
	uint32_t x = seed * 2654435761u + 1;
	for (uint64_t p = 0; p < npages; p++) {
		uint8_t *pg = ram + p * STREAM_PAGE_SIZE;
		switch (p % 4) {
		case 0:		/* zero */
			break;
		case 1:		/* random: stays raw */
			for (size_t i = 0; i < STREAM_PAGE_SIZE; i++) {
				x = x * 1103515245u + 12345u;
				pg[i] = (uint8_t)(x >> 16);
			}
			break;
		case 2:		/* compressible */
			for (size_t i = 0; i < STREAM_PAGE_SIZE; i++)
				pg[i] = (uint8_t)((i / 64) + p);
			break;
		case 3:		/* one byte set */
			pg[p % STREAM_PAGE_SIZE] = 1;
			break;
		}
	}
	return ram;
}

void sample_stream(struct stream_mem *m, const struct sample_opts *o)
{
	struct stream_io io;
	stream__mem_init_grow(m);
	stream__io_mem(&io, m);
	struct stream_writer w;
	struct stream_writer_opts wo = {
		.format = o->format, .release_ordinal = 3, .release = "SP3",
		.features = o->digest ? STREAM_FEAT_DIGEST : 0, .index = o->index,
	};
	struct err e = { 0 };
	if (stream__writer_init(&w, &io, &wo))
		abort();
	stream__write_note(&w, "sample stream");

	struct section_registry reg;
	section__registry_init(&reg);
	struct demo_state d0, d1;
	demo_fill(&d0, 1);
	demo_fill(&d1, 2);
	d1.want_sub = false;
	if (section__register(&reg, &demo_desc_v2, 0, &d0, &e) ||
	    section__register(&reg, &demo_desc_v2, 1, &d1, &e) ||
	    section__save_all(&reg, &w, &e))
		abort();
	uint64_t np = o->npages ? o->npages : 9;
	uint8_t *ram = test_ram(np, 7);
	struct stream_mem_enc enc;
	struct stream_mem_enc_opts eo = { .compress = o->compress, .detect_zero = true, .max_run = 4 };
	if (stream__mem_enc_init(&enc, &eo, &e))
		abort();
	struct stream_ram sr = { .host = ram, .npages = np };
	if (stream__mem_write_range(&w, &enc, &sr, 0, np) || stream__finish(&w)) {
		fprintf(stderr, "%s\n", w.err.msg);
		abort();
	}
	stream__mem_enc_free(&enc);
	stream__writer_free(&w);
	section__registry_free(&reg);
	free(ram);
}

int walk_stream(const uint8_t *p, size_t len, const struct release_policy *pol,
		struct err *e)
{
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_read(&m, p, len);
	stream__io_mem(&io, &m);
	struct stream_reader r;
	struct stream_mem_dec dec;
	stream__reader_init(&r, &io);
	stream__mem_dec_init(&dec, e);
	int rc = stream__read_header(&r, NULL, pol);
	while (!rc) {
		struct stream_rec rec;
		rc = stream__next_record(&r, &rec);
		if (rc <= 0)
			break;
		rc = 0;
		if (rec.type == STREAM_REC_SECTION) {
			uint8_t *pl;
			rc = stream__read_payload(&r, STREAM_SECTION_MAX, &pl);
			if (!rc) {
				struct section_info info;
				rc = section__parse_info(pl, rec.len, rec.off + 8, &info, e);
				free(pl);
				if (rc)
					goto out;
			}
		} else if (rec.type == STREAM_REC_MEM) {
			rc = stream__mem_read(&r, &rec, &dec, NULL);
		} else if (rec.type == STREAM_REC_INDEX) {
			struct stream_index idx;
			rc = stream__index_read(&r, &rec, &idx);
			if (!rc)
				stream__index_free(&idx);
		} else {
			rc = stream__rec_skip(&r);
		}
	}
	if (!rc)
		rc = stream__expect_eof(&r);
	if (rc)
		err__set(e, r.err.code ? r.err.code : -rc, "%s", r.err.msg);
out:
	stream__mem_dec_free(&dec);
	stream__reader_free(&r);
	return rc;
}

static ssize_t short_read(void *opaque, void *buf, size_t len)
{
	struct short_io *s = opaque;
	size_t n = len < s->step ? len : s->step;
	if (n > s->len - s->pos)
		n = s->len - s->pos;
	memcpy(buf, s->p + s->pos, n);
	s->pos += n;
	return (ssize_t)n;
}

void short_io_init(struct stream_io *io, struct short_io *s, const void *p,
		   size_t len, size_t step)
{
	memset(io, 0, sizeof(*io));
	s->p = p;
	s->len = len;
	s->pos = 0;
	s->step = step;
	io->read = short_read;
	io->opaque = s;
}

long long err_offset(const char *msg)
{
	const char *p = strstr(msg, "offset ");
	if (!p)
		return -1;
	return strtoll(p + 7, NULL, 10);
}
