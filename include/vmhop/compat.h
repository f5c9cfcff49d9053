/* Pre-flight compatibility rules: can this VM move from the source host to
 * the destination host? One call runs every rule and fills a report with one
 * row per finding: rule name, PASS / WARN / FAIL, the reason, and the fix.
 * Used offline (`vmhop compat-check` on recorded profiles) and, live, by the
 * migration handshake on the destination's profile before memory moves. */
#ifndef VMHOP_COMPAT_H
#define VMHOP_COMPAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <json-c/json.h>

#include "vmhop/cpu-models.h"
#include "vmhop/err.h"
#include "vmhop/host-profile.h"
#include "vmhop/release.h"
#include "vmhop/vm-config.h"

enum compat_status { COMPAT_PASS, COMPAT_WARN, COMPAT_FAIL };

#define COMPAT_RULE_MAX		32
#define COMPAT_TEXT_MAX		384
#define COMPAT_MAX_ROWS		64
#define COMPAT_MAX_HOST_DEVICES	8

struct compat_row {
	char rule[COMPAT_RULE_MAX];
	enum compat_status status;
	char reason[COMPAT_TEXT_MAX];
	char fix[COMPAT_TEXT_MAX];	/* "" when the row passes */
};

struct compat_report {
	struct compat_row rows[COMPAT_MAX_ROWS];
	size_t n;
	size_t dropped;		/* rows beyond COMPAT_MAX_ROWS (then FAILs are kept) */
	unsigned pass, warn, fail;
};

/* What a VM is made of that struct vm_config does not record (yet): the
 * rules exist before vmhop supports these. In the VM config JSON as the
 * optional members "memory_backing", "memory_path" and "host_devices". */
enum compat_mem_backing { COMPAT_MEM_MEMFD, COMPAT_MEM_ANON, COMPAT_MEM_FILE,
			  COMPAT_MEM_HUGETLBFS };
struct compat_vm_ext {
	enum compat_mem_backing backing;
	char memory_path[HOST_PROFILE_PATH_MAX];	/* for file / hugetlbfs */
	char host_devices[COMPAT_MAX_HOST_DEVICES][HOST_PROFILE_NAME_MAX];	/* "0000:3b:00.0" */
	size_t nhost_devices;
};

struct compat_opts {
	bool unsafe;			/* --unsafe: cache rule WARNs instead of FAILing */
	const struct compat_vm_ext *ext;	/* NULL: memfd RAM, no host devices */
	/* NULL: the built-in data. Tests pass their own. */
	const struct release_matrix *matrix;
	const struct cpu_model_set *models;
	/* Disks chosen for copying (selective disk copy): not checked for
	 * reachability. NULL: none. Indexed like vm->disks. */
	const bool *disk_copied;
};

/* Runs every rule (opts may be NULL: all defaults). Returns 0 with the
 * report filled, whatever the verdict; or -errno when the rules themselves
 * could not run (no memory, the built-in data does not parse), and then the
 * report holds one FAIL row, rule "compat-data", saying why. */
int compat__check(const struct vm_config *vm, const struct host_profile *src,
		  const struct host_profile *dst, const struct compat_opts *opts,
		  struct compat_report *out);

/* 0 all pass, 1 warnings only, 2 any failure. */
int compat__exit_code(const struct compat_report *r);
const char *compat__status_name(enum compat_status s);	/* "PASS", ... */
/* The first FAIL row, or NULL: for one-line errors ("refused: ..."). */
const struct compat_row *compat__first_failure(const struct compat_report *r);

/* A table: RULE  STATUS  REASON, then "fix: ..." under each non-PASS row, and
 * a verdict line. */
void compat__print(FILE *f, const struct compat_report *r);
/* {"verdict": "pass"|"warn"|"fail", "exit_code": N, "pass": N, "warn": N,
 *  "fail": N, "rows": [{"rule", "status", "reason", "fix"}]} */
int compat__report_to_json(const struct compat_report *r, struct json_object **out);

/* The reverse, for clients that got a report over the control socket (rows
 * beyond COMPAT_MAX_ROWS are counted, not kept). */
int compat__report_from_json(struct json_object *j, struct compat_report *r, struct err *e);
/* The VM description from JSON: either the bare vm_config object or the
 * reply `vmhop ctl --json query-config` prints ({"return": {...}, "id": N}).
 * The compat members (see struct compat_vm_ext) are taken out first, then
 * vm_config__from_json reads the rest strictly. */
int compat__vm_from_json(struct json_object *j, struct vm_config *vm,
			 struct compat_vm_ext *ext, struct err *e);
int compat__load_vm(const char *path, struct vm_config *vm, struct compat_vm_ext *ext,
		    struct err *e);

/* ---- for the rule units (compat-matrix/compat-*.c) ---- */
struct compat_ctx {
	const struct vm_config *vm;
	const struct host_profile *src, *dst;
	const struct compat_opts *opts;
	const struct compat_vm_ext *ext;	/* never NULL */
	const struct release_matrix *matrix;
	const struct cpu_model_set *models;
	struct compat_report *out;
};

void compat__row(struct compat_ctx *c, const char *rule, enum compat_status st,
		 const char *fix, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

void compat_rule__cpu_vendor(struct compat_ctx *c);
void compat_rule__cpu_model(struct compat_ctx *c);
void compat_rule__nx(struct compat_ctx *c);
void compat_rule__disk_cache(struct compat_ctx *c);
void compat_rule__disk_reach(struct compat_ctx *c);
void compat_rule__host_devices(struct compat_ctx *c);
void compat_rule__memory_backing(struct compat_ctx *c);
void compat_rule__release(struct compat_ctx *c);
void compat_rule__stream_format(struct compat_ctx *c);
void compat_rule__limits(struct compat_ctx *c);
void compat_rule__guest_definition(struct compat_ctx *c);

#endif
