/* The state-section registry: a plain struct (no global state) holding, in
 * registration order, each section's description, instance and state. A
 * description is checked when it is registered, so a mistake in a field
 * list shows at start-up, not in the middle of a migration. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/section.h"
#include "vmhop/util.h"

void section__registry_init(struct section_registry *reg)
{
	memset(reg, 0, sizeof(*reg));
}

void section__registry_free(struct section_registry *reg)
{
	free(reg->v);
	memset(reg, 0, sizeof(*reg));
}

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > SECTION_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("_.:/-", c)))
			return false;
	}
	return true;
}

static size_t width(enum section_type t)
{
	switch (t) {
	case SECTION_T_U8: case SECTION_T_BOOL: return 1;
	case SECTION_T_U16: return 2;
	case SECTION_T_U32: return 4;
	case SECTION_T_U64: case SECTION_T_I64: return 8;
	default: return 0;
	}
}

/* Checks a field list; *wire gets its encoded size at the newest version. */
static int check_fields(const char *sec, const struct section_field *f,
			uint32_t version, size_t limit, int depth, uint64_t *wire,
			struct err *e)
{
	*wire = 0;
	if (!f)
		return 0;
	if (depth > 4)
		return err__set(e, EINVAL, "section '%s': structs nested too deep", sec);
	for (; f->type != SECTION_T_END; f++) {
		const char *fn = f->name ? f->name : "?";
		if (!f->name)
			return err__set(e, EINVAL, "section '%s': a field has no name", sec);
		if (f->since < 1 || f->since > version)
			return err__set(e, EINVAL, "section '%s' field '%s': since %u outside 1..%u",
					sec, fn, f->since, version);
		if (f->count < 1)
			return err__set(e, EINVAL, "section '%s' field '%s': count is 0", sec, fn);
		if (f->offset > limit || f->msize > limit - f->offset)
			return err__set(e, EINVAL, "section '%s' field '%s': outside its struct", sec, fn);
		uint64_t w = 0;
		switch (f->type) {
		case SECTION_T_U8: case SECTION_T_U16: case SECTION_T_U32:
		case SECTION_T_U64: case SECTION_T_I64: case SECTION_T_BOOL:
			if (f->size != width(f->type) || f->msize != f->size * f->count)
				return err__set(e, EINVAL,
						"section '%s' field '%s': member is %zu bytes, type needs %zu x %zu",
						sec, fn, f->msize, width(f->type), f->count);
			w = f->size * f->count;
			break;
		case SECTION_T_BYTES:
			if (!f->size || f->count != 1 || f->msize != f->size)
				return err__set(e, EINVAL, "section '%s' field '%s': bad byte array", sec, fn);
			w = f->size;
			break;
		case SECTION_T_STRUCT: {
			if (!f->elem || !f->size || f->msize != f->size * f->count)
				return err__set(e, EINVAL, "section '%s' field '%s': bad struct array", sec, fn);
			uint64_t ew;
			int rc = check_fields(sec, f->elem, version, f->size, depth + 1, &ew, e);
			if (rc)
				return rc;
			w = ew * f->count;
			break;
		}
		default:
			return err__set(e, EINVAL, "section '%s' field '%s': unknown type %d",
					sec, fn, (int)f->type);
		}
		*wire += w;
		if (*wire > STREAM_SECTION_MAX)
			return err__set(e, EMSGSIZE, "section '%s': fields exceed %u bytes", sec,
					STREAM_SECTION_MAX);
	}
	return 0;
}

