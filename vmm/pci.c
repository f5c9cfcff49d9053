#include <stdlib.h>
#include <string.h>

#include "vmhop/irq-routing.h"
#include "vmhop/layout.h"
#include "vmhop/pci.h"
#include "vmhop/util.h"
#include "vmhop/vm.h"

#define CONF1_ENABLE	0x80000000u
/* INTA# of slot s goes to IOAPIC pin 16 + (s - 1) % 8: pins 16-23 are free
 * of ISA devices, and the MP table must say the same. */
#define PCI_GSI_BASE	16
#define PCI_NR_GSI	8

static uint16_t cfg16(const struct pci_device *pd, unsigned off)
{
	return (uint16_t)pci__cfg_get(pd, off, 2);
}

static uint32_t cfg32(const struct pci_device *pd, unsigned off)
{
	return pci__cfg_get(pd, off, 4);
}

static void wmask_put(struct pci_device *pd, unsigned off, unsigned size, uint32_t v)
{
	for (unsigned i = 0; i < size; i++)
		pd->wmask[off + i] = (uint8_t)(v >> (8 * i));
}

void pci__device_init(struct pci_device *pd, uint16_t vendor, uint16_t device,
		      uint32_t class_code, uint8_t revision,
		      uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(pd, 0, sizeof(*pd));
	pci__cfg_put(pd, PCI_REG_VENDOR_ID, 2, vendor);
	pci__cfg_put(pd, PCI_REG_DEVICE_ID, 2, device);
	pci__cfg_put(pd, PCI_REG_REVISION, 1, revision);
	pci__cfg_put(pd, PCI_REG_CLASS_PROG, 3, class_code);
	pci__cfg_put(pd, PCI_REG_SUBSYS_VENDOR, 2, subsys_vendor);
	pci__cfg_put(pd, PCI_REG_SUBSYS_ID, 2, subsys_id);
	pci__cfg_put(pd, PCI_REG_INT_PIN, 1, 1);	/* INTA# */
	/* Status is read-only here: we never report errors to clear. */
	wmask_put(pd, PCI_REG_COMMAND, 2, PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER |
		  0x0040 /* parity */ | 0x0100 /* SERR# */ | PCI_CMD_INTX_DISABLE);
	wmask_put(pd, PCI_REG_CACHE_LINE, 1, 0xff);
	wmask_put(pd, PCI_REG_LATENCY, 1, 0xff);
	wmask_put(pd, PCI_REG_INT_LINE, 1, 0xff);	/* scratch for the guest */
	pd->cap_end = PCI_CAP_START;
}

int pci__set_bar(struct pci_device *pd, unsigned idx, uint64_t size, unsigned flags,
		 struct io_dev *io, struct err *e)
{
	bool is64 = flags & PCI_BAR_F_64;
	if (idx >= PCI_NR_BARS || (is64 && idx + 1 >= PCI_NR_BARS))
		return err__set(e, EINVAL, "pci: BAR %u does not exist", idx);
	if (size < 16 || (size & (size - 1)) || (!is64 && size > 1ULL << 31))
		return err__set(e, EINVAL, "pci: BAR size 0x%llx is not a valid power of two",
				(unsigned long long)size);
	if (pd->bars[idx].size || (idx && (pd->bars[idx - 1].flags & PCI_BAR_F_64)))
		return err__set(e, EBUSY, "pci: BAR %u is already in use", idx);
	pd->bars[idx] = (struct pci_bar){ .size = size, .flags = flags, .io = io };
	io->len = size;
	uint32_t type = (is64 ? PCI_BAR_MEM_64 : 0) | (flags & PCI_BAR_F_PREFETCH ? PCI_BAR_PREFETCH : 0);
	unsigned off = PCI_REG_BAR0 + 4 * idx;
	pci__cfg_put(pd, off, 4, type);
	/* Address bits below the size read as zero: that is how sizing works. */
	wmask_put(pd, off, 4, (uint32_t)~(size - 1) & ~0xFu);
	if (is64)
		wmask_put(pd, off + 4, 4, (uint32_t)(~(size - 1) >> 32));
	return 0;
}

