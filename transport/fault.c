/* The fault-injecting wrapper, for tests: a channel of kind CHANNEL_FAULT
 * that owns another channel (any transport, same fd) and passes its bytes
 * through, cutting, stalling, shortening or corrupting them per a spec
 * (include/vmhop/channel.h). It sits under the shared loops of
 * transport/channel.c, so every fault reaches callers the way a real one
 * would: -EPIPE/-ECONNRESET, -ETIMEDOUT, partial transfers, or a flipped
 * byte left to the stream reader's CRC. All its state is in the wrapper. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "transport/transport.h"
#include "vmhop/util.h"

struct channel_fault {
	struct channel inner;
	struct channel_fault_spec spec;
	uint64_t sent, rcvd;		/* bytes moved each way */
	int send_err, recv_err;		/* sticky once cut */
	size_t retry_len;		/* a send that gave -EAGAIN: TLS wants
					 * the same length again */
	uint64_t rng;			/* SHORT: xorshift state */
};

int channel__fault_parse(const char *spec, struct channel_fault_spec *f, struct err *e)
{
	static const struct { const char *name; enum channel_fault_kind kind; } kinds[] = {
		{ "cut@", CHANNEL_FAULT_CUT },
		{ "stall@", CHANNEL_FAULT_STALL },
		{ "corrupt@", CHANNEL_FAULT_CORRUPT },
	};
	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i].name);
		if (strncmp(spec, kinds[i].name, n))
			continue;
		f->kind = kinds[i].kind;
		if (util__parse_uint(spec + n, 0, UINT64_MAX, &f->at) < 0)
			return err__set(e, EINVAL, "fault %s: expected a byte offset after '@'", spec);
		return 0;
	}
	if (!strcmp(spec, "short")) {
		f->kind = CHANNEL_FAULT_SHORT;
		return 0;
	}
	if (!strncmp(spec, "short:", 6)) {
		uint64_t k;
		if (util__parse_uint(spec + 6, 1, 1u << 20, &k) < 0)
			return err__set(e, EINVAL, "fault %s: expected short:K with K from 1 to %u",
					spec, 1u << 20);
		f->kind = CHANNEL_FAULT_SHORT;
		f->max_chunk = (unsigned)k;
		return 0;
	}
	return err__set(e, EINVAL, "fault %s: unknown (expected cut@N, stall@N, short, short:K "
			"or corrupt@N)", spec);
}

int channel__fault_wrap(struct channel *c, const struct channel_fault_spec *f, struct err *e)
{
	if (c->fd < 0)
		return err__set(e, EBADF, "fault wrapper: the channel is not open");
	if (f->kind == CHANNEL_FAULT_NONE || f->kind > CHANNEL_FAULT_CORRUPT)
		return err__set(e, EINVAL, "fault wrapper: no fault given");
	struct channel_fault *w = calloc(1, sizeof(*w));
	if (!w)
		return err__setsys(e, ENOMEM, "fault wrapper for %s", c->peer);
	w->inner = *c;
	w->spec = *f;
	w->rng = f->at * 0x9e3779b97f4a7c15ULL + 1;
	c->kind = CHANNEL_FAULT;
	c->tls = NULL;
	c->fault = w;
	return 0;
}

static size_t short_len(struct channel_fault *w, size_t len)
{
	unsigned k = w->spec.max_chunk ? w->spec.max_chunk : 7;
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	size_t n = 1 + (size_t)(w->rng % k);
	return n < len ? n : len;
}

/* The connection goes down under the wrapper; the peer sees it end. */
static void cut(struct channel_fault *w)
{
	if (!w->send_err) {
		channel__shutdown(&w->inner);	/* a file has nothing to shut */
		w->send_err = -EPIPE;
		w->recv_err = -ECONNRESET;
	}
}

/* Stalled: wait for no event, so the caller's deadline ends it. A peer
 * that is gone (hang-up or error on the fd) would wake that poll at once
 * and for ever: that is reported as its error instead. */
static ssize_t stalled(struct channel_fault *w, short *want, int gone)
{
	struct pollfd p = { .fd = w->inner.fd };
	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)))
		return gone;
	*want = 0;
	return -EAGAIN;
}

static size_t upto(uint64_t done, uint64_t at, size_t len)
{
	return at - done < len ? (size_t)(at - done) : len;
}

