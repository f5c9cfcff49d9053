/* State sections: every field type, fields added in later versions, version
 * windows, subsections, custom data, unmigratable things, registration
 * checks, whole-stream save and load, and the disk-data section written
 * without the generic encoder. */
#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "test-stream-util.h"
#include "vmhop/disk-sections.h"

/* Writes the registry's sections (and nothing else) into m. */
static void save(const struct section_registry *reg, struct stream_mem *m)
{
	struct stream_io io;
	stream__mem_init_grow(m);
	stream__io_mem(&io, m);
	struct stream_writer w;
	struct stream_writer_opts o = { .release = "SP3", .release_ordinal = 3 };
	ck_assert_int_eq(stream__writer_init(&w, &io, &o), 0);
	struct err e = { 0 };
	ck_assert_msg(section__save_stream(reg, &w, NULL, NULL, &e) == 0, "%s", e.msg);
	stream__writer_free(&w);
}

static int load(struct section_registry *reg, const struct stream_mem *m, struct err *e)
{
	struct stream_mem in;
	struct stream_io io;
	stream__mem_init_read(&in, m->buf, m->len);
	stream__io_mem(&io, &in);
	struct stream_reader r;
	stream__reader_init(&r, &io);
	struct stream_mem_dec dec;
	stream__mem_dec_init(&dec, e);
	int rc = section__load_stream(reg, &r, NULL, &dec, NULL, e);
	stream__mem_dec_free(&dec);
	stream__reader_free(&r);
	return rc;
}

static void assert_same(const struct demo_state *a, const struct demo_state *b, bool v2)
{
	ck_assert_uint_eq(a->u8, b->u8);
	ck_assert_uint_eq(a->u16, b->u16);
	ck_assert_uint_eq(a->u32, b->u32);
	ck_assert_uint_eq(a->u64, b->u64);
	ck_assert_int_eq(a->i64, b->i64);
	ck_assert_int_eq(a->flag, b->flag);
	ck_assert(!memcmp(a->bytes, b->bytes, sizeof(a->bytes)));
	ck_assert(!memcmp(a->arr, b->arr, sizeof(a->arr)));
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(a->elems[i].a, b->elems[i].a);
		ck_assert_uint_eq(a->elems[i].b, b->elems[i].b);
	}
	ck_assert(!memcmp(a->custom, b->custom, sizeof(a->custom)));
	if (v2)
		ck_assert_uint_eq(a->added_v2, b->added_v2);
}

START_TEST(every_field_type)
{
	struct section_registry src, dst;
	struct demo_state a, b;
	struct err e = { 0 };
	demo_fill(&a, 5);
	memset(&b, 0, sizeof(b));
	section__registry_init(&src);
	section__registry_init(&dst);
	ck_assert_int_eq(section__register(&src, &demo_desc_v2, 3, &a, &e), 0);
	ck_assert_int_eq(section__register(&dst, &demo_desc_v2, 3, &b, &e), 0);
	struct stream_mem m;
	save(&src, &m);
	ck_assert_msg(load(&dst, &m, &e) == 0, "%s", e.msg);
	assert_same(&a, &b, true);
	ck_assert_uint_eq(b.sub_value, a.sub_value);
	ck_assert_int_eq(b.post_loads, 1);
	ck_assert(dst.v[0].loaded);
	ck_assert_uint_eq(dst.v[0].loaded_version, 2);
	/* decode then encode gives identical bytes */
	struct stream_mem m2;
	b.want_sub = true;
	section__registry_free(&src);
	section__registry_init(&src);
	ck_assert_int_eq(section__register(&src, &demo_desc_v2, 3, &b, &e), 0);
	save(&src, &m2);
	ck_assert_uint_eq(m.len, m2.len);
	ck_assert(!memcmp(m.buf, m2.buf, m.len));
	stream__mem_free(&m);
	stream__mem_free(&m2);
	section__registry_free(&src);
	section__registry_free(&dst);
}
END_TEST

