/* vmhop evacuate, the moves: for each planned VM, a receiver on the target
 * (prepare-incoming), then the source agent's migrate-vm, then its job
 * polled until it ends. At most ev->parallel at once and ev->per_target
 * into one target (plan__next decides). A target whose agent stops
 * answering during a move gets that move cancelled at the source: without
 * its agent nobody would look after the guest there, and before the commit
 * the guest keeps running on the source. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/evacuate.h"
#include "vmhop/util.h"

#define POLL_MS		200
#define PRINT_EVERY_NS	(1000ULL * 1000 * 1000)

static double since(uint64_t t0)
{
	return (double)(util__now_ns() - t0) / 1e6;
}

static void fail(struct evac_vm *vm, uint64_t t0, const char *fmt, const char *a, const char *b)
{
	vm->result = EVAC_FAILED;
	if (!vm->reason[0])
		snprintf(vm->reason, sizeof(vm->reason), fmt, a, b);
	vm->end_ms = since(t0);
}

static void target_down(struct evac_host *t, const char *why)
{
	if (t->down)
		return;
	t->down = true;
	snprintf(t->down_why, sizeof(t->down_why), "%s", why);
}

static bool start(struct evac *ev, const struct plan_entry *pe, uint64_t t0, FILE *out)
{
	struct evac_vm *vm = &ev->vms[pe->vm];
	struct evac_host *t = &ev->targets[pe->target];
	struct err e = { 0 };
	vm->start_ms = since(t0);
	if (t->down) {
		fail(vm, t0, "target %s: its agent stopped answering earlier (%s)", t->name, t->down_why);
		return false;
	}
	json_object *args = json_object_new_object();
	json_object_object_add(args, "name", json_object_new_string(vm->config.name));
	json_object *copy = json_object_new_array();
	for (unsigned d = 0; d < vm->config.nr_disks; d++)
		if (pe->copy[d])
			json_object_array_add(copy, json_object_new_string(vm->config.disks[d].id));
	if (pe->ncopy)
		json_object_object_add(args, "copy_disks", json_object_new_boolean(true));
	json_object *r = agent_client__call(&t->cl, "prepare-incoming", args, ev->timeout_ms, &e), *v;
	json_object_put(args);
	if (!r) {
		if (e.code != EREMOTEIO)
			target_down(t, e.msg);
		json_object_put(copy);
		fail(vm, t0, "no receiver on %s: %s", t->name, e.msg);
		return false;
	}
	if (json_object_object_get_ex(r, "uri", &v))
		snprintf(vm->uri, sizeof(vm->uri), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(r, "id", &v))
		vm->dst_job = (unsigned)json_object_get_int64(v);
	json_object_put(r);

	args = json_object_new_object();
	json_object_object_add(args, "vm", json_object_new_string(vm->config.name));
	json_object_object_add(args, "uri", json_object_new_string(vm->uri));
	if (ev->max_bandwidth)
		json_object_object_add(args, "max_bandwidth", json_object_new_string(ev->max_bandwidth));
	if (ev->max_downtime_ms)
		json_object_object_add(args, "max_downtime_ms", json_object_new_int(ev->max_downtime_ms));
	if (ev->unsafe)
		json_object_object_add(args, "unsafe", json_object_new_boolean(true));
	json_object_object_add(args, "copy_disks", copy);
	r = agent_client__call(&ev->src.cl, "migrate-vm", args, ev->timeout_ms, &e);
	json_object_put(args);
	if (!r) {
		fail(vm, t0, "the source agent did not start the move: %s%s", e.msg, "");
		/* The receiver would wait for its accept timeout: end it now. */
		args = json_object_new_object();
		json_object_object_add(args, "id", json_object_new_int64(vm->dst_job));
		json_object *c = agent_client__call(&t->cl, "cancel", args, ev->timeout_ms, &e);
		json_object_put(args);
		if (c)
			json_object_put(c);
		return false;
	}
	if (json_object_object_get_ex(r, "id", &v))
		vm->src_job = (unsigned)json_object_get_int64(v);
	json_object_put(r);
	fprintf(out, "%s -> %s: started (%s)\n", vm->config.name, t->name, vm->uri);
	fflush(out);
	return true;
}

static double num(json_object *o, const char *name)
{
	json_object *v;
	return o && json_object_object_get_ex(o, name, &v) ? json_object_get_double(v) : 0;
}

static const char *str(json_object *o, const char *name)
{
	json_object *v;
	return o && json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string) ?
	       json_object_get_string(v) : "";
}

static void progress(struct evac *ev, struct evac_vm *vm, const char *target, json_object *p,
		     FILE *out)
{
	const char *st = str(p, "status");
	uint64_t now = util__now_ns();
	/* "none": the VM has not taken the request in yet. */
	if (ev->quiet || !st[0] || !strcmp(st, "none") ||
	    (!strcmp(st, vm->last_status) && now - vm->last_print_ns < PRINT_EVERY_NS))
		return;
	snprintf(vm->last_status, sizeof(vm->last_status), "%s", st);
	vm->last_print_ns = now;
	fprintf(out, "%s -> %s: %s, round %.0f, %.1f MiB sent, %.1f MiB left, %.1f MiB/s\n",
		vm->config.name, target, st, num(p, "rounds"),
		num(p, "bytes_sent") / (1024.0 * 1024.0), num(p, "remaining_bytes") / (1024.0 * 1024.0),
		num(p, "throughput_mib_s"));
	fflush(out);
}

