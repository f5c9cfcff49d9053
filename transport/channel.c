/* The transfer calls every channel shares: whole-buffer reads and writes
 * bounded by the channel's timeout, one deadline per call. Waiting with
 * poll() before each transfer, rather than SO_RCVTIMEO, keeps that deadline
 * and lets a later TLS or RDMA channel use the same loop around its own fd. */
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmhop/channel.h"
#include "vmhop/util.h"

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
	int ms = -1;
	if (deadline) {
		uint64_t now = util__now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		ms = (int)((deadline - now + 999999) / 1000000);
	}
	int w = wait_for(c, events, ms);
	return w == 0 ? -ETIMEDOUT : w;
}

void channel__set_timeout(struct channel *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
}

int channel__wait_readable(struct channel *c, int timeout_ms)
{
	return wait_for(c, POLLIN, timeout_ms);
}

int channel__write_full(struct channel *c, const void *buf, size_t len)
{
	const char *p = buf;
	uint64_t deadline = deadline_of(c);
	while (len) {
		int w = wait_until(c, POLLOUT, deadline);
		if (w < 0)
			return w;
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static ssize_t read_some_until(struct channel *c, void *buf, size_t len, uint64_t deadline)
{
	for (;;) {
		int w = wait_until(c, POLLIN, deadline);
		if (w < 0)
			return w;
		ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
		if (n >= 0)
			return n;
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
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

void channel__shutdown(struct channel *c)
{
	if (c->fd >= 0)
		(void)shutdown(c->fd, SHUT_RDWR);	/* only fails if already gone */
}

void channel__close(struct channel *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}
