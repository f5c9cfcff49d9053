/* vmhop evacuate: ask the agents of the source and the targets for their
 * profiles and the source's VMs, plan (agent/plan.c), print the plan, move
 * (cmd-evacuate-run.c), report, and check that the source is empty. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/evacuate.h"
#include "cli/commands.h"
#include "vmhop/util.h"

#define WHO "vmhop evacuate"
#define CALL_MS 30000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmhop evacuate --from HOST --to HOST[,HOST...] --tls-ca FILE --tls-cert FILE\n"
		"                      --tls-key FILE [OPTIONS]\n"
		"\n"
		"Move every VM off HOST by live migration to the target hosts, through their\n"
		"`vmhop agent`s: plan (largest first; memory, vCPU limits, compat rules against\n"
		"each target's profile), print the plan, move, report. A VM that fails to move\n"
		"keeps running where it was; one that fits nowhere is reported, never forced.\n"
		"HOST is ADDR or ADDR:PORT of an agent (default port " AGENT_DEFAULT_PORT ").\n"
		"\n"
		"  --from HOST             the host to empty\n"
		"  --to HOST[,HOST...]     where its VMs may go (repeatable)\n"
		"  --parallel N            at most N moves at once (default 1)\n"
		"  --per-target M          at most M moves into one target at once (default: N)\n"
		"  --vm NAME               move only this VM (repeatable); exit 0 once the VMs\n"
		"                          named have left HOST\n"
		"  --dry-run               plan and print, move nothing\n"
		"  --json                  the last line of output is one JSON object (plan and\n"
		"                          results); progress goes to stderr\n"
		"  --tls-ca FILE           the CA that signed the agents' certificates\n"
		"  --tls-cert FILE         this client's certificate (PEM)\n"
		"  --tls-key FILE          its key (PEM, not readable by group or others)\n"
		"  --max-bandwidth RATE    per move, as migrate-send (K/M/G suffixes)\n"
		"  --max-downtime MS       per move, as migrate-send (default 300)\n"
		"  --unsafe                as migrate-send --unsafe (writeback disks warn only)\n"
		"  -q, --quiet             no progress lines\n"
		"  -h, --help              this text\n"
		"\n"
		"Exit status: 0 when HOST runs no VM at the end (with --vm: none of those named;\n"
		"with --dry-run: when every VM has a place); 1 otherwise; 2 for bad options or an\n"
		"agent that cannot be asked.\n");
}

static int add_targets(struct evac *ev, char *list)
{
	for (char *save = NULL, *h = strtok_r(list, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
		if (!*h)
			continue;
		if (ev->ntargets == PLAN_MAX_TARGETS) {
			fprintf(stderr, WHO ": at most %d targets\n", PLAN_MAX_TARGETS);
			return -1;
		}
		struct evac_host *t = &ev->targets[ev->ntargets++];
		snprintf(t->name, sizeof(t->name), "%s", h);
	}
	return 0;
}

static int connect_host(struct evac_host *h, const struct channel_tls_opts *tls)
{
	struct err e = { 0 };
	if (agent_client__connect(&h->cl, h->name, tls, CALL_MS, &e)) {
		fprintf(stderr, WHO ": %s\n", e.msg);
		return -1;
	}
	json_object *r = agent_client__call(&h->cl, "ping", NULL, CALL_MS, &e), *v;
	if (!r) {
		fprintf(stderr, WHO ": %s\n", e.msg);
		return -1;
	}
	h->copy_disk = json_object_object_get_ex(r, "copy_disk", &v) && json_object_get_boolean(v);
	json_object_put(r);
	return 0;
}

/* host-profile from h's agent, with its view of vm's disks when vm is given. */
static int get_profile(struct evac_host *h, json_object *vm, struct host_profile *p)
{
	struct err e = { 0 };
	json_object *args = NULL;
	if (vm) {
		args = json_object_new_object();
		json_object_object_add(args, "vm", json_object_get(vm));
	}
	json_object *r = agent_client__call(&h->cl, "host-profile", args, CALL_MS, &e);
	if (args)
		json_object_put(args);
	if (!r) {
		fprintf(stderr, WHO ": %s\n", e.msg);
		return -1;
	}
	int rc = host_profile__from_json(r, p, &e);
	json_object_put(r);
	if (rc) {
		fprintf(stderr, WHO ": agent %s: its profile: %s\n", h->name, e.msg);
		return -1;
	}
	return 0;
}

