#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmhop/irq-routing.h"

int irq_routing__create(struct irq_routing **out, int vm_fd, struct err *e)
{
	struct irq_routing *r = calloc(1, sizeof(*r));
	if (!r)
		return err__set(e, ENOMEM, "irq routing: out of memory");
	int rc = pthread_mutex_init(&r->lock, NULL);
	if (rc) {
		free(r);
		return err__setsys(e, rc, "irq routing: mutex");
	}
	r->vm_fd = vm_fd;
	*out = r;
	return 0;
}

void irq_routing__destroy(struct irq_routing *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void irqchip_entry(struct kvm_irq_routing_entry *en, unsigned gsi,
			  unsigned chip, unsigned pin)
{
	memset(en, 0, sizeof(*en));
	en->gsi = gsi;
	en->type = KVM_IRQ_ROUTING_IRQCHIP;
	en->u.irqchip.irqchip = chip;
	en->u.irqchip.pin = pin;
}

/* Same entries as KVM's default_routing[] (arch/x86/kvm/irq_comm.c), so the
 * first MSI route does not change where GSI 0-23 go. Caller holds the lock. */
static size_t build(struct irq_routing *r, struct kvm_irq_routing_entry *out, size_t max)
{
	size_t n = 0;
	struct kvm_irq_routing_entry en;
	for (unsigned gsi = 0; gsi < IRQ_ROUTING_NR_IOAPIC_PINS; gsi++) {
		irqchip_entry(&en, gsi, KVM_IRQCHIP_IOAPIC, gsi);
		if (n < max)
			out[n] = en;
		n++;
		if (gsi < IRQ_ROUTING_NR_PIC_PINS) {
			irqchip_entry(&en, gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
				      gsi % 8);
			if (n < max)
				out[n] = en;
			n++;
		}
	}
	for (unsigned i = 0; i < IRQ_ROUTING_MAX_MSI; i++) {
		if (!r->msi[i].used)
			continue;
		memset(&en, 0, sizeof(en));
		en.gsi = IRQ_ROUTING_MSI_BASE + i;
		en.type = KVM_IRQ_ROUTING_MSI;
		en.u.msi.address_lo = (uint32_t)r->msi[i].addr;
		en.u.msi.address_hi = (uint32_t)(r->msi[i].addr >> 32);
		en.u.msi.data = r->msi[i].data;
		if (n < max)
			out[n] = en;
		n++;
	}
	return n;
}

size_t irq_routing__table(struct irq_routing *r, struct kvm_irq_routing_entry *out, size_t max)
{
	pthread_mutex_lock(&r->lock);
	size_t n = build(r, out, max);
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* Caller holds the lock. */
static int commit(struct irq_routing *r, struct err *e)
{
	size_t n = IRQ_ROUTING_NR_DEFAULT + r->nr_msi;
	struct kvm_irq_routing *t = calloc(1, sizeof(*t) + n * sizeof(t->entries[0]));
	if (!t)
		return err__set(e, ENOMEM, "irq routing: out of memory");
	t->nr = (uint32_t)build(r, t->entries, n);
	int rc = 0;
	if (r->vm_fd >= 0 && ioctl(r->vm_fd, KVM_SET_GSI_ROUTING, t) < 0)
		rc = err__setsys(e, errno, "KVM_SET_GSI_ROUTING (%u entries)", t->nr);
	else
		r->nr_commits++;
	free(t);
	return rc;
}

static bool valid_msi_gsi(struct irq_routing *r, unsigned gsi)
{
	return gsi >= IRQ_ROUTING_MSI_BASE && gsi - IRQ_ROUTING_MSI_BASE < IRQ_ROUTING_MAX_MSI &&
	       r->msi[gsi - IRQ_ROUTING_MSI_BASE].used;
}

int irq_routing__msi_add(struct irq_routing *r, uint64_t addr, uint32_t data,
			 unsigned *gsi, struct err *e)
{
	pthread_mutex_lock(&r->lock);
	unsigned i = 0;
	while (i < IRQ_ROUTING_MAX_MSI && r->msi[i].used)
		i++;
	if (i == IRQ_ROUTING_MAX_MSI) {
		pthread_mutex_unlock(&r->lock);
		return err__set(e, ENOSPC, "irq routing: all %d MSI routes in use", IRQ_ROUTING_MAX_MSI);
	}
	r->msi[i] = (struct irq_msi_route){ .used = true, .addr = addr, .data = data };
	r->nr_msi++;
	int rc = commit(r, e);
	if (rc < 0) {
		r->msi[i].used = false;
		r->nr_msi--;
	} else {
		*gsi = IRQ_ROUTING_MSI_BASE + i;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int irq_routing__msi_update(struct irq_routing *r, unsigned gsi, uint64_t addr,
			    uint32_t data, struct err *e)
{
	pthread_mutex_lock(&r->lock);
	if (!valid_msi_gsi(r, gsi)) {
		pthread_mutex_unlock(&r->lock);
		return err__set(e, EINVAL, "irq routing: GSI %u is not an MSI route", gsi);
	}
	struct irq_msi_route *m = &r->msi[gsi - IRQ_ROUTING_MSI_BASE];
	int rc = 0;
	if (m->addr != addr || m->data != data) {
		struct irq_msi_route old = *m;
		m->addr = addr;
		m->data = data;
		rc = commit(r, e);
		if (rc < 0)
			*m = old;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void irq_routing__msi_free(struct irq_routing *r, unsigned gsi)
{
	pthread_mutex_lock(&r->lock);
	if (valid_msi_gsi(r, gsi)) {
		r->msi[gsi - IRQ_ROUTING_MSI_BASE].used = false;
		r->nr_msi--;
		/* A stale route is harmless once nothing signals its GSI, so a
		 * failed commit here needs no rollback. */
		struct err ignore = { 0 };
		commit(r, &ignore);
	}
	pthread_mutex_unlock(&r->lock);
}

int irq_routing__irqfd_assign(struct irq_routing *r, int fd, unsigned gsi, struct err *e)
{
	if (r->vm_fd < 0)
		return 0;
	struct kvm_irqfd req = { .fd = (uint32_t)fd, .gsi = gsi };
	if (ioctl(r->vm_fd, KVM_IRQFD, &req) < 0)
		return err__setsys(e, errno, "KVM_IRQFD (GSI %u)", gsi);
	return 0;
}

void irq_routing__irqfd_deassign(struct irq_routing *r, int fd, unsigned gsi)
{
	if (r->vm_fd < 0)
		return;
	struct kvm_irqfd req = { .fd = (uint32_t)fd, .gsi = gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN };
	ioctl(r->vm_fd, KVM_IRQFD, &req);
}

int irq_routing__signal_msi(struct irq_routing *r, uint64_t addr, uint32_t data)
{
	if (!r || r->vm_fd < 0)
		return 0;
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};
	return ioctl(r->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}

int irq_routing__line(struct irq_routing *r, unsigned gsi, int level)
{
	if (!r || r->vm_fd < 0)
		return 0;
	struct kvm_irq_level l = { .irq = gsi, .level = level ? 1 : 0 };
	return ioctl(r->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}
