/* file: channels: a stream recorded to a file and played back from it, one
 * way. Connecting creates the file for writing (O_EXCL: an existing file is
 * never clobbered); listening opens an existing file for reading, and the
 * one accept hands that reader out. A regular file is always ready for
 * poll(), so the shared loops of transport/channel.c work unchanged; the
 * channel timeout does not bound disk I/O. Closing (or channel__flush, which
 * reports the error) fsyncs the file and its directory. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/transport.h"

/* The path of a file: channel, from its name "file:PATH". */
static const char *path_of(const char *uri)
{
	return strncmp(uri, "file:", 5) ? uri : uri + 5;
}

static int file_listen(const char *uri, const struct channel_addr *a,
		       const struct channel_tls_opts *tls, struct channel_listener *l,
		       struct err *e)
{
	(void)tls;
	int fd = open(a->host, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err__setsys(e, errno, "cannot open %s for reading", uri);
	struct stat st;
	int saved = fstat(fd, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
	if (saved) {
		close(fd);
		return err__setsys(e, saved, "cannot read %s", uri);
	}
	l->fd = fd;
	snprintf(l->local, sizeof(l->local), "file:%s", a->host);
	return 0;
}

/* The reader opened by listen, handed out once. */
static int file_accept(struct channel_listener *l, int timeout_ms, struct channel *c,
		       struct err *e)
{
	(void)timeout_ms;
	if (l->fd < 0)
		return err__set(e, EALREADY, "%s: its reader was already accepted", l->local);
	c->fd = l->fd;
	l->fd = -1;
	return 0;
}

static int file_connect(const char *uri, const struct channel_addr *a, int timeout_ms,
			const struct channel_tls_opts *tls, struct channel *c, struct err *e)
{
	(void)tls;
	(void)timeout_ms;
	int fd = open(a->host, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return err__setsys(e, errno, "cannot create %s%s", uri,
				   errno == EEXIST ? " (it exists: never overwritten)" : "");
	c->fd = fd;
	return 0;
}

static ssize_t file_send(struct channel *c, const void *buf, size_t len, short *want)
{
	(void)want;
	ssize_t n = write(c->fd, buf, len);
	if (n < 0)
		return errno == EAGAIN ? -EINTR : -errno;
	return n ? n : -ENOSPC;
}

static ssize_t file_recv(struct channel *c, void *buf, size_t len, short *want)
{
	(void)want;
	ssize_t n = read(c->fd, buf, len);
	return n < 0 ? (errno == EAGAIN ? -EINTR : -errno) : n;
}

/* The writer's data, then its directory entry. */
static int file_flush(struct channel *c)
{
	int fl = fcntl(c->fd, F_GETFL);
	if (fl < 0)
		return -errno;
	if ((fl & O_ACCMODE) == O_RDONLY)
		return 0;
	if (fsync(c->fd) < 0)
		return -errno;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path_of(c->peer));
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int r = fsync(dfd) < 0 ? -errno : 0;
	close(dfd);
	return r;
}

static void file_close(struct channel *c)
{
	if (c->fd >= 0)
		(void)file_flush(c);	/* channel__flush reports this error */
	channel__fd_close(c);
}

const struct channel_ops channel__file_ops = {
	.scheme = "file",
	.listen = file_listen,
	.accept = file_accept,
	.listener_close = channel__fd_listener_close,
	.connect = file_connect,
	.send = file_send,
	.recv = file_recv,
	.flush = file_flush,
	.close = file_close,
};
