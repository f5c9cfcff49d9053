/* The pre-flight rules: for each, a move where it FAILs (or WARNs) with the
 * expected message and one where it PASSes, on the recorded fixtures of
 * tests/compat/fixtures/ (see its README). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tests/unit/check-run.h"
#include "test-compat-util.h"
#include "vmhop/vm-config-json.h"

struct fx {
	struct vm_config vm;
	struct compat_vm_ext ext;
	struct compat_opts opts;
	struct compat_report r;
};

static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));
	ck_assert(f != NULL);
	typical_vm(&f->vm);
	f->opts.ext = &f->ext;
	return f;
}

static void fx_free(struct fx *f)
{
	vm_config__free(&f->vm);
	free(f);
}

static void run(struct fx *f, const char *src, const char *dst)
{
	struct host_profile *s = fixture(src), *d = fixture(dst);
	ck_assert_int_eq(compat__check(&f->vm, s, d, &f->opts, &f->r), 0);
	free(s);
	free(d);
}

static void run_p(struct fx *f, const struct host_profile *s, const struct host_profile *d)
{
	ck_assert_int_eq(compat__check(&f->vm, s, d, &f->opts, &f->r), 0);
}

START_TEST(typical_pair_passes)
{
	struct fx *f = fx_new();
	f->vm.nr_disks = 0;
	free(f->vm.disks[0].path);
	f->vm.disks[0].path = NULL;
	run(f, "amd-host.json", "sp3-host.json");
	ck_assert_msg(f->r.fail == 0 && f->r.warn == 0, "fail %u warn %u", f->r.fail, f->r.warn);
	ck_assert_int_eq(compat__exit_code(&f->r), 0);
	ck_assert_ptr_null(compat__first_failure(&f->r));
	/* Every rule speaks. */
	static const char *const rules[] = { "cpu-vendor", "cpu-model", "nx", "disk-cache",
		"disk-reach", "host-devices", "memory-backing", "release", "stream-format",
		"vcpu-limit", "vcpu-overcommit", "memory", "guest-definition" };
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		ck_assert_msg(row_of(&f->r, rules[i], 0), "no row for %s", rules[i]);
	fx_free(f);
}
END_TEST

START_TEST(cpu_vendor)
{
	struct fx *f = fx_new();
	run(f, "intel-host.json", "amd-host.json");
	ck_row(&f->r, "cpu-vendor", 0, COMPAT_FAIL,
	       "CPU vendor differs: source GenuineIntel, destination AuthenticAMD");
	ck_assert_int_eq(compat__exit_code(&f->r), 2);
	run(f, "intel-host.json", "intel-host.json");
	ck_row(&f->r, "cpu-vendor", 0, COMPAT_PASS, "CPU vendor GenuineIntel on both hosts");
	fx_free(f);
}
END_TEST

START_TEST(cpu_model_features)
{
	struct fx *f = fx_new();
	run(f, "amd-host.json", "amd-no-cx16.json");
	ck_row(&f->r, "cpu-model", 0, COMPAT_FAIL,
	       "CPU model baseline needs 1 feature the destination's KVM cannot supply: cx16");
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "cpu-model", 0, COMPAT_PASS, "CPU model baseline: all 31 features supplied");
	/* qemu64 is the baseline's alias. */
	f->vm.cpu_model = strdup("qemu64");
	run(f, "amd-host.json", "amd-no-cx16.json");
	ck_row(&f->r, "cpu-model", 0, COMPAT_FAIL, "CPU model baseline needs 1 feature");
	free(f->vm.cpu_model);
	/* x86-64-v3 from Intel to this AMD (no sse3 and the rest). */
	f->vm.cpu_model = strdup("x86-64-v3");
	run(f, "intel-host.json", "intel-host.json");
	ck_row(&f->r, "cpu-model", 0, COMPAT_PASS, "CPU model x86-64-v3: all 45 features");
	run(f, "intel-host.json", "amd-host.json");
	ck_row(&f->r, "cpu-model", 0, COMPAT_FAIL,
	       "CPU model x86-64-v3 needs 14 features the destination's KVM cannot supply: sse3 popcnt sse4_1");
	free(f->vm.cpu_model);
	f->vm.cpu_model = strdup("pentium9");
	run(f, "amd-host.json", "amd-host.json");
	ck_row(&f->r, "cpu-model", 0, COMPAT_FAIL, "CPU model pentium9 is unknown to this build");
	fx_free(f);
}
END_TEST

