/* The vmhop stream: one byte format for live migration and snapshot files.
 *
 * Layout (little-endian, documented byte by byte in vmhop-stream(5)):
 *   header (40 bytes) | record* | END record
 *   record = u16 type | u16 flags | u32 length | payload | u32 crc32c
 *
 * A writer buffers bytes towards a `struct stream_io`; a reader pulls them.
 * Both keep the first error (sticky, QEMU-file style): put/get helpers never
 * fail loudly, callers check at record boundaries (stream__rec_end,
 * stream__rec_close, stream__next_record, stream__finish). The message,
 * starting with the byte offset of the defect, is in w->err / r->err.
 * Library code: nothing here prints or exits. */
#ifndef VMHOP_STREAM_H
#define VMHOP_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmhop/err.h"
#include "vmhop/stream-hash.h"

struct release_policy;

/* ---- format constants ---------------------------------------------------- */

#define STREAM_MAGIC		"VMHOPSTR"	/* 8 bytes, no NUL */
#define STREAM_MAGIC_LEN	8
#define STREAM_HEADER_SIZE	40
#define STREAM_REC_HDR_SIZE	8
#define STREAM_REC_CRC_SIZE	4
#define STREAM_PAGE_SHIFT	12
#define STREAM_PAGE_SIZE	(1u << STREAM_PAGE_SHIFT)
#define STREAM_RELEASE_NAME_MAX	16		/* including the NUL */

/* Format versions this code reads and writes. What each one adds:
 *  1: END, SECTION, MEM (zero and raw pages), NOTE
 *  2: zstd-compressed pages, the SHA-256 digest feature
 *  3: INDEX records */
#define STREAM_FORMAT_MIN	1
#define STREAM_FORMAT_MAX	3

enum stream_rec_type {
	STREAM_REC_END = 1,
	STREAM_REC_SECTION = 2,
	STREAM_REC_MEM = 3,
	STREAM_REC_INDEX = 4,
	STREAM_REC_NOTE = 5,
};

#define STREAM_REC_F_SKIPPABLE	0x0001u	/* a reader that does not know the
					 * type may skip the record */
#define STREAM_REC_F_KNOWN	STREAM_REC_F_SKIPPABLE

/* Header feature flags. Bits 0-15 are "incompatible": a reader refuses a
 * stream with a bit it does not know. Bits 16-31 may be ignored. */
#define STREAM_FEAT_DIGEST	0x00000001u	/* END carries SHA-256 (v2+) */
/* With DIGEST: END's digest is SHA-256 over the SHA-256 of each
 * STREAM_TREE_CHUNK bytes of the stream in order (the last chunk shorter),
 * so that several threads can hash one stream. */
#define STREAM_FEAT_DIGEST_TREE	0x00000002u
#define STREAM_FEAT_INCOMPAT	0x0000ffffu
#define STREAM_FEAT_KNOWN	(STREAM_FEAT_DIGEST | STREAM_FEAT_DIGEST_TREE)
#define STREAM_TREE_CHUNK	(2u << 20)

/* ---- caps: the stream is untrusted input --------------------------------- */

/* No allocation driven by a length read from a stream exceeds this. */
#define STREAM_MAX_ALLOC	(64u << 20)
#define STREAM_RECORD_MAX	(512u << 20)	/* any record's payload */
#define STREAM_SECTION_MAX	(16u << 20)	/* SECTION payload (allocated) */
#define STREAM_NOTE_MAX		(64u << 10)	/* NOTE payload (allocated) */
#define STREAM_INDEX_MAX	(STREAM_MAX_ALLOC)	/* INDEX payload (allocated) */
#define STREAM_MEM_MAX_PAGES	65536u		/* pages in one MEM record */
#define STREAM_MEM_HDR_SIZE	16
#define STREAM_MEM_MAX_LEN	(STREAM_MEM_HDR_SIZE + \
				 STREAM_MEM_MAX_PAGES * (1u + 4u + STREAM_PAGE_SIZE))
