/* Live migration: the source's pre-copy engine (runs in its own thread inside
 * the VMM process that owns the guest's memory) and the destination's
 * receiver. The wire: the handshake of migrate-proto.h around one stream
 * (vmhop-stream(5)) carrying, in order, the vm-config section, memory rounds,
 * the remaining pages and every other section after the vCPUs stopped, and
 * END. The commit (ready / go / running) makes two running copies of a guest
 * impossible: the source never runs the guest again after `go`. */
#ifndef VMHOP_MIGRATE_H
#define VMHOP_MIGRATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "vmhop/channel.h"
#include "vmhop/err.h"
#include "vmhop/vm-config.h"

struct vm;
struct vm_config;
struct disk_recv;
struct dest_lane;

#define MIGRATE_DEFAULT_DOWNTIME_MS	300
#define MIGRATE_DEFAULT_IO_TIMEOUT_MS	15000
#define MIGRATE_MAX_CHANNELS		16

struct migrate_params {
	char uri[CHANNEL_URI_MAX];
	uint64_t max_downtime_ms;
	uint64_t max_bandwidth;		/* bytes/s, 0: unlimited */
	bool compress;			/* zstd pages */
	bool auto_converge;
	uint64_t timeout_ms;		/* 0: none */
	uint64_t io_timeout_ms;		/* a peer silent this long has failed */
	bool unsafe;			/* pre-flight: cache rule warns only */
	bool check_only;		/* pre-flight checks, then stop: nothing moves */
	/* Test hook: "PHASE:ACTION", see migrate-fault.h. Empty: none. */
	char fault[64];
	/* tls: URIs only (all three files needed there): the CA that signed
	 * the destination, this side's certificate and key, and the name the
	 * destination's certificate must carry (empty: the URI's host). */
	char tls_ca[1024], tls_cert[1024], tls_key[1024];
	char tls_name[256];
	/* Disks copied with the VM (by id; copy_all: every writable one), the
	 * others must be on shared storage. verify: SHA-256 of each copy
	 * compared before go. incremental: send only what changed since the
	 * disk arrived, where the destination still holds that copy;
	 * full_copy_fallback: a full copy where it does not. */
	char copy_disks[VM_MAX_DISKS][DISK_ID_MAX];
	unsigned nr_copy_disks;
	bool copy_all_disks;
	bool verify_disks;
	bool incremental_disks;
	bool full_copy_fallback;
	/* Connections memory is spread over (1: the control one only). */
	unsigned channels;
};

/* Fills defaults, then the arguments of a `migrate` control request. */
int migrate__params_from_json(struct migrate_params *p, struct json_object *args,
			      struct err *e);

enum migrate_status {
	MIGRATE_NONE,		/* never started */
	MIGRATE_SETUP,		/* connecting, hello, setting up dirty logging */
	MIGRATE_ACTIVE,		/* pre-copy rounds, the guest runs */
	MIGRATE_STOPCOPY,	/* vCPUs stopped: last pages and state */
	MIGRATE_COMMIT,		/* ready / go / running */
	MIGRATE_COMPLETED,	/* the destination runs the guest */
	MIGRATE_FAILED,		/* before go: the guest runs here again */
	MIGRATE_UNCONFIRMED,	/* go sent, running never came: paused here */
	MIGRATE_CHECKED,	/* check_only: pre-flight done, nothing moved */
};

const char *migrate__status_name(enum migrate_status s);

struct migrate_disk_stats {
	char id[DISK_ID_MAX];
	char mode[12];			/* shared, copied, incremental */
	uint64_t size, bytes_sent, rounds, blocks_resent;
	uint64_t bulk_ns;		/* the bulk pass (until its data was queued) */
	bool digests;			/* --verify-disks: both computed */
	char sha256_src[65], sha256_dst[65];
};

