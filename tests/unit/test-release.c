/* Release levels: the data file, the VMHOP_RELEASE_LEVEL override, and every
 * sender x receiver pair against the data, refusals at the header before any
 * memory record is read. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "test-stream-util.h"

static char *slurp_conf(size_t *len)
{
	const char *src = getenv("VMHOP_SRCDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/compat-matrix/release-levels.conf", src ? src : ".");
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	char *buf = malloc(65536);
	*len = fread(buf, 1, 65535, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

START_TEST(builtin_matches_file)
{
	size_t flen, blen;
	char *file = slurp_conf(&flen);
	const char *b = release__builtin_text(&blen);
	ck_assert_uint_eq(flen, blen);
	ck_assert(!memcmp(file, b, flen));
	free(file);
	struct release_matrix m;
	struct err e = { 0 };
	ck_assert_msg(release__builtin(&m, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(m.n, 3);
	ck_assert_str_eq(m.levels[m.build].name, "SP3");
	const struct release_level *sp2 = release__find(&m, "SP2");
	ck_assert_uint_eq(sp2->write_format, 2);
	ck_assert_uint_eq(sp2->read_min, 1);
	ck_assert_uint_eq(sp2->read_max, 2);
}
END_TEST

START_TEST(env_override)
{
	struct release_matrix m;
	struct release_policy pol;
	struct err e = { 0 };
	unsetenv(RELEASE_ENV);
	ck_assert_int_eq(release__policy(&m, &pol, &e), 0);
	ck_assert_str_eq(pol.self->name, "SP3");
	setenv(RELEASE_ENV, "SP2", 1);
	ck_assert_int_eq(release__policy(&m, &pol, &e), 0);
	ck_assert_str_eq(pol.self->name, "SP2");
	setenv(RELEASE_ENV, "SP9", 1);
	ck_assert_int_lt(release__policy(&m, &pol, &e), 0);
	ck_assert_msg(strstr(e.msg, "VMHOP_RELEASE_LEVEL=SP9"), "%s", e.msg);
	unsetenv(RELEASE_ENV);
}
END_TEST

/* Independent reading of the data: "allow SRC -> DST..." lines. */
static bool data_allows(const char *text, const char *src, const char *dst)
{
	char *copy = strdup(text), *save = NULL;
	bool ok = false;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *s2 = NULL, *t = strtok_r(line, " \t", &s2);
		if (!t || strcmp(t, "allow"))
			continue;
		t = strtok_r(NULL, " \t", &s2);
		if (!t || strcmp(t, src))
			continue;
		strtok_r(NULL, " \t", &s2);	/* -> */
		while ((t = strtok_r(NULL, " \t", &s2)))
			if (!strcmp(t, dst))
				ok = true;
	}
	free(copy);
	return ok;
}

/* A counting channel over memory. */
struct count_io {
	struct stream_mem m;
	uint64_t pulled;
};

static ssize_t count_read(void *opaque, void *buf, size_t len)
{
	struct count_io *c = opaque;
	size_t n = len < c->m.len - c->m.pos ? len : c->m.len - c->m.pos;
	memcpy(buf, c->m.buf + c->m.pos, n);
	c->m.pos += n;
	c->pulled += n;
	return (ssize_t)n;
}

