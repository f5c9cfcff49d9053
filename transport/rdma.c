/* rdma: channels: connection management with librdmacm (resolve, connect,
 * listen, accept, disconnect). Each connection has its own event channel, so
 * its connection events and its completions can be waited for together: the
 * channel's fd is an epoll set of the two (transport/rdma-io.c moves the
 * bytes). Machines without an RDMA device get one clear message instead of
 * librdmacm's errors. */
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "transport/rdma.h"
#include "vmhop/util.h"

/* Connection setup (resolution, establishment) when the caller gives no
 * limit, and an accepted client's establishment. */
#define RDMA_SETUP_MS	30000

static int no_device(const char *uri, struct err *e)
{
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);
	if (list)
		ibv_free_device_list(list);
	if (list && n > 0)
		return 0;
	return err__set(e, ENODEV, "%s: no RDMA device: load rdma_rxe or use tcp:", uri);
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int open_events(const char *uri, struct rdma_event_channel **ec, struct err *e)
{
	*ec = rdma_create_event_channel();
	if (!*ec)
		return err__setsys(e, errno, "%s: cannot open the RDMA connection manager "
				   "(/dev/infiniband/rdma_cm: load rdma_ucm)", uri);
	int r = set_nonblock((*ec)->fd);
	if (r < 0) {
		rdma_destroy_event_channel(*ec);
		*ec = NULL;
		return err__setsys(e, -r, "%s: connection manager events", uri);
	}
	return 0;
}

static uint64_t deadline_in(int ms)
{
	return util__now_ns() + (uint64_t)ms * 1000000ULL;
}

static int wait_event(struct rdma_event_channel *ec, uint64_t deadline,
		     enum rdma_cm_event_type *type, int *status, struct rdma_cm_id **id)
{
	for (;;) {
		struct rdma_cm_event *ev;
		if (rdma_get_cm_event(ec, &ev) == 0) {
			*type = ev->event;
			*status = ev->status;
			if (id)
				*id = ev->id;
			rdma_ack_cm_event(ev);
			return 0;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		int ms = channel__ms_left(deadline);
		if (ms == 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = ec->fd, .events = POLLIN };
		if (poll(&p, 1, ms) < 0 && errno != EINTR)
			return -errno;
	}
}

static socklen_t sa_len(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static int resolve(const char *uri, const struct channel_addr *a, bool passive,
		   struct addrinfo **res, struct err *e)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	int r = getaddrinfo(a->host, a->port, &hints, res);
	if (r)
		return err__set(e, EHOSTUNREACH, "%s: %s", uri,
				r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	return 0;
}

/* The connection is up: its fd, and the RNR timer the peer's SENDs wait
 * when we have no receive posted (the connection manager leaves the
 * longest, 655 ms; 12 is 0.64 ms). */
static int established(struct channel_rdma *r, const char *uri, struct channel *c,
		       struct err *e)
{
	struct ibv_qp_attr at = { .min_rnr_timer = 12 };
	(void)ibv_modify_qp(r->id->qp, &at, IBV_QP_MIN_RNR_TIMER);	/* best effort */
	r->connected = true;
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0)
		return err__setsys(e, errno, "%s: epoll", uri);
	struct epoll_event ev = { .events = EPOLLIN };
	int fds[2] = { r->ec->fd, r->cc->fd };
	for (int i = 0; i < 2; i++) {
		ev.data.fd = fds[i];
		if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fds[i], &ev) < 0)
			return err__setsys(e, errno, "%s: epoll", uri);
	}
	c->fd = r->epfd;
	c->rdma = r;
	return 0;
}

static struct rdma_conn_param conn_param(void)
{
	/* Retries of a lost packet: 7; of a SEND the peer had no buffer for
	 * yet: 7 means for ever (the I/O timeout ends a stalled peer). */
	return (struct rdma_conn_param){ .retry_count = 7, .rnr_retry_count = 7 };
}

static struct channel_rdma *rdma_new(void)
{
	struct channel_rdma *r = calloc(1, sizeof(*r));
	if (r)
		r->epfd = -1;
	return r;
}

/* ---- connecting ----------------------------------------------------------- */

/* One step of the connection setup: the event expected, or an error in
 * the words of tcp:. */
