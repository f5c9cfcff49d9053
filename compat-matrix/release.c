/* Release levels: parsing and checking the level data, choosing the level
 * acting here, and the incoming-stream rule (same or newer level only, in a
 * format this level reads). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/release.h"
#include "vmhop/util.h"

extern const unsigned char vmhop_release_data[];
extern const size_t vmhop_release_data_len;

const char *release__builtin_text(size_t *len)
{
	if (len)
		*len = vmhop_release_data_len;
	return (const char *)vmhop_release_data;
}

#define MAX_TOK 40

struct line {
	char *tok[MAX_TOK];
	int n;
	unsigned no;
};

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= RELEASE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr("._-", s[i])))
			return false;
	return true;
}

static int num(const char *s, unsigned max, unsigned *out)
{
	uint64_t v;
	if (util__parse_uint(s, 1, max, &v))
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int parse_level(struct release_matrix *m, struct line *l, struct err *e)
{
	unsigned ord, wr, lo, hi;
	char *dots;
	if (l->n != 7 || strcmp(l->tok[3], "writes") || strcmp(l->tok[5], "reads"))
		return err__set(e, EINVAL, "release levels line %u: expected 'level NAME ORDINAL writes N reads A..B'", l->no);
	if (!name_ok(l->tok[1]))
		return err__set(e, EINVAL, "release levels line %u: bad level name '%s'", l->no, l->tok[1]);
	if (release__find(m, l->tok[1]))
		return err__set(e, EINVAL, "release levels line %u: level %s defined twice", l->no, l->tok[1]);
	if (m->n == RELEASE_MAX_LEVELS)
		return err__set(e, E2BIG, "release levels line %u: more than %d levels", l->no, RELEASE_MAX_LEVELS);
	dots = strstr(l->tok[6], "..");
	if (!dots)
		return err__set(e, EINVAL, "release levels line %u: reads wants MIN..MAX", l->no);
	*dots = '\0';
	if (num(l->tok[2], 65535, &ord) || num(l->tok[4], 65535, &wr) ||
	    num(l->tok[6], 65535, &lo) || num(dots + 2, 65535, &hi) || lo > hi)
		return err__set(e, EINVAL, "release levels line %u: bad number", l->no);
	if (m->n && ord <= m->levels[m->n - 1].ordinal)
		return err__set(e, EINVAL, "release levels line %u: ordinals must increase", l->no);
	if (wr < lo || wr > hi)
		return err__set(e, EINVAL, "release levels line %u: %s does not read the format it writes",
				l->no, l->tok[1]);
	struct release_level *v = &m->levels[m->n++];
	snprintf(v->name, sizeof(v->name), "%s", l->tok[1]);
	v->ordinal = (uint16_t)ord;
	v->write_format = (uint16_t)wr;
	v->read_min = (uint16_t)lo;
	v->read_max = (uint16_t)hi;
	return 0;
}

static int parse_allow(struct release_matrix *m, struct line *l, struct err *e)
{
	if (l->n < 4 || strcmp(l->tok[2], "->"))
		return err__set(e, EINVAL, "release levels line %u: expected 'allow SRC -> DST...'", l->no);
	const struct release_level *src = release__find(m, l->tok[1]);
	if (!src)
		return err__set(e, EINVAL, "release levels line %u: unknown level %s", l->no, l->tok[1]);
	for (int i = 3; i < l->n; i++) {
		const struct release_level *dst = release__find(m, l->tok[i]);
		if (!dst)
			return err__set(e, EINVAL, "release levels line %u: unknown level %s", l->no, l->tok[i]);
		if (dst->ordinal < src->ordinal)
			return err__set(e, EINVAL,
					"release levels line %u: %s -> %s moves to an older level (moves go to the same or a newer level only)",
					l->no, src->name, dst->name);
		if (src->write_format < dst->read_min || src->write_format > dst->read_max)
			return err__set(e, EINVAL,
					"release levels line %u: %s -> %s but %s does not read format %u",
					l->no, src->name, dst->name, dst->name, src->write_format);
		m->allow[release__index(m, dst)] |= 1u << release__index(m, src);
	}
	return 0;
}

static int parse_line(struct release_matrix *m, struct line *l, bool *have_build,
		      struct err *e)
{
	if (!strcmp(l->tok[0], "level"))
		return parse_level(m, l, e);
	if (!strcmp(l->tok[0], "allow"))
		return parse_allow(m, l, e);
	if (!strcmp(l->tok[0], "build")) {
		const struct release_level *b = l->n == 2 ? release__find(m, l->tok[1]) : NULL;
		if (!b || *have_build)
			return err__set(e, EINVAL, "release levels line %u: expected one 'build LEVEL' naming a level", l->no);
		m->build = release__index(m, b);
		*have_build = true;
		return 0;
	}
	return err__set(e, EINVAL, "release levels line %u: unknown keyword '%s'", l->no, l->tok[0]);
}

int release__parse(struct release_matrix *m, const char *text, size_t len,
		   struct err *e)
{
	memset(m, 0, sizeof(*m));
	char *copy = malloc(len + 1);
	if (!copy)
		return err__set(e, ENOMEM, "parsing release levels");
	memcpy(copy, text, len);
	copy[len] = '\0';
	int rc = 0;
	bool have_build = false;
	unsigned no = 0;
	for (char *save = NULL, *s = copy, *nl; s && !rc; s = nl) {
		nl = strchr(s, '\n');
		if (nl)
			*nl++ = '\0';
		no++;
		char *hash = strchr(s, '#');
		if (hash)
			*hash = '\0';
		struct line l = { .no = no };
		for (char *t = strtok_r(s, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
			if (l.n == MAX_TOK) {
				rc = err__set(e, EINVAL, "release levels line %u: too long", no);
				break;
			}
			l.tok[l.n++] = t;
		}
		if (!rc && l.n)
			rc = parse_line(m, &l, &have_build, e);
	}
	free(copy);
	if (rc)
		return rc;
	if (!m->n || !have_build)
		return err__set(e, EINVAL, "release levels: no levels or no 'build' line");
	for (size_t i = 0; i < m->n; i++)
		if (!(m->allow[i] >> i & 1))
			return err__set(e, EINVAL, "release levels: %s may not move to itself",
					m->levels[i].name);
	return 0;
}

int release__builtin(struct release_matrix *m, struct err *e)
{
	size_t len;
	const char *t = release__builtin_text(&len);
	return release__parse(m, t, len, e);
}

const struct release_level *release__find(const struct release_matrix *m,
					  const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->levels[i].name, name))
			return &m->levels[i];
	return NULL;
}

size_t release__index(const struct release_matrix *m,
		      const struct release_level *l)
{
	return (size_t)(l - m->levels);
}

bool release__allowed(const struct release_matrix *m,
		      const struct release_level *src,
		      const struct release_level *dst)
{
	return m->allow[release__index(m, dst)] >> release__index(m, src) & 1;
}

int release__self(const struct release_matrix *m,
		  const struct release_level **out, struct err *e)
{
	const char *env = getenv(RELEASE_ENV);
	if (env && *env) {
		const struct release_level *l = release__find(m, env);
		if (!l)
			return err__set(e, EINVAL, "%s=%s names no release level of this build",
					RELEASE_ENV, env);
		*out = l;
		return 0;
	}
	*out = &m->levels[m->build];
	return 0;
}

int release__policy(struct release_matrix *m, struct release_policy *pol,
		    struct err *e)
{
	int rc = release__builtin(m, e);
	if (rc)
		return rc;
	pol->matrix = m;
	return release__self(m, &pol->self, e);
}

void release__accepts(const struct release_matrix *m,
		      const struct release_level *dst, char *buf, size_t size)
{
	uint32_t mask = m->allow[release__index(m, dst)];
	size_t first = m->n, last = 0, count = 0;
	for (size_t i = 0; i < m->n; i++)
		if (mask >> i & 1) {
			first = MIN(first, i);
			last = i;
			count++;
		}
	if (!count) {
		snprintf(buf, size, "nothing");
		return;
	}
	if (count == last - first + 1) {
		if (first == last)
			snprintf(buf, size, "%s", m->levels[first].name);
		else
			snprintf(buf, size, "%s..%s", m->levels[first].name, m->levels[last].name);
		return;
	}
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < m->n && len < size; i++)
		if (mask >> i & 1) {
			int n = snprintf(buf + len, size - len, "%s%s", len ? ", " : "", m->levels[i].name);
			if (n < 0)
				break;
			len += (size_t)n;
		}
}

int release__check_incoming(const struct release_policy *pol,
			    const char *src_name, unsigned src_ordinal,
			    unsigned format, struct err *e)
{
	const struct release_matrix *m = pol->matrix;
	const struct release_level *self = pol->self;
	const struct release_level *src = release__find(m, src_name);
	char acc[128];
	release__accepts(m, self, acc, sizeof(acc));
	if (!src || src->ordinal != src_ordinal || !release__allowed(m, src, self)) {
		const char *why = "";
		if (!src && src_ordinal > self->ordinal)
			why = " (a newer release)";
		else if (!src)
			why = " (unknown to this host)";
		else if (src->ordinal != src_ordinal)
			why = " (its level number does not match this host's data)";
		return err__set(e, EPROTO, "refusing stream from release %s%s: this host runs %s and accepts %s",
				src_name, why, self->name, acc);
	}
	if (format < self->read_min || format > self->read_max)
		return err__set(e, EPROTO,
				"refusing stream format version %u from release %s: this host runs %s and reads format versions %u..%u",
				format, src_name, self->name, self->read_min, self->read_max);
	return 0;
}