int pci__add_cap(struct pci_device *pd, uint8_t id, const void *cap, unsigned len, struct err *e)
{
	unsigned off = ALIGN_UP((unsigned)pd->cap_end, 4u);
	if (len < 2 || off + len > PCI_CFG_SIZE)
		return err__set(e, ENOSPC, "pci: no room for a %u-byte capability", len);
	memcpy(&pd->st.config[off], cap, len);
	pd->st.config[off] = id;
	pd->st.config[off + 1] = 0;
	if (pd->last_cap)
		pd->st.config[pd->last_cap + 1] = (uint8_t)off;
	else
		pd->st.config[PCI_REG_CAP_PTR] = (uint8_t)off;
	pci__cfg_put(pd, PCI_REG_STATUS, 2, cfg16(pd, PCI_REG_STATUS) | PCI_STATUS_CAP_LIST);
	pd->last_cap = (uint8_t)off;
	pd->cap_end = (uint8_t)MIN(off + len, 0xFFu);
	return (int)off;
}

void pci__set_wmask(struct pci_device *pd, unsigned off, const uint8_t *mask, unsigned len)
{
	if (off >= PCI_CFG_SIZE)
		return;
	memcpy(&pd->wmask[off], mask, MIN(len, PCI_CFG_SIZE - off));
}

uint64_t pci__bar_base(const struct pci_device *pd, unsigned idx)
{
	if (idx >= PCI_NR_BARS || !pd->bars[idx].size)
		return 0;
	uint64_t a = cfg32(pd, PCI_REG_BAR0 + 4 * idx) & ~0xFull;
	if (pd->bars[idx].flags & PCI_BAR_F_64)
		a |= (uint64_t)cfg32(pd, PCI_REG_BAR0 + 4 * idx + 4) << 32;
	return a;
}

uint16_t pci__command(struct pci_device *pd)
{
	return atomic_load_explicit(&pd->command, memory_order_acquire);
}

/* Puts BAR i where the config space says, or takes it off the bus when
 * decoding is off or the address is unusable (mid-sizing, wrapping).
 * Caller holds the bus lock. */
static void update_bar(struct pci_device *pd, unsigned i)
{
	struct pci_bar *b = &pd->bars[i];
	if (!b->size || !pd->bus)
		return;
	struct io_bus *mmio = &pd->bus->vm->mmio;
	uint64_t addr = pci__bar_base(pd, i);
	bool want = (cfg16(pd, PCI_REG_COMMAND) & PCI_CMD_MEM) && addr &&
		    addr + b->size > addr;
	struct err ignore = { 0 };
	if (want && b->mapped && b->io->base == addr)
		return;
	if (want) {
		int r;
		if (b->mapped) {
			r = io_bus__move(mmio, b->io, addr, &ignore);
		} else {
			b->io->base = addr;
			r = io_bus__add(mmio, b->io, &ignore);
			b->mapped = r == 0;
		}
		if (r == 0) {
			if (pd->ops && pd->ops->bar_mapped)
				pd->ops->bar_mapped(pd, i, true, addr);
			return;
		}
		/* Placed over another device: neither place is right, so the
		 * BAR stops decoding until the guest picks a free address. */
	}
	if (b->mapped) {
		io_bus__remove(mmio, b->io);
		b->mapped = false;
		if (pd->ops && pd->ops->bar_mapped)
			pd->ops->bar_mapped(pd, i, false, 0);
	}
}

void pci__sync_bars(struct pci_device *pd)
{
	if (!pd->bus)
		return;
	pthread_mutex_lock(&pd->bus->lock);
	atomic_store(&pd->command, cfg16(pd, PCI_REG_COMMAND));
	for (unsigned i = 0; i < PCI_NR_BARS; i++)
		update_bar(pd, i);
	pthread_mutex_unlock(&pd->bus->lock);
}

/* Recomputes the GSI level from every sharer. Caller holds intx_lock. */
static void intx_apply(struct pci_device *pd)
{
	struct pci_bus *bus = pd->bus;
	bool want = pd->st.intx_level && !(pci__command(pd) & PCI_CMD_INTX_DISABLE);
	if (want == pd->intx_asserted || !pd->gsi)
		return;
	pd->intx_asserted = want;
	unsigned g = pd->gsi;
	if (want)
		bus->gsi_count[g]++;
	else
		bus->gsi_count[g]--;
	irq_routing__line(bus->vm->irq, g, bus->gsi_count[g] > 0);
}

void pci__set_intx(struct pci_device *pd, int level)
{
	if (!pd->bus) {
		pd->st.intx_level = level ? 1 : 0;
		return;
	}
	pthread_mutex_lock(&pd->bus->intx_lock);
	pd->st.intx_level = level ? 1 : 0;
	intx_apply(pd);
	pthread_mutex_unlock(&pd->bus->intx_lock);
}

