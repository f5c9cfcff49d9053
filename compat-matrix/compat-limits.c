/* The destination's room: vCPUs within its KVM's limit, at most 8 vCPUs per
 * core after the move (WARN above), memory for the guest (WARN when more
 * than it has available, FAIL when more than it has at all). */
#include <inttypes.h>
#include <stdio.h>

#include "vmhop/compat.h"
#include "vmhop/util.h"

#define OVERCOMMIT_MAX 8

void compat_rule__limits(struct compat_ctx *c)
{
	const struct host_profile *d = c->dst;
	unsigned n = c->vm->nr_cpus;
	int64_t max = d->caps[HOST_CAP_MAX_VCPUS] > 0 ? d->caps[HOST_CAP_MAX_VCPUS] :
		d->caps[HOST_CAP_NR_VCPUS];
	if (max <= 0)
		compat__row(c, "vcpu-limit", COMPAT_WARN, "check the destination's KVM (its profile lacks max_vcpus)",
			    "%u vCPUs: the destination does not say how many vCPUs its KVM allows", n);
	else if (n > max)
		compat__row(c, "vcpu-limit", COMPAT_FAIL, "choose a destination whose KVM allows as many vCPUs",
			    "%u vCPU%s, the destination's KVM allows at most %" PRId64, n, n == 1 ? "" : "s", max);
	else
		compat__row(c, "vcpu-limit", COMPAT_PASS, NULL,
			    "%u vCPU%s, the destination's KVM allows %" PRId64, n, n == 1 ? "" : "s", max);

	uint64_t total = (uint64_t)n + d->vcpus_in_use;
	uint64_t room = (uint64_t)d->cores * OVERCOMMIT_MAX;
	if (total > room)
		compat__row(c, "vcpu-overcommit", COMPAT_WARN,
			    "choose a destination with more cores or fewer running vCPUs",
			    "%" PRIu64 " vCPUs on the destination after the move (%u already there) on %u cores: more than %d per core",
			    total, d->vcpus_in_use, d->cores, OVERCOMMIT_MAX);
	else
		compat__row(c, "vcpu-overcommit", COMPAT_PASS, NULL,
			    "%" PRIu64 " vCPUs on the destination after the move, %u cores", total, d->cores);

	uint64_t mem = c->vm->mem_size;
	if (mem > d->mem_total)
		compat__row(c, "memory", COMPAT_FAIL, "choose a destination with more memory",
			    "guest memory %" PRIu64 " MiB, the destination has %" PRIu64 " MiB in all",
			    (uint64_t)(mem / MiB), (uint64_t)(d->mem_total / MiB));
	else if (mem > d->mem_available)
		compat__row(c, "memory", COMPAT_WARN,
			    "free memory on the destination first, or expect it to swap",
			    "guest memory %" PRIu64 " MiB, the destination has %" PRIu64 " MiB available",
			    (uint64_t)(mem / MiB), (uint64_t)(d->mem_available / MiB));
	else
		compat__row(c, "memory", COMPAT_PASS, NULL,
			    "guest memory %" PRIu64 " MiB, the destination has %" PRIu64 " MiB available",
			    (uint64_t)(mem / MiB), (uint64_t)(d->mem_available / MiB));
}
