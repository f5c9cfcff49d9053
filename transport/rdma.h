/* Inside transport/: the state of one rdma: connection, shared by the
 * connection manager side (rdma.c) and the data path (rdma-io.c). */
#ifndef VMHOP_TRANSPORT_RDMA_H
#define VMHOP_TRANSPORT_RDMA_H

#include <stdbool.h>
#include <stdint.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "transport/transport.h"

/* Each side keeps RDMA_NR_RECV receive buffers posted and RDMA_NR_SEND
 * send buffers of RDMA_BUF bytes; one SEND carries at most RDMA_BUF bytes.
 * Flow control is the hardware's: a SEND finding no receive posted is
 * retried (RNR, retried for ever) until the reader frees one, so a reader
 * that stops stops the writer, whose sends then time out in channel.c. */
#define RDMA_BUF	(256u * 1024)
#define RDMA_NR_SEND	8u
#define RDMA_NR_RECV	16u
#define RDMA_NR_ZC	32u	/* zero-copy SENDs in flight (regions) */

enum rdma_wr_kind { WR_RECV = 1, WR_SEND, WR_ZC };

struct channel_rdma {
	int epfd;			/* c->fd: ec's and cc's fds, for poll() */
	struct rdma_event_channel *ec;	/* this connection's own */
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	struct ibv_mr *mr;		/* the buffers below */
	uint8_t *mem;			/* NR_SEND send buffers, then NR_RECV receive buffers */
	unsigned send_free[RDMA_NR_SEND], nr_send_free;
	unsigned zc_busy;		/* zero-copy SENDs not completed */
	/* Receive buffers filled, in arrival order (an RC queue completes its
	 * receives in order), and how much of the first was read. */
	struct { unsigned slot, len; } filled[RDMA_NR_RECV];
	unsigned fill_head, fill_count, fill_off;
	bool connected;			/* established and not yet disconnected */
	bool ended;			/* the peer disconnected (or we did) */
	bool lost;			/* a SEND failed: bytes written never arrived */
	int err;			/* first transfer error (-errno), sticky */
	unsigned cq_events;		/* got, not yet acknowledged */
};

struct channel_rdma_server {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
};

struct channel_region {
	struct ibv_mr *mr;
	uint8_t *addr;
	size_t len;
};

/* rdma-io.c: the queue pair, buffers and completion queue on id's device;
 * receives are posted, so the peer may send as soon as it is connected. */
int rdma__setup_qp(struct channel_rdma *r, const char *uri, struct err *e);
void rdma__teardown(struct channel_rdma *r, int linger_ms);

/* rdma-io.c: the channel ops of the data path. */
ssize_t rdma__send(struct channel *c, const void *buf, size_t len, short *want);
ssize_t rdma__recv(struct channel *c, void *buf, size_t len, short *want);
int rdma__ready(struct channel *c);
int rdma__flush(struct channel *c);
int rdma__region_add(struct channel *c, void *addr, size_t len, struct channel_region **rg,
		     struct err *e);
ssize_t rdma__region_send(struct channel *c, struct channel_region *rg, size_t off, size_t len,
			  short *want);
void rdma__region_del(struct channel *c, struct channel_region *rg);

#endif
