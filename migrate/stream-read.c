/* Stream reader: pulls bytes from a struct stream_io, checks the header
 * against the release policy, unframes records and verifies every CRC. The
 * input is untrusted: every length is checked against a cap before it is
 * used, every error names the byte offset, and the first error sticks. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "vmhop/release.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"

#define RBUF_SIZE	(256 * 1024)
#define DIRECT_MIN	(64 * 1024)
#define CHUNK		(256 * 1024)

static int vfail(struct stream_reader *r, uint64_t off, int code,
		 const char *fmt, va_list ap)
{
	if (r->error)
		return r->error;
	char msg[400];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	r->error = -code;
	err__set(&r->err, code, "offset %llu: %s", (unsigned long long)off, msg);
	return r->error;
}

int stream__reader_fail(struct stream_reader *r, uint64_t off, int code,
			const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vfail(r, off, code, fmt, ap);
	va_end(ap);
	return rc;
}

#define fail stream__reader_fail

int stream__reader_init(struct stream_reader *r, struct stream_io *io)
{
	memset(r, 0, sizeof(*r));
	r->io = io;
	r->max_alloc = STREAM_MAX_ALLOC;
	r->buf = malloc(RBUF_SIZE);
	if (!r->buf)
		return fail(r, 0, ENOMEM, "allocating the stream buffer");
	r->cap = RBUF_SIZE;
	return 0;
}

void stream__reader_free(struct stream_reader *r)
{
	free(r->buf);
	stream_hash__free(&r->digest);
	r->buf = NULL;
}

static void digest(struct stream_reader *r, const void *p, size_t n)
{
	stream_hash__update(&r->digest, p, n);
}

static void truncated(struct stream_reader *r)
{
	if (r->in_rec)
		fail(r, r->off, ENODATA,
		     "truncated stream: record %s at offset %llu ends early (%llu payload bytes missing)",
		     stream__rec_name(r->rec.type), (unsigned long long)r->rec.off,
		     (unsigned long long)r->rec_left);
	else if (!r->have_hdr)
		fail(r, r->off, ENODATA, "truncated stream: shorter than its %u-byte header",
		     STREAM_HEADER_SIZE);
	else
		fail(r, r->off, ENODATA, "truncated stream: no END record");
}

static bool pull(struct stream_reader *r, void *dst, size_t want, size_t *got)
{
	ssize_t n = r->io->read(r->io->opaque, dst, want);
	if (n < 0) {
		r->error = (int)n;
		err__setsys(&r->err, (int)-n, "offset %llu: reading the stream",
			    (unsigned long long)r->off);
		return false;
	}
	*got = (size_t)n;
	r->pulled += (uint64_t)n;
	return true;
}

/* At least `need` bytes buffered (need <= cap); false at end of stream or on
 * error. Until the header is accepted nothing past it is taken from the
 * channel, so a refused stream leaves the rest of it unread. */
static bool fill(struct stream_reader *r, size_t need)
{
	if (r->len - r->pos >= need)
		return true;
	if (r->pos) {
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->pos = 0;
	}
	while (r->len < need) {
		/* A channel that lends its bytes (borrow) is read in small
		 * steps, so big payloads go straight from it to their place. */
		size_t want = need - r->len, got;
		if (r->have_hdr)
			want = r->io->borrow ? MIN(MAX(want, (size_t)4096), r->cap - r->len)
					     : r->cap - r->len;
		if (!pull(r, r->buf + r->len, want, &got))
			return false;
		if (!got)
			return false;
		r->len += got;
	}
	return true;
}