static int expect(struct channel_rdma *r, const char *uri, uint64_t deadline,
		  enum rdma_cm_event_type want, const char *step, struct err *e)
{
	enum rdma_cm_event_type type;
	int status;
	int rc = wait_event(r->ec, deadline, &type, &status, NULL);
	if (rc == -ETIMEDOUT)
		return err__set(e, ETIMEDOUT, "cannot connect to %s: %s timed out", uri, step);
	if (rc < 0)
		return err__setsys(e, -rc, "cannot connect to %s: %s", uri, step);
	if (type == want)
		return 0;
	switch (type) {
	case RDMA_CM_EVENT_REJECTED:
		return err__setsys(e, ECONNREFUSED, "cannot connect to %s", uri);
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
		return err__set(e, EHOSTUNREACH, "cannot connect to %s: %s failed: %s (no RDMA "
				"device on a route to the address?)", uri, step,
				strerror(status < 0 ? -status : EHOSTUNREACH));
	case RDMA_CM_EVENT_UNREACHABLE:
		return err__setsys(e, status == -ETIMEDOUT ? ETIMEDOUT : EHOSTUNREACH,
				   "cannot connect to %s", uri);
	default:
		return err__set(e, ECONNABORTED, "cannot connect to %s: %s: unexpected %s (status %d)",
				uri, step, rdma_event_str(type), status);
	}
}

static int chan_connect(const char *uri, const struct channel_addr *a, int timeout_ms,
			 const struct channel_tls_opts *tls, struct channel *c, struct err *e)
{
	(void)tls;
	c->rdma = NULL;
	c->fd = -1;
	int rc = no_device(uri, e);
	if (rc < 0)
		return rc;
	uint64_t deadline = deadline_in(timeout_ms > 0 ? timeout_ms : RDMA_SETUP_MS);
	struct channel_rdma *r = rdma_new();
	if (!r)
		return err__set(e, ENOMEM, "%s: out of memory", uri);
	struct addrinfo *res = NULL;
	rc = open_events(uri, &r->ec, e);
	if (!rc && rdma_create_id(r->ec, &r->id, NULL, RDMA_PS_TCP))
		rc = err__setsys(e, errno, "%s: cannot create an RDMA connection", uri);
	if (!rc)
		rc = resolve(uri, a, false, &res, e);
	if (!rc && rdma_resolve_addr(r->id, NULL, res->ai_addr, channel__ms_left(deadline)))
		rc = err__setsys(e, errno, "cannot connect to %s: address resolution", uri);
	if (!rc)
		rc = expect(r, uri, deadline, RDMA_CM_EVENT_ADDR_RESOLVED, "address resolution", e);
	if (!rc && rdma_resolve_route(r->id, channel__ms_left(deadline)))
		rc = err__setsys(e, errno, "cannot connect to %s: route resolution", uri);
	if (!rc)
		rc = expect(r, uri, deadline, RDMA_CM_EVENT_ROUTE_RESOLVED, "route resolution", e);
	if (!rc)
		rc = rdma__setup_qp(r, uri, e);
	struct rdma_conn_param p = conn_param();
	if (!rc && rdma_connect(r->id, &p))
		rc = err__setsys(e, errno, "cannot connect to %s", uri);
	if (!rc)
		rc = expect(r, uri, deadline, RDMA_CM_EVENT_ESTABLISHED, "connection", e);
	if (!rc)
		rc = established(r, uri, c, e);
	if (res)
		freeaddrinfo(res);
	if (rc < 0) {
		r->connected = false;	/* nothing to drain */
		rdma__teardown(r, 0);
		c->fd = -1;
		c->rdma = NULL;
	}
	return rc;
}

/* ---- listening ------------------------------------------------------------ */

static void server_free(struct channel_rdma_server *s)
{
	if (s->id)
		rdma_destroy_id(s->id);
	if (s->ec)
		rdma_destroy_event_channel(s->ec);
	free(s);
}

static int chan_listen(const char *uri, const struct channel_addr *a,
			const struct channel_tls_opts *tls, struct channel_listener *l,
			struct err *e)
{
	(void)tls;
	l->fd = -1;
	l->rdma = NULL;
	int rc = no_device(uri, e);
	if (rc < 0)
		return rc;
	struct channel_rdma_server *s = calloc(1, sizeof(*s));
	if (!s)
		return err__set(e, ENOMEM, "%s: out of memory", uri);
	struct addrinfo *res = NULL;
	rc = open_events(uri, &s->ec, e);
	if (!rc && rdma_create_id(s->ec, &s->id, NULL, RDMA_PS_TCP))
		rc = err__setsys(e, errno, "%s: cannot create an RDMA listener", uri);
	if (!rc)
		rc = resolve(uri, a, true, &res, e);
	if (!rc && (rdma_bind_addr(s->id, res->ai_addr) || rdma_listen(s->id, 4)))
		rc = err__setsys(e, errno, "cannot listen on %s", uri);
	if (res)
		freeaddrinfo(res);
	if (rc < 0) {
		server_free(s);
		return rc;
	}
	struct sockaddr *sa = rdma_get_local_addr(s->id);
	channel__sockname(sa, sa_len(sa), "rdma", l->local, sizeof(l->local));
	l->fd = s->ec->fd;
	l->rdma = s;
	return 0;
}

