/* TCP channels: listen, accept, connect with a deadline, and the socket
 * options a migration wants (no Nagle delay for the small commit messages,
 * keepalive so a vanished peer is noticed). The plain socket transfers here
 * serve unix: channels too (transport/unix.c), and TLS rides on the same
 * connect and listen (transport/tls.c). */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/transport.h"
#include "vmhop/util.h"

void channel__sockname(const struct sockaddr *sa, socklen_t len, const char *scheme,
		       char *buf, size_t size)
{
	char host[NI_MAXHOST], port[NI_MAXSERV];
	if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, size, "%s:?", scheme);
		return;
	}
	snprintf(buf, size, strchr(host, ':') ? "%s:[%s]:%s" : "%s:%s:%s", scheme, host, port);
}

static int resolve(const struct channel_addr *a, bool passive, struct addrinfo **res,
		   struct err *e)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	int r = getaddrinfo(a->host, a->port, &hints, res);
	if (r)
		return err__set(e, EHOSTUNREACH, "%s:%s:%s: %s", a->kind == CHANNEL_TLS ? "tls" : "tcp",
				a->host, a->port, r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	return 0;
}

void channel__tcp_tune(int fd)
{
	int one = 1;
	/* Best effort: a socket without these still works. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

int channel__tcp_listen_fd(const char *uri, const struct channel_addr *a, const char *scheme,
			   struct channel_listener *l, struct err *e)
{
	struct addrinfo *res;
	l->fd = -1;
	int r = resolve(a, true, &res, e);
	if (r < 0)
		return r;
	int saved = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		int one = 1;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0) {
			saved = errno;
			close(fd);
			continue;
		}
		l->fd = fd;
		break;
	}
	freeaddrinfo(res);
	if (l->fd < 0)
		return err__setsys(e, saved ? saved : EADDRNOTAVAIL, "cannot listen on %s", uri);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0) {
		r = err__setsys(e, errno, "listening on %s", uri);
		channel__fd_listener_close(l);
		return r;
	}
	channel__sockname((struct sockaddr *)&ss, len, scheme, l->local, sizeof(l->local));
	return 0;
}

static int tcp_listen(const char *uri, const struct channel_addr *a,
		      const struct channel_tls_opts *tls, struct channel_listener *l, struct err *e)
{
	(void)tls;
	return channel__tcp_listen_fd(uri, a, "tcp", l, e);
}

static int tcp_accepted(struct channel_listener *l, int fd, struct channel *c, struct err *e)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int r = err__setsys(e, errno, "accepting on %s", l->local);
		close(fd);
		return r;
	}
	if (l->kind != CHANNEL_UNIX)
		channel__tcp_tune(fd);
	c->fd = fd;
	return 0;
}

void channel__fd_listener_close(struct channel_listener *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

/* A non-blocking connect bounded by timeout_ms, then back to blocking. */
static int connect_one(const struct addrinfo *ai, int timeout_ms, int *out)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			ai->ai_protocol);
	if (fd < 0)
		return -errno;
	int r = connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno : 0;
	if (r == -EINPROGRESS) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int n;
		do
			n = poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1);
		while (n < 0 && errno == EINTR);
		int soerr = 0;
		socklen_t len = sizeof(soerr);
		if (n < 0)
			r = -errno;
		else if (n == 0)
			r = -ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			r = -errno;
		else
			r = -soerr;
	}
	int fl = fcntl(fd, F_GETFL);
	if (!r && (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0))
		r = -errno;
	if (r) {
		close(fd);
		return r;
	}
	*out = fd;
	return 0;
}

int channel__tcp_connect_fd(const char *uri, const struct channel_addr *a, int timeout_ms,
			    int *fd, struct err *e)
{
	struct addrinfo *res;
	*fd = -1;
	int r = resolve(a, false, &res, e);
	if (r < 0)
		return r;
	r = -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai && *fd < 0; ai = ai->ai_next)
		r = connect_one(ai, timeout_ms, fd);
	freeaddrinfo(res);
	if (*fd < 0)
		return err__setsys(e, -r, "cannot connect to %s", uri);
	channel__tcp_tune(*fd);
	return 0;
}

static int tcp_connect(const char *uri, const struct channel_addr *a, int timeout_ms,
		       const struct channel_tls_opts *tls, struct channel *c, struct err *e)
{
	(void)tls;
	return channel__tcp_connect_fd(uri, a, timeout_ms, &c->fd, e);
}

/* ---- transfers on a plain socket ----------------------------------------- */

ssize_t channel__fd_send(struct channel *c, const void *buf, size_t len, short *want)
{
	ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n >= 0)
		return n;
	*want = POLLOUT;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

ssize_t channel__fd_recv(struct channel *c, void *buf, size_t len, short *want)
{
	ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
	if (n >= 0)
		return n;
	*want = POLLIN;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

void channel__fd_close(struct channel *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

const struct channel_ops channel__tcp_ops = {
	.scheme = "tcp",
	.listen = tcp_listen,
	.accepted = tcp_accepted,
	.listener_close = channel__fd_listener_close,
	.connect = tcp_connect,
	.send = channel__fd_send,
	.recv = channel__fd_recv,
	.close = channel__fd_close,
};

/* unix: shares everything after the socket is made (transport/unix.c). */
int channel__fd_accepted(struct channel_listener *l, int fd, struct channel *c, struct err *e)
{
	return tcp_accepted(l, fd, c, e);
}
