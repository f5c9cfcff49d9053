/* The evacuation planner: which VM of a host goes to which target, decided
 * from data alone (profiles, VM configurations, disk views), so that it can
 * be tested without hosts. Largest VMs first; a target is a candidate when
 * the VM fits in the memory it has left after the VMs planned before, and
 * when the compat rules (compat__check against the target's profile, with
 * the vCPUs and memory planned so far accounted for) find no failure.
 * Among the candidates: one without warnings (8x vCPU overcommit...) before
 * one with, then the one with the most memory left. Disks the target cannot
 * reach are copied with the VM when the caller says disk copy is
 * available; otherwise the disk-reach rule refuses that target.
 *
 * The scheduler half (plan__next) picks the next planned move that may
 * start with at most N moves running in all and M into any one target. */
#ifndef VMHOP_AGENT_PLAN_H
#define VMHOP_AGENT_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmhop/compat.h"
#include "vmhop/err.h"
#include "vmhop/host-profile.h"
#include "vmhop/vm-config.h"

#define PLAN_MAX_TARGETS	16
#define PLAN_MAX_VMS		128
#define PLAN_HOST_MAX		128	/* a host's name as the user gave it */
#define PLAN_TEXT_MAX		1024

/* One host's view of one VM's disks (what host_profile__view_disks fills
 * in); have = false: unknown. */
struct plan_disks {
	bool have;
	struct compat_disk_view v[VM_MAX_DISKS];
	size_t n;
};

struct plan_vm {
	const struct vm_config *config;	/* name, memory, vCPUs, model, disks */
	const struct compat_vm_ext *ext;	/* NULL: memfd RAM, no host devices */
	const struct plan_disks *src_disks;	/* the source's view; NULL: none */
	const struct plan_disks *dst_disks;	/* one per target, indexed like targets; NULL: none */
};

struct plan_target {
	char name[PLAN_HOST_MAX];
	const struct host_profile *profile;
};

struct plan_opts {
	bool copy_disks;	/* migrate-send --copy-disk exists: unreachable disks travel */
	bool unsafe;		/* as migrate-send --unsafe */
};

enum plan_outcome { PLAN_MOVE, PLAN_NOWHERE };

struct plan_entry {
	size_t vm;		/* index into the vms given */
	enum plan_outcome outcome;
	int target;		/* index into the targets, -1 for PLAN_NOWHERE */
	bool copy[VM_MAX_DISKS];	/* disks copied with the VM (indexed like config->disks) */
	unsigned ncopy;
	/* MOVE: the warnings of the chosen target's rules ("" none);
	 * NOWHERE: why each target was refused ("h2: memory: ...; h3: ..."). */
	char text[PLAN_TEXT_MAX];
	/* MOVE: the targets refused on the way and why ("" none). */
	char avoided[PLAN_TEXT_MAX];
};

struct plan {
	struct plan_entry e[PLAN_MAX_VMS];	/* in the order the moves should start */
	size_t n;
	size_t nowhere;
	uint64_t mem_planned[PLAN_MAX_TARGETS];	/* bytes planned into each target */
	unsigned vcpus_planned[PLAN_MAX_TARGETS];
};

/* Plans every VM; 0 with the plan filled (VMs that fit nowhere included),
 * -errno when it could not plan at all (too many VMs or targets, no memory,
 * the compat data broken). */
int plan__make(const struct plan_vm *vms, size_t nvms, const struct host_profile *src,
	       const struct plan_target *targets, size_t ntargets, const struct plan_opts *opts,
	       struct plan *out, struct err *e);

/* Scheduling: each entry of a plan is waiting, running or done. */
enum plan_state { PLAN_WAITING, PLAN_RUNNING, PLAN_DONE };

/* The index (into plan->e) of the next waiting MOVE entry that may start
 * now, given state[] (one per entry), at most `parallel` running in all and
 * `per_target` running into one target (0: no limit); -1 when none may. */
int plan__next(const struct plan *p, const enum plan_state *state, unsigned parallel,
	       unsigned per_target);

#endif