static void keep_disks(struct plan_disks *d, const struct host_profile *p)
{
	d->have = p->have_disks;
	d->n = p->ndisks;
	memcpy(d->v, p->disks, p->ndisks * sizeof(p->disks[0]));
}

static bool wanted(const struct evac *ev, json_object *vm)
{
	json_object *name;
	if (!ev->nonly)
		return true;
	if (!json_object_object_get_ex(vm, "name", &name))
		return false;
	for (size_t i = 0; i < ev->nonly; i++)
		if (!strcmp(ev->only[i], json_object_get_string(name)))
			return true;
	return false;
}

/* Keeps the VMs --vm named (all without --vm); a name not there is an error. */
static int select_vms(struct evac *ev, json_object *arr)
{
	for (size_t i = 0; i < ev->nonly; i++) {
		bool found = false;
		for (size_t k = 0; k < json_object_array_length(arr) && !found; k++) {
			json_object *name;
			found = json_object_object_get_ex(json_object_array_get_idx(arr, k), "name", &name) &&
				!strcmp(json_object_get_string(name), ev->only[i]);
		}
		if (!found) {
			fprintf(stderr, WHO ": --vm %s: no such VM on %s\n", ev->only[i], ev->src.name);
			return -1;
		}
	}
	for (size_t k = json_object_array_length(arr); k-- > 0;)
		if (!wanted(ev, json_object_array_get_idx(arr, k)))
			json_object_array_del_idx(arr, k, 1);
	return 0;
}

static int gather(struct evac *ev)
{
	struct err e = { 0 };
	json_object *r = agent_client__call(&ev->src.cl, "list-vms", NULL, CALL_MS, &e), *arr;
	if (!r) {
		fprintf(stderr, WHO ": %s\n", e.msg);
		return -1;
	}
	if (!json_object_object_get_ex(r, "vms", &arr) || !json_object_is_type(arr, json_type_array)) {
		fprintf(stderr, WHO ": agent %s: list-vms without a vms list\n", ev->src.name);
		json_object_put(r);
		return -1;
	}
	if (select_vms(ev, arr)) {
		json_object_put(r);
		return -1;
	}
	size_t n = json_object_array_length(arr);
	if (n > PLAN_MAX_VMS) {
		fprintf(stderr, WHO ": %s runs %zu VMs, at most %d are planned at once\n",
			ev->src.name, n, PLAN_MAX_VMS);
		json_object_put(r);
		return -1;
	}
	ev->vms = calloc(n ? n : 1, sizeof(*ev->vms));
	struct host_profile *p = malloc(sizeof(*p));
	int rc = ev->vms && p ? 0 : -1;
	for (size_t i = 0; !rc && i < n; i++) {
		struct evac_vm *vm = &ev->vms[i];
		json_object *cfg = NULL;
		vm_config__init(&vm->config);
		ev->nvms++;
		json_object_object_get_ex(json_object_array_get_idx(arr, i), "config", &cfg);
		if (!cfg || compat__vm_from_json(cfg, &vm->config, &vm->ext, &e)) {
			fprintf(stderr, WHO ": agent %s: VM %zu: %s\n", ev->src.name, i,
				cfg ? e.msg : "no config");
			rc = -1;
			break;
		}
		vm->dst_disks = calloc(ev->ntargets, sizeof(*vm->dst_disks));
		if (!vm->dst_disks || get_profile(&ev->src, cfg, p)) {
			rc = -1;
			break;
		}
		keep_disks(&vm->src_disks, p);
		for (size_t t = 0; !rc && t < ev->ntargets; t++) {
			rc = get_profile(&ev->targets[t], cfg, p);
			if (!rc)
				keep_disks(&vm->dst_disks[t], p);
		}
	}
	free(p);
	json_object_put(r);
	return rc;
}

