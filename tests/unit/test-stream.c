/* Stream codec: CRC32C, header, framing, every record type, channels,
 * digest, and decode-then-encode giving identical bytes. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/check-run.h"
#include "test-stream-util.h"

START_TEST(crc32c_vectors)
{
	ck_assert_uint_eq(crc32c__update(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(crc32c__update_sw(0, "123456789", 9), 0xe3069283u);
	uint8_t z[32] = { 0 };
	ck_assert_uint_eq(crc32c__update(0, z, 32), 0x8a9136aau);	/* RFC 3720 B.4 */
	uint8_t *buf = malloc(100000), *dst = malloc(100000);
	for (size_t i = 0; i < 100000; i++)
		buf[i] = (uint8_t)(i * 31 + (i >> 7));
	for (size_t len = 0; len < 100000; len += len < 300 ? 1 : 4999) {
		for (size_t off = 0; off < 8; off += 3) {
			size_t n = len > off ? len - off : 0;
			uint32_t want = crc32c__update_sw(0, buf + off, n);
			ck_assert_uint_eq(crc32c__update(0, buf + off, n), want);
			memset(dst, 0, n);
			ck_assert_uint_eq(crc32c__copy(0, dst, buf + off, n), want);
			ck_assert(!memcmp(dst, buf + off, n));
			/* chaining */
			uint32_t c = crc32c__update(0, buf + off, n / 2);
			ck_assert_uint_eq(crc32c__update(c, buf + off + n / 2, n - n / 2), want);
		}
	}
	free(buf);
	free(dst);
}
END_TEST

START_TEST(header_round_trip)
{
	struct stream_header h = { .format = 2, .release_ordinal = 7, .features = 0x00010001 };
	strcpy(h.release, "SP7-beta");
	uint8_t b[STREAM_HEADER_SIZE];
	stream__header_encode(&h, b);
	ck_assert(!memcmp(b, "VMHOPSTR", 8));
	struct stream_header g;
	struct err e = { 0 };
	ck_assert_int_eq(stream__header_decode(b, &g, &e), 0);
	ck_assert_uint_eq(g.format, 2);
	ck_assert_uint_eq(g.release_ordinal, 7);
	ck_assert_uint_eq(g.features, 0x00010001);
	ck_assert_str_eq(g.release, "SP7-beta");
}
END_TEST

static void read_all_records(const uint8_t *p, size_t len, struct stream_io *io_in)
{
	struct stream_mem m;
	struct stream_io io;
	if (!io_in) {
		stream__mem_init_read(&m, p, len);
		stream__io_mem(&io, &m);
		io_in = &io;
	}
	struct stream_reader r;
	ck_assert_int_eq(stream__reader_init(&r, io_in), 0);
	struct stream_header h;
	ck_assert_int_eq(stream__read_header(&r, &h, NULL), 0);
	ck_assert_str_eq(h.release, "T1");
	struct stream_rec rec;
	ck_assert_int_eq(stream__next_record(&r, &rec), 1);
	ck_assert_uint_eq(rec.type, STREAM_REC_NOTE);
	ck_assert_uint_eq(rec.flags, STREAM_REC_F_SKIPPABLE);
	uint8_t *pl;
	ck_assert_int_eq(stream__read_payload(&r, STREAM_NOTE_MAX, &pl), 0);
	ck_assert(!memcmp(pl, "hello", 5));
	free(pl);
	ck_assert_int_eq(stream__next_record(&r, &rec), 1);
	ck_assert_uint_eq(rec.type, STREAM_REC_SECTION);
	ck_assert_uint_eq(stream__get_u8(&r), 0x11);
	ck_assert_uint_eq(stream__get_u16(&r), 0x2233);
	ck_assert_uint_eq(stream__get_u32(&r), 0x44556677);
	ck_assert_uint_eq(stream__get_u64(&r), 0x8899aabbccddeeffULL);
	uint8_t big[100000];
	stream__get(&r, big, sizeof(big));
	for (size_t i = 0; i < sizeof(big); i++)
		ck_assert_uint_eq(big[i], (uint8_t)(i ^ (i >> 8)));
	ck_assert_int_eq(stream__rec_close(&r), 0);
	/* the unknown skippable record was skipped */
	ck_assert_int_eq(stream__next_record(&r, &rec), 0);
	ck_assert_uint_eq(r.skipped, 1);
	ck_assert(r.ended);
	ck_assert_int_eq(stream__expect_eof(&r), 0);
	stream__reader_free(&r);
}

