/* A SECTION record's payload:
 *   u8 name_len, name, u32 instance, u32 version,
 *   body: u32 fields_len, fields, u32 custom_len, custom,
 *   u8 nsubs, then per subsection: u8 name_len, name, u32 version,
 *   u8 flags (bit 0: skippable), body.
 * Fields are encoded in declaration order, only those whose `since` is at
 * most the version written, little-endian, without tags: the description is
 * the schema, fields_len lets a reader catch a mismatch at once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/section.h"
#include "vmhop/util.h"

#define SUB_F_SKIPPABLE 0x01

static uint64_t fields_size(const struct section_field *f, uint32_t version)
{
	uint64_t n = 0;
	for (; f && f->type != SECTION_T_END; f++) {
		if (f->since > version)
			continue;
		if (f->type == SECTION_T_STRUCT)
			n += fields_size(f->elem, version) * f->count;
		else
			n += (uint64_t)f->size * f->count;
	}
	return n;
}

static void put_fields(struct stream_buf *b, const struct section_field *f,
		       const uint8_t *base, uint32_t version)
{
	for (; f && f->type != SECTION_T_END; f++) {
		if (f->since > version)
			continue;
		const uint8_t *p = base + f->offset;
		for (size_t i = 0; i < f->count; i++) {
			switch (f->type) {
			case SECTION_T_U8:
				stream_buf__put_u8(b, p[i]);
				break;
			case SECTION_T_BOOL: {
				bool v;
				memcpy(&v, p + i, 1);
				stream_buf__put_u8(b, v ? 1 : 0);
				break;
			}
			case SECTION_T_U16: {
				uint16_t v;
				memcpy(&v, p + 2 * i, 2);
				stream_buf__put_u16(b, v);
				break;
			}
			case SECTION_T_U32: {
				uint32_t v;
				memcpy(&v, p + 4 * i, 4);
				stream_buf__put_u32(b, v);
				break;
			}
			case SECTION_T_U64:
			case SECTION_T_I64: {
				uint64_t v;
				memcpy(&v, p + 8 * i, 8);
				stream_buf__put_u64(b, v);
				break;
			}
			case SECTION_T_BYTES:
				stream_buf__put(b, p, f->size);
				break;
			case SECTION_T_STRUCT:
				put_fields(b, f->elem, p + i * f->size, version);
				break;
			case SECTION_T_END:
				break;
			}
		}
	}
}

static int encode_body(const struct section_desc *d, void *opaque,
		       struct stream_buf *b, struct err *e)
{
	size_t at = stream_buf__skip(b, 4);
	put_fields(b, d->fields, opaque, d->version);
	stream_buf__patch_u32(b, at, (uint32_t)(b->len - at - 4));
	at = stream_buf__skip(b, 4);
	if (d->save) {
		int rc = d->save(opaque, b, e);
		if (rc < 0)
			return e->code ? rc : err__set(e, -rc, "section '%s': save failed", d->name);
	}
	stream_buf__patch_u32(b, at, (uint32_t)(b->len - at - 4));
	return 0;
}

static void put_name(struct stream_buf *b, const char *name)
{
	size_t n = strlen(name);
	stream_buf__put_u8(b, (uint8_t)n);
	stream_buf__put(b, name, n);
}

int section__encode(const struct section_entry *s, struct stream_buf *b,
		    struct err *e)
{
	const struct section_desc *d = s->desc;
	if (!d)
		return err__set(e, ENOTSUP, "section '%s' instance %u is not migratable: %s",
				s->name, s->instance, s->reason);
	if (d->pre_save) {
		int rc = d->pre_save(s->opaque, e);
		if (rc < 0)
			return e->code ? rc : err__set(e, -rc, "section '%s': pre_save failed", d->name);
	}
	put_name(b, d->name);
	stream_buf__put_u32(b, s->instance);
	stream_buf__put_u32(b, d->version);
	int rc = encode_body(d, s->opaque, b, e);
	if (rc)
		return rc;
	size_t nat = stream_buf__skip(b, 1);
	uint8_t nsubs = 0;
	for (const struct section_sub *sub = d->subs; sub && sub->desc; sub++) {
		if (sub->needed && !sub->needed(s->opaque))
			continue;
		put_name(b, sub->desc->name);
		stream_buf__put_u32(b, sub->desc->version);
		stream_buf__put_u8(b, sub->skippable ? SUB_F_SKIPPABLE : 0);
		if ((rc = encode_body(sub->desc, s->opaque, b, e)))
			return rc;
		nsubs++;
	}
	if (!b->error)
		b->data[nat] = nsubs;
	if (b->error)
		return err__set(e, -b->error, "section '%s' instance %u: payload exceeds %u bytes",
				d->name, s->instance, STREAM_SECTION_MAX);
	return 0;
}

/* ---- decoding -------------------------------------------------------------- */

