/* The checkpoint scheduler's decisions (snapshot/schedule-prune.c): names
 * that sort by time and parse back, what is not the scheduler's, which kind
 * comes next, and what pruning may delete. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "vmhop/schedule.h"

/* 2026-11-26T01:50:33.123Z */
#define T0 1795657833123LL

START_TEST(name_round_trip)
{
	char buf[128];
	ck_assert_int_eq(schedule__format_name("web1", T0, SCHEDULE_FULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "web1-20261126T015033.123Z-full.vmhop");
	int64_t ms;
	enum schedule_kind k;
	ck_assert_int_eq(schedule__parse_name("web1", buf, &ms, &k), 0);
	ck_assert_int_eq(ms, T0);
	ck_assert_int_eq(k, SCHEDULE_FULL);
	ck_assert_int_eq(schedule__format_name("web1", 0, SCHEDULE_INCR, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "web1-19700101T000000.000Z-incr.vmhop");
	ck_assert_int_eq(schedule__parse_name("web1", buf, &ms, &k), 0);
	ck_assert_int_eq(ms, 0);
	ck_assert_int_eq(k, SCHEDULE_INCR);
	/* A name with dashes is parsed from the end. */
	ck_assert_int_eq(schedule__format_name("a-b", T0, SCHEDULE_INCR, buf, sizeof(buf)), 0);
	ck_assert_int_eq(schedule__parse_name("a-b", buf, &ms, &k), 0);
	ck_assert_int_eq(schedule__format_name("web1", T0, SCHEDULE_FULL, buf, 20), -ENAMETOOLONG);
	ck_assert_int_eq(schedule__format_name("web1", -1, SCHEDULE_FULL, buf, sizeof(buf)), -EINVAL);
}
END_TEST

START_TEST(names_sort_by_time)
{
	char a[128], b[128], c[128];
	ck_assert_int_eq(schedule__format_name("vm", T0, SCHEDULE_INCR, a, sizeof(a)), 0);
	ck_assert_int_eq(schedule__format_name("vm", T0 + 1, SCHEDULE_FULL, b, sizeof(b)), 0);
	ck_assert_int_eq(schedule__format_name("vm", T0 + 86400000LL * 400, SCHEDULE_INCR, c, sizeof(c)), 0);
	ck_assert_int_lt(strcmp(a, b), 0);
	ck_assert_int_lt(strcmp(b, c), 0);
}
END_TEST

START_TEST(not_ours)
{
	static const char *const others[] = {
		"web1-20261126T015033.123Z-full.vmhop.tmp.AbC123",	/* a write in progress */
		"web2-20261126T015033.123Z-full.vmhop",			/* another VM */
		"web1-2-20261126T015033.123Z-full.vmhop",		/* another VM, web1-2 */
		"xweb1-20261126T015033.123Z-full.vmhop",
		"web1-20261126T015033.123Z-diff.vmhop",
		"web1-20261126T015033.123Z-full.vmhopx",
		"web1-20261326T015033.123Z-full.vmhop",		/* month 13 */
		"web1-20261126T015060.123Z-full.vmhop",		/* second 60 */
		"web1-20261126 015033.123Z-full.vmhop",
		"web1-2026112XT015033.123Z-full.vmhop",
		"web1-20261126T015033.12Z-full.vmhop",
		"web1-20261126T015033.123Z-full",
		"-20261126T015033.123Z-full.vmhop",
		"web1.vmhop", "", ".", "..",
	};
	int64_t ms;
	enum schedule_kind k;
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		ck_assert_msg(schedule__parse_name("web1", others[i], &ms, &k) == -EINVAL,
			      "'%s' taken for the scheduler's", others[i]);
	ck_assert_int_eq(schedule__parse_name("", "-20261126T015033.123Z-full.vmhop", &ms, &k), -EINVAL);
}
END_TEST

START_TEST(vm_names)
{
	char out[SCHEDULE_NAME_MAX];
	schedule__vm_name("web1", out);
	ck_assert_str_eq(out, "web1");
	schedule__vm_name("", out);
	ck_assert_str_eq(out, "vm");
	schedule__vm_name(NULL, out);
	ck_assert_str_eq(out, "vm");
	schedule__vm_name("..", out);
	ck_assert_str_eq(out, "vm");
	schedule__vm_name("a/b c-d\xc3\xa9", out);
	ck_assert_str_eq(out, "a_b_c-d__");
	char longname[200];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	schedule__vm_name(longname, out);
	ck_assert_uint_eq(strlen(out), SCHEDULE_NAME_MAX - 1);
}
END_TEST

START_TEST(durations)
{
	uint64_t ms;
	ck_assert_int_eq(schedule__parse_duration("30s", &ms), 0);
	ck_assert_uint_eq(ms, 30000);
	ck_assert_int_eq(schedule__parse_duration("5m", &ms), 0);
	ck_assert_uint_eq(ms, 300000);
	ck_assert_int_eq(schedule__parse_duration("1h", &ms), 0);
	ck_assert_uint_eq(ms, 3600000);
	ck_assert_int_eq(schedule__parse_duration("2d", &ms), 0);
	ck_assert_uint_eq(ms, 2 * 86400000ULL);
	ck_assert_int_eq(schedule__parse_duration("2", &ms), 0);
	ck_assert_uint_eq(ms, 2000);
	ck_assert_int_eq(schedule__parse_duration("250ms", &ms), 0);
	ck_assert_uint_eq(ms, 250);
	static const char *const bad[] = { "", "s", "-1s", "1.5s", "0", "99ms", "10x", "1 s", " 1s",
					   "367d", "99999999999999999999999s", "1sm" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(schedule__parse_duration(bad[i], &ms) == -EINVAL, "'%s' accepted", bad[i]);
}
END_TEST

/* A set from a kinds string, oldest first: "FIIF" = full, incr, incr, full,
 * one second apart, added in reverse to exercise the sort. */
static void make_set(struct schedule_set *s, const char *kinds)
{
	size_t n = strlen(kinds);
	*s = (struct schedule_set){ 0 };
	for (size_t i = n; i > 0; i--) {
		char buf[128];
		enum schedule_kind k = kinds[i - 1] == 'F' ? SCHEDULE_FULL : SCHEDULE_INCR;
		ck_assert_int_eq(schedule__format_name("vm", T0 + 1000 * (int64_t)(i - 1), k, buf,
						       sizeof(buf)), 0);
		ck_assert_int_eq(schedule__set_add(s, "vm", buf), 1);
	}
	ck_assert_int_eq(schedule__set_add(s, "vm", "unrelated.txt"), 0);
	ck_assert_int_eq(schedule__set_add(s, "vm", "vm-20261126T015033.123Z-full.vmhop.tmp.x1"), 0);
	schedule__set_sort(s);
	ck_assert_uint_eq(s->n, n);
	for (size_t i = 1; i < n; i++)
		ck_assert_int_lt(s->files[i - 1].ms, s->files[i].ms);
}

/* The deleted files as a string: 'x' deleted, '.' kept. */
static void prune_str(const char *kinds, unsigned keep, char *out, size_t *kept)
{
	struct schedule_set s;
	make_set(&s, kinds);
	bool del[64];
	size_t nd = schedule__prune(&s, keep, del, kept);
	size_t count = 0;
	for (size_t i = 0; i < s.n; i++) {
		out[i] = del[i] ? 'x' : '.';
		count += del[i];
	}
	out[s.n] = '\0';
	ck_assert_uint_eq(nd, count);
	schedule__set_free(&s);
}

START_TEST(prune_keeps_newest_chains)
{
	static const struct { const char *kinds; unsigned keep; const char *del; size_t kept; } cases[] = {
		{ "FIFIFIFI", 3, "xx......", 3 },
		{ "FIFIFIF", 3, "xx.....", 3 },
		{ "FIIIFIIF", 2, "xxxx....", 2 },
		{ "FFFF", 1, "xxx.", 1 },
		{ "FFFF", 4, "....", 4 },
		{ "FIIFI", 5, ".....", 2 },	/* fewer chains than keep: nothing */
		{ "IIFIFI", 2, "xx....", 2 },	/* incrementals without their full */
		{ "IIFI", 3, "xx..", 1 },
		{ "III", 2, "...", 0 },		/* no full at all: not ours to judge */
		{ "FIFI", 0, "....", 2 },	/* keep 0: never delete */
		{ "", 3, "", 0 },
		{ "F", 1, ".", 1 },
		{ "FIIIIIIIII", 1, "..........", 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char got[64];
		size_t kept;
		prune_str(cases[i].kinds, cases[i].keep, got, &kept);
		ck_assert_msg(!strcmp(got, cases[i].del), "%s keep %u: deleted %s, expected %s",
			      cases[i].kinds, cases[i].keep, got, cases[i].del);
		ck_assert_msg(kept == cases[i].kept, "%s keep %u: %zu chains kept, expected %zu",
			      cases[i].kinds, cases[i].keep, kept, cases[i].kept);
	}
}
END_TEST

START_TEST(next_kind)
{
	static const struct { const char *kinds; unsigned every; bool force; enum schedule_kind k; } cases[] = {
		{ "", 6, false, SCHEDULE_FULL },
		{ "F", 6, false, SCHEDULE_INCR },
		{ "FIIII", 6, false, SCHEDULE_INCR },
		{ "FIIIII", 6, false, SCHEDULE_FULL },
		{ "F", 1, false, SCHEDULE_FULL },
		{ "F", 2, false, SCHEDULE_INCR },
		{ "FI", 2, false, SCHEDULE_FULL },
		{ "FIF", 2, false, SCHEDULE_INCR },
		{ "FI", 6, true, SCHEDULE_FULL },	/* after a failure */
		{ "III", 6, false, SCHEDULE_FULL },	/* no chain to extend */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct schedule_set s;
		make_set(&s, cases[i].kinds);
		const struct schedule_file *base = (const void *)1;
		enum schedule_kind k = schedule__next(&s, cases[i].every, cases[i].force, &base);
		ck_assert_msg(k == cases[i].k, "%s every %u: got %d", cases[i].kinds, cases[i].every, k);
		if (k == SCHEDULE_INCR)
			ck_assert_ptr_eq(base, &s.files[s.n - 1]);
		else
			ck_assert_ptr_null(base);
		schedule__set_free(&s);
	}
}
END_TEST

/* A whole run: take what next() says, prune after each, check the
 * invariants a restore relies on after every step. */
START_TEST(simulated_run)
{
	for (unsigned every = 1; every <= 4; every++) {
		for (unsigned keep = 1; keep <= 4; keep++) {
			struct schedule_set s = { 0 };
			for (int step = 0; step < 40; step++) {
				const struct schedule_file *base;
				enum schedule_kind k = schedule__next(&s, every, step % 13 == 12, &base);
				char buf[128];
				ck_assert_int_eq(schedule__format_name("vm", T0 + 1000 * step, k, buf,
								       sizeof(buf)), 0);
				ck_assert_int_eq(schedule__set_add(&s, "vm", buf), 1);
				schedule__set_sort(&s);
				bool del[64];
				size_t kept;
				schedule__prune(&s, keep, del, &kept);
				struct schedule_set t = { 0 };
				for (size_t i = 0; i < s.n; i++)
					if (!del[i])
						ck_assert_int_eq(schedule__set_add(&t, "vm", s.files[i].name), 1);
				schedule__set_free(&s);
				s = t;
				/* Starts with a full one; at most keep chains; the newest file remains. */
				ck_assert_int_eq(s.files[0].kind, SCHEDULE_FULL);
				ck_assert_uint_le(schedule__chains(&s), keep);
				ck_assert_uint_eq(kept, schedule__chains(&s));
				ck_assert_str_eq(s.files[s.n - 1].name, buf);
			}
			schedule__set_free(&s);
		}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("schedule");
	TCase *tc = tcase_create("schedule");
	tcase_add_test(tc, name_round_trip);
	tcase_add_test(tc, names_sort_by_time);
	tcase_add_test(tc, not_ours);
	tcase_add_test(tc, vm_names);
	tcase_add_test(tc, durations);
	tcase_add_test(tc, prune_keeps_newest_chains);
	tcase_add_test(tc, next_kind);
	tcase_add_test(tc, simulated_run);
	suite_add_tcase(s, tc);
	return check_run(s);
}
