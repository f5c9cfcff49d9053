/* Zero-copy sends from a long-lived memory region (guest RAM), for the
 * transports that can (rdma:). The others have no region ops: callers are
 * told -EOPNOTSUPP once, at channel__region_add, and copy as before. */
#include <poll.h>

#include "transport/transport.h"
#include "vmhop/util.h"

int channel__region_add(struct channel *c, void *addr, size_t len, struct channel_region **rg,
			struct err *e)
{
	const struct channel_ops *o = channel__ops(c->kind);
	*rg = NULL;
	if (!o->region_add)
		return err__set(e, EOPNOTSUPP, "%s: the %s transport copies (no zero-copy regions)",
				c->peer, o->scheme);
	if (c->fd < 0)
		return err__set(e, EBADF, "%s: the channel is not open", c->peer);
	return o->region_add(c, addr, len, rg, e);
}

int channel__write_region(struct channel *c, struct channel_region *rg, size_t off, size_t len)
{
	const struct channel_ops *o = channel__ops(c->kind);
	if (!o->region_send || !rg)
		return -EOPNOTSUPP;
	uint64_t deadline = c->timeout_ms > 0 ?
			    util__now_ns() + (uint64_t)c->timeout_ms * 1000000ULL : 0;
	while (len) {
		short want = POLLIN;
		ssize_t n = o->region_send(c, rg, off, len, &want);
		if (n > 0) {
			off += (size_t)n;
			len -= (size_t)n;
			continue;
		}
		if (n != -EAGAIN && n != -EINTR)
			return (int)n;
		int ms = channel__ms_left(deadline);
		if (ms == 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = c->fd, .events = want };
		int r = poll(&p, 1, ms);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
	}
	return 0;
}

void channel__region_del(struct channel *c, struct channel_region *rg)
{
	const struct channel_ops *o = channel__ops(c->kind);
	if (rg && o->region_del)
		o->region_del(c, rg);
}