static void rdma_listener_close(struct channel_listener *l)
{
	if (l->rdma)
		server_free(l->rdma);
	l->rdma = NULL;
	l->fd = -1;
}

/* One client: its own event channel, its queue pair, accept, established. */
static int take_client(struct channel_listener *l, struct rdma_cm_id *id, uint64_t deadline,
		       struct channel *c, struct err *e)
{
	struct sockaddr *sa = rdma_get_peer_addr(id);
	channel__sockname(sa, sa_len(sa), "rdma", c->peer, sizeof(c->peer));
	struct channel_rdma *r = rdma_new();
	if (!r) {
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
		return err__set(e, ENOMEM, "%s: out of memory", l->local);
	}
	r->id = id;
	int rc = open_events(l->local, &r->ec, e);
	if (!rc && rdma_migrate_id(id, r->ec))
		rc = err__setsys(e, errno, "accepting on %s", l->local);
	if (!rc)
		rc = rdma__setup_qp(r, l->local, e);
	struct rdma_conn_param p = conn_param();
	if (!rc && rdma_accept(id, &p))
		rc = err__setsys(e, errno, "accepting %s on %s", c->peer, l->local);
	else if (rc < 0)
		rdma_reject(id, NULL, 0);
	if (!rc) {
		enum rdma_cm_event_type type;
		int status;
		rc = wait_event(r->ec, deadline, &type, &status, NULL);
		if (rc < 0)
			rc = err__setsys(e, -rc, "accepting %s on %s", c->peer, l->local);
		else if (type != RDMA_CM_EVENT_ESTABLISHED)
			rc = err__set(e, ECONNABORTED, "accepting %s on %s: %s (status %d)", c->peer,
				      l->local, rdma_event_str(type), status);
	}
	if (!rc)
		rc = established(r, l->local, c, e);
	if (rc < 0) {
		rdma__teardown(r, 0);
		c->fd = -1;
		c->rdma = NULL;
	}
	return rc;
}

static int chan_accept(struct channel_listener *l, int timeout_ms, struct channel *c,
			struct err *e)
{
	struct channel_rdma_server *s = l->rdma;
	c->rdma = NULL;
	if (!s)
		return err__set(e, EBADF, "%s: the listener is closed", l->local);
	uint64_t deadline = timeout_ms > 0 ? deadline_in(timeout_ms) : 0;
	for (;;) {
		enum rdma_cm_event_type type;
		int status;
		struct rdma_cm_id *id;
		int rc = wait_event(s->ec, deadline, &type, &status, &id);
		if (rc == -ETIMEDOUT)
			return err__set(e, ETIMEDOUT, "no connection on %s within %d ms",
					l->local, timeout_ms);
		if (rc < 0)
			return err__setsys(e, -rc, "waiting for a connection on %s", l->local);
		if (type != RDMA_CM_EVENT_CONNECT_REQUEST)
			continue;	/* nothing else concerns the listening id */
		uint64_t setup = deadline_in(RDMA_SETUP_MS);
		return take_client(l, id, deadline && deadline < setup ? deadline : setup, c, e);
	}
}

/* ---- closing ---------------------------------------------------------------- */

static void rdma_close(struct channel *c)
{
	struct channel_rdma *r = c->rdma;
	if (r) {
		/* What was written must reach the peer first, as over TCP. */
		rdma__teardown(r, c->timeout_ms > 0 ? c->timeout_ms : RDMA_SETUP_MS / 2);
	}
	c->rdma = NULL;
	c->fd = -1;
}

/* The peer sees the connection end; our own transfers end with it (a
 * thread waiting in one wakes up on the flushed requests). */
static void rdma_shutdown(struct channel *c)
{
	struct channel_rdma *r = c->rdma;
	if (r && r->id)
		(void)rdma_disconnect(r->id);	/* fails only once disconnected */
}

const struct channel_ops channel__rdma_ops = {
	.scheme = "rdma",
	.listen = chan_listen,
	.accept = chan_accept,
	.listener_close = rdma_listener_close,
	.connect = chan_connect,
	.send = rdma__send,
	.recv = rdma__recv,
	.buffered = rdma__ready,
	.settle = rdma__ready,
	.flush = rdma__flush,
	.close = rdma_close,
	.shutdown = rdma_shutdown,
	.region_add = rdma__region_add,
	.region_send = rdma__region_send,
	.region_del = rdma__region_del,
};
