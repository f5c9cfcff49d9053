/* CPU models as data: compat-matrix/cpu-models.conf names the CPUID feature
 * bits models may use and which ones each model requires. Compiled into the
 * binary (embed.sh) and installed to $(pkgdatadir). A caller parses it into
 * its own struct cpu_model_set (no global state) and asks a model for its
 * required bits, or checks them against a KVM supported-CPUID list. */
#ifndef VMHOP_CPU_MODELS_H
#define VMHOP_CPU_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "vmhop/err.h"

#define CPU_MODEL_NAME_MAX	32	/* including the NUL */
#define CPU_FEATURE_NAME_MAX	24
#define CPU_MODELS_MAX		16
#define CPU_FEATURES_MAX	128
#define CPU_MODEL_ALIASES_MAX	16
#define CPU_MODEL_BRAND_MAX	48

enum cpu_reg { CPU_REG_EAX, CPU_REG_EBX, CPU_REG_ECX, CPU_REG_EDX };

/* One CPUID bit: leaf (function), subleaf (index), register, bit. */
struct cpu_feature {
	char name[CPU_FEATURE_NAME_MAX];
	uint32_t leaf, subleaf;
	enum cpu_reg reg;
	unsigned bit;
};

struct cpu_model {
	char name[CPU_MODEL_NAME_MAX];
	bool host;		/* the host KVM's CPUID, passed through */
	bool no_xsave;		/* host minus XSAVE and leaf 0xD */
	uint32_t family, model, stepping, max_basic;
	char brand[CPU_MODEL_BRAND_MAX];
	uint8_t feat[CPU_FEATURES_MAX];	/* indexes into cpu_model_set.features */
	size_t nfeat;
};

struct cpu_model_set {
	struct cpu_feature features[CPU_FEATURES_MAX];
	size_t nfeatures;
	struct cpu_model models[CPU_MODELS_MAX];
	size_t nmodels;
	struct {
		char name[CPU_MODEL_NAME_MAX];
		size_t model;
	} aliases[CPU_MODEL_ALIASES_MAX];
	size_t naliases;
	size_t def;		/* the default model */
};

/* A supported-CPUID entry as KVM_GET_SUPPORTED_CPUID reports it (the same
 * fields as struct kvm_cpuid_entry2, without the padding). */
struct cpuid_leaf {
	uint32_t function, index, flags;
	uint32_t eax, ebx, ecx, edx;
};
#define CPUID_LEAF_SIGNIFICANT_INDEX 1u	/* KVM_CPUID_FLAG_SIGNIFCANT_INDEX */

/* KVM's entries as cpuid_leaf (at most max); returns how many. */
size_t cpu_models__from_kvm(const struct kvm_cpuid_entry2 *in, size_t n, struct cpuid_leaf *out,
			    size_t max);

const char *cpu_models__builtin_text(size_t *len);
/* Parses the format of cpu-models.conf; errors name the line. */
int cpu_models__parse(struct cpu_model_set *s, const char *text, size_t len,
		      struct err *e);
int cpu_models__builtin(struct cpu_model_set *s, struct err *e);

/* By name or alias; NULL when unknown. NULL name: the default model. */
const struct cpu_model *cpu_models__find(const struct cpu_model_set *s,
					 const char *name);
const struct cpu_feature *cpu_models__feature(const struct cpu_model_set *s,
					      const char *name);
/* The i-th feature the model requires (i < m->nfeat). */
const struct cpu_feature *cpu_models__required(const struct cpu_model_set *s,
					       const struct cpu_model *m, size_t i);
/* "baseline (alias qemu64), x86-64-v2, ..." */
void cpu_models__names(const struct cpu_model_set *s, char *buf, size_t size);

/* The entry for (function, index) in a supported-CPUID list, or NULL. */
const struct cpuid_leaf *cpu_models__leaf(const struct cpuid_leaf *sup, size_t n,
					  uint32_t function, uint32_t index);
bool cpu_models__has(const struct cpuid_leaf *sup, size_t n,
		     const struct cpu_feature *f);
/* How many of the model's features `sup` lacks; their names, space
 * separated, in buf (truncated with "..." if it does not fit). A host model
 * lacks nothing. */
size_t cpu_models__missing(const struct cpu_model_set *s, const struct cpu_model *m,
			   const struct cpuid_leaf *sup, size_t n, char *buf, size_t size);

#endif
