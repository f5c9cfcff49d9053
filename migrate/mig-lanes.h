/* Parallel channels (migrate-send --channels N): the connection that carries
 * the handshake, the configuration, disk data, the state and the commit is
 * lane 0; lanes 1..N-1 are further connections to the same address, each
 * with its own stream (header, MEM records, END) and its own thread at both
 * ends. Pages are spread over the lanes by 2 MiB group (MIG_LANE_PAGES), the
 * same group always on the same lane, so the copies of a page sent in
 * successive rounds arrive in order. The source ends every lane's stream
 * before the state goes on lane 0; the destination loads no state before
 * every lane has ended, so device state never sees memory still on its way.
 * Not a public API. */
#ifndef VMHOP_MIGRATE_MIG_LANES_H
#define VMHOP_MIGRATE_MIG_LANES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmhop/channel.h"
#include "vmhop/migrate.h"
#include "vmhop/stream.h"

#define MIG_LANE_PAGES 512		/* 64 words of a page bitmap */
#define MIG_TOKEN_LEN 32		/* hex */

static inline unsigned mig_lane__of(uint64_t pfn, unsigned nlanes)
{
	return (unsigned)((pfn / MIG_LANE_PAGES) % nlanes);
}

/* Calls send(opaque, first, count) for each run of set bits of bm that
 * belongs to lane `lane` of `nlanes`, split at group boundaries. */
int mig_lane__for_each(const uint64_t *bm, uint64_t nbits, unsigned lane, unsigned nlanes,
		       int (*send)(void *opaque, uint64_t first, uint64_t count), void *opaque);

struct migration;

/* ---- source ---- */

struct mig_lane {
	struct migration *m;
	unsigned index;			/* 1.. */
	struct channel ch;
	struct stream_stage stage;
	struct stream_writer w;
	struct stream_mem_enc enc;
	bool staging, writer, encoder;
	const struct stream_ram *ram;
	uint64_t sent;			/* bytes on this lane */
	int io_err;
	bool faulted;			/* the test hook's moment has passed */
	uint64_t rate_t0, rate_sent0, max_bandwidth;
	/* The round's work and result. */
	const uint64_t *bm;
	uint64_t nbits;
	unsigned nlanes;
	pthread_t thread;
	bool running;
	int rc;
	struct err e;
};

struct mig_lanes {
	struct mig_lane *v;		/* nlanes - 1 of them */
	unsigned nlanes;		/* 1: no extra lanes */
	char token[MIG_TOKEN_LEN + 1];
};

/* Connects lanes 1..n-1 to the URI of lane 0 (whose destination has read
 * the configuration and waits for them) and starts their streams. */
int mig_lanes__open(struct mig_lanes *ls, struct migration *m, const struct stream_ram *ram,
		    struct err *e);
/* Starts every lane on its share of bm; mig_lanes__wait joins them and
 * returns the first failure (its message in e). */
int mig_lanes__start(struct mig_lanes *ls, const uint64_t *bm, uint64_t nbits, struct err *e);
int mig_lanes__wait(struct mig_lanes *ls, struct err *e);
/* Ends every lane's stream (END) and waits until it is on the wire. */
int mig_lanes__finish(struct mig_lanes *ls, struct err *e);
/* From any thread: makes the lanes' I/O fail now. */
void mig_lanes__shutdown(struct mig_lanes *ls);
void mig_lanes__close(struct mig_lanes *ls);

/* ---- destination ---- */

struct dest_lane {
	struct migrate_incoming *in;
	unsigned index;
	struct channel ch;
	pthread_mutex_t lock;		/* ch's close (reader) against shutdown (others) */
	pthread_t thread;
	bool started;
	uint64_t bytes, mem_records;
	int rc;
	struct err e;
};

/* After the VM exists: accepts the source's lanes on the listener (each
 * proves it belongs to this migration with the hello's token) and starts a
 * reader per lane that loads its pages until its END. */
int dest_lanes__accept(struct migrate_incoming *in, struct channel_listener *l, struct err *e);
/* Waits for every lane's END; the first failure in e. */
int dest_lanes__join(struct migrate_incoming *in, struct err *e);
void dest_lanes__free(struct migrate_incoming *in);

#endif
