/* GSI routing of the in-kernel irqchip, and the irqfd/INTx helpers devices
 * use to raise interrupts.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so every update carries the
 * irqchip entries KVM_CREATE_IRQCHIP installed by default (GSI 0-15 to the
 * PICs and the IOAPIC, 16-23 to the IOAPIC) plus every MSI route in use;
 * leaving them out would silently disconnect the PIT, the UART and INTx.
 * MSI routes get GSIs from IRQ_ROUTING_MSI_BASE up.
 *
 * A routing with vm_fd < 0 keeps the table but skips the ioctls: unit tests
 * exercise the bookkeeping without /dev/kvm. */
#ifndef VMHOP_IRQ_ROUTING_H
#define VMHOP_IRQ_ROUTING_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmhop/err.h"

#define IRQ_ROUTING_NR_IOAPIC_PINS	24
#define IRQ_ROUTING_NR_PIC_PINS		16
/* Entries of KVM's default table: one IOAPIC entry per pin, one PIC entry
 * for each of GSI 0-15. */
#define IRQ_ROUTING_NR_DEFAULT	(IRQ_ROUTING_NR_IOAPIC_PINS + IRQ_ROUTING_NR_PIC_PINS)
#define IRQ_ROUTING_MSI_BASE	24
/* KVM allows 4096 routes on x86; a few hundred MSI vectors are plenty. */
#define IRQ_ROUTING_MAX_MSI	512

struct irq_msi_route {
	bool used;
	uint64_t addr;
	uint32_t data;
};

/* Runtime only: a destination rebuilds routes from the devices' MSI-X
 * tables, so nothing here goes into a migration stream. */
struct irq_routing {
	int vm_fd;
	pthread_mutex_t lock;
	struct irq_msi_route msi[IRQ_ROUTING_MAX_MSI];
	unsigned nr_msi;
	unsigned nr_commits;	/* KVM_SET_GSI_ROUTING calls made (tests) */
};

/* Allocates the routing state of a VM whose irqchip exists already. Sends
 * nothing to KVM until the first MSI route is added. */
int irq_routing__create(struct irq_routing **out, int vm_fd, struct err *e);
void irq_routing__destroy(struct irq_routing *r);

/* MSI routes. *gsi receives the allocated GSI. Each call commits the full
 * table; on a KVM error the previous table stays in force. */
int irq_routing__msi_add(struct irq_routing *r, uint64_t addr, uint32_t data,
			 unsigned *gsi, struct err *e);
int irq_routing__msi_update(struct irq_routing *r, unsigned gsi, uint64_t addr,
			    uint32_t data, struct err *e);
void irq_routing__msi_free(struct irq_routing *r, unsigned gsi);

/* Fills `out` (at most `max` entries) with the table a commit would send and
 * returns the number of entries it has in total. */
size_t irq_routing__table(struct irq_routing *r, struct kvm_irq_routing_entry *out, size_t max);

/* KVM_IRQFD: signalling `fd` raises `gsi` in the kernel, no exit needed. */
int irq_routing__irqfd_assign(struct irq_routing *r, int fd, unsigned gsi, struct err *e);
void irq_routing__irqfd_deassign(struct irq_routing *r, int fd, unsigned gsi);

/* One MSI without a route (KVM_SIGNAL_MSI): the fallback when an irqfd could
 * not be set up. Returns 0 or -errno. */
int irq_routing__signal_msi(struct irq_routing *r, uint64_t addr, uint32_t data);

/* Level of an irqchip input (KVM_IRQ_LINE): INTx of PCI devices. A NULL
 * routing (no KVM) accepts and drops the call. vm__irq_line can forward here. */
int irq_routing__line(struct irq_routing *r, unsigned gsi, int level);

#endif
