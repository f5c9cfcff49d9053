/* MEM records, receiving side: checks the record against the caps and the
 * destination window before a byte of it lands, then copies raw pages
 * straight from the channel into guest RAM (CRC in the same pass),
 * decompresses zstd pages in place and clears zero pages only when they
 * might hold data. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "vmhop/stream.h"
#include "vmhop/util.h"

int stream__mem_dec_init(struct stream_mem_dec *dec, struct err *e)
{
	memset(dec, 0, sizeof(*dec));
	dec->dctx = ZSTD_createDCtx();
	dec->kinds = malloc(STREAM_MEM_MAX_PAGES);
	dec->scratch = malloc(2 * STREAM_PAGE_SIZE);
	if (!dec->dctx || !dec->kinds || !dec->scratch) {
		stream__mem_dec_free(dec);
		return err__set(e, ENOMEM, "allocating the page decoder");
	}
	return 0;
}

void stream__mem_dec_free(struct stream_mem_dec *dec)
{
	ZSTD_freeDCtx(dec->dctx);
	free(dec->kinds);
	free(dec->scratch);
	dec->dctx = NULL;
	dec->kinds = NULL;
	dec->scratch = NULL;
}

static inline bool test_bit(const uint64_t *map, uint64_t bit)
{
	return map[bit / 64] >> (bit % 64) & 1;
}

static inline void put_bit(uint64_t *map, uint64_t bit, bool on)
{
	if (on)
		map[bit / 64] |= 1ULL << (bit % 64);
	else
		map[bit / 64] &= ~(1ULL << (bit % 64));
}

/* Where pfn goes, or NULL when it is outside the window (clip). */
static uint8_t *where(const struct stream_mem_dst *dst, uint64_t pfn)
{
	if (!dst || pfn < dst->base_pfn || pfn - dst->base_pfn >= dst->npages)
		return NULL;
	return dst->host + (pfn - dst->base_pfn) * STREAM_PAGE_SIZE;
}

static void zero_page(const struct stream_mem_dst *dst, uint64_t pfn, uint8_t *p)
{
	uint64_t bit = pfn - dst->base_pfn;
	if (dst->fresh && dst->written && !test_bit(dst->written, bit))
		return;		/* never written since it was zeroed */
	memset(p, 0, STREAM_PAGE_SIZE);
	if (dst->written)
		put_bit(dst->written, bit, false);
}

static void mark(const struct stream_mem_dst *dst, uint64_t pfn, uint64_t n)
{
	if (!dst->written)
		return;
	for (uint64_t i = 0; i < n; i++)
		put_bit(dst->written, pfn - dst->base_pfn + i, true);
}

static int zstd_page(struct stream_reader *r, struct stream_mem_dec *dec,
		     const struct stream_mem_dst *dst, uint64_t pfn)
{
	uint64_t at = stream__tell(r);
	uint32_t clen = stream__get_u32(r);
	if (r->error)
		return r->error;
	if (clen == 0 || clen >= STREAM_PAGE_SIZE)
		return stream__reader_fail(r, at, EBADMSG, "zstd page %llu has length %u (allowed 1..%u)",
					   (unsigned long long)pfn, clen, STREAM_PAGE_SIZE - 1);
	stream__get(r, dec->scratch, clen);
	if (r->error)
		return r->error;
	uint8_t *to = where(dst, pfn);
	if (!to)
		to = dec->scratch + STREAM_PAGE_SIZE;
	size_t n = ZSTD_decompressDCtx(dec->dctx, to, STREAM_PAGE_SIZE, dec->scratch, clen);
	if (ZSTD_isError(n) || n != STREAM_PAGE_SIZE)
		return stream__reader_fail(r, at, EBADMSG, "zstd page %llu does not decompress to %u bytes%s%s",
					   (unsigned long long)pfn, STREAM_PAGE_SIZE,
					   ZSTD_isError(n) ? ": " : "",
					   ZSTD_isError(n) ? ZSTD_getErrorName(n) : "");
	if (to != dec->scratch + STREAM_PAGE_SIZE)
		mark(dst, pfn, 1);
	dec->stats.bytes[STREAM_PAGE_ZSTD] += 4 + clen;
	return 0;
}

/* Raw pages first..first+n-1: straight into the destination when it holds
 * them all, page by page at the window's edges. */
static void raw_pages(struct stream_reader *r, const struct stream_mem_dst *dst,
		      uint64_t first, uint64_t n)
{
	uint8_t *to = where(dst, first);
	if (to && where(dst, first + n - 1)) {
		stream__get(r, to, n * STREAM_PAGE_SIZE);
		mark(dst, first, n);
		return;
	}
	for (uint64_t i = 0; i < n && !r->error; i++) {
		to = where(dst, first + i);
		if (to) {
			stream__get(r, to, STREAM_PAGE_SIZE);
			mark(dst, first + i, 1);
		} else {
			stream__discard(r, STREAM_PAGE_SIZE);
		}
	}
}

/* The record's header and page kinds, checked against the caps, the format
 * version and the destination window (dst may be NULL: no window). */
