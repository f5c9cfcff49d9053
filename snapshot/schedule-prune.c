/* Naming and pruning decisions of the checkpoint scheduler (see
 * include/vmhop/schedule.h); no I/O here. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmhop/schedule.h"

static const char *const kind_suffix[] = { [SCHEDULE_FULL] = "-full.vmhop",
					   [SCHEDULE_INCR] = "-incr.vmhop" };
#define KIND_SUFFIX_LEN 11

/* 9999-12-31T23:59:59.999Z */
#define MAX_MS 253402300799999LL

void schedule__vm_name(const char *name, char out[SCHEDULE_NAME_MAX])
{
	size_t n = 0;
	for (const char *p = name ? name : ""; *p && n < SCHEDULE_NAME_MAX - 1; p++) {
		unsigned char c = (unsigned char)*p;
		out[n++] = (isascii(c) && isalnum(c)) || c == '.' || c == '_' || c == '+' ||
			   c == '-' ? (char)c : '_';
	}
	out[n] = '\0';
	if (!n || !strcmp(out, ".") || !strcmp(out, ".."))
		snprintf(out, SCHEDULE_NAME_MAX, "vm");
}

static int format_ts(int64_t ms, char out[SCHEDULE_TS_LEN + 1])
{
	if (ms < 0 || ms > MAX_MS)
		return -EINVAL;
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		return -EINVAL;
	int n = snprintf(out, SCHEDULE_TS_LEN + 1, "%04d%02d%02dT%02d%02d%02d.%03dZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (int)(ms % 1000));
	return n == SCHEDULE_TS_LEN ? 0 : -EINVAL;
}

int schedule__format_name(const char *vm_name, int64_t ms, enum schedule_kind kind,
			  char *buf, size_t len)
{
	char ts[SCHEDULE_TS_LEN + 1];
	if ((kind != SCHEDULE_FULL && kind != SCHEDULE_INCR) || format_ts(ms, ts))
		return -EINVAL;
	int n = snprintf(buf, len, "%s-%s%s", vm_name, ts, kind_suffix[kind]);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Only the canonical spelling counts: a timestamp that formats back to
 * itself (no month 13, no second 60). */
static int parse_ts(const char *s, int64_t *ms)
{
	struct tm tm = { 0 };
	int y = digits(s, 4), mo = digits(s + 4, 2), d = digits(s + 6, 2);
	int h = digits(s + 9, 2), mi = digits(s + 11, 2), se = digits(s + 13, 2);
	int frac = digits(s + 16, 3);
	if (y < 1970 || mo < 1 || d < 1 || h < 0 || mi < 0 || se < 0 || frac < 0 ||
	    s[8] != 'T' || s[15] != '.' || s[19] != 'Z')
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	int64_t v = (int64_t)t * 1000 + frac;
	char back[SCHEDULE_TS_LEN + 1];
	if (format_ts(v, back) || memcmp(back, s, SCHEDULE_TS_LEN))
		return -EINVAL;
	*ms = v;
	return 0;
}

int schedule__parse_name(const char *vm_name, const char *file, int64_t *ms,
			 enum schedule_kind *kind)
{
	size_t nl = strlen(vm_name), fl = strlen(file);
	if (!nl || fl != nl + SCHEDULE_SUFFIX_LEN || memcmp(file, vm_name, nl) || file[nl] != '-')
		return -EINVAL;
	const char *ks = file + fl - KIND_SUFFIX_LEN;
	enum schedule_kind k;
	if (!strcmp(ks, kind_suffix[SCHEDULE_FULL]))
		k = SCHEDULE_FULL;
	else if (!strcmp(ks, kind_suffix[SCHEDULE_INCR]))
		k = SCHEDULE_INCR;
	else
		return -EINVAL;
	int64_t v;
	if (parse_ts(file + nl + 1, &v))
		return -EINVAL;
	*ms = v;
	*kind = k;
	return 0;
}

int schedule__parse_duration(const char *s, uint64_t *ms)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		{ "d", 86400000 },
	};
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || v > 366ULL * 86400000)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit))
			continue;
		uint64_t r = v * units[i].ms;
		if (r < 100 || r > 366ULL * 86400000)
			return -EINVAL;
		*ms = r;
		return 0;
	}
	return -EINVAL;
}

int schedule__set_add(struct schedule_set *s, const char *vm_name, const char *file)
{
	int64_t ms;
	enum schedule_kind kind;
	if (schedule__parse_name(vm_name, file, &ms, &kind))
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct schedule_file *f = realloc(s->files, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		s->files = f;
		s->cap = cap;
	}
	char *name = strdup(file);
	if (!name)
		return -ENOMEM;
	s->files[s->n++] = (struct schedule_file){ .name = name, .ms = ms, .kind = kind };
	return 1;
}

static int cmp_file(const void *a, const void *b)
{
	const struct schedule_file *x = a, *y = b;
	if (x->ms != y->ms)
		return x->ms < y->ms ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind == SCHEDULE_FULL ? -1 : 1;
	return strcmp(x->name, y->name);
}

void schedule__set_sort(struct schedule_set *s)
{
	if (s->n)
		qsort(s->files, s->n, sizeof(s->files[0]), cmp_file);
}

void schedule__set_free(struct schedule_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->files[i].name);
	free(s->files);
	*s = (struct schedule_set){ 0 };
}

size_t schedule__chains(const struct schedule_set *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += s->files[i].kind == SCHEDULE_FULL;
	return n;
}

enum schedule_kind schedule__next(const struct schedule_set *s, unsigned full_every,
				  bool force_full, const struct schedule_file **base)
{
	*base = NULL;
	/* The newest chain: from the last full checkpoint to the end. */
	size_t i = s->n;
	while (i > 0 && s->files[i - 1].kind != SCHEDULE_FULL)
		i--;
	if (force_full || i == 0)
		return SCHEDULE_FULL;
	size_t len = s->n - (i - 1);
	if (len >= full_every)
		return SCHEDULE_FULL;
	*base = &s->files[s->n - 1];
	return SCHEDULE_INCR;
}

size_t schedule__prune(const struct schedule_set *s, unsigned keep, bool *del, size_t *kept)
{
	size_t chains = schedule__chains(s);
	for (size_t i = 0; i < s->n; i++)
		del[i] = false;
	if (!keep) {
		*kept = chains;
		return 0;
	}
	/* Walk back to the keep-th newest full checkpoint; everything before
	 * it belongs to no kept chain. With fewer chains than keep, only the
	 * incrementals before the first full one (no chain restores them). */
	size_t first = 0, seen = 0;
	for (size_t i = s->n; i > 0; i--) {
		if (s->files[i - 1].kind == SCHEDULE_FULL && ++seen == keep) {
			first = i - 1;
			break;
		}
	}
	if (seen < keep) {
		first = 0;
		while (first < s->n && s->files[first].kind != SCHEDULE_FULL)
			first++;
		if (first == s->n)	/* no full at all: nothing is ours to judge */
			first = 0;
	}
	for (size_t i = 0; i < first; i++)
		del[i] = true;
	*kept = seen;
	return first;
}
