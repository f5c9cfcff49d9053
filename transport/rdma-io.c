/* rdma: the data path. Bytes go as RDMA SENDs of up to RDMA_BUF bytes from
 * registered send buffers (a copy), or straight from a registered region
 * (zero copy); the peer's posted receive buffers take them in order. The
 * reader copies out and posts each buffer again once it is read, so a
 * reader that stops makes the writer's SENDs wait (RNR) and its send
 * buffers fill: the writer then waits on its fd and times out in channel.c.
 * Nothing here blocks except the bounded wait at close and flush. */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport/rdma.h"
#include "vmhop/util.h"

#define WR_ID(kind, slot)	(((uint64_t)(kind) << 32) | (slot))

static uint8_t *send_buf(struct channel_rdma *r, unsigned slot)
{
	return r->mem + (size_t)slot * RDMA_BUF;
}

static uint8_t *recv_buf(struct channel_rdma *r, unsigned slot)
{
	return r->mem + (size_t)(RDMA_NR_SEND + slot) * RDMA_BUF;
}

static int post_recv(struct channel_rdma *r, unsigned slot)
{
	struct ibv_sge sge = { .addr = (uintptr_t)recv_buf(r, slot), .length = RDMA_BUF,
			       .lkey = r->mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = WR_ID(WR_RECV, slot), .sg_list = &sge, .num_sge = 1 };
	struct ibv_recv_wr *bad;
	return -ibv_post_recv(r->id->qp, &wr, &bad);
}

static int post_send(struct channel_rdma *r, const void *addr, size_t len, uint32_t lkey,
		     uint64_t wr_id)
{
	struct ibv_sge sge = { .addr = (uintptr_t)addr, .length = (uint32_t)len, .lkey = lkey };
	struct ibv_send_wr wr = { .wr_id = wr_id, .sg_list = &sge, .num_sge = 1,
				  .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED };
	struct ibv_send_wr *bad;
	return -ibv_post_send(r->id->qp, &wr, &bad);
}

