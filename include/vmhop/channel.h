/* Channels: the byte pipes a migration runs over, one interface for every
 * transport. A channel is a connected, full-duplex, reliable byte stream with
 * an fd that poll() understands; each transport is an ops table behind the
 * same calls (transport/transport.h). Addresses are URIs: `tcp:HOST:PORT`
 * (HOST may be `[v6addr]`), `tls:HOST:PORT` (TLS 1.3 over TCP, mutual X.509
 * authentication), `rdma:HOST:PORT` (RDMA SENDs through librdmacm and
 * libibverbs, e.g. soft-RoCE), `unix:PATH`, `file:PATH` (a recorded stream:
 * see below).
 *
 * file:PATH is one-way. channel__connect("file:PATH") creates PATH for
 * writing (O_CREAT|O_EXCL, mode 0600: an existing file is never clobbered,
 * -EEXIST); channel__listen("file:PATH") opens an existing PATH for reading
 * and channel__accept hands that reader out once. Reads on the writer and
 * writes on the reader fail with -EBADF. Disk I/O is not bounded by the
 * timeout. channel__flush (and channel__close, which cannot report it)
 * fsyncs the file and its directory.
 *
 * For tests: channel__pair makes two connected in-memory channels (a
 * socketpair), and channel__fault_wrap puts a fault-injecting wrapper
 * around any channel (see struct channel_fault_spec).
 *
 * Every blocking call is bounded by the channel's I/O timeout, so a peer that
 * stops reading or writing turns into -ETIMEDOUT instead of a hang. */
#ifndef VMHOP_CHANNEL_H
#define VMHOP_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmhop/err.h"

#define CHANNEL_URI_MAX 300

#define CHANNEL_TLS_ALLOW_MAX 16

enum channel_kind {
	CHANNEL_TCP,
	CHANNEL_UNIX,
	CHANNEL_TLS,
	CHANNEL_FILE,
	CHANNEL_FAULT,		/* a wrapper from channel__fault_wrap */
	CHANNEL_RDMA,		/* rdma:ADDR:PORT, librdmacm (transport/rdma.c) */
	CHANNEL_KINDS
};

struct channel_addr {
	enum channel_kind kind;
	char host[256];		/* without the brackets of an IPv6 literal; unix:, file: the path */
	char port[8];		/* empty for unix: */
};

/* TLS settings (tls: URIs). Both sides need all three files: the CA that
 * signed the peer's certificate, and their own certificate and key (the key
 * file must not be readable by group or others). The listener accepts only
 * clients whose certificate subject is in allow[] (its CN, or the whole
 * subject written as RFC 2253, e.g. "CN=src,O=Example"); none listed: any
 * client the CA signed. The connecting side checks the listener's
 * certificate against name (a DNS name or an IP address; NULL: the URI's
 * host). */
struct channel_tls_opts {
	const char *ca, *cert, *key;
	const char *allow[CHANNEL_TLS_ALLOW_MAX];
	unsigned nr_allow;
	const char *name;
	int handshake_timeout_ms;	/* listener: per accepted client; 0: 15 s */
};

struct channel_tls;		/* transport/tls.c */
struct channel_tls_server;
struct channel_fault;		/* transport/fault.c */
struct channel_rdma;		/* transport/rdma.c */
struct channel_rdma_server;
struct channel_region;		/* transport/region.c */

struct channel {
	enum channel_kind kind;
	int fd;
	int timeout_ms;		/* every read/write/wait; 0 = none */
	/* Before the strings: GCC bounds a string by what follows it in the
	 * struct, and its format-truncation warnings grow with that. */
	struct channel_rdma *rdma;	/* rdma: the connection; NULL otherwise */
	char peer[CHANNEL_URI_MAX];	/* for messages */
	struct channel_tls *tls;	/* tls: the session; NULL otherwise */
	struct channel_fault *fault;	/* a fault wrapper's state; NULL otherwise */
	/* Statistics: bytes moved through channel__write_full and the reads. */
	uint64_t bytes_out, bytes_in;
};

struct channel_listener {
	enum channel_kind kind;
	int fd;
	struct channel_rdma_server *rdma;	/* rdma: the listening id; NULL otherwise */
	char local[CHANNEL_URI_MAX];	/* the bound address, port resolved */
	struct channel_tls_server *tls;	/* tls: the context; NULL otherwise */
};

/* Parses "tcp:HOST:PORT", "tls:HOST:PORT", "rdma:HOST:PORT", "unix:PATH"
 * or "file:PATH"; port 0 is allowed only when listening. */
int channel__parse_uri(const char *uri, bool listen, struct channel_addr *a, struct err *e);

int channel__listen(const char *uri, struct channel_listener *l, struct err *e);
/* The same with TLS settings, needed (and only used) for tls: URIs. */
int channel__listen_tls(const char *uri, const struct channel_tls_opts *tls,
			struct channel_listener *l, struct err *e);
/* Waits up to timeout_ms (0 = forever) for one connection. */
int channel__accept(struct channel_listener *l, int timeout_ms, struct channel *c,
		    struct err *e);