START_TEST(negative_and_extreme_values)
{
	struct section_registry src, dst;
	struct demo_state a, b;
	struct err e = { 0 };
	demo_fill(&a, 0);
	a.i64 = INT64_MIN;
	a.u64 = UINT64_MAX;
	a.u8 = 0xff;
	a.u16 = 0xffff;
	a.flag = true;
	memset(&b, 0x77, sizeof(b));
	b.post_loads = 0;
	section__registry_init(&src);
	section__registry_init(&dst);
	section__register(&src, &demo_desc_v2, 0, &a, &e);
	section__register(&dst, &demo_desc_v2, 0, &b, &e);
	struct stream_mem m;
	save(&src, &m);
	ck_assert_msg(load(&dst, &m, &e) == 0, "%s", e.msg);
	assert_same(&a, &b, true);
	stream__mem_free(&m);
	section__registry_free(&src);
	section__registry_free(&dst);
}
END_TEST

START_TEST(version_windows)
{
	struct err e = { 0 };
	struct demo_state a, b;
	struct stream_mem m;
	/* v1 stream into a v2 reader (min 1): loads; the v2 field is untouched */
	struct section_registry src, dst;
	section__registry_init(&src);
	section__registry_init(&dst);
	demo_fill(&a, 1);
	memset(&b, 0, sizeof(b));
	b.added_v2 = 0xabcdef;
	section__register(&src, &demo_desc_v1, 0, &a, &e);
	section__register(&dst, &demo_desc_v2, 0, &b, &e);
	save(&src, &m);
	ck_assert_msg(load(&dst, &m, &e) == 0, "%s", e.msg);
	assert_same(&a, &b, false);
	ck_assert_uint_eq(b.added_v2, 0xabcdef);
	ck_assert_uint_eq(dst.v[0].loaded_version, 1);
	stream__mem_free(&m);
	section__registry_free(&src);
	section__registry_free(&dst);

	/* v2 stream into a v1 reader: above current, refused */
	section__registry_init(&src);
	section__registry_init(&dst);
	section__register(&src, &demo_desc_v2, 0, &a, &e);
	section__register(&dst, &demo_desc_v1, 0, &b, &e);
	save(&src, &m);
	ck_assert_int_lt(load(&dst, &m, &e), 0);
	ck_assert_msg(strstr(e.msg, "section 'demo' instance 0: the stream has version 2, this host loads versions 1..1"),
		      "%s", e.msg);
	ck_assert_int_ge(err_offset(e.msg), 0);
	stream__mem_free(&m);
	section__registry_free(&src);
	section__registry_free(&dst);

	/* v1 stream into a reader whose minimum is 2: below min, refused */
	static const struct section_desc v3min2 = {
		.name = "demo", .version = 3, .min_version = 2,
	};
	section__registry_init(&src);
	section__registry_init(&dst);
	section__register(&src, &demo_desc_v1, 0, &a, &e);
	section__register(&dst, &v3min2, 0, &b, &e);
	save(&src, &m);
	err__clear(&e);
	ck_assert_int_lt(load(&dst, &m, &e), 0);
	ck_assert_msg(strstr(e.msg, "the stream has version 1, this host loads versions 2..3"), "%s", e.msg);
	stream__mem_free(&m);
	section__registry_free(&src);
	section__registry_free(&dst);
}
END_TEST

/* Subsection variants. */
struct sub_state {
	uint32_t base;
	uint32_t x, y;
	bool send_x, send_y;
};

static const struct section_field base_fields[] = {
	SECTION_U32(struct sub_state, base, 1), SECTION_FIELDS_END
};
static const struct section_field x_fields[] = {
	SECTION_U32(struct sub_state, x, 1), SECTION_FIELDS_END
};
static const struct section_field y_fields[] = {
	SECTION_U32(struct sub_state, y, 1), SECTION_FIELDS_END
};
static const struct section_desc x_desc = { .name = "x", .version = 1, .min_version = 1, .fields = x_fields };
static const struct section_desc y_desc = { .name = "y", .version = 1, .min_version = 1, .fields = y_fields };
static const struct section_desc y2_desc = { .name = "y", .version = 2, .min_version = 2, .fields = y_fields };

