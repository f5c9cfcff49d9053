/* TCP channels: listen, accept, connect with a deadline, and the socket
 * options a migration wants (no Nagle delay for the small commit messages,
 * keepalive so a vanished peer is noticed). */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmhop/channel.h"
#include "vmhop/util.h"

static void name_of(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
	char host[NI_MAXHOST], port[NI_MAXSERV];
	if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, size, "tcp:?");
		return;
	}
	snprintf(buf, size, strchr(host, ':') ? "tcp:[%s]:%s" : "tcp:%s:%s", host, port);
}

static int resolve(const struct channel_addr *a, bool passive, struct addrinfo **res,
		   struct err *e)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	int r = getaddrinfo(a->host, a->port, &hints, res);
	if (r)
		return err__set(e, EHOSTUNREACH, "tcp:%s:%s: %s", a->host, a->port,
				r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	return 0;
}

static void tune(int fd)
{
	int one = 1;
	/* Best effort: a socket without these still works. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

int channel__listen(const char *uri, struct channel_listener *l, struct err *e)
{
	struct channel_addr a;
	struct addrinfo *res;
	l->fd = -1;
	int r = channel__parse_uri(uri, true, &a, e);
	if (r < 0 || (r = resolve(&a, true, &res, e)) < 0)
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
	l->kind = CHANNEL_TCP;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0) {
		r = err__setsys(e, errno, "listening on %s", uri);
		channel__listener_close(l);
		return r;
	}
	name_of((struct sockaddr *)&ss, len, l->local, sizeof(l->local));
	return 0;
}

int channel__accept(struct channel_listener *l, int timeout_ms, struct channel *c,
		    struct err *e)
{
	uint64_t deadline = timeout_ms > 0 ? util__now_ns() + (uint64_t)timeout_ms * 1000000ULL : 0;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;
	/* The listener is non-blocking: a client that resets between poll and
	 * accept sends us back to waiting rather than blocking in accept. */
	for (;;) {
		int ms = -1;
		if (deadline) {
			uint64_t now = util__now_ns();
			if (now >= deadline)
				return err__set(e, ETIMEDOUT, "no connection on %s within %d ms",
						l->local, timeout_ms);
			ms = (int)((deadline - now + 999999) / 1000000);
		}
		struct pollfd p = { .fd = l->fd, .events = POLLIN };
		int r = poll(&p, 1, ms);
		if (r < 0 && errno != EINTR)
			return err__setsys(e, errno, "waiting for a connection on %s", l->local);
		if (r <= 0)
			continue;
		len = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			return err__setsys(e, errno, "accepting on %s", l->local);
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int r = err__setsys(e, errno, "accepting on %s", l->local);
		close(fd);
		return r;
	}
	tune(fd);
	c->kind = CHANNEL_TCP;
	c->fd = fd;
	c->timeout_ms = 0;
	name_of((struct sockaddr *)&ss, len, c->peer, sizeof(c->peer));
	return 0;
}

void channel__listener_close(struct channel_listener *l)
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

int channel__connect(const char *uri, int timeout_ms, struct channel *c, struct err *e)
{
	struct channel_addr a;
	struct addrinfo *res;
	c->fd = -1;
	int r = channel__parse_uri(uri, false, &a, e);
	if (r < 0 || (r = resolve(&a, false, &res, e)) < 0)
		return r;
	r = -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next)
		r = connect_one(ai, timeout_ms, &c->fd);
	freeaddrinfo(res);
	if (c->fd < 0)
		return err__setsys(e, -r, "cannot connect to %s", uri);
	tune(c->fd);
	c->kind = CHANNEL_TCP;
	c->timeout_ms = 0;
	snprintf(c->peer, sizeof(c->peer), "%s", uri);
	return 0;
}
