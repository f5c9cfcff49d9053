/* PCI bus 0 behind configuration mechanism #1 (ports 0xCF8/0xCFC).
 *
 * There is no firmware, so the VMM assigns every memory BAR itself, from
 * LAYOUT_PCI_MMIO_BASE upward, naturally aligned, and turns memory decoding
 * and bus mastering on at creation. The guest may still size BARs (write
 * all ones), move them, and switch decoding off and on: the bus keeps each
 * BAR's io_dev on vm->mmio where the config space says it is.
 *
 * Locking: the bus lock is held for every config access and BAR move. Order:
 * bus lock -> vm->mmio lock (BAR moves) -> device locks. Device callbacks run
 * with the bus lock held and must not call back into functions that take it;
 * device threads read the command register through pci__command(), which is
 * lock-free, and raise INTx through pci__set_intx(). */
#ifndef VMHOP_PCI_H
#define VMHOP_PCI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"
#include "vmhop/io-bus.h"

struct vm;

#define PCI_CFG_SIZE		256
#define PCI_NR_SLOTS		32
#define PCI_NR_BARS		6

/* Type-0 header offsets. */
#define PCI_REG_VENDOR_ID	0x00
#define PCI_REG_DEVICE_ID	0x02
#define PCI_REG_COMMAND		0x04
#define PCI_REG_STATUS		0x06
#define PCI_REG_REVISION	0x08
#define PCI_REG_CLASS_PROG	0x09
#define PCI_REG_CACHE_LINE	0x0C
#define PCI_REG_LATENCY		0x0D
#define PCI_REG_HEADER_TYPE	0x0E
#define PCI_REG_BAR0		0x10
#define PCI_REG_SUBSYS_VENDOR	0x2C
#define PCI_REG_SUBSYS_ID	0x2E
#define PCI_REG_ROM		0x30
#define PCI_REG_CAP_PTR		0x34
#define PCI_REG_INT_LINE	0x3C
#define PCI_REG_INT_PIN		0x3D
#define PCI_CAP_START		0x40

#define PCI_CMD_IO		0x0001
#define PCI_CMD_MEM		0x0002
#define PCI_CMD_MASTER		0x0004
#define PCI_CMD_INTX_DISABLE	0x0400
#define PCI_STATUS_INTX		0x0008
#define PCI_STATUS_CAP_LIST	0x0010

#define PCI_BAR_MEM_64		0x4
#define PCI_BAR_PREFETCH	0x8

#define PCI_CAP_ID_VNDR		0x09
#define PCI_CAP_ID_MSIX		0x11

#define PCI_HOST_BRIDGE_VENDOR	0x8086	/* i440FX, what guests expect at 00:00.0 */
#define PCI_HOST_BRIDGE_DEVICE	0x1237

/* Flags for pci__set_bar. */
#define PCI_BAR_F_64		0x1
#define PCI_BAR_F_PREFETCH	0x2

/* Saved and loaded as is: the config space holds BAR addresses, command,
 * capabilities (and so the MSI-X enable bits). No pointers. */
struct pci_dev_state {
	uint8_t config[PCI_CFG_SIZE];
	uint8_t intx_level;	/* the device's INTx input, before INTx disable */
	uint8_t pad[7];
};

struct pci_device;
struct pci_device_ops {
	/* Before a config read of [off, off+size) is assembled: refresh
	 * registers whose value is computed. */
	void (*config_read)(struct pci_device *pd, unsigned off, unsigned size);
	/* After a config write of [off, off+size) landed in the config bytes. */
	void (*config_write)(struct pci_device *pd, unsigned off, unsigned size);
	/* BAR `bar` now decodes at `base` (mapped) or not at all. */
	void (*bar_mapped)(struct pci_device *pd, unsigned bar, bool mapped, uint64_t base);
};

struct pci_bar {
	uint64_t size;		/* 0: unused; else a power of two >= 16 */
	unsigned flags;		/* PCI_BAR_F_* */
	struct io_dev *io;	/* handlers; io->base follows the BAR */
	bool mapped;		/* io is on vm->mmio */
};

struct pci_device {
	struct pci_dev_state st;
	/* Runtime: derived from how the device was built. */
	uint8_t wmask[PCI_CFG_SIZE];	/* guest-writable bits */
	struct pci_bar bars[PCI_NR_BARS];
	uint8_t cap_end;		/* first free config byte for capabilities */
	uint8_t last_cap;		/* offset of the last capability, 0: none */
	unsigned slot;			/* 0 until added */
	unsigned gsi;			/* IOAPIC pin INTA# is wired to */
	const struct pci_device_ops *ops;
	void *opaque;
	struct pci_bus *bus;
	_Atomic uint16_t command;	/* mirror of the command register */
	bool intx_asserted;		/* counted in bus->gsi_count (intx_lock) */
};