/* Consumes n bytes into dst (NULL: discard), with the record CRC when crc. */
static bool take(struct stream_reader *r, void *dst, size_t n, bool crc)
{
	uint8_t *d = dst;
	while (n) {
		if (r->error)
			return false;
		size_t avail = r->len - r->pos;
		if (avail) {
			size_t c = MIN(avail, n);
			const uint8_t *s = r->buf + r->pos;
			if (d) {
				if (crc)
					r->crc = crc32c__copy(r->crc, d, s, c);
				else
					memcpy(d, s, c);
				d += c;
			} else if (crc) {
				r->crc = crc32c__update(r->crc, s, c);
			}
			digest(r, s, c);
			r->pos += c;
			r->off += c;
			n -= c;
			continue;
		}
		if (n >= DIRECT_MIN && r->io->borrow) {
			size_t got = 0;
			const uint8_t *s = r->io->borrow(r->io->opaque, MIN(n, (size_t)CHUNK), &got);
			if (!s || !got) {
				truncated(r);
				return false;
			}
			r->pulled += got;
			if (d) {
				r->crc = crc ? crc32c__copy(r->crc, d, s, got) : r->crc;
				if (!crc)
					memcpy(d, s, got);
				d += got;
			} else if (crc) {
				r->crc = crc32c__update(r->crc, s, got);
			}
			digest(r, s, got);
			r->off += got;
			n -= got;
			continue;
		}
		if (n >= DIRECT_MIN && d) {
			size_t got;
			if (!pull(r, d, MIN(n, (size_t)CHUNK), &got))
				return false;
			if (!got) {
				truncated(r);
				return false;
			}
			if (crc)
				r->crc = crc32c__update(r->crc, d, got);
			digest(r, d, got);
			d += got;
			r->off += got;
			n -= got;
			continue;
		}
		if (!fill(r, 1)) {
			if (!r->error)
				truncated(r);
			return false;
		}
	}
	return !r->error;
}

int stream__read_header(struct stream_reader *r, struct stream_header *h,
			const struct release_policy *pol)
{
	if (r->error)
		return r->error;
	if (!fill(r, STREAM_HEADER_SIZE)) {
		if (!r->error)
			fail(r, r->len, ENODATA, "truncated stream: %zu of the %u header bytes",
			     r->len, STREAM_HEADER_SIZE);
		return r->error;
	}
	const uint8_t *p = r->buf + r->pos;
	struct stream_header hd;
	struct err e = { 0 };
	if (stream__header_decode(p, &hd, &e) < 0) {
		r->error = -e.code;
		r->err = e;
		return r->error;
	}
	if (hd.features & STREAM_FEAT_INCOMPAT & ~STREAM_FEAT_KNOWN)
		return fail(r, 12, EPROTO, "unknown incompatible feature flags 0x%08x",
			    hd.features & STREAM_FEAT_INCOMPAT & ~STREAM_FEAT_KNOWN);
	if (pol) {
		if (release__check_incoming(pol, hd.release, hd.release_ordinal,
					    hd.format, &e) < 0) {
			r->error = -e.code;
			err__set(&r->err, e.code, "%s (stream header, offset 0)", e.msg);
			return r->error;
		}
	}
	if (hd.format < STREAM_FORMAT_MIN || hd.format > STREAM_FORMAT_MAX)
		return fail(r, 8, EPROTO, "stream format version %u is not supported (this code reads %u..%u)",
			    hd.format, STREAM_FORMAT_MIN, STREAM_FORMAT_MAX);
	if ((hd.features & STREAM_FEAT_DIGEST) && hd.format < 2)
		return fail(r, 12, EPROTO, "digest feature in a format %u stream", hd.format);
	if ((hd.features & STREAM_FEAT_DIGEST_TREE) && !(hd.features & STREAM_FEAT_DIGEST))
		return fail(r, 12, EPROTO, "digest tree feature without the digest");
	if ((hd.features & STREAM_FEAT_DIGEST) && !r->skip_digest &&
	    stream_hash__init(&r->digest, hd.features & STREAM_FEAT_DIGEST_TREE) < 0)
		return fail(r, 0, ENOMEM, "setting up SHA-256");
	r->hdr = hd;
	r->have_hdr = true;
	take(r, NULL, STREAM_HEADER_SIZE, false);
	if (h)
		*h = hd;
	return r->error;
}

static uint64_t cap_for(const struct stream_reader *r, uint16_t type, uint64_t *min)
{
	*min = 0;
	switch (type) {
	case STREAM_REC_END:
		*min = STREAM_END_LEN + ((r->hdr.features & STREAM_FEAT_DIGEST) ? STREAM_DIGEST_SIZE : 0);
		return *min;
	case STREAM_REC_SECTION:
		*min = 1 + 4 + 4 + 4 + 4 + 1;
		return STREAM_SECTION_MAX;
	case STREAM_REC_MEM:
		*min = STREAM_MEM_HDR_SIZE + 1;
		return STREAM_MEM_MAX_LEN;
	case STREAM_REC_INDEX:
		*min = 8;
		return STREAM_INDEX_MAX;
	case STREAM_REC_NOTE:
		return STREAM_NOTE_MAX;
	}
	return STREAM_RECORD_MAX;
}

