/* Bad input: truncation at every record boundary and inside records, bit
 * flips in header, lengths, payloads and checksums, absurd lengths, unknown
 * record types, wrong magic. Each must be a clean error naming an offset:
 * never a crash, a hang or an allocation above the caps. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "test-stream-util.h"

struct frame {
	size_t off;
	uint16_t type;
	uint32_t len;
};

/* The record frames of a well-formed stream. */
static size_t frames(const uint8_t *p, size_t len, struct frame *f, size_t max)
{
	size_t n = 0, off = STREAM_HEADER_SIZE;
	while (off + 8 <= len && n < max) {
		f[n].off = off;
		f[n].type = stream__rd16(p + off);
		f[n].len = stream__rd32(p + off + 4);
		off += 12 + f[n].len;
		n++;
	}
	ck_assert_uint_eq(off, len);
	return n;
}

static void expect_error(const uint8_t *p, size_t len, const char *what, size_t at)
{
	struct err e = { 0 };
	int rc = walk_stream(p, len, NULL, &e);
	ck_assert_msg(rc < 0, "%s at %zu: accepted", what, at);
	long long off = err_offset(e.msg);
	ck_assert_msg(off >= 0, "%s at %zu: no offset in '%s'", what, at, e.msg);
	ck_assert_msg((size_t)off <= len, "%s at %zu: offset %lld beyond input in '%s'",
		      what, at, off, e.msg);
}

static void fix_record_crc(uint8_t *p, const struct frame *f)
{
	stream__le32(p + f->off + 8 + f->len, crc32c__update(0, p + f->off, 8 + f->len));
}

static void fix_header_crc(uint8_t *p)
{
	stream__le32(p + 36, crc32c__update(0, p, 36));
}

static const struct sample_opts variants[] = {
	{ .format = 1 },
	{ .format = 3, .digest = true, .compress = true, .index = true },
};

START_TEST(truncation)
{
	struct stream_mem m;
	sample_stream(&m, &variants[_i]);
	struct frame f[256];
	size_t n = frames(m.buf, m.len, f, 256);
	ck_assert_uint_gt(n, 5);
	uint8_t *copy = malloc(m.len);
	/* every byte of the header and the first record */
	for (size_t l = 0; l < f[1].off; l++) {
		memcpy(copy, m.buf, l);
		expect_error(copy, l, "truncated", l);
	}
	/* every record boundary, inside each header, payload and checksum */
	for (size_t i = 0; i < n; i++) {
		size_t cuts[] = { 0, 1, 4, 7, 8, 9, 8 + f[i].len / 2, 8 + f[i].len,
				  8 + f[i].len + 2, 8 + f[i].len + 3 };
		for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
			size_t l = f[i].off + cuts[k];
			if (l >= m.len)
				continue;
			memcpy(copy, m.buf, l);
			expect_error(copy, l, "truncated", l);
		}
	}
	struct err e = { 0 };
	ck_assert_msg(walk_stream(m.buf, m.len, NULL, &e) == 0, "%s", e.msg);
	free(copy);
	stream__mem_free(&m);
}
END_TEST

static void flip(const uint8_t *orig, uint8_t *copy, size_t len, size_t byte,
		 int bit, const char *what)
{
	memcpy(copy, orig, len);
	copy[byte] ^= (uint8_t)(1u << bit);
	expect_error(copy, len, what, byte * 8 + (size_t)bit);
}

START_TEST(bit_flips)
{
	struct stream_mem m;
	sample_stream(&m, &variants[_i]);
	struct frame f[256];
	size_t n = frames(m.buf, m.len, f, 256);
	uint8_t *copy = malloc(m.len);
	for (size_t b = 0; b < STREAM_HEADER_SIZE; b++)
		for (int bit = 0; bit < 8; bit++)
			flip(m.buf, copy, m.len, b, bit, "header flip");
	for (size_t i = 0; i < n; i++) {
		size_t o = f[i].off;
		for (size_t b = 0; b < 8; b++)		/* type, flags, length */
			for (int bit = 0; bit < 8; bit++)
				flip(m.buf, copy, m.len, o + b, bit, "record header flip");
		size_t crc = o + 8 + f[i].len;
		for (size_t b = 0; b < 4; b++)
			for (int bit = 0; bit < 8; bit++)
				flip(m.buf, copy, m.len, crc + b, bit, "checksum flip");
		if (f[i].len) {
			size_t at[] = { 0, f[i].len / 3, f[i].len / 2, f[i].len - 1 };
			for (size_t k = 0; k < 4; k++)
				for (int bit = 0; bit < 8; bit++)
					flip(m.buf, copy, m.len, o + 8 + at[k], bit, "payload flip");
		}
	}
	free(copy);
	stream__mem_free(&m);
}
END_TEST

