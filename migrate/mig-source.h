/* Shared by the source's files: mig-source.c (the engine, on its own thread)
 * and mig-control.c (control commands, the libuv side). Not a public API. */
#ifndef VMHOP_MIGRATE_MIG_SOURCE_H
#define VMHOP_MIGRATE_MIG_SOURCE_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "vmhop/channel.h"
#include "vmhop/migrate.h"
#include "migrate/mig-lanes.h"

struct migration {
	struct vm *vm;
	struct migrate_params p;
	pthread_t thread;
	bool thread_started;
	bool finished;			/* the thread returned; joined on the loop */
	uv_async_t *done;		/* thread -> loop: the migration ended */
	struct control_call *call;	/* the `migrate` request to answer */

	/* `lock` guards st and ch.fd (so an abort can shut the channel). */
	pthread_mutex_t lock;
	struct migrate_stats st;
	struct channel ch;
	bool abort;			/* stop at the next step */
	bool cancelled;			/* ... because migrate-cancel asked */
	struct err peer_err;		/* what the destination said went wrong */
	struct json_object *preflight;	/* the pre-flight report, once made */
	struct mig_lanes lanes;		/* --channels: the further connections */
	struct err lane_err;		/* the first channel to fail, before any abort */
};

/* The engine: runs the whole migration on the calling thread and leaves the
 * result in m->st (status COMPLETED, FAILED or UNCONFIRMED). */
void mig_source__run(struct migration *m);
/* From any thread: makes a running engine fail soon. With before_commit,
 * only if it has not reached its commit (returns false then). */
bool mig_source__abort(struct migration *m, bool before_commit);
/* A connection to the destination with the migration's URI, TLS files and
 * I/O timeout (the first one, and every further one of --channels). */
int mig_source__connect(const struct migration *m, struct channel *c, struct err *e);
/* Sleeps so that sending n more bytes after `sent` keeps to bps (t0 and
 * sent0: the caller's window). */
void mig_source__pace(uint64_t bps, uint64_t *t0, uint64_t *sent0, uint64_t sent, size_t n);

#endif