static int check_desc(const struct section_desc *d, bool is_sub, struct err *e)
{
	if (!d || !name_ok(d->name))
		return err__set(e, EINVAL, "section name '%s' is not 1..%d of [A-Za-z0-9_.:/-]",
				d && d->name ? d->name : "(null)", SECTION_NAME_MAX);
	if (d->version < 1 || d->min_version < 1 || d->min_version > d->version)
		return err__set(e, EINVAL, "section '%s': version window %u..%u is invalid",
				d->name, d->min_version, d->version);
	if (!d->save != !d->load)
		return err__set(e, EINVAL, "section '%s': save and load come together", d->name);
	uint64_t wire;
	int rc = check_fields(d->name, d->fields, d->version, SIZE_MAX, 0, &wire, e);
	if (rc)
		return rc;
	if (!d->subs)
		return 0;
	if (is_sub)
		return err__set(e, EINVAL, "section '%s': subsections cannot have subsections", d->name);
	size_t n = 0;
	for (const struct section_sub *s = d->subs; s->desc; s++, n++) {
		if (n >= SECTION_MAX_SUBS)
			return err__set(e, EINVAL, "section '%s': more than %d subsections",
					d->name, SECTION_MAX_SUBS);
		if ((rc = check_desc(s->desc, true, e)))
			return rc;
		for (const struct section_sub *t = d->subs; t < s; t++)
			if (!strcmp(t->desc->name, s->desc->name))
				return err__set(e, EINVAL, "section '%s': subsection '%s' twice",
						d->name, s->desc->name);
	}
	return 0;
}

static struct section_entry *add(struct section_registry *reg, const char *name,
				 uint32_t instance, struct err *e)
{
	if (section__find(reg, name, instance)) {
		err__set(e, EEXIST, "section '%s' instance %u is already registered", name, instance);
		return NULL;
	}
	if (reg->n == reg->cap) {
		size_t cap = reg->cap ? reg->cap * 2 : 16;
		void *p = realloc(reg->v, cap * sizeof(*reg->v));
		if (!p) {
			err__set(e, ENOMEM, "growing the section registry");
			return NULL;
		}
		reg->v = p;
		reg->cap = cap;
	}
	struct section_entry *s = &reg->v[reg->n++];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->instance = instance;
	return s;
}

int section__register(struct section_registry *reg,
		      const struct section_desc *desc, uint32_t instance,
		      void *opaque, struct err *e)
{
	int rc = check_desc(desc, false, e);
	if (rc)
		return rc;
	struct section_entry *s = add(reg, desc->name, instance, e);
	if (!s)
		return -e->code;
	s->desc = desc;
	s->opaque = opaque;
	return 0;
}

int section__register_unmigratable(struct section_registry *reg,
				   const char *name, uint32_t instance,
				   const char *reason, struct err *e)
{
	if (!name_ok(name))
		return err__set(e, EINVAL, "section name '%s' is not 1..%d of [A-Za-z0-9_.:/-]",
				name ? name : "(null)", SECTION_NAME_MAX);
	struct section_entry *s = add(reg, name, instance, e);
	if (!s)
		return -e->code;
	snprintf(s->reason, sizeof(s->reason), "%s", reason && *reason ? reason : "no state description");
	return 0;
}

int section__check_migratable(const struct section_registry *reg, struct err *e)
{
	char msg[sizeof(e->msg)] = "";
	size_t len = 0, bad = 0;
	for (size_t i = 0; i < reg->n; i++) {
		const struct section_entry *s = &reg->v[i];
		if (s->desc)
			continue;
		int n = snprintf(msg + len, sizeof(msg) - len, "%s'%s' instance %u (%s)",
				 bad ? ", " : "", s->name, s->instance, s->reason);
		if (n > 0)
			len = MIN(len + (size_t)n, sizeof(msg) - 1);
		bad++;
	}
	if (bad)
		return err__set(e, ENOTSUP, "the VM is not migratable: %s", msg);
	return 0;
}

struct section_entry *section__find(struct section_registry *reg,
				    const char *name, uint32_t instance)
{
	for (size_t i = 0; i < reg->n; i++)
		if (reg->v[i].instance == instance && !strcmp(reg->v[i].name, name))
			return &reg->v[i];
	return NULL;
}

int section__check_all_loaded(const struct section_registry *reg, struct err *e)
{
	for (size_t i = 0; i < reg->n; i++)
		if (!reg->v[i].loaded)
			return err__set(e, ENODATA, "the stream has no state for section '%s' instance %u",
					reg->v[i].name, reg->v[i].instance);
	return 0;
}