START_TEST(wrong_magic)
{
	struct stream_mem m;
	sample_stream(&m, &variants[0]);
	m.buf[0] = 'X';
	struct err e = { 0 };
	ck_assert_int_lt(walk_stream(m.buf, m.len, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 0: bad magic"), "%s", e.msg);
	/* a text file, an empty file */
	err__clear(&e);
	ck_assert_int_lt(walk_stream((const uint8_t *)"hello world\n", 12, NULL, &e), 0);
	ck_assert_int_ge(err_offset(e.msg), 0);
	err__clear(&e);
	ck_assert_int_lt(walk_stream((const uint8_t *)"", 0, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 0: truncated"), "%s", e.msg);
	stream__mem_free(&m);
}
END_TEST

START_TEST(header_fields)
{
	struct stream_mem m;
	sample_stream(&m, &variants[0]);
	struct err e = { 0 };
	/* unknown incompatible feature */
	uint8_t *c = malloc(m.len);
	memcpy(c, m.buf, m.len);
	stream__le32(c + 12, 0x00000100);
	fix_header_crc(c);
	ck_assert_int_lt(walk_stream(c, m.len, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 12: unknown incompatible feature"), "%s", e.msg);
	/* an unknown compatible feature is fine */
	memcpy(c, m.buf, m.len);
	stream__le32(c + 12, 0x00010000);
	fix_header_crc(c);
	err__clear(&e);
	ck_assert_msg(walk_stream(c, m.len, NULL, &e) == 0, "%s", e.msg);
	/* format version this code does not read */
	memcpy(c, m.buf, m.len);
	stream__le16(c + 8, 99);
	fix_header_crc(c);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(c, m.len, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 8: stream format version 99"), "%s", e.msg);
	/* reserved field */
	memcpy(c, m.buf, m.len);
	c[33] = 1;
	fix_header_crc(c);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(c, m.len, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 32"), "%s", e.msg);
	free(c);
	stream__mem_free(&m);
}
END_TEST

/* A stream: header, one record (type, flags, len, payload with valid CRC
 * over its real bytes), END. */
static size_t craft(uint8_t *out, uint16_t type, uint16_t flags, uint32_t len,
		    const void *payload, size_t plen, uint16_t format)
{
	struct stream_header h = { .format = format, .release_ordinal = 3 };
	strcpy(h.release, "SP3");
	stream__header_encode(&h, out);
	size_t o = STREAM_HEADER_SIZE;
	stream__le16(out + o, type);
	stream__le16(out + o + 2, flags);
	stream__le32(out + o + 4, len);
	memcpy(out + o + 8, payload, plen);
	stream__le32(out + o + 8 + plen, crc32c__update(0, out + o, 8 + plen));
	o += 12 + plen;
	uint8_t end[8] = { 0 };
	stream__le16(out + o, STREAM_REC_END);
	stream__le16(out + o + 2, 0);
	stream__le32(out + o + 4, 8);
	memcpy(out + o + 8, end, 8);
	stream__le32(out + o + 16, crc32c__update(0, out + o, 16));
	return o + 20;
}

START_TEST(absurd_lengths)
{
	uint8_t buf[4096], payload[64] = { 0 };
	struct err e = { 0 };
	uint32_t lens[] = { 0xffffffffu, 0x80000000u, STREAM_SECTION_MAX + 1 };
	for (size_t i = 0; i < 3; i++) {
		size_t n = craft(buf, STREAM_REC_SECTION, 0, lens[i], payload, sizeof(payload), 3);
		err__clear(&e);
		ck_assert_int_lt(walk_stream(buf, n, NULL, &e), 0);
		ck_assert_msg(strstr(e.msg, "offset 44: record SECTION length"), "%s", e.msg);
	}
	/* unknown skippable record with a length above every cap */
	size_t n = craft(buf, 0x4242, STREAM_REC_F_SKIPPABLE, 0xfffffff0u, payload, 8, 3);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(buf, n, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 44: record length"), "%s", e.msg);
	/* MEM claiming 2^32-1 pages */
	uint8_t mem[16] = { 0 };
	stream__le32(mem + 8, 0xffffffffu);
	n = craft(buf, STREAM_REC_MEM, 0, 17, mem, 16, 3);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(buf, n, NULL, &e), 0);
	ck_assert_msg(err_offset(e.msg) == 48 + 8, "%s", e.msg);
	/* MEM whose page kinds need more bytes than the record has */
	uint8_t mem2[20] = { 0 };
	stream__le32(mem2 + 8, 4);
	memset(mem2 + 16, STREAM_PAGE_RAW, 4);
	n = craft(buf, STREAM_REC_MEM, 0, 20, mem2, 20, 3);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(buf, n, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "does not match its pages"), "%s", e.msg);
	/* INDEX whose count disagrees with its length */
	uint8_t idx[8] = { 0 };
	stream__le32(idx, 0x10000000u);
	n = craft(buf, STREAM_REC_INDEX, 0, 8, idx, 8, 3);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(buf, n, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "INDEX count"), "%s", e.msg);
	/* END of the wrong size */
	n = craft(buf, STREAM_REC_END, 0, 9, payload, 9, 3);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(buf, n, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 44: record END has length 9"), "%s", e.msg);
}
END_TEST

START_TEST(allocation_cap)
{
	/* A SECTION record within the cap but above a lowered max_alloc is
	 * refused before allocating; the payload need not even exist. */
	uint8_t buf[256], payload[8] = { 0 };
	size_t n = craft(buf, STREAM_REC_SECTION, 0, 8u << 20, payload, 8, 3);
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_read(&m, buf, n);
	stream__io_mem(&io, &m);
	struct stream_reader r;
	stream__reader_init(&r, &io);
	r.max_alloc = 1 << 20;
	ck_assert_int_eq(stream__read_header(&r, NULL, NULL), 0);
	struct stream_rec rec;
	ck_assert_int_eq(stream__next_record(&r, &rec), 1);
	uint8_t *p;
	ck_assert_int_lt(stream__read_payload(&r, STREAM_SECTION_MAX, &p), 0);
	ck_assert_msg(strstr(r.err.msg, "offset 44: record SECTION payload of 8388608 bytes exceeds the cap"),
		      "%s", r.err.msg);
	stream__reader_free(&r);
}
END_TEST

START_TEST(unknown_types)
{
	uint8_t buf[256];
	struct err e = { 0 };
	size_t n = craft(buf, 0x4242, 0, 4, "abcd", 4, 3);
	ck_assert_int_lt(walk_stream(buf, n, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 40: unknown record type 0x4242 (not marked skippable)"),
		      "%s", e.msg);
	n = craft(buf, 0x4242, STREAM_REC_F_SKIPPABLE, 4, "abcd", 4, 3);
	err__clear(&e);
	ck_assert_msg(walk_stream(buf, n, NULL, &e) == 0, "%s", e.msg);
	/* unknown flags */
	n = craft(buf, STREAM_REC_NOTE, 0x0100, 4, "abcd", 4, 3);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(buf, n, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 42: record type 0x0005 has unknown flags"), "%s", e.msg);
	/* a type newer than the stream's format */
	uint8_t idx[8] = { 0 };
	n = craft(buf, STREAM_REC_INDEX, 0, 8, idx, 8, 2);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(buf, n, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "offset 40: record type INDEX is not part of format version 2"),
		      "%s", e.msg);
	/* trailing garbage after END */
	n = craft(buf, STREAM_REC_NOTE, 0, 4, "abcd", 4, 3);
	buf[n] = 0;
	err__clear(&e);
	ck_assert_int_lt(walk_stream(buf, n + 1, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "trailing data"), "%s", e.msg);
}
END_TEST

START_TEST(valid_crc_bad_content)
{
	struct stream_mem m;
	sample_stream(&m, &variants[0]);	/* format 1 */
	struct frame f[256];
	size_t n = frames(m.buf, m.len, f, 256);
	size_t i = 0;
	while (i < n && f[i].type != STREAM_REC_MEM)
		i++;
	ck_assert_uint_lt(i, n);
	size_t kinds = f[i].off + 8 + STREAM_MEM_HDR_SIZE;
	struct err e = { 0 };
	m.buf[kinds] = STREAM_PAGE_ZSTD;
	fix_record_crc(m.buf, &f[i]);
	ck_assert_int_lt(walk_stream(m.buf, m.len, NULL, &e), 0);
	ck_assert_msg(err_offset(e.msg) == (long long)kinds &&
		      strstr(e.msg, "zstd pages are not part of format version 1"), "%s", e.msg);
	m.buf[kinds] = 9;
	fix_record_crc(m.buf, &f[i]);
	err__clear(&e);
	ck_assert_int_lt(walk_stream(m.buf, m.len, NULL, &e), 0);
	ck_assert_msg(strstr(e.msg, "unknown page kind 9"), "%s", e.msg);
	stream__mem_free(&m);
}
END_TEST

START_TEST(random_mutations)
{
	struct stream_mem m;
	sample_stream(&m, &variants[1]);
	uint8_t *c = malloc(m.len);
	uint32_t x = 12345;
	for (int iter = 0; iter < 3000; iter++) {
		memcpy(c, m.buf, m.len);
		int k = 1 + iter % 4;
		for (int j = 0; j < k; j++) {
			x = x * 1103515245u + 12345u;
			size_t at = (x >> 8) % m.len;
			x = x * 1103515245u + 12345u;
			c[at] = (uint8_t)(x >> 16);
		}
		struct err e = { 0 };
		if (walk_stream(c, m.len, NULL, &e) < 0)
			ck_assert_int_ge(err_offset(e.msg), 0);
	}
	free(c);
	stream__mem_free(&m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stream-bad");
	TCase *tc = tcase_create("bad-input");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, truncation, 0, 2);
	tcase_add_loop_test(tc, bit_flips, 0, 2);
	tcase_add_test(tc, wrong_magic);
	tcase_add_test(tc, header_fields);
	tcase_add_test(tc, absurd_lengths);
	tcase_add_test(tc, allocation_cap);
	tcase_add_test(tc, unknown_types);
	tcase_add_test(tc, valid_crc_bad_content);
	tcase_add_test(tc, random_mutations);
	suite_add_tcase(s, tc);
	return check_run(s);
}