void channel__listener_close(struct channel_listener *l);

/* Connects within timeout_ms (0 = the system's own limit). */
int channel__connect(const char *uri, int timeout_ms, struct channel *c, struct err *e);
/* The same with TLS settings: a tls: URI's handshake, certificate checks and
 * the listener's verdict on ours all happen within timeout_ms. */
int channel__connect_tls(const char *uri, int timeout_ms, const struct channel_tls_opts *tls,
			 struct channel *c, struct err *e);
void channel__set_timeout(struct channel *c, int timeout_ms);

/* Whole-buffer transfers. read_full returns 0 on success, -ENODATA on a clean
 * end of stream before the first byte, -EPIPE on one in the middle, -errno
 * (-ETIMEDOUT after the timeout) otherwise. */
int channel__write_full(struct channel *c, const void *buf, size_t len);
int channel__read_full(struct channel *c, void *buf, size_t len);
/* One read of at most len bytes: > 0, 0 at end of stream, or -errno. */
ssize_t channel__read_some(struct channel *c, void *buf, size_t len);
/* 1 when there is something to read (or the peer hung up), 0 after
 * timeout_ms (0: just look, < 0: wait for ever), -errno on error. */
int channel__wait_readable(struct channel *c, int timeout_ms);
/* Ends both directions now: the peer sees the connection drop. (file: has
 * no peer: nothing happens.) */
void channel__shutdown(struct channel *c);
/* Who is at the other end, as far as the transport proved it: for tls: the
 * subject of the certificate the peer presented and we verified (RFC 2253,
 * e.g. "CN=vmhop-src"); otherwise its address (c->peer). */
void channel__identity(const struct channel *c, char *buf, size_t size);
/* Makes what was written durable: file: fsyncs the file and its directory
 * (0 or -errno); 0 for the other transports. */
int channel__flush(struct channel *c);
void channel__close(struct channel *c);

/* Zero copy, where the transport can (rdma:): a long-lived memory region
 * (guest RAM) registered once, whose bytes then join the channel's stream in
 * order without a copy. channel__region_add says -EOPNOTSUPP for transports
 * that cannot (callers then use channel__write_full). channel__write_region
 * returns once the bytes are queued: the device reads them later, so the
 * memory must hold what is meant to be sent until channel__flush (which
 * waits for every queued byte to reach the peer) or channel__close; a page
 * written meanwhile may go out old, new or mixed. Bounded by the channel's
 * timeout like channel__write_full. Regions go before their channel closes. */
int channel__region_add(struct channel *c, void *addr, size_t len, struct channel_region **rg,
			struct err *e);
int channel__write_region(struct channel *c, struct channel_region *rg, size_t off, size_t len);
void channel__region_del(struct channel *c, struct channel_region *rg);

/* ---- for tests ------------------------------------------------------------ */

/* Two connected channels in this process (an AF_UNIX socketpair, kind
 * CHANNEL_UNIX, peers named "pair:0" and "pair:1"), timeout 0. */
int channel__pair(struct channel *a, struct channel *b, struct err *e);

/* A fault, counted in bytes moved through the wrapper, each direction on
 * its own (offset N is the N-th byte sent, or received, from 0):
 *  CUT      after N bytes the connection is shut down under the wrapper:
 *           the write that reaches N moves the bytes before it, then
 *           writes fail with -EPIPE and reads with -ECONNRESET; the peer
 *           reads the end at once, and its writes fail once the cut
 *           channel is closed (a socket shut down still takes data).
 *  STALL    after N bytes nothing moves any more in that direction: calls
 *           wait for nothing and end in -ETIMEDOUT at the channel timeout
 *           (with timeout 0 they wait for ever); a peer that hangs up
 *           meanwhile ends them with -EPIPE / -ECONNRESET.
 *  SHORT    every transfer moves 1..max_chunk bytes (default 7), chosen by
 *           a generator seeded with at: partial transfers everywhere.
 *  CORRUPT  byte N is flipped (xor 0xff), on its way out and on its way in
 *           alike; the stream reader's CRC must catch it. */
enum channel_fault_kind {
	CHANNEL_FAULT_NONE,
	CHANNEL_FAULT_CUT,
	CHANNEL_FAULT_STALL,
	CHANNEL_FAULT_SHORT,
	CHANNEL_FAULT_CORRUPT,
};

struct channel_fault_spec {
	enum channel_fault_kind kind;
	uint64_t at;		/* N; SHORT: the seed */
	unsigned max_chunk;	/* SHORT: 0 = 7 */
};

/* "cut@N", "stall@N", "short", "short:K" (1..K bytes at a time),
 * "corrupt@N"; N and K decimal. */
int channel__fault_parse(const char *spec, struct channel_fault_spec *f, struct err *e);
/* Wraps *c (any connected channel) in place: *c becomes the wrapper, which
 * owns the original and closes it with itself. Same fd, timeout and peer. */
int channel__fault_wrap(struct channel *c, const struct channel_fault_spec *f, struct err *e);

#endif
