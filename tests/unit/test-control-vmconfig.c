/* struct vm_config <-> JSON: round trips, and refusal of every kind of bad
 * input a migration peer could send. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/util.h"
#include "vmhop/vm-config-json.h"

static void full_config(struct vm_config *c)
{
	struct err e = { 0 };
	vm_config__init(c);
	snprintf(c->name, sizeof(c->name), "web-1");
	c->kernel = strdup("/boot/guest.elf");
	c->initrd = strdup("/boot/initrd.img");
	c->cmdline = strdup("console=ttyS0 quiet \"quoted\" \\back");
	c->mem_size = 1 * GiB;
	c->nr_cpus = 2;
	c->cpu_model = strdup("qemu64");
	ck_assert_int_eq(vm_config__add_disk(c, "/var/d.img,id=root", &e), 0);
	ck_assert_int_eq(vm_config__add_disk(c, "/var/data.img,cache=writeback,readonly", &e), 0);
	ck_assert_int_eq(vm_config__set_serial(c, "file:/tmp/console.log", &e), 0);
	c->control_path = strdup("/run/vmhop/web-1.sock");
}

static void assert_same(const struct vm_config *a, const struct vm_config *b)
{
#define SAME_STR(f) ck_assert_msg((!a->f && !b->f) || (a->f && b->f && !strcmp(a->f, b->f)), #f)
	ck_assert_str_eq(a->name, b->name);
	SAME_STR(kernel);
	SAME_STR(initrd);
	SAME_STR(cmdline);
	SAME_STR(cpu_model);
	SAME_STR(serial_path);
	SAME_STR(control_path);
	ck_assert_uint_eq(a->mem_size, b->mem_size);
	ck_assert_uint_eq(a->nr_cpus, b->nr_cpus);
	ck_assert_int_eq(a->serial, b->serial);
	ck_assert_uint_eq(a->nr_disks, b->nr_disks);
	for (unsigned i = 0; i < a->nr_disks; i++) {
		SAME_STR(disks[i].path);
		ck_assert_str_eq(a->disks[i].id, b->disks[i].id);
		ck_assert_int_eq(a->disks[i].cache_none, b->disks[i].cache_none);
		ck_assert_int_eq(a->disks[i].readonly, b->disks[i].readonly);
	}
#undef SAME_STR
}

/* to_json, print, parse the text, from_json: what a stream would do. */
static void round_trip(const struct vm_config *c)
{
	struct json_object *j;
	ck_assert_int_eq(vm_config__to_json(c, &j), 0);
	char *text = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
	json_object_put(j);
	j = json_tokener_parse(text);
	ck_assert_ptr_nonnull(j);
	struct vm_config back;
	struct err e = { 0 };
	ck_assert_msg(vm_config__from_json(j, &back, &e) == 0, "%s: %s", text, e.msg);
	assert_same(c, &back);
	/* And again to the identical text. */
	struct json_object *j2;
	ck_assert_int_eq(vm_config__to_json(&back, &j2), 0);
	ck_assert_str_eq(json_object_to_json_string_ext(j2, JSON_C_TO_STRING_PLAIN), text);
	json_object_put(j2);
	json_object_put(j);
	vm_config__free(&back);
	free(text);
}

START_TEST(round_trip_full)
{
	struct vm_config c;
	full_config(&c);
	round_trip(&c);
	vm_config__free(&c);
}
END_TEST

START_TEST(round_trip_defaults)
{
	struct vm_config c;
	vm_config__init(&c);
	round_trip(&c);
	c.serial = SERIAL_NONE;
	round_trip(&c);
	vm_config__free(&c);
}
END_TEST