/* true when the move has ended (result set). */
static bool poll_move(struct evac *ev, const struct plan_entry *pe, uint64_t t0, FILE *out)
{
	struct evac_vm *vm = &ev->vms[pe->vm];
	struct evac_host *t = &ev->targets[pe->target];
	struct err e = { 0 };
	json_object *args = json_object_new_object();
	json_object_object_add(args, "id", json_object_new_int64(vm->src_job));
	json_object *j = agent_client__call(&ev->src.cl, "query", args, ev->timeout_ms, &e);
	json_object_put(args);
	if (!j) {
		fail(vm, t0, "lost the source agent during the move: %s%s", e.msg, "");
		return true;
	}
	const char *state = str(j, "state");
	if (!strcmp(state, "active")) {
		json_object *p = NULL;
		json_object_object_get_ex(j, "progress", &p);
		progress(ev, vm, t->name, p, out);
		/* Is the target still there to take the guest? */
		if (!t->down) {
			args = json_object_new_object();
			json_object_object_add(args, "id", json_object_new_int64(vm->dst_job));
			json_object *q = agent_client__call(&t->cl, "query", args, ev->timeout_ms, &e);
			json_object_put(args);
			if (q)
				json_object_put(q);
			else if (e.code != EREMOTEIO)
				target_down(t, e.msg);
		}
		if (t->down && !vm->reason[0]) {
			snprintf(vm->reason, sizeof(vm->reason),
				 "the agent on %s stopped answering during the move (%s); cancelled",
				 t->name, t->down_why);
			args = json_object_new_object();
			json_object_object_add(args, "id", json_object_new_int64(vm->src_job));
			json_object *c = agent_client__call(&ev->src.cl, "cancel", args, ev->timeout_ms, &e);
			json_object_put(args);
			if (c)
				json_object_put(c);
			else if (!ev->quiet)
				fprintf(out, "%s -> %s: cancel: %s\n", vm->config.name, t->name, e.msg);
			fprintf(out, "%s -> %s: %s\n", vm->config.name, t->name, vm->reason);
		}
		json_object_put(j);
		return false;
	}
	json_object *s = NULL;
	json_object_object_get_ex(j, "summary", &s);
	vm->total_ms = num(s, "total_ms");
	vm->downtime_ms = num(s, "downtime_ms");
	vm->end_ms = since(t0);
	if (!strcmp(state, "completed")) {
		vm->result = EVAC_MOVED;
		/* Cancelled too late: it moved all the same, and says so. */
		vm->reason[0] = '\0';
		fprintf(out, "%s -> %s: moved in %.1f ms, downtime %.1f ms\n", vm->config.name,
			t->name, vm->total_ms, vm->downtime_ms);
	} else {
		const char *why = str(j, "error");
		bool unconfirmed = !strcmp(str(s, "status"), "unconfirmed");
		vm->result = unconfirmed ? EVAC_UNCONFIRMED : EVAC_FAILED;
		if (!vm->reason[0])
			snprintf(vm->reason, sizeof(vm->reason), "%s", why[0] ? why : "the move failed");
		fprintf(out, "%s -> %s: %s: %s%s\n", vm->config.name, t->name,
			unconfirmed ? "UNCONFIRMED" : "failed", vm->reason,
			unconfirmed ? " (paused on the source: see vmhop-migrate-send(1))" :
			"; it keeps running on the source");
	}
	fflush(out);
	json_object_put(j);
	return true;
}

void evacuate__run(struct evac *ev, FILE *out)
{
	const struct plan *p = &ev->plan;
	enum plan_state *st = calloc(p->n ? p->n : 1, sizeof(*st));
	if (!st) {
		fprintf(stderr, "vmhop evacuate: out of memory\n");
		return;
	}
	uint64_t t0 = util__now_ns();
	for (size_t i = 0; i < p->n; i++)
		if (p->e[i].outcome != PLAN_MOVE)
			st[i] = PLAN_DONE;
	for (;;) {
		int i;
		while ((i = plan__next(p, st, ev->parallel, ev->per_target)) >= 0) {
			st[i] = start(ev, &p->e[i], t0, out) ? PLAN_RUNNING : PLAN_DONE;
			if (st[i] == PLAN_DONE)
				fprintf(out, "%s -> %s: failed: %s; it keeps running on the source\n",
					ev->vms[p->e[i].vm].config.name, ev->targets[p->e[i].target].name,
					ev->vms[p->e[i].vm].reason);
		}
		unsigned running = 0, left = 0;
		for (size_t k = 0; k < p->n; k++) {
			running += st[k] == PLAN_RUNNING;
			left += st[k] != PLAN_DONE;
		}
		if (running > ev->max_running)
			ev->max_running = running;
		if (!left)
			break;
		for (size_t k = 0; k < p->n; k++)
			if (st[k] == PLAN_RUNNING && poll_move(ev, &p->e[k], t0, out))
				st[k] = PLAN_DONE;
		struct timespec ts = { 0, POLL_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
	free(st);
}