static int mem_header(struct stream_reader *r, const struct stream_rec *rec,
		      struct stream_mem_dec *dec, const struct stream_mem_dst *dst,
		      uint64_t *first_out, uint32_t *count_out)
{
	uint64_t at = stream__tell(r);
	uint64_t first = stream__get_u64(r);
	uint32_t count = stream__get_u32(r);
	uint32_t flags = stream__get_u32(r);
	if (r->error)
		return r->error;
	if (count == 0 || count > STREAM_MEM_MAX_PAGES)
		return stream__reader_fail(r, at + 8, EBADMSG, "MEM record with %u pages (allowed 1..%u)",
					   count, STREAM_MEM_MAX_PAGES);
	if (flags)
		return stream__reader_fail(r, at + 12, EBADMSG, "MEM record reserved field is 0x%08x", flags);
	if (first > (UINT64_MAX >> STREAM_PAGE_SHIFT) - count)
		return stream__reader_fail(r, at, EBADMSG, "MEM record pfn %llu+%u overflows",
					   (unsigned long long)first, count);
	if ((uint64_t)rec->len < STREAM_MEM_HDR_SIZE + (uint64_t)count)
		return stream__reader_fail(r, rec->off + 4, EBADMSG,
					   "MEM record length %u cannot hold %u page kinds", rec->len, count);
	if (dst && !dst->clip &&
	    (first < dst->base_pfn || first - dst->base_pfn > dst->npages ||
	     count > dst->npages - (first - dst->base_pfn)))
		return stream__reader_fail(r, at, ERANGE,
					   "pages %llu..%llu lie outside the destination RAM (pfn %llu..%llu)",
					   (unsigned long long)first,
					   (unsigned long long)(first + count - 1),
					   (unsigned long long)dst->base_pfn,
					   (unsigned long long)(dst->base_pfn + dst->npages - 1));
	uint64_t kinds_at = stream__tell(r);
	stream__get(r, dec->kinds, count);
	if (r->error)
		return r->error;
	uint64_t need = STREAM_MEM_HDR_SIZE + (uint64_t)count, nz = 0;
	for (uint32_t i = 0; i < count; i++) {
		uint8_t k = dec->kinds[i];
		if (k >= STREAM_PAGE_KINDS)
			return stream__reader_fail(r, kinds_at + i, EBADMSG, "unknown page kind %u", k);
		if (k == STREAM_PAGE_ZSTD && r->hdr.format < 2)
			return stream__reader_fail(r, kinds_at + i, EBADMSG,
						   "zstd pages are not part of format version %u", r->hdr.format);
		if (k == STREAM_PAGE_RAW)
			need += STREAM_PAGE_SIZE;
		else if (k == STREAM_PAGE_ZSTD)
			need += 5, nz++;
	}
	uint64_t most = need + nz * (STREAM_PAGE_SIZE - 2);
	if (rec->len < need || rec->len > most)
		return stream__reader_fail(r, rec->off + 4, EBADMSG,
					   "MEM record length %u does not match its pages (%llu..%llu bytes)",
					   rec->len, (unsigned long long)need, (unsigned long long)most);
	*first_out = first;
	*count_out = count;
	return 0;
}

/* A MEM record read to its end: its CRC checked, counted, and its page
 * range kept for the caller. */
static int record_end(struct stream_reader *r, struct stream_mem_dec *dec, uint64_t first,
		      uint32_t count)
{
	if (stream__rec_close(r))
		return r->error;
	dec->stats.records++;
	dec->last_first_pfn = first;
	dec->last_count = count;
	return 0;
}

int stream__mem_read(struct stream_reader *r, const struct stream_rec *rec,
		     struct stream_mem_dec *dec, const struct stream_mem_dst *dst)
{
	uint64_t first;
	uint32_t count;
	int rc = mem_header(r, rec, dec, dst, &first, &count);
	if (rc)
		return rc;

	for (uint32_t i = 0; i < count && !r->error;) {
		uint8_t k = dec->kinds[i];
		uint64_t pfn = first + i;
		if (k == STREAM_PAGE_RAW) {
			uint32_t j = i + 1;
			while (j < count && dec->kinds[j] == STREAM_PAGE_RAW)
				j++;
			raw_pages(r, dst, pfn, j - i);
			dec->stats.pages[k] += j - i;
			dec->stats.bytes[k] += (uint64_t)(j - i) * STREAM_PAGE_SIZE;
			i = j;
			continue;
		}
		if (k == STREAM_PAGE_ZERO) {
			uint8_t *to = where(dst, pfn);
			if (to)
				zero_page(dst, pfn, to);
		} else if (zstd_page(r, dec, dst, pfn)) {
			break;
		}
		dec->stats.pages[k]++;
		i++;
	}
	return record_end(r, dec, first, count);
}

int stream__mem_scan(struct stream_reader *r, const struct stream_rec *rec,
		     struct stream_mem_dec *dec, uint64_t npages, stream_mem_visit_fn visit,
		     void *opaque)
{
	struct stream_mem_dst window = { .npages = npages };
	uint64_t first;
	uint32_t count;
	int rc = mem_header(r, rec, dec, &window, &first, &count);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < count && !r->error;) {
		uint8_t k = dec->kinds[i];
		uint32_t j = i + 1;
		if (k != STREAM_PAGE_ZSTD)
			while (j < count && dec->kinds[j] == k)
				j++;
		uint64_t at = stream__tell(r);
		if (k == STREAM_PAGE_RAW)
			stream__discard(r, (uint64_t)(j - i) * STREAM_PAGE_SIZE);
		else if (k == STREAM_PAGE_ZSTD && zstd_page(r, dec, NULL, first + i))
			break;
		if (r->error)
			break;
		dec->stats.pages[k] += j - i;
		if (k == STREAM_PAGE_RAW)
			dec->stats.bytes[k] += (uint64_t)(j - i) * STREAM_PAGE_SIZE;
		if ((rc = visit(opaque, first + i, j - i, k, at)) < 0)
			return stream__reader_fail(r, at, -rc, "indexing pages %llu..%llu",
						   (unsigned long long)(first + i),
						   (unsigned long long)(first + j - 1));
		i = j;
	}
	return record_end(r, dec, first, count);
}