START_TEST(round_trip_max_disks)
{
	struct vm_config c;
	struct err e = { 0 };
	vm_config__init(&c);
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		char spec[64];
		snprintf(spec, sizeof(spec), "/d%d.img", i);
		ck_assert_int_eq(vm_config__add_disk(&c, spec, &e), 0);
	}
	c.mem_size = VM_CONFIG_JSON_MEM_MAX;
	c.nr_cpus = VM_CONFIG_JSON_CPUS_MAX;
	round_trip(&c);
	vm_config__free(&c);
}
END_TEST

START_TEST(members_optional)
{
	struct json_object *j = json_tokener_parse("{\"memory\": 1073741824, \"kernel\": null}");
	struct vm_config c;
	struct err e = { 0 };
	ck_assert_int_eq(vm_config__from_json(j, &c, &e), 0);
	ck_assert_uint_eq(c.mem_size, GiB);
	ck_assert_uint_eq(c.nr_cpus, 1);
	ck_assert_ptr_null(c.kernel);
	ck_assert_int_eq(c.serial, SERIAL_STDIO);
	vm_config__free(&c);
	json_object_put(j);
}
END_TEST

/* Each must be refused with a message naming what is wrong. */
static const struct {
	const char *json;
	const char *why;
} bad[] = {
	{ "[]", "must be a JSON object" },
	{ "42", "must be a JSON object" },
	{ "{\"bogus\": 1}", "unknown member 'bogus'" },
	{ "{\"bad\\nname\": 1}", "unknown member 'bad?name' in" },
	{ "{\"name\": 5}", "name must be a string" },
	{ "{\"name\": null}", "name must be a string" },
	{ "{\"name\": \"0123456789012345678901234567890123456789012345678901234567890123\"}",
	  "name is longer" },
	{ "{\"name\": \"a\\nb\"}", "control character" },
	{ "{\"kernel\": \"/a\\u0000b\"}", "control character" },
	{ "{\"kernel\": \"\"}", "kernel is empty" },
	{ "{\"kernel\": [\"x\"]}", "kernel must be a string" },
	{ "{\"memory\": -4096}", "memory must be a non-negative integer" },
	{ "{\"memory\": 1.5e9}", "memory must be a non-negative integer" },
	{ "{\"memory\": \"512M\"}", "memory must be a non-negative integer" },
	{ "{\"memory\": 4096}", "out of range" },
	{ "{\"memory\": 18446744073709551615}", "out of range" },
	{ "{\"memory\": 99999999999999999999999}", "out of range" },
	{ "{\"memory\": 1073741825}", "not a multiple of 4096" },
	{ "{\"cpus\": 0}", "cpus 0 is out of range" },
	{ "{\"cpus\": 100000}", "out of range" },
	{ "{\"cpus\": true}", "cpus must be" },
	{ "{\"cpu_model\": \"qemu64; rm -rf\"}", "cpu_model must be" },
	{ "{\"disks\": {}}", "disks must be an array" },
	{ "{\"disks\": [1]}", "disks[0] must be an object" },
	{ "{\"disks\": [{\"path\": \"/d\"}]}", "disks[0] has no id" },
	{ "{\"disks\": [{\"id\": \"vda\"}]}", "disks[0] has no path" },
	{ "{\"disks\": [{\"id\": \"a/b\", \"path\": \"/d\"}]}", "disks[0].id must be" },
	{ "{\"disks\": [{\"id\": \"\", \"path\": \"/d\"}]}", "disks[0].id must be" },
	{ "{\"disks\": [{\"id\": \"0123456789012345678901234567890123\", \"path\": \"/d\"}]}",
	  "disks[0].id must be" },
	{ "{\"disks\": [{\"id\": \"a\\u0000b\", \"path\": \"/d\"}]}", "disks[0].id must be" },
	{ "{\"disks\": [{\"id\": \"a\", \"path\": \"/d\"}, {\"id\": \"a\", \"path\": \"/e\"}]}",
	  "disk id 'a' is used twice" },
	{ "{\"disks\": [{\"id\": \"a\", \"path\": \"/d\", \"cache\": \"unsafe\"}]}", "disks[0].cache" },
	{ "{\"disks\": [{\"id\": \"a\", \"path\": \"/d\", \"readonly\": 1}]}", "disks[0].readonly" },
	{ "{\"disks\": [{\"id\": \"a\", \"path\": \"/d\", \"x\": 1}]}", "unknown member 'x' in disks[0]" },
	{ "{\"disks\": [{\"id\": \"a\", \"path\": 7}]}", "disks[0].path must be a string" },
	{ "{\"disks\": [{\"id\":\"a\",\"path\":\"/d\"},{\"id\":\"b\",\"path\":\"/d\"},"
	  "{\"id\":\"c\",\"path\":\"/d\"},{\"id\":\"d\",\"path\":\"/d\"},{\"id\":\"e\",\"path\":\"/d\"},"
	  "{\"id\":\"f\",\"path\":\"/d\"},{\"id\":\"g\",\"path\":\"/d\"},{\"id\":\"h\",\"path\":\"/d\"},"
	  "{\"id\":\"i\",\"path\":\"/d\"}]}", "9 disks, at most 8" },
	{ "{\"serial\": \"tcp\"}", "serial must be" },
	{ "{\"serial\": \"file\"}", "needs a serial_path" },
	{ "{\"serial\": \"stdio\", \"serial_path\": \"/x\"}", "only for serial \"file\"" },
};