static struct pci_device *lookup(struct pci_bus *bus, unsigned slot, unsigned fn)
{
	if (slot >= PCI_NR_SLOTS || fn != 0)
		return NULL;
	return bus->slots[slot];
}

uint32_t pci__config_read(struct pci_bus *bus, unsigned slot, unsigned fn, unsigned off, unsigned size)
{
	uint32_t ones = size == 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
	if (off >= PCI_CFG_SIZE || off + size > PCI_CFG_SIZE)
		return ones;
	pthread_mutex_lock(&bus->lock);
	struct pci_device *pd = lookup(bus, slot, fn);
	uint32_t v = ones;
	if (pd) {
		if (pd->ops && pd->ops->config_read)
			pd->ops->config_read(pd, off, size);
		uint16_t st = cfg16(pd, PCI_REG_STATUS) & ~PCI_STATUS_INTX;
		if (pd->st.intx_level)
			st |= PCI_STATUS_INTX;
		pci__cfg_put(pd, PCI_REG_STATUS, 2, st);
		v = pci__cfg_get(pd, off, size);
	}
	pthread_mutex_unlock(&bus->lock);
	return v;
}

static bool touches(unsigned off, unsigned size, unsigned reg, unsigned len)
{
	return off < reg + len && reg < off + size;
}

void pci__config_write(struct pci_bus *bus, unsigned slot, unsigned fn, unsigned off, unsigned size,
		       uint32_t val)
{
	if (off >= PCI_CFG_SIZE || off + size > PCI_CFG_SIZE)
		return;
	pthread_mutex_lock(&bus->lock);
	struct pci_device *pd = lookup(bus, slot, fn);
	if (!pd) {
		pthread_mutex_unlock(&bus->lock);
		return;
	}
	for (unsigned i = 0; i < size; i++) {
		uint8_t m = pd->wmask[off + i];
		uint8_t b = (uint8_t)(val >> (8 * i));
		pd->st.config[off + i] = (uint8_t)((pd->st.config[off + i] & ~m) | (b & m));
	}
	bool cmd = touches(off, size, PCI_REG_COMMAND, 2);
	if (cmd) {
		atomic_store_explicit(&pd->command, cfg16(pd, PCI_REG_COMMAND), memory_order_release);
		pthread_mutex_lock(&bus->intx_lock);
		intx_apply(pd);
		pthread_mutex_unlock(&bus->intx_lock);
	}
	for (unsigned i = 0; i < PCI_NR_BARS; i++) {
		struct pci_bar *b = &pd->bars[i];
		unsigned width = (b->flags & PCI_BAR_F_64) ? 8 : 4;
		if (b->size && (cmd || touches(off, size, PCI_REG_BAR0 + 4 * i, width)))
			update_bar(pd, i);
	}
	if (pd->ops && pd->ops->config_write)
		pd->ops->config_write(pd, off, size);
	pthread_mutex_unlock(&bus->lock);
}

/* 0xCF8: the address latch, 32-bit accesses only; 0xCF9 is reset control. */
static void conf_addr_read(struct io_dev *io, uint64_t off, void *data, unsigned size)
{
	struct pci_bus *bus = io->opaque;
	if (off == 0 && size == 4) {
		pthread_mutex_lock(&bus->lock);
		uint32_t v = bus->conf_addr;
		pthread_mutex_unlock(&bus->lock);
		memcpy(data, &v, 4);
	} else if (off == 1 && size == 1 && bus->cf9 && bus->cf9->read) {
		bus->cf9->read(bus->cf9, 0, data, 1);
	} else {
		memset(data, 0xff, size);
	}
}

static void conf_addr_write(struct io_dev *io, uint64_t off, const void *data, unsigned size)
{
	struct pci_bus *bus = io->opaque;
	if (off == 0 && size == 4) {
		uint32_t v;
		memcpy(&v, data, 4);
		pthread_mutex_lock(&bus->lock);
		bus->conf_addr = v & 0x80FFFFFCu;
		pthread_mutex_unlock(&bus->lock);
	} else if (off == 1 && size == 1 && bus->cf9 && bus->cf9->write) {
		bus->cf9->write(bus->cf9, 0, data, 1);
	}
	/* Other widths: Linux's conf1 probe writes a byte to 0xCFB and
	 * expects nothing to happen. */
}

