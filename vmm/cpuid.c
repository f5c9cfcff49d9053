#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmhop/cpuid.h"
#include "vmhop/util.h"

enum reg { EAX, EBX, ECX, EDX };

struct feature {
	const char *name;
	uint32_t leaf, subleaf;
	enum reg reg;
	unsigned bit;
};

/* The features models may name, with their Linux /proc/cpuinfo names. */
static const struct feature features[] = {
	{ "fpu", 1, 0, EDX, 0 }, { "vme", 1, 0, EDX, 1 }, { "de", 1, 0, EDX, 2 },
	{ "pse", 1, 0, EDX, 3 }, { "tsc", 1, 0, EDX, 4 }, { "msr", 1, 0, EDX, 5 },
	{ "pae", 1, 0, EDX, 6 }, { "mce", 1, 0, EDX, 7 }, { "cx8", 1, 0, EDX, 8 },
	{ "apic", 1, 0, EDX, 9 }, { "sep", 1, 0, EDX, 11 }, { "mtrr", 1, 0, EDX, 12 },
	{ "pge", 1, 0, EDX, 13 }, { "mca", 1, 0, EDX, 14 }, { "cmov", 1, 0, EDX, 15 },
	{ "pat", 1, 0, EDX, 16 }, { "pse36", 1, 0, EDX, 17 }, { "clflush", 1, 0, EDX, 19 },
	{ "mmx", 1, 0, EDX, 23 }, { "fxsr", 1, 0, EDX, 24 }, { "sse", 1, 0, EDX, 25 },
	{ "sse2", 1, 0, EDX, 26 },
	{ "sse3", 1, 0, ECX, 0 }, { "pclmulqdq", 1, 0, ECX, 1 }, { "ssse3", 1, 0, ECX, 9 },
	{ "fma", 1, 0, ECX, 12 }, { "cx16", 1, 0, ECX, 13 }, { "sse4_1", 1, 0, ECX, 19 },
	{ "sse4_2", 1, 0, ECX, 20 }, { "x2apic", 1, 0, ECX, 21 }, { "movbe", 1, 0, ECX, 22 },
	{ "popcnt", 1, 0, ECX, 23 }, { "tsc_deadline_timer", 1, 0, ECX, 24 },
	{ "aes", 1, 0, ECX, 25 }, { "xsave", 1, 0, ECX, 26 }, { "avx", 1, 0, ECX, 28 },
	{ "f16c", 1, 0, ECX, 29 }, { "rdrand", 1, 0, ECX, 30 },
	{ "fsgsbase", 7, 0, EBX, 0 }, { "bmi1", 7, 0, EBX, 3 }, { "avx2", 7, 0, EBX, 5 },
	{ "smep", 7, 0, EBX, 7 }, { "bmi2", 7, 0, EBX, 8 }, { "erms", 7, 0, EBX, 9 },
	{ "rdseed", 7, 0, EBX, 18 }, { "adx", 7, 0, EBX, 19 }, { "smap", 7, 0, EBX, 20 },
	{ "clflushopt", 7, 0, EBX, 23 }, { "sha_ni", 7, 0, EBX, 29 },
	{ "syscall", 0x80000001, 0, EDX, 11 }, { "nx", 0x80000001, 0, EDX, 20 },
	{ "pdpe1gb", 0x80000001, 0, EDX, 26 }, { "rdtscp", 0x80000001, 0, EDX, 27 },
	{ "lm", 0x80000001, 0, EDX, 29 },
	{ "lahf_lm", 0x80000001, 0, ECX, 0 }, { "abm", 0x80000001, 0, ECX, 5 },
	{ "sse4a", 0x80000001, 0, ECX, 6 }, { "3dnowprefetch", 0x80000001, 0, ECX, 8 },
	/* KVM paravirtual features (leaf 0x40000001). */
	{ "kvmclock", 0x40000001, 0, EAX, 0 }, { "kvm_nopiodelay", 0x40000001, 0, EAX, 1 },
	{ "kvmclock2", 0x40000001, 0, EAX, 3 }, { "kvm_pv_eoi", 0x40000001, 0, EAX, 6 },
	{ "kvmclock_stable", 0x40000001, 0, EAX, 24 },
};

/* x86-64 v1 plus cx16 and lahf_lm: what every 64-bit host offers. (QEMU's
 * qemu64 adds sse3, which some KVMs, kvm-pvm among them, do not offer.) */
#define BASELINE_FEATURES \
	"fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 " \
	"clflush mmx fxsr sse sse2 cx16 syscall nx lm lahf_lm " \
	"kvmclock kvm_nopiodelay kvmclock2 kvmclock_stable"

struct cpuid_model {
	const char *name;
	const char *features;	/* NULL: everything the host's KVM supports */
	uint32_t family, model, stepping;
	uint32_t max_basic;
	const char *brand;
	bool no_xsave;		/* "host" minus XSAVE (and leaf 0xD) */
};

/* Comparable to QEMU's qemu64 and the x86-64 micro-architecture levels.
 * Family/model are fixed so the guest's view does not depend on the host. */