static bool need_x(void *o) { return ((struct sub_state *)o)->send_x; }
static bool need_y(void *o) { return ((struct sub_state *)o)->send_y; }

static const struct section_sub subs_xy[] = {
	{ .desc = &x_desc, .needed = need_x },
	{ .desc = &y_desc, .needed = need_y },
	{ .desc = NULL }
};
static const struct section_sub subs_x_yskip[] = {
	{ .desc = &x_desc, .needed = need_x },
	{ .desc = &y_desc, .needed = need_y, .skippable = true },
	{ .desc = NULL }
};
static const struct section_sub subs_x[] = {
	{ .desc = &x_desc, .needed = need_x },
	{ .desc = NULL }
};
static const struct section_sub subs_xy2[] = {
	{ .desc = &x_desc, .needed = need_x },
	{ .desc = &y2_desc, .needed = need_y },
	{ .desc = NULL }
};
static const struct section_desc dev_xy = { .name = "dev", .version = 1, .min_version = 1, .fields = base_fields, .subs = subs_xy };
static const struct section_desc dev_x_yskip = { .name = "dev", .version = 1, .min_version = 1, .fields = base_fields, .subs = subs_x_yskip };
static const struct section_desc dev_x = { .name = "dev", .version = 1, .min_version = 1, .fields = base_fields, .subs = subs_x };
static const struct section_desc dev_xy2 = { .name = "dev", .version = 1, .min_version = 1, .fields = base_fields, .subs = subs_xy2 };

static int sub_case(const struct section_desc *sd, const struct section_desc *dd,
		    struct sub_state *a, struct sub_state *b, struct err *e)
{
	struct section_registry src, dst;
	struct stream_mem m;
	section__registry_init(&src);
	section__registry_init(&dst);
	ck_assert_int_eq(section__register(&src, sd, 0, a, e), 0);
	ck_assert_int_eq(section__register(&dst, dd, 0, b, e), 0);
	save(&src, &m);
	err__clear(e);
	int rc = load(&dst, &m, e);
	stream__mem_free(&m);
	section__registry_free(&src);
	section__registry_free(&dst);
	return rc;
}