START_TEST(every_pair)
{
	size_t flen;
	char *text = slurp_conf(&flen);
	struct release_matrix m;
	struct err e = { 0 };
	ck_assert_int_eq(release__builtin(&m, &e), 0);
	const uint64_t np = 20;
	uint8_t *ram = test_ram(np, 1);
	int pairs = 0, refused = 0;
	for (size_t s = 0; s < m.n; s++) {
		for (size_t d = 0; d < m.n; d++) {
			const char *sn = m.levels[s].name, *dn = m.levels[d].name;
			/* sender */
			struct release_policy pol;
			struct release_matrix sm, dm;
			setenv(RELEASE_ENV, sn, 1);
			ck_assert_int_eq(release__policy(&sm, &pol, &e), 0);
			struct stream_mem out;
			struct stream_io io;
			stream__mem_init_grow(&out);
			stream__io_mem(&io, &out);
			struct stream_writer w;
			ck_assert_int_eq(stream__writer_init_release(&w, &io, &pol, STREAM_FEAT_DIGEST, true), 0);
			ck_assert_uint_eq(w.hdr.format, m.levels[s].write_format);
			struct demo_state a, b;
			demo_fill(&a, (unsigned)s);
			memset(&b, 0, sizeof(b));
			struct section_registry src, dst;
			section__registry_init(&src);
			section__registry_init(&dst);
			section__register(&src, &demo_desc_v2, 0, &a, &e);
			section__register(&dst, &demo_desc_v2, 0, &b, &e);
			struct stream_mem_enc enc;
			struct stream_mem_enc_opts eo = { .compress = true, .detect_zero = true, .max_run = 8 };
			stream__mem_enc_init(&enc, &eo, &e);
			struct stream_ram sr = { .host = ram, .npages = np };
			/* memory first, so a late refusal would have touched RAM */
			ck_assert_int_eq(stream__mem_write_range(&w, &enc, &sr, 0, np), 0);
			ck_assert_msg(section__save_stream(&src, &w, &enc, NULL, &e) == 0, "%s", e.msg);
			/* receiver */
			setenv(RELEASE_ENV, dn, 1);
			ck_assert_int_eq(release__policy(&dm, &pol, &e), 0);
			ck_assert_str_eq(pol.self->name, dn);
			struct count_io cio;
			stream__mem_init_read(&cio.m, out.buf, out.len);
			cio.pulled = 0;
			struct stream_io rio = { .read = count_read, .opaque = &cio };
			struct stream_reader r;
			stream__reader_init(&r, &rio);
			struct stream_mem_dec dec;
			stream__mem_dec_init(&dec, &e);
			uint8_t *land = calloc(np, STREAM_PAGE_SIZE);
			struct stream_mem_dst md = { .host = land, .npages = np };
			err__clear(&e);
			int rc = section__load_stream(&dst, &r, &pol, &dec, &md, &e);
			bool want = data_allows(text, sn, dn);
			ck_assert_msg((rc == 0) == want, "%s -> %s: got %d (%s), data says %s",
				      sn, dn, rc, e.msg, want ? "allowed" : "refused");
			if (want) {
				ck_assert(!memcmp(land, ram, np * STREAM_PAGE_SIZE));
				ck_assert_uint_eq(b.u32, a.u32);
			} else {
				refused++;
				char msg[200];
				snprintf(msg, sizeof(msg), "refusing stream from release %s: this host runs %s and accepts ",
					 sn, dn);
				ck_assert_msg(strstr(e.msg, msg), "%s", e.msg);
				/* at the header: nothing past it was taken from the
				 * channel, no page was read or written */
				ck_assert_uint_eq(cio.pulled, STREAM_HEADER_SIZE);
				ck_assert_uint_eq(dec.stats.records, 0);
				for (size_t i = 0; i < np * STREAM_PAGE_SIZE; i++)
					ck_assert_uint_eq(land[i], 0);
				ck_assert(!dst.v[0].loaded);
			}
			pairs++;
			free(land);
			stream__mem_dec_free(&dec);
			stream__reader_free(&r);
			stream__mem_enc_free(&enc);
			stream__writer_free(&w);
			stream__mem_free(&out);
			section__registry_free(&src);
			section__registry_free(&dst);
		}
	}
	ck_assert_int_eq(pairs, 9);
	ck_assert_int_eq(refused, 3);
	unsetenv(RELEASE_ENV);
	free(ram);
	free(text);
}
END_TEST

