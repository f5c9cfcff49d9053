#include <errno.h>
#include <string.h>

#include "fuzz-common.h"

static const struct section_field elem_fields[] = {
	SECTION_U16(struct fz_elem, a, 1),
	SECTION_U64(struct fz_elem, b, 1),
	SECTION_FIELDS_END
};

static const struct section_field fields[] = {
	SECTION_U8(struct fz_state, u8, 1),
	SECTION_U16(struct fz_state, u16, 1),
	SECTION_U32(struct fz_state, u32, 1),
	SECTION_U64(struct fz_state, u64, 1),
	SECTION_I64(struct fz_state, i64, 1),
	SECTION_BOOL(struct fz_state, flag, 1),
	SECTION_BYTES(struct fz_state, bytes, 1),
	SECTION_U32_ARRAY(struct fz_state, arr, 1),
	SECTION_STRUCT_ARRAY(struct fz_state, elems, struct fz_elem, elem_fields, 1),
	SECTION_U64(struct fz_state, v2, 2),
	SECTION_FIELDS_END
};

static const struct section_field sub_fields[] = {
	SECTION_U32(struct fz_state, sub, 1),
	SECTION_FIELDS_END
};

static const struct section_desc sub_desc = {
	.name = "sub", .version = 1, .min_version = 1, .fields = sub_fields,
};

static bool sub_needed(void *o)
{
	return ((struct fz_state *)o)->want_sub;
}

static const struct section_sub subs[] = {
	{ .desc = &sub_desc, .needed = sub_needed },
	{ .desc = NULL }
};

static int save(void *o, struct stream_buf *b, struct err *e)
{
	struct fz_state *s = o;
	stream_buf__put_u8(b, s->custom_len);
	stream_buf__put(b, s->custom, s->custom_len);
	return 0;
}

static int load(void *o, struct stream_cur *c, uint32_t version, struct err *e)
{
	struct fz_state *s = o;
	uint8_t n = stream_cur__get_u8(c);
	if (n > sizeof(s->custom))
		return err__set(e, EBADMSG, "custom length %u", n);
	s->custom_len = n;
	stream_cur__get(c, s->custom, n);
	return 0;
}

const struct section_desc fz_desc = {
	.name = "fz", .version = 2, .min_version = 1, .fields = fields,
	.save = save, .load = load, .subs = subs,
};

void fz_fill(struct fz_state *s, unsigned seed)
{
	memset(s, 0, sizeof(*s));
	s->u8 = (uint8_t)seed;
	s->u16 = (uint16_t)(seed * 3);
	s->u32 = seed * 5;
	s->u64 = seed * 7ULL;
	s->i64 = -(int64_t)seed;
	s->flag = seed & 1;
	memset(s->bytes, (int)seed, sizeof(s->bytes));
	s->arr[1] = seed;
	s->elems[1].b = seed;
	s->v2 = seed;
	s->sub = seed;
	s->want_sub = !(seed & 2);
	s->custom_len = (uint8_t)(seed % 16);
	memset(s->custom, 'c', s->custom_len);
}

void fz_registry(struct section_registry *reg, struct fz_state st[2])
{
	struct err e = { 0 };
	section__registry_init(reg);
	section__register(reg, &fz_desc, 0, &st[0], &e);
	section__register(reg, &fz_desc, 1, &st[1], &e);
}

static size_t put_rec(uint8_t *out, uint16_t type, const uint8_t *p, size_t len)
{
	stream__le16(out, type);
	stream__le16(out + 2, 0);
	stream__le32(out + 4, (uint32_t)len);
	if (len)
		memcpy(out + 8, p, len);
	stream__le32(out + 8 + len, crc32c__update(0, out, 8 + len));
	return 12 + len;
}

size_t fz_frame(uint8_t *out, size_t cap, uint16_t format, uint16_t type,
		const uint8_t *payload, size_t len)
{
	if (cap < STREAM_HEADER_SIZE + 12 + len + 20)
		return 0;
	struct stream_header h = { .format = format, .release_ordinal = 3 };
	strcpy(h.release, "SP3");
	stream__header_encode(&h, out);
	size_t o = STREAM_HEADER_SIZE;
	o += put_rec(out + o, type, payload, len);
	uint8_t end[8] = { 0 };
	o += put_rec(out + o, STREAM_REC_END, end, 8);
	return o;
}

void fz_fix_crcs(uint8_t *p, size_t len)
{
	if (len < STREAM_HEADER_SIZE)
		return;
	stream__le32(p + 36, crc32c__update(0, p, 36));
	size_t o = STREAM_HEADER_SIZE;
	while (len - o >= 12) {
		uint32_t n = stream__rd32(p + o + 4);
		if (n > len - o - 12)
			break;
		stream__le32(p + o + 8 + n, crc32c__update(0, p + o, 8 + n));
		o += 12 + n;
	}
}