static int read_end(struct stream_reader *r)
{
	uint64_t at = r->off;
	uint8_t want[STREAM_DIGEST_SIZE], got[STREAM_DIGEST_SIZE];
	r->index_offset = stream__get_u64(r);
	bool dig = stream_hash__active(&r->digest);
	if (dig && !r->error) {
		if (stream_hash__final(&r->digest, got) < 0)
			memset(got, 0, sizeof(got));	/* then a mismatch */
		stream__get(r, want, sizeof(want));
	}
	/* Dropped by stream__reader_skip_digest: consumed, not compared. */
	if (!dig && (r->hdr.features & STREAM_FEAT_DIGEST))
		stream__discard(r, STREAM_DIGEST_SIZE);
	if (stream__rec_close(r))
		return r->error;
	if (r->index_offset && (r->index_offset < STREAM_HEADER_SIZE || r->index_offset >= r->rec.off))
		return fail(r, at, EBADMSG, "END: index offset %llu is outside the stream",
			    (unsigned long long)r->index_offset);
	if (dig && memcmp(want, got, STREAM_DIGEST_SIZE))
		return fail(r, at + 8, EBADMSG, "stream SHA-256 digest mismatch");
	r->ended = true;
	return 0;
}

void stream__reader_skip_digest(struct stream_reader *r)
{
	r->skip_digest = true;
	stream_hash__free(&r->digest);
}

int stream__next_record(struct stream_reader *r, struct stream_rec *rec)
{
	for (;;) {
		if (r->error)
			return r->error;
		if (r->ended)
			return 0;
		if (!r->have_hdr)
			return fail(r, r->off, EINVAL, "record read before the header");
		if (r->in_rec)
			return fail(r, r->off, EINVAL, "record %s at offset %llu not finished",
				    stream__rec_name(r->rec.type), (unsigned long long)r->rec.off);
		uint8_t h[STREAM_REC_HDR_SIZE];
		uint64_t off = r->off;
		if (!fill(r, 1)) {
			if (!r->error)
				truncated(r);
			return r->error;
		}
		r->crc = 0;
		if (!take(r, h, sizeof(h), true))
			return r->error;	/* truncated() named the offset */
		struct stream_rec c = {
			.type = stream__rd16(h), .flags = stream__rd16(h + 2),
			.len = stream__rd32(h + 4), .off = off,
		};
		if (c.flags & ~STREAM_REC_F_KNOWN)
			return fail(r, off + 2, EPROTO, "record type 0x%04x has unknown flags 0x%04x",
				    c.type, c.flags);
		uint16_t since = stream__rec_since(c.type);
		if (!since || since > r->hdr.format) {
			if (!(c.flags & STREAM_REC_F_SKIPPABLE)) {
				if (!since)
					return fail(r, off, EPROTO, "unknown record type 0x%04x (not marked skippable)",
						    c.type);
				return fail(r, off, EPROTO, "record type %s is not part of format version %u",
					    stream__rec_name(c.type), r->hdr.format);
			}
			if (c.len > STREAM_RECORD_MAX)
				return fail(r, off + 4, EMSGSIZE, "record length %u exceeds the cap of %u",
					    c.len, STREAM_RECORD_MAX);
			r->in_rec = true;
			r->rec = c;
			r->rec_left = c.len;
			if (stream__rec_skip(r))
				return r->error;
			r->skipped++;
			continue;
		}
		uint64_t min, max = cap_for(r, c.type, &min);
		if (c.len > max || c.len < min) {
			if (min == max)
				return fail(r, off + 4, EMSGSIZE, "record %s has length %u, expected %llu",
					    stream__rec_name(c.type), c.len, (unsigned long long)min);
			return fail(r, off + 4, EMSGSIZE, "record %s length %u outside %llu..%llu",
				    stream__rec_name(c.type), c.len, (unsigned long long)min,
				    (unsigned long long)max);
		}
		r->in_rec = true;
		r->rec = c;
		r->rec_left = c.len;
		if (c.type == STREAM_REC_END)
			return read_end(r) ? r->error : 0;
		if (rec)
			*rec = c;
		return 1;
	}
}

