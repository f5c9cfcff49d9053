/* INDEX records: where each MEM record of a snapshot file is (first pfn,
 * page count, record offset), so a restore can map or read memory lazily. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmhop/stream.h"
#include "vmhop/util.h"

#define MAX_ENTRIES ((STREAM_INDEX_MAX - 8) / STREAM_INDEX_ENTRY_SIZE)

int stream__index_add(struct stream_index *idx, uint64_t first_pfn,
		      uint32_t count, uint64_t offset)
{
	if (idx->n == idx->cap) {
		size_t cap = idx->cap ? idx->cap * 2 : 256;
		if (cap > MAX_ENTRIES)
			cap = MAX_ENTRIES;
		if (idx->n >= cap)
			return -E2BIG;
		void *p = realloc(idx->v, cap * sizeof(*idx->v));
		if (!p)
			return -ENOMEM;
		idx->v = p;
		idx->cap = cap;
	}
	if (idx->n == 0)
		idx->sorted = true;
	else {
		const struct stream_index_entry *l = &idx->v[idx->n - 1];
		if (first_pfn < l->first_pfn + l->count)
			idx->sorted = false;
	}
	idx->v[idx->n++] = (struct stream_index_entry){ first_pfn, count, offset };
	return 0;
}

void stream__index_free(struct stream_index *idx)
{
	free(idx->v);
	memset(idx, 0, sizeof(*idx));
}

int stream__index_write(struct stream_writer *w, const struct stream_index *idx)
{
	if (idx->n > MAX_ENTRIES)
		return stream__writer_fail(w, E2BIG, "index of %zu entries exceeds the cap", idx->n);
	if (stream__rec_begin(w, STREAM_REC_INDEX, 0,
			      8 + (uint64_t)idx->n * STREAM_INDEX_ENTRY_SIZE))
		return w->error;
	stream__put_u32(w, (uint32_t)idx->n);
	stream__put_u32(w, 0);
	for (size_t i = 0; i < idx->n && !w->error; i++) {
		stream__put_u64(w, idx->v[i].first_pfn);
		stream__put_u32(w, idx->v[i].count);
		stream__put_u32(w, 0);
		stream__put_u64(w, idx->v[i].offset);
	}
	return stream__rec_end(w);
}

int stream__index_read(struct stream_reader *r, const struct stream_rec *rec,
		       struct stream_index *idx)
{
	memset(idx, 0, sizeof(*idx));
	uint64_t at = stream__tell(r);
	uint32_t n = stream__get_u32(r);
	uint32_t reserved = stream__get_u32(r);
	if (r->error)
		return r->error;
	if ((uint64_t)n * STREAM_INDEX_ENTRY_SIZE + 8 != rec->len)
		return stream__reader_fail(r, at, EBADMSG, "INDEX count %u does not match its length %u",
					   n, rec->len);
	if (reserved)
		return stream__reader_fail(r, at + 4, EBADMSG, "INDEX reserved field is not zero");
	/* n * 24 + 8 == len <= STREAM_INDEX_MAX: the allocation is capped. */
	if (n) {
		idx->v = calloc(n, sizeof(*idx->v));
		if (!idx->v)
			return stream__reader_fail(r, at, ENOMEM, "allocating %u index entries", n);
	}
	idx->cap = n;
	uint64_t prev = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t eo = stream__tell(r);
		uint64_t first = stream__get_u64(r);
		uint32_t count = stream__get_u32(r);
		uint32_t rsv = stream__get_u32(r);
		uint64_t off = stream__get_u64(r);
		if (r->error)
			break;
		if (count == 0 || count > STREAM_MEM_MAX_PAGES || rsv ||
		    first > (UINT64_MAX >> STREAM_PAGE_SHIFT) - count) {
			stream__reader_fail(r, eo, EBADMSG, "INDEX entry %u is malformed", i);
			break;
		}
		if (off < STREAM_HEADER_SIZE || off >= rec->off || off <= prev) {
			stream__reader_fail(r, eo + 16, EBADMSG,
					    "INDEX entry %u points at offset %llu (must increase, before offset %llu)",
					    i, (unsigned long long)off, (unsigned long long)rec->off);
			break;
		}
		prev = off;
		if (stream__index_add(idx, first, count, off) < 0) {
			stream__reader_fail(r, eo, ENOMEM, "growing the index");
			break;
		}
	}
	if (stream__rec_close(r)) {
		stream__index_free(idx);
		return r->error;
	}
	return 0;
}

const struct stream_index_entry *stream__index_find(const struct stream_index *idx,
						    uint64_t pfn)
{
	if (idx->sorted) {
		size_t lo = 0, hi = idx->n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			const struct stream_index_entry *x = &idx->v[mid];
			if (pfn < x->first_pfn)
				hi = mid;
			else if (pfn - x->first_pfn >= x->count)
				lo = mid + 1;
			else
				return x;
		}
		return NULL;
	}
	for (size_t i = idx->n; i-- > 0;) {
		const struct stream_index_entry *x = &idx->v[i];
		if (pfn >= x->first_pfn && pfn - x->first_pfn < x->count)
			return x;
	}
	return NULL;
}

struct pread_io {
	int fd;
	uint64_t off;
};

static ssize_t pread_read(void *opaque, void *buf, size_t len)
{
	struct pread_io *p = opaque;
	for (;;) {
		ssize_t n = pread(p->fd, buf, len, (off_t)p->off);
		if (n >= 0) {
			p->off += (uint64_t)n;
			return n;
		}
		if (errno != EINTR)
			return -errno;
	}
}

int stream__index_fetch_page(int fd, const struct stream_header *h,
			     const struct stream_index *idx,
			     struct stream_mem_dec *dec, uint64_t pfn,
			     void *page, struct err *e)
{
	const struct stream_index_entry *x = stream__index_find(idx, pfn);
	if (!x)
		return err__set(e, ENOENT, "page %llu is in no MEM record of the index",
				(unsigned long long)pfn);
	struct pread_io pio = { .fd = fd, .off = x->offset };
	struct stream_io io = { .read = pread_read, .opaque = &pio };
	struct stream_reader r;
	int rc = stream__reader_init(&r, &io);
	if (rc) {
		stream__reader_free(&r);
		return err__set(e, -rc, "%s", r.err.msg);
	}
	/* Positioned at the record, as if the header had just been read. */
	r.hdr = *h;
	r.hdr.features &= ~STREAM_FEAT_DIGEST;
	r.have_hdr = true;
	r.off = x->offset;
	struct stream_rec rec;
	rc = stream__next_record(&r, &rec);
	if (rc == 1 && (rec.type != STREAM_REC_MEM))
		rc = stream__reader_fail(&r, x->offset, EBADMSG, "index points at a %s record, not MEM",
					 stream__rec_name(rec.type));
	if (rc == 1) {
		struct stream_mem_dst dst = {
			.host = page, .base_pfn = pfn, .npages = 1, .clip = true,
		};
		rc = stream__mem_read(&r, &rec, dec, &dst);
		if (!rc && (dec->last_first_pfn != x->first_pfn || dec->last_count != x->count))
			rc = stream__reader_fail(&r, x->offset, EBADMSG,
						 "MEM record at offset %llu does not match its index entry",
						 (unsigned long long)x->offset);
	} else if (rc == 0) {
		rc = stream__reader_fail(&r, x->offset, EBADMSG, "index points at the END record");
	}
	if (rc < 0)
		err__set(e, r.err.code ? r.err.code : -rc, "%s", r.err.msg);
	stream__reader_free(&r);
	return rc < 0 ? rc : 0;
}