START_TEST(subsections)
{
	struct err e = { 0 };
	struct sub_state a = { .base = 1, .x = 2, .y = 3, .send_x = true, .send_y = true }, b;
	/* both sent, both loaded */
	memset(&b, 0, sizeof(b));
	ck_assert_int_eq(sub_case(&dev_xy, &dev_xy, &a, &b, &e), 0);
	ck_assert_uint_eq(b.x, 2);
	ck_assert_uint_eq(b.y, 3);
	/* an optional subsection not needed: missing, tolerated */
	a.send_x = false;
	memset(&b, 0, sizeof(b));
	ck_assert_int_eq(sub_case(&dev_xy, &dev_xy, &a, &b, &e), 0);
	ck_assert_uint_eq(b.x, 0);
	ck_assert_uint_eq(b.y, 3);
	/* unknown mandatory subsection: refused */
	a.send_x = true;
	ck_assert_int_lt(sub_case(&dev_xy, &dev_x, &a, &b, &e), 0);
	ck_assert_msg(strstr(e.msg, "unknown mandatory subsection 'y'"), "%s", e.msg);
	/* unknown skippable subsection: skipped */
	memset(&b, 0, sizeof(b));
	ck_assert_msg(sub_case(&dev_x_yskip, &dev_x, &a, &b, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b.x, 2);
	ck_assert_uint_eq(b.base, 1);
	/* subsection version outside the window */
	ck_assert_int_lt(sub_case(&dev_xy, &dev_xy2, &a, &b, &e), 0);
	ck_assert_msg(strstr(e.msg, "subsection 'y' instance 0: the stream has version 1, this host loads versions 2..2"),
		      "%s", e.msg);
}
END_TEST

START_TEST(unmigratable)
{
	struct section_registry reg;
	struct err e = { 0 };
	struct demo_state a;
	demo_fill(&a, 0);
	section__registry_init(&reg);
	ck_assert_int_eq(section__register(&reg, &demo_desc_v2, 0, &a, &e), 0);
	ck_assert_int_eq(section__check_migratable(&reg, &e), 0);
	ck_assert_int_eq(section__register_unmigratable(&reg, "vfio-pci", 2, "device passthrough", &e), 0);
	ck_assert_int_eq(section__register_unmigratable(&reg, "gpu", 0, NULL, &e), 0);
	ck_assert_int_eq(section__check_migratable(&reg, &e), -ENOTSUP);
	ck_assert_msg(strstr(e.msg, "'vfio-pci' instance 2 (device passthrough)") &&
		      strstr(e.msg, "'gpu' instance 0 (no state description)"), "%s", e.msg);
	/* saving refuses too, before writing a section */
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_grow(&m);
	stream__io_mem(&io, &m);
	struct stream_writer w;
	struct stream_writer_opts o = { .release = "SP3", .release_ordinal = 3 };
	stream__writer_init(&w, &io, &o);
	err__clear(&e);
	ck_assert_int_lt(section__save_all(&reg, &w, &e), 0);
	ck_assert_uint_eq(w.off, STREAM_HEADER_SIZE);
	stream__writer_free(&w);
	stream__mem_free(&m);
	section__registry_free(&reg);
}
END_TEST

struct bad_state {
	uint32_t a;
	uint64_t b;
};

START_TEST(registration_checks)
{
	struct section_registry reg;
	struct err e = { 0 };
	struct bad_state s;
	section__registry_init(&reg);
	/* a u32 field over a u64 member */
	static const struct section_field wrong_size[] = {
		SECTION_FIELD_(struct bad_state, b, SECTION_T_U32, 4, 1, 1, NULL), SECTION_FIELDS_END
	};
	static const struct section_desc d1 = { .name = "bad", .version = 1, .min_version = 1, .fields = wrong_size };
	ck_assert_int_lt(section__register(&reg, &d1, 0, &s, &e), 0);
	ck_assert_msg(strstr(e.msg, "field 'b': member is 8 bytes"), "%s", e.msg);
	/* a field newer than the section */
	static const struct section_field too_new[] = {
		SECTION_U32(struct bad_state, a, 3), SECTION_FIELDS_END
	};
	static const struct section_desc d2 = { .name = "bad", .version = 2, .min_version = 1, .fields = too_new };
	err__clear(&e);
	ck_assert_int_lt(section__register(&reg, &d2, 0, &s, &e), 0);
	ck_assert_msg(strstr(e.msg, "since 3 outside 1..2"), "%s", e.msg);
	/* min above version, bad name, duplicate */
	static const struct section_desc d3 = { .name = "bad", .version = 1, .min_version = 2 };
	err__clear(&e);
	ck_assert_int_lt(section__register(&reg, &d3, 0, &s, &e), 0);
	static const struct section_desc d4 = { .name = "bad name", .version = 1, .min_version = 1 };
	err__clear(&e);
	ck_assert_int_lt(section__register(&reg, &d4, 0, &s, &e), 0);
	static const struct section_desc ok = { .name = "ok", .version = 1, .min_version = 1 };
	ck_assert_int_eq(section__register(&reg, &ok, 0, &s, &e), 0);
	err__clear(&e);
	ck_assert_int_eq(section__register(&reg, &ok, 0, &s, &e), -EEXIST);
	ck_assert_int_eq(section__register(&reg, &ok, 1, &s, &e), 0);
	ck_assert_ptr_nonnull(section__find(&reg, "ok", 1));
	ck_assert_ptr_null(section__find(&reg, "ok", 2));
	section__registry_free(&reg);
}
END_TEST

START_TEST(missing_and_unknown_sections)
{
	struct err e = { 0 };
	struct demo_state a, b, c;
	demo_fill(&a, 1);
	struct section_registry src, dst;
	section__registry_init(&src);
	section__registry_init(&dst);
	section__register(&src, &demo_desc_v2, 0, &a, &e);
	section__register(&dst, &demo_desc_v2, 0, &b, &e);
	section__register(&dst, &demo_desc_v2, 1, &c, &e);
	struct stream_mem m;
	save(&src, &m);
	ck_assert_int_lt(load(&dst, &m, &e), 0);
	ck_assert_msg(strstr(e.msg, "no state for section 'demo' instance 1"), "%s", e.msg);
	stream__mem_free(&m);
	/* the other way: a section the destination does not know */
	section__registry_free(&src);
	section__registry_init(&src);
	section__register(&src, &demo_desc_v2, 0, &a, &e);
	section__register(&src, &demo_desc_v2, 7, &a, &e);
	save(&src, &m);
	section__registry_free(&dst);
	section__registry_init(&dst);
	section__register(&dst, &demo_desc_v2, 0, &b, &e);
	err__clear(&e);
	ck_assert_int_lt(load(&dst, &m, &e), 0);
	ck_assert_msg(strstr(e.msg, "section 'demo' instance 7 is not known to this host"), "%s", e.msg);
	ck_assert_int_ge(err_offset(e.msg), STREAM_HEADER_SIZE);
	stream__mem_free(&m);
	section__registry_free(&src);
	section__registry_free(&dst);
}
END_TEST

START_TEST(parse_info_without_registry)
{
	struct err e = { 0 };
	struct demo_state a;
	demo_fill(&a, 1);
	struct section_registry src;
	section__registry_init(&src);
	section__register(&src, &demo_desc_v2, 4, &a, &e);
	struct stream_buf b;
	stream_buf__init(&b);
	ck_assert_int_eq(section__encode(&src.v[0], &b, &e), 0);
	struct section_info info;
	ck_assert_int_eq(section__parse_info(b.data, b.len, 100, &info, &e), 0);
	ck_assert_str_eq(info.name, "demo");
	ck_assert_uint_eq(info.instance, 4);
	ck_assert_uint_eq(info.version, 2);
	ck_assert_uint_eq(info.nsubs, 1);
	ck_assert_str_eq(info.subs[0], "extra");
	ck_assert_uint_eq(info.custom_len, 5);
	/* every truncation of the payload is an error with an offset */
	for (size_t l = 0; l < b.len; l++) {
		err__clear(&e);
		ck_assert_int_lt(section__parse_info(b.data, l, 100, &info, &e), 0);
		ck_assert_int_ge(err_offset(e.msg), 100);
		struct section_registry dst;
		struct demo_state d;
		section__registry_init(&dst);
		section__register(&dst, &demo_desc_v2, 4, &d, &e);
		err__clear(&e);
		ck_assert_int_lt(section__decode(&dst, b.data, l, 100, &e), 0);
		ck_assert_msg(err_offset(e.msg) >= 100, "%s", e.msg);
		section__registry_free(&dst);
	}
	stream_buf__free(&b);
	section__registry_free(&src);
}
END_TEST

START_TEST(whole_stream_with_memory)
{
	struct err e = { 0 };
	struct demo_state a, b;
	demo_fill(&a, 9);
	memset(&b, 0, sizeof(b));
	struct section_registry src, dst;
	section__registry_init(&src);
	section__registry_init(&dst);
	section__register(&src, &demo_desc_v2, 0, &a, &e);
	section__register(&dst, &demo_desc_v2, 0, &b, &e);
	const uint64_t np = 33;
	uint8_t *ram = test_ram(np, 2), *out = calloc(np, STREAM_PAGE_SIZE);
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_grow(&m);
	stream__io_mem(&io, &m);
	struct stream_writer w;
	struct stream_writer_opts o = { .release = "SP3", .release_ordinal = 3,
					.features = STREAM_FEAT_DIGEST, .index = true };
	stream__writer_init(&w, &io, &o);
	struct stream_mem_enc enc;
	struct stream_mem_enc_opts eo = { .compress = true, .detect_zero = true, .max_run = 8 };
	stream__mem_enc_init(&enc, &eo, &e);
	struct stream_ram sr = { .host = ram, .npages = np };
	ck_assert_msg(section__save_stream(&src, &w, &enc, &sr, &e) == 0, "%s", e.msg);
	struct stream_mem in;
	stream__mem_init_read(&in, m.buf, m.len);
	stream__io_mem(&io, &in);
	struct stream_reader r;
	stream__reader_init(&r, &io);
	struct stream_mem_dec dec;
	stream__mem_dec_init(&dec, &e);
	uint64_t written[1] = { 0 };
	struct stream_mem_dst d = { .host = out, .npages = np, .written = written, .fresh = true };
	ck_assert_msg(section__load_stream(&dst, &r, NULL, &dec, &d, &e) == 0, "%s", e.msg);
	ck_assert(!memcmp(ram, out, np * STREAM_PAGE_SIZE));
	assert_same(&a, &b, true);
	ck_assert_int_eq(stream__expect_eof(&r), 0);
	stream__mem_dec_free(&dec);
	stream__reader_free(&r);
	stream__mem_enc_free(&enc);
	stream__writer_free(&w);
	stream__mem_free(&m);
	free(ram);
	free(out);
	section__registry_free(&src);
	section__registry_free(&dst);
}
END_TEST

/* disk-data as the generic encoder lays it out: the reference that
 * disk_sections__write_data, which writes it by hand, must match. */
struct ref_data {
	uint32_t index;
	uint64_t offset;
	uint32_t len;
	const uint8_t *data;
};

static const struct section_field ref_data_fields[] = {
	SECTION_U32(struct ref_data, index, 1),
	SECTION_U64(struct ref_data, offset, 1),
	SECTION_U32(struct ref_data, len, 1),
	SECTION_FIELDS_END
};

static int ref_data_save(void *opaque, struct stream_buf *b, struct err *e)
{
	const struct ref_data *d = opaque;
	(void)e;
	stream_buf__put(b, d->data, d->len);
	return 0;
}

/* Never called: registration wants custom data to have both directions. */
static int ref_data_load(void *opaque, struct stream_cur *c, uint32_t version, struct err *e)
{
	(void)opaque, (void)c, (void)version;
	return err__set(e, ENOTSUP, "not loaded here");
}

static const struct section_desc ref_data_desc = {
	.name = DISK_DATA_SECTION, .version = 1, .min_version = 1, .fields = ref_data_fields,
	.save = ref_data_save, .load = ref_data_load,
};

static int to_mem(void *opaque, const void *buf, size_t len)
{
	struct stream_io *io = opaque;
	return io->write(io->opaque, buf, len) == (ssize_t)len ? 0 : -EIO;
}

/* One disk-data section in a whole stream, by hand (through a stage when
 * staged, as a migration writes) or by the generic encoder. */
static void one_data_stream(struct stream_mem *m, bool by_hand, bool staged, uint32_t index,
			    uint64_t off, const uint8_t *data, uint32_t len)
{
	struct stream_io io;
	struct stream_stage st;
	stream__mem_init_grow(m);
	stream__io_mem(&io, m);
	if (staged)
		ck_assert_int_eq(stream_stage__init(&st, 100000, to_mem, &io), 0);
	struct stream_writer w;
	struct stream_writer_opts o = { .release = "SP3", .release_ordinal = 3,
					.features = STREAM_FEAT_DIGEST };
	ck_assert_int_eq(stream__writer_init(&w, staged ? &st.io : &io, &o), 0);
	struct err e = { 0 };
	if (by_hand) {
		ck_assert_msg(disk_sections__write_data(&w, index, off, data, len, &e) == 0, "%s", e.msg);
	} else {
		struct ref_data d = { .index = index, .offset = off, .len = len, .data = data };
		struct section_registry reg;
		section__registry_init(&reg);
		ck_assert_int_eq(section__register(&reg, &ref_data_desc, 0, &d, &e), 0);
		ck_assert_msg(section__save_one(&reg, &w, DISK_DATA_SECTION, &e) == 0, "%s", e.msg);
		section__registry_free(&reg);
	}
	ck_assert_int_eq(stream__finish(&w), 0);
	if (staged) {
		ck_assert_int_eq(stream_stage__flush(&st), 0);
		stream_stage__free(&st);
	}
	stream__writer_free(&w);
}

struct got_data {
	uint32_t index, len;
	uint64_t off;
	const uint8_t *want;
	int calls;
};

static int got_data(void *opaque, uint32_t index, uint64_t off, const uint8_t *p, uint32_t len,
		    struct err *e)
{
	struct got_data *g = opaque;
	(void)e;
	g->calls++;
	ck_assert_uint_eq(index, g->index);
	ck_assert_uint_eq(off, g->off);
	ck_assert_uint_eq(len, g->len);
	ck_assert(!memcmp(p, g->want, len));
	return 0;
}

START_TEST(disk_data_by_hand)
{
	static const uint32_t lens[] = { 1, 4095, 65535, 65536, 65536 * 3 + 17, DISK_SECTIONS_CHUNK };
	uint8_t *data = malloc(DISK_SECTIONS_CHUNK);
	for (uint32_t i = 0; i < DISK_SECTIONS_CHUNK; i++)
		data[i] = (uint8_t)(i * 131 + (i >> 11));
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		for (int staged = 0; staged < 2; staged++) {
			uint32_t index = 3 + (uint32_t)k;
			uint64_t off = ((uint64_t)k << 33) + 65536 * k;
			struct stream_mem ref, got;
			one_data_stream(&ref, false, staged, index, off, data, lens[k]);
			one_data_stream(&got, true, staged, index, off, data, lens[k]);
			ck_assert_uint_eq(got.len, ref.len);
			ck_assert_msg(!memcmp(got.buf, ref.buf, ref.len), "len %u staged %d differs",
				      lens[k], staged);
			/* and the decoder the receivers use takes it */
			struct stream_mem in;
			struct stream_io io;
			stream__mem_init_read(&in, got.buf, got.len);
			stream__io_mem(&io, &in);
			struct stream_reader r;
			stream__reader_init(&r, &io);
			struct stream_header h;
			ck_assert_int_eq(stream__read_header(&r, &h, NULL), 0);
			struct stream_rec rec;
			ck_assert_int_eq(stream__next_record(&r, &rec), 1);
			ck_assert_uint_eq(rec.type, STREAM_REC_SECTION);
			uint8_t *p;
			ck_assert_int_eq(stream__read_payload(&r, STREAM_SECTION_MAX, &p), 0);
			struct got_data g = { .index = index, .off = off, .len = lens[k], .want = data };
			struct disk_sections_sink sink = { .opaque = &g, .data = got_data };
			struct err e = { 0 };
			ck_assert(disk_sections__is_disk(p, rec.len, 0));
			ck_assert_msg(disk_sections__decode(p, rec.len, 0, &sink, &e) == 0, "%s", e.msg);
			ck_assert_int_eq(g.calls, 1);
			free(p);
			ck_assert_int_eq(stream__next_record(&r, &rec), 0);
			stream__reader_free(&r);
			stream__mem_free(&ref);
			stream__mem_free(&got);
		}
	}
	free(data);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("section");
	TCase *tc = tcase_create("section");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, every_field_type);
	tcase_add_test(tc, negative_and_extreme_values);
	tcase_add_test(tc, version_windows);
	tcase_add_test(tc, subsections);
	tcase_add_test(tc, unmigratable);
	tcase_add_test(tc, registration_checks);
	tcase_add_test(tc, missing_and_unknown_sections);
	tcase_add_test(tc, parse_info_without_registry);
	tcase_add_test(tc, whole_stream_with_memory);
	tcase_add_test(tc, disk_data_by_hand);
	suite_add_tcase(s, tc);
	return check_run(s);
}