static void write_records(struct stream_io *io, uint32_t features)
{
	struct stream_writer w;
	struct stream_writer_opts o = { .format = 2, .release = "T1", .release_ordinal = 1,
					.features = features };
	ck_assert_int_eq(stream__writer_init(&w, io, &o), 0);
	ck_assert_int_eq(stream__write_note(&w, "hello"), 0);
	static uint8_t big[100000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i ^ (i >> 8));
	ck_assert_int_eq(stream__rec_begin(&w, STREAM_REC_SECTION, 0, 15 + sizeof(big)), 0);
	stream__put_u8(&w, 0x11);
	stream__put_u16(&w, 0x2233);
	stream__put_u32(&w, 0x44556677);
	stream__put_u64(&w, 0x8899aabbccddeeffULL);
	stream__put(&w, big, sizeof(big));
	ck_assert_int_eq(stream__rec_end(&w), 0);
	ck_assert_int_eq(stream__write_record(&w, 0x7777, STREAM_REC_F_SKIPPABLE, "future", 6), 0);
	ck_assert_int_eq(stream__finish(&w), 0);
	stream__writer_free(&w);
}

START_TEST(records_memory_channel)
{
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_grow(&m);
	stream__io_mem(&io, &m);
	write_records(&io, 0);
	read_all_records(m.buf, m.len, NULL);
	/* byte-at-a-time and odd-sized reads give the same result */
	size_t steps[] = { 1, 7, 4096, 65537 };
	for (size_t i = 0; i < 4; i++) {
		struct short_io s;
		struct stream_io sio;
		short_io_init(&sio, &s, m.buf, m.len, steps[i]);
		read_all_records(m.buf, m.len, &sio);
	}
	stream__mem_free(&m);
}
END_TEST

/* The plain digest, and the tree one (a single chunk here: the file
 * hasher's test has streams of several). */
START_TEST(records_fd_channel_with_digest)
{
	const uint32_t features[] = { STREAM_FEAT_DIGEST, STREAM_FEAT_DIGEST | STREAM_FEAT_DIGEST_TREE };
	FILE *f = tmpfile();
	ck_assert_ptr_nonnull(f);
	struct stream_io io;
	stream__io_fd(&io, fileno(f));
	write_records(&io, features[_i]);
	ck_assert_int_eq(lseek(fileno(f), 0, SEEK_SET), 0);
	read_all_records(NULL, 0, &io);
	/* the digest is checked: change a byte and fix that record's CRC */
	long size = lseek(fileno(f), 0, SEEK_END);
	uint8_t *buf = malloc((size_t)size);
	ck_assert_int_eq(pread(fileno(f), buf, (size_t)size, 0), size);
	/* NOTE record at 40: header 8 + "hello" + crc */
	buf[48] = 'j';
	stream__le32(buf + 53, crc32c__update(0, buf + 40, 13));
	struct stream_mem m;
	stream__mem_init_read(&m, buf, (size_t)size);
	stream__io_mem(&io, &m);
	struct stream_reader r;
	stream__reader_init(&r, &io);
	int rc = stream__read_header(&r, NULL, NULL);
	struct stream_rec rec;
	while (!rc && (rc = stream__next_record(&r, &rec)) == 1)
		rc = stream__rec_skip(&r);
	ck_assert_int_lt(rc, 0);
	ck_assert_msg(strstr(r.err.msg, "digest mismatch") && err_offset(r.err.msg) > 40,
		      "%s", r.err.msg);
	stream__reader_free(&r);
	free(buf);
	fclose(f);
}
END_TEST

START_TEST(writer_checks)
{
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_grow(&m);
	stream__io_mem(&io, &m);
	struct stream_writer w;
	struct stream_writer_opts o = { .format = 9, .release = "SP3" };
	ck_assert_int_lt(stream__writer_init(&w, &io, &o), 0);
	stream__writer_free(&w);
	o.format = 1;
	o.features = STREAM_FEAT_DIGEST;
	ck_assert_int_lt(stream__writer_init(&w, &io, &o), 0);
	ck_assert_msg(strstr(w.err.msg, "digest"), "%s", w.err.msg);
	stream__writer_free(&w);
	o.format = 2;
	o.features = STREAM_FEAT_DIGEST_TREE;
	ck_assert_int_lt(stream__writer_init(&w, &io, &o), 0);
	ck_assert_msg(strstr(w.err.msg, "tree without the digest"), "%s", w.err.msg);
	stream__writer_free(&w);
	o.format = 1;
	o.features = 0;
	ck_assert_int_eq(stream__writer_init(&w, &io, &o), 0);
	/* INDEX does not exist in format 1 */
	ck_assert_int_lt(stream__rec_begin(&w, STREAM_REC_INDEX, 0, 8), 0);
	ck_assert_msg(strstr(w.err.msg, "not part of format version 1"), "%s", w.err.msg);
	stream__writer_free(&w);
	/* payload longer or shorter than declared is a sticky error */
	m.len = 0;
	ck_assert_int_eq(stream__writer_init(&w, &io, &o), 0);
	ck_assert_int_eq(stream__rec_begin(&w, STREAM_REC_NOTE, 0, 3), 0);
	stream__put_u32(&w, 1);
	stream__put_u32(&w, 2);
	ck_assert_int_lt(stream__rec_end(&w), 0);
	ck_assert_int_lt(stream__finish(&w), 0);
	stream__writer_free(&w);
	/* a full fixed channel */
	uint8_t small[60];
	struct stream_mem fm;
	struct stream_io fio;
	stream__mem_init_fixed(&fm, small, sizeof(small));
	stream__io_mem(&fio, &fm);
	ck_assert_int_eq(stream__writer_init(&w, &fio, &o), 0);
	stream__write_note(&w, "a note longer than the twenty bytes that are left");
	ck_assert_int_lt(stream__finish(&w), 0);
	ck_assert_int_eq(w.err.code, ENOSPC);
	stream__writer_free(&w);
	stream__mem_free(&m);
}
END_TEST