static int ended_early(struct stream_cur *c, const char *name, struct err *e)
{
	return err__set(e, EBADMSG, "offset %llu: section '%s': payload ends early",
			(unsigned long long)c->error_off, name);
}

static bool get_name(struct stream_cur *c, char out[SECTION_NAME_MAX + 1])
{
	uint8_t n = stream_cur__get_u8(c);
	const uint8_t *p = stream_cur__take(c, n);
	if (c->error || n == 0 || n > SECTION_NAME_MAX)
		return false;
	for (uint8_t i = 0; i < n; i++) {
		char ch = (char)p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || (ch && strchr("_.:/-", ch))))
			return false;
	}
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

static int get_fields(struct stream_cur *c, const struct section_field *f,
		      uint8_t *base, uint32_t version, const char *sec,
		      struct err *e)
{
	for (; f && f->type != SECTION_T_END; f++) {
		if (f->since > version)
			continue;	/* left as the caller initialised it */
		uint8_t *p = base + f->offset;
		for (size_t i = 0; i < f->count; i++) {
			uint64_t at = stream_cur__off(c);
			switch (f->type) {
			case SECTION_T_U8:
				p[i] = stream_cur__get_u8(c);
				break;
			case SECTION_T_BOOL: {
				uint8_t v = stream_cur__get_u8(c);
				if (v > 1)
					return err__set(e, EBADMSG,
							"offset %llu: section '%s' field '%s': boolean is %u",
							(unsigned long long)at, sec, f->name, v);
				bool b = v;
				memcpy(p + i, &b, 1);
				break;
			}
			case SECTION_T_U16: {
				uint16_t v = stream_cur__get_u16(c);
				memcpy(p + 2 * i, &v, 2);
				break;
			}
			case SECTION_T_U32: {
				uint32_t v = stream_cur__get_u32(c);
				memcpy(p + 4 * i, &v, 4);
				break;
			}
			case SECTION_T_U64:
			case SECTION_T_I64: {
				uint64_t v = stream_cur__get_u64(c);
				memcpy(p + 8 * i, &v, 8);
				break;
			}
			case SECTION_T_BYTES:
				stream_cur__get(c, p, f->size);
				break;
			case SECTION_T_STRUCT: {
				int rc = get_fields(c, f->elem, p + i * f->size, version, sec, e);
				if (rc)
					return rc;
				break;
			}
			case SECTION_T_END:
				break;
			}
			if (c->error)
				return ended_early(c, sec, e);
		}
	}
	return 0;
}

static int decode_body(struct stream_cur *c, const struct section_desc *d,
		       void *opaque, uint32_t version, struct err *e)
{
	uint64_t at = stream_cur__off(c);
	uint32_t flen = stream_cur__get_u32(c);
	if (c->error)
		return ended_early(c, d->name, e);
	uint64_t want = fields_size(d->fields, version);
	if (flen != want)
		return err__set(e, EBADMSG,
				"offset %llu: section '%s' version %u: field data is %u bytes, the description expects %llu",
				(unsigned long long)at, d->name, version, flen, (unsigned long long)want);
	if (flen > stream_cur__left(c))
		return err__set(e, EBADMSG, "offset %llu: section '%s': field data runs past the payload",
				(unsigned long long)at, d->name);
	int rc = get_fields(c, d->fields, opaque, version, d->name, e);
	if (rc)
		return rc;
	at = stream_cur__off(c);
	uint32_t clen = stream_cur__get_u32(c);
	const uint8_t *p = stream_cur__take(c, clen);
	if (c->error)
		return ended_early(c, d->name, e);
	if (!d->load) {
		if (clen)
			return err__set(e, EBADMSG, "offset %llu: section '%s' has %u bytes of custom data and no loader",
					(unsigned long long)at, d->name, clen);
		return 0;
	}
	struct stream_cur sc;
	stream_cur__init(&sc, p, clen, at + 4);
	rc = d->load(opaque, &sc, version, e);
	if (rc < 0)
		return e->code ? rc : err__set(e, -rc, "offset %llu: section '%s': load failed",
					       (unsigned long long)at, d->name);
	if (sc.error)
		return err__set(e, EBADMSG, "offset %llu: section '%s': custom data ends early",
				(unsigned long long)sc.error_off, d->name);
	if (stream_cur__left(&sc))
		return err__set(e, EBADMSG, "offset %llu: section '%s': %zu bytes of custom data left unread",
				(unsigned long long)stream_cur__off(&sc), d->name, stream_cur__left(&sc));
	return 0;
}

