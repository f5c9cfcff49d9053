/* The checking pass of a restore: each checkpoint file is mapped read-only
 * and read as a stream from memory, so every record's CRC is checked in
 * place (no copy) and each MEM record only says where its pages lie; the
 * pages stay in the mapping for vmm/lazy-mem.c. A large file is checked in
 * two halves at once, split at a record boundary: the second half's pages
 * are noted in a list and indexed after the first half's, so the newest
 * record of a page still wins. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/snapshot-internal.h"
#include "vmhop/lazy-mem.h"

/* Below this much left to check, a second thread costs more than it saves. */
#define SPLIT_MIN (32ull << 20)

int restore_file__open(struct restore_file *f, const char *path, const char *name,
		       const struct release_policy *pol, struct err *e)
{
	memset(f, 0, sizeof(*f));
	const char *sp = *name ? " " : "";
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0)
		return err__setsys(e, errno, "cannot open%s%s", sp, name);
	struct stat st;
	if (fstat(f->fd, &st) < 0)
		return err__setsys(e, errno, "fstat%s%s", sp, name);
	if (!S_ISREG(st.st_mode))
		return err__set(e, EINVAL, "%s is not a regular file", *name ? name : "it");
	f->len = (size_t)st.st_size;
	if (f->len) {
		void *p = mmap(NULL, f->len, PROT_READ, MAP_SHARED, f->fd, 0);
		if (p == MAP_FAILED)
			return err__setsys(e, errno, "cannot map%s%s", sp, name);
		f->map = p;
		(void)madvise(p, f->len, MADV_SEQUENTIAL);
	}
	stream__mem_init_read(&f->mem, f->map, f->len);
	stream__io_mem(&f->io, &f->mem);
	int rc = stream__reader_init(&f->r, &f->io);
	/* The END digest is `snapshot verify`'s to check: hashing every byte
	 * would cost more than the whole restore, and the CRCs checked here
	 * already catch any corrupt byte. */
	if (!rc)
		stream__reader_skip_digest(&f->r);
	if (!rc && (rc = stream__read_header(&f->r, &f->h, pol)) < 0)
		return stream__reader_err(&f->r, rc, "", e);
	return rc;
}

void restore_file__close(struct restore_file *f)
{
	stream__reader_free(&f->r);
	if (f->map && !f->handed)
		munmap(f->map, f->len);
	if (f->fd >= 0 && !f->handed)
		close(f->fd);
	f->map = NULL;
	f->fd = -1;
}

int restore_index__init(struct restore_index *x, uint64_t npages, struct err *e)
{
	memset(x, 0, sizeof(*x));
	x->npages = npages;
	if (!(x->lm = lazy_mem__new(npages, e)))
		return -ENOMEM;
	int rc = stream__mem_dec_init(&x->dec, e);
	if (rc < 0) {
		lazy_mem__destroy(x->lm);
		x->lm = NULL;
	}
	return rc;
}

void restore_index__free(struct restore_index *x)
{
	for (size_t i = 0; i < x->nr_secs; i++)
		free(x->secs[i].payload);
	free(x->secs);
	lazy_mem__destroy(x->lm);
	if (x->dec.kinds)
		stream__mem_dec_free(&x->dec);
	memset(x, 0, sizeof(*x));
}

static int hold(struct held_section **v, size_t *n, size_t *cap, struct stream_reader *r,
		const struct stream_rec *rec)
{
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 16;
		void *p = realloc(*v, c * sizeof(**v));
		if (!p)
			return stream__reader_fail(r, rec->off, ENOMEM, "out of memory");
		*v = p;
		*cap = c;
	}
	struct held_section *h = &(*v)[*n];
	h->base = rec->off + STREAM_REC_HDR_SIZE;
	h->len = rec->len;
	int rc = stream__read_payload(r, STREAM_SECTION_MAX, &h->payload);
	if (!rc)
		(*n)++;
	return rc;
}

int restore_index__hold(struct restore_index *x, uint8_t *payload, uint32_t len, uint64_t base,
			struct err *e)
{
	if (x->nr_secs == x->cap_secs) {
		size_t c = x->cap_secs ? 2 * x->cap_secs : 16;
		void *p = realloc(x->secs, c * sizeof(*x->secs));
		if (!p)
			return err__set(e, ENOMEM, "out of memory");
		x->secs = p;
		x->cap_secs = c;
	}
	x->secs[x->nr_secs++] = (struct held_section){ payload, len, base };
	return 0;
}

static int visit_index(void *opaque, uint64_t pfn, uint32_t n, uint8_t kind, uint64_t data_off)
{
	struct restore_index *x = opaque;
	lazy_mem__set(x->lm, pfn, n, x->file, kind, data_off);
	return 0;
}

int restore_index__mem(struct restore_index *x, struct restore_file *f,
		       const struct stream_rec *rec, struct err *e)
{
	int rc = stream__mem_scan(&f->r, rec, &x->dec, x->npages, visit_index, x);
	return rc < 0 ? stream__reader_err(&f->r, rc, "", e) : 0;
}

/* The second half of a file, checked on a thread of its own. */
struct run {
	uint64_t pfn, off;
	uint32_t n;
	uint8_t kind;
};

struct half {
	struct restore_index *x;
	bool hold;
	struct stream_mem mem;
	struct stream_io io;
	struct stream_reader r;
	struct stream_mem_dec dec;
	struct run *runs;
	size_t nr_runs, cap_runs;
	struct held_section *secs;
	size_t nr_secs, cap_secs;
	int rc;
};

