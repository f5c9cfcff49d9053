#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmhop/irq-routing.h"
#include "vmhop/util.h"
#include "vmhop/virtio-pci.h"
#include "vmhop/vm.h"

static uint64_t all_queues(const struct virtio_pci *vp)
{
	return (1u << vp->nr_queues) - 1;
}

static void wake_thread(struct virtio_pci *vp)
{
	uint64_t one = 1;
	if (vp->ctl_fd >= 0 && write(vp->ctl_fd, &one, sizeof(one)) < 0) {
		/* The counter saturating still leaves it readable: nothing lost. */
	}
}

bool virtio_pci__has_feature(const struct virtio_pci *vp, unsigned bit)
{
	return vp->st.driver_features & (1ULL << bit);
}

bool virtio_pci__pausing(struct virtio_pci *vp)
{
	return atomic_load(&vp->pause_req) || atomic_load(&vp->stop);
}

uint64_t virtio_pci__bar_base(const struct virtio_pci *vp)
{
	return pci__bar_base(&vp->pci, VIRTIO_PCI_BAR);
}

void virtio_pci__set_irq_hook(struct virtio_pci *vp, virtio_irq_hook_fn fn, void *opaque)
{
	pthread_mutex_lock(&vp->lock);
	vp->irq_hook = fn;
	vp->irq_hook_opaque = opaque;
	pthread_mutex_unlock(&vp->lock);
}

/* ---- interrupts (vp->lock held) ---- */

/* Makes sure vector v has an MSI route matching its table entry and an
 * irqfd bound to it. Any failure falls back to KVM_SIGNAL_MSI. */
static void msix_route(struct virtio_pci *vp, unsigned v, uint64_t addr, uint32_t data)
{
	struct virtio_msix_rt *rt = &vp->msix_rt[v];
	struct irq_routing *irq = vp->vm->irq;
	struct err e = { 0 };
	if (rt->failed || rt->fd < 0)
		return;
	if (rt->gsi < 0) {
		unsigned gsi;
		if (irq_routing__msi_add(irq, addr, data, &gsi, &e) < 0) {
			rt->failed = true;
			return;
		}
		if (irq_routing__irqfd_assign(irq, rt->fd, gsi, &e) < 0) {
			irq_routing__msi_free(irq, gsi);
			rt->failed = true;
			return;
		}
		rt->gsi = (int)gsi;
	} else if ((rt->addr != addr || rt->data != data) &&
		   irq_routing__msi_update(irq, (unsigned)rt->gsi, addr, data, &e) < 0) {
		irq_routing__irqfd_deassign(irq, rt->fd, (unsigned)rt->gsi);
		irq_routing__msi_free(irq, (unsigned)rt->gsi);
		rt->gsi = -1;
		rt->failed = true;
		return;
	}
	rt->addr = addr;
	rt->data = data;
}

static void msix_send(struct virtio_pci *vp, unsigned v)
{
	vp->nr_interrupts++;
	if (vp->irq_hook) {
		vp->irq_hook(vp, (uint16_t)v, vp->irq_hook_opaque);
		return;
	}
	/* An MSI is a memory write by the device: not without bus mastering. */
	if (!vp->vm->irq || !(pci__command(&vp->pci) & PCI_CMD_MASTER))
		return;
	const struct virtio_msix_entry *m = &vp->st.msix[v];
	uint64_t addr = ((uint64_t)m->addr_hi << 32) | m->addr_lo;
	msix_route(vp, v, addr, m->data);
	struct virtio_msix_rt *rt = &vp->msix_rt[v];
	if (rt->gsi >= 0) {
		uint64_t one = 1;
		if (write(rt->fd, &one, sizeof(one)) == sizeof(one))
			return;
	}
	irq_routing__signal_msi(vp->vm->irq, addr, m->data);
}

static bool msix_masked(const struct virtio_pci *vp, unsigned v)
{
	return vp->msix_fmask || (vp->st.msix[v].ctrl & VIRTIO_MSIX_CTRL_MASKED);
}

static void msix_notify(struct virtio_pci *vp, unsigned v)
{
	if (v >= vp->nr_vectors)
		return;
	if (msix_masked(vp, v))
		vp->st.msix_pba |= 1ULL << v;
	else
		msix_send(vp, v);
}