static int plan(struct evac *ev)
{
	struct plan_vm *pv = calloc(ev->nvms ? ev->nvms : 1, sizeof(*pv));
	struct plan_target pt[PLAN_MAX_TARGETS];
	if (!pv)
		return -1;
	for (size_t i = 0; i < ev->nvms; i++) {
		pv[i].config = &ev->vms[i].config;
		pv[i].ext = &ev->vms[i].ext;
		pv[i].src_disks = &ev->vms[i].src_disks;
		pv[i].dst_disks = ev->vms[i].dst_disks;
	}
	for (size_t t = 0; t < ev->ntargets; t++) {
		snprintf(pt[t].name, sizeof(pt[t].name), "%s", ev->targets[t].name);
		pt[t].profile = ev->targets[t].profile;
	}
	/* Disks travel only when the source's vmhop can send them. */
	struct plan_opts o = { .copy_disks = ev->src.copy_disk, .unsafe = ev->unsafe };
	struct err e = { 0 };
	int r = plan__make(pv, ev->nvms, ev->src.profile, pt, ev->ntargets, &o, &ev->plan, &e);
	free(pv);
	if (r)
		fprintf(stderr, WHO ": %s\n", e.msg);
	for (size_t i = 0; !r && i < ev->plan.n; i++) {
		const struct plan_entry *pe = &ev->plan.e[i];
		if (pe->outcome == PLAN_NOWHERE) {
			ev->vms[pe->vm].result = EVAC_NOWHERE;
			snprintf(ev->vms[pe->vm].reason, sizeof(ev->vms[pe->vm].reason),
				 "fits no target: %s", pe->text);
		}
	}
	return r;
}

static void copied(const struct evac *ev, const struct plan_entry *pe, char *buf, size_t size)
{
	size_t off = 0;
	buf[0] = '\0';
	for (unsigned d = 0; d < ev->vms[pe->vm].config.nr_disks && off < size; d++)
		if (pe->copy[d])
			off += (size_t)snprintf(buf + off, size - off, "%s%s", off ? "," : "",
						ev->vms[pe->vm].config.disks[d].id);
}

static void note(char *buf, size_t size, const char *label, const char *text)
{
	size_t len = strlen(buf);
	snprintf(buf + len, size - len, "%s%s%s", len ? "; " : "", label, text);
}

static void print_plan(const struct evac *ev, FILE *f)
{
	fprintf(f, "plan: %zu VM%s on %s, %zu target%s, at most %u at once, %u per target\n",
		ev->nvms, ev->nvms == 1 ? "" : "s", ev->src.name, ev->ntargets,
		ev->ntargets == 1 ? "" : "s", ev->parallel, ev->per_target);
	fprintf(f, "  %-20s %8s %5s  %-20s %s\n", "VM", "MEMORY", "VCPUS", "TARGET", "NOTES");
	for (size_t i = 0; i < ev->plan.n; i++) {
		const struct plan_entry *pe = &ev->plan.e[i];
		const struct vm_config *c = &ev->vms[pe->vm].config;
		char mem[24], disks[128];
		snprintf(mem, sizeof(mem), "%" PRIu64 "M", (uint64_t)(c->mem_size / MiB));
		copied(ev, pe, disks, sizeof(disks));
		if (pe->outcome == PLAN_NOWHERE) {
			fprintf(f, "  %-20s %8s %5u  %-20s %s\n", c->name, mem, c->nr_cpus, "(nowhere)",
				pe->text);
			continue;
		}
		char notes[3 * PLAN_TEXT_MAX + 160] = "";
		if (disks[0])
			note(notes, sizeof(notes), "copy disks ", disks);
		if (pe->text[0])
			note(notes, sizeof(notes), "warning: ", pe->text);
		if (pe->avoided[0])
			note(notes, sizeof(notes), "avoided ", pe->avoided);
		fprintf(f, "  %-20s %8s %5u  %-20s %s\n", c->name, mem, c->nr_cpus,
			ev->targets[pe->target].name, notes);
	}
	if (!ev->plan.n)
		fprintf(f, "  (no VMs)\n");
}

