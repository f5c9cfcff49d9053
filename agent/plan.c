/* The evacuation planner (see plan.h). Capacity (memory left after the VMs
 * planned before) is the planner's own bookkeeping; every compatibility
 * question goes to compat__check, against a scratch copy of the target's
 * profile that carries the vCPUs planned so far and this VM's disk view. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/plan.h"
#include "vmhop/util.h"

static int bigger_first(const struct plan_vm *vms, size_t a, size_t b)
{
	const struct vm_config *x = vms[a].config, *y = vms[b].config;
	if (x->mem_size != y->mem_size)
		return x->mem_size > y->mem_size ? -1 : 1;
	if (x->nr_cpus != y->nr_cpus)
		return x->nr_cpus > y->nr_cpus ? -1 : 1;
	int c = strcmp(x->name, y->name);
	return c ? c : (a < b ? -1 : 1);
}

/* Insertion sort of indices: a host has few VMs, and it is stable. */
static void order(const struct plan_vm *vms, size_t n, size_t *idx)
{
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && bigger_first(vms, idx[k], idx[k - 1]) < 0; k--) {
			size_t t = idx[k];
			idx[k] = idx[k - 1];
			idx[k - 1] = t;
		}
}

static void append(char *buf, const char *fmt, const char *a, const char *b, const char *c)
{
	size_t len = strlen(buf);
	if (len + 1 < PLAN_TEXT_MAX)
		snprintf(buf + len, PLAN_TEXT_MAX - len, fmt, a, b, c);
}

static void set_disks(struct host_profile *p, const struct plan_disks *d)
{
	p->have_disks = d && d->have;
	p->ndisks = 0;
	if (!p->have_disks)
		return;
	p->ndisks = MIN(d->n, (size_t)VM_MAX_DISKS);
	memcpy(p->disks, d->v, p->ndisks * sizeof(p->disks[0]));
}

static const struct compat_disk_view *find_view(const struct plan_disks *d, const char *id)
{
	for (size_t i = 0; d && d->have && i < d->n; i++)
		if (!strcmp(d->v[i].id, id))
			return &d->v[i];
	return NULL;
}

struct candidate {
	bool ok;
	bool warned;
	uint64_t left;		/* memory left on the target after this VM */
	bool copy[VM_MAX_DISKS];
	unsigned ncopy;
	char text[PLAN_TEXT_MAX];
};

/* Can vm go to target t? Fills c with the verdict and its words. */
static int consider(const struct plan_vm *vm, const struct host_profile *src,
		    struct host_profile *scratch, const struct plan_target *t, size_t ti,
		    const struct plan *p, const struct plan_opts *o, struct compat_report *rep,
		    struct candidate *c)
{
	const struct vm_config *cfg = vm->config;
	memset(c, 0, sizeof(*c));
	uint64_t avail = t->profile->mem_available;
	uint64_t left = avail > p->mem_planned[ti] ? avail - p->mem_planned[ti] : 0;
	if (cfg->mem_size > left) {
		char need[32], have[32];
		snprintf(need, sizeof(need), "%" PRIu64, (uint64_t)(cfg->mem_size / MiB));
		snprintf(have, sizeof(have), "%" PRIu64, (uint64_t)(left / MiB));
		append(c->text, "memory: the guest needs %s MiB, %s has %s MiB left", need, t->name,
		       have);
		return 0;
	}
	*scratch = *t->profile;
	scratch->vcpus_in_use += p->vcpus_planned[ti];
	scratch->mem_available = left;
	const struct plan_disks *dd = vm->dst_disks ? &vm->dst_disks[ti] : NULL;
	set_disks(scratch, dd);
	for (unsigned i = 0; o->copy_disks && i < cfg->nr_disks; i++) {
		const struct compat_disk_view *v = find_view(dd, cfg->disks[i].id);
		if (v && !v->exists) {
			c->copy[i] = true;
			c->ncopy++;
		}
	}
	struct compat_opts co = { .unsafe = o->unsafe, .ext = vm->ext,
				  .disk_copied = c->ncopy ? c->copy : NULL };
	int r = compat__check(cfg, src, scratch, &co, rep);
	if (r < 0) {
		snprintf(c->text, sizeof(c->text), "%s", rep->n ? rep->rows[0].reason : "compat");
		return r;
	}
	for (size_t i = 0; i < rep->n; i++) {
		const struct compat_row *row = &rep->rows[i];
		if (row->status == COMPAT_FAIL)
			append(c->text, c->text[0] ? "; %s: %s%s" : "%s: %s%s", row->rule, row->reason, "");
	}
	if (rep->fail)
		return 0;
	c->ok = true;
	c->left = left - cfg->mem_size;
	for (size_t i = 0; i < rep->n; i++) {
		const struct compat_row *row = &rep->rows[i];
		if (row->status != COMPAT_WARN)
			continue;
		c->warned = true;
		append(c->text, c->text[0] ? "; %s: %s%s" : "%s: %s%s", row->rule, row->reason, "");
	}
	return 0;
}

