/* Sections and pages through a stream: writing every registered section,
 * and the whole-stream load loop (header and release policy, records until
 * END, then "did every section arrive?"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/release.h"
#include "vmhop/section.h"

static int from_reader(const struct stream_reader *r, int rc, struct err *e)
{
	if (r->err.code)
		return err__set(e, r->err.code, "%s", r->err.msg);
	return rc < 0 ? err__set(e, -rc, "stream error") : rc;
}

static int save_entry(const struct section_entry *s, struct stream_writer *w, struct err *e)
{
	struct stream_buf b;
	stream_buf__init(&b);
	int rc = section__encode(s, &b, e);
	if (!rc)
		rc = stream__write_record(w, STREAM_REC_SECTION, 0, b.data, b.len);
	stream_buf__free(&b);
	if (rc)
		return e->code ? rc : stream__writer_err(w, rc, e);
	return 0;
}

int section__save_one(struct section_registry *reg, struct stream_writer *w,
		      const char *name, struct err *e)
{
	struct section_entry *s = section__find(reg, name, 0);
	if (!s)
		return err__set(e, ENOENT, "no section '%s' to save", name);
	return save_entry(s, w, e);
}

int section__save_except(const struct section_registry *reg,
			 struct stream_writer *w, const char *skip, struct err *e)
{
	int rc = section__check_migratable(reg, e);
	if (rc)
		return rc;
	for (size_t i = 0; i < reg->n; i++)
		if ((!skip || strcmp(reg->v[i].name, skip)) && (rc = save_entry(&reg->v[i], w, e)))
			return rc;
	return 0;
}

int section__save_all(const struct section_registry *reg,
		      struct stream_writer *w, struct err *e)
{
	return section__save_except(reg, w, NULL, e);
}

int section__load_record(struct section_registry *reg, struct stream_reader *r,
			 const struct stream_rec *rec, struct err *e)
{
	uint8_t *p;
	uint64_t base = rec->off + STREAM_REC_HDR_SIZE;
	int rc = stream__read_payload(r, STREAM_SECTION_MAX, &p);
	if (rc)
		return from_reader(r, rc, e);
	rc = section__decode(reg, p, rec->len, base, e);
	free(p);
	return rc;
}

int section__save_stream(const struct section_registry *reg,
			 struct stream_writer *w, struct stream_mem_enc *enc,
			 const struct stream_ram *ram, struct err *e)
{
	int rc = section__save_all(reg, w, e);
	if (rc)
		return rc;
	if (ram && ram->npages && (rc = stream__mem_write_range(w, enc, ram, 0, ram->npages)))
		return stream__writer_err(w, rc, e);
	if ((rc = stream__finish(w)))
		return stream__writer_err(w, rc, e);
	return 0;
}

int section__load_stream(struct section_registry *reg, struct stream_reader *r,
			 const struct release_policy *pol,
			 struct stream_mem_dec *dec,
			 const struct stream_mem_dst *dst, struct err *e)
{
	int rc = stream__read_header(r, NULL, pol);
	if (rc)
		return from_reader(r, rc, e);
	for (;;) {
		struct stream_rec rec;
		rc = stream__next_record(r, &rec);
		if (rc < 0)
			return from_reader(r, rc, e);
		if (rc == 0)
			break;
		switch (rec.type) {
		case STREAM_REC_SECTION:
			rc = section__load_record(reg, r, &rec, e);
			if (rc)
				return rc;
			continue;
		case STREAM_REC_MEM:
			if (!dst)
				return err__set(e, EPROTO, "offset %llu: memory record but no guest RAM to load it into",
						(unsigned long long)rec.off);
			rc = stream__mem_read(r, &rec, dec, dst);
			break;
		case STREAM_REC_INDEX: {
			struct stream_index idx;
			rc = stream__index_read(r, &rec, &idx);
			if (!rc)
				stream__index_free(&idx);
			break;
		}
		default:	/* NOTE and other informational records */
			rc = stream__rec_skip(r);
			break;
		}
		if (rc)
			return from_reader(r, rc, e);
	}
	return section__check_all_loaded(reg, e);
}