static const struct cpuid_model models[] = {
	{ "baseline", BASELINE_FEATURES, 15, 107, 1, 0xd, "vmhop baseline CPU", false },
	{ "x86-64-v2", BASELINE_FEATURES " sse3 popcnt sse4_1 sse4_2 ssse3", 6, 85, 7, 0xd,
	  "vmhop x86-64-v2 CPU", false },
	{ "x86-64-v3", BASELINE_FEATURES " sse3 popcnt sse4_1 sse4_2 ssse3 avx avx2 bmi1 bmi2 "
	  "f16c fma movbe xsave abm", 6, 85, 7, 0xd, "vmhop x86-64-v3 CPU", false },
	{ "host", NULL, 0, 0, 0, 0, NULL, false },
	/* For KVMs that cannot run XSAVE guests faithfully: the nested SVM test
	 * environment, whose emulated SVM never lets the guest's xsetbv reach
	 * KVM (see tests/nested/README.md). AVX and the rest follow XSAVE out
	 * in the guest kernel's own dependency rules. */
	{ "host-noxsave", NULL, 0, 0, 0, 0, NULL, true },
};

const struct cpuid_model *cpuid__find_model(const char *name)
{
	if (!strcmp(name, "qemu64"))
		name = "baseline";
	for (size_t i = 0; i < ARRAY_SIZE(models); i++)
		if (!strcmp(models[i].name, name))
			return &models[i];
	return NULL;
}

const char *cpuid__model_names(void)
{
	return "baseline (alias qemu64), x86-64-v2, x86-64-v3, host, host-noxsave";
}

int cpuid__get_supported(int kvm_fd, struct kvm_cpuid2 **out, struct err *e)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
	if (!c)
		return err__set(e, ENOMEM, "out of memory");
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int r = err__setsys(e, errno, "KVM_GET_SUPPORTED_CPUID");
		free(c);
		return r;
	}
	/* KVM emulates the TSC-deadline timer mode but leaves the bit out of
	 * KVM_GET_SUPPORTED_CPUID: it is announced by a capability instead.
	 * Without it Linux calibrates the LAPIC timer against the PIT, which
	 * fails its own check when timer interrupts arrive late (nested KVM). */
	struct kvm_cpuid_entry2 *l1 = cpuid__entry(c, 1, 0);
	if (l1 && ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0)
		l1->ecx |= 1u << 24;
	*out = c;
	return 0;
}

struct kvm_cpuid_entry2 *cpuid__entry(struct kvm_cpuid2 *c, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *en = &c->entries[i];
		if (en->function != function)
			continue;
		if (!(en->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || en->index == index)
			return en;
	}
	return NULL;
}

static uint32_t *reg_of(struct kvm_cpuid_entry2 *en, enum reg r)
{
	switch (r) {
	case EAX: return &en->eax;
	case EBX: return &en->ebx;
	case ECX: return &en->ecx;
	default: return &en->edx;
	}
}

static const struct feature *find_feature(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(features); i++)
		if (strlen(features[i].name) == len && !strncmp(features[i].name, name, len))
			return &features[i];
	return NULL;
}

static int append(struct kvm_cpuid2 *c, const struct kvm_cpuid_entry2 *en)
{
	if (c->nent >= CPUID_MAX_ENTRIES)
		return -E2BIG;
	c->entries[c->nent++] = *en;
	return 0;
}

static void set_brand(struct kvm_cpuid2 *c, const char *brand)
{
	char buf[48] = { 0 };
	snprintf(buf, sizeof(buf), "%s", brand);
	for (uint32_t i = 0; i < 3; i++) {
		struct kvm_cpuid_entry2 en = { .function = 0x80000002 + i };
		memcpy(&en.eax, buf + 16 * i, 4);
		memcpy(&en.ebx, buf + 16 * i + 4, 4);
		memcpy(&en.ecx, buf + 16 * i + 8, 4);
		memcpy(&en.edx, buf + 16 * i + 12, 4);
		append(c, &en);
	}
}

static int build_model(const struct cpuid_model *m, struct kvm_cpuid2 *sup,
		       struct kvm_cpuid2 *c, struct err *e)
{
	/* Start from zeroed copies of the masked leaves, then set named bits. */
	static const uint32_t leaves[] = { 1, 7, 0x80000001, 0x40000001 };
	for (size_t i = 0; i < ARRAY_SIZE(leaves); i++) {
		struct kvm_cpuid_entry2 en = { .function = leaves[i] };
		struct kvm_cpuid_entry2 *s = cpuid__entry(sup, leaves[i], 0);
		if (s)
			en.flags = s->flags;
		append(c, &en);
	}
	char missing[256] = "";
	size_t moff = 0;
	const char *p = m->features;
	while (*p) {
		while (*p == ' ')
			p++;
		size_t len = strcspn(p, " ");
		if (!len)
			break;
		const struct feature *f = find_feature(p, len);
		if (!f)
			return err__set(e, EINVAL, "CPU model %s: unknown feature '%.*s'",
					m->name, (int)len, p);
		struct kvm_cpuid_entry2 *s = cpuid__entry(sup, f->leaf, f->subleaf);
		if (!s || !(*reg_of(s, f->reg) & (1u << f->bit))) {
			if (moff < sizeof(missing))
				moff += (size_t)snprintf(missing + moff, sizeof(missing) - moff,
							 "%s%s", moff ? " " : "", f->name);
		} else {
			*reg_of(cpuid__entry(c, f->leaf, f->subleaf), f->reg) |= 1u << f->bit;
		}
		p += len;
	}
	if (moff)
		return err__set(e, ENOTSUP,
				"CPU model %s needs features this host's KVM cannot supply: %s",
				m->name, missing);