START_TEST(exact_messages)
{
	struct release_matrix m;
	struct err e = { 0 };
	ck_assert_int_eq(release__builtin(&m, &e), 0);
	struct release_policy sp2 = { &m, release__find(&m, "SP2") };
	ck_assert_int_lt(release__check_incoming(&sp2, "SP3", 3, 3, &e), 0);
	ck_assert_str_eq(e.msg, "refusing stream from release SP3: this host runs SP2 and accepts SP1..SP2");
	struct release_policy sp1 = { &m, release__find(&m, "SP1") };
	err__clear(&e);
	ck_assert_int_lt(release__check_incoming(&sp1, "SP3", 3, 3, &e), 0);
	ck_assert_str_eq(e.msg, "refusing stream from release SP3: this host runs SP1 and accepts SP1");
	/* a level from the future that this host's data does not know */
	struct release_policy sp3 = { &m, release__find(&m, "SP3") };
	err__clear(&e);
	ck_assert_int_lt(release__check_incoming(&sp3, "SP4", 4, 4, &e), 0);
	ck_assert_str_eq(e.msg, "refusing stream from release SP4 (a newer release): this host runs SP3 and accepts SP1..SP3");
	/* an allowed level but a format this host does not read */
	err__clear(&e);
	ck_assert_int_lt(release__check_incoming(&sp2, "SP1", 1, 3, &e), 0);
	ck_assert_msg(strstr(e.msg, "refusing stream format version 3 from release SP1: this host runs SP2 and reads format versions 1..2"),
		      "%s", e.msg);
	ck_assert_int_eq(release__check_incoming(&sp3, "SP1", 1, 1, &e), 0);
}
END_TEST

START_TEST(bad_data)
{
	struct release_matrix m;
	struct err e = { 0 };
	const char *older =
		"level A 1 writes 1 reads 1..1\nlevel B 2 writes 2 reads 1..2\n"
		"allow A -> A B\nallow B -> B A\nbuild B\n";
	ck_assert_int_lt(release__parse(&m, older, strlen(older), &e), 0);
	ck_assert_msg(strstr(e.msg, "line 4: B -> A moves to an older level"), "%s", e.msg);
	const char *noself = "level A 1 writes 1 reads 1..1\nbuild A\n";
	err__clear(&e);
	ck_assert_int_lt(release__parse(&m, noself, strlen(noself), &e), 0);
	ck_assert_msg(strstr(e.msg, "A may not move to itself"), "%s", e.msg);
	const char *unread =
		"level A 1 writes 1 reads 1..1\nlevel B 2 writes 2 reads 2..2\n"
		"allow A -> A B\nallow B -> B\nbuild A\n";
	err__clear(&e);
	ck_assert_int_lt(release__parse(&m, unread, strlen(unread), &e), 0);
	ck_assert_msg(strstr(e.msg, "B does not read format 1"), "%s", e.msg);
	const char *order = "level A 2 writes 1 reads 1..1\nlevel B 1 writes 1 reads 1..1\n";
	err__clear(&e);
	ck_assert_int_lt(release__parse(&m, order, strlen(order), &e), 0);
	ck_assert_msg(strstr(e.msg, "line 2: ordinals must increase"), "%s", e.msg);
	const char *junk = "level A 1 writes 1 reads 1..1\nfrobnicate\n";
	err__clear(&e);
	ck_assert_int_lt(release__parse(&m, junk, strlen(junk), &e), 0);
	ck_assert_msg(strstr(e.msg, "line 2: unknown keyword 'frobnicate'"), "%s", e.msg);
	/* a non-contiguous accept list */
	const char *gap =
		"level A 1 writes 1 reads 1..1\nlevel B 2 writes 2 reads 1..2\nlevel C 3 writes 3 reads 1..3\n"
		"allow A -> A C\nallow B -> B\nallow C -> C\nbuild C\n";
	err__clear(&e);
	ck_assert_msg(release__parse(&m, gap, strlen(gap), &e) == 0, "%s", e.msg);
	char buf[64];
	release__accepts(&m, release__find(&m, "C"), buf, sizeof(buf));
	ck_assert_str_eq(buf, "A, C");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("release");
	TCase *tc = tcase_create("release");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, builtin_matches_file);
	tcase_add_test(tc, env_override);
	tcase_add_test(tc, every_pair);
	tcase_add_test(tc, exact_messages);
	tcase_add_test(tc, bad_data);
	suite_add_tcase(s, tc);
	return check_run(s);
}
