/* libFuzzer target: a whole stream through the reader (header, framing,
 * sections parsed without a registry, pages decoded into a small window,
 * index). Odd first byte: checksums are repaired first, so mutations reach
 * the decoders behind them. */
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool fix = data[0] & 1;
	uint8_t *p = malloc(size);
	memcpy(p, data + 1, size - 1);
	size--;
	if (fix)
		fz_fix_crcs(p, size);
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_read(&m, p, size);
	stream__io_mem(&io, &m);
	struct stream_reader r;
	struct stream_mem_dec dec;
	struct err e = { 0 };
	stream__reader_init(&r, &io);
	r.max_alloc = 1 << 20;
	stream__mem_dec_init(&dec, &e);
	static uint8_t ram[16 * STREAM_PAGE_SIZE];
	static uint64_t written;
	struct stream_mem_dst dst = { .host = ram, .base_pfn = 0, .npages = 16,
				      .written = &written, .fresh = true, .clip = true };
	int rc = stream__read_header(&r, NULL, NULL);
	while (!rc) {
		struct stream_rec rec;
		rc = stream__next_record(&r, &rec);
		if (rc <= 0)
			break;
		if (rec.type == STREAM_REC_SECTION) {
			uint8_t *pl;
			rc = stream__read_payload(&r, STREAM_SECTION_MAX, &pl);
			if (!rc) {
				struct section_info si;
				rc = section__parse_info(pl, rec.len, rec.off + 8, &si, &e);
				free(pl);
			}
		} else if (rec.type == STREAM_REC_MEM) {
			rc = stream__mem_read(&r, &rec, &dec, &dst);
		} else if (rec.type == STREAM_REC_INDEX) {
			struct stream_index idx;
			rc = stream__index_read(&r, &rec, &idx);
			if (!rc) {
				stream__index_find(&idx, 3);
				stream__index_free(&idx);
			}
		} else {
			rc = stream__rec_skip(&r);
		}
	}
	if (!rc)
		stream__expect_eof(&r);
	stream__mem_dec_free(&dec);
	stream__reader_free(&r);
	free(p);
	return 0;
}