START_TEST(cpu_model_not_listed)
{
	struct fx *f = fx_new();
	struct host_profile *s = fixture("intel-host.json"), *d = fixture("intel-host.json");
	f->vm.cpu_model = strdup("x86-64-v2");
	d->nmodels = 1;	/* an older vmhop that knows baseline only */
	run_p(f, s, d);
	ck_row(&f->r, "cpu-model", 0, COMPAT_FAIL,
	       "CPU model x86-64-v2 is not among the models the destination's vmhop can run");
	free(s);
	free(d);
	fx_free(f);
}
END_TEST

START_TEST(cpu_model_host)
{
	struct fx *f = fx_new();
	f->vm.cpu_model = strdup("host");
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "cpu-model", 0, COMPAT_PASS, "CPU model host: identical supported CPUID on both hosts");
	run(f, "amd-host.json", "amd-no-cx16.json");
	ck_row(&f->r, "cpu-model", 0, COMPAT_FAIL,
	       "CPU model host: the destination's supported CPUID differs from the source's (1 leaves differ: 0x1.0");
	/* A leaf only the destination has differs too. */
	struct host_profile *s = fixture("amd-host.json"), *d = fixture("amd-host.json");
	s->ncpuid--;
	run_p(f, s, d);
	ck_row(&f->r, "cpu-model", 0, COMPAT_FAIL, "1 only on the destination");
	/* The APIC id of the CPU a profile was taken on is no difference. */
	s->ncpuid++;
	for (size_t i = 0; i < d->ncpuid; i++) {
		if (d->cpuid[i].function == 1)
			d->cpuid[i].ebx ^= 0x01000000u;
		if (d->cpuid[i].function == 0xb)
			d->cpuid[i].edx ^= 1u;
	}
	run_p(f, s, d);
	ck_row(&f->r, "cpu-model", 0, COMPAT_PASS, "CPU model host: identical supported CPUID");
	free(s);
	free(d);
	fx_free(f);
}
END_TEST

START_TEST(nx)
{
	struct fx *f = fx_new();
	run(f, "amd-host.json", "nx-off.json");
	ck_row(&f->r, "nx", 0, COMPAT_FAIL, "NX is enabled on the source and disabled on the destination");
	run(f, "nx-off.json", "nx-off.json");
	ck_row(&f->r, "nx", 0, COMPAT_PASS, "NX disabled on both hosts");
	run(f, "amd-host.json", "amd-host.json");
	ck_row(&f->r, "nx", 0, COMPAT_PASS, "NX enabled on both hosts");
	struct host_profile *s = fixture("amd-host.json"), *d = fixture("amd-host.json");
	d->kvm_nx = false;
	run_p(f, s, d);
	ck_row(&f->r, "nx", 0, COMPAT_FAIL, "KVM offers NX to guests on the source only");
	free(s);
	free(d);
	fx_free(f);
}
END_TEST

START_TEST(disk_cache)
{
	struct fx *f = fx_new();
	f->vm.disks[0].cache_none = false;
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "disk-cache", 0, COMPAT_FAIL,
	       "disk vda: cache=writeback; writable disks must use cache=none to migrate safely");
	ck_assert_str_eq(row_of(&f->r, "disk-cache", 0)->fix, "restart the VM with cache=none or pass --unsafe");
	f->opts.unsafe = true;
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "disk-cache", 0, COMPAT_WARN, "disk vda: cache=writeback on a writable disk, allowed by --unsafe");
	f->opts.unsafe = false;
	/* A copied disk is read back through the page cache: safe. */
	bool copied[VM_MAX_DISKS] = { true };
	f->opts.disk_copied = copied;
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "disk-cache", 0, COMPAT_PASS, "disk vda: cache=writeback, copied with the VM");
	f->opts.disk_copied = NULL;
	f->vm.disks[0].readonly = true;
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "disk-cache", 0, COMPAT_PASS, "disk vda: read-only");
	f->vm.disks[0].readonly = false;
	f->vm.disks[0].cache_none = true;
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "disk-cache", 0, COMPAT_PASS, "disk vda: cache=none");
	fx_free(f);
}
END_TEST