static ssize_t fault_send(struct channel *c, const void *buf, size_t len, short *want)
{
	struct channel_fault *w = c->fault;
	if (!w)
		return -EBADF;
	if (w->send_err)
		return w->send_err;
	if (!len)
		return 0;
	const struct channel_ops *o = channel__ops(w->inner.kind);
	uint8_t flipped;
	const void *p = buf;
	const struct channel_fault_spec *f = &w->spec;
	switch (f->kind) {
	case CHANNEL_FAULT_CUT:
		if (w->sent >= f->at) {
			cut(w);
			return w->send_err;
		}
		len = upto(w->sent, f->at, len);
		break;
	case CHANNEL_FAULT_STALL:
		if (w->sent >= f->at)
			return stalled(w, want, -EPIPE);
		len = upto(w->sent, f->at, len);
		break;
	case CHANNEL_FAULT_SHORT:
		len = w->retry_len ? (w->retry_len < len ? w->retry_len : len) : short_len(w, len);
		break;
	case CHANNEL_FAULT_CORRUPT:
		if (w->sent < f->at) {
			len = upto(w->sent, f->at, len);
		} else if (w->sent == f->at) {
			flipped = *(const uint8_t *)buf ^ 0xff;
			p = &flipped;
			len = 1;
		}
		break;
	default:
		break;
	}
	ssize_t n = o->send(&w->inner, p, len, want);
	w->retry_len = n == -EAGAIN ? len : 0;
	if (n > 0)
		w->sent += (uint64_t)n;
	return n;
}

static ssize_t fault_recv(struct channel *c, void *buf, size_t len, short *want)
{
	struct channel_fault *w = c->fault;
	if (!w)
		return -EBADF;
	if (w->recv_err)
		return w->recv_err;
	if (!len)
		return 0;
	const struct channel_ops *o = channel__ops(w->inner.kind);
	const struct channel_fault_spec *f = &w->spec;
	switch (f->kind) {
	case CHANNEL_FAULT_CUT:
		if (w->rcvd >= f->at) {
			cut(w);
			return w->recv_err;
		}
		len = upto(w->rcvd, f->at, len);
		break;
	case CHANNEL_FAULT_STALL:
		if (w->rcvd >= f->at)
			return stalled(w, want, -ECONNRESET);
		len = upto(w->rcvd, f->at, len);
		break;
	case CHANNEL_FAULT_SHORT:
		len = short_len(w, len);
		break;
	default:
		break;
	}
	ssize_t n = o->recv(&w->inner, buf, len, want);
	if (n <= 0)
		return n;
	if (f->kind == CHANNEL_FAULT_CORRUPT && f->at >= w->rcvd && f->at - w->rcvd < (uint64_t)n)
		((uint8_t *)buf)[f->at - w->rcvd] ^= 0xff;
	w->rcvd += (uint64_t)n;
	return n;
}

static bool recv_stalled(const struct channel_fault *w)
{
	return w->spec.kind == CHANNEL_FAULT_STALL && w->rcvd >= w->spec.at;
}

static int fault_buffered(struct channel *c)
{
	struct channel_fault *w = c->fault;
	if (!w || recv_stalled(w) || w->recv_err)
		return 0;
	const struct channel_ops *o = channel__ops(w->inner.kind);
	return o->buffered ? o->buffered(&w->inner) : 0;
}

/* A stalled reader never has data, whatever the fd says (wait_readable
 * then polls on, busily if the fd is readable, until its timeout: give it
 * one). */
static int fault_settle(struct channel *c)
{
	struct channel_fault *w = c->fault;
	if (!w || w->recv_err)
		return 1;
	if (recv_stalled(w))
		return 0;
	const struct channel_ops *o = channel__ops(w->inner.kind);
	return o->settle ? o->settle(&w->inner) : 1;
}

static int fault_flush(struct channel *c)
{
	struct channel_fault *w = c->fault;
	if (!w)
		return -EBADF;
	const struct channel_ops *o = channel__ops(w->inner.kind);
	return o->flush ? o->flush(&w->inner) : 0;
}

static void fault_close(struct channel *c)
{
	struct channel_fault *w = c->fault;
	if (w) {
		channel__ops(w->inner.kind)->close(&w->inner);
		free(w);
		c->fault = NULL;
	}
	c->fd = -1;
}

static int fault_listen(const char *uri, const struct channel_addr *a,
			const struct channel_tls_opts *tls, struct channel_listener *l,
			struct err *e)
{
	(void)a;
	(void)tls;
	(void)l;
	return err__set(e, EINVAL, "%s: a fault wrapper is made by channel__fault_wrap", uri);
}

static int fault_connect(const char *uri, const struct channel_addr *a, int timeout_ms,
			 const struct channel_tls_opts *tls, struct channel *c, struct err *e)
{
	(void)a;
	(void)timeout_ms;
	(void)tls;
	(void)c;
	return err__set(e, EINVAL, "%s: a fault wrapper is made by channel__fault_wrap", uri);
}

const struct channel_ops channel__fault_ops = {
	.scheme = "fault",
	.listen = fault_listen,
	.listener_close = channel__fd_listener_close,
	.connect = fault_connect,
	.send = fault_send,
	.recv = fault_recv,
	.buffered = fault_buffered,
	.settle = fault_settle,
	.flush = fault_flush,
	.close = fault_close,
};