struct pci_bus {
	struct vm *vm;
	pthread_mutex_t lock;
	uint32_t conf_addr;		/* the 0xCF8 latch */
	struct pci_device *slots[PCI_NR_SLOTS];
	struct pci_device host_bridge;
	struct io_dev conf_addr_io;	/* 0xCF8-0xCFB */
	struct io_dev conf_data_io;	/* 0xCFC-0xCFF */
	struct io_dev *cf9;		/* byte accesses at 0xCF9, see pci__set_cf9 */
	struct io_dev *cf9_adopted;	/* taken off vm->pio by pci__create */
	uint64_t mmio_next;		/* BAR allocation cursor */
	/* Leaf lock: devices may share a GSI, and KVM_IRQ_LINE takes one
	 * level per GSI, so the line is high while any sharer asserts. */
	pthread_mutex_t intx_lock;
	unsigned gsi_count[24];
};

/* Creates bus 0 with the host bridge, claims 0xCF8-0xCFF on vm->pio and sets
 * vm->pci. Needs vm->pio and vm->mmio initialised; vm->irq may be NULL
 * (INTx is then dropped). A 1-byte device already at 0xCF9 (the reset
 * port) is taken off vm->pio and served through the conf1 address
 * register; pci__destroy puts it back. */
int pci__create(struct vm *vm, struct err *e);
/* Removes the conf1 ports; devices must have been removed already. */
void pci__destroy(struct vm *vm);

/* 0xCF9 (reset control) sits inside the 32-bit conf1 address register, so it
 * cannot be a separate io_bus range: byte accesses at 0xCF9 go to this
 * io_dev (offset 0). Needed only if the reset port is created after PCI. */
void pci__set_cf9(struct pci_bus *bus, struct io_dev *dev);

/* Fills the header of a device not yet on a bus. class_code is the 24-bit
 * class/subclass/prog-if. Interrupt pin INTA#. */
void pci__device_init(struct pci_device *pd, uint16_t vendor, uint16_t device,
		      uint32_t class_code, uint8_t revision,
		      uint16_t subsys_vendor, uint16_t subsys_id);
/* Declares memory BAR `idx` of `size` bytes (a power of two, >= 16) served by
 * `io` (len is set to size). A 64-bit BAR also takes idx+1. Before add. */
int pci__set_bar(struct pci_device *pd, unsigned idx, uint64_t size, unsigned flags,
		 struct io_dev *io, struct err *e);
/* Appends a capability: `cap` holds `len` bytes including the id and next
 * bytes (those two are filled in). Returns its config offset or -errno. */
int pci__add_cap(struct pci_device *pd, uint8_t id, const void *cap, unsigned len, struct err *e);
/* Marks guest-writable bits of [off, off+len) (capability registers). */
void pci__set_wmask(struct pci_device *pd, unsigned off, const uint8_t *mask, unsigned len);

/* Puts the device in the first free slot (>= 1), wires INTA# to a GSI,
 * assigns its BARs and maps them with memory decoding and bus mastering on. */
int pci__add_device(struct pci_bus *bus, struct pci_device *pd, const struct pci_device_ops *ops,
		    void *opaque, struct err *e);
/* Unmaps the BARs, drops INTx and frees the slot. */
void pci__remove_device(struct pci_bus *bus, struct pci_device *pd);

/* Config accesses as conf1 performs them (tests call them directly). Reads
 * of absent devices return all ones. size is 1, 2 or 4, off aligned to it. */
uint32_t pci__config_read(struct pci_bus *bus, unsigned slot, unsigned fn, unsigned off, unsigned size);
void pci__config_write(struct pci_bus *bus, unsigned slot, unsigned fn, unsigned off, unsigned size,
		       uint32_t val);

/* Re-applies BAR mappings from the config space (after loading state). */
void pci__sync_bars(struct pci_device *pd);

/* The device's INTx input. Asserts the GSI unless INTx is disabled. */
void pci__set_intx(struct pci_device *pd, int level);
uint16_t pci__command(struct pci_device *pd);
/* Address BAR `idx` decodes at per the config space (0 if unused). */
uint64_t pci__bar_base(const struct pci_device *pd, unsigned idx);

/* Little-endian config-space accessors for device code. */
static inline uint32_t pci__cfg_get(const struct pci_device *pd, unsigned off, unsigned size)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)pd->st.config[off + i] << (8 * i);
	return v;
}

static inline void pci__cfg_put(struct pci_device *pd, unsigned off, unsigned size, uint32_t v)
{
	for (unsigned i = 0; i < size; i++)
		pd->st.config[off + i] = (uint8_t)(v >> (8 * i));
}

#endif
