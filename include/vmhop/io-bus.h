/* Port-I/O and MMIO dispatch. A device claims a range; vCPU threads look the
 * range up on every exit, so lookups take a read lock and BAR moves a write
 * lock. Handlers run on vCPU threads and do their own locking. */
#ifndef VMHOP_IO_BUS_H
#define VMHOP_IO_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"

struct io_dev;
typedef void (*io_read_fn)(struct io_dev *dev, uint64_t off, void *data, unsigned size);
typedef void (*io_write_fn)(struct io_dev *dev, uint64_t off, const void *data, unsigned size);

struct io_dev {
	const char *name;
	uint64_t base;
	uint64_t len;
	void *opaque;
	io_read_fn read;	/* NULL: reads return all ones */
	io_write_fn write;	/* NULL: writes are dropped */
};

struct io_bus {
	const char *name;
	pthread_rwlock_t lock;
	struct io_dev **devs;	/* sorted by base, non-overlapping */
	size_t nr, cap;
};

int io_bus__init(struct io_bus *bus, const char *name);
void io_bus__destroy(struct io_bus *bus);
/* Fails with EBUSY naming both devices when the range overlaps another. */
int io_bus__add(struct io_bus *bus, struct io_dev *dev, struct err *e);
void io_bus__remove(struct io_bus *bus, struct io_dev *dev);
/* Changes a registered device's base (PCI BAR reprogramming). */
/* Must not be called from a handler of the same bus (handlers run under its
 * read lock). PCI BARs live on the MMIO bus and are moved from conf1 (PIO). */
int io_bus__move(struct io_bus *bus, struct io_dev *dev, uint64_t new_base, struct err *e);
/* Dispatches one access. Returns 0 when a device handled it, -ENOENT when no
 * device covers [addr, addr+size) (reads then fill data with 0xff). */
int io_bus__read(struct io_bus *bus, uint64_t addr, void *data, unsigned size);
int io_bus__write(struct io_bus *bus, uint64_t addr, const void *data, unsigned size);

#endif