static void write_file(const char *path, const char *text, size_t size)
{
	FILE *fp = fopen(path, "w");
	ck_assert(fp != NULL);
	fputs(text, fp);
	ck_assert_int_eq(fclose(fp), 0);
	ck_assert_int_eq(truncate(path, (off_t)size), 0);
}

START_TEST(disk_reach)
{
	struct fx *f = fx_new();
	char dir[] = "/tmp/vmhop-compat-XXXXXX", a[128], b[128];
	ck_assert(mkdtemp(dir) != NULL);
	snprintf(a, sizeof(a), "%s/a.img", dir);
	snprintf(b, sizeof(b), "%s/b.img", dir);
	write_file(a, "disk A", 1 << 20);
	write_file(b, "disk B", 1 << 20);
	free(f->vm.disks[0].path);
	f->vm.disks[0].path = strdup(a);
	struct host_profile *s = fixture("amd-host.json"), *d = fixture("sp3-host.json");
	struct err e = { 0 };

	/* No view from the destination: not checked. */
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_WARN, "disk vda: not checked: the destination's profile has no view of");

	ck_assert_int_eq(host_profile__view_disks(s, &f->vm, NULL, 0, &e), 0);
	ck_assert(s->disks[0].exists && s->disks[0].size == 1 << 20 && strlen(s->disks[0].head_sha256) == 64);
	/* Same file from the destination's side: pass. */
	*d = *s;
	snprintf(d->hostname, sizeof(d->hostname), "other");
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_PASS, "same size (1048576 bytes) and the same file");
	/* Another boot (another host): compared by content. */
	snprintf(d->boot_id, sizeof(d->boot_id), "another-boot");
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_PASS, "the same first 64 KiB");

	/* Destination maps the path to another file: same host, other inode. */
	char map[300];
	snprintf(map, sizeof(map), "%s=%s", a, b);
	const char *maps[] = { map };
	*d = *s;
	ck_assert_int_eq(host_profile__view_disks(d, &f->vm, maps, 1, &e), 0);
	ck_assert_str_eq(d->disks[0].path, b);
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_FAIL, "is another file than");
	snprintf(d->boot_id, sizeof(d->boot_id), "another-boot");
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_WARN, "the first 64 KiB of");

	/* Size differs. */
	ck_assert_int_eq(truncate(b, 2 << 20), 0);
	ck_assert_int_eq(host_profile__view_disks(d, &f->vm, maps, 1, &e), 0);
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_FAIL, "size differs: 1048576 bytes at");

	/* Missing on the destination. */
	snprintf(map, sizeof(map), "%s=%s/missing.img", a, dir);
	ck_assert_int_eq(host_profile__view_disks(d, &f->vm, maps, 1, &e), 0);
	ck_assert(!d->disks[0].exists);
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_FAIL, "missing.img cannot be opened as a disk on the destination");

	/* A directory is no disk. */
	snprintf(map, sizeof(map), "%s=%s", a, dir);
	ck_assert_int_eq(host_profile__view_disks(d, &f->vm, maps, 1, &e), 0);
	ck_assert(!d->disks[0].exists);

	/* Chosen for copying: not checked. */
	bool copied[VM_MAX_DISKS] = { true };
	f->opts.disk_copied = copied;
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_PASS, "disk vda: copied with the VM");
	f->opts.disk_copied = NULL;

	/* Not writable there. */
	*d = *s;
	d->disks[0].writable = false;
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_FAIL, "is not writable on the destination");
	/* No source view. */
	*d = *s;
	s->have_disks = false;
	run_p(f, s, d);
	ck_row(&f->r, "disk-reach", 0, COMPAT_WARN, "identity not compared");

	unlink(a);
	unlink(b);
	rmdir(dir);
	free(s);
	free(d);
	fx_free(f);
}
END_TEST