static const char *result_name(enum evac_result r)
{
	static const char *const n[] = { "pending", "moved", "failed", "nowhere", "unconfirmed" };
	return n[r];
}

static json_object *report_json(const struct evac *ev, bool dry, int remaining)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array();
	json_object_object_add(o, "source", json_object_new_string(ev->src.name));
	json_object_object_add(o, "dry_run", json_object_new_boolean(dry));
	json_object_object_add(o, "parallel", json_object_new_int((int)ev->parallel));
	json_object_object_add(o, "per_target", json_object_new_int((int)ev->per_target));
	json_object_object_add(o, "max_running", json_object_new_int((int)ev->max_running));
	for (size_t i = 0; i < ev->plan.n; i++) {
		const struct plan_entry *pe = &ev->plan.e[i];
		const struct evac_vm *vm = &ev->vms[pe->vm];
		json_object *v = json_object_new_object(), *cp = json_object_new_array();
		json_object_object_add(v, "name", json_object_new_string(vm->config.name));
		json_object_object_add(v, "memory", json_object_new_int64((int64_t)vm->config.mem_size));
		json_object_object_add(v, "cpus", json_object_new_int((int)vm->config.nr_cpus));
		json_object_object_add(v, "source", json_object_new_string(ev->src.name));
		json_object_object_add(v, "target", pe->outcome == PLAN_MOVE ?
				       json_object_new_string(ev->targets[pe->target].name) : NULL);
		for (unsigned d = 0; d < vm->config.nr_disks; d++)
			if (pe->copy[d])
				json_object_array_add(cp, json_object_new_string(vm->config.disks[d].id));
		json_object_object_add(v, "copy_disks", cp);
		json_object_object_add(v, "warnings", json_object_new_string(
					       pe->outcome == PLAN_MOVE ? pe->text : ""));
		json_object_object_add(v, "avoided", json_object_new_string(pe->avoided));
		json_object_object_add(v, "result", json_object_new_string(
					       dry && vm->result == EVAC_PENDING ? "planned" :
					       result_name(vm->result)));
		if (vm->reason[0])
			json_object_object_add(v, "reason", json_object_new_string(vm->reason));
		if (!dry && pe->outcome == PLAN_MOVE) {
			json_object_object_add(v, "start_ms", json_object_new_double(vm->start_ms));
			json_object_object_add(v, "end_ms", json_object_new_double(vm->end_ms));
			json_object_object_add(v, "total_ms", json_object_new_double(vm->total_ms));
			json_object_object_add(v, "downtime_ms", json_object_new_double(vm->downtime_ms));
		}
		json_object_array_add(arr, v);
	}
	json_object_object_add(o, "vms", arr);
	json_object_object_add(o, "remaining", json_object_new_int(remaining));
	json_object_object_add(o, "empty", json_object_new_boolean(remaining == 0));
	return o;
}

