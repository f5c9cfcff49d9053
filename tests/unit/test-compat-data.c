/* The compat data: CPU models (the data file, its parser, agreement with
 * what vmm/cpuid.c builds), host profiles (collection, the strict JSON
 * reader, disk views). */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tests/unit/check-run.h"
#include "test-compat-util.h"
#include "vmhop/cpuid.h"

static char *slurp(const char *rel, size_t *len)
{
	const char *src = getenv("VMHOP_SRCDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", src ? src : ".", rel);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	char *buf = malloc(1 << 21);
	*len = fread(buf, 1, (1 << 21) - 1, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

START_TEST(models_builtin)
{
	size_t flen, blen;
	char *file = slurp("compat-matrix/cpu-models.conf", &flen);
	const char *b = cpu_models__builtin_text(&blen);
	ck_assert_uint_eq(flen, blen);
	ck_assert(!memcmp(file, b, flen));
	free(file);
	struct cpu_model_set *s = malloc(sizeof(*s));
	struct err e = { 0 };
	ck_assert_msg(cpu_models__builtin(s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(s->nmodels, 5);
	ck_assert_str_eq(cpu_models__find(s, NULL)->name, "baseline");
	ck_assert_ptr_eq(cpu_models__find(s, "qemu64"), cpu_models__find(s, "baseline"));
	ck_assert_ptr_null(cpu_models__find(s, "pentium9"));
	const struct cpu_model *base = cpu_models__find(s, "baseline");
	const struct cpu_model *v2 = cpu_models__find(s, "x86-64-v2");
	const struct cpu_model *v3 = cpu_models__find(s, "x86-64-v3");
	ck_assert_uint_eq(base->nfeat, 31);
	ck_assert_uint_eq(v2->nfeat, 36);
	ck_assert_uint_eq(v3->nfeat, 45);
	ck_assert(cpu_models__find(s, "host")->host && !cpu_models__find(s, "host")->no_xsave);
	ck_assert(cpu_models__find(s, "host-noxsave")->no_xsave);
	ck_assert_str_eq(base->brand, "vmhop baseline CPU");
	ck_assert_uint_eq(base->family, 15);
	ck_assert_uint_eq(base->model, 107);
	/* Each level includes the one before. */
	for (size_t i = 0; i < base->nfeat; i++)
		ck_assert_uint_eq(v2->feat[i], base->feat[i]);
	for (size_t i = 0; i < v2->nfeat; i++)
		ck_assert_uint_eq(v3->feat[i], v2->feat[i]);
	const struct cpu_feature *nx = cpu_models__feature(s, "nx");
	ck_assert(nx && nx->leaf == 0x80000001 && nx->subleaf == 0 && nx->reg == CPU_REG_EDX && nx->bit == 20);
	char names[200];
	cpu_models__names(s, names, sizeof(names));
	ck_assert_str_eq(names, "baseline (alias qemu64), x86-64-v2, x86-64-v3, host, host-noxsave");
	free(s);
}
END_TEST

static void bad(const char *text, const char *needle)
{
	struct cpu_model_set *s = malloc(sizeof(*s));
	struct err e = { 0 };
	ck_assert_int_lt(cpu_models__parse(s, text, strlen(text), &e), 0);
	ck_assert_msg(strstr(e.msg, needle), "'%s' lacks '%s'", e.msg, needle);
	free(s);
}

START_TEST(models_bad_data)
{
	const char *ok = "feature fpu 1 0 edx 0\nmodel m family 6 model 1 stepping 1 max-basic 0xd\n"
			 "features m fpu\ndefault m\n";
	struct cpu_model_set *s = malloc(sizeof(*s));
	struct err e = { 0 };
	ck_assert_msg(cpu_models__parse(s, ok, strlen(ok), &e) == 0, "%s", e.msg);
	free(s);
	bad("feature fpu 1 0 edx 0\nmodel m family 6\nfeatures m sse\ndefault m\n",
	    "CPU models line 3: unknown feature 'sse'");
	bad("feature fpu 1 0 exx 0\n", "line 1: register must be eax, ebx, ecx or edx");
	bad("feature fpu 1 0 edx 32\n", "line 1: bad number");
	bad("feature fpu 1 0 edx 0\nfeature fpu2 1 0 edx 0\n", "line 2: fpu2 names the same bit as fpu");
	bad("model h host\nfeatures h fpu\n", "line 2: host model h takes no feature list");
	bad("model m family 6\nmodel m family 6\n", "line 2: model m defined twice");
	bad("feature fpu 1 0 edx 0\nmodel m family 6\nfeatures m fpu\n", "no 'default' line");
	bad("feature fpu 1 0 edx 0\nmodel m family 6\ndefault m\n", "model m has no features");
	bad("model m\n", "line 1: a model is either 'host' or has family/model/stepping");
	bad("frob\n", "line 1: unknown keyword 'frob'");
	bad("model m family 6\nfeatures m @n\n", "line 2: unknown model @n");
}
END_TEST

/* Converts a fixture's supported CPUID into what KVM returns. */
static struct kvm_cpuid2 *to_kvm(const struct host_profile *p)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
	c->nent = (uint32_t)p->ncpuid;
	for (size_t i = 0; i < p->ncpuid; i++) {
		const struct cpuid_leaf *l = &p->cpuid[i];
		c->entries[i] = (struct kvm_cpuid_entry2){ .function = l->function, .index = l->index,
			.flags = l->flags, .eax = l->eax, .ebx = l->ebx, .ecx = l->ecx, .edx = l->edx };
	}
	return c;
}

/* The data names exactly the bits vmm/cpuid.c gives a guest of each model
 * (the feature leaves 1, 7, 0x80000001, 0x40000001; the hypervisor bit and
 * per-vCPU fields aside), on a host that supplies every model. */
START_TEST(models_match_vmm)
{
	struct host_profile *p = fixture("intel-host.json");
	struct kvm_cpuid2 *sup = to_kvm(p);
	struct cpu_model_set *s = malloc(sizeof(*s));
	struct err e = { 0 };
	ck_assert(cpu_models__builtin(s, &e) == 0);
	for (size_t m = 0; m < s->nmodels; m++) {
		const struct cpu_model *dm = &s->models[m];
		if (dm->host)
			continue;
		const struct cpuid_model *vm = cpuid__find_model(dm->name);
		ck_assert_msg(vm != NULL, "vmm/cpuid.c lacks model %s", dm->name);
		struct kvm_cpuid2 *out;
		ck_assert_msg(cpuid__build(vm, sup, 0, 1, 1000000, &out, &e) == 0, "%s: %s", dm->name, e.msg);
		struct cpuid_leaf want[4] = { { .function = 1 }, { .function = 7 },
					      { .function = 0x80000001 }, { .function = 0x40000001 } };
		for (size_t i = 0; i < dm->nfeat; i++) {
			const struct cpu_feature *f = cpu_models__required(s, dm, i);
			for (int k = 0; k < 4; k++)
				if (want[k].function == f->leaf) {
					uint32_t *r = f->reg == CPU_REG_EAX ? &want[k].eax : f->reg == CPU_REG_EBX ?
						&want[k].ebx : f->reg == CPU_REG_ECX ? &want[k].ecx : &want[k].edx;
					*r |= 1u << f->bit;
				}
		}
		for (int k = 0; k < 4; k++) {
			struct kvm_cpuid_entry2 *g = cpuid__entry(out, want[k].function, 0);
			ck_assert(g != NULL);
			uint32_t ecx = g->ecx, edx = g->edx;
			if (want[k].function == 1) {
				ecx &= ~(1u << 31);	/* hypervisor */
				edx &= ~(1u << 28);	/* HTT (per-vCPU topology) */
			}
			ck_assert_msg(g->eax == want[k].eax || want[k].function == 1,
				      "%s leaf 0x%x eax 0x%x, data 0x%x", dm->name, want[k].function, g->eax, want[k].eax);
			if (want[k].function != 1)
				ck_assert_msg(g->ebx == want[k].ebx, "%s leaf 0x%x ebx 0x%x, data 0x%x",
					      dm->name, want[k].function, g->ebx, want[k].ebx);
			ck_assert_msg(ecx == want[k].ecx, "%s leaf 0x%x ecx 0x%x, data 0x%x", dm->name,
				      want[k].function, ecx, want[k].ecx);
			ck_assert_msg(edx == want[k].edx, "%s leaf 0x%x edx 0x%x, data 0x%x", dm->name,
				      want[k].function, edx, want[k].edx);
		}
		uint32_t l1 = cpuid__entry(out, 1, 0)->eax;
		ck_assert_uint_eq((l1 >> 4 & 0xf) | (l1 >> 12 & 0xf0), dm->model);
		free(out);
	}
	free(s);
	free(sup);
	free(p);
}
END_TEST

START_TEST(models_missing)
{
	struct host_profile *p = fixture("amd-no-cx16.json");
	struct cpu_model_set *s = malloc(sizeof(*s));
	struct err e = { 0 };
	ck_assert(cpu_models__builtin(s, &e) == 0);
	char buf[64];
	ck_assert_uint_eq(cpu_models__missing(s, cpu_models__find(s, "baseline"), p->cpuid, p->ncpuid,
					      buf, sizeof(buf)), 1);
	ck_assert_str_eq(buf, "cx16");
	ck_assert_uint_eq(cpu_models__missing(s, cpu_models__find(s, "x86-64-v3"), p->cpuid, p->ncpuid,
					      buf, 24), 15);
	ck_assert_msg(strstr(buf, "..."), "%s", buf);
	ck_assert_uint_eq(cpu_models__missing(s, cpu_models__find(s, "host"), p->cpuid, p->ncpuid,
					      buf, sizeof(buf)), 0);
	free(s);
	free(p);
}
END_TEST

START_TEST(profile_roundtrip)
{
	struct host_profile *a = fixture("intel-host.json"), *b = calloc(1, sizeof(*b));
	struct err e = { 0 };
	struct compat_disk_view *v = &a->disks[0];
	a->have_disks = true;
	a->ndisks = 1;
	snprintf(v->id, sizeof(v->id), "vda");
	snprintf(v->path, sizeof(v->path), "/srv/vda.img");
	v->exists = v->writable = true;
	v->size = 1ULL << 40;
	v->dev = 2049;
	v->ino = 1234567;
	snprintf(v->head_sha256, sizeof(v->head_sha256), "%064d", 7);
	char *text;
	ck_assert_int_eq(host_profile__to_text(a, &text), 0);
	ck_assert_ptr_null(strchr(text, '\n'));
	ck_assert_msg(host_profile__parse(text, strlen(text), b, &e) == 0, "%s", e.msg);
	free(text);
	ck_assert_str_eq(b->vendor, "GenuineIntel");
	ck_assert_uint_eq(b->ncpuid, a->ncpuid);
	ck_assert(!memcmp(b->cpuid, a->cpuid, sizeof(a->cpuid[0]) * a->ncpuid));
	ck_assert(!memcmp(b->caps, a->caps, sizeof(a->caps)));
	ck_assert_uint_eq(b->disks[0].size, 1ULL << 40);
	ck_assert_str_eq(b->disks[0].head_sha256, v->head_sha256);
	ck_assert_str_eq(b->models[2], "x86-64-v3");
	ck_assert_uint_eq(b->mem_total, a->mem_total);
	free(a);
	free(b);
}
END_TEST

/* Replaces the first `from` in the fixture's text with `to` and parses. */
static int parse_edited(const char *from, const char *to, struct err *e)
{
	size_t len;
	char *text = slurp("tests/compat/fixtures/amd-host.json", &len);
	char *at = strstr(text, from);
	ck_assert_msg(at != NULL, "fixture lacks %s", from);
	size_t n = len - strlen(from) + strlen(to);
	char *out = malloc(n + 1);
	size_t pre = (size_t)(at - text);
	memcpy(out, text, pre);
	strcpy(out + pre, to);
	strcat(out, at + strlen(from));
	struct host_profile *p = malloc(sizeof(*p));
	err__clear(e);
	int r = host_profile__parse(out, strlen(out), p, e);
	free(p);
	free(out);
	free(text);
	return r;
}

START_TEST(profile_strict)
{
	struct err e;
	ck_assert_int_eq(parse_edited("\"profile_version\": 1", "\"profile_version\": 1", &e), 0);
	static const struct { const char *from, *to, *needle; } cases[] = {
		{ "\"profile_version\": 1", "\"profile_version\": 2", "profile_version 2, this build reads 1" },
		{ "\"profile_version\": 1", "\"profile_version\": 1, \"x\": 1", "unknown member 'x' in the profile" },
		{ "\"vendor\": \"AuthenticAMD\"", "\"vendor\": \"AuthenticAMD1\"", "cpu.vendor must be 1..12 bytes" },
		{ "\"vendor\": \"AuthenticAMD\"", "\"vendor\": 7", "cpu.vendor must be a string" },
		{ "\"nx\": true", "\"nx\": 1", "cpu.nx must be true or false" },
		{ "\"irqchip\": 1", "\"irqchip\": -1", "kvm.caps.irqchip must be an integer" },
		{ "\"irqchip\": 1", "\"irqchip\": 1, \"warp_drive\": 1", "unknown member 'warp_drive' in kvm.caps" },
		{ "\"eax\": \"0x0000001c\"", "\"eax\": \"0x1000000001\"", "kvm.supported_cpuid[0].eax must be a hex string" },
		{ "\"eax\": \"0x0000001c\"", "\"eax\": \"28\"", "must be a hex string" },
		{ "\"cores\": 2", "\"cores\": 0", "host.cores must be at least 1" },
		{ "\"level\": \"SP3\"", "\"level\": \"SP3\\u0001\"", "release.level contains a control character" },
		{ "\"level\": \"SP3\"", "\"level\": \"S P3\"", "release.level has characters other than" },
		{ "\"reads_min\": 1", "\"reads_min\": 9", "release.reads_min is above reads_max" },
		{ "\"layout\": \"vmhop-x86-pc-1\"", "\"layout\": \"\"", "machine.layout must be 1..63 bytes" },
		{ "\"host-noxsave\"", "\"host noxsave\"", "cpu_models[2] must be a name" },
		{ "\"profile_version\": 1", "\"profile_version\": 1, \"disks\": [{}]", "disks[0].id is missing" },
		{ "\"profile_version\": 1", "\"profile_version\": 1, \"disks\": [{\"id\": \"vda\"}]", "disks[0].path is missing" },
		{ "\"hostname\": \"vm\"", "\"hostname\": [[[[[[[[[[1]]]]]]]]]]", "not valid JSON" },
		{ "\"profile_version\": 1", "\"profile_version\": 1,", "not valid JSON" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_msg(parse_edited(cases[i].from, cases[i].to, &e) < 0, "case %zu accepted", i);
		ck_assert_msg(strstr(e.msg, cases[i].needle), "case %zu: '%s' lacks '%s'", i, e.msg,
			      cases[i].needle);
	}
	/* Trailing data, size and entry-count bounds. */
	size_t len;
	char *text = slurp("tests/compat/fixtures/amd-host.json", &len);
	struct host_profile *p = malloc(sizeof(*p));
	char *more = malloc(len + 8);
	memcpy(more, text, len);
	memcpy(more + len, " {}", 4);
	ck_assert_int_lt(host_profile__parse(more, len + 3, p, &e), 0);
	ck_assert_msg(strstr(e.msg, "trailing data") || strstr(e.msg, "not valid JSON"), "%s", e.msg);
	ck_assert_int_lt(host_profile__parse(text, HOST_PROFILE_JSON_MAX + 1, p, &e), 0);
	free(more);
	struct json_object *j = json_tokener_parse(text);
	struct json_object *arr = json_object_object_get(json_object_object_get(j, "kvm"), "supported_cpuid");
	while (json_object_array_length(arr) <= HOST_PROFILE_MAX_CPUID)
		json_object_array_add(arr, json_object_get(json_object_array_get_idx(arr, 0)));
	err__clear(&e);
	ck_assert_int_lt(host_profile__from_json(j, p, &e), 0);
	ck_assert_msg(strstr(e.msg, "kvm.supported_cpuid must be an array of at most 256"), "%s", e.msg);
	json_object_put(j);
	/* A repeated leaf. */
	j = json_tokener_parse(text);
	arr = json_object_object_get(json_object_object_get(j, "kvm"), "supported_cpuid");
	json_object_array_add(arr, json_object_get(json_object_array_get_idx(arr, 0)));
	err__clear(&e);
	ck_assert_int_lt(host_profile__from_json(j, p, &e), 0);
	ck_assert_msg(strstr(e.msg, "repeats leaf 0x0 index 0"), "%s", e.msg);
	json_object_put(j);
	free(p);
	free(text);
}
END_TEST

/* Mutated profiles: the reader refuses or accepts, never misbehaves (the
 * sanitizers watch). A deterministic generator: no global state. */
START_TEST(profile_mutations)
{
	size_t len;
	char *text = slurp("tests/compat/fixtures/amd-host.json", &len);
	char *buf = malloc(len + 64);
	struct host_profile *p = malloc(sizeof(*p));
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	unsigned accepted = 0;
	static const char junk[] = "{}[]\",:0123456789-eE.tfn\\ \x01\xff";
	for (int i = 0; i < 3000; i++) {
		memcpy(buf, text, len);
		size_t n = len;
		for (int k = 0; k < 1 + i % 4; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t at = (size_t)(x % n);
			switch (x >> 60 & 3) {
			case 0: buf[at] = junk[(x >> 32) % (sizeof(junk) - 1)]; break;
			case 1: n = at; break;	/* truncate */
			case 2: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
			default: buf[at] = (char)(x >> 40); break;
			}
			if (!n)
				n = 1;
		}
		struct err e = { 0 };
		if (host_profile__parse(buf, n, p, &e) == 0)
			accepted++;
		else
			ck_assert_msg(e.msg[0] && !strchr(e.msg, '\n'), "one-line error: %s", e.msg);
	}
	ck_assert_uint_lt(accepted, 3000);
	free(p);
	free(buf);
	free(text);
}
END_TEST

START_TEST(profile_collect)
{
	struct host_profile *p = malloc(sizeof(*p));
	struct err e = { 0 };
	setenv("VMHOP_KVM_DEVICE", "/nonexistent/kvm", 1);
	ck_assert_int_lt(host_profile__collect(p, &e), 0);
	ck_assert_msg(strstr(e.msg, "cannot open /nonexistent/kvm"), "%s", e.msg);
	unsetenv("VMHOP_KVM_DEVICE");
	if (access("/dev/kvm", R_OK | W_OK)) {
		free(p);
		return;	/* no KVM here: the rest needs it */
	}
	err__clear(&e);
	ck_assert_msg(host_profile__collect(p, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(strlen(p->vendor), 12);
	ck_assert_int_eq(p->kvm_api_version, 12);
	ck_assert(p->ncpuid > 0 && p->cores > 0 && p->mem_total >= p->mem_available);
	ck_assert(p->caps[HOST_CAP_IRQCHIP] > 0);
	ck_assert_str_eq(p->release, "SP3");
	ck_assert_str_eq(p->models[p->nmodels - 2], "host");
	setenv(RELEASE_ENV, "SP1", 1);
	ck_assert_msg(host_profile__collect(p, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(p->release, "SP1");
	ck_assert_uint_eq(p->format_write, 1);
	unsetenv(RELEASE_ENV);
	free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("compat-data");
	TCase *tc = tcase_create("data");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, models_builtin);
	tcase_add_test(tc, models_bad_data);
	tcase_add_test(tc, models_match_vmm);
	tcase_add_test(tc, models_missing);
	tcase_add_test(tc, profile_roundtrip);
	tcase_add_test(tc, profile_strict);
	tcase_add_test(tc, profile_mutations);
	tcase_add_test(tc, profile_collect);
	suite_add_tcase(s, tc);
	return check_run(s);
}
