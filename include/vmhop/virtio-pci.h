/* virtio over PCI, modern interface only (virtio 1.x, 4.1).
 *
 * One 32-bit memory BAR (BAR0) holds every structure; guests find them
 * through the vendor capabilities, so the layout below is ours to choose:
 *
 *   0x0000  common configuration (struct virtio_pci_common_cfg)
 *   0x0100  ISR status (byte 0; reading clears it and drops INTx)
 *   0x0200  device-specific configuration
 *   0x1000  notifications: queue q at 0x1000 + 4*q (notify_off_multiplier 4)
 *   0x2000  MSI-X table (16 bytes per vector)
 *   0x3000  MSI-X pending bit array
 *
 * Notifications: KVM_IOEVENTFD on each queue's notify address (16-bit
 * write, datamatch = queue index) signals that queue's eventfd without a
 * VM exit; a write that misses it (or every write, without KVM) reaches the
 * BAR handler, which signals the same eventfd. One device thread waits on
 * the eventfds and calls the device's handle_queue.
 *
 * Interrupts: with MSI-X enabled, each vector gets an MSI route and an
 * irqfd the device thread signals; masked vectors set their PBA bit and
 * fire on unmask. Without MSI-X: the ISR bit and INTx (level) on the
 * device's GSI. A guest that polls the used ring needs neither.
 *
 * Locking: vp->lock covers the transport state and all queue processing,
 * so a reset, a pause or a register access never overlaps a request in
 * flight. Order: pci bus lock -> vm->mmio -> vp->lock -> irq routing. */
#ifndef VMHOP_VIRTIO_PCI_H
#define VMHOP_VIRTIO_PCI_H

#include <linux/virtio_pci.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"
#include "vmhop/io-bus.h"
#include "vmhop/pci.h"
#include "vmhop/virtio.h"

struct vm;

#define VIRTIO_PCI_VENDOR		0x1AF4
#define VIRTIO_PCI_DEVICE_BASE		0x1040	/* + virtio device type */
#define VIRTIO_PCI_REVISION		1

#define VIRTIO_MAX_QUEUES		8
#define VIRTIO_MSIX_MAX			(VIRTIO_MAX_QUEUES + 1)

#define VIRTIO_PCI_BAR			0
#define VIRTIO_PCI_BAR_SIZE		0x4000
#define VIRTIO_PCI_COMMON_OFF		0x0000
#define VIRTIO_PCI_COMMON_LEN		0x38	/* through queue_device */
#define VIRTIO_PCI_ISR_OFF		0x0100
#define VIRTIO_PCI_ISR_LEN		4
#define VIRTIO_PCI_DEVCFG_OFF		0x0200
#define VIRTIO_PCI_DEVCFG_MAX		0x100
#define VIRTIO_PCI_NOTIFY_OFF		0x1000
#define VIRTIO_PCI_NOTIFY_MULT		4
#define VIRTIO_PCI_MSIX_TABLE_OFF	0x2000
#define VIRTIO_PCI_MSIX_PBA_OFF		0x3000

#define VIRTIO_MSIX_CTRL_MASKED		0x1
#define VIRTIO_PCI_ISR_QUEUE		0x1	/* ISR bit: used buffers */

struct virtio_msix_entry {
	uint32_t addr_lo;
	uint32_t addr_hi;
	uint32_t data;
	uint32_t ctrl;
};

/* Everything the driver configured and the device tracks: plain data for
 * the migration stream. MSI-X enable/mask bits live in the PCI config
 * space (pci_dev_state). */
struct virtio_pci_state {
	uint64_t driver_features;
	uint32_t device_feature_select;
	uint32_t driver_feature_select;
	uint16_t config_msix_vector;
	uint16_t queue_select;
	uint8_t status;
	uint8_t config_generation;
	uint8_t isr;
	uint8_t broken;			/* DEVICE_NEEDS_RESET raised by us */
	struct virtq_state vq[VIRTIO_MAX_QUEUES];
	struct virtio_msix_entry msix[VIRTIO_MSIX_MAX];
	uint64_t msix_pba;
};

struct virtio_pci;

struct virtio_dev_ops {
	uint16_t device_type;		/* virtio device id: 2 = block */
	uint32_t class_code;		/* PCI class, 24 bits */
	unsigned config_len;		/* device config bytes, <= VIRTIO_PCI_DEVCFG_MAX */
	/* Device config access, with vp->lock held. */
	void (*config_read)(struct virtio_pci *vp, unsigned off, void *data, unsigned size);
	void (*config_write)(struct virtio_pci *vp, unsigned off, const void *data, unsigned size);
	/* Serves every available chain of queue q, with vp->lock held. Stops
	 * early when virtio_pci__pausing() says so. */
	void (*handle_queue)(struct virtio_pci *vp, unsigned q);
	/* Device part of a reset, with vp->lock held. */
	void (*reset)(struct virtio_pci *vp);
};

