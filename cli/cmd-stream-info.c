/* vmhop stream-info FILE|-: describes a migration stream or snapshot file
 * (header, sections, memory statistics) and checks it on the way: the first
 * defect stops it, named with its byte offset. Needs no KVM. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/commands.h"
#include "vmhop/release.h"
#include "vmhop/section.h"
#include "vmhop/stream.h"

static const char *const kind_names[STREAM_PAGE_KINDS] = { "zero", "raw", "zstd" };

struct info {
	bool json;
	json_object *root, *sections, *notes;
	struct stream_reader r;
	struct stream_mem_dec dec;
	struct err e;
	uint64_t index_entries, index_off;
	bool have_index;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmhop stream-info [--json] FILE|-\n"
		"Describe a vmhop migration stream or snapshot file: the header, each state\n"
		"section (name, instance, version, size) and memory statistics (pages by\n"
		"kind). Every record's checksum (and the SHA-256 digest, when present) is\n"
		"verified; the first defect ends the command with exit status 1, naming its\n"
		"byte offset. '-' reads standard input. See vmhop-stream(5).\n"
		"\n"
		"  --json    print one JSON object instead of text\n"
		"  --help    this text\n");
}

static void features_text(uint32_t f, char *buf, size_t n)
{
	snprintf(buf, n, "0x%08x%s", f, (f & STREAM_FEAT_DIGEST_TREE) ? " (digest, tree)" :
					 (f & STREAM_FEAT_DIGEST) ? " (digest)" : "");
}

static void print_header(struct info *in, const char *name, const struct stream_header *h)
{
	struct release_matrix m;
	struct release_policy pol;
	struct err e = { 0 };
	bool have_pol = release__policy(&m, &pol, &e) == 0;
	struct err why = { 0 };
	bool accepted = have_pol &&
		release__check_incoming(&pol, h->release, h->release_ordinal, h->format, &why) == 0;
	if (in->json) {
		json_object *hj = json_object_new_object();
		json_object_object_add(hj, "format", json_object_new_int(h->format));
		json_object_object_add(hj, "release", json_object_new_string(h->release));
		json_object_object_add(hj, "release_level", json_object_new_int(h->release_ordinal));
		json_object_object_add(hj, "features", json_object_new_int64(h->features));
		json_object_object_add(hj, "digest", json_object_new_boolean(h->features & STREAM_FEAT_DIGEST));
		json_object_object_add(hj, "digest_tree",
				       json_object_new_boolean(h->features & STREAM_FEAT_DIGEST_TREE));
		json_object_object_add(in->root, "header", hj);
		json_object *cj = json_object_new_object();
		json_object_object_add(cj, "host_release",
				       json_object_new_string(have_pol ? pol.self->name : "?"));
		json_object_object_add(cj, "accepted", json_object_new_boolean(accepted));
		if (!accepted)
			json_object_object_add(cj, "reason",
					       json_object_new_string(have_pol ? why.msg : e.msg));
		json_object_object_add(in->root, "compat", cj);
		return;
	}
	char feat[64];
	features_text(h->features, feat, sizeof(feat));
	printf("stream %s\n", name);
	printf("header: format %u, release %s (level %u), features %s\n",
	       h->format, h->release, h->release_ordinal, feat);
	if (!have_pol)
		printf("compat: unknown (%s)\n", e.msg);
	else if (accepted)
		printf("compat: this host (%s) accepts it\n", pol.self->name);
	else
		printf("compat: this host would refuse it: %s\n", why.msg);
}

static int on_section(struct info *in, const struct stream_rec *rec)
{
	uint8_t *p;
	if (stream__read_payload(&in->r, STREAM_SECTION_MAX, &p))
		return -1;
	struct section_info si;
	int rc = section__parse_info(p, rec->len, rec->off + STREAM_REC_HDR_SIZE, &si, &in->e);
	free(p);
	if (rc)
		return -1;
	if (in->json) {
		json_object *s = json_object_new_object();
		json_object_object_add(s, "name", json_object_new_string(si.name));
		json_object_object_add(s, "instance", json_object_new_int64(si.instance));
		json_object_object_add(s, "version", json_object_new_int64(si.version));
		json_object_object_add(s, "size", json_object_new_int64(rec->len));
		json_object_object_add(s, "offset", json_object_new_int64((int64_t)rec->off));
		json_object *subs = json_object_new_array();
		for (unsigned i = 0; i < si.nsubs; i++) {
			json_object *x = json_object_new_object();
			json_object_object_add(x, "name", json_object_new_string(si.subs[i]));
			json_object_object_add(x, "version", json_object_new_int64(si.sub_versions[i]));
			json_object_array_add(subs, x);
		}
		json_object_object_add(s, "subsections", subs);
		json_object_array_add(in->sections, s);
		return 0;
	}
	printf("section %-24s instance %-4u version %-3u %8u bytes  @%llu",
	       si.name, si.instance, si.version, rec->len, (unsigned long long)rec->off);
	for (unsigned i = 0; i < si.nsubs; i++)
		printf("%s%s v%u", i ? ", " : "  subsections: ", si.subs[i], si.sub_versions[i]);
	printf("\n");
	return 0;
}

static int on_note(struct info *in, const struct stream_rec *rec)
{
	uint8_t *p;
	if (stream__read_payload(&in->r, STREAM_NOTE_MAX, &p))
		return -1;
	char *text = strndup(p ? (const char *)p : "", rec->len);
	free(p);
	if (!text)
		return -1;
	for (char *c = text; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	if (in->json)
		json_object_array_add(in->notes, json_object_new_string(text));
	else
		printf("note: %s\n", text);
	free(text);
	return 0;
}

static int walk(struct info *in, const char *name)
{
	struct stream_header h;
	if (stream__read_header(&in->r, &h, NULL))
		return -1;
	print_header(in, name, &h);
	for (;;) {
		struct stream_rec rec;
		int rc = stream__next_record(&in->r, &rec);
		if (rc < 0)
			return -1;
		if (rc == 0)
			break;
		switch (rec.type) {
		case STREAM_REC_SECTION:
			rc = on_section(in, &rec);
			break;
		case STREAM_REC_NOTE:
			rc = on_note(in, &rec);
			break;
		case STREAM_REC_MEM:
			rc = stream__mem_read(&in->r, &rec, &in->dec, NULL);
			break;
		case STREAM_REC_INDEX: {
			struct stream_index idx;
			rc = stream__index_read(&in->r, &rec, &idx);
			if (!rc) {
				in->have_index = true;
				in->index_entries = idx.n;
				in->index_off = rec.off;
				stream__index_free(&idx);
			}
			break;
		}
		default:
			rc = stream__rec_skip(&in->r);
			break;
		}
		if (rc)
			return -1;
	}
	return stream__expect_eof(&in->r) ? -1 : 0;
}

static void print_summary(struct info *in)
{
	const struct stream_mem_stats *st = &in->dec.stats;
	uint64_t pages = st->pages[0] + st->pages[1] + st->pages[2];
	if (in->json) {
		json_object *mj = json_object_new_object();
		json_object_object_add(mj, "records", json_object_new_int64((int64_t)st->records));
		json_object_object_add(mj, "pages", json_object_new_int64((int64_t)pages));
		json_object *pk = json_object_new_object(), *bk = json_object_new_object();
		for (int k = 0; k < STREAM_PAGE_KINDS; k++) {
			json_object_object_add(pk, kind_names[k], json_object_new_int64((int64_t)st->pages[k]));
			json_object_object_add(bk, kind_names[k], json_object_new_int64((int64_t)st->bytes[k]));
		}
		json_object_object_add(mj, "by_kind", pk);
		json_object_object_add(mj, "bytes_by_kind", bk);
		json_object_object_add(in->root, "memory", mj);
		if (in->have_index) {
			json_object *ij = json_object_new_object();
			json_object_object_add(ij, "entries", json_object_new_int64((int64_t)in->index_entries));
			json_object_object_add(ij, "offset", json_object_new_int64((int64_t)in->index_off));
			json_object_object_add(in->root, "index", ij);
		}
		json_object_object_add(in->root, "skipped_records", json_object_new_int64((int64_t)in->r.skipped));
		json_object_object_add(in->root, "size", json_object_new_int64((int64_t)in->r.off));
		return;
	}
	printf("memory: %llu records, %llu pages (%llu MiB): zero %llu, raw %llu, zstd %llu (%llu bytes)\n",
	       (unsigned long long)st->records, (unsigned long long)pages,
	       (unsigned long long)(pages * STREAM_PAGE_SIZE >> 20),
	       (unsigned long long)st->pages[0], (unsigned long long)st->pages[1],
	       (unsigned long long)st->pages[2], (unsigned long long)st->bytes[2]);
	if (in->have_index)
		printf("index: %llu entries @%llu\n", (unsigned long long)in->index_entries,
		       (unsigned long long)in->index_off);
	if (in->r.skipped)
		printf("skipped: %llu unknown skippable records\n", (unsigned long long)in->r.skipped);
	printf("end: %llu bytes, every checksum%s verified\n", (unsigned long long)in->r.off,
	       (in->r.hdr.features & STREAM_FEAT_DIGEST) ? " and the SHA-256 digest" : "");
}

int cmd_stream_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct info in = { 0 };
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			in.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	const char *name = argv[optind];
	int fd = strcmp(name, "-") ? open(name, O_RDONLY | O_CLOEXEC) : 0;
	if (fd < 0) {
		fprintf(stderr, "vmhop stream-info: %s: %s\n", name, strerror(errno));
		return 1;
	}
	struct stream_io io;
	stream__io_fd(&io, fd);
	if (stream__reader_init(&in.r, &io) || stream__mem_dec_init(&in.dec, &in.e)) {
		fprintf(stderr, "vmhop stream-info: out of memory\n");
		return 1;
	}
	if (in.json) {
		in.root = json_object_new_object();
		in.sections = json_object_new_array();
		in.notes = json_object_new_array();
		json_object_object_add(in.root, "file", json_object_new_string(name));
	}
	int rc = walk(&in, name);
	const char *msg = in.e.code ? in.e.msg : in.r.err.msg;
	if (in.json) {
		json_object_object_add(in.root, "sections", in.sections);
		json_object_object_add(in.root, "notes", in.notes);
		print_summary(&in);
		json_object_object_add(in.root, "ok", json_object_new_boolean(rc == 0));
		if (rc)
			json_object_object_add(in.root, "error", json_object_new_string(msg));
		printf("%s\n", json_object_to_json_string_ext(in.root, JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(in.root);
	} else if (!rc) {
		print_summary(&in);
	}
	if (rc)
		fprintf(stderr, "vmhop stream-info: %s: %s\n", name, msg);
	stream__mem_dec_free(&in.dec);
	stream__reader_free(&in.r);
	if (fd > 0)
		close(fd);
	return rc ? 1 : 0;
}
