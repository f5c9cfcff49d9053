/* The evacuation planner (agent/plan.c): order, capacity, compat rules,
 * overcommit warnings, disk copy, and the N/M scheduler. Profiles come from
 * the compat fixtures, edited per test. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "agent/plan.h"
#include "test-compat-util.h"
#include "vmhop/util.h"

struct world {
	struct host_profile *src;
	struct host_profile *dst[3];
	struct plan_target t[3];
	struct vm_config cfg[8];
	struct plan_vm vm[8];
	size_t nvm;
	struct plan plan;
};

static struct world *world(size_t ntargets, uint64_t mem_each)
{
	struct world *w = calloc(1, sizeof(*w));
	ck_assert(w != NULL);
	w->src = fixture("amd-host.json");
	for (size_t i = 0; i < ntargets; i++) {
		w->dst[i] = fixture("amd-host.json");
		w->dst[i]->mem_available = mem_each;
		w->dst[i]->mem_total = mem_each * 2;
		snprintf(w->t[i].name, sizeof(w->t[i].name), "h%zu", i + 2);
		w->t[i].profile = w->dst[i];
	}
	return w;
}

static struct vm_config *add_vm(struct world *w, const char *name, uint64_t mem, unsigned cpus)
{
	struct vm_config *c = &w->cfg[w->nvm];
	vm_config__init(c);
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->mem_size = mem;
	c->nr_cpus = cpus;
	w->vm[w->nvm].config = c;
	w->nvm++;
	return c;
}

static void free_world(struct world *w, size_t ntargets)
{
	for (size_t i = 0; i < w->nvm; i++)
		vm_config__free(&w->cfg[i]);
	free(w->src);
	for (size_t i = 0; i < ntargets; i++)
		free(w->dst[i]);
	free(w);
}

static int make(struct world *w, size_t ntargets, const struct plan_opts *o)
{
	struct err e = { 0 };
	int r = plan__make(w->vm, w->nvm, w->src, w->t, ntargets, o, &w->plan, &e);
	ck_assert_msg(r == 0, "%s", e.msg);
	return r;
}

static const struct plan_entry *entry_of(const struct world *w, const char *name)
{
	for (size_t i = 0; i < w->plan.n; i++)
		if (!strcmp(w->cfg[w->plan.e[i].vm].name, name))
			return &w->plan.e[i];
	ck_abort_msg("%s is not in the plan", name);
	return NULL;
}

START_TEST(largest_first_and_balanced)
{
	struct world *w = world(2, 4 * GiB);
	add_vm(w, "small", 256 * MiB, 1);
	add_vm(w, "big", 2 * GiB, 2);
	add_vm(w, "mid", 1 * GiB, 1);
	add_vm(w, "mid2", 1 * GiB, 2);
	make(w, 2, NULL);
	ck_assert_uint_eq(w->plan.n, 4);
	ck_assert_uint_eq(w->plan.nowhere, 0);
	ck_assert_str_eq(w->cfg[w->plan.e[0].vm].name, "big");
	ck_assert_str_eq(w->cfg[w->plan.e[1].vm].name, "mid2");	/* same memory, more vCPUs */
	ck_assert_str_eq(w->cfg[w->plan.e[2].vm].name, "mid");
	ck_assert_str_eq(w->cfg[w->plan.e[3].vm].name, "small");
	/* The most memory left wins: big to h2, both 1 GiB ones to h3, small to h2. */
	ck_assert_int_eq(entry_of(w, "big")->target, 0);
	ck_assert_int_eq(entry_of(w, "mid2")->target, 1);
	ck_assert_int_eq(entry_of(w, "mid")->target, 1);
	ck_assert_int_eq(entry_of(w, "small")->target, 0);
	ck_assert_uint_eq(w->plan.mem_planned[0], 2 * GiB + 256 * MiB);
	ck_assert_uint_eq(w->plan.vcpus_planned[1], 3);
	free_world(w, 2);
}
END_TEST