static bool check_room(struct stream_reader *r, uint64_t n)
{
	if (r->error)
		return false;
	if (!r->in_rec) {
		fail(r, r->off, EINVAL, "payload read outside a record");
		return false;
	}
	if (n > r->rec_left) {
		fail(r, r->off, EBADMSG,
		     "record %s at offset %llu: a %llu-byte field runs past the end of its %u-byte payload",
		     stream__rec_name(r->rec.type), (unsigned long long)r->rec.off,
		     (unsigned long long)n, r->rec.len);
		return false;
	}
	return true;
}

void stream__get(struct stream_reader *r, void *p, size_t n)
{
	if (!check_room(r, n) || !take(r, p, n, true)) {
		memset(p, 0, n);
		return;
	}
	r->rec_left -= n;
}

void stream__discard(struct stream_reader *r, uint64_t n)
{
	if (check_room(r, n) && take(r, NULL, n, true))
		r->rec_left -= n;
}

uint8_t stream__get_u8(struct stream_reader *r)
{
	uint8_t b[1];
	stream__get(r, b, 1);
	return b[0];
}

uint16_t stream__get_u16(struct stream_reader *r)
{
	uint8_t b[2];
	stream__get(r, b, 2);
	return stream__rd16(b);
}

uint32_t stream__get_u32(struct stream_reader *r)
{
	uint8_t b[4];
	stream__get(r, b, 4);
	return stream__rd32(b);
}

uint64_t stream__get_u64(struct stream_reader *r)
{
	uint8_t b[8];
	stream__get(r, b, 8);
	return stream__rd64(b);
}

int stream__rec_close(struct stream_reader *r)
{
	if (r->error)
		return r->error;
	if (!r->in_rec)
		return fail(r, r->off, EINVAL, "no record to end");
	if (r->rec_left)
		return fail(r, r->off, EBADMSG, "record %s at offset %llu: %llu payload bytes left unread",
			    stream__rec_name(r->rec.type), (unsigned long long)r->rec.off,
			    (unsigned long long)r->rec_left);
	uint8_t c[STREAM_REC_CRC_SIZE];
	uint64_t at = r->off;
	uint32_t want = r->crc;
	if (!take(r, c, sizeof(c), false))
		return r->error;
	uint32_t got = stream__rd32(c);
	if (got != want)
		return fail(r, at, EBADMSG,
			    "checksum mismatch in record %s at offset %llu (stored %08x, computed %08x)",
			    stream__rec_name(r->rec.type), (unsigned long long)r->rec.off, got, want);
	r->in_rec = false;
	return 0;
}

int stream__rec_skip(struct stream_reader *r)
{
	stream__discard(r, r->rec_left);
	return stream__rec_close(r);
}

int stream__read_payload(struct stream_reader *r, uint32_t cap, uint8_t **out)
{
	*out = NULL;
	if (r->error)
		return r->error;
	if (!r->in_rec)
		return fail(r, r->off, EINVAL, "no record to read");
	uint64_t n = r->rec_left;
	if (n > cap || n > r->max_alloc)
		return fail(r, r->rec.off + 4, EMSGSIZE, "record %s payload of %llu bytes exceeds the cap of %u",
			    stream__rec_name(r->rec.type), (unsigned long long)n,
			    MIN(cap, r->max_alloc));
	uint8_t *p = NULL;
	if (n) {
		p = malloc(n);
		if (!p)
			return fail(r, r->off, ENOMEM, "allocating %llu bytes", (unsigned long long)n);
		stream__get(r, p, n);
	}
	if (stream__rec_close(r)) {
		free(p);
		return r->error;
	}
	*out = p;
	return 0;
}

int stream__expect_eof(struct stream_reader *r)
{
	if (r->error)
		return r->error;
	if (!r->ended)
		return fail(r, r->off, EINVAL, "the stream has not ended");
	if (r->len - r->pos)
		return fail(r, r->off, EBADMSG, "trailing data after the END record");
	uint8_t b;
	size_t got;
	if (!pull(r, &b, 1, &got))
		return r->error;
	if (got)
		return fail(r, r->off, EBADMSG, "trailing data after the END record");
	return 0;
}

int stream__reader_err(const struct stream_reader *r, int rc, const char *what, struct err *e)
{
	if (!e->code && r->err.code)
		err__set(e, r->err.code, "%s%s", what, r->err.msg);
	else if (!e->code)
		err__set(e, rc < 0 ? -rc : EIO, "%sreading failed", what);
	return rc < 0 ? rc : -EIO;
}