/* After an unmask: fire what became deliverable. */
static void msix_flush_pending(struct virtio_pci *vp)
{
	if (!vp->msix_enabled)
		return;
	for (unsigned v = 0; v < vp->nr_vectors; v++) {
		if ((vp->st.msix_pba & (1ULL << v)) && !msix_masked(vp, v)) {
			vp->st.msix_pba &= ~(1ULL << v);
			msix_send(vp, v);
		}
	}
}

static void intx_notify(struct virtio_pci *vp, uint8_t isr_bit)
{
	vp->st.isr |= isr_bit;
	vp->nr_interrupts++;
	if (vp->irq_hook)
		vp->irq_hook(vp, VIRTIO_NO_VECTOR, vp->irq_hook_opaque);
	pci__set_intx(&vp->pci, 1);
}

void virtio_pci__signal_queue(struct virtio_pci *vp, unsigned q)
{
	if (vp->msix_enabled)
		msix_notify(vp, vp->st.vq[q].msix_vector);
	else
		intx_notify(vp, VIRTIO_PCI_ISR_QUEUE);
}

void virtio_pci__signal_config(struct virtio_pci *vp)
{
	if (vp->msix_enabled)
		msix_notify(vp, vp->st.config_msix_vector);
	else
		intx_notify(vp, VIRTIO_PCI_ISR_CONFIG);
}

void virtio_pci__set_broken(struct virtio_pci *vp, const char *why)
{
	if (vp->st.broken)
		return;
	vp->st.broken = 1;
	vp->broken_reason = why;
	vp->st.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	if (vp->st.status & VIRTIO_CONFIG_S_DRIVER_OK)
		virtio_pci__signal_config(vp);
}

/* ---- queue service (vp->lock held) ---- */

static bool ready(struct virtio_pci *vp)
{
	uint8_t need = VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_FEATURES_OK;
	return (vp->st.status & need) == need && !vp->st.broken && !vp->paused &&
	       !virtio_pci__pausing(vp) && (pci__command(&vp->pci) & PCI_CMD_MASTER);
}

static void run_pending(struct virtio_pci *vp)
{
	while (vp->pending && ready(vp)) {
		unsigned q = (unsigned)__builtin_ctz(vp->pending);
		vp->pending &= ~(1u << q);
		if (!vp->st.vq[q].enabled)
			continue;
		vp->ops->handle_queue(vp, q);
		/* Interrupted by a pause: serve the rest on resume. */
		if (virtio_pci__pausing(vp) && virtq__has_work(&vp->vq[q]))
			vp->pending |= 1u << q;
	}
}

/* Something may now be servable that was not: look at every queue. */
static void kick_all(struct virtio_pci *vp)
{
	vp->pending |= (uint32_t)all_queues(vp);
	wake_thread(vp);
}

void virtio_pci__process_queue(struct virtio_pci *vp, unsigned q)
{
	if (q >= vp->nr_queues)
		return;
	pthread_mutex_lock(&vp->lock);
	vp->pending |= 1u << q;
	run_pending(vp);
	pthread_mutex_unlock(&vp->lock);
}

static void *device_thread(void *arg)
{
	struct virtio_pci *vp = arg;
	struct pollfd pfd[1 + VIRTIO_MAX_QUEUES];
	unsigned n = 1 + vp->nr_queues;
	pfd[0] = (struct pollfd){ .fd = vp->ctl_fd, .events = POLLIN };
	for (unsigned q = 0; q < vp->nr_queues; q++)
		pfd[1 + q] = (struct pollfd){ .fd = vp->kick_fd[q], .events = POLLIN };
	while (!atomic_load(&vp->stop)) {
		if (poll(pfd, n, -1) < 0)
			continue;	/* EINTR */
		uint64_t v;
		if ((pfd[0].revents & POLLIN) && read(vp->ctl_fd, &v, sizeof(v)) < 0) {
			/* EAGAIN: another reader won; nothing to do. */
		}
		uint32_t kicked = 0;
		for (unsigned q = 0; q < vp->nr_queues; q++)
			if ((pfd[1 + q].revents & POLLIN) && read(vp->kick_fd[q], &v, sizeof(v)) == sizeof(v))
				kicked |= 1u << q;
		if (atomic_load(&vp->stop))
			break;
		pthread_mutex_lock(&vp->lock);
		vp->pending |= kicked;
		run_pending(vp);
		pthread_mutex_unlock(&vp->lock);
	}
	return NULL;
}