START_TEST(host_devices_and_backing)
{
	struct fx *f = fx_new();
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "host-devices", 0, COMPAT_PASS, "no assigned host devices");
	ck_row(&f->r, "memory-backing", 0, COMPAT_PASS, "memfd");
	snprintf(f->ext.host_devices[0], sizeof(f->ext.host_devices[0]), "0000:3b:00.0");
	f->ext.nhost_devices = 1;
	f->ext.backing = COMPAT_MEM_FILE;
	snprintf(f->ext.memory_path, sizeof(f->ext.memory_path), "/var/vm1.ram");
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "host-devices", 0, COMPAT_FAIL,
	       "host device 0000:3b:00.0 is assigned to the guest: its state lives in hardware and cannot move");
	ck_row(&f->r, "memory-backing", 0, COMPAT_FAIL, "guest RAM is backed by the file /var/vm1.ram");
	f->ext.backing = COMPAT_MEM_HUGETLBFS;
	run(f, "amd-host.json", "sp3-host.json");
	ck_row(&f->r, "memory-backing", 0, COMPAT_FAIL, "guest RAM is on hugetlbfs /var/vm1.ram");
	fx_free(f);
}
END_TEST

START_TEST(release_levels)
{
	struct fx *f = fx_new();
	run(f, "sp3-host.json", "sp2-host.json");
	ck_row(&f->r, "release", 0, COMPAT_FAIL,
	       "release SP3 -> SP2: moving to an older release level is refused (SP2 accepts SP1..SP2)");
	f->opts.unsafe = true;	/* never overridable */
	run(f, "sp3-host.json", "sp1-host.json");
	ck_row(&f->r, "release", 0, COMPAT_FAIL, "release SP3 -> SP1: moving to an older release level is refused (SP1 accepts SP1)");
	ck_assert_int_eq(compat__exit_code(&f->r), 2);
	f->opts.unsafe = false;
	run(f, "sp2-host.json", "sp1-host.json");
	ck_row(&f->r, "release", 0, COMPAT_FAIL, "release SP2 -> SP1");
	run(f, "sp1-host.json", "sp3-host.json");
	ck_row(&f->r, "release", 0, COMPAT_PASS, "release SP1 -> SP3 allowed by the matrix");
	run(f, "sp2-host.json", "sp2-host.json");
	ck_row(&f->r, "release", 0, COMPAT_PASS, "release SP2 -> SP2 allowed");
	struct host_profile *s = fixture("sp3-host.json"), *d = fixture("sp3-host.json");
	snprintf(s->release, sizeof(s->release), "SP4");
	s->release_ordinal = 4;
	run_p(f, s, d);
	ck_row(&f->r, "release", 0, COMPAT_FAIL, "release level SP4 of the source is unknown to this host's matrix");
	free(s);
	free(d);
	fx_free(f);
}
END_TEST

START_TEST(stream_format)
{
	struct fx *f = fx_new();
	run(f, "sp3-host.json", "sp2-host.json");
	ck_row(&f->r, "stream-format", 0, COMPAT_FAIL,
	       "stream format 3 (written by SP3) is not readable by the destination (SP2 reads 1..2)");
	run(f, "sp2-host.json", "sp3-host.json");
	ck_row(&f->r, "stream-format", 0, COMPAT_PASS, "stream format 2 readable by the destination (reads 1..3)");
	fx_free(f);
}
END_TEST

