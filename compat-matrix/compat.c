/* The rule runner and the report: rows, verdict, exit code, table, JSON.
 * The rules live in compat-*.c, one small function each. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/compat.h"
#include "vmhop/util.h"

typedef void (*compat_rule_fn)(struct compat_ctx *c);

/* In the order an operator reads them: the CPU, the disks, what cannot
 * move, the releases, the destination's room, the guest definition. */
static const compat_rule_fn rules[] = {
	compat_rule__cpu_vendor, compat_rule__cpu_model, compat_rule__nx,
	compat_rule__disk_cache, compat_rule__disk_reach,
	compat_rule__host_devices, compat_rule__memory_backing,
	compat_rule__release, compat_rule__stream_format,
	compat_rule__limits, compat_rule__guest_definition,
};

const char *compat__status_name(enum compat_status s)
{
	return s == COMPAT_PASS ? "PASS" : s == COMPAT_WARN ? "WARN" : "FAIL";
}

static void count(struct compat_report *r, enum compat_status st)
{
	if (st == COMPAT_PASS)
		r->pass++;
	else if (st == COMPAT_WARN)
		r->warn++;
	else
		r->fail++;
}

void compat__row(struct compat_ctx *c, const char *rule, enum compat_status st,
		 const char *fix, const char *fmt, ...)
{
	struct compat_report *r = c->out;
	count(r, st);
	struct compat_row *row = NULL;
	if (r->n < COMPAT_MAX_ROWS) {
		row = &r->rows[r->n++];
	} else {
		r->dropped++;
		/* Full: a FAIL replaces the last non-FAIL row so none is lost. */
		if (st != COMPAT_FAIL)
			return;
		for (size_t i = r->n; i-- > 0 && !row;)
			if (r->rows[i].status != COMPAT_FAIL)
				row = &r->rows[i];
		if (!row)
			return;
	}
	snprintf(row->rule, sizeof(row->rule), "%s", rule);
	row->status = st;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(row->reason, sizeof(row->reason), fmt, ap);
	va_end(ap);
	snprintf(row->fix, sizeof(row->fix), "%s", st == COMPAT_PASS || !fix ? "" : fix);
}

int compat__check(const struct vm_config *vm, const struct host_profile *src,
		  const struct host_profile *dst, const struct compat_opts *opts,
		  struct compat_report *out)
{
	static const struct compat_opts no_opts;
	static const struct compat_vm_ext no_ext;
	memset(out, 0, sizeof(*out));
	if (!opts)
		opts = &no_opts;
	struct compat_ctx c = {
		.vm = vm, .src = src, .dst = dst, .opts = opts, .out = out,
		.ext = opts->ext ? opts->ext : &no_ext,
		.matrix = opts->matrix, .models = opts->models,
	};
	struct release_matrix *m = NULL;
	struct cpu_model_set *s = NULL;
	struct err e = { 0 };
	int r = 0;
	if (!c.matrix) {
		if (!(m = malloc(sizeof(*m))))
			r = err__set(&e, ENOMEM, "out of memory");
		else if (!(r = release__builtin(m, &e)))
			c.matrix = m;
	}
	if (!r && !c.models) {
		if (!(s = malloc(sizeof(*s))))
			r = err__set(&e, ENOMEM, "out of memory");
		else if (!(r = cpu_models__builtin(s, &e)))
			c.models = s;
	}
	if (r)
		compat__row(&c, "compat-data", COMPAT_FAIL, "report a bug: this build's data is broken",
			    "the checks could not run: %s", e.msg);
	else
		for (size_t i = 0; i < ARRAY_SIZE(rules); i++)
			rules[i](&c);
	free(m);
	free(s);
	return r;
}

int compat__exit_code(const struct compat_report *r)
{
	return r->fail ? 2 : r->warn ? 1 : 0;
}

const struct compat_row *compat__first_failure(const struct compat_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->rows[i].status == COMPAT_FAIL)
			return &r->rows[i];
	return NULL;
}

static const char *verdict(const struct compat_report *r)
{
	return r->fail ? "fail" : r->warn ? "warn" : "pass";
}

