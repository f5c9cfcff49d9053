/* Inside transport/: the ops table every transport fills in, and the socket
 * helpers the fd-based ones share. A channel's kind picks its table, so a
 * struct channel built by hand around a socket ({ .kind = CHANNEL_TCP,
 * .fd = ... }, as tests do) works with every call. */
#ifndef VMHOP_TRANSPORT_H
#define VMHOP_TRANSPORT_H

#include <sys/socket.h>

#include "vmhop/channel.h"

struct channel_ops {
	const char *scheme;		/* "tcp", the URI's prefix without ':' */
	int (*listen)(const char *uri, const struct channel_addr *a,
		      const struct channel_tls_opts *tls, struct channel_listener *l,
		      struct err *e);
	/* After the generic accept: fd is connected (blocking), c->peer named;
	 * sets up c (TLS: the handshake, within the listener's handshake
	 * timeout). Closes fd on failure. */
	int (*accepted)(struct channel_listener *l, int fd, struct channel *c, struct err *e);
	void (*listener_close)(struct channel_listener *l);
	/* Instead of the generic accept on a listening socket (file:); c's
	 * kind, fd, tls, fault, timeout and peer are set beforehand. NULL:
	 * the generic accept, then accepted. */
	int (*accept)(struct channel_listener *l, int timeout_ms, struct channel *c,
		      struct err *e);
	int (*connect)(const char *uri, const struct channel_addr *a, int timeout_ms,
		       const struct channel_tls_opts *tls, struct channel *c, struct err *e);
	/* Never block: > 0 bytes moved, 0 at end of stream (recv only), -EAGAIN
	 * with *want set to the poll() events to wait for, or -errno. */
	ssize_t (*send)(struct channel *c, const void *buf, size_t len, short *want);
	ssize_t (*recv)(struct channel *c, void *buf, size_t len, short *want);
	/* 1 when a read would not block now without looking at the fd
	 * (decrypted bytes kept by the transport), else 0. NULL: never. */
	int (*buffered)(struct channel *c);
	/* After poll() said the fd is readable: 1 when that is application
	 * data or an end (a read would return), 0 when the transport consumed
	 * it for itself (TLS records that are not data). NULL: always 1. */
	int (*settle)(struct channel *c);
	/* Makes what was written durable (file:); NULL: nothing to do. */
	int (*flush)(struct channel *c);
	void (*close)(struct channel *c);
	/* Optional. NULL: shutdown(2) on c->fd. Safe from another thread. */
	void (*shutdown)(struct channel *c);
	/* Optional, for zero copy (channel__region_add): NULL where the
	 * transport must copy. region_send queues bytes of the region like
	 * send (never blocks: > 0 queued, or -EAGAIN with *want, or -errno). */
	int (*region_add)(struct channel *c, void *addr, size_t len,
			  struct channel_region **rg, struct err *e);
	ssize_t (*region_send)(struct channel *c, struct channel_region *rg, size_t off,
			       size_t len, short *want);
	void (*region_del)(struct channel *c, struct channel_region *rg);
	/* Optional: the peer's proven identity into buf ("" when none). */
	void (*identity)(const struct channel *c, char *buf, size_t size);
};

extern const struct channel_ops channel__tcp_ops;
extern const struct channel_ops channel__unix_ops;
extern const struct channel_ops channel__tls_ops;
extern const struct channel_ops channel__file_ops;
extern const struct channel_ops channel__fault_ops;
extern const struct channel_ops channel__rdma_ops;

const struct channel_ops *channel__ops(enum channel_kind kind);

/* Shared by the fd-based transports (transport/tcp.c). */
ssize_t channel__fd_send(struct channel *c, const void *buf, size_t len, short *want);
ssize_t channel__fd_recv(struct channel *c, void *buf, size_t len, short *want);
void channel__fd_close(struct channel *c);
int channel__fd_accepted(struct channel_listener *l, int fd, struct channel *c, struct err *e);
void channel__fd_listener_close(struct channel_listener *l);
/* TCP's resolve-and-connect and bind-and-listen, for tcp: and tls:; name
 * the addresses with scheme. */
int channel__tcp_connect_fd(const char *uri, const struct channel_addr *a, int timeout_ms,
			    int *fd, struct err *e);
int channel__tcp_listen_fd(const char *uri, const struct channel_addr *a, const char *scheme,
			   struct channel_listener *l, struct err *e);
void channel__tcp_tune(int fd);
void channel__sockname(const struct sockaddr *sa, socklen_t len, const char *scheme,
		       char *buf, size_t size);
/* The time left before deadline (ns, 0: none) as a poll() timeout; -1:
 * none, 0 when it passed. */
int channel__ms_left(uint64_t deadline);

#endif
