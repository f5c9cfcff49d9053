/* The calls every channel shares, whatever its transport: parse the URI,
 * pick the transport's ops table, and whole-buffer reads and writes bounded
 * by the channel's timeout, one deadline per call. Each transport moves bytes
 * without blocking and says which poll() events it waits for (TLS may need to
 * read to write and the reverse), so the waiting, the deadline and the
 * end-of-stream rules live here once. */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/transport.h"
#include "vmhop/util.h"

const struct channel_ops *channel__ops(enum channel_kind kind)
{
	static const struct channel_ops *const table[CHANNEL_KINDS] = {
		[CHANNEL_TCP] = &channel__tcp_ops,
		[CHANNEL_UNIX] = &channel__unix_ops,
		[CHANNEL_TLS] = &channel__tls_ops,
		[CHANNEL_FILE] = &channel__file_ops,
		[CHANNEL_FAULT] = &channel__fault_ops,
		[CHANNEL_RDMA] = &channel__rdma_ops,
	};
	return (unsigned)kind < CHANNEL_KINDS ? table[kind] : &channel__tcp_ops;
}

int channel__ms_left(uint64_t deadline)
{
	if (!deadline)
		return -1;
	uint64_t now = util__now_ns();
	if (now >= deadline)
		return 0;
	return (int)((deadline - now + 999999) / 1000000);
}

/* timeout_ms < 0 waits for ever, 0 only looks. */
static int wait_for(struct channel *c, short events, int timeout_ms)
{
	if (c->fd < 0)
		return -EBADF;
	struct pollfd p = { .fd = c->fd, .events = events };
	int r;
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r;
}

/* One deadline for a whole call: a peer trickling a byte now and then must
 * not stretch a transfer past the timeout. */
static uint64_t deadline_of(const struct channel *c)
{
	return c->timeout_ms > 0 ? util__now_ns() + (uint64_t)c->timeout_ms * 1000000ULL : 0;
}

static int wait_until(struct channel *c, short events, uint64_t deadline)
{
	int ms = channel__ms_left(deadline);
	if (ms == 0)
		return -ETIMEDOUT;
	int w = wait_for(c, events, ms);
	return w == 0 ? -ETIMEDOUT : w;
}

void channel__set_timeout(struct channel *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
}

int channel__wait_readable(struct channel *c, int timeout_ms)
{
	const struct channel_ops *o = channel__ops(c->kind);
	if (c->fd < 0)
		return -EBADF;
	if (o->buffered && o->buffered(c))
		return 1;
	uint64_t deadline = timeout_ms > 0 ?
			    util__now_ns() + (uint64_t)timeout_ms * 1000000ULL : 0;
	for (;;) {
		int ms = timeout_ms < 0 ? -1 : timeout_ms == 0 ? 0 : channel__ms_left(deadline);
		int w = wait_for(c, POLLIN, ms);
		if (w <= 0 || !o->settle)
			return w;
		/* Readable, but perhaps only with records the transport keeps
		 * for itself: wait on for data within what is left. */
		if (o->settle(c))
			return 1;
		if (timeout_ms == 0 || (timeout_ms > 0 && channel__ms_left(deadline) == 0))
			return 0;
	}
}

int channel__write_full(struct channel *c, const void *buf, size_t len)
{
	const struct channel_ops *o = channel__ops(c->kind);
	const char *p = buf;
	uint64_t deadline = deadline_of(c);
	/* Try first, then wait for what the transport asked for: an rdma:
	 * channel's fd (an epoll set) never says POLLOUT, and TLS may have to
	 * read before it can write. */
	while (len) {
		short want = POLLOUT;
		ssize_t n;
		do {
			n = o->send(c, p, len, &want);
			if (n > 0) {
				p += n;
				len -= (size_t)n;
				c->bytes_out += (uint64_t)n;
			}
		} while (n > 0 && len);
		if (!len)
			break;
		if (n < 0 && n != -EAGAIN && n != -EINTR)
			return (int)n;
		int w = wait_until(c, n == -EAGAIN ? want : POLLOUT, deadline);
		if (w < 0)
			return w;
	}
	return 0;
}

static ssize_t read_some_until(struct channel *c, void *buf, size_t len, uint64_t deadline)
{
	const struct channel_ops *o = channel__ops(c->kind);
	/* Try first: a transport may hold bytes the fd knows nothing of. */
	for (;;) {
		short want = POLLIN;
		ssize_t n = o->recv(c, buf, len, &want);
		if (n > 0)
			c->bytes_in += (uint64_t)n;
		if (n != -EAGAIN && n != -EINTR)
			return n;
		int w = wait_until(c, want, deadline);
		if (w < 0)
			return w;
	}
}

ssize_t channel__read_some(struct channel *c, void *buf, size_t len)
{
	return read_some_until(c, buf, len, deadline_of(c));
}

