/* libFuzzer target: a MEM record payload (framed here with a valid checksum)
 * decoded into a destination: byte 0 picks the format version, byte 1 the
 * destination (strict window, clipped window, fresh memory, none). */
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > (1 << 20))
		return 0;
	uint16_t format = (uint16_t)(1 + data[0] % 3);
	uint8_t mode = data[1];
	size_t cap = size + 128;
	uint8_t *p = malloc(cap);
	size_t n = fz_frame(p, cap, format, STREAM_REC_MEM, data + 2, size - 2);
	static uint8_t ram[32 * STREAM_PAGE_SIZE];
	static uint64_t written;
	struct stream_mem_dst dst = {
		.host = ram, .base_pfn = mode & 8, .npages = 32 - (mode & 8),
		.written = (mode & 2) ? &written : NULL, .fresh = mode & 4, .clip = mode & 1,
	};
	struct stream_mem m;
	struct stream_io io;
	stream__mem_init_read(&m, p, n);
	stream__io_mem(&io, &m);
	struct stream_reader r;
	struct stream_mem_dec dec;
	struct err e = { 0 };
	stream__reader_init(&r, &io);
	stream__mem_dec_init(&dec, &e);
	struct stream_rec rec;
	if (!stream__read_header(&r, NULL, NULL) && stream__next_record(&r, &rec) == 1)
		stream__mem_read(&r, &rec, &dec, (mode & 16) ? NULL : &dst);
	stream__mem_dec_free(&dec);
	stream__reader_free(&r);
	free(p);
	return 0;
}