/* Replaces interrupt delivery (tests): vector is the MSI-X vector, or
 * VIRTIO_NO_VECTOR for INTx (after the ISR bit was set). Lock held. */
typedef void (*virtio_irq_hook_fn)(struct virtio_pci *vp, uint16_t vector, void *opaque);

struct virtio_msix_rt {
	int fd;				/* irqfd, -1 if none */
	int gsi;			/* MSI route, -1 if none */
	uint64_t addr;			/* what the route says */
	uint32_t data;
	bool failed;			/* no irqfd possible: KVM_SIGNAL_MSI */
};

struct virtio_pci {
	struct virtio_pci_state st;
	struct pci_device pci;		/* has its own plain state */

	/* Runtime only. */
	struct vm *vm;
	const struct virtio_dev_ops *ops;
	void *opaque;
	char name[48];
	uint64_t device_features;
	unsigned nr_queues;
	unsigned nr_vectors;
	struct virtq vq[VIRTIO_MAX_QUEUES];
	struct io_dev bar_io;
	pthread_mutex_t lock;
	int cap_msix;			/* config offsets of our capabilities */
	int cap_pci_cfg;
	bool msix_enabled;		/* mirrors of the MSI-X control bits */
	bool msix_fmask;
	int kick_fd[VIRTIO_MAX_QUEUES];
	bool ioeventfd[VIRTIO_MAX_QUEUES];
	uint64_t ioeventfd_base;	/* BAR base the ioeventfds use */
	struct virtio_msix_rt msix_rt[VIRTIO_MSIX_MAX];
	int ctl_fd;			/* wakes the device thread */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	atomic_bool pause_req;
	bool paused;
	uint32_t pending;		/* queues kicked but not yet served */
	virtio_irq_hook_fn irq_hook;
	void *irq_hook_opaque;
	const char *broken_reason;	/* why we raised DEVICE_NEEDS_RESET */
	uint64_t nr_interrupts;
};

/* Builds the PCI function (IDs 0x1AF4:0x1040+type, revision 1), its BAR and
 * capabilities, puts it on vm->pci and starts the device thread. `vp` must
 * be zeroed. `features` are the device's own feature bits; VERSION_1 and
 * RING_INDIRECT_DESC are added here. */
int virtio_pci__init(struct virtio_pci *vp, struct vm *vm, const struct virtio_dev_ops *ops,
		     void *opaque, const char *name, unsigned nr_queues, uint16_t queue_max,
		     uint64_t features, struct err *e);
/* Stops the thread, takes the function off the bus, releases irqfds, routes
 * and eventfds. */
void virtio_pci__exit(struct virtio_pci *vp);

/* Stops serving queues: returns once no request is in flight. Kicks that
 * arrive meanwhile are remembered. */
void virtio_pci__pause(struct virtio_pci *vp);
/* Serves queues again, starting with anything kicked while paused. */
void virtio_pci__resume(struct virtio_pci *vp);

/* After vp->st and vp->pci.st were overwritten with saved state (device
 * paused): re-derives everything runtime from them, i.e. BAR mappings and
 * ioeventfds, ring host pointers (re-validated), MSI-X mirrors, the INTx
 * line, and looks at every queue for work once resumed. */
void virtio_pci__post_load(struct virtio_pci *vp);

/* Serves queue q now on the calling thread (tests; takes vp->lock). */
void virtio_pci__process_queue(struct virtio_pci *vp, unsigned q);
void virtio_pci__set_irq_hook(struct virtio_pci *vp, virtio_irq_hook_fn fn, void *opaque);

/* For device code, with vp->lock held: */
/* Interrupt for used buffers on queue q. */
void virtio_pci__signal_queue(struct virtio_pci *vp, unsigned q);
/* Configuration change interrupt. */
void virtio_pci__signal_config(struct virtio_pci *vp);
/* The driver broke the rules: raise DEVICE_NEEDS_RESET, stop serving. */
void virtio_pci__set_broken(struct virtio_pci *vp, const char *why);
/* True when a pause wants the device thread to stop between requests. */
bool virtio_pci__pausing(struct virtio_pci *vp);
bool virtio_pci__has_feature(const struct virtio_pci *vp, unsigned bit);

uint64_t virtio_pci__bar_base(const struct virtio_pci *vp);

#endif