int channel__read_full(struct channel *c, void *buf, size_t len)
{
	char *p = buf;
	size_t done = 0;
	uint64_t deadline = deadline_of(c);
	while (done < len) {
		ssize_t n = read_some_until(c, p + done, len - done, deadline);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return done ? -EPIPE : -ENODATA;
		done += (size_t)n;
	}
	return 0;
}

/* Only the socket (rdma: its own shutdown op, a disconnect): safe from
 * another thread while one is inside a transfer (a TLS session is never
 * touched here). */
void channel__shutdown(struct channel *c)
{
	const struct channel_ops *o = channel__ops(c->kind);
	if (o->shutdown)
		o->shutdown(c);
	else if (c->fd >= 0)
		(void)shutdown(c->fd, SHUT_RDWR);	/* only fails if already gone */
}

void channel__identity(const struct channel *c, char *buf, size_t size)
{
	const struct channel_ops *o = channel__ops(c->kind);
	buf[0] = 0;
	if (o->identity)
		o->identity(c, buf, size);
	if (!buf[0])
		snprintf(buf, size, "%s", c->peer);
}

int channel__flush(struct channel *c)
{
	const struct channel_ops *o = channel__ops(c->kind);
	if (c->fd < 0)
		return -EBADF;
	return o->flush ? o->flush(c) : 0;
}

int channel__pair(struct channel *a, struct channel *b, struct err *e)
{
	int sv[2];
	*a = (struct channel){ .kind = CHANNEL_UNIX, .fd = -1 };
	*b = (struct channel){ .kind = CHANNEL_UNIX, .fd = -1 };
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return err__setsys(e, errno, "cannot make a channel pair");
	a->fd = sv[0];
	b->fd = sv[1];
	snprintf(a->peer, sizeof(a->peer), "pair:1");
	snprintf(b->peer, sizeof(b->peer), "pair:0");
	return 0;
}

void channel__close(struct channel *c)
{
	channel__ops(c->kind)->close(c);
}

/* ---- connecting and listening ------------------------------------------- */

int channel__listen_tls(const char *uri, const struct channel_tls_opts *tls,
			struct channel_listener *l, struct err *e)
{
	struct channel_addr a;
	l->kind = CHANNEL_TCP;
	l->fd = -1;
	l->tls = NULL;
	l->local[0] = 0;
	l->rdma = NULL;
	int r = channel__parse_uri(uri, true, &a, e);
	if (r < 0)
		return r;
	l->kind = a.kind;
	return channel__ops(a.kind)->listen(uri, &a, tls, l, e);
}

int channel__listen(const char *uri, struct channel_listener *l, struct err *e)
{
	return channel__listen_tls(uri, NULL, l, e);
}

void channel__listener_close(struct channel_listener *l)
{
	channel__ops(l->kind)->listener_close(l);
}

int channel__accept(struct channel_listener *l, int timeout_ms, struct channel *c,
		    struct err *e)
{
	uint64_t deadline = timeout_ms > 0 ? util__now_ns() + (uint64_t)timeout_ms * 1000000ULL : 0;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;
	c->kind = l->kind;
	c->fd = -1;
	c->tls = NULL;
	c->fault = NULL;
	c->rdma = NULL;
	c->bytes_in = c->bytes_out = 0;
	const struct channel_ops *o = channel__ops(l->kind);
	if (o->accept) {
		c->timeout_ms = 0;
		snprintf(c->peer, sizeof(c->peer), "%s", l->local);
		return o->accept(l, timeout_ms, c, e);
	}
	/* The listener is non-blocking: a client that resets between poll and
	 * accept sends us back to waiting rather than blocking in accept. */
	for (;;) {
		int ms = channel__ms_left(deadline);
		if (ms == 0)
			return err__set(e, ETIMEDOUT, "no connection on %s within %d ms",
					l->local, timeout_ms);
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
	c->timeout_ms = 0;
	if (l->kind == CHANNEL_UNIX)
		snprintf(c->peer, sizeof(c->peer), "%s", l->local);
	else
		channel__sockname((struct sockaddr *)&ss, len, o->scheme, c->peer, sizeof(c->peer));
	return o->accepted(l, fd, c, e);
}

int channel__connect_tls(const char *uri, int timeout_ms, const struct channel_tls_opts *tls,
			 struct channel *c, struct err *e)
{
	struct channel_addr a;
	c->kind = CHANNEL_TCP;
	c->fd = -1;
	c->tls = NULL;
	c->fault = NULL;
	c->rdma = NULL;
	c->bytes_in = c->bytes_out = 0;
	int r = channel__parse_uri(uri, false, &a, e);
	if (r < 0)
		return r;
	c->kind = a.kind;
	c->timeout_ms = 0;
	snprintf(c->peer, sizeof(c->peer), "%s", uri);
	return channel__ops(a.kind)->connect(uri, &a, timeout_ms, tls, c, e);
}

int channel__connect(const char *uri, int timeout_ms, struct channel *c, struct err *e)
{
	return channel__connect_tls(uri, timeout_ms, NULL, c, e);
}