START_TEST(fits_nowhere_is_reported)
{
	struct world *w = world(2, 1 * GiB);
	add_vm(w, "huge", 3 * GiB, 1);
	add_vm(w, "a", 768 * MiB, 1);
	add_vm(w, "b", 768 * MiB, 1);
	add_vm(w, "c", 768 * MiB, 1);	/* the first two fill both targets */
	make(w, 2, NULL);
	ck_assert_uint_eq(w->plan.nowhere, 2);
	const struct plan_entry *h = entry_of(w, "huge");
	ck_assert_int_eq(h->outcome, PLAN_NOWHERE);
	ck_assert_int_eq(h->target, -1);
	ck_assert_msg(strstr(h->text, "h2: memory: the guest needs 3072 MiB") &&
		      strstr(h->text, "h3: memory"), "%s", h->text);
	ck_assert_int_eq(entry_of(w, "a")->outcome, PLAN_MOVE);
	ck_assert_int_eq(entry_of(w, "b")->outcome, PLAN_MOVE);
	ck_assert_int_ne(entry_of(w, "a")->target, entry_of(w, "b")->target);
	ck_assert_int_eq(entry_of(w, "c")->outcome, PLAN_NOWHERE);
	free_world(w, 2);
}
END_TEST

START_TEST(compat_failure_avoids_target)
{
	struct world *w = world(2, 8 * GiB);
	w->dst[1]->mem_available = 4 * GiB;	/* h2 would be preferred */
	/* h2's vmhop does not list baseline; host models go between
	 * identical hosts whatever the list says. */
	w->dst[0]->nmodels = 2;
	snprintf(w->dst[0]->models[0], CPU_MODEL_NAME_MAX, "host");
	snprintf(w->dst[0]->models[1], CPU_MODEL_NAME_MAX, "host-noxsave");
	struct vm_config *c = add_vm(w, "picky", 512 * MiB, 1);
	c->cpu_model = strdup("baseline");
	c = add_vm(w, "plain", 256 * MiB, 1);
	c->cpu_model = strdup("host");
	make(w, 2, NULL);
	ck_assert_int_eq(entry_of(w, "picky")->target, 1);
	ck_assert_msg(strstr(entry_of(w, "picky")->avoided, "h2: cpu-model: CPU model baseline"),
		      "%s", entry_of(w, "picky")->avoided);
	ck_assert_int_eq(entry_of(w, "plain")->target, 0);
	ck_assert_str_eq(entry_of(w, "plain")->avoided, "");

	/* Neither can: nowhere, and the reason names the rule on each. */
	w->dst[1]->nmodels = 0;
	make(w, 2, NULL);
	const struct plan_entry *p = entry_of(w, "picky");
	ck_assert_int_eq(p->outcome, PLAN_NOWHERE);
	ck_assert_msg(strstr(p->text, "h2: cpu-model: CPU model baseline is not among") &&
		      strstr(p->text, "h3: cpu-model"), "%s", p->text);
	free_world(w, 2);
}
END_TEST

START_TEST(overcommit_warns_and_is_avoided)
{
	struct world *w = world(2, 8 * GiB);
	w->dst[0]->cores = 1;
	w->dst[0]->vcpus_in_use = 7;
	w->dst[1]->mem_available = 1 * GiB;	/* less memory, but no warning */
	add_vm(w, "vm", 512 * MiB, 2);
	make(w, 2, NULL);
	const struct plan_entry *p = entry_of(w, "vm");
	ck_assert_int_eq(p->target, 1);
	ck_assert_str_eq(p->text, "");

	/* Only the overcommitted one left: planned, with the warning. */
	w->dst[1]->mem_available = 128 * MiB;
	make(w, 2, NULL);
	p = entry_of(w, "vm");
	ck_assert_int_eq(p->target, 0);
	ck_assert_msg(strstr(p->text, "vcpu-overcommit: 9 vCPUs"), "%s", p->text);

	/* vCPUs planned earlier count: eight 1-vCPU VMs on a 1-core host. */
	free_world(w, 2);
	w = world(1, 8 * GiB);
	w->dst[0]->cores = 1;
	for (int i = 0; i < 8; i++) {
		char n[8];
		snprintf(n, sizeof(n), "v%d", i);
		add_vm(w, n, 64 * MiB, 1);
	}
	make(w, 1, NULL);
	ck_assert_uint_eq(w->plan.nowhere, 0);
	ck_assert_str_eq(w->plan.e[6].text, "");
	ck_assert_str_eq(w->plan.e[7].text, "");
	free_world(w, 1);
}
END_TEST

