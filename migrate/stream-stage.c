/* A staging channel for streams written from memory that keeps changing (a
 * running guest's RAM): the writer copies page data into the stage through
 * reserve(), checksumming the bytes it copies, so the checksum always covers
 * exactly what goes out. Staged bytes reach the sink before any later write
 * and at stream_stage__flush. */
#include <stdlib.h>

#include "vmhop/stream.h"

static int drain(struct stream_stage *s)
{
	if (s->error)
		return s->error;
	int rc = s->len ? s->sink(s->sink_opaque, s->buf, s->len) : 0;
	s->len = 0;
	if (rc < 0)
		s->error = rc;
	return rc;
}

static ssize_t stage_write(void *opaque, const void *buf, size_t len)
{
	struct stream_stage *s = opaque;
	int rc = drain(s);
	if (!rc)
		rc = s->sink(s->sink_opaque, buf, len);
	if (rc < 0) {
		s->error = rc;
		return rc;
	}
	return (ssize_t)len;
}

static void *stage_reserve(void *opaque, size_t want, size_t *got)
{
	struct stream_stage *s = opaque;
	*got = 0;
	if (s->len == s->cap && drain(s) < 0)
		return NULL;
	size_t n = want < s->cap - s->len ? want : s->cap - s->len;
	void *p = s->buf + s->len;
	s->len += n;
	*got = n;
	return p;
}

int stream_stage__init(struct stream_stage *s, size_t cap, stream_stage_sink_fn sink,
		       void *opaque)
{
	*s = (struct stream_stage){ .sink = sink, .sink_opaque = opaque, .cap = cap };
	s->buf = malloc(cap);
	if (!s->buf)
		return -ENOMEM;
	s->io = (struct stream_io){ .write = stage_write, .reserve = stage_reserve, .opaque = s };
	return 0;
}

int stream_stage__flush(struct stream_stage *s)
{
	return drain(s);
}

void stream_stage__free(struct stream_stage *s)
{
	free(s->buf);
	s->buf = NULL;
}
