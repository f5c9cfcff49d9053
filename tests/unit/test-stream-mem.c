/* Memory records: zero, raw and zstd pages round trip, holes, the
 * destination window, zero pages on fresh memory, the index and random
 * access through it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/check-run.h"
#include "test-stream-util.h"

struct enc_result {
	struct stream_mem m;
	struct stream_mem_stats stats;
};

static void encode(struct enc_result *out, const uint8_t *ram, uint64_t npages,
		   const uint64_t *holes, uint16_t format, bool compress,
		   bool detect_zero, bool index, uint32_t max_run)
{
	struct stream_io io;
	stream__mem_init_grow(&out->m);
	stream__io_mem(&io, &out->m);
	struct stream_writer w;
	struct stream_writer_opts o = { .format = format, .release = "SP3",
					.release_ordinal = 3, .index = index };
	ck_assert_int_eq(stream__writer_init(&w, &io, &o), 0);
	struct stream_mem_enc enc;
	struct stream_mem_enc_opts eo = { .compress = compress, .detect_zero = detect_zero,
					  .max_run = max_run };
	struct err e = { 0 };
	ck_assert_int_eq(stream__mem_enc_init(&enc, &eo, &e), 0);
	struct stream_ram sr = { .host = ram, .npages = npages, .holes = holes };
	ck_assert_msg(stream__mem_write_range(&w, &enc, &sr, 0, npages) == 0, "%s", w.err.msg);
	ck_assert_int_eq(stream__finish(&w), 0);
	out->stats = enc.stats;
	stream__mem_enc_free(&enc);
	stream__writer_free(&w);
}

static int decode(const struct stream_mem *m, const struct stream_mem_dst *dst,
		  struct stream_mem_stats *stats, char *msg)
{
	struct stream_mem in;
	struct stream_io io;
	stream__mem_init_read(&in, m->buf, m->len);
	stream__io_mem(&io, &in);
	struct stream_reader r;
	struct stream_mem_dec dec;
	struct err e = { 0 };
	stream__reader_init(&r, &io);
	ck_assert_int_eq(stream__mem_dec_init(&dec, &e), 0);
	int rc = stream__read_header(&r, NULL, NULL);
	struct stream_rec rec;
	while (!rc && (rc = stream__next_record(&r, &rec)) == 1) {
		if (rec.type == STREAM_REC_MEM)
			rc = stream__mem_read(&r, &rec, &dec, dst);
		else
			rc = stream__rec_skip(&r);
	}
	if (stats)
		*stats = dec.stats;
	if (msg)
		strcpy(msg, r.err.msg);
	stream__mem_dec_free(&dec);
	stream__reader_free(&r);
	return rc;
}

START_TEST(round_trip_kinds)
{
	const uint64_t np = 64;
	uint8_t *ram = test_ram(np, 3);
	for (int format = 1; format <= 3; format++) {
		struct enc_result er;
		encode(&er, ram, np, NULL, (uint16_t)format, true, true, false, 16);
		/* a zero page costs one byte */
		ck_assert_uint_eq(er.stats.pages[STREAM_PAGE_ZERO], np / 4);
		ck_assert_uint_eq(er.stats.bytes[STREAM_PAGE_ZERO], 0);
		if (format == 1)
			ck_assert_uint_eq(er.stats.pages[STREAM_PAGE_ZSTD], 0);
		else
			ck_assert_uint_gt(er.stats.pages[STREAM_PAGE_ZSTD], 0);
		ck_assert_uint_ge(er.stats.pages[STREAM_PAGE_RAW], np / 4);
		uint8_t *dst = malloc(np * STREAM_PAGE_SIZE);
		memset(dst, 0xee, np * STREAM_PAGE_SIZE);
		struct stream_mem_dst d = { .host = dst, .npages = np };
		struct stream_mem_stats st;
		ck_assert_int_eq(decode(&er.m, &d, &st, NULL), 0);
		ck_assert(!memcmp(dst, ram, np * STREAM_PAGE_SIZE));
		for (int k = 0; k < STREAM_PAGE_KINDS; k++)
			ck_assert_uint_eq(st.pages[k], er.stats.pages[k]);
		free(dst);
		stream__mem_free(&er.m);
	}
	free(ram);
}
END_TEST

