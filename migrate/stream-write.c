/* Stream writer: buffers bytes towards a struct stream_io, frames records
 * (type, flags, length, payload, CRC32C) and keeps the first error. Large
 * payload pieces (guest pages) skip the buffer: they are copied straight
 * into the channel (reserve) or written from where they are, the CRC taken
 * in the same pass. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/release.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"

#define WBUF_SIZE	(256 * 1024)
#define DIRECT_MIN	(64 * 1024)	/* pieces this big bypass the buffer */
#define CHUNK		(256 * 1024)	/* direct pieces go out in chunks */

static int vfail(struct stream_writer *w, int code, const char *fmt, va_list ap)
{
	if (w->error)
		return w->error;
	char msg[400];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	w->error = -code;
	err__set(&w->err, code, "offset %llu: %s", (unsigned long long)w->off, msg);
	return w->error;
}

int stream__writer_fail(struct stream_writer *w, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vfail(w, code, fmt, ap);
	va_end(ap);
	return rc;
}

int stream__writer_err(const struct stream_writer *w, int rc, struct err *e)
{
	if (w->err.code)
		return err__set(e, w->err.code, "%s", w->err.msg);
	return rc < 0 ? err__set(e, -rc, "stream error") : rc;
}

#define fail stream__writer_fail

static void digest(struct stream_writer *w, const void *p, size_t n)
{
	stream_hash__update(&w->digest, p, n);
}

static void raw_write(struct stream_writer *w, const uint8_t *p, size_t n)
{
	while (n && !w->error) {
		ssize_t k = w->io->write(w->io->opaque, p, n);
		if (k <= 0) {
			int code = k < 0 ? (int)-k : EIO;
			w->error = -code;
			err__setsys(&w->err, code, "offset %llu: writing the stream",
				    (unsigned long long)w->off);
			return;
		}
		p += k;
		n -= (size_t)k;
	}
}

int stream__flush(struct stream_writer *w)
{
	if (w->len && !w->error)
		raw_write(w, w->buf, w->len);
	w->len = 0;
	return w->error;
}

/* stable: the bytes cannot change before this returns, so a channel that
 * can write them from where they are does, without the copy into reserved
 * space that keeps the checksum true to changing memory. */
static void emit_direct(struct stream_writer *w, const uint8_t *s, size_t n,
			bool crc, bool stable)
{
	stream__flush(w);
	while (n && !w->error) {
		size_t c = MIN(n, (size_t)CHUNK);
		if (w->io->reserve && !(stable && w->io->write)) {
			size_t got = 0;
			uint8_t *d = w->io->reserve(w->io->opaque, c, &got);
			if (!d || !got) {
				fail(w, ENOSPC, "the channel has no room for %zu bytes", c);
				return;
			}
			c = got;
			if (crc)
				w->crc = crc32c__copy(w->crc, d, s, c);
			else
				memcpy(d, s, c);
			/* The copy, not the source: the source may be changing. */
			digest(w, d, c);
		} else {
			raw_write(w, s, c);
			if (crc)
				w->crc = crc32c__update(w->crc, s, c);
			digest(w, s, c);
		}
		s += c;
		n -= c;
		w->off += c;
	}
}

/* Every byte of the stream passes here. */
static void emit_piece(struct stream_writer *w, const void *p, size_t n, bool crc, bool stable)
{
	const uint8_t *s = p;
	if (w->error)
		return;
	if (n >= DIRECT_MIN) {
		emit_direct(w, s, n, crc, stable);
		return;
	}
	while (n) {
		if (w->len == w->cap && stream__flush(w))
			return;
		size_t c = MIN(n, w->cap - w->len);
		if (crc)
			w->crc = crc32c__copy(w->crc, w->buf + w->len, s, c);
		else
			memcpy(w->buf + w->len, s, c);
		digest(w, w->buf + w->len, c);	/* the copy: the source may change */
		w->len += c;
		w->off += c;
		s += c;
		n -= c;
	}
}

static void emit(struct stream_writer *w, const void *p, size_t n, bool crc)
{
	emit_piece(w, p, n, crc, false);
}

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n >= STREAM_RELEASE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

