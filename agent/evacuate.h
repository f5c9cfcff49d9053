/* What `vmhop evacuate` (cli/cmd-evacuate.c gathers and plans,
 * cli/cmd-evacuate-run.c moves) knows about the hosts and VMs involved. */
#ifndef VMHOP_AGENT_EVACUATE_H
#define VMHOP_AGENT_EVACUATE_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "agent/agent-client.h"
#include "agent/plan.h"
#include "vmhop/compat.h"

struct evac_host {
	char name[PLAN_HOST_MAX];
	struct agent_client cl;
	struct host_profile *profile;	/* without any VM's disk view */
	bool copy_disk;		/* its vmhop has migrate-send --copy-disk */
	bool down;		/* its agent stopped answering */
	char down_why[512];
};

enum evac_result { EVAC_PENDING, EVAC_MOVED, EVAC_FAILED, EVAC_NOWHERE, EVAC_UNCONFIRMED };

struct evac_vm {
	struct vm_config config;
	struct compat_vm_ext ext;
	struct plan_disks src_disks;
	struct plan_disks *dst_disks;	/* one per target */
	/* the move */
	enum evac_result result;
	char reason[1024];
	unsigned src_job, dst_job;	/* the agents' job ids */
	char uri[CHANNEL_URI_MAX];
	double start_ms, end_ms;	/* since the start of the moves */
	double total_ms, downtime_ms;	/* migrate-send's numbers */
	uint64_t last_print_ns;
	char last_status[32];
};

struct evac {
	struct evac_host src;
	struct evac_host *targets;
	size_t ntargets;
	struct evac_vm *vms;
	size_t nvms;
	struct plan plan;
	unsigned parallel, per_target;
	const char *max_bandwidth;
	int max_downtime_ms;
	bool unsafe, json, quiet;
	unsigned max_running;	/* the most moves seen running at once */
	int timeout_ms;		/* each agent request */
	const char *only[PLAN_MAX_VMS];	/* --vm: move only these */
	size_t nonly;
};

/* Runs the planned moves (cli/cmd-evacuate-run.c); progress on out. */
void evacuate__run(struct evac *ev, FILE *out);

#endif