static void print_report(const struct evac *ev, FILE *f)
{
	fprintf(f, "report: %s\n", ev->src.name);
	fprintf(f, "  %-20s %-21s %-21s %-11s %9s %9s  %s\n", "VM", "SOURCE", "TARGET", "RESULT",
		"TIME_MS", "DOWN_MS", "REASON");
	for (size_t i = 0; i < ev->plan.n; i++) {
		const struct plan_entry *pe = &ev->plan.e[i];
		const struct evac_vm *vm = &ev->vms[pe->vm];
		fprintf(f, "  %-20s %-21s %-21s %-11s %9.1f %9.1f  %s\n", vm->config.name,
			ev->src.name, pe->outcome == PLAN_MOVE ? ev->targets[pe->target].name : "-",
			result_name(vm->result), vm->total_ms, vm->downtime_ms, vm->reason);
	}
	fprintf(f, "  at most %u move%s ran at once\n", ev->max_running, ev->max_running == 1 ? "" : "s");
}

/* VMs still on the source, by asking its agent; -1 when it cannot say. */
static int remaining(struct evac *ev, FILE *f)
{
	struct err e = { 0 };
	json_object *r = agent_client__call(&ev->src.cl, "list-vms", NULL, CALL_MS, &e), *arr;
	if (!r) {
		fprintf(stderr, WHO ": %s\n", e.msg);
		return -1;
	}
	int n = -1;
	if (json_object_object_get_ex(r, "vms", &arr) && json_object_is_type(arr, json_type_array)) {
		for (size_t k = json_object_array_length(arr); k-- > 0;)
			if (!wanted(ev, json_object_array_get_idx(arr, k)))
				json_object_array_del_idx(arr, k, 1);
		n = (int)json_object_array_length(arr);
		if (n)
			fprintf(f, "%s still runs %d VM%s:", ev->src.name, n, n == 1 ? "" : "s");
		for (int i = 0; i < n; i++) {
			json_object *name;
			if (json_object_object_get_ex(json_object_array_get_idx(arr, (size_t)i), "name", &name))
				fprintf(f, " %s", json_object_get_string(name));
		}
		fprintf(f, n ? "\n" : ev->nonly ? "%s no longer runs the VMs named\n" : "%s is empty\n",
			ev->src.name);
	}
	json_object_put(r);
	return n;
}

static void cleanup(struct evac *ev)
{
	for (size_t i = 0; i < ev->nvms; i++) {
		vm_config__free(&ev->vms[i].config);
		free(ev->vms[i].dst_disks);
	}
	free(ev->vms);
	agent_client__close(&ev->src.cl);
	free(ev->src.profile);
	for (size_t t = 0; t < ev->ntargets; t++) {
		agent_client__close(&ev->targets[t].cl);
		free(ev->targets[t].profile);
	}
	free(ev->targets);
}