void virtio_pci__pause(struct virtio_pci *vp)
{
	atomic_store(&vp->pause_req, true);
	/* Requests run under the lock, so holding it means none is in flight. */
	pthread_mutex_lock(&vp->lock);
	vp->paused = true;
	pthread_mutex_unlock(&vp->lock);
}

void virtio_pci__resume(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	vp->paused = false;
	atomic_store(&vp->pause_req, false);
	kick_all(vp);
	pthread_mutex_unlock(&vp->lock);
}

void virtio_pci__post_load(struct virtio_pci *vp)
{
	/* Bus lock before vp->lock: BARs and ioeventfds first. */
	pci__sync_bars(&vp->pci);
	pthread_mutex_lock(&vp->lock);
	uint16_t ctrl = (uint16_t)pci__cfg_get(&vp->pci, (unsigned)vp->cap_msix + 2, 2);
	vp->msix_enabled = ctrl & 0x8000;
	vp->msix_fmask = ctrl & 0x4000;
	vp->broken_reason = vp->st.broken ? "broken before the state was saved" : NULL;
	for (unsigned q = 0; q < vp->nr_queues; q++) {
		struct virtq *vq = &vp->vq[q];
		vq->indirect = virtio_pci__has_feature(vp, VIRTIO_RING_F_INDIRECT_DESC);
		if (!vq->st->enabled)
			continue;
		/* Host ring pointers are runtime state: map them again, with
		 * the same checks a guest's queue_enable gets. */
		const char *why = NULL;
		vq->st->enabled = 0;
		if (virtq__enable(vq, &why) < 0)
			virtio_pci__set_broken(vp, why);
	}
	pci__set_intx(&vp->pci, vp->pci.st.intx_level);
	kick_all(vp);
	pthread_mutex_unlock(&vp->lock);
}

/* ---- common configuration (vp->lock held) ---- */

static void reset(struct virtio_pci *vp)
{
	struct virtio_pci_state *st = &vp->st;
	st->status = 0;
	st->driver_features = 0;
	st->device_feature_select = 0;
	st->driver_feature_select = 0;
	st->config_msix_vector = VIRTIO_NO_VECTOR;
	st->queue_select = 0;
	st->broken = 0;
	vp->broken_reason = NULL;
	st->isr = 0;
	pci__set_intx(&vp->pci, 0);
	for (unsigned q = 0; q < vp->nr_queues; q++)
		virtq__reset(&vp->vq[q]);
	vp->pending = 0;
	/* The MSI-X table and PBA belong to the PCI function, not to the
	 * virtio device: a virtio reset leaves them alone. */
	if (vp->ops->reset)
		vp->ops->reset(vp);
}

static bool features_ok(const struct virtio_pci *vp)
{
	uint64_t f = vp->st.driver_features;
	return !(f & ~vp->device_features) && (f & (1ULL << VIRTIO_F_VERSION_1));
}