void compat__print(FILE *f, const struct compat_report *r)
{
	int w = 4;
	for (size_t i = 0; i < r->n; i++)
		w = MAX(w, (int)strlen(r->rows[i].rule));
	fprintf(f, "%-*s  %-6s %s\n", w, "RULE", "STATUS", "REASON");
	for (size_t i = 0; i < r->n; i++) {
		const struct compat_row *row = &r->rows[i];
		fprintf(f, "%-*s  %-6s %s\n", w, row->rule, compat__status_name(row->status), row->reason);
		if (row->fix[0])
			fprintf(f, "%-*s  %-6s fix: %s\n", w, "", "", row->fix);
	}
	if (r->dropped)
		fprintf(f, "(%zu more rows not shown)\n", r->dropped);
	fprintf(f, "verdict: %s (%u pass, %u warn, %u fail)\n",
		r->fail ? "FAIL: the move would be refused" :
		r->warn ? "WARN: the move can proceed, see the warnings" : "PASS: the move can proceed",
		r->pass, r->warn, r->fail);
}

int compat__report_to_json(const struct compat_report *r, struct json_object **out)
{
	struct json_object *o = json_object_new_object();
	struct json_object *rows = json_object_new_array();
	int bad = !o || !rows;
	for (size_t i = 0; !bad && i < r->n; i++) {
		const struct compat_row *row = &r->rows[i];
		struct json_object *x = json_object_new_object();
		bad = !x || json_object_array_add(rows, x);
		if (bad) {
			json_object_put(x);
			break;
		}
		bad |= json_object_object_add(x, "rule", json_object_new_string(row->rule)) ||
		       json_object_object_add(x, "status", json_object_new_string(compat__status_name(row->status))) ||
		       json_object_object_add(x, "reason", json_object_new_string(row->reason)) ||
		       json_object_object_add(x, "fix", json_object_new_string(row->fix));
	}
	if (!bad)
		bad = json_object_object_add(o, "verdict", json_object_new_string(verdict(r))) ||
		      json_object_object_add(o, "exit_code", json_object_new_int(compat__exit_code(r))) ||
		      json_object_object_add(o, "pass", json_object_new_int((int)r->pass)) ||
		      json_object_object_add(o, "warn", json_object_new_int((int)r->warn)) ||
		      json_object_object_add(o, "fail", json_object_new_int((int)r->fail)) ||
		      json_object_object_add(o, "dropped_rows", json_object_new_int64((int64_t)r->dropped));
	if (!bad) {
		bad = json_object_object_add(o, "rows", rows) != 0;
		rows = NULL;
	}
	json_object_put(rows);
	if (bad) {
		json_object_put(o);
		return -ENOMEM;
	}
	*out = o;
	return 0;
}

static enum compat_status status_of(const char *s)
{
	return !strcmp(s, "PASS") ? COMPAT_PASS : !strcmp(s, "WARN") ? COMPAT_WARN : COMPAT_FAIL;
}

int compat__report_from_json(struct json_object *j, struct compat_report *r, struct err *e)
{
	memset(r, 0, sizeof(*r));
	struct json_object *rows;
	if (!json_object_is_type(j, json_type_object) || !json_object_object_get_ex(j, "rows", &rows) ||
	    !json_object_is_type(rows, json_type_array))
		return err__set(e, EINVAL, "a pre-flight report needs a \"rows\" array");
	size_t n = json_object_array_length(rows);
	for (size_t i = 0; i < n; i++) {
		struct json_object *x = json_object_array_get_idx(rows, i), *f[4];
		static const char *const names[] = { "rule", "status", "reason", "fix" };
		for (size_t k = 0; k < 4; k++)
			if (!json_object_object_get_ex(x, names[k], &f[k]) ||
			    !json_object_is_type(f[k], json_type_string))
				return err__set(e, EINVAL, "pre-flight report row %zu: '%s' is missing", i,
						names[k]);
		enum compat_status st = status_of(json_object_get_string(f[1]));
		st == COMPAT_PASS ? r->pass++ : st == COMPAT_WARN ? r->warn++ : r->fail++;
		if (r->n == COMPAT_MAX_ROWS) {
			r->dropped++;
			continue;
		}
		struct compat_row *row = &r->rows[r->n++];
		row->status = st;
		snprintf(row->rule, sizeof(row->rule), "%s", json_object_get_string(f[0]));
		snprintf(row->reason, sizeof(row->reason), "%s", json_object_get_string(f[2]));
		snprintf(row->fix, sizeof(row->fix), "%s", json_object_get_string(f[3]));
	}
	return 0;
}
