/* Helpers shared by the compat suites: fixtures, a typical VM, row lookup. */
#ifndef VMHOP_TEST_COMPAT_UTIL_H
#define VMHOP_TEST_COMPAT_UTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/compat.h"
#include "vmhop/host-profile.h"
#include "vmhop/vm-config.h"

static inline void fixture_path(const char *name, char *buf, size_t size)
{
	const char *src = getenv("VMHOP_SRCDIR");
	snprintf(buf, size, "%s/tests/compat/fixtures/%s", src ? src : ".", name);
}

/* A heap profile loaded from tests/compat/fixtures/NAME. */
static inline struct host_profile *fixture(const char *name)
{
	char path[4096];
	fixture_path(name, path, sizeof(path));
	struct host_profile *p = calloc(1, sizeof(*p));
	struct err e = { 0 };
	ck_assert(p != NULL);
	ck_assert_msg(host_profile__load(path, p, &e) == 0, "%s", e.msg);
	return p;
}

/* 2 vCPUs, 1 GiB, default model, one cache=none writable disk. */
static inline void typical_vm(struct vm_config *vm)
{
	struct err e = { 0 };
	vm_config__init(vm);
	snprintf(vm->name, sizeof(vm->name), "vm1");
	vm->nr_cpus = 2;
	vm->mem_size = 1ULL << 30;
	ck_assert_msg(vm_config__add_disk(vm, "/srv/shared/vm1.img,id=vda", &e) == 0, "%s", e.msg);
}

/* The n-th row of rule `rule` (NULL if none). */
static inline const struct compat_row *row_of(const struct compat_report *r, const char *rule,
					      size_t n)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->rows[i].rule, rule) && n-- == 0)
			return &r->rows[i];
	return NULL;
}

#define ck_row(r, rule, n, st, needle) do { \
	const struct compat_row *row_ = row_of((r), (rule), (n)); \
	ck_assert_msg(row_ != NULL, "no row %zu for rule %s", (size_t)(n), (rule)); \
	ck_assert_msg(row_->status == (st), "%s: %s, want %s: %s", (rule), \
		      compat__status_name(row_->status), compat__status_name(st), row_->reason); \
	ck_assert_msg(strstr(row_->reason, (needle)) != NULL, "%s: '%s' lacks '%s'", (rule), \
		      row_->reason, (needle)); \
	if ((st) != COMPAT_PASS) \
		ck_assert_msg(row_->fix[0] != '\0', "%s: no fix", (rule)); \
} while (0)

#endif
