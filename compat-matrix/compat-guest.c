/* Guest definition: the destination builds the same machine (layout name),
 * has every device this VM uses, room for its disks, and a KVM with what
 * vmhop needs to build it. A layout name is compared, not the layout itself:
 * a change to the guest-physical map or the device set must get a new name
 * (HOST_PROFILE_MACHINE). */
#include <stdio.h>
#include <string.h>

#include "vmhop/compat.h"
#include "vmhop/util.h"

static const char *const base_devices[] = {
	"lapic", "ioapic", "pic", "pit", "pci-host", "pm-ports", "kvmclock", "uart-16550a",
};

static const enum host_cap need_caps[] = {
	HOST_CAP_IRQCHIP, HOST_CAP_PIT2, HOST_CAP_IOEVENTFD, HOST_CAP_IRQFD,
	HOST_CAP_USER_MEMORY, HOST_CAP_EXT_CPUID, HOST_CAP_IMMEDIATE_EXIT,
};

static void add(char *buf, size_t size, size_t *off, const char *word)
{
	if (*off >= size)
		return;
	int n = snprintf(buf + *off, size - *off, "%s%s", *off ? " " : "", word);
	if (n > 0)
		*off += (size_t)n;
}

void compat_rule__guest_definition(struct compat_ctx *c)
{
	const struct host_profile *s = c->src, *d = c->dst;
	const struct vm_config *vm = c->vm;
	static const char fix[] = "choose a destination running a vmhop that builds this machine (the same or a newer release)";
	if (strcmp(s->machine, d->machine)) {
		compat__row(c, "guest-definition", COMPAT_FAIL, fix,
			    "machine layout %s on the source, the destination builds %s",
			    s->machine[0] ? s->machine : "(none)", d->machine[0] ? d->machine : "(none)");
		return;
	}
	char missing[200] = "";
	size_t off = 0;
	for (size_t i = 0; i < ARRAY_SIZE(base_devices); i++)
		if (!host_profile__has_device(d, base_devices[i]))
			add(missing, sizeof(missing), &off, base_devices[i]);
	if (vm->nr_disks && !host_profile__has_device(d, "virtio-blk-pci"))
		add(missing, sizeof(missing), &off, "virtio-blk-pci");
	if (off) {
		compat__row(c, "guest-definition", COMPAT_FAIL, fix,
			    "the destination lacks devices this VM uses: %s", missing);
		return;
	}
	if (vm->nr_disks > d->max_disks) {
		compat__row(c, "guest-definition", COMPAT_FAIL, fix,
			    "%u disks, the destination takes at most %u", vm->nr_disks, d->max_disks);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(need_caps); i++)
		if (d->caps[need_caps[i]] <= 0)
			add(missing, sizeof(missing), &off, host_profile__cap_name(need_caps[i]));
	if (d->kvm_api_version != 12 || off) {
		compat__row(c, "guest-definition", COMPAT_FAIL, "choose a destination with a complete KVM",
			    "the destination's KVM cannot build this machine (API version %d%s%s)",
			    d->kvm_api_version, off ? ", lacks " : "", missing);
		return;
	}
	compat__row(c, "guest-definition", COMPAT_PASS, NULL,
		    "machine %s with %u disk%s: the destination builds it", d->machine, vm->nr_disks,
		    vm->nr_disks == 1 ? "" : "s");
}