static int visit_list(void *opaque, uint64_t pfn, uint32_t n, uint8_t kind, uint64_t data_off)
{
	struct half *h = opaque;
	if (h->nr_runs == h->cap_runs) {
		size_t c = h->cap_runs ? 2 * h->cap_runs : 256;
		void *p = realloc(h->runs, c * sizeof(*h->runs));
		if (!p)
			return -ENOMEM;
		h->runs = p;
		h->cap_runs = c;
	}
	h->runs[h->nr_runs++] = (struct run){ .pfn = pfn, .off = data_off, .n = n, .kind = kind };
	return 0;
}

/* Records from the reader's position: up to offset `stop` (a record
 * boundary), or to END and the end of the file when stop is 0. */
static int scan(struct stream_reader *r, struct stream_mem_dec *dec, uint64_t npages,
		stream_mem_visit_fn visit, void *opaque, uint64_t stop,
		struct held_section **secs, size_t *nr, size_t *cap)
{
	struct stream_rec rec;
	int rc;
	for (;;) {
		if (stop && stream__tell(r) >= stop)
			return stream__tell(r) == stop ? 0 :
				stream__reader_fail(r, stream__tell(r), EBADMSG, "records overrun offset %llu",
						    (unsigned long long)stop);
		if ((rc = stream__next_record(r, &rec)) <= 0)
			break;
		if (rec.type == STREAM_REC_MEM)
			rc = stream__mem_scan(r, &rec, dec, npages, visit, opaque);
		else if (rec.type == STREAM_REC_SECTION && secs)
			rc = hold(secs, nr, cap, r, &rec);
		else
			rc = stream__rec_skip(r);
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	if (stop)
		return stream__reader_fail(r, stream__tell(r), EBADMSG, "the stream ends before offset %llu",
					   (unsigned long long)stop);
	return stream__expect_eof(r);
}

static void *half_main(void *arg)
{
	struct half *h = arg;
	h->rc = scan(&h->r, &h->dec, h->x->npages, visit_list, h, 0,
		     h->hold ? &h->secs : NULL, &h->nr_secs, &h->cap_secs);
	return NULL;
}

/* A record boundary near the middle of [pos, len), found by following the
 * record lengths (checked for real by the readers), or 0. */
static uint64_t find_split(const uint8_t *map, uint64_t len, uint64_t pos)
{
	if (len - pos < SPLIT_MIN)
		return 0;
	uint64_t mid = pos + (len - pos) / 2, off = pos;
	while (off + STREAM_REC_HDR_SIZE <= len && off < mid) {
		if (stream__rd16(map + off) == STREAM_REC_END)
			return 0;
		off += STREAM_REC_HDR_SIZE + (uint64_t)stream__rd32(map + off + 4) + STREAM_REC_CRC_SIZE;
	}
	return off < len ? off : 0;
}

static void half_free(struct half *h)
{
	stream__reader_free(&h->r);
	if (h->dec.kinds)
		stream__mem_dec_free(&h->dec);
	for (size_t i = 0; i < h->nr_secs; i++)
		free(h->secs[i].payload);
	free(h->secs);
	free(h->runs);
}

/* The second half's reader: as if the first half had just been read. */
static int half_init(struct half *h, struct restore_file *f, uint64_t split, struct err *e)
{
	stream__mem_init_read(&h->mem, f->map + split, f->len - split);
	stream__io_mem(&h->io, &h->mem);
	int rc = stream__reader_init(&h->r, &h->io);
	if (!rc)
		rc = stream__mem_dec_init(&h->dec, e);
	else
		err__set(e, ENOMEM, "out of memory");
	if (rc < 0)
		return rc;
	stream__reader_skip_digest(&h->r);
	h->r.hdr = f->h;
	h->r.have_hdr = true;
	h->r.off = split;
	return 0;
}

int restore_index__add(struct restore_index *x, struct restore_file *f, struct err *e)
{
	if (f->handed)
		return 0;
	int rc = lazy_mem__add_file(x->lm, f->fd, f->map, f->len, e);
	if (rc < 0)
		return rc;
	f->handed = true;
	x->file = (unsigned)rc;
	x->files++;
	return 0;
}

int restore_index__file(struct restore_index *x, struct restore_file *f, bool hold_sections,
			struct err *e)
{
	int rc = restore_index__add(x, f, e);
	if (rc < 0)
		return rc;
	uint64_t split = f->map ? find_split(f->map, f->len, stream__tell(&f->r)) : 0;
	struct half h = { .x = x, .hold = hold_sections };
	pthread_t t;
	bool two = false;
	/* Without a second thread, the one pass does it all. */
	if (split && half_init(&h, f, split, e) == 0)
		two = pthread_create(&t, NULL, half_main, &h) == 0;
	err__clear(e);
	rc = scan(&f->r, &x->dec, x->npages, visit_index, x, two ? split : 0,
		  hold_sections ? &x->secs : NULL, &x->nr_secs, &x->cap_secs);
	if (rc < 0)
		rc = stream__reader_err(&f->r, rc, "", e);
	if (two) {
		pthread_join(t, NULL);
		if (!rc && h.rc < 0)
			rc = stream__reader_err(&h.r, h.rc, "", e);
		for (size_t i = 0; !rc && i < h.nr_runs; i++)
			lazy_mem__set(x->lm, h.runs[i].pfn, h.runs[i].n, x->file, h.runs[i].kind,
				      h.runs[i].off);
		for (size_t i = 0; !rc && i < h.nr_secs; i++) {
			if ((rc = restore_index__hold(x, h.secs[i].payload, h.secs[i].len,
						      h.secs[i].base, e)) == 0)
				h.secs[i].payload = NULL;
		}
		for (int k = 0; k < STREAM_PAGE_KINDS; k++)
			x->dec.stats.bytes[k] += h.dec.stats.bytes[k];
	}
	if (split)
		half_free(&h);
	return rc;
}