static int window(const struct section_desc *d, const char *what, uint32_t instance,
		  uint32_t version, uint64_t at, struct err *e)
{
	if (version >= d->min_version && version <= d->version)
		return 0;
	return err__set(e, EPROTO,
			"offset %llu: %s '%s' instance %u: the stream has version %u, this host loads versions %u..%u",
			(unsigned long long)at, what, d->name, instance, version,
			d->min_version, d->version);
}

static const struct section_sub *find_sub(const struct section_desc *d, const char *name)
{
	for (const struct section_sub *s = d->subs; s && s->desc; s++)
		if (!strcmp(s->desc->name, name))
			return s;
	return NULL;
}

static void skip_body(struct stream_cur *c)
{
	uint32_t n = stream_cur__get_u32(c);
	stream_cur__take(c, n);
	n = stream_cur__get_u32(c);
	stream_cur__take(c, n);
}

int section__decode(struct section_registry *reg, const uint8_t *payload,
		    size_t len, uint64_t base, struct err *e)
{
	struct stream_cur c;
	stream_cur__init(&c, payload, len, base);
	char name[SECTION_NAME_MAX + 1];
	if (!get_name(&c, name))
		return err__set(e, EBADMSG, "offset %llu: malformed section name",
				(unsigned long long)base);
	uint32_t instance = stream_cur__get_u32(&c);
	uint64_t vat = stream_cur__off(&c);
	uint32_t version = stream_cur__get_u32(&c);
	if (c.error)
		return ended_early(&c, name, e);
	struct section_entry *s = section__find(reg, name, instance);
	if (!s)
		return err__set(e, ENOENT, "offset %llu: section '%s' instance %u is not known to this host",
				(unsigned long long)base, name, instance);
	if (!s->desc)
		return err__set(e, ENOTSUP, "offset %llu: section '%s' instance %u is not migratable here: %s",
				(unsigned long long)base, name, instance, s->reason);
	if (s->loaded)
		return err__set(e, EEXIST, "offset %llu: section '%s' instance %u appears twice",
				(unsigned long long)base, name, instance);
	const struct section_desc *d = s->desc;
	int rc = window(d, "section", instance, version, vat, e);
	if (rc)
		return rc;
	if ((rc = decode_body(&c, d, s->opaque, version, e)))
		return rc;
	uint64_t nat = stream_cur__off(&c);
	uint8_t nsubs = stream_cur__get_u8(&c);
	if (c.error)
		return ended_early(&c, name, e);
	if (nsubs > SECTION_MAX_SUBS)
		return err__set(e, EBADMSG, "offset %llu: section '%s': %u subsections (at most %d)",
				(unsigned long long)nat, name, nsubs, SECTION_MAX_SUBS);
	uint64_t seen = 0;
	for (uint8_t i = 0; i < nsubs; i++) {
		uint64_t at = stream_cur__off(&c);
		char sname[SECTION_NAME_MAX + 1];
		if (!get_name(&c, sname))
			return c.error ? ended_early(&c, name, e)
				       : err__set(e, EBADMSG, "offset %llu: section '%s': malformed subsection name",
						  (unsigned long long)at, name);
		uint64_t svat = stream_cur__off(&c);
		uint32_t sver = stream_cur__get_u32(&c);
		uint8_t flags = stream_cur__get_u8(&c);
		if (c.error)
			return ended_early(&c, name, e);
		if (flags & ~SUB_F_SKIPPABLE)
			return err__set(e, EBADMSG, "offset %llu: subsection '%s' has unknown flags 0x%02x",
					(unsigned long long)(svat + 4), sname, flags);
		const struct section_sub *sub = find_sub(d, sname);
		if (!sub) {
			if (!(flags & SUB_F_SKIPPABLE))
				return err__set(e, EPROTO,
						"offset %llu: section '%s' instance %u: unknown mandatory subsection '%s'",
						(unsigned long long)at, name, instance, sname);
			skip_body(&c);
			if (c.error)
				return ended_early(&c, name, e);
			continue;
		}
		size_t k = (size_t)(sub - d->subs);
		if (seen >> k & 1)
			return err__set(e, EBADMSG, "offset %llu: section '%s': subsection '%s' twice",
					(unsigned long long)at, name, sname);
		seen |= 1ULL << k;
		char what[SECTION_NAME_MAX + 32];
		snprintf(what, sizeof(what), "section '%s' subsection", name);
		if ((rc = window(sub->desc, what, instance, sver, svat, e)))
			return rc;
		if ((rc = decode_body(&c, sub->desc, s->opaque, sver, e)))
			return rc;
		if (sub->desc->post_load && (rc = sub->desc->post_load(s->opaque, sver, e)) < 0)
			return e->code ? rc : err__set(e, -rc, "section '%s' subsection '%s': post_load failed",
						       name, sname);
	}
	if (stream_cur__left(&c))
		return err__set(e, EBADMSG, "offset %llu: section '%s': %zu trailing bytes",
				(unsigned long long)stream_cur__off(&c), name, stream_cur__left(&c));
	if (d->post_load && (rc = d->post_load(s->opaque, version, e)) < 0)
		return e->code ? rc : err__set(e, -rc, "section '%s': post_load failed", name);
	s->loaded = true;
	s->loaded_version = version;
	return 0;
}