START_TEST(unreachable_disk_copied_or_refused)
{
	struct world *w = world(1, 8 * GiB);
	struct err e = { 0 };
	struct vm_config *c = add_vm(w, "disky", 512 * MiB, 1);
	ck_assert(vm_config__add_disk(c, "/srv/h1/disky.img,id=vda", &e) == 0);
	struct plan_disks src = { .have = true, .n = 1 }, dst = { .have = true, .n = 1 };
	snprintf(src.v[0].id, DISK_ID_MAX, "vda");
	snprintf(src.v[0].path, HOST_PROFILE_PATH_MAX, "/srv/h1/disky.img");
	src.v[0].exists = src.v[0].writable = true;
	src.v[0].size = 1 << 20;
	dst.v[0] = src.v[0];
	dst.v[0].exists = dst.v[0].writable = false;
	w->vm[0].src_disks = &src;
	w->vm[0].dst_disks = &dst;

	make(w, 1, NULL);
	const struct plan_entry *p = entry_of(w, "disky");
	ck_assert_int_eq(p->outcome, PLAN_NOWHERE);
	ck_assert_msg(strstr(p->text, "h2: disk-reach: disk vda"), "%s", p->text);

	struct plan_opts o = { .copy_disks = true };
	make(w, 1, &o);
	p = entry_of(w, "disky");
	ck_assert_int_eq(p->outcome, PLAN_MOVE);
	ck_assert_uint_eq(p->ncopy, 1);
	ck_assert(p->copy[0]);

	/* Reachable (shared storage): nothing copied even when copy is possible. */
	dst.v[0].exists = dst.v[0].writable = true;
	dst.v[0].dev = src.v[0].dev;
	dst.v[0].ino = src.v[0].ino;
	make(w, 1, &o);
	p = entry_of(w, "disky");
	ck_assert_int_eq(p->outcome, PLAN_MOVE);
	ck_assert_uint_eq(p->ncopy, 0);
	free_world(w, 1);
}
END_TEST

START_TEST(bad_input)
{
	struct world *w = world(1, 8 * GiB);
	struct err e = { 0 };
	ck_assert_int_eq(plan__make(w->vm, 0, w->src, w->t, 0, NULL, &w->plan, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "0 targets"), "%s", e.msg);
	/* No VMs: an empty plan. */
	ck_assert_int_eq(plan__make(w->vm, 0, w->src, w->t, 1, NULL, &w->plan, &e), 0);
	ck_assert_uint_eq(w->plan.n, 0);
	free_world(w, 1);
}
END_TEST

START_TEST(scheduler_limits)
{
	struct plan p = { .n = 5 };
	int targets[] = { 0, 0, 1, 0, 1 };
	for (size_t i = 0; i < p.n; i++) {
		p.e[i].outcome = PLAN_MOVE;
		p.e[i].target = targets[i];
	}
	p.e[3].outcome = PLAN_NOWHERE;	/* never started */
	p.e[3].target = -1;
	enum plan_state st[5] = { 0 };
	/* Two at once, one per target: 0 (h2), then 2 (h3, skipping 1 for h2). */
	ck_assert_int_eq(plan__next(&p, st, 2, 1), 0);
	st[0] = PLAN_RUNNING;
	ck_assert_int_eq(plan__next(&p, st, 2, 1), 2);
	st[2] = PLAN_RUNNING;
	ck_assert_int_eq(plan__next(&p, st, 2, 1), -1);
	st[0] = PLAN_DONE;
	ck_assert_int_eq(plan__next(&p, st, 2, 1), 1);
	st[1] = PLAN_RUNNING;
	ck_assert_int_eq(plan__next(&p, st, 3, 1), -1);	/* 4 is for busy h3 */
	ck_assert_int_eq(plan__next(&p, st, 3, 0), 4);	/* no per-target limit */
	st[1] = st[2] = PLAN_DONE;
	ck_assert_int_eq(plan__next(&p, st, 1, 1), 4);
	st[4] = PLAN_DONE;
	ck_assert_int_eq(plan__next(&p, st, 1, 1), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("evacuate-plan");
	TCase *tc = tcase_create("plan");
	tcase_add_test(tc, largest_first_and_balanced);
	tcase_add_test(tc, fits_nowhere_is_reported);
	tcase_add_test(tc, compat_failure_avoids_target);
	tcase_add_test(tc, overcommit_warns_and_is_avoided);
	tcase_add_test(tc, unreachable_disk_copied_or_refused);
	tcase_add_test(tc, bad_input);
	tcase_add_test(tc, scheduler_limits);
	suite_add_tcase(s, tc);
	return check_run(s);
}