int stream__writer_init(struct stream_writer *w, struct stream_io *io,
			const struct stream_writer_opts *o)
{
	memset(w, 0, sizeof(*w));
	w->io = io;
	uint16_t format = o->format ? o->format : STREAM_FORMAT_MAX;
	if (format < STREAM_FORMAT_MIN || format > STREAM_FORMAT_MAX)
		return fail(w, EINVAL, "cannot write stream format version %u (this code writes %u..%u)",
			    format, STREAM_FORMAT_MIN, STREAM_FORMAT_MAX);
	if (o->features & ~STREAM_FEAT_KNOWN & STREAM_FEAT_INCOMPAT)
		return fail(w, EINVAL, "unknown feature flags 0x%08x", o->features);
	if ((o->features & STREAM_FEAT_DIGEST) && format < 2)
		return fail(w, EINVAL, "format version %u has no digest trailer", format);
	if ((o->features & STREAM_FEAT_DIGEST_TREE) && !(o->features & STREAM_FEAT_DIGEST))
		return fail(w, EINVAL, "a digest tree without the digest");
	if (!name_ok(o->release))
		return fail(w, EINVAL, "bad release level name");
	w->hdr.format = format;
	w->hdr.release_ordinal = o->release_ordinal;
	w->hdr.features = o->features;
	snprintf(w->hdr.release, sizeof(w->hdr.release), "%s", o->release);
	w->build_index = o->index && format >= 3;
	w->buf = malloc(WBUF_SIZE);
	if (!w->buf)
		return fail(w, ENOMEM, "allocating the stream buffer");
	w->cap = WBUF_SIZE;
	if ((o->features & STREAM_FEAT_DIGEST) &&
	    stream_hash__init(&w->digest, o->features & STREAM_FEAT_DIGEST_TREE) < 0)
		return fail(w, ENOMEM, "setting up SHA-256");
	uint8_t hdr[STREAM_HEADER_SIZE];
	stream__header_encode(&w->hdr, hdr);
	emit(w, hdr, sizeof(hdr), false);
	return w->error;
}

int stream__writer_init_release(struct stream_writer *w, struct stream_io *io,
				const struct release_policy *pol,
				uint32_t features, bool index)
{
	const struct release_level *l = pol->self;
	/* A level whose format has no digest writes none (the reader would
	 * refuse the flag). */
	if (l->write_format < 2)
		features &= ~(STREAM_FEAT_DIGEST | STREAM_FEAT_DIGEST_TREE);
	struct stream_writer_opts o = {
		.format = l->write_format,
		.release_ordinal = l->ordinal,
		.release = l->name,
		.features = features,
		.index = index,
	};
	return stream__writer_init(w, io, &o);
}

void stream__writer_free(struct stream_writer *w)
{
	free(w->buf);
	stream_hash__free(&w->digest);
	stream__index_free(&w->index);
	w->buf = NULL;
}

void stream__writer_digest_from(struct stream_writer *w, const struct stream_digest_source *src)
{
	if (!stream_hash__active(&w->digest))
		return;
	/* What it hashed so far (the header) the source reads back too. */
	stream_hash__free(&w->digest);
	w->digest_src = src;
}

int stream__rec_begin(struct stream_writer *w, uint16_t type, uint16_t flags,
		      uint64_t len)
{
	if (w->error)
		return w->error;
	if (w->in_rec)
		return fail(w, EINVAL, "record begun inside record %s", stream__rec_name(w->rec_type));
	if (w->finished)
		return fail(w, EINVAL, "record after the END record");
	uint16_t since = stream__rec_since(type);
	if (since > w->hdr.format)
		return fail(w, ENOTSUP, "record type %s is not part of format version %u",
			    stream__rec_name(type), w->hdr.format);
	if (flags & ~STREAM_REC_F_KNOWN)
		return fail(w, EINVAL, "unknown record flags 0x%04x", flags);
	if (len > STREAM_RECORD_MAX)
		return fail(w, EMSGSIZE, "record %s of %llu bytes exceeds the cap of %u",
			    stream__rec_name(type), (unsigned long long)len, STREAM_RECORD_MAX);
	uint8_t h[STREAM_REC_HDR_SIZE];
	stream__le16(h, type);
	stream__le16(h + 2, flags);
	stream__le32(h + 4, (uint32_t)len);
	w->rec_off = w->off;
	w->rec_type = type;
	w->crc = 0;
	emit(w, h, sizeof(h), true);
	w->in_rec = true;
	w->rec_left = len;
	return w->error;
}

