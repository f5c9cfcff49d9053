/* CPU models: the exact CPUID a guest sees. A model names features; the VMM
 * exposes those and nothing else, so what the guest saw stays true after a
 * move to any host that can supply the same model. */
#ifndef VMHOP_CPUID_H
#define VMHOP_CPUID_H

#include <linux/kvm.h>
#include <stdint.h>

#include "vmhop/err.h"

#define CPUID_DEFAULT_MODEL "baseline"
#define CPUID_MAX_ENTRIES 256

struct cpuid_model;

const struct cpuid_model *cpuid__find_model(const char *name);
/* Space-separated list of model names, for --help and errors. */
const char *cpuid__model_names(void);

/* KVM_GET_SUPPORTED_CPUID into a malloc'd kvm_cpuid2. */
int cpuid__get_supported(int kvm_fd, struct kvm_cpuid2 **out, struct err *e);

/* Builds the CPUID table of one vCPU. Fails naming every feature the model
 * needs that `supported` lacks. */
int cpuid__build(const struct cpuid_model *model, const struct kvm_cpuid2 *supported,
		 unsigned vcpu_id, unsigned nr_vcpus, uint32_t tsc_khz,
		 struct kvm_cpuid2 **out, struct err *e);

/* Finds an entry (NULL if absent). */
struct kvm_cpuid_entry2 *cpuid__entry(struct kvm_cpuid2 *c, uint32_t function, uint32_t index);

#endif
