/* Small in-memory buffers with sticky errors, for section payloads: a
 * growable output buffer and a bounded input cursor. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/stream.h"

void stream_buf__init(struct stream_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void stream_buf__free(struct stream_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static uint8_t *room(struct stream_buf *b, size_t n)
{
	if (b->error)
		return NULL;
	if (n > STREAM_SECTION_MAX || b->len > STREAM_SECTION_MAX - n) {
		b->error = -EMSGSIZE;
		return NULL;
	}
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		uint8_t *p = realloc(b->data, cap);
		if (!p) {
			b->error = -ENOMEM;
			return NULL;
		}
		b->data = p;
		b->cap = cap;
	}
	uint8_t *p = b->data + b->len;
	b->len += n;
	return p;
}

void stream_buf__put(struct stream_buf *b, const void *p, size_t n)
{
	uint8_t *d = room(b, n);
	if (d && n)
		memcpy(d, p, n);
}

void stream_buf__put_u8(struct stream_buf *b, uint8_t v)
{
	uint8_t *d = room(b, 1);
	if (d)
		*d = v;
}

void stream_buf__put_u16(struct stream_buf *b, uint16_t v)
{
	uint8_t *d = room(b, 2);
	if (d)
		stream__le16(d, v);
}

void stream_buf__put_u32(struct stream_buf *b, uint32_t v)
{
	uint8_t *d = room(b, 4);
	if (d)
		stream__le32(d, v);
}

void stream_buf__put_u64(struct stream_buf *b, uint64_t v)
{
	uint8_t *d = room(b, 8);
	if (d)
		stream__le64(d, v);
}

size_t stream_buf__skip(struct stream_buf *b, size_t n)
{
	uint8_t *d = room(b, n);
	if (!d)
		return 0;
	memset(d, 0, n);
	return (size_t)(d - b->data);
}

void stream_buf__patch_u32(struct stream_buf *b, size_t at, uint32_t v)
{
	if (!b->error && at + 4 <= b->len)
		stream__le32(b->data + at, v);
}

void stream_cur__init(struct stream_cur *c, const void *p, size_t len,
		      uint64_t base)
{
	memset(c, 0, sizeof(*c));
	c->p = p;
	c->len = len;
	c->base = base;
}

const uint8_t *stream_cur__take(struct stream_cur *c, size_t n)
{
	if (c->error)
		return NULL;
	if (n > c->len - c->pos) {
		c->error = -EBADMSG;
		c->error_off = c->base + c->pos;
		return NULL;
	}
	const uint8_t *p = c->p + c->pos;
	c->pos += n;
	return p;
}

void stream_cur__get(struct stream_cur *c, void *p, size_t n)
{
	const uint8_t *s = stream_cur__take(c, n);
	if (s)
		memcpy(p, s, n);
	else
		memset(p, 0, n);
}

uint8_t stream_cur__get_u8(struct stream_cur *c)
{
	const uint8_t *s = stream_cur__take(c, 1);
	return s ? *s : 0;
}

uint16_t stream_cur__get_u16(struct stream_cur *c)
{
	const uint8_t *s = stream_cur__take(c, 2);
	return s ? stream__rd16(s) : 0;
}

uint32_t stream_cur__get_u32(struct stream_cur *c)
{
	const uint8_t *s = stream_cur__take(c, 4);
	return s ? stream__rd32(s) : 0;
}

uint64_t stream_cur__get_u64(struct stream_cur *c)
{
	const uint8_t *s = stream_cur__take(c, 8);
	return s ? stream__rd64(s) : 0;
}
