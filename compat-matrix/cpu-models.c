/* CPU models as data: the parser of cpu-models.conf and the queries the
 * compat rules (and the VMM's CPUID builder) need. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/cpu-models.h"
#include "vmhop/util.h"

extern const unsigned char vmhop_cpu_models_data[];
extern const size_t vmhop_cpu_models_data_len;

#define PFX "CPU models line %u: "
#define MAX_TOK 48

const char *cpu_models__builtin_text(size_t *len)
{
	if (len)
		*len = vmhop_cpu_models_data_len;
	return (const char *)vmhop_cpu_models_data;
}

struct line {
	char *tok[MAX_TOK];
	int n;
	unsigned no;
};

static bool name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (!n || n >= max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("-_.+", *s)))
			return false;
	return true;
}

static int num(const char *s, uint64_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-' || *s == '+')
		return -1;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static struct cpu_model *find_mut(struct cpu_model_set *s, const char *name)
{
	return (struct cpu_model *)cpu_models__find(s, name);
}

static int parse_feature(struct cpu_model_set *s, struct line *l, struct err *e)
{
	static const char *const regs[] = { "eax", "ebx", "ecx", "edx" };
	uint32_t leaf, sub, bit;
	if (l->n != 6)
		return err__set(e, EINVAL, PFX "expected 'feature NAME LEAF SUBLEAF REG BIT'", l->no);
	if (!name_ok(l->tok[1], CPU_FEATURE_NAME_MAX))
		return err__set(e, EINVAL, PFX "bad feature name '%s'", l->no, l->tok[1]);
	if (cpu_models__feature(s, l->tok[1]))
		return err__set(e, EINVAL, PFX "feature %s defined twice", l->no, l->tok[1]);
	if (s->nfeatures == CPU_FEATURES_MAX)
		return err__set(e, E2BIG, PFX "more than %d features", l->no, CPU_FEATURES_MAX);
	if (num(l->tok[2], UINT32_MAX, &leaf) || num(l->tok[3], UINT32_MAX, &sub) ||
	    num(l->tok[5], 31, &bit))
		return err__set(e, EINVAL, PFX "bad number", l->no);
	int reg = -1;
	for (int i = 0; i < 4; i++)
		if (!strcmp(l->tok[4], regs[i]))
			reg = i;
	if (reg < 0)
		return err__set(e, EINVAL, PFX "register must be eax, ebx, ecx or edx", l->no);
	for (size_t i = 0; i < s->nfeatures; i++) {
		const struct cpu_feature *o = &s->features[i];
		if (o->leaf == leaf && o->subleaf == sub && o->reg == (enum cpu_reg)reg && o->bit == bit)
			return err__set(e, EINVAL, PFX "%s names the same bit as %s", l->no,
					l->tok[1], o->name);
	}
	struct cpu_feature *f = &s->features[s->nfeatures++];
	snprintf(f->name, sizeof(f->name), "%s", l->tok[1]);
	f->leaf = leaf;
	f->subleaf = sub;
	f->reg = (enum cpu_reg)reg;
	f->bit = bit;
	return 0;
}

static int parse_model(struct cpu_model_set *s, struct line *l, struct err *e)
{
	if (l->n < 2 || !name_ok(l->tok[1], CPU_MODEL_NAME_MAX))
		return err__set(e, EINVAL, PFX "expected 'model NAME ...' with a valid name", l->no);
	if (cpu_models__find(s, l->tok[1]))
		return err__set(e, EINVAL, PFX "model %s defined twice", l->no, l->tok[1]);
	if (s->nmodels == CPU_MODELS_MAX)
		return err__set(e, E2BIG, PFX "more than %d models", l->no, CPU_MODELS_MAX);
	struct cpu_model m = { 0 };
	snprintf(m.name, sizeof(m.name), "%s", l->tok[1]);
	bool have_id = false;
	for (int i = 2; i < l->n; i++) {
		const char *k = l->tok[i];
		uint32_t *dst = !strcmp(k, "family") ? &m.family : !strcmp(k, "model") ? &m.model :
			!strcmp(k, "stepping") ? &m.stepping : !strcmp(k, "max-basic") ? &m.max_basic : NULL;
		if (dst) {
			if (i + 1 >= l->n || num(l->tok[i + 1], 0xffff, dst))
				return err__set(e, EINVAL, PFX "%s needs a number", l->no, k);
			i++;
			have_id = true;
		} else if (!strcmp(k, "host")) {
			m.host = true;
		} else if (!strcmp(k, "no-xsave")) {
			m.no_xsave = true;
		} else {
			return err__set(e, EINVAL, PFX "unknown model attribute '%s'", l->no, k);
		}
	}
	if (m.host == have_id)
		return err__set(e, EINVAL, PFX "a model is either 'host' or has family/model/stepping",
				l->no);
	if (m.no_xsave && !m.host)
		return err__set(e, EINVAL, PFX "no-xsave applies to host models only", l->no);
	s->models[s->nmodels++] = m;
	return 0;
}

static int add_feat(struct cpu_model *m, size_t idx, unsigned no, struct err *e)
{
	for (size_t i = 0; i < m->nfeat; i++)
		if (m->feat[i] == idx)
			return 0;
	if (m->nfeat == CPU_FEATURES_MAX)
		return err__set(e, E2BIG, PFX "model %s has too many features", no, m->name);
	m->feat[m->nfeat++] = (uint8_t)idx;
	return 0;
}

static int parse_features(struct cpu_model_set *s, struct line *l, struct err *e)
{
	struct cpu_model *m = l->n >= 2 ? find_mut(s, l->tok[1]) : NULL;
	if (!m || strcmp(m->name, l->tok[1]))
		return err__set(e, EINVAL, PFX "expected 'features MODEL NAME...' naming a model",
				l->no);
	if (m->host)
		return err__set(e, EINVAL, PFX "host model %s takes no feature list", l->no, m->name);
	for (int i = 2; i < l->n; i++) {
		int r = 0;
		if (l->tok[i][0] == '@') {
			const struct cpu_model *o = cpu_models__find(s, l->tok[i] + 1);
			if (!o || o == m)
				return err__set(e, EINVAL, PFX "unknown model %s", l->no, l->tok[i]);
			for (size_t j = 0; !r && j < o->nfeat; j++)
				r = add_feat(m, o->feat[j], l->no, e);
		} else {
			const struct cpu_feature *f = cpu_models__feature(s, l->tok[i]);
			if (!f)
				return err__set(e, EINVAL, PFX "unknown feature '%s'", l->no, l->tok[i]);
			r = add_feat(m, (size_t)(f - s->features), l->no, e);
		}
		if (r)
			return r;
	}
	return 0;
}

static int parse_line(struct cpu_model_set *s, struct line *l, bool *have_def, struct err *e)
{
	const char *k = l->tok[0];
	if (!strcmp(k, "feature"))
		return parse_feature(s, l, e);
	if (!strcmp(k, "model"))
		return parse_model(s, l, e);
	if (!strcmp(k, "features"))
		return parse_features(s, l, e);
	if (!strcmp(k, "brand")) {
		struct cpu_model *m = l->n >= 3 ? find_mut(s, l->tok[1]) : NULL;
		if (!m || m->host)
			return err__set(e, EINVAL, PFX "expected 'brand MODEL WORDS...' for a non-host model",
					l->no);
		size_t off = 0;
		m->brand[0] = '\0';
		for (int i = 2; i < l->n; i++) {
			int n = snprintf(m->brand + off, sizeof(m->brand) - off, "%s%s", i > 2 ? " " : "",
					 l->tok[i]);
			if (n < 0 || (size_t)n >= sizeof(m->brand) - off)
				return err__set(e, EINVAL, PFX "brand longer than %d characters", l->no,
						CPU_MODEL_BRAND_MAX - 1);
			off += (size_t)n;
		}
		return 0;
	}
	if (!strcmp(k, "alias")) {
		const struct cpu_model *m = l->n == 3 ? cpu_models__find(s, l->tok[2]) : NULL;
		if (!m || !name_ok(l->tok[1], CPU_MODEL_NAME_MAX) || cpu_models__find(s, l->tok[1]))
			return err__set(e, EINVAL, PFX "expected 'alias NEWNAME MODEL'", l->no);
		if (s->naliases == CPU_MODEL_ALIASES_MAX)
			return err__set(e, E2BIG, PFX "too many aliases", l->no);
		snprintf(s->aliases[s->naliases].name, CPU_MODEL_NAME_MAX, "%s", l->tok[1]);
		s->aliases[s->naliases++].model = (size_t)(m - s->models);
		return 0;
	}
	if (!strcmp(k, "default")) {
		const struct cpu_model *m = l->n == 2 ? cpu_models__find(s, l->tok[1]) : NULL;
		if (!m || *have_def)
			return err__set(e, EINVAL, PFX "expected one 'default MODEL' naming a model", l->no);
		s->def = (size_t)(m - s->models);
		*have_def = true;
		return 0;
	}
	return err__set(e, EINVAL, PFX "unknown keyword '%s'", l->no, k);
}

int cpu_models__parse(struct cpu_model_set *s, const char *text, size_t len,
		      struct err *e)
{
	memset(s, 0, sizeof(*s));
	char *copy = malloc(len + 1);
	if (!copy)
		return err__set(e, ENOMEM, "parsing CPU models: out of memory");
	memcpy(copy, text, len);
	copy[len] = '\0';
	int rc = 0;
	bool have_def = false;
	unsigned no = 0;
	for (char *save = NULL, *p = copy, *nl; p && !rc; p = nl) {
		nl = strchr(p, '\n');
		if (nl)
			*nl++ = '\0';
		no++;
		char *hash = strchr(p, '#');
		if (hash)
			*hash = '\0';
		struct line l = { .no = no };
		for (char *t = strtok_r(p, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
			if (l.n == MAX_TOK) {
				rc = err__set(e, EINVAL, PFX "too many words", no);
				break;
			}
			l.tok[l.n++] = t;
		}
		if (!rc && l.n)
			rc = parse_line(s, &l, &have_def, e);
	}
	free(copy);
	if (rc)
		return rc;
	if (!s->nmodels || !have_def)
		return err__set(e, EINVAL, "CPU models: no models or no 'default' line");
	for (size_t i = 0; i < s->nmodels; i++)
		if (!s->models[i].host && !s->models[i].nfeat)
			return err__set(e, EINVAL, "CPU models: model %s has no features",
					s->models[i].name);
	return 0;
}

int cpu_models__builtin(struct cpu_model_set *s, struct err *e)
{
	size_t len;
	const char *t = cpu_models__builtin_text(&len);
	return cpu_models__parse(s, t, len, e);
}

const struct cpu_model *cpu_models__find(const struct cpu_model_set *s, const char *name)
{
	if (!name)
		return s->nmodels ? &s->models[s->def] : NULL;
	for (size_t i = 0; i < s->nmodels; i++)
		if (!strcmp(s->models[i].name, name))
			return &s->models[i];
	for (size_t i = 0; i < s->naliases; i++)
		if (!strcmp(s->aliases[i].name, name))
			return &s->models[s->aliases[i].model];
	return NULL;
}

const struct cpu_feature *cpu_models__feature(const struct cpu_model_set *s, const char *name)
{
	for (size_t i = 0; i < s->nfeatures; i++)
		if (!strcmp(s->features[i].name, name))
			return &s->features[i];
	return NULL;
}

const struct cpu_feature *cpu_models__required(const struct cpu_model_set *s,
					       const struct cpu_model *m, size_t i)
{
	return i < m->nfeat ? &s->features[m->feat[i]] : NULL;
}

void cpu_models__names(const struct cpu_model_set *s, char *buf, size_t size)
{
	size_t off = 0;
	if (size)
		buf[0] = '\0';
	for (size_t i = 0; i < s->nmodels && off < size; i++) {
		int n = snprintf(buf + off, size - off, "%s%s", i ? ", " : "", s->models[i].name);
		if (n < 0)
			return;
		off += (size_t)n;
		for (size_t a = 0; a < s->naliases && off < size; a++)
			if (s->aliases[a].model == i) {
				n = snprintf(buf + off, size - off, " (alias %s)", s->aliases[a].name);
				if (n < 0)
					return;
				off += (size_t)n;
			}
	}
}

const struct cpuid_leaf *cpu_models__leaf(const struct cpuid_leaf *sup, size_t n,
					  uint32_t function, uint32_t index)
{
	for (size_t i = 0; i < n; i++) {
		if (sup[i].function != function)
			continue;
		if (!(sup[i].flags & CPUID_LEAF_SIGNIFICANT_INDEX) || sup[i].index == index)
			return &sup[i];
	}
	return NULL;
}

bool cpu_models__has(const struct cpuid_leaf *sup, size_t n, const struct cpu_feature *f)
{
	const struct cpuid_leaf *l = cpu_models__leaf(sup, n, f->leaf, f->subleaf);
	if (!l)
		return false;
	uint32_t v = f->reg == CPU_REG_EAX ? l->eax : f->reg == CPU_REG_EBX ? l->ebx :
		f->reg == CPU_REG_ECX ? l->ecx : l->edx;
	return v >> f->bit & 1;
}

size_t cpu_models__missing(const struct cpu_model_set *s, const struct cpu_model *m,
			   const struct cpuid_leaf *sup, size_t n, char *buf, size_t size)
{
	size_t count = 0, off = 0;
	if (size)
		buf[0] = '\0';
	for (size_t i = 0; i < m->nfeat; i++) {
		const struct cpu_feature *f = cpu_models__required(s, m, i);
		if (cpu_models__has(sup, n, f))
			continue;
		count++;
		if (!size || off >= size)
			continue;
		size_t need = strlen(f->name) + (off ? 1 : 0);
		if (off + need + 4 >= size) {
			snprintf(buf + off, size - off, "%s...", off ? " " : "");
			off = size;
			continue;
		}
		off += (size_t)snprintf(buf + off, size - off, "%s%s", off ? " " : "", f->name);
	}
	return count;
}

size_t cpu_models__from_kvm(const struct kvm_cpuid_entry2 *in, size_t n, struct cpuid_leaf *out,
			    size_t max)
{
	size_t k = MIN(n, max);
	for (size_t i = 0; i < k; i++)
		out[i] = (struct cpuid_leaf){ .function = in[i].function, .index = in[i].index,
					      .flags = in[i].flags, .eax = in[i].eax, .ebx = in[i].ebx,
					      .ecx = in[i].ecx, .edx = in[i].edx };
	return k;
}