/* Decodes the latch; false when it does not select a function on bus 0. */
static bool conf_target(struct pci_bus *bus, uint64_t off, unsigned *slot, unsigned *fn,
			unsigned *reg)
{
	pthread_mutex_lock(&bus->lock);
	uint32_t a = bus->conf_addr;
	pthread_mutex_unlock(&bus->lock);
	if (!(a & CONF1_ENABLE) || ((a >> 16) & 0xff) != 0)
		return false;
	*slot = (a >> 11) & 0x1f;
	*fn = (a >> 8) & 0x7;
	*reg = (a & 0xfc) + (unsigned)off;
	return true;
}

static void conf_data_read(struct io_dev *io, uint64_t off, void *data, unsigned size)
{
	struct pci_bus *bus = io->opaque;
	unsigned slot, fn, reg;
	uint32_t v = 0xFFFFFFFFu;
	if (conf_target(bus, off, &slot, &fn, &reg))
		v = pci__config_read(bus, slot, fn, reg, size);
	memcpy(data, &v, size);
}

static void conf_data_write(struct io_dev *io, uint64_t off, const void *data, unsigned size)
{
	struct pci_bus *bus = io->opaque;
	unsigned slot, fn, reg;
	uint32_t v = 0;
	memcpy(&v, data, size);
	if (conf_target(bus, off, &slot, &fn, &reg))
		pci__config_write(bus, slot, fn, reg, size, v);
}

void pci__set_cf9(struct pci_bus *bus, struct io_dev *dev)
{
	bus->cf9 = dev;
}

/* The reset control port 0xCF9 lies inside the 32-bit conf1 address
 * register, and an io_bus range cannot overlap another. If its owner
 * registered it already (pm.c does, before the devices), take it off the
 * bus and forward byte accesses to it; pci__destroy gives it back. */
static struct io_dev *adopt_cf9(struct io_bus *pio)
{
	struct io_dev *found = NULL;
	pthread_rwlock_rdlock(&pio->lock);
	for (size_t i = 0; i < pio->nr; i++)
		if (pio->devs[i]->base == PORT_RESET && pio->devs[i]->len == 1)
			found = pio->devs[i];
	pthread_rwlock_unlock(&pio->lock);
	if (found)
		io_bus__remove(pio, found);
	return found;
}

int pci__create(struct vm *vm, struct err *e)
{
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	if (!bus)
		return err__set(e, ENOMEM, "pci: out of memory");
	bus->vm = vm;
	bus->mmio_next = LAYOUT_PCI_MMIO_BASE;
	pthread_mutex_init(&bus->lock, NULL);
	pthread_mutex_init(&bus->intx_lock, NULL);

	struct pci_device *hb = &bus->host_bridge;
	pci__device_init(hb, PCI_HOST_BRIDGE_VENDOR, PCI_HOST_BRIDGE_DEVICE, 0x060000, 0x02, 0, 0);
	pci__cfg_put(hb, PCI_REG_INT_PIN, 1, 0);
	hb->bus = bus;
	bus->slots[0] = hb;

	bus->conf_addr_io = (struct io_dev){
		.name = "pci-conf-addr", .base = PORT_PCI_CONF_ADDR, .len = 4, .opaque = bus,
		.read = conf_addr_read, .write = conf_addr_write,
	};
	bus->conf_data_io = (struct io_dev){
		.name = "pci-conf-data", .base = PORT_PCI_CONF_DATA, .len = 4, .opaque = bus,
		.read = conf_data_read, .write = conf_data_write,
	};
	bus->cf9 = bus->cf9_adopted = adopt_cf9(&vm->pio);
	int r = io_bus__add(&vm->pio, &bus->conf_addr_io, e);
	if (r == 0) {
		r = io_bus__add(&vm->pio, &bus->conf_data_io, e);
		if (r < 0)
			io_bus__remove(&vm->pio, &bus->conf_addr_io);
	}
	if (r < 0) {
		struct err ignore = { 0 };
		if (bus->cf9_adopted)
			io_bus__add(&vm->pio, bus->cf9_adopted, &ignore);
		pthread_mutex_destroy(&bus->lock);
		pthread_mutex_destroy(&bus->intx_lock);
		free(bus);
		return r;
	}
	vm->pci = bus;
	return 0;
}