	struct kvm_cpuid_entry2 *l1 = cpuid__entry(c, 1, 0);
	l1->eax = (m->stepping & 0xf) | ((m->model & 0xf) << 4) |
		  ((m->family > 15 ? 15 : m->family) << 8) | (((m->model >> 4) & 0xf) << 16) |
		  ((m->family > 15 ? m->family - 15 : 0) << 20);
	l1->ecx |= 1u << 31;	/* hypervisor present */

	struct kvm_cpuid_entry2 *s0 = cpuid__entry(sup, 0, 0);
	struct kvm_cpuid_entry2 l0 = { .function = 0, .eax = m->max_basic };
	if (s0) {
		l0.ebx = s0->ebx;	/* vendor: compatibility rules require equal vendors */
		l0.ecx = s0->ecx;
		l0.edx = s0->edx;
	}
	append(c, &l0);
	/* XSAVE needs its state-size leaf; the other basic leaves stay zero. */
	if (cpuid__entry(c, 1, 0)->ecx & (1u << 26)) {
		for (uint32_t i = 0; i < sup->nent; i++)
			if (sup->entries[i].function == 0xd && sup->entries[i].index <= 2)
				append(c, &sup->entries[i]);
	}
	struct kvm_cpuid_entry2 x0 = { .function = 0x80000000, .eax = 0x80000008 };
	if (s0) {
		x0.ebx = s0->ebx;
		x0.ecx = s0->ecx;
		x0.edx = s0->edx;
	}
	append(c, &x0);
	set_brand(c, m->brand);
	struct kvm_cpuid_entry2 *s8 = cpuid__entry(sup, 0x80000008, 0);
	struct kvm_cpuid_entry2 x8 = { .function = 0x80000008, .eax = s8 ? (s8->eax & 0xffff) : 0x3028 };
	append(c, &x8);
	return 0;
}

int cpuid__build(const struct cpuid_model *model, const struct kvm_cpuid2 *supported,
		 unsigned vcpu_id, unsigned nr_vcpus, uint32_t tsc_khz,
		 struct kvm_cpuid2 **out, struct err *e)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
	if (!c)
		return err__set(e, ENOMEM, "out of memory");
	struct kvm_cpuid2 *sup = (struct kvm_cpuid2 *)supported;
	int r = 0;
	if (model->features) {
		r = build_model(model, sup, c, e);
	} else {
		for (uint32_t i = 0; i < sup->nent && !r; i++)
			if ((sup->entries[i].function < 0x40000000 || sup->entries[i].function >= 0x80000000) &&
			    !(model->no_xsave && sup->entries[i].function == 0xd))
				r = append(c, &sup->entries[i]);
		/* "host" passes KVM's own paravirtual leaf through as well. */
		struct kvm_cpuid_entry2 *kvmf = cpuid__entry(sup, 0x40000001, 0);
		if (kvmf && !r)
			r = append(c, kvmf);
		struct kvm_cpuid_entry2 *l1 = cpuid__entry(c, 1, 0);
		if (l1)
			l1->ecx |= 1u << 31;
		if (l1 && model->no_xsave)
			l1->ecx &= ~((1u << 26) | (1u << 27));	/* XSAVE, OSXSAVE */
	}
	if (r) {
		free(c);
		return r == -E2BIG ? err__set(e, E2BIG, "too many CPUID entries") : r;
	}

	/* Per-vCPU topology: APIC id and logical processor count. */
	struct kvm_cpuid_entry2 *l1 = cpuid__entry(c, 1, 0);
	if (l1) {
		l1->ebx = (vcpu_id << 24) | (MIN(nr_vcpus, 255u) << 16) | (8u << 8);
		if (nr_vcpus > 1)
			l1->edx |= 1u << 28;	/* HTT: the count field is valid */
	}
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == 0xb || c->entries[i].function == 0x1f)
			c->entries[i].edx = vcpu_id;

	/* KVM's signature leaf, extended to 0x40000010 for the TSC frequency
	 * (the VMware convention QEMU also uses) so guests need no calibration. */
	struct kvm_cpuid_entry2 sig = { .function = 0x40000000, .eax = 0x40000010 };
	memcpy(&sig.ebx, "KVMK", 4);
	memcpy(&sig.ecx, "VMKV", 4);
	memcpy(&sig.edx, "M\0\0\0", 4);
	struct kvm_cpuid_entry2 freq = { .function = 0x40000010, .eax = tsc_khz, .ebx = 1000000 };
	if (append(c, &sig) || append(c, &freq)) {
		free(c);
		return err__set(e, E2BIG, "too many CPUID entries");
	}
	*out = c;
	return 0;
}