START_TEST(limits)
{
	struct fx *f = fx_new();
	struct host_profile *s = fixture("amd-host.json"), *d = fixture("amd-host.json");
	d->caps[HOST_CAP_MAX_VCPUS] = 16;
	d->cores = 2;
	d->mem_total = 8ULL << 30;
	d->mem_available = 4ULL << 30;
	run_p(f, s, d);
	ck_row(&f->r, "vcpu-limit", 0, COMPAT_PASS, "2 vCPUs, the destination's KVM allows 16");
	ck_row(&f->r, "vcpu-overcommit", 0, COMPAT_PASS, "2 vCPUs on the destination after the move, 2 cores");
	ck_row(&f->r, "memory", 0, COMPAT_PASS, "guest memory 1024 MiB, the destination has 4096 MiB available");
	f->vm.nr_cpus = 17;
	run_p(f, s, d);
	ck_row(&f->r, "vcpu-limit", 0, COMPAT_FAIL, "17 vCPUs, the destination's KVM allows at most 16");
	ck_row(&f->r, "vcpu-overcommit", 0, COMPAT_WARN, "17 vCPUs on the destination after the move (0 already there) on 2 cores: more than 8 per core");
	f->vm.nr_cpus = 4;
	d->vcpus_in_use = 13;
	run_p(f, s, d);
	ck_row(&f->r, "vcpu-overcommit", 0, COMPAT_WARN, "17 vCPUs on the destination after the move (13 already there)");
	d->vcpus_in_use = 12;
	run_p(f, s, d);
	ck_row(&f->r, "vcpu-overcommit", 0, COMPAT_PASS, "16 vCPUs");
	f->vm.mem_size = 6ULL << 30;
	run_p(f, s, d);
	ck_row(&f->r, "memory", 0, COMPAT_WARN, "guest memory 6144 MiB, the destination has 4096 MiB available");
	ck_assert_int_eq(compat__exit_code(&f->r), 1);
	f->vm.mem_size = 9ULL << 30;
	run_p(f, s, d);
	ck_row(&f->r, "memory", 0, COMPAT_FAIL, "guest memory 9216 MiB, the destination has 8192 MiB in all");
	free(s);
	free(d);
	fx_free(f);
}
END_TEST

START_TEST(guest_definition)
{
	struct fx *f = fx_new();
	struct host_profile *s = fixture("amd-host.json"), *d = fixture("amd-host.json");
	run_p(f, s, d);
	ck_row(&f->r, "guest-definition", 0, COMPAT_PASS, "machine vmhop-x86-pc-1 with 1 disk: the destination builds it");
	snprintf(d->machine, sizeof(d->machine), "vmhop-x86-pc-2");
	run_p(f, s, d);
	ck_row(&f->r, "guest-definition", 0, COMPAT_FAIL, "machine layout vmhop-x86-pc-1 on the source, the destination builds vmhop-x86-pc-2");
	*d = *s;
	for (size_t i = 0; i < d->ndevices; i++)
		if (!strcmp(d->devices[i], "virtio-blk-pci"))
			snprintf(d->devices[i], sizeof(d->devices[i]), "virtio-net-pci");
	run_p(f, s, d);
	ck_row(&f->r, "guest-definition", 0, COMPAT_FAIL, "the destination lacks devices this VM uses: virtio-blk-pci");
	*d = *s;
	d->max_disks = 0;
	run_p(f, s, d);
	ck_row(&f->r, "guest-definition", 0, COMPAT_FAIL, "1 disks, the destination takes at most 0");
	*d = *s;
	d->caps[HOST_CAP_IRQFD] = 0;
	run_p(f, s, d);
	ck_row(&f->r, "guest-definition", 0, COMPAT_FAIL, "the destination's KVM cannot build this machine (API version 12, lacks irqfd)");
	free(s);
	free(d);
	fx_free(f);
}
END_TEST

START_TEST(report_outputs)
{
	struct fx *f = fx_new();
	f->vm.disks[0].cache_none = false;
	run(f, "sp3-host.json", "sp2-host.json");
	ck_assert_int_eq(compat__exit_code(&f->r), 2);
	ck_assert_str_eq(compat__first_failure(&f->r)->rule, "disk-cache");
	struct json_object *j;
	ck_assert_int_eq(compat__report_to_json(&f->r, &j), 0);
	ck_assert_str_eq(json_object_get_string(json_object_object_get(j, "verdict")), "fail");
	ck_assert_int_eq(json_object_get_int(json_object_object_get(j, "exit_code")), 2);
	struct json_object *rows = json_object_object_get(j, "rows");
	ck_assert_uint_eq(json_object_array_length(rows), f->r.n);
	struct json_object *r0 = json_object_array_get_idx(rows, 0);
	ck_assert_str_eq(json_object_get_string(json_object_object_get(r0, "rule")), "cpu-vendor");
	ck_assert_str_eq(json_object_get_string(json_object_object_get(r0, "status")), "PASS");
	json_object_put(j);
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	compat__print(m, &f->r);
	fclose(m);
	ck_assert_msg(strstr(buf, "disk-cache        FAIL   disk vda: cache=writeback"), "%s", buf);
	ck_assert_msg(strstr(buf, "fix: restart the VM with cache=none or pass --unsafe"), "%s", buf);
	ck_assert_msg(strstr(buf, "verdict: FAIL"), "%s", buf);
	free(buf);
	fx_free(f);
}
END_TEST