int rdma__setup_qp(struct channel_rdma *r, const char *uri, struct err *e)
{
	struct ibv_context *ctx = r->id->verbs;
	if (!ctx)
		return err__set(e, ENODEV, "%s: no RDMA device for this address", uri);
	r->pd = ibv_alloc_pd(ctx);
	if (!r->pd)
		return err__setsys(e, errno, "%s: cannot allocate an RDMA protection domain", uri);
	r->cc = ibv_create_comp_channel(ctx);
	if (!r->cc)
		return err__setsys(e, errno, "%s: cannot create a completion channel", uri);
	int fl = fcntl(r->cc->fd, F_GETFL);
	if (fl < 0 || fcntl(r->cc->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return err__setsys(e, errno, "%s: completion channel", uri);
	unsigned nsend = RDMA_NR_SEND + RDMA_NR_ZC;
	r->cq = ibv_create_cq(ctx, (int)(nsend + RDMA_NR_RECV), NULL, r->cc, 0);
	if (!r->cq)
		return err__setsys(e, errno, "%s: cannot create a completion queue", uri);
	struct ibv_qp_init_attr qa = {
		.send_cq = r->cq, .recv_cq = r->cq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = nsend, .max_recv_wr = RDMA_NR_RECV,
			 .max_send_sge = 1, .max_recv_sge = 1 },
	};
	if (rdma_create_qp(r->id, r->pd, &qa))
		return err__setsys(e, errno, "%s: cannot create an RDMA queue pair", uri);
	size_t size = (size_t)(RDMA_NR_SEND + RDMA_NR_RECV) * RDMA_BUF;
	r->mem = aligned_alloc(4096, size);
	if (!r->mem)
		return err__set(e, ENOMEM, "%s: out of memory for %zu bytes of buffers", uri, size);
	r->mr = ibv_reg_mr(r->pd, r->mem, size, IBV_ACCESS_LOCAL_WRITE);
	if (!r->mr)
		return err__setsys(e, errno, "%s: cannot register %zu bytes of buffers (locked "
				   "memory limit? see ulimit -l)", uri, size);
	for (unsigned i = 0; i < RDMA_NR_SEND; i++)
		r->send_free[i] = i;
	r->nr_send_free = RDMA_NR_SEND;
	for (unsigned i = 0; i < RDMA_NR_RECV; i++) {
		int rc = post_recv(r, i);
		if (rc < 0)
			return err__setsys(e, -rc, "%s: cannot post a receive", uri);
	}
	if (ibv_req_notify_cq(r->cq, 0))
		return err__setsys(e, errno, "%s: cannot arm the completion queue", uri);
	return 0;
}

static void fail(struct channel_rdma *r, int err)
{
	if (!r->err)
		r->err = err;
}

static void complete(struct channel_rdma *r, const struct ibv_wc *wc)
{
	unsigned kind = (unsigned)(wc->wr_id >> 32), slot = (unsigned)wc->wr_id;
	if (kind == WR_SEND)
		r->send_free[r->nr_send_free++] = slot;
	else if (kind == WR_ZC)
		r->zc_busy--;
	if (wc->status != IBV_WC_SUCCESS) {
		/* Flushed: the queue pair went down (a disconnect, ours or the
		 * peer's); anything else: the peer vanished under a transfer. */
		if (wc->status == IBV_WC_WR_FLUSH_ERR)
			r->ended = true;
		else
			fail(r, -ECONNRESET);
		if (kind != WR_RECV)
			r->lost = true;
		return;
	}
	if (kind != WR_RECV)
		return;
	if (!wc->byte_len) {
		(void)post_recv(r, slot);
		return;
	}
	unsigned at = (r->fill_head + r->fill_count) % RDMA_NR_RECV;
	r->filled[at].slot = slot;
	r->filled[at].len = wc->byte_len;
	r->fill_count++;
}

static int poll_cq(struct channel_rdma *r)
{
	struct ibv_wc wc[16];
	int n, total = 0;
	while ((n = ibv_poll_cq(r->cq, 16, wc)) > 0) {
		for (int i = 0; i < n; i++)
			complete(r, &wc[i]);
		total += n;
	}
	if (n < 0)
		fail(r, -EIO);
	return total;
}

/* Drains connection events and completions without blocking. */
static void progress(struct channel_rdma *r)
{
	struct rdma_cm_event *ev;
	while (rdma_get_cm_event(r->ec, &ev) == 0) {
		enum rdma_cm_event_type type = ev->event;
		rdma_ack_cm_event(ev);
		if (type == RDMA_CM_EVENT_DISCONNECTED && r->connected) {
			/* Ours goes to the error state too: the receives left
			 * flush behind what arrived, which is read first. */
			r->connected = false;
			(void)rdma_disconnect(r->id);
		} else if (type == RDMA_CM_EVENT_DEVICE_REMOVAL) {
			fail(r, -ENODEV);
		}
	}
	struct ibv_cq *cq;
	void *ctx;
	unsigned got = 0;
	while (ibv_get_cq_event(r->cc, &cq, &ctx) == 0)
		got++;
	if (got)
		ibv_ack_cq_events(r->cq, got);
	poll_cq(r);
}

/* Arms the completion channel; 1 when completions came meanwhile (look
 * again before sleeping), 0 when poll() on the channel's fd may sleep. */
static int arm(struct channel_rdma *r)
{
	if (ibv_req_notify_cq(r->cq, 0)) {
		fail(r, -EIO);
		return 1;
	}
	return poll_cq(r) > 0;
}

/* Sleeps on the channel's fd until something happens or the deadline. */
static int sleep_on(struct channel_rdma *r, uint64_t deadline)
{
	int ms = channel__ms_left(deadline);
	if (ms == 0)
		return -ETIMEDOUT;
	struct pollfd p = { .fd = r->epfd, .events = POLLIN };
	if (poll(&p, 1, ms) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

/* Every SEND delivered (0), some lost with the connection (-EPIPE or its
 * error), or the deadline (-ETIMEDOUT; 0: none). */
static int drain(struct channel_rdma *r, uint64_t deadline)
{
	for (;;) {
		progress(r);
		if (r->lost)
			return r->err ? r->err : -EPIPE;
		if (r->nr_send_free == RDMA_NR_SEND && !r->zc_busy)
			return 0;
		if (r->err)
			return r->err;
		if (r->ended || !r->connected)
			return -EPIPE;
		if (arm(r))
			continue;
		int rc = sleep_on(r, deadline);
		if (rc < 0)
			return rc;
	}
}

void rdma__teardown(struct channel_rdma *r, int linger_ms)
{
	if (r->connected && r->epfd >= 0 && linger_ms > 0)
		(void)drain(r, util__now_ns() + (uint64_t)linger_ms * 1000000ULL);
	if (r->id && r->connected)
		(void)rdma_disconnect(r->id);
	if (r->id && r->id->qp)
		rdma_destroy_qp(r->id);
	if (r->mr)
		ibv_dereg_mr(r->mr);
	free(r->mem);
	if (r->cq) {
		/* Every event taken must be acknowledged before the queue goes. */
		struct ibv_cq *cq;
		void *ctx;
		unsigned got = 0;
		while (r->cc && ibv_get_cq_event(r->cc, &cq, &ctx) == 0)
			got++;
		if (got)
			ibv_ack_cq_events(r->cq, got);
		ibv_destroy_cq(r->cq);
	}
	if (r->cc)
		ibv_destroy_comp_channel(r->cc);
	if (r->pd)
		ibv_dealloc_pd(r->pd);
	if (r->id)
		rdma_destroy_id(r->id);
	if (r->ec)
		rdma_destroy_event_channel(r->ec);
	if (r->epfd >= 0)
		close(r->epfd);
	free(r);
}

/* ---- the channel ops ------------------------------------------------------ */

/* What a transfer must say now instead of moving bytes, or 0. */
static int broken(struct channel_rdma *r, bool sending)
{
	if (r->err)
		return r->err;
	if (sending && (r->ended || !r->connected))
		return -EPIPE;
	return 0;
}

ssize_t rdma__send(struct channel *c, const void *buf, size_t len, short *want)
{
	struct channel_rdma *r = c->rdma;
	if (!r)
		return -EBADF;
	/* With a buffer free, the news can wait for the next call that needs
	 * a completion: small writes cost no system call then. */
	if (!r->nr_send_free)
		progress(r);
	for (;;) {
		int rc = broken(r, true);
		if (rc)
			return rc;
		const uint8_t *p = buf;
		size_t moved = 0;
		while (moved < len && r->nr_send_free) {
			unsigned slot = r->send_free[--r->nr_send_free];
			size_t n = len - moved < RDMA_BUF ? len - moved : RDMA_BUF;
			memcpy(send_buf(r, slot), p + moved, n);
			rc = post_send(r, send_buf(r, slot), n, r->mr->lkey, WR_ID(WR_SEND, slot));
			if (rc < 0) {
				r->send_free[r->nr_send_free++] = slot;
				if (moved)
					break;
				progress(r);	/* the connection may be gone: say so */
				return broken(r, true) ? broken(r, true) : rc;
			}
			moved += n;
		}
		if (moved)
			return (ssize_t)moved;
		if (!arm(r)) {
			*want = POLLIN;
			return -EAGAIN;
		}
	}
}

ssize_t rdma__recv(struct channel *c, void *buf, size_t len, short *want)
{
	struct channel_rdma *r = c->rdma;
	if (!r)
		return -EBADF;
	/* What arrived is read before anything else is looked at. */
	if (!r->fill_count)
		progress(r);
	for (;;) {
		uint8_t *p = buf;
		size_t moved = 0;
		while (moved < len && r->fill_count) {
			unsigned slot = r->filled[r->fill_head].slot;
			unsigned avail = r->filled[r->fill_head].len - r->fill_off;
			size_t n = len - moved < avail ? len - moved : avail;
			memcpy(p + moved, recv_buf(r, slot) + r->fill_off, n);
			moved += n;
			r->fill_off += (unsigned)n;
			if (r->fill_off == r->filled[r->fill_head].len) {
				r->fill_off = 0;
				r->fill_head = (r->fill_head + 1) % RDMA_NR_RECV;
				r->fill_count--;
				if (!r->ended)
					(void)post_recv(r, slot);	/* fails only once down */
			}
		}
		if (moved)
			return (ssize_t)moved;
		int rc = broken(r, false);
		if (rc)
			return rc;
		if (r->ended || !r->connected)
			return 0;
		if (!arm(r)) {
			*want = POLLIN;
			return -EAGAIN;
		}
	}
}

/* buffered and settle: 1 when a read returns at once (data, the end or an
 * error), else 0 with the completion queue armed. */
int rdma__ready(struct channel *c)
{
	struct channel_rdma *r = c->rdma;
	if (!r)
		return 1;
	progress(r);
	do {
		if (r->fill_count || r->err || r->ended || !r->connected)
			return 1;
	} while (arm(r));
	return 0;
}

int rdma__flush(struct channel *c)
{
	struct channel_rdma *r = c->rdma;
	if (!r)
		return -EBADF;
	return drain(r, c->timeout_ms > 0 ?
			util__now_ns() + (uint64_t)c->timeout_ms * 1000000ULL : 0);
}

/* ---- zero copy ------------------------------------------------------------ */

int rdma__region_add(struct channel *c, void *addr, size_t len, struct channel_region **rg,
		     struct err *e)
{
	struct channel_rdma *r = c->rdma;
	if (!r)
		return err__set(e, EBADF, "%s: the channel is not open", c->peer);
	struct channel_region *g = calloc(1, sizeof(*g));
	if (!g)
		return err__set(e, ENOMEM, "%s: out of memory", c->peer);
	/* Local read access is implied: the device only reads it to send. */
	g->mr = ibv_reg_mr(r->pd, addr, len, 0);
	if (!g->mr) {
		int saved = errno;
		free(g);
		return err__setsys(e, saved, "%s: cannot register %zu bytes for zero-copy sends "
				   "(locked memory limit? see ulimit -l)", c->peer, len);
	}
	g->addr = addr;
	g->len = len;
	*rg = g;
	return 0;
}

ssize_t rdma__region_send(struct channel *c, struct channel_region *rg, size_t off, size_t len,
			  short *want)
{
	struct channel_rdma *r = c->rdma;
	if (!r)
		return -EBADF;
	if (off > rg->len || len > rg->len - off)
		return -EINVAL;
	progress(r);
	for (;;) {
		int rc = broken(r, true);
		if (rc)
			return rc;
		size_t moved = 0;
		while (moved < len && r->zc_busy < RDMA_NR_ZC) {
			size_t n = len - moved < RDMA_BUF ? len - moved : RDMA_BUF;
			rc = post_send(r, rg->addr + off + moved, n, rg->mr->lkey, WR_ID(WR_ZC, 0));
			if (rc < 0) {
				if (moved)
					break;
				progress(r);
				return broken(r, true) ? broken(r, true) : rc;
			}
			r->zc_busy++;
			moved += n;
		}
		if (moved)
			return (ssize_t)moved;
		if (!arm(r)) {
			*want = POLLIN;
			return -EAGAIN;
		}
	}
}

void rdma__region_del(struct channel *c, struct channel_region *rg)
{
	(void)c;
	ibv_dereg_mr(rg->mr);
	free(rg);
}