#define STREAM_END_LEN		8		/* + 32 with STREAM_FEAT_DIGEST */
#define STREAM_DIGEST_SIZE	32
#define STREAM_INDEX_ENTRY_SIZE	24

/* ---- CRC32C (crc32c.c) ---------------------------------------------------- */

/* Standard CRC32C; chain with crc32c__update(crc32c__update(0, a), b). */
uint32_t crc32c__update(uint32_t crc, const void *buf, size_t len);
/* memcpy(dst, src, len) and the CRC of the bytes in one pass. */
uint32_t crc32c__copy(uint32_t crc, void *dst, const void *src, size_t len);
uint32_t crc32c__update_sw(uint32_t crc, const void *buf, size_t len);
bool crc32c__hw_available(void);

/* ---- byte channels (stream-io.c) ----------------------------------------- */

/* The channel a writer or reader works on. read returns bytes read (> 0),
 * 0 at end of stream, or -errno; write returns bytes written (> 0) or
 * -errno. The optional reserve/borrow let a memory-like channel be written
 * or read in place (no second copy): reserve hands out up to `want` bytes of
 * sink space that count as written; borrow hands out up to `want` bytes of
 * source data that count as read. Either may be NULL. */
struct stream_io {
	ssize_t (*read)(void *opaque, void *buf, size_t len);
	ssize_t (*write)(void *opaque, const void *buf, size_t len);
	void *(*reserve)(void *opaque, size_t want, size_t *got);
	const void *(*borrow)(void *opaque, size_t want, size_t *got);
	void *opaque;
};

/* A memory channel: reads consume buf[pos..len); writes append at len,
 * growing the buffer when `grow` (else failing with -ENOSPC at cap). */
struct stream_mem {
	uint8_t *buf;
	size_t len, cap, pos;
	bool grow;
	bool owned;	/* buf was allocated here; stream__mem_free frees it */
};

void stream__io_fd(struct stream_io *io, int fd);
void stream__io_mem(struct stream_io *io, struct stream_mem *m);
/* A read-only view of len bytes at buf (not copied). */
void stream__mem_init_read(struct stream_mem *m, const void *buf, size_t len);
/* A sink of fixed capacity over caller memory. */
void stream__mem_init_fixed(struct stream_mem *m, void *buf, size_t cap);
/* A growable sink (malloc'ed). */
void stream__mem_init_grow(struct stream_mem *m);
void stream__mem_free(struct stream_mem *m);

/* A staging channel (stream-stage.c) for streams whose source memory keeps
 * changing while it is written (a running guest): page data is copied into
 * the stage with its checksum in one pass, so both describe the same bytes.
 * Hand `io` to the writer; staged bytes go to the sink before any later
 * write, and at stream_stage__flush (call it after stream__flush). The sink
 * takes everything or returns -errno; the first error sticks. */
typedef int (*stream_stage_sink_fn)(void *opaque, const void *buf, size_t len);

struct stream_stage {
	struct stream_io io;
	stream_stage_sink_fn sink;
	void *sink_opaque;
	uint8_t *buf;
	size_t len, cap;
	int error;
};

int stream_stage__init(struct stream_stage *s, size_t cap, stream_stage_sink_fn sink,
		       void *opaque);
int stream_stage__flush(struct stream_stage *s);
void stream_stage__free(struct stream_stage *s);

/* ---- header --------------------------------------------------------------- */

struct stream_header {
	uint16_t format;		/* stream format version */
	uint16_t release_ordinal;	/* producer's release level, 1 = SP1 */
	uint32_t features;		/* STREAM_FEAT_* */
	char release[STREAM_RELEASE_NAME_MAX];	/* producer's level name */
};

/* ---- writer (stream-write.c) ---------------------------------------------- */

struct stream_index_entry {
	uint64_t first_pfn;
	uint32_t count;
	uint64_t offset;	/* stream offset of the MEM record header */
};