int cmd_evacuate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "parallel", required_argument, NULL, 'n' },
		{ "per-target", required_argument, NULL, 'm' },
		{ "dry-run", no_argument, NULL, 'd' },
		{ "vm", required_argument, NULL, 'V' },
		{ "json", no_argument, NULL, 'j' },
		{ "tls-ca", required_argument, NULL, 'a' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-key", required_argument, NULL, 'k' },
		{ "max-bandwidth", required_argument, NULL, 'b' },
		{ "max-downtime", required_argument, NULL, 'D' },
		{ "unsafe", no_argument, NULL, 'u' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct evac ev = { .parallel = 1, .timeout_ms = CALL_MS };
	struct channel_tls_opts tls = { 0 };
	const char *from = NULL;
	bool dry = false;
	uint64_t v;
	int c, rc = 2;
	ev.targets = calloc(PLAN_MAX_TARGETS, sizeof(*ev.targets));
	if (!ev.targets) {
		fprintf(stderr, WHO ": out of memory\n");
		return 1;
	}
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
		switch (c) {
		case 'f': from = optarg; break;
		case 't':
			if (add_targets(&ev, optarg))
				goto out;
			break;
		case 'n':
		case 'm':
			if (util__parse_uint(optarg, 1, 64, &v)) {
				fprintf(stderr, WHO ": --%s %s: expected 1 to 64\n",
					c == 'n' ? "parallel" : "per-target", optarg);
				goto out;
			}
			if (c == 'n')
				ev.parallel = (unsigned)v;
			else
				ev.per_target = (unsigned)v;
			break;
		case 'd': dry = true; break;
		case 'V':
			if (ev.nonly == PLAN_MAX_VMS) {
				fprintf(stderr, WHO ": at most %d --vm options\n", PLAN_MAX_VMS);
				goto out;
			}
			ev.only[ev.nonly++] = optarg;
			break;
		case 'j': ev.json = true; break;
		case 'a': tls.ca = optarg; break;
		case 'c': tls.cert = optarg; break;
		case 'k': tls.key = optarg; break;
		case 'b':
			if (util__parse_size(optarg, &v)) {
				fprintf(stderr, WHO ": --max-bandwidth %s: expected bytes per second (K/M/G)\n",
					optarg);
				goto out;
			}
			ev.max_bandwidth = optarg;
			break;
		case 'D':
			if (util__parse_uint(optarg, 1, 3600000, &v)) {
				fprintf(stderr, WHO ": --max-downtime %s: expected 1 to 3600000 ms\n", optarg);
				goto out;
			}
			ev.max_downtime_ms = (int)v;
			break;
		case 'u': ev.unsafe = true; break;
		case 'q': ev.quiet = true; break;
		case 'h': usage(stdout); rc = 0; goto out;
		case ':':
			fprintf(stderr, WHO ": %s needs a value\n", argv[optind - 1]);
			goto out;
		default:
			fprintf(stderr, WHO ": unknown option '%s' (see vmhop evacuate --help)\n",
				argv[optind - 1]);
			goto out;
		}
	}
	if (optind != argc) {
		fprintf(stderr, WHO ": unexpected argument '%s'\n", argv[optind]);
		goto out;
	}
	if (!from || !ev.ntargets || !tls.ca || !tls.cert || !tls.key) {
		fprintf(stderr, WHO ": --from HOST, --to HOST[,HOST...], --tls-ca, --tls-cert and "
			"--tls-key are required\n");
		goto out;
	}
	if (!ev.per_target)
		ev.per_target = ev.parallel;
	snprintf(ev.src.name, sizeof(ev.src.name), "%s", from);
	for (size_t t = 0; t < ev.ntargets; t++)
		if (!strcmp(ev.targets[t].name, from)) {
			fprintf(stderr, WHO ": %s is both --from and --to\n", from);
			goto out;
		}
	/* Progress and the plan go to stderr when stdout carries the JSON. */
	FILE *out = ev.json ? stderr : stdout;
	if (connect_host(&ev.src, &tls))
		goto out;
	for (size_t t = 0; t < ev.ntargets; t++)
		if (connect_host(&ev.targets[t], &tls))
			goto out;
	ev.src.profile = malloc(sizeof(*ev.src.profile));
	if (!ev.src.profile || get_profile(&ev.src, NULL, ev.src.profile))
		goto out;
	for (size_t t = 0; t < ev.ntargets; t++) {
		ev.targets[t].profile = malloc(sizeof(*ev.targets[t].profile));
		if (!ev.targets[t].profile || get_profile(&ev.targets[t], NULL, ev.targets[t].profile))
			goto out;
	}
	if (gather(&ev) || plan(&ev))
		goto out;
	print_plan(&ev, out);
	fflush(out);
	if (dry) {
		if (ev.json) {
			json_object *j = report_json(&ev, true, (int)ev.nvms);
			printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
			json_object_put(j);
		}
		rc = ev.plan.nowhere ? 1 : 0;
		goto out;
	}
	evacuate__run(&ev, out);
	print_report(&ev, out);
	int left = remaining(&ev, out);
	if (ev.json) {
		json_object *j = report_json(&ev, false, left);
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
		json_object_put(j);
	}
	rc = left == 0 ? 0 : 1;
out:
	fflush(stdout);
	cleanup(&ev);
	return rc;
}
