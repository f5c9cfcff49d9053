/* MEM records, sending side: runs of pages, one kind byte per page (zero,
 * raw, zstd), then the data of the non-zero pages in order. Pages known to be
 * holes are never read; contiguous raw pages go out as one piece, straight
 * from guest RAM into the channel. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "vmhop/stream.h"
#include "vmhop/util.h"

#define DEFAULT_RUN 1024

int stream__mem_enc_init(struct stream_mem_enc *enc,
			 const struct stream_mem_enc_opts *o, struct err *e)
{
	memset(enc, 0, sizeof(*enc));
	if (o)
		enc->o = *o;
	if (!enc->o.max_run)
		enc->o.max_run = DEFAULT_RUN;
	if (enc->o.max_run > STREAM_MEM_MAX_PAGES)
		return err__set(e, EINVAL, "max_run %u exceeds %u pages", enc->o.max_run,
				STREAM_MEM_MAX_PAGES);
	if (!enc->o.zstd_level)
		enc->o.zstd_level = 1;
	enc->kinds = malloc(enc->o.max_run);
	enc->clen = calloc(enc->o.max_run, sizeof(*enc->clen));
	if (!enc->kinds || !enc->clen)
		goto nomem;
	if (enc->o.compress) {
		enc->cctx = ZSTD_createCCtx();
		enc->scratch = malloc((size_t)enc->o.max_run * STREAM_PAGE_SIZE);
		if (!enc->cctx || !enc->scratch)
			goto nomem;
	}
	return 0;
nomem:
	stream__mem_enc_free(enc);
	return err__set(e, ENOMEM, "allocating the page encoder");
}

void stream__mem_enc_free(struct stream_mem_enc *enc)
{
	free(enc->kinds);
	free(enc->clen);
	free(enc->scratch);
	ZSTD_freeCCtx(enc->cctx);
	enc->kinds = NULL;
	enc->clen = NULL;
	enc->scratch = NULL;
	enc->cctx = NULL;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)(const void *)p;
	for (size_t i = 0; i < STREAM_PAGE_SIZE / 8; i += 8) {
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] |
		    q[i + 6] | q[i + 7])
			return false;
	}
	return true;
}

static inline bool test_bit(const uint64_t *map, uint64_t bit)
{
	return map[bit / 64] >> (bit % 64) & 1;
}

static int write_run(struct stream_writer *w, struct stream_mem_enc *enc,
		     const struct stream_ram *ram, uint64_t first, uint32_t n)
{
	bool compress = enc->cctx && w->hdr.format >= 2;
	uint64_t len = STREAM_MEM_HDR_SIZE + n;
	size_t used = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t pfn = first + i;
		const uint8_t *page = ram->host + pfn * STREAM_PAGE_SIZE;
		uint8_t kind = STREAM_PAGE_RAW;
		if ((ram->holes && test_bit(ram->holes, pfn)) ||
		    (enc->o.detect_zero && page_is_zero(page))) {
			kind = STREAM_PAGE_ZERO;
		} else if (compress) {
			size_t c = ZSTD_compressCCtx(enc->cctx, enc->scratch + used,
						     STREAM_PAGE_SIZE - 1, page,
						     STREAM_PAGE_SIZE, enc->o.zstd_level);
			/* Worth it only when it saves the length field and more. */
			if (!ZSTD_isError(c) && c + 4 < STREAM_PAGE_SIZE - 64) {
				kind = STREAM_PAGE_ZSTD;
				enc->clen[i] = (uint32_t)c;
				used += c;
			}
		}
		enc->kinds[i] = kind;
		if (kind == STREAM_PAGE_RAW)
			len += STREAM_PAGE_SIZE;
		else if (kind == STREAM_PAGE_ZSTD)
			len += 4 + enc->clen[i];
	}

	uint64_t rec_off = w->off;
	if (stream__rec_begin(w, STREAM_REC_MEM, 0, len))
		return w->error;
	stream__put_u64(w, first);
	stream__put_u32(w, n);
	stream__put_u32(w, 0);
	stream__put(w, enc->kinds, n);
	size_t zoff = 0;
	for (uint32_t i = 0; i < n && !w->error;) {
		uint8_t kind = enc->kinds[i];
		if (kind == STREAM_PAGE_RAW) {
			uint32_t j = i + 1;
			while (j < n && enc->kinds[j] == STREAM_PAGE_RAW)
				j++;
			stream__put(w, ram->host + (first + i) * STREAM_PAGE_SIZE,
				    (size_t)(j - i) * STREAM_PAGE_SIZE);
			enc->stats.pages[kind] += j - i;
			enc->stats.bytes[kind] += (uint64_t)(j - i) * STREAM_PAGE_SIZE;
			i = j;
			continue;
		}
		if (kind == STREAM_PAGE_ZSTD) {
			stream__put_u32(w, enc->clen[i]);
			stream__put(w, enc->scratch + zoff, enc->clen[i]);
			zoff += enc->clen[i];
			enc->stats.bytes[kind] += 4 + enc->clen[i];
		}
		enc->stats.pages[kind]++;
		i++;
	}
	if (stream__rec_end(w))
		return w->error;
	enc->stats.records++;
	if (w->build_index && stream__index_add(&w->index, first, n, rec_off) < 0)
		return stream__writer_fail(w, ENOMEM, "growing the page index");
	return 0;
}

int stream__mem_write_range(struct stream_writer *w, struct stream_mem_enc *enc,
			    const struct stream_ram *ram, uint64_t first_pfn,
			    uint64_t count)
{
	if (w->error)
		return w->error;
	if (first_pfn > ram->npages || count > ram->npages - first_pfn)
		return stream__writer_fail(w, EINVAL, "pages %llu+%llu lie outside guest RAM (%llu pages)",
					   (unsigned long long)first_pfn, (unsigned long long)count,
					   (unsigned long long)ram->npages);
	while (count) {
		uint32_t n = (uint32_t)MIN(count, (uint64_t)enc->o.max_run);
		if (write_run(w, enc, ram, first_pfn, n))
			return w->error;
		first_pfn += n;
		count -= n;
	}
	return 0;
}

int stream__mem_write_pages(struct stream_writer *w, struct stream_mem_enc *enc,
			    const struct stream_ram *ram, const uint64_t *pfns,
			    size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i + 1;
		while (j < n && pfns[j] == pfns[j - 1] + 1 && j - i < enc->o.max_run)
			j++;
		if (stream__mem_write_range(w, enc, ram, pfns[i], j - i))
			return w->error;
		i = j;
	}
	return w->error;
}
