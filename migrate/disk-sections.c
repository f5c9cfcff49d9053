#include <errno.h>
#include <string.h>

#include "vmhop/disk-sections.h"
#include "vmhop/section.h"

struct data_sec {
	uint32_t index;
	uint64_t offset;
	uint32_t len;
	const uint8_t *data;			/* save */
	const struct disk_sections_sink *sink;	/* load */
};

static const struct section_field image_fields[] = {
	SECTION_U32(struct disk_image_sec, index, 1),
	SECTION_U64(struct disk_image_sec, size, 1),
	SECTION_BYTES(struct disk_image_sec, id, 1),
	SECTION_U8(struct disk_image_sec, changes_only, 2),
	SECTION_FIELDS_END
};

/* disk_sections__write_data lays these out by hand (DATA_FIELDS_LEN bytes);
 * tests/unit/test-section.c holds it to the generic encoder's bytes. */
#define DATA_VERSION 1
#define DATA_FIELDS_LEN (4 + 8 + 4)

static const struct section_field data_fields[] = {
	SECTION_U32(struct data_sec, index, 1),
	SECTION_U64(struct data_sec, offset, 1),
	SECTION_U32(struct data_sec, len, 1),
	SECTION_FIELDS_END
};

static const struct section_field digest_fields[] = {
	SECTION_U32(struct disk_digest_sec, index, 1),
	SECTION_BYTES(struct disk_digest_sec, sha256, 1),
	SECTION_FIELDS_END
};

static int data_save(void *opaque, struct stream_buf *b, struct err *e)
{
	struct data_sec *d = opaque;
	(void)e;
	stream_buf__put(b, d->data, d->len);
	return 0;
}

static int data_load(void *opaque, struct stream_cur *c, uint32_t version, struct err *e)
{
	struct data_sec *d = opaque;
	(void)version;
	if (d->len != stream_cur__left(c) || d->len > DISK_SECTIONS_CHUNK)
		return err__set(e, EINVAL, "disk %u: a data section of %llu bytes says it holds %u",
				d->index, (unsigned long long)stream_cur__left(c), d->len);
	const uint8_t *p = stream_cur__take(c, d->len);
	if (!p)
		return err__set(e, EINVAL, "disk %u: truncated data section", d->index);
	return d->sink->data(d->sink->opaque, d->index, d->offset, p, d->len, e);
}

static const struct section_desc image_desc = {
	.name = DISK_IMAGE_SECTION, .version = 2, .min_version = 1, .fields = image_fields,
};

static const struct section_desc data_desc = {
	.name = DISK_DATA_SECTION, .version = DATA_VERSION, .min_version = 1, .fields = data_fields,
	.save = data_save, .load = data_load,
};

static const struct section_desc digest_desc = {
	.name = DISK_DIGEST_SECTION, .version = 1, .min_version = 1, .fields = digest_fields,
};

static int save_one(struct stream_writer *w, const struct section_desc *desc, void *st,
		    struct err *e)
{
	struct section_registry reg;
	section__registry_init(&reg);
	int rc = section__register(&reg, desc, 0, st, e);
	if (!rc)
		rc = section__save_one(&reg, w, desc->name, e);
	section__registry_free(&reg);
	return rc;
}

int disk_sections__write_image(struct stream_writer *w, const struct disk_image_sec *im,
			       struct err *e)
{
	struct disk_image_sec copy = *im;
	return save_one(w, &image_desc, &copy, e);
}

/* The bytes section__encode would give for data_desc (name, instance 0,
 * version, the fields, the data as custom data, no subsections), put into
 * the record piece by piece: the data goes from the caller's buffer to the
 * channel, instead of first being gathered into a section buffer and then
 * staged, two copies of nearly every byte of a disk copy. */
int disk_sections__write_data(struct stream_writer *w, uint32_t index, uint64_t off,
			      const void *buf, uint32_t len, struct err *e)
{
	const size_t name_len = sizeof(DISK_DATA_SECTION) - 1;
	uint8_t pre[1 + sizeof(DISK_DATA_SECTION) - 1 + 4 + 4 + 4 + DATA_FIELDS_LEN + 4];
	uint8_t *p = pre;
	*p++ = (uint8_t)name_len;
	memcpy(p, DISK_DATA_SECTION, name_len);
	p += name_len;
	stream__le32(p, 0);			/* instance */
	stream__le32(p + 4, DATA_VERSION);
	stream__le32(p + 8, DATA_FIELDS_LEN);
	stream__le32(p + 12, index);
	stream__le64(p + 16, off);
	stream__le32(p + 24, len);
	stream__le32(p + 28, len);		/* custom data: the bytes */
	uint64_t total = sizeof(pre) + (uint64_t)len + 1;
	if (total > STREAM_SECTION_MAX)
		return err__set(e, EMSGSIZE, "section '%s' instance 0: payload exceeds %u bytes",
				DISK_DATA_SECTION, STREAM_SECTION_MAX);
	if (!stream__rec_begin(w, STREAM_REC_SECTION, 0, total)) {
		stream__put(w, pre, sizeof(pre));
		stream__put_stable(w, buf, len);
		stream__put_u8(w, 0);		/* no subsections */
		stream__rec_end(w);
	}
	return stream__writer_err(w, w->error, e);
}

int disk_sections__write_digest(struct stream_writer *w, const struct disk_digest_sec *d,
				struct err *e)
{
	struct disk_digest_sec copy = *d;
	return save_one(w, &digest_desc, &copy, e);
}

bool disk_sections__is_disk(const uint8_t *payload, size_t len, uint64_t base)
{
	struct section_info info;
	struct err ignore = { 0 };
	return section__parse_info(payload, len, base, &info, &ignore) == 0 &&
	       (!strcmp(info.name, DISK_IMAGE_SECTION) || !strcmp(info.name, DISK_DATA_SECTION) ||
		!strcmp(info.name, DISK_DIGEST_SECTION));
}

int disk_sections__decode(const uint8_t *payload, size_t len, uint64_t base,
			  const struct disk_sections_sink *sink, struct err *e)
{
	struct section_info info;
	int rc = section__parse_info(payload, len, base, &info, e);
	if (rc < 0)
		return rc;
	struct disk_image_sec im = { 0 };
	struct data_sec d = { .sink = sink };
	struct disk_digest_sec dg = { 0 };
	const struct section_desc *desc;
	void *st;
	bool ok;
	if (!strcmp(info.name, DISK_IMAGE_SECTION)) {
		desc = &image_desc, st = &im, ok = sink->image;
	} else if (!strcmp(info.name, DISK_DATA_SECTION)) {
		desc = &data_desc, st = &d, ok = sink->data;
	} else if (!strcmp(info.name, DISK_DIGEST_SECTION)) {
		desc = &digest_desc, st = &dg, ok = sink->digest;
	} else {
		return err__set(e, EINVAL, "section %s is not a disk section", info.name);
	}
	if (!ok)
		return err__set(e, EPROTO, "unexpected %s section here", info.name);
	struct section_registry reg;
	section__registry_init(&reg);
	rc = section__register(&reg, desc, 0, st, e);
	if (!rc)
		rc = section__decode(&reg, payload, len, base, e);
	section__registry_free(&reg);
	if (!rc && desc == &image_desc)
		rc = sink->image(sink->opaque, &im, e);
	if (!rc && desc == &digest_desc)
		rc = sink->digest(sink->opaque, &dg, e);
	return rc;
}