/* Re-encodes a stream record by record: header and every record as read. */
static void reencode(const uint8_t *p, size_t len, struct stream_mem *out)
{
	struct stream_mem m;
	struct stream_io io, oio;
	stream__mem_init_read(&m, p, len);
	stream__io_mem(&io, &m);
	stream__mem_init_grow(out);
	stream__io_mem(&oio, out);
	struct stream_reader r;
	struct stream_header h;
	stream__reader_init(&r, &io);
	ck_assert_int_eq(stream__read_header(&r, &h, NULL), 0);
	struct stream_writer w;
	struct stream_writer_opts o = { .format = h.format, .release = h.release,
					.release_ordinal = h.release_ordinal,
					.features = h.features, .index = false };
	ck_assert_int_eq(stream__writer_init(&w, &oio, &o), 0);
	struct stream_rec rec;
	int rc;
	while ((rc = stream__next_record(&r, &rec)) == 1) {
		uint8_t *pl = malloc(rec.len ? rec.len : 1);
		stream__get(&r, pl, rec.len);
		ck_assert_int_eq(stream__rec_close(&r), 0);
		if (rec.type == STREAM_REC_INDEX) {
			/* written by finish() from the tracked index: rebuild */
			w.build_index = true;
			stream__index_free(&w.index);
			struct stream_cur c;
			stream_cur__init(&c, pl, rec.len, 0);
			uint32_t n = stream_cur__get_u32(&c);
			stream_cur__get_u32(&c);
			for (uint32_t i = 0; i < n; i++) {
				uint64_t f = stream_cur__get_u64(&c);
				uint32_t k = stream_cur__get_u32(&c);
				stream_cur__get_u32(&c);
				stream__index_add(&w.index, f, k, stream_cur__get_u64(&c));
			}
		} else {
			ck_assert_int_eq(stream__write_record(&w, rec.type, rec.flags, pl, rec.len), 0);
		}
		free(pl);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(stream__finish(&w), 0);
	stream__writer_free(&w);
	stream__reader_free(&r);
}

START_TEST(decode_encode_identical)
{
	struct sample_opts variants[] = {
		{ .format = 1 },
		{ .format = 2, .digest = true, .compress = true },
		{ .format = 3, .digest = true, .compress = true, .index = true, .npages = 40 },
		{ .format = 3, .index = true },
	};
	for (size_t i = 0; i < 4; i++) {
		struct stream_mem a, b;
		sample_stream(&a, &variants[i]);
		reencode(a.buf, a.len, &b);
		ck_assert_uint_eq(a.len, b.len);
		ck_assert_msg(!memcmp(a.buf, b.buf, a.len), "variant %zu differs", i);
		struct err e = { 0 };
		ck_assert_msg(walk_stream(a.buf, a.len, NULL, &e) == 0, "%s", e.msg);
		stream__mem_free(&a);
		stream__mem_free(&b);
	}
}
END_TEST

START_TEST(deterministic_encoding)
{
	struct sample_opts o = { .format = 3, .digest = true, .compress = true, .index = true };
	struct stream_mem a, b;
	sample_stream(&a, &o);
	sample_stream(&b, &o);
	ck_assert_uint_eq(a.len, b.len);
	ck_assert(!memcmp(a.buf, b.buf, a.len));
	stream__mem_free(&a);
	stream__mem_free(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("codec");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, crc32c_vectors);
	tcase_add_test(tc, header_round_trip);
	tcase_add_test(tc, records_memory_channel);
	tcase_add_loop_test(tc, records_fd_channel_with_digest, 0, 2);
	tcase_add_test(tc, writer_checks);
	tcase_add_test(tc, decode_encode_identical);
	tcase_add_test(tc, deterministic_encoding);
	suite_add_tcase(s, tc);
	return check_run(s);
}