START_TEST(vm_description)
{
	struct vm_config vm, back;
	struct compat_vm_ext ext;
	struct err e = { 0 };
	typical_vm(&vm);
	vm.cpu_model = strdup("x86-64-v2");
	/* What query-config returns, inside the reply `vmhop ctl --json` prints. */
	struct json_object *cfg, *reply = json_object_new_object();
	ck_assert_int_eq(vm_config__to_json(&vm, &cfg), 0);
	json_object_object_add(reply, "return", cfg);
	json_object_object_add(reply, "id", json_object_new_int(1));
	ck_assert_msg(compat__vm_from_json(reply, &back, &ext, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(back.cpu_model, "x86-64-v2");
	ck_assert_uint_eq(back.nr_disks, 1);
	ck_assert_uint_eq(ext.nhost_devices, 0);
	ck_assert_int_eq(ext.backing, COMPAT_MEM_MEMFD);
	vm_config__free(&back);
	/* The bare object, with the compat members. */
	json_object_object_add(cfg, "memory_backing", json_object_new_string("hugetlbfs"));
	struct json_object *devs = json_object_new_array();
	json_object_array_add(devs, json_object_new_string("0000:3b:00.0"));
	json_object_object_add(cfg, "host_devices", devs);
	ck_assert_msg(compat__vm_from_json(cfg, &back, &ext, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(ext.backing, COMPAT_MEM_HUGETLBFS);
	ck_assert_str_eq(ext.host_devices[0], "0000:3b:00.0");
	vm_config__free(&back);
	/* Strict. */
	json_object_object_add(cfg, "memory_backing", json_object_new_string("swap"));
	ck_assert_int_lt(compat__vm_from_json(cfg, &back, &ext, &e), 0);
	ck_assert_msg(strstr(e.msg, "memory_backing must be"), "%s", e.msg);
	json_object_object_del(cfg, "memory_backing");
	json_object_object_add(cfg, "bogus", json_object_new_int(1));
	err__clear(&e);
	ck_assert_int_lt(compat__vm_from_json(cfg, &back, &ext, &e), 0);
	ck_assert_msg(strstr(e.msg, "unknown member 'bogus'"), "%s", e.msg);
	json_object_object_add(reply, "extra", json_object_new_int(1));
	err__clear(&e);
	ck_assert_int_lt(compat__vm_from_json(reply, &back, &ext, &e), 0);
	json_object_put(reply);
	struct json_object *er = json_tokener_parse("{\"error\": {\"class\": \"GenericError\"}, \"id\": 1}");
	err__clear(&e);
	ck_assert_int_lt(compat__vm_from_json(er, &back, &ext, &e), 0);
	ck_assert_msg(strstr(e.msg, "error reply"), "%s", e.msg);
	json_object_put(er);
	/* The fixture files. */
	char path[4096];
	fixture_path("vm-typical.json", path, sizeof(path));
	ck_assert_msg(compat__load_vm(path, &back, &ext, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(back.nr_cpus, 2);
	vm_config__free(&back);
	fixture_path("vm-v3-hostdev.json", path, sizeof(path));
	ck_assert_msg(compat__load_vm(path, &back, &ext, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ext.nhost_devices, 1);
	vm_config__free(&back);
	vm_config__free(&vm);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("compat-rules");
	TCase *tc = tcase_create("rules");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, typical_pair_passes);
	tcase_add_test(tc, cpu_vendor);
	tcase_add_test(tc, cpu_model_features);
	tcase_add_test(tc, cpu_model_not_listed);
	tcase_add_test(tc, cpu_model_host);
	tcase_add_test(tc, nx);
	tcase_add_test(tc, disk_cache);
	tcase_add_test(tc, disk_reach);
	tcase_add_test(tc, host_devices_and_backing);
	tcase_add_test(tc, release_levels);
	tcase_add_test(tc, stream_format);
	tcase_add_test(tc, limits);
	tcase_add_test(tc, guest_definition);
	tcase_add_test(tc, report_outputs);
	tcase_add_test(tc, vm_description);
	suite_add_tcase(s, tc);
	return check_run(s);
}
