/* unix: channels: a stream socket at a path, for two processes on one host
 * (tests, a local move between VMM processes). Transfers are the plain socket
 * ones of transport/tcp.c. The listener owns its path: a stale socket nobody
 * listens on is replaced, and the path goes when the listener closes. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport/transport.h"

static int sun_of(const struct channel_addr *a, struct sockaddr_un *sun, struct err *e)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(a->host) >= sizeof(sun->sun_path))
		return err__set(e, ENAMETOOLONG, "unix:%s: the path is longer than %zu bytes",
				a->host, sizeof(sun->sun_path) - 1);
	memcpy(sun->sun_path, a->host, strlen(a->host));
	return 0;
}

/* A socket file left behind by a listener that is gone. */
static bool stale(const struct sockaddr_un *sun)
{
	struct stat st;
	if (lstat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return false;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool gone = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0 &&
		    errno == ECONNREFUSED;
	close(fd);
	return gone;
}

static int unix_listen(const char *uri, const struct channel_addr *a,
		       const struct channel_tls_opts *tls, struct channel_listener *l,
		       struct err *e)
{
	(void)tls;
	struct sockaddr_un sun;
	int r = sun_of(a, &sun, e);
	if (r < 0)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err__setsys(e, errno, "cannot listen on %s", uri);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (r < 0 && errno == EADDRINUSE && stale(&sun) && unlink(sun.sun_path) == 0)
		r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (r < 0 || listen(fd, 1) < 0) {
		int saved = errno;
		close(fd);
		return err__setsys(e, saved, "cannot listen on %s%s", uri,
				   saved == EADDRINUSE ? " (another process listens there)" : "");
	}
	l->fd = fd;
	snprintf(l->local, sizeof(l->local), "unix:%s", a->host);
	return 0;
}

static void unix_listener_close(struct channel_listener *l)
{
	if (l->fd >= 0 && !strncmp(l->local, "unix:", 5))
		(void)unlink(l->local + 5);	/* ours; already gone is fine */
	channel__fd_listener_close(l);
}

static int unix_connect(const char *uri, const struct channel_addr *a, int timeout_ms,
			const struct channel_tls_opts *tls, struct channel *c, struct err *e)
{
	(void)tls;
	(void)timeout_ms;	/* a local connect never waits on a network */
	struct sockaddr_un sun;
	int r = sun_of(a, &sun, e);
	if (r < 0)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err__setsys(e, errno, "cannot connect to %s", uri);
	while ((r = connect(fd, (struct sockaddr *)&sun, sizeof(sun))) < 0 && errno == EINTR)
		;
	if (r < 0) {
		int saved = errno;
		close(fd);
		return err__setsys(e, saved, "cannot connect to %s", uri);
	}
	c->fd = fd;
	return 0;
}

const struct channel_ops channel__unix_ops = {
	.scheme = "unix",
	.listen = unix_listen,
	.accepted = channel__fd_accepted,
	.listener_close = unix_listener_close,
	.connect = unix_connect,
	.send = channel__fd_send,
	.recv = channel__fd_recv,
	.close = channel__fd_close,
};