START_TEST(rejects_bad)
{
	struct json_object *j = json_tokener_parse(bad[_i].json);
	ck_assert_msg(j || !strcmp(bad[_i].json, "null"), "test JSON does not parse: %s", bad[_i].json);
	struct vm_config c;
	memset(&c, 0x5a, sizeof(c));	/* garbage: from_json must not read it */
	struct err e = { 0 };
	int r = vm_config__from_json(j, &c, &e);
	ck_assert_msg(r == -EINVAL, "%s: accepted (r=%d)", bad[_i].json, r);
	ck_assert_msg(strstr(e.msg, bad[_i].why), "%s: message '%s' lacks '%s'", bad[_i].json,
		      e.msg, bad[_i].why);
	/* The output is left empty and safe to free. */
	ck_assert_ptr_null(c.kernel);
	ck_assert_uint_eq(c.nr_disks, 0);
	vm_config__free(&c);
	json_object_put(j);
}
END_TEST

START_TEST(rejects_long_strings)
{
	size_t n = VM_CONFIG_JSON_PATH_MAX + 1;
	char *big = malloc(n + 64);
	int off = sprintf(big, "{\"kernel\": \"");
	memset(big + off, 'a', n);
	strcpy(big + off + n, "\"}");
	struct json_object *j = json_tokener_parse(big);
	struct vm_config c;
	struct err e = { 0 };
	ck_assert_int_eq(vm_config__from_json(j, &c, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "kernel is longer than 4095 bytes"));
	json_object_put(j);
	/* One byte less is fine. */
	big[off + n - 1] = '"';
	big[off + n] = '}';
	big[off + n + 1] = '\0';
	j = json_tokener_parse(big);
	err__clear(&e);
	ck_assert_msg(vm_config__from_json(j, &c, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(strlen(c.kernel), VM_CONFIG_JSON_PATH_MAX);
	vm_config__free(&c);
	json_object_put(j);
	free(big);
}
END_TEST

START_TEST(null_input)
{
	struct vm_config c;
	struct err e = { 0 };
	ck_assert_int_eq(vm_config__from_json(NULL, &c, &e), -EINVAL);
	vm_config__free(&c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vm-config-json");
	TCase *tc = tcase_create("json");
	tcase_add_test(tc, round_trip_full);
	tcase_add_test(tc, round_trip_defaults);
	tcase_add_test(tc, round_trip_max_disks);
	tcase_add_test(tc, members_optional);
	tcase_add_loop_test(tc, rejects_bad, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, rejects_long_strings);
	tcase_add_test(tc, null_input);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