static bool better(const struct candidate *a, const struct candidate *b)
{
	if (!b->ok)
		return a->ok;
	if (!a->ok)
		return false;
	if (a->warned != b->warned)
		return !a->warned;
	return a->left > b->left;
}

int plan__make(const struct plan_vm *vms, size_t nvms, const struct host_profile *src,
	       const struct plan_target *targets, size_t ntargets, const struct plan_opts *opts,
	       struct plan *out, struct err *e)
{
	static const struct plan_opts no_opts;
	if (!opts)
		opts = &no_opts;
	memset(out, 0, sizeof(*out));
	if (nvms > PLAN_MAX_VMS)
		return err__set(e, E2BIG, "%zu VMs on the source: the planner takes at most %d",
				nvms, PLAN_MAX_VMS);
	if (!ntargets || ntargets > PLAN_MAX_TARGETS)
		return err__set(e, EINVAL, "%zu targets: the planner takes 1 to %d", ntargets,
				PLAN_MAX_TARGETS);
	size_t idx[PLAN_MAX_VMS];
	order(vms, nvms, idx);
	struct host_profile *scratch = malloc(sizeof(*scratch));
	struct host_profile *srcp = malloc(sizeof(*srcp));
	struct compat_report *rep = malloc(sizeof(*rep));
	struct candidate *best = malloc(sizeof(*best)), *c = malloc(sizeof(*c));
	int r = 0;
	if (!scratch || !srcp || !rep || !best || !c) {
		r = err__set(e, ENOMEM, "out of memory while planning");
		goto out;
	}
	for (size_t k = 0; k < nvms && !r; k++) {
		const struct plan_vm *vm = &vms[idx[k]];
		struct plan_entry *pe = &out->e[out->n++];
		pe->vm = idx[k];
		pe->target = -1;
		*srcp = *src;
		set_disks(srcp, vm->src_disks);
		memset(best, 0, sizeof(*best));
		int bt = -1;
		char why[PLAN_TEXT_MAX] = "";
		for (size_t t = 0; t < ntargets; t++) {
			r = consider(vm, srcp, scratch, &targets[t], t, out, opts, rep, c);
			if (r < 0) {
				err__set(e, -r, "planning %s: %s", vm->config->name, c->text);
				break;
			}
			if (!c->ok)
				append(why, why[0] ? "; %s: %s%s" : "%s: %s%s", targets[t].name, c->text, "");
			if (better(c, best)) {
				*best = *c;
				bt = (int)t;
			}
		}
		if (r)
			break;
		if (bt < 0) {
			pe->outcome = PLAN_NOWHERE;
			snprintf(pe->text, sizeof(pe->text), "%s", why);
			out->nowhere++;
			continue;
		}
		pe->outcome = PLAN_MOVE;
		pe->target = bt;
		memcpy(pe->copy, best->copy, sizeof(pe->copy));
		pe->ncopy = best->ncopy;
		snprintf(pe->text, sizeof(pe->text), "%s", best->text);
		snprintf(pe->avoided, sizeof(pe->avoided), "%s", why);
		out->mem_planned[bt] += vm->config->mem_size;
		out->vcpus_planned[bt] += vm->config->nr_cpus;
	}
out:
	free(scratch);
	free(srcp);
	free(rep);
	free(best);
	free(c);
	return r;
}

int plan__next(const struct plan *p, const enum plan_state *state, unsigned parallel,
	       unsigned per_target)
{
	unsigned running = 0, into[PLAN_MAX_TARGETS] = { 0 };
	for (size_t i = 0; i < p->n; i++)
		if (state[i] == PLAN_RUNNING && p->e[i].outcome == PLAN_MOVE) {
			running++;
			into[p->e[i].target]++;
		}
	if (parallel && running >= parallel)
		return -1;
	for (size_t i = 0; i < p->n; i++) {
		const struct plan_entry *pe = &p->e[i];
		if (state[i] != PLAN_WAITING || pe->outcome != PLAN_MOVE)
			continue;
		if (per_target && into[pe->target] >= per_target)
			continue;
		return (int)i;
	}
	return -1;
}