int section__parse_info(const uint8_t *payload, size_t len, uint64_t base,
			struct section_info *info, struct err *e)
{
	memset(info, 0, sizeof(*info));
	struct stream_cur c;
	stream_cur__init(&c, payload, len, base);
	if (!get_name(&c, info->name))
		return err__set(e, EBADMSG, "offset %llu: malformed section name",
				(unsigned long long)base);
	info->instance = stream_cur__get_u32(&c);
	info->version = stream_cur__get_u32(&c);
	info->fields_len = stream_cur__get_u32(&c);
	stream_cur__take(&c, info->fields_len);
	info->custom_len = stream_cur__get_u32(&c);
	stream_cur__take(&c, info->custom_len);
	info->nsubs = stream_cur__get_u8(&c);
	if (c.error)
		return ended_early(&c, info->name, e);
	if (info->nsubs > SECTION_MAX_SUBS)
		return err__set(e, EBADMSG, "offset %llu: section '%s': %u subsections (at most %d)",
				(unsigned long long)(stream_cur__off(&c) - 1), info->name,
				info->nsubs, SECTION_MAX_SUBS);
	for (unsigned i = 0; i < info->nsubs; i++) {
		uint64_t at = stream_cur__off(&c);
		if (!get_name(&c, info->subs[i]))
			return c.error ? ended_early(&c, info->name, e)
				       : err__set(e, EBADMSG, "offset %llu: malformed subsection name",
						  (unsigned long long)at);
		info->sub_versions[i] = stream_cur__get_u32(&c);
		uint8_t flags = stream_cur__get_u8(&c);
		skip_body(&c);
		if (c.error)
			return ended_early(&c, info->name, e);
		if (flags & ~SUB_F_SKIPPABLE)
			return err__set(e, EBADMSG, "offset %llu: subsection '%s' has unknown flags 0x%02x",
					(unsigned long long)at, info->subs[i], flags);
	}
	if (stream_cur__left(&c))
		return err__set(e, EBADMSG, "offset %llu: section '%s': %zu trailing bytes",
				(unsigned long long)stream_cur__off(&c), info->name, stream_cur__left(&c));
	return 0;
}