START_TEST(holes_are_not_read)
{
	const uint64_t np = 16;
	uint8_t *ram = test_ram(np, 4);
	uint64_t holes = 0;
	/* pages 1 and 5 hold data, but the caller says they are holes: they
	 * go as zero pages without being looked at */
	holes |= 1u << 1 | 1u << 5;
	struct enc_result er;
	encode(&er, ram, np, &holes, 3, false, false, false, 0);
	ck_assert_uint_eq(er.stats.pages[STREAM_PAGE_ZERO], 2);
	ck_assert_uint_eq(er.stats.pages[STREAM_PAGE_RAW], np - 2);
	uint8_t *dst = calloc(np, STREAM_PAGE_SIZE);
	struct stream_mem_dst d = { .host = dst, .npages = np };
	ck_assert_int_eq(decode(&er.m, &d, NULL, NULL), 0);
	memset(ram + 1 * STREAM_PAGE_SIZE, 0, STREAM_PAGE_SIZE);
	memset(ram + 5 * STREAM_PAGE_SIZE, 0, STREAM_PAGE_SIZE);
	ck_assert(!memcmp(dst, ram, np * STREAM_PAGE_SIZE));
	free(dst);
	free(ram);
	stream__mem_free(&er.m);
}
END_TEST

START_TEST(fresh_destination_and_rounds)
{
	/* round 1 sends data, round 2 sends the same pages as zero: a fresh
	 * destination skips zero pages never written, but clears written ones */
	const uint64_t np = 8;
	uint8_t *ram = test_ram(np, 5);
	uint8_t *dst = calloc(np, STREAM_PAGE_SIZE);
	uint64_t written = 0;
	struct stream_mem_dst d = { .host = dst, .npages = np, .written = &written, .fresh = true };
	struct enc_result r1, r2;
	encode(&r1, ram, np, NULL, 3, false, true, false, 0);
	ck_assert_int_eq(decode(&r1.m, &d, NULL, NULL), 0);
	ck_assert(!memcmp(dst, ram, np * STREAM_PAGE_SIZE));
	ck_assert_uint_eq(written, 0xeeu);	/* pages 1,2,3,5,6,7 hold data */
	/* poison a never-written page: a zero page for it must stay skipped */
	dst[4 * STREAM_PAGE_SIZE] = 0x55;
	memset(ram, 0, np * STREAM_PAGE_SIZE);
	encode(&r2, ram, np, NULL, 3, false, true, false, 0);
	ck_assert_int_eq(decode(&r2.m, &d, NULL, NULL), 0);
	ck_assert_uint_eq(written, 0);
	ck_assert_uint_eq(dst[4 * STREAM_PAGE_SIZE], 0x55);
	dst[4 * STREAM_PAGE_SIZE] = 0;
	ck_assert(!memcmp(dst, ram, np * STREAM_PAGE_SIZE));
	free(dst);
	free(ram);
	stream__mem_free(&r1.m);
	stream__mem_free(&r2.m);
}
END_TEST

START_TEST(destination_bounds)
{
	const uint64_t np = 32;
	uint8_t *ram = test_ram(np, 6);
	struct enc_result er;
	encode(&er, ram, np, NULL, 3, true, true, false, 8);
	uint8_t *dst = calloc(np, STREAM_PAGE_SIZE);
	char msg[600];
	/* a destination smaller than the stream's RAM: refused, with offset */
	struct stream_mem_dst small = { .host = dst, .npages = np - 1 };
	ck_assert_int_lt(decode(&er.m, &small, NULL, msg), 0);
	ck_assert_msg(strstr(msg, "pages 24..31 lie outside the destination RAM (pfn 0..30)"), "%s", msg);
	ck_assert_int_ge(err_offset(msg), 0);
	/* clipping to a window loads only the window */
	memset(dst, 0, np * STREAM_PAGE_SIZE);
	struct stream_mem_dst win = { .host = dst, .base_pfn = 5, .npages = 10, .clip = true };
	ck_assert_int_eq(decode(&er.m, &win, NULL, NULL), 0);
	ck_assert(!memcmp(dst, ram + 5 * STREAM_PAGE_SIZE, 10 * STREAM_PAGE_SIZE));
	for (size_t i = 10 * STREAM_PAGE_SIZE; i < np * STREAM_PAGE_SIZE; i++)
		ck_assert_uint_eq(dst[i], 0);
	/* verification only (no destination) */
	struct stream_mem_stats st;
	ck_assert_int_eq(decode(&er.m, NULL, &st, NULL), 0);
	ck_assert_uint_eq(st.pages[0] + st.pages[1] + st.pages[2], np);
	free(dst);
	free(ram);
	stream__mem_free(&er.m);
}
END_TEST

START_TEST(write_page_list)
{
	const uint64_t np = 40;
	uint8_t *ram = test_ram(np, 8);
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_grow(&m);
	stream__io_mem(&io, &m);
	struct stream_writer w;
	struct stream_writer_opts o = { .release = "SP3", .release_ordinal = 3 };
	ck_assert_int_eq(stream__writer_init(&w, &io, &o), 0);
	struct stream_mem_enc enc;
	struct err e = { 0 };
	ck_assert_int_eq(stream__mem_enc_init(&enc, NULL, &e), 0);
	struct stream_ram sr = { .host = ram, .npages = np };
	uint64_t pfns[] = { 1, 2, 3, 9, 10, 20, 39 };
	ck_assert_int_eq(stream__mem_write_pages(&w, &enc, &sr, pfns, 7), 0);
	ck_assert_uint_eq(enc.stats.records, 4);
	/* a pfn past the end of RAM */
	uint64_t bad = np;
	ck_assert_int_lt(stream__mem_write_pages(&w, &enc, &sr, &bad, 1), 0);
	ck_assert_msg(strstr(w.err.msg, "outside guest RAM"), "%s", w.err.msg);
	stream__mem_enc_free(&enc);
	stream__writer_free(&w);
	stream__mem_free(&m);
	free(ram);
}
END_TEST