static void write_status(struct virtio_pci *vp, uint8_t val)
{
	if (!val) {
		reset(vp);
		return;
	}
	uint8_t old = vp->st.status, st = val;
	if ((st & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		/* Refused by leaving the bit clear: the driver reads it back. */
		if (!features_ok(vp))
			st &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
		else
			for (unsigned q = 0; q < vp->nr_queues; q++)
				vp->vq[q].indirect = virtio_pci__has_feature(vp, VIRTIO_RING_F_INDIRECT_DESC);
	}
	/* Only a reset clears FEATURES_OK and NEEDS_RESET. */
	st |= old & (VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_NEEDS_RESET);
	vp->st.status = st;
	if ((st & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK))
		kick_all(vp);
}

static void put(uint8_t *img, unsigned off, unsigned size, uint64_t v)
{
	for (unsigned i = 0; i < size; i++)
		img[off + i] = (uint8_t)(v >> (8 * i));
}

static void common_image(struct virtio_pci *vp, uint8_t *img)
{
	const struct virtio_pci_state *st = &vp->st;
	memset(img, 0, VIRTIO_PCI_COMMON_LEN);
	uint32_t dsel = st->device_feature_select, gsel = st->driver_feature_select;
	put(img, VIRTIO_PCI_COMMON_DFSELECT, 4, dsel);
	put(img, VIRTIO_PCI_COMMON_DF, 4, dsel < 2 ? (uint32_t)(vp->device_features >> (32 * dsel)) : 0);
	put(img, VIRTIO_PCI_COMMON_GFSELECT, 4, gsel);
	put(img, VIRTIO_PCI_COMMON_GF, 4, gsel < 2 ? (uint32_t)(st->driver_features >> (32 * gsel)) : 0);
	put(img, VIRTIO_PCI_COMMON_MSIX, 2, st->config_msix_vector);
	put(img, VIRTIO_PCI_COMMON_NUMQ, 2, vp->nr_queues);
	put(img, VIRTIO_PCI_COMMON_STATUS, 1, st->status);
	put(img, VIRTIO_PCI_COMMON_CFGGENERATION, 1, st->config_generation);
	put(img, VIRTIO_PCI_COMMON_Q_SELECT, 2, st->queue_select);
	unsigned q = st->queue_select;
	if (q >= vp->nr_queues)
		return;	/* queue_size 0: no such queue */
	const struct virtq_state *qs = &st->vq[q];
	put(img, VIRTIO_PCI_COMMON_Q_SIZE, 2, qs->size);
	put(img, VIRTIO_PCI_COMMON_Q_MSIX, 2, qs->msix_vector);
	put(img, VIRTIO_PCI_COMMON_Q_ENABLE, 2, qs->enabled);
	put(img, VIRTIO_PCI_COMMON_Q_NOFF, 2, q);
	put(img, VIRTIO_PCI_COMMON_Q_DESCLO, 8, qs->desc);
	put(img, VIRTIO_PCI_COMMON_Q_AVAILLO, 8, qs->avail);
	put(img, VIRTIO_PCI_COMMON_Q_USEDLO, 8, qs->used);
}

static uint16_t vector_or_none(const struct virtio_pci *vp, uint64_t v)
{
	/* A vector the device cannot map reads back as NO_VECTOR (4.1.4.3). */
	return v < vp->nr_vectors ? (uint16_t)v : VIRTIO_NO_VECTOR;
}

/* One of the 64-bit ring addresses, written whole or as two halves. */
static void write_addr(uint64_t *a, unsigned rel, unsigned size, uint64_t val)
{
	if (size == 8 && rel == 0)
		*a = val;
	else if (size == 4 && rel == 0)
		*a = (*a & 0xFFFFFFFF00000000ULL) | (uint32_t)val;
	else if (size == 4 && rel == 4)
		*a = (*a & 0xFFFFFFFFULL) | (val << 32);
}

static void common_write(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t val)
{
	struct virtio_pci_state *st = &vp->st;
	unsigned q = st->queue_select;
	struct virtq_state *qs = q < vp->nr_queues ? &st->vq[q] : NULL;
	bool q_writable = qs && !qs->enabled;
	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		if (size == 4)
			st->device_feature_select = (uint32_t)val;
		return;
	case VIRTIO_PCI_COMMON_GFSELECT:
		if (size == 4)
			st->driver_feature_select = (uint32_t)val;
		return;
	case VIRTIO_PCI_COMMON_GF:
		if (size == 4 && st->driver_feature_select < 2 &&
		    !(st->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
			unsigned sh = 32 * st->driver_feature_select;
			st->driver_features = (st->driver_features & ~(0xFFFFFFFFULL << sh)) |
					      ((val & 0xFFFFFFFFULL) << sh);
		}
		return;
	case VIRTIO_PCI_COMMON_MSIX:
		if (size == 2)
			st->config_msix_vector = vector_or_none(vp, val);
		return;
	case VIRTIO_PCI_COMMON_STATUS:
		if (size == 1)
			write_status(vp, (uint8_t)val);
		return;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		if (size == 2)
			st->queue_select = (uint16_t)val;
		return;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		if (size == 2 && q_writable)
			qs->size = (uint16_t)val;	/* checked at enable */
		return;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		if (size == 2 && qs)
			qs->msix_vector = vector_or_none(vp, val);
		return;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		/* Writing 0 is forbidden to the driver; only reset disables. */
		if (size == 2 && q_writable && val == 1) {
			const char *why = NULL;
			vp->vq[q].indirect = virtio_pci__has_feature(vp, VIRTIO_RING_F_INDIRECT_DESC);
			if (virtq__enable(&vp->vq[q], &why) < 0)
				virtio_pci__set_broken(vp, why);
		}
		return;
	}
	if (!q_writable)
		return;
	if (off >= VIRTIO_PCI_COMMON_Q_DESCLO && off < VIRTIO_PCI_COMMON_Q_AVAILLO)
		write_addr(&qs->desc, off - VIRTIO_PCI_COMMON_Q_DESCLO, size, val);
	else if (off >= VIRTIO_PCI_COMMON_Q_AVAILLO && off < VIRTIO_PCI_COMMON_Q_USEDLO)
		write_addr(&qs->avail, off - VIRTIO_PCI_COMMON_Q_AVAILLO, size, val);
	else if (off >= VIRTIO_PCI_COMMON_Q_USEDLO && off < VIRTIO_PCI_COMMON_LEN)
		write_addr(&qs->used, off - VIRTIO_PCI_COMMON_Q_USEDLO, size, val);
}

/* ---- the BAR ---- */

static bool in_region(uint64_t off, unsigned size, uint64_t start, uint64_t len)
{
	return off >= start && off - start < len && size <= len - (off - start);
}

static unsigned msix_table_len(const struct virtio_pci *vp)
{
	return 16 * vp->nr_vectors;
}

static void bar_read(struct io_dev *io, uint64_t off, void *data, unsigned size)
{
	struct virtio_pci *vp = io->opaque;
	uint8_t img[VIRTIO_PCI_COMMON_LEN];
	memset(data, 0, size);
	pthread_mutex_lock(&vp->lock);
	if (in_region(off, size, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN)) {
		common_image(vp, img);
		memcpy(data, img + (off - VIRTIO_PCI_COMMON_OFF), size);
	} else if (in_region(off, size, VIRTIO_PCI_ISR_OFF, VIRTIO_PCI_ISR_LEN)) {
		if (off == VIRTIO_PCI_ISR_OFF) {
			/* Read-to-clear: the INTx handler's acknowledgement. */
			*(uint8_t *)data = vp->st.isr;
			vp->st.isr = 0;
			pci__set_intx(&vp->pci, 0);
		}
	} else if (in_region(off, size, VIRTIO_PCI_DEVCFG_OFF, vp->ops->config_len)) {
		if (vp->ops->config_read)
			vp->ops->config_read(vp, (unsigned)(off - VIRTIO_PCI_DEVCFG_OFF), data, size);
	} else if (in_region(off, size, VIRTIO_PCI_MSIX_TABLE_OFF, msix_table_len(vp))) {
		memcpy(data, (uint8_t *)vp->st.msix + (off - VIRTIO_PCI_MSIX_TABLE_OFF), size);
	} else if (in_region(off, size, VIRTIO_PCI_MSIX_PBA_OFF, 8)) {
		memcpy(data, (uint8_t *)&vp->st.msix_pba + (off - VIRTIO_PCI_MSIX_PBA_OFF), size);
	}
	pthread_mutex_unlock(&vp->lock);
}

static void msix_table_write(struct virtio_pci *vp, uint64_t rel, const void *data, unsigned size)
{
	memcpy((uint8_t *)vp->st.msix + rel, data, size);
	unsigned first = (unsigned)(rel / 16), last = (unsigned)((rel + size - 1) / 16);
	for (unsigned v = first; v <= last; v++)
		vp->st.msix[v].ctrl &= VIRTIO_MSIX_CTRL_MASKED;	/* other bits reserved */
	msix_flush_pending(vp);
}

static void bar_write(struct io_dev *io, uint64_t off, const void *data, unsigned size)
{
	struct virtio_pci *vp = io->opaque;
	uint64_t val = 0;
	memcpy(&val, data, MIN(size, 8u));
	if (in_region(off, size, VIRTIO_PCI_NOTIFY_OFF, VIRTIO_PCI_NOTIFY_MULT * vp->nr_queues)) {
		/* The ioeventfd missed this write (or there is no KVM): do its
		 * job. No lock: the device thread takes it. */
		unsigned q = (unsigned)((off - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT);
		uint64_t one = 1;
		if (write(vp->kick_fd[q], &one, sizeof(one)) < 0) {
			/* Saturated counter: already pending. */
		}
		return;
	}
	pthread_mutex_lock(&vp->lock);
	if (in_region(off, size, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN)) {
		common_write(vp, (unsigned)(off - VIRTIO_PCI_COMMON_OFF), size, val);
	} else if (in_region(off, size, VIRTIO_PCI_DEVCFG_OFF, vp->ops->config_len)) {
		if (vp->ops->config_write)
			vp->ops->config_write(vp, (unsigned)(off - VIRTIO_PCI_DEVCFG_OFF), data, size);
	} else if (in_region(off, size, VIRTIO_PCI_MSIX_TABLE_OFF, msix_table_len(vp))) {
		msix_table_write(vp, off - VIRTIO_PCI_MSIX_TABLE_OFF, data, size);
	}
	/* ISR and PBA are read-only. */
	pthread_mutex_unlock(&vp->lock);
}

/* ---- PCI callbacks (pci bus lock held) ---- */

static void ioeventfds_set(struct virtio_pci *vp, bool assign, uint64_t base)
{
	int vm_fd = vp->vm->vm_fd;
	for (unsigned q = 0; q < vp->nr_queues; q++) {
		if (vm_fd < 0 || vp->ioeventfd[q] == assign)
			continue;
		struct kvm_ioeventfd ev = {
			.datamatch = q,
			.addr = base + VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * q,
			.len = 2,
			.fd = vp->kick_fd[q],
			.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
		};
		/* A failed assign leaves the BAR handler to signal the queue. */
		if (ioctl(vm_fd, KVM_IOEVENTFD, &ev) == 0 || !assign)
			vp->ioeventfd[q] = assign;
	}
	vp->ioeventfd_base = assign ? base : 0;
}

static void on_bar_mapped(struct pci_device *pd, unsigned bar, bool mapped, uint64_t base)
{
	struct virtio_pci *vp = pd->opaque;
	if (bar != VIRTIO_PCI_BAR)
		return;
	if (vp->ioeventfd_base)
		ioeventfds_set(vp, false, vp->ioeventfd_base);
	if (mapped)
		ioeventfds_set(vp, true, base);
}

static bool cfg_touches(unsigned off, unsigned size, unsigned reg, unsigned len)
{
	return off < reg + len && reg < off + size;
}

/* VIRTIO_PCI_CAP_PCI_CFG: a window into the BAR through config space, for
 * drivers that cannot map BARs. Returns the access length, or 0. */
static unsigned pci_cfg_window(struct virtio_pci *vp, uint64_t *bar_off)
{
	const struct pci_device *pd = &vp->pci;
	unsigned c = (unsigned)vp->cap_pci_cfg;
	unsigned bar = pd->st.config[c + VIRTIO_PCI_CAP_BAR];
	uint32_t off = pci__cfg_get(pd, c + VIRTIO_PCI_CAP_OFFSET, 4);
	uint32_t len = pci__cfg_get(pd, c + VIRTIO_PCI_CAP_LENGTH, 4);
	if (bar != VIRTIO_PCI_BAR || (len != 1 && len != 2 && len != 4) || off % len ||
	    off + len > VIRTIO_PCI_BAR_SIZE)
		return 0;
	*bar_off = off;
	return len;
}

static void on_config_read(struct pci_device *pd, unsigned off, unsigned size)
{
	struct virtio_pci *vp = pd->opaque;
	unsigned data_off = (unsigned)vp->cap_pci_cfg + 16;
	if (!cfg_touches(off, size, data_off, 4))
		return;
	uint64_t bar_off;
	unsigned len = pci_cfg_window(vp, &bar_off);
	uint8_t buf[4] = { 0 };
	if (len)
		bar_read(&vp->bar_io, bar_off, buf, len);
	memcpy(&pd->st.config[data_off], buf, 4);
}

static void on_config_write(struct pci_device *pd, unsigned off, unsigned size)
{
	struct virtio_pci *vp = pd->opaque;
	unsigned data_off = (unsigned)vp->cap_pci_cfg + 16;
	if (cfg_touches(off, size, data_off, 4)) {
		uint64_t bar_off;
		unsigned len = pci_cfg_window(vp, &bar_off);
		if (len)
			bar_write(&vp->bar_io, bar_off, &pd->st.config[data_off], len);
	}
	unsigned ctrl_off = (unsigned)vp->cap_msix + 2;
	bool msix = cfg_touches(off, size, ctrl_off, 2);
	bool cmd = cfg_touches(off, size, PCI_REG_COMMAND, 2);
	if (!msix && !cmd)
		return;
	pthread_mutex_lock(&vp->lock);
	if (msix) {
		uint16_t ctrl = (uint16_t)pci__cfg_get(pd, ctrl_off, 2);
		bool was = vp->msix_enabled;
		vp->msix_enabled = ctrl & 0x8000;
		vp->msix_fmask = ctrl & 0x4000;
		if (vp->msix_enabled && !was) {
			/* INTx is not used alongside MSI-X. */
			vp->st.isr = 0;
			pci__set_intx(pd, 0);
		}
		msix_flush_pending(vp);
	}
	if (cmd && (pci__command(pd) & PCI_CMD_MASTER))
		kick_all(vp);	/* kicks held while DMA was off */
	pthread_mutex_unlock(&vp->lock);
}

static const struct pci_device_ops virtio_pci_dev_ops = {
	.config_read = on_config_read,
	.config_write = on_config_write,
	.bar_mapped = on_bar_mapped,
};

/* ---- construction ---- */

static int add_vcap(struct virtio_pci *vp, uint8_t type, uint32_t off, uint32_t len,
		    unsigned cap_len, uint32_t extra, struct err *e)
{
	uint8_t cap[20] = { 0 };
	cap[VIRTIO_PCI_CAP_LEN] = (uint8_t)cap_len;
	cap[VIRTIO_PCI_CAP_CFG_TYPE] = type;
	cap[VIRTIO_PCI_CAP_BAR] = VIRTIO_PCI_BAR;
	put(cap, VIRTIO_PCI_CAP_OFFSET, 4, off);
	put(cap, VIRTIO_PCI_CAP_LENGTH, 4, len);
	if (cap_len > 16)
		put(cap, 16, 4, extra);
	return pci__add_cap(&vp->pci, PCI_CAP_ID_VNDR, cap, cap_len, e);
}

static int build_caps(struct virtio_pci *vp, struct err *e)
{
	uint8_t msix[12] = { 0 };
	put(msix, 2, 2, vp->nr_vectors - 1);	/* table size - 1; disabled, unmasked */
	put(msix, 4, 4, VIRTIO_PCI_MSIX_TABLE_OFF | VIRTIO_PCI_BAR);
	put(msix, 8, 4, VIRTIO_PCI_MSIX_PBA_OFF | VIRTIO_PCI_BAR);
	int r = pci__add_cap(&vp->pci, PCI_CAP_ID_MSIX, msix, sizeof(msix), e);
	if (r < 0)
		return r;
	vp->cap_msix = r;
	static const uint8_t msix_wmask[2] = { 0x00, 0xC0 };	/* enable, function mask */
	pci__set_wmask(&vp->pci, (unsigned)r + 2, msix_wmask, 2);

	if ((r = add_vcap(vp, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF,
			  VIRTIO_PCI_COMMON_LEN, 16, 0, e)) < 0 ||
	    (r = add_vcap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF,
			  VIRTIO_PCI_NOTIFY_MULT * vp->nr_queues, 20, VIRTIO_PCI_NOTIFY_MULT, e)) < 0 ||
	    (r = add_vcap(vp, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, VIRTIO_PCI_ISR_LEN, 16, 0, e)) < 0)
		return r;
	if (vp->ops->config_len &&
	    (r = add_vcap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVCFG_OFF, vp->ops->config_len,
			  16, 0, e)) < 0)
		return r;
	if ((r = add_vcap(vp, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 20, 0, e)) < 0)
		return r;
	vp->cap_pci_cfg = r;
	/* The driver picks bar, offset and length of the window, and data. */
	uint8_t w[20] = { 0 };
	w[VIRTIO_PCI_CAP_BAR] = 0xff;
	memset(&w[VIRTIO_PCI_CAP_OFFSET], 0xff, 12);
	pci__set_wmask(&vp->pci, (unsigned)r, w, sizeof(w));
	return 0;
}