struct migrate_stats {
	enum migrate_status status;
	char error[512];
	uint64_t start_ns, setup_ns, total_ns, downtime_ns;
	uint64_t rounds;
	uint64_t bytes_sent;
	uint64_t pages_total;		/* guest RAM pages */
	uint64_t pages_skipped_zero;	/* never populated or all zero */
	uint64_t pages_sent_raw, pages_sent_compressed;
	uint64_t remaining_bytes;	/* dirty pages left at the last count */
	double throughput_mib_s;	/* last round */
	double dirty_rate_mib_s;	/* last round */
	unsigned throttle_pct;
	uint64_t id;			/* 1 for this VM's first migration, ... */
	bool unsafe;
	uint64_t disk_bytes_sent;	/* disk data (payload) sent */
	uint64_t disk_remaining_bytes;
	struct migrate_disk_stats disks[VM_MAX_DISKS];
	unsigned nr_disks;
	unsigned nr_channels;
	uint64_t channel_bytes[MIGRATE_MAX_CHANNELS];	/* per connection, the first first */
	char peer[256];			/* the destination, as its transport proved it */
};

/* One JSON object (the query-migrate reply, the migrate summary), with the
 * pre-flight report (compat__report_to_json) when there is one. */
struct json_object *migrate__stats_json(const struct migrate_stats *st,
					struct json_object *preflight);

/* ---- source (control socket commands) ---- */

/* `migrate` (asynchronous: replies with the summary when it ends) and
 * `query-migrate`; ctx is the struct vm. */
struct control_call;
int migrate__control_start(void *ctx, struct json_object *args, struct control_call *call,
			   struct err *e);
int migrate__control_query(void *ctx, struct json_object *args, struct json_object **result,
			   struct err *e);
/* `migrate-cancel`: fails a migration that has not reached its commit. */
int migrate__control_cancel(void *ctx, struct json_object *args, struct json_object **result,
			    struct err *e);
/* The VM ended: a migration still running fails at its next step. */
void migrate__vm_ended(struct vm *vm);
/* Waits for a running migration thread and frees it (at VM teardown). */
void migrate__destroy(struct vm *vm);

/* ---- destination ---- */

struct migrate_recv_opts {
	const char *serial;		/* NULL: stdio */
	const char *control;		/* NULL: none */
	const char *const *map_from;	/* --disk-map OLD=NEW pairs */
	const char *const *map_to;
	unsigned nr_maps;
	uint64_t io_timeout_ms;
	const char *fault;		/* test hook, NULL: none */
	const char *disk_dir;		/* copied disks are created here, NULL: none */
	/* Where the source's further channels connect (--channels); NULL:
	 * only one channel is accepted. */
	struct channel_listener *listener;
};

struct migrate_incoming {
	struct channel ch;
	uint64_t mem_records;		/* MEM records received */
	struct vm *vm;
	struct vm_config *cfg;
	uint64_t bytes;			/* stream bytes received */
	uint64_t rounds;
	const char *fault;
	uint64_t io_timeout_ms;
	struct disk_recv *disks;	/* copied disks (migrate/disk-copy.h) */
	uint64_t disk_records;
	/* Parallel channels (migrate/mig-lanes.h): the lanes after the first. */
	struct dest_lane *lanes;
	unsigned nr_lanes;
	char token[40];
	uint64_t *written;		/* pages loaded, by pfn: shared by the lanes */
	_Atomic bool lane_failed;	/* a lane failed and closed the first channel */
	struct err lane_err;		/* ... why (set once, before lane_failed) */
};

/* migrate__incoming's return when the peer only asked for this host's
 * profile (a pre-flight check): keep listening for the real migration. */
#define MIGRATE_PROBED 1

/* On an accepted channel: hello, the stream, ready, and waiting for go.
 * Success leaves a VM loaded and not started, which may be started now and
 * nowhere else; call migrate__incoming_running() once its vCPUs run. Any
 * failure tells the source why (best effort) and frees everything. */
int migrate__incoming(struct migrate_incoming *in, const struct migrate_recv_opts *o,
		      struct err *e);
int migrate__incoming_running(struct migrate_incoming *in, struct err *e);
void migrate__incoming_free(struct migrate_incoming *in);

#endif
