/* The checkpoint file as the stream writer's output: bytes go to the file
 * as they come, and a file hasher reads them back for the digest trailer
 * and starts their writeback, off the writing thread. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "snapshot/snapshot-internal.h"
#include "vmhop/file-hasher.h"
#include "vmhop/release.h"
#include "vmhop/util.h"

static void wrote(struct ckpt_out *o, size_t n)
{
	o->written += n;
	file_hasher__wrote(o->hasher, o->written);
}

static ssize_t out_write(void *opaque, const void *buf, size_t len)
{
	struct ckpt_out *o = opaque;
	for (;;) {
		ssize_t n = write(o->fd, buf, len);
		if (n > 0) {
			wrote(o, (size_t)n);
			return n;
		}
		if (n == 0)
			return -EIO;
		if (errno != EINTR)
			return -errno;
	}
}

int ckpt_out__sink(void *opaque, const void *buf, size_t len)
{
	struct ckpt_out *o = opaque;
	int rc = util__write_all(o->fd, buf, len);
	if (!rc)
		wrote(o, len);
	return rc;
}

static int digest_final(void *opaque, uint64_t len, uint8_t md[STREAM_DIGEST_SIZE],
			struct err *e)
{
	struct ckpt_out *o = opaque;
	int rc = o->stage ? stream_stage__flush(o->stage) : 0;
	if (rc < 0)
		return err__setsys(e, -rc, "writing the checkpoint");
	return file_hasher__final(o->hasher, len, md, e);
}

int ckpt_out__open(struct ckpt_out *o, int fd, struct stream_stage *stage, struct err *e)
{
	memset(o, 0, sizeof(*o));
	o->fd = fd;
	o->stage = stage;
	o->io = (struct stream_io){ .write = out_write, .opaque = o };
	o->digest = (struct stream_digest_source){ .final = digest_final, .opaque = o };
	return file_hasher__start(&o->hasher, fd, e);
}

int ckpt_out__writer(struct ckpt_out *o, struct stream_io *io, struct stream_writer *w,
		     struct err *e)
{
	struct release_matrix m;
	struct release_policy pol;
	int rc = release__policy(&m, &pol, e);
	if (rc < 0) {
		memset(w, 0, sizeof(*w));	/* freeing it is harmless */
		return rc;
	}
	rc = stream__writer_init_release(w, io, &pol, STREAM_FEAT_DIGEST | STREAM_FEAT_DIGEST_TREE,
					 true);
	if (rc < 0)
		return err__set(e, w->err.code ? w->err.code : -rc, "%s",
				w->err.code ? w->err.msg : "stream writer");
	stream__writer_digest_from(w, &o->digest);
	return 0;
}

void ckpt_out__close(struct ckpt_out *o)
{
	file_hasher__free(o->hasher);
	o->hasher = NULL;
}
