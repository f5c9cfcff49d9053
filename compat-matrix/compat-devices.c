/* What cannot move at all: host devices assigned to the guest (their state
 * lives in hardware) and guest RAM on a backing the destination cannot take
 * over (a host file, hugetlbfs). */
#include <stdio.h>

#include "vmhop/compat.h"

void compat_rule__host_devices(struct compat_ctx *c)
{
	const struct compat_vm_ext *x = c->ext;
	if (!x->nhost_devices) {
		compat__row(c, "host-devices", COMPAT_PASS, NULL, "no assigned host devices");
		return;
	}
	for (size_t i = 0; i < x->nhost_devices && i < COMPAT_MAX_HOST_DEVICES; i++)
		compat__row(c, "host-devices", COMPAT_FAIL,
			    "detach the device from the guest before the move and attach one on the destination afterwards",
			    "host device %s is assigned to the guest: its state lives in hardware and cannot move",
			    x->host_devices[i]);
}

void compat_rule__memory_backing(struct compat_ctx *c)
{
	const struct compat_vm_ext *x = c->ext;
	static const char fix[] = "restart the VM with the default memory backing (memfd)";
	switch (x->backing) {
	case COMPAT_MEM_MEMFD:
	case COMPAT_MEM_ANON:
		compat__row(c, "memory-backing", COMPAT_PASS, NULL,
			    "guest RAM is anonymous memory (%s): it moves page by page",
			    x->backing == COMPAT_MEM_MEMFD ? "memfd" : "anonymous");
		break;
	case COMPAT_MEM_FILE:
		compat__row(c, "memory-backing", COMPAT_FAIL, fix,
			    "guest RAM is backed by the file %s, which the destination cannot take over",
			    x->memory_path[0] ? x->memory_path : "(unnamed)");
		break;
	case COMPAT_MEM_HUGETLBFS:
		compat__row(c, "memory-backing", COMPAT_FAIL, fix,
			    "guest RAM is on hugetlbfs %s: that backing cannot move",
			    x->memory_path[0] ? x->memory_path : "(unnamed)");
		break;
	}
}
