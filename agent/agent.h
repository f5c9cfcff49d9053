/* vmhop agent: the per-host daemon. One libuv loop; a tls: listener whose
 * accepts (and their TLS handshakes) run on libuv's thread pool so a slow
 * client never stalls the loop; JSON-lines connections (the control socket's
 * request/reply shape); jobs that are `vmhop migrate-recv` and `vmhop
 * migrate-send` children. See agent/README.md and vmhop-agent(1). */
#ifndef VMHOP_AGENT_H
#define VMHOP_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <uv.h>

#include "vmhop/channel.h"
#include "vmhop/err.h"
#include "vmhop/host-profile.h"

#define AGENT_MAX_JOBS		64
#define AGENT_MAX_CONNS		32
#define AGENT_LINE_MAX		(1u << 20)	/* a request line, newline included */
#define AGENT_NAME_MAX		64
#define AGENT_ERROR_MAX		512

struct agent_opts {
	const char *listen;		/* tls:ADDR:PORT */
	const char *run_dir;		/* VMs' control sockets, serial logs, job logs */
	const char *profile_override;	/* a host-profile JSON file, or NULL */
	const char *vmhop;		/* the binary for the children (default /proc/self/exe) */
	struct channel_tls_opts tls;
	int accept_timeout_s;		/* migrate-recv --accept-timeout (default 120) */
};

enum job_kind { JOB_INCOMING, JOB_OUTGOING };
enum job_state {
	JOB_STARTING,		/* incoming: the child has not said where it listens */
	JOB_WAITING,		/* incoming: listening for the source */
	JOB_ACTIVE,		/* outgoing: migrate-send runs */
	JOB_RUNNING,		/* incoming: the guest runs here */
	JOB_COMPLETED,		/* outgoing: the guest runs at the destination */
	JOB_FAILED,
	JOB_ENDED,		/* incoming: the received guest has ended */
};

struct agent;
struct agent_conn;

struct agent_job {
	struct agent *a;
	unsigned id;		/* 0: free slot */
	enum job_kind kind;
	enum job_state state;
	char vm[AGENT_NAME_MAX];
	char control[512];	/* the VM's control socket */
	char uri[CHANNEL_URI_MAX];	/* incoming: where it listens; outgoing: the destination */
	char log[512];		/* the child's stderr, kept in the run dir */
	char error[AGENT_ERROR_MAX];
	uint64_t started_ns, ended_ns;
	uv_process_t proc;
	bool proc_live;
	uv_pipe_t out, err;	/* stdout (outgoing: the --json summary), stderr */
	int open_handles;	/* handles not yet closed: the slot is reused after 0 */
	char outbuf[16384];
	size_t outlen;
	char readbuf[4096];	/* libuv reads the pipes into it */
	char errline[1024];	/* the stderr line being assembled */
	size_t errlen;
	int logfd;
	json_object *summary;	/* outgoing: migrate-send's JSON summary */
	struct agent_conn *waiter;	/* prepare-incoming's caller, until the address is known */
	json_object *waiter_id;
};

struct agent {
	uv_loop_t *loop;
	struct agent_opts o;
	char host[256];		/* the listen address, for receivers */
	char self[4096];	/* this binary's path */
	uint64_t t0_ns;		/* the agent's start: jobs' times count from it */
	struct channel_listener l;
	uv_poll_t lpoll;
	uv_work_t accept_work;
	struct channel accepted;
	struct err accept_err;
	int accept_rc;
	bool stopping;
	bool copy_disk;		/* our vmhop has migrate-send --copy-disk / migrate-recv --disk-dir */
	uv_signal_t sigterm, sigint;
	struct agent_conn *conns;
	unsigned nconns;
	struct agent_job jobs[AGENT_MAX_JOBS];
	unsigned next_id;
	struct host_profile *override;	/* loaded --profile-override, or NULL */
};

/* Listens and serves until SIGTERM/SIGINT; 0, or -errno with e set when it
 * could not start. */
int agent__run(const struct agent_opts *o, struct err *e);

/* ---- inside agent/ ---- */
/* agent-server.c */
void agent__reply(struct agent_conn *c, json_object *id, json_object *ret);
void agent__reply_error(struct agent_conn *c, json_object *id, const char *cls,
			const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The connection may take its next request (after a deferred reply). */
void agent__conn_resume(struct agent_conn *c);
void agent__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* agent-requests.c: 1 when the reply is deferred (the connection waits). */
int agent__dispatch(struct agent *a, struct agent_conn *c, const char *cmd, json_object *args,
		    json_object *id);

/* agent-jobs.c */
int agent__job_incoming(struct agent *a, const char *name, const char *const *disk_map,
			size_t nmap, const char *disk_dir, struct agent_job **out, struct err *e);
struct agent_migrate_args {
	const char *vm, *uri, *tls_name;
	const char *max_bandwidth;	/* migrate-send --max-bandwidth, or NULL */
	int max_downtime_ms;		/* 0: default */
	const char *copy_disks[VM_MAX_DISKS];
	size_t ncopy;
	bool unsafe;
};
int agent__job_outgoing(struct agent *a, const struct agent_migrate_args *m,
			struct agent_job **out, struct err *e);
struct agent_job *agent__job_find(struct agent *a, unsigned id);
int agent__job_cancel(struct agent_job *j, struct err *e);
json_object *agent__job_json(struct agent_job *j);
const char *agent__job_state_name(enum job_state s);
void agent__jobs_conn_gone(struct agent *a, struct agent_conn *c);
/* On shutdown: kill receivers that do not run a guest yet. */
void agent__jobs_stop(struct agent *a);
/* After the loop: what the jobs still hold. */
void agent__jobs_free(struct agent *a);

/* agent-vms.c: the VMs behind the control sockets in the run dir. */
int agent__list_vms(struct agent *a, json_object **out, struct err *e);
/* One request to a control socket, reply within timeout_ms: the reply
 * object (caller puts it), or NULL with e set. */
json_object *agent__vm_request(const char *control, const char *cmd, json_object *args,
			       int timeout_ms, struct err *e);
/* True when name is safe as a file name in the run dir. */
bool agent__valid_name(const char *name);

#endif
