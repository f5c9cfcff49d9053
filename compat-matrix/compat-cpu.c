/* CPU rules: the same vendor, the guest's CPU model supplied by the
 * destination (a host model only to an identical supported-CPUID set), NX
 * the same on both hosts. */
#include <stdio.h>
#include <string.h>

#include "vmhop/compat.h"
#include "vmhop/util.h"

void compat_rule__cpu_vendor(struct compat_ctx *c)
{
	const char *s = c->src->vendor, *d = c->dst->vendor;
	if (!*s || !*d || strcmp(s, d))
		compat__row(c, "cpu-vendor", COMPAT_FAIL,
			    "choose a destination with the same CPU vendor: a guest cannot move between Intel and AMD",
			    "CPU vendor differs: source %s, destination %s", *s ? s : "(unknown)",
			    *d ? d : "(unknown)");
	else
		compat__row(c, "cpu-vendor", COMPAT_PASS, NULL, "CPU vendor %s on both hosts", s);
}

/* KVM_GET_SUPPORTED_CPUID fills in the APIC id of the CPU the ioctl ran
 * on (leaf 1 EBX[31:24], the x2APIC id in EDX of leaves 0xb and 0x1f, AMD's
 * extended APIC and core ids in 0x8000001e): they say where a process ran,
 * not what the host can do, and the VMM sets them per vCPU anyway. */
static void ignore_apic_ids(const struct cpuid_leaf *l, uint32_t *ebx, uint32_t *edx,
			    uint32_t *eax)
{
	if (l->function == 1)
		*ebx &= 0x00ffffffu;
	else if (l->function == 0xb || l->function == 0x1f)
		*edx = 0;
	else if (l->function == 0x8000001e) {
		*eax = 0;
		*ebx &= ~0xffu;
	}
}

static bool same_leaf(const struct cpuid_leaf *a, const struct cpuid_leaf *b)
{
	uint32_t aeax = a->eax, aebx = a->ebx, aedx = a->edx;
	uint32_t beax = b->eax, bebx = b->ebx, bedx = b->edx;
	ignore_apic_ids(a, &aebx, &aedx, &aeax);
	ignore_apic_ids(b, &bebx, &bedx, &beax);
	return a->flags == b->flags && aeax == beax && aebx == bebx &&
	       a->ecx == b->ecx && aedx == bedx;
}

/* Leaves present in `a` that `b` lacks or has otherwise, as text. */
static size_t diff_leaves(const struct host_profile *a, const struct host_profile *b,
			  char *buf, size_t size, size_t off, size_t *shown)
{
	size_t n = 0;
	for (size_t i = 0; i < a->ncpuid; i++) {
		const struct cpuid_leaf *x = &a->cpuid[i];
		const struct cpuid_leaf *y = NULL;
		for (size_t k = 0; k < b->ncpuid && !y; k++)
			if (b->cpuid[k].function == x->function && b->cpuid[k].index == x->index)
				y = &b->cpuid[k];
		if (y && same_leaf(x, y))
			continue;
		n++;
		if (*shown < 4 && off < size) {
			int w = snprintf(buf + off, size - off, "%s0x%x.%u%s", off ? ", " : "",
					 x->function, x->index, y ? "" : " (missing)");
			if (w > 0)
				off += (size_t)w;
			(*shown)++;
		}
	}
	return n;
}

static void host_model(struct compat_ctx *c, const struct cpu_model *m)
{
	char buf[200] = "";
	size_t shown = 0;
	size_t n = diff_leaves(c->src, c->dst, buf, sizeof(buf), 0, &shown);
	/* Leaves only the destination has count too: the sets must be equal. */
	size_t only_dst = 0;
	for (size_t i = 0; i < c->dst->ncpuid; i++) {
		bool found = false;
		for (size_t k = 0; k < c->src->ncpuid && !found; k++)
			found = c->src->cpuid[k].function == c->dst->cpuid[i].function &&
				c->src->cpuid[k].index == c->dst->cpuid[i].index;
		only_dst += !found;
	}
	if (!c->src->ncpuid || n || only_dst)
		compat__row(c, "cpu-model", COMPAT_FAIL,
			    "move a host-model VM only between identical hosts (same CPU, microcode, kernel and KVM), or restart it with a named model such as baseline",
			    "CPU model %s: the destination's supported CPUID differs from the source's "
			    "(%zu leaves differ%s%s%s, %zu only on the destination)",
			    m->name, n, n ? ": " : "", buf, n > shown ? ", ..." : "", only_dst);
	else
		compat__row(c, "cpu-model", COMPAT_PASS, NULL,
			    "CPU model %s: identical supported CPUID on both hosts (%zu leaves)",
			    m->name, c->src->ncpuid);
}

static bool dst_lists(const struct host_profile *p, const char *name)
{
	for (size_t i = 0; i < p->nmodels; i++)
		if (!strcmp(p->models[i], name))
			return true;
	return false;
}

void compat_rule__cpu_model(struct compat_ctx *c)
{
	const char *name = c->vm->cpu_model;
	const struct cpu_model *m = cpu_models__find(c->models, name);
	if (!m) {
		char names[200];
		cpu_models__names(c->models, names, sizeof(names));
		compat__row(c, "cpu-model", COMPAT_FAIL,
			    "restart the VM with a model of vmhop-compat-matrix(5)",
			    "CPU model %s is unknown to this build (models: %s)", name, names);
		return;
	}
	if (m->host) {
		host_model(c, m);
		return;
	}
	char missing[COMPAT_TEXT_MAX / 2];
	size_t n = cpu_models__missing(c->models, m, c->dst->cpuid, c->dst->ncpuid, missing,
				       sizeof(missing));
	if (n) {
		compat__row(c, "cpu-model", COMPAT_FAIL,
			    "choose a destination whose KVM supplies them, or restart the VM with a model both hosts supply (host-profile lists each host's)",
			    "CPU model %s needs %zu feature%s the destination's KVM cannot supply: %s",
			    m->name, n, n == 1 ? "" : "s", missing);
		return;
	}
	if (!dst_lists(c->dst, m->name)) {
		compat__row(c, "cpu-model", COMPAT_FAIL,
			    "upgrade vmhop on the destination, or restart the VM with a model the destination lists",
			    "CPU model %s is not among the models the destination's vmhop can run", m->name);
		return;
	}
	compat__row(c, "cpu-model", COMPAT_PASS, NULL,
		    "CPU model %s: all %zu features supplied by the destination", m->name, m->nfeat);
}

void compat_rule__nx(struct compat_ctx *c)
{
	const struct host_profile *s = c->src, *d = c->dst;
	static const char fix[] =
		"enable (or disable) NX/XD, \"execute disable\", in the firmware setup so both hosts match, or choose another destination";
	if (s->host_nx != d->host_nx)
		compat__row(c, "nx", COMPAT_FAIL, fix, "NX is %s on the source and %s on the destination",
			    s->host_nx ? "enabled" : "disabled", d->host_nx ? "enabled" : "disabled");
	else if (s->kvm_nx != d->kvm_nx)
		compat__row(c, "nx", COMPAT_FAIL, fix,
			    "KVM offers NX to guests on the %s only", s->kvm_nx ? "source" : "destination");
	else
		compat__row(c, "nx", COMPAT_PASS, NULL, "NX %s on both hosts",
			    s->host_nx ? "enabled" : "disabled");
}