static void close_fds(struct virtio_pci *vp)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (vp->kick_fd[q] >= 0)
			close(vp->kick_fd[q]);
		vp->kick_fd[q] = -1;
	}
	for (unsigned v = 0; v < VIRTIO_MSIX_MAX; v++) {
		struct virtio_msix_rt *rt = &vp->msix_rt[v];
		if (rt->gsi >= 0 && vp->vm->irq) {
			irq_routing__irqfd_deassign(vp->vm->irq, rt->fd, (unsigned)rt->gsi);
			irq_routing__msi_free(vp->vm->irq, (unsigned)rt->gsi);
		}
		rt->gsi = -1;
		if (rt->fd >= 0)
			close(rt->fd);
		rt->fd = -1;
	}
	if (vp->ctl_fd >= 0)
		close(vp->ctl_fd);
	vp->ctl_fd = -1;
}

int virtio_pci__init(struct virtio_pci *vp, struct vm *vm, const struct virtio_dev_ops *ops,
		     void *opaque, const char *name, unsigned nr_queues, uint16_t queue_max,
		     uint64_t features, struct err *e)
{
	if (!vm->pci)
		return err__set(e, EINVAL, "%s: no PCI bus (pci__create first)", name);
	if (!nr_queues || nr_queues > VIRTIO_MAX_QUEUES || !queue_max || queue_max > VIRTQ_MAX_SIZE ||
	    ops->config_len > VIRTIO_PCI_DEVCFG_MAX)
		return err__set(e, EINVAL, "%s: unsupported virtio geometry", name);
	vp->vm = vm;
	vp->ops = ops;
	vp->opaque = opaque;
	snprintf(vp->name, sizeof(vp->name), "%s", name);
	vp->nr_queues = nr_queues;
	vp->nr_vectors = nr_queues + 1;
	vp->device_features = features | (1ULL << VIRTIO_F_VERSION_1) |
			      (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
	vp->ctl_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vp->kick_fd[q] = -1;
	for (unsigned v = 0; v < VIRTIO_MSIX_MAX; v++)
		vp->msix_rt[v] = (struct virtio_msix_rt){ .fd = -1, .gsi = -1 };
	pthread_mutex_init(&vp->lock, NULL);

	vp->st.config_msix_vector = VIRTIO_NO_VECTOR;
	for (unsigned q = 0; q < nr_queues; q++)
		virtq__init(&vp->vq[q], &vp->st.vq[q], &vm->mem, queue_max);
	for (unsigned v = 0; v < vp->nr_vectors; v++)
		vp->st.msix[v].ctrl = VIRTIO_MSIX_CTRL_MASKED;

	int r = 0;
	vp->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	for (unsigned q = 0; q < nr_queues && vp->ctl_fd >= 0; q++)
		if ((vp->kick_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
			break;
	for (unsigned v = 0; v < vp->nr_vectors; v++)
		vp->msix_rt[v].fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (vp->ctl_fd < 0 || vp->kick_fd[nr_queues - 1] < 0 || vp->msix_rt[vp->nr_vectors - 1].fd < 0) {
		r = err__setsys(e, errno, "%s: eventfd", name);
		goto fail;
	}

	uint16_t id = (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_type);
	pci__device_init(&vp->pci, VIRTIO_PCI_VENDOR, id, ops->class_code, VIRTIO_PCI_REVISION,
			 VIRTIO_PCI_VENDOR, id);
	vp->bar_io = (struct io_dev){ .name = vp->name, .opaque = vp, .read = bar_read, .write = bar_write };
	if ((r = pci__set_bar(&vp->pci, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, 0, &vp->bar_io, e)) < 0 ||
	    (r = build_caps(vp, e)) < 0 ||
	    (r = pci__add_device(vm->pci, &vp->pci, &virtio_pci_dev_ops, vp, e)) < 0)
		goto fail;
	r = -pthread_create(&vp->thread, NULL, device_thread, vp);
	if (r < 0) {
		pci__remove_device(vm->pci, &vp->pci);
		err__setsys(e, -r, "%s: cannot start the device thread", name);
		goto fail;
	}
	vp->thread_started = true;
	return 0;
fail:
	close_fds(vp);
	pthread_mutex_destroy(&vp->lock);
	return r;
}

void virtio_pci__exit(struct virtio_pci *vp)
{
	if (vp->thread_started) {
		atomic_store(&vp->stop, true);
		wake_thread(vp);
		pthread_join(vp->thread, NULL);
		vp->thread_started = false;
	}
	if (vp->vm->pci)
		pci__remove_device(vp->vm->pci, &vp->pci);	/* drops ioeventfds and INTx */
	close_fds(vp);
	pthread_mutex_destroy(&vp->lock);
}