void pci__destroy(struct vm *vm)
{
	struct pci_bus *bus = vm->pci;
	if (!bus)
		return;
	io_bus__remove(&vm->pio, &bus->conf_addr_io);
	io_bus__remove(&vm->pio, &bus->conf_data_io);
	if (bus->cf9_adopted) {
		struct err ignore = { 0 };
		io_bus__add(&vm->pio, bus->cf9_adopted, &ignore);
	}
	pthread_mutex_destroy(&bus->lock);
	pthread_mutex_destroy(&bus->intx_lock);
	free(bus);
	vm->pci = NULL;
}

int pci__add_device(struct pci_bus *bus, struct pci_device *pd, const struct pci_device_ops *ops,
		    void *opaque, struct err *e)
{
	pthread_mutex_lock(&bus->lock);
	unsigned slot = 1;
	while (slot < PCI_NR_SLOTS && bus->slots[slot])
		slot++;
	if (slot == PCI_NR_SLOTS) {
		pthread_mutex_unlock(&bus->lock);
		return err__set(e, ENOSPC, "pci: all %d slots of bus 0 are in use", PCI_NR_SLOTS - 1);
	}
	/* Assign every BAR before touching the bus, so a failure leaves no trace. */
	uint64_t next = bus->mmio_next;
	uint64_t base[PCI_NR_BARS] = { 0 };
	for (unsigned i = 0; i < PCI_NR_BARS; i++) {
		uint64_t size = pd->bars[i].size;
		if (!size)
			continue;
		base[i] = ALIGN_UP(next, size);
		if (base[i] + size > LAYOUT_PCI_MMIO_END) {
			pthread_mutex_unlock(&bus->lock);
			return err__set(e, ENOSPC, "pci: no room for a 0x%llx-byte BAR below 0x%llx",
					(unsigned long long)size, (unsigned long long)LAYOUT_PCI_MMIO_END);
		}
		next = base[i] + size;
	}
	bus->mmio_next = next;
	for (unsigned i = 0; i < PCI_NR_BARS; i++) {
		if (!pd->bars[i].size)
			continue;
		unsigned off = PCI_REG_BAR0 + 4 * i;
		pci__cfg_put(pd, off, 4, (cfg32(pd, off) & 0xF) | (uint32_t)base[i]);
		if (pd->bars[i].flags & PCI_BAR_F_64)
			pci__cfg_put(pd, off + 4, 4, (uint32_t)(base[i] >> 32));
	}
	pd->slot = slot;
	pd->gsi = PCI_GSI_BASE + (slot - 1) % PCI_NR_GSI;
	pci__cfg_put(pd, PCI_REG_INT_LINE, 1, pd->gsi);
	pd->ops = ops;
	pd->opaque = opaque;
	pd->bus = bus;
	/* No firmware will enable the device, so it starts enabled. */
	uint16_t cmd = cfg16(pd, PCI_REG_COMMAND) | PCI_CMD_MEM | PCI_CMD_MASTER;
	pci__cfg_put(pd, PCI_REG_COMMAND, 2, cmd);
	atomic_store(&pd->command, cmd);
	bus->slots[slot] = pd;
	for (unsigned i = 0; i < PCI_NR_BARS; i++)
		update_bar(pd, i);
	for (unsigned i = 0; i < PCI_NR_BARS; i++) {
		if (pd->bars[i].size && !pd->bars[i].mapped) {
			pthread_mutex_unlock(&bus->lock);
			pci__remove_device(bus, pd);
			return err__set(e, EBUSY, "pci: BAR %u of %02x:%02x.0 at 0x%llx overlaps another device",
					i, 0, slot, (unsigned long long)base[i]);
		}
	}
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

void pci__remove_device(struct pci_bus *bus, struct pci_device *pd)
{
	pthread_mutex_lock(&bus->lock);
	if (pd->slot && bus->slots[pd->slot] == pd) {
		for (unsigned i = 0; i < PCI_NR_BARS; i++) {
			struct pci_bar *b = &pd->bars[i];
			if (!b->mapped)
				continue;
			io_bus__remove(&bus->vm->mmio, b->io);
			b->mapped = false;
			if (pd->ops && pd->ops->bar_mapped)
				pd->ops->bar_mapped(pd, i, false, 0);
		}
		pthread_mutex_lock(&bus->intx_lock);
		pd->st.intx_level = 0;
		intx_apply(pd);
		pthread_mutex_unlock(&bus->intx_lock);
		bus->slots[pd->slot] = NULL;
		pd->slot = 0;
	}
	pthread_mutex_unlock(&bus->lock);
}