static void put(struct stream_writer *w, const void *p, size_t n, bool stable)
{
	if (w->error)
		return;
	if (!w->in_rec) {
		fail(w, EINVAL, "payload outside a record");
		return;
	}
	if (n > w->rec_left) {
		fail(w, EMSGSIZE, "record %s at offset %llu: payload longer than declared",
		     stream__rec_name(w->rec_type), (unsigned long long)w->rec_off);
		return;
	}
	emit_piece(w, p, n, true, stable);
	w->rec_left -= n;
}

void stream__put(struct stream_writer *w, const void *p, size_t n)
{
	put(w, p, n, false);
}

void stream__put_stable(struct stream_writer *w, const void *p, size_t n)
{
	put(w, p, n, true);
}

void stream__put_u8(struct stream_writer *w, uint8_t v)
{
	stream__put(w, &v, 1);
}

void stream__put_u16(struct stream_writer *w, uint16_t v)
{
	uint8_t b[2];
	stream__le16(b, v);
	stream__put(w, b, 2);
}

void stream__put_u32(struct stream_writer *w, uint32_t v)
{
	uint8_t b[4];
	stream__le32(b, v);
	stream__put(w, b, 4);
}

void stream__put_u64(struct stream_writer *w, uint64_t v)
{
	uint8_t b[8];
	stream__le64(b, v);
	stream__put(w, b, 8);
}

int stream__rec_end(struct stream_writer *w)
{
	if (w->error)
		return w->error;
	if (!w->in_rec)
		return fail(w, EINVAL, "no record to end");
	if (w->rec_left)
		return fail(w, EMSGSIZE, "record %s at offset %llu: %llu declared payload bytes not written",
			    stream__rec_name(w->rec_type), (unsigned long long)w->rec_off,
			    (unsigned long long)w->rec_left);
	uint8_t c[STREAM_REC_CRC_SIZE];
	stream__le32(c, w->crc);
	emit(w, c, sizeof(c), false);
	w->in_rec = false;
	return w->error;
}

int stream__write_record(struct stream_writer *w, uint16_t type, uint16_t flags,
			 const void *payload, size_t len)
{
	if (stream__rec_begin(w, type, flags, len))
		return w->error;
	stream__put(w, payload, len);
	return stream__rec_end(w);
}

int stream__write_note(struct stream_writer *w, const char *text)
{
	size_t n = strlen(text);
	if (n > STREAM_NOTE_MAX)
		return fail(w, EMSGSIZE, "note of %zu bytes exceeds the cap of %u", n, STREAM_NOTE_MAX);
	return stream__write_record(w, STREAM_REC_NOTE, STREAM_REC_F_SKIPPABLE, text, n);
}

int stream__finish(struct stream_writer *w)
{
	if (w->error)
		return w->error;
	if (w->in_rec)
		return fail(w, EINVAL, "stream finished inside record %s", stream__rec_name(w->rec_type));
	uint64_t index_off = 0;
	if (w->build_index && w->index.n) {
		index_off = w->off;
		if (stream__index_write(w, &w->index))
			return w->error;
	}
	bool dig = w->hdr.features & STREAM_FEAT_DIGEST;
	if (stream__rec_begin(w, STREAM_REC_END, 0, STREAM_END_LEN + (dig ? STREAM_DIGEST_SIZE : 0)))
		return w->error;
	stream__put_u64(w, index_off);
	if (dig) {
		/* The digest covers every byte before it. */
		uint8_t md[STREAM_DIGEST_SIZE];
		if (w->digest_src) {
			struct err de = { 0 };
			if (stream__flush(w))
				return w->error;
			if (w->digest_src->final(w->digest_src->opaque, w->off, md, &de) < 0)
				return fail(w, de.code ? de.code : EIO, "%s", de.msg);
		} else if (stream_hash__final(&w->digest, md) < 0) {
			return fail(w, EIO, "computing SHA-256");
		}
		stream__put(w, md, STREAM_DIGEST_SIZE);
	}
	if (stream__rec_end(w))
		return w->error;
	w->finished = true;
	return stream__flush(w);
}