struct stream_index {
	struct stream_index_entry *v;
	size_t n, cap;
	bool sorted;		/* by pfn, no overlaps: binary search works */
};

struct stream_writer_opts {
	uint16_t format;		/* 0: STREAM_FORMAT_MAX */
	uint16_t release_ordinal;
	const char *release;		/* level name, e.g. "SP3" */
	uint32_t features;		/* STREAM_FEAT_* */
	bool index;			/* track MEM records, write INDEX at the
					 * end (format >= 3; ignored below) */
};

/* The digest taken elsewhere (a thread reading the file back: file-hasher.h)
 * instead of inline: at stream__finish, once the stream's first len bytes
 * are all handed to the io, final gives their SHA-256. */
struct stream_digest_source {
	int (*final)(void *opaque, uint64_t len, uint8_t md[STREAM_DIGEST_SIZE], struct err *e);
	void *opaque;
};

struct stream_writer {
	struct stream_io *io;
	uint8_t *buf;
	size_t len, cap;
	uint64_t off;			/* stream bytes produced so far */
	int error;			/* first -errno, sticky */
	struct err err;
	struct stream_header hdr;
	/* the open record */
	bool in_rec;
	uint16_t rec_type;
	uint64_t rec_off, rec_left;
	uint32_t crc;
	struct stream_hash digest;	/* with STREAM_FEAT_DIGEST */
	const struct stream_digest_source *digest_src;	/* instead of digest */
	bool build_index;
	struct stream_index index;
	bool finished;
};

/* Allocates the buffer and writes the header. */
int stream__writer_init(struct stream_writer *w, struct stream_io *io,
			const struct stream_writer_opts *o);
/* Same, with the format and level of a release level (release.h). */
int stream__writer_init_release(struct stream_writer *w, struct stream_io *io,
				const struct release_policy *pol,
				uint32_t features, bool index);
void stream__writer_free(struct stream_writer *w);
/* With STREAM_FEAT_DIGEST, right after init: the digest comes from src. */
void stream__writer_digest_from(struct stream_writer *w, const struct stream_digest_source *src);

/* A record of exactly `len` payload bytes: begin, put..., end. */
int stream__rec_begin(struct stream_writer *w, uint16_t type, uint16_t flags,
		      uint64_t len);
void stream__put(struct stream_writer *w, const void *p, size_t n);
/* As stream__put, for bytes that stay as they are until it returns (a
 * buffer the caller read a file into, not a running guest's RAM): a large
 * piece goes to the channel's write from where it is, without the staging
 * copy (struct stream_stage) that changing memory needs. */
void stream__put_stable(struct stream_writer *w, const void *p, size_t n);
void stream__put_u8(struct stream_writer *w, uint8_t v);
void stream__put_u16(struct stream_writer *w, uint16_t v);
void stream__put_u32(struct stream_writer *w, uint32_t v);
void stream__put_u64(struct stream_writer *w, uint64_t v);
int stream__rec_end(struct stream_writer *w);
int stream__write_record(struct stream_writer *w, uint16_t type, uint16_t flags,
			 const void *payload, size_t len);