START_TEST(index_random_access)
{
	const uint64_t np = 50;
	uint8_t *ram = test_ram(np, 9);
	struct enc_result er;
	encode(&er, ram, np, NULL, 3, true, true, true, 8);
	FILE *f = tmpfile();
	ck_assert_int_eq(fwrite(er.m.buf, 1, er.m.len, f), er.m.len);
	fflush(f);
	/* read the stream to find the index */
	struct stream_mem in;
	struct stream_io io;
	stream__mem_init_read(&in, er.m.buf, er.m.len);
	stream__io_mem(&io, &in);
	struct stream_reader r;
	stream__reader_init(&r, &io);
	struct stream_header h;
	ck_assert_int_eq(stream__read_header(&r, &h, NULL), 0);
	struct stream_rec rec;
	struct stream_index idx = { 0 };
	bool found = false;
	uint64_t index_at = 0;
	while (stream__next_record(&r, &rec) == 1) {
		if (rec.type == STREAM_REC_INDEX) {
			ck_assert_int_eq(stream__index_read(&r, &rec, &idx), 0);
			found = true;
			index_at = rec.off;
		} else {
			ck_assert_int_eq(stream__rec_skip(&r), 0);
		}
	}
	ck_assert(found);
	ck_assert(r.ended);
	ck_assert_uint_eq(r.index_offset, index_at);
	ck_assert_uint_eq(idx.n, 7);	/* 50 pages in runs of 8 */
	ck_assert(idx.sorted);
	struct stream_mem_dec dec;
	struct err e = { 0 };
	ck_assert_int_eq(stream__mem_dec_init(&dec, &e), 0);
	uint8_t page[STREAM_PAGE_SIZE];
	for (uint64_t pfn = 0; pfn < np; pfn++) {
		memset(page, 0xcc, sizeof(page));
		ck_assert_msg(stream__index_fetch_page(fileno(f), &h, &idx, &dec, pfn, page, &e) == 0,
			      "%s", e.msg);
		ck_assert(!memcmp(page, ram + pfn * STREAM_PAGE_SIZE, STREAM_PAGE_SIZE));
	}
	ck_assert_int_eq(stream__index_fetch_page(fileno(f), &h, &idx, &dec, np, page, &e), -ENOENT);
	/* a corrupted record is caught through the index too */
	const struct stream_index_entry *x = stream__index_find(&idx, 9);
	uint8_t b;
	ck_assert_int_eq(pread(fileno(f), &b, 1, (off_t)x->offset + 30), 1);
	b ^= 1;
	ck_assert_int_eq(pwrite(fileno(f), &b, 1, (off_t)x->offset + 30), 1);
	err__clear(&e);
	ck_assert_int_lt(stream__index_fetch_page(fileno(f), &h, &idx, &dec, 9, page, &e), 0);
	ck_assert_int_ge(err_offset(e.msg), 0);
	stream__mem_dec_free(&dec);
	stream__index_free(&idx);
	stream__reader_free(&r);
	fclose(f);
	free(ram);
	stream__mem_free(&er.m);
}
END_TEST

START_TEST(index_unsorted_lookup)
{
	struct stream_index idx = { 0 };
	stream__index_add(&idx, 0, 10, 100);
	stream__index_add(&idx, 20, 10, 200);
	ck_assert(idx.sorted);
	stream__index_add(&idx, 5, 2, 300);	/* a later round resends 5, 6 */
	ck_assert(!idx.sorted);
	ck_assert_uint_eq(stream__index_find(&idx, 5)->offset, 300);
	ck_assert_uint_eq(stream__index_find(&idx, 4)->offset, 100);
	ck_assert_uint_eq(stream__index_find(&idx, 29)->offset, 200);
	ck_assert_ptr_null(stream__index_find(&idx, 15));
	stream__index_free(&idx);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stream-mem");
	TCase *tc = tcase_create("mem");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, round_trip_kinds);
	tcase_add_test(tc, holes_are_not_read);
	tcase_add_test(tc, fresh_destination_and_rounds);
	tcase_add_test(tc, destination_bounds);
	tcase_add_test(tc, write_page_list);
	tcase_add_test(tc, index_random_access);
	tcase_add_test(tc, index_unsorted_lookup);
	suite_add_tcase(s, tc);
	return check_run(s);
}