/* A NOTE record (skippable, free text: producer, host, purpose). */
int stream__write_note(struct stream_writer *w, const char *text);
/* Writes INDEX (if tracked) and END (with the digest), then flushes. */
int stream__finish(struct stream_writer *w);
int stream__flush(struct stream_writer *w);
/* Records an error in the writer (for callers that produce payload). */
int stream__writer_fail(struct stream_writer *w, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Into e: the writer's own message when it has one, else "stream error"
 * for a negative rc. Returns the error (negative), or rc when it is not. */
int stream__writer_err(const struct stream_writer *w, int rc, struct err *e);

/* ---- reader (stream-read.c) ----------------------------------------------- */

struct stream_rec {
	uint16_t type, flags;
	uint32_t len;		/* payload bytes */
	uint64_t off;		/* stream offset of the record header */
};

struct stream_reader {
	struct stream_io *io;
	uint8_t *buf;
	size_t pos, len, cap;
	uint64_t off;		/* stream offset of buf[pos] */
	uint64_t pulled;	/* bytes taken from the channel so far */
	int error;		/* first -errno, sticky */
	struct err err;
	struct stream_header hdr;
	bool have_hdr;
	bool in_rec;
	struct stream_rec rec;
	uint64_t rec_left;
	uint32_t crc;
	struct stream_hash digest;	/* with STREAM_FEAT_DIGEST */
	bool ended;		/* END read and verified */
	uint64_t index_offset;	/* from END: 0 when the stream has no index */
	uint64_t skipped;	/* unknown skippable records skipped */
	uint32_t max_alloc;	/* STREAM_MAX_ALLOC unless lowered */
	bool skip_digest;	/* stream__reader_skip_digest */
};

int stream__reader_init(struct stream_reader *r, struct stream_io *io);
void stream__reader_free(struct stream_reader *r);
/* Reads and checks the header: magic, checksum, features, format version,
 * and (when pol is not NULL) the release matrix: a stream from a newer
 * level or in a format this level does not read is refused here, before a
 * byte past the header is taken from the channel. With pol NULL every
 * format this code knows is accepted. */
int stream__read_header(struct stream_reader *r, struct stream_header *h,
			const struct release_policy *pol);
/* Before (or after) stream__read_header: the END record's SHA-256 is
 * consumed but neither computed nor compared (every record's CRC still is).
 * For a reader that leaves the whole-stream digest to a pass of its own (a
 * restore: `snapshot verify` checks it). */
void stream__reader_skip_digest(struct stream_reader *r);
/* The next record's header, checked: a known type of this format version
 * (unknown skippable ones are skipped here, counted in r->skipped), flags,
 * length within the type's cap. Returns 1 with *rec filled, 0 once END was
 * read and verified (digest, index offset), or -errno. */
int stream__next_record(struct stream_reader *r, struct stream_rec *rec);
/* Payload helpers: reading past the record's end is a sticky error. */
void stream__get(struct stream_reader *r, void *p, size_t n);
uint8_t stream__get_u8(struct stream_reader *r);
uint16_t stream__get_u16(struct stream_reader *r);
uint32_t stream__get_u32(struct stream_reader *r);
uint64_t stream__get_u64(struct stream_reader *r);
void stream__discard(struct stream_reader *r, uint64_t n);
/* Every payload byte must have been consumed; reads and checks the CRC. */
int stream__rec_close(struct stream_reader *r);
/* Discards the rest of the payload, then as stream__rec_close. */
int stream__rec_skip(struct stream_reader *r);
/* The whole payload into a malloc'ed buffer (len <= cap, <= max_alloc),
 * CRC verified. *out is NULL for an empty payload. */
int stream__read_payload(struct stream_reader *r, uint32_t cap, uint8_t **out);
/* After END: the channel must be at its end (files). */
int stream__expect_eof(struct stream_reader *r);
int stream__reader_fail(struct stream_reader *r, uint64_t off, int code,
			const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Into e (unless it already holds an error): the reader's own message, which
 * names the offset, prefixed with `what` ("" for none); or, without one,
 * "<what>reading failed". Returns rc when negative, else -EIO. */
int stream__reader_err(const struct stream_reader *r, int rc, const char *what, struct err *e);
/* Stream offset of the next payload byte. */
static inline uint64_t stream__tell(const struct stream_reader *r)
{
	return r->off;
}

const char *stream__rec_name(uint16_t type);
/* The first format version defining the record type, 0 if unknown. */
uint16_t stream__rec_since(uint16_t type);

/* ---- memory records (stream-mem-*.c) -------------------------------------- */

enum stream_page_kind {
	STREAM_PAGE_ZERO = 0,	/* zero or never populated: no data */
	STREAM_PAGE_RAW = 1,	/* 4096 bytes follow */
	STREAM_PAGE_ZSTD = 2,	/* u32 length + zstd frame (format 2+) */
	STREAM_PAGE_KINDS
};

struct stream_mem_stats {
	uint64_t pages[STREAM_PAGE_KINDS];
	uint64_t bytes[STREAM_PAGE_KINDS];	/* payload bytes per kind */
	uint64_t records;
};

struct stream_mem_enc_opts {
	bool compress;		/* try zstd per page (format 2+) */
	int zstd_level;		/* 0: 1 */
	bool detect_zero;	/* scan pages not known to be holes */
	uint32_t max_run;	/* pages per record, 0: 1024 */
};

struct stream_mem_enc {
	struct stream_mem_enc_opts o;
	void *cctx;		/* ZSTD_CCtx */
	uint8_t *kinds;
	uint32_t *clen;
	uint8_t *scratch;	/* compressed pages of one record */
	struct stream_mem_stats stats;
};

int stream__mem_enc_init(struct stream_mem_enc *enc,
			 const struct stream_mem_enc_opts *o, struct err *e);
void stream__mem_enc_free(struct stream_mem_enc *enc);

/* Guest RAM on the sending side: `npages` pages at host, guest page frame
 * numbers 0..npages-1. holes (optional) is a bitmap by pfn of pages known
 * never populated (SEEK_HOLE, mincore): they are sent as zero pages
 * without being read. */
struct stream_ram {
	const uint8_t *host;
	uint64_t npages;
	const uint64_t *holes;
};

/* MEM records for pages first_pfn..first_pfn+count-1. */
int stream__mem_write_range(struct stream_writer *w, struct stream_mem_enc *enc,
			    const struct stream_ram *ram, uint64_t first_pfn,
			    uint64_t count);
/* MEM records for a list of pfns (contiguous ones share a record). */
int stream__mem_write_pages(struct stream_writer *w, struct stream_mem_enc *enc,
			    const struct stream_ram *ram, const uint64_t *pfns,
			    size_t n);

/* Where decoded pages go: pfns base_pfn..base_pfn+npages-1 at host. A page
 * outside that window is an error, or skipped (still checked) when `clip`.
 * With `fresh` (destination starts zeroed) and a `written` bitmap (by pfn -
 * base_pfn, npages bits, maintained by the decoder), a zero page for a page
 * never written costs nothing; otherwise zero pages are cleared. */
struct stream_mem_dst {
	uint8_t *host;
	uint64_t base_pfn;
	uint64_t npages;
	uint64_t *written;
	bool fresh;
	bool clip;
};

struct stream_mem_dec {
	void *dctx;		/* ZSTD_DCtx */
	uint8_t *kinds;
	uint8_t *scratch;	/* one compressed page / one page */
	struct stream_mem_stats stats;
	uint64_t last_first_pfn;
	uint32_t last_count;
};

int stream__mem_dec_init(struct stream_mem_dec *dec, struct err *e);
void stream__mem_dec_free(struct stream_mem_dec *dec);
/* Decodes the MEM record whose header stream__next_record returned; with
 * dst NULL the pages are checked (zstd frames decompressed) and counted
 * only. Ends the record (CRC checked). */
int stream__mem_read(struct stream_reader *r, const struct stream_rec *rec,
		     struct stream_mem_dec *dec, const struct stream_mem_dst *dst);

/* Index-only decoding (a restore that maps memory instead of copying it):
 * the record is checked exactly as by stream__mem_read (caps, kinds, pages
 * within 0..npages-1, zstd frames decompressed, the CRC) but no page is
 * copied anywhere. visit is called for each run of pages of one kind, in
 * order: n pages from pfn; data_off is the stream offset of the first raw
 * page's bytes, or of a zstd page's u32 length (n is 1 then); unused for
 * zero pages. A negative return from visit fails the record with -rc. The
 * CRC is only known good once this returns 0: a caller must not act on
 * what visit saw before that. */
typedef int (*stream_mem_visit_fn)(void *opaque, uint64_t pfn, uint32_t n, uint8_t kind,
				   uint64_t data_off);
int stream__mem_scan(struct stream_reader *r, const struct stream_rec *rec,
		     struct stream_mem_dec *dec, uint64_t npages, stream_mem_visit_fn visit,
		     void *opaque);

/* ---- index (stream-index.c) ----------------------------------------------- */

int stream__index_add(struct stream_index *idx, uint64_t first_pfn,
		      uint32_t count, uint64_t offset);
void stream__index_free(struct stream_index *idx);
/* Writes an INDEX record (format 3+). */
int stream__index_write(struct stream_writer *w, const struct stream_index *idx);
/* Reads and validates an INDEX record: entries point before the record,
 * in increasing offset order, within the caps. */
int stream__index_read(struct stream_reader *r, const struct stream_rec *rec,
		       struct stream_index *idx);
/* The entry whose MEM record holds pfn (the newest when several do). */
const struct stream_index_entry *stream__index_find(const struct stream_index *idx,
						    uint64_t pfn);
/* Random access in a snapshot file: reads the one page pfn through the
 * index into page (STREAM_PAGE_SIZE bytes), checking the record's CRC. */
int stream__index_fetch_page(int fd, const struct stream_header *h,
			     const struct stream_index *idx,
			     struct stream_mem_dec *dec, uint64_t pfn,
			     void *page, struct err *e);

/* ---- small buffers for section payloads (stream-buf.c) -------------------- */

/* A growable output buffer with a sticky error. */
struct stream_buf {
	uint8_t *data;
	size_t len, cap;
	int error;
};

void stream_buf__init(struct stream_buf *b);
void stream_buf__free(struct stream_buf *b);
void stream_buf__put(struct stream_buf *b, const void *p, size_t n);
void stream_buf__put_u8(struct stream_buf *b, uint8_t v);
void stream_buf__put_u16(struct stream_buf *b, uint16_t v);
void stream_buf__put_u32(struct stream_buf *b, uint32_t v);
void stream_buf__put_u64(struct stream_buf *b, uint64_t v);
/* Reserves n bytes at the end; returns their position (for patching). */
size_t stream_buf__skip(struct stream_buf *b, size_t n);
void stream_buf__patch_u32(struct stream_buf *b, size_t at, uint32_t v);

/* A bounded input cursor with a sticky error; base is the stream offset of
 * p[0], so errors can name where they are. */
struct stream_cur {
	const uint8_t *p;
	size_t len, pos;
	uint64_t base;
	int error;
	uint64_t error_off;
};

void stream_cur__init(struct stream_cur *c, const void *p, size_t len,
		      uint64_t base);
void stream_cur__get(struct stream_cur *c, void *p, size_t n);
const uint8_t *stream_cur__take(struct stream_cur *c, size_t n);
uint8_t stream_cur__get_u8(struct stream_cur *c);
uint16_t stream_cur__get_u16(struct stream_cur *c);
uint32_t stream_cur__get_u32(struct stream_cur *c);
uint64_t stream_cur__get_u64(struct stream_cur *c);
static inline size_t stream_cur__left(const struct stream_cur *c)
{
	return c->len - c->pos;
}
static inline uint64_t stream_cur__off(const struct stream_cur *c)
{
	return c->base + c->pos;
}

/* Little-endian helpers. */
static inline void stream__le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void stream__le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void stream__le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t stream__rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t stream__rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static inline uint64_t stream__rd64(const uint8_t *p)
{
	return (uint64_t)stream__rd32(p) | (uint64_t)stream__rd32(p + 4) << 32;
}

/* Header encode/decode (stream-header.c): 40 bytes, CRC included. */
void stream__header_encode(const struct stream_header *h,
			   uint8_t out[STREAM_HEADER_SIZE]);
/* Magic, reserved bytes, CRC, name; not the release or format policy. */
int stream__header_decode(const uint8_t in[STREAM_HEADER_SIZE],
			  struct stream_header *h, struct err *e);

#endif
