#include <stdlib.h>
#include <string.h>

#include "vmhop/io-bus.h"

int io_bus__init(struct io_bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	return -pthread_rwlock_init(&bus->lock, NULL);
}

void io_bus__destroy(struct io_bus *bus)
{
	free(bus->devs);
	bus->devs = NULL;
	bus->nr = bus->cap = 0;
	pthread_rwlock_destroy(&bus->lock);
}

static bool overlaps(const struct io_dev *a, uint64_t base, uint64_t len)
{
	return base < a->base + a->len && a->base < base + len;
}

/* Caller holds the write lock. */
static int insert_sorted(struct io_bus *bus, struct io_dev *dev, struct err *e)
{
	for (size_t i = 0; i < bus->nr; i++) {
		if (bus->devs[i] != dev && overlaps(bus->devs[i], dev->base, dev->len))
			return err__set(e, EBUSY, "%s: %s at 0x%llx+0x%llx overlaps %s",
					bus->name, dev->name, (unsigned long long)dev->base,
					(unsigned long long)dev->len, bus->devs[i]->name);
	}
	if (bus->nr == bus->cap) {
		size_t cap = bus->cap ? bus->cap * 2 : 16;
		struct io_dev **n = realloc(bus->devs, cap * sizeof(*n));
		if (!n)
			return err__set(e, ENOMEM, "%s: out of memory", bus->name);
		bus->devs = n;
		bus->cap = cap;
	}
	size_t pos = 0;
	while (pos < bus->nr && bus->devs[pos]->base < dev->base)
		pos++;
	memmove(&bus->devs[pos + 1], &bus->devs[pos], (bus->nr - pos) * sizeof(*bus->devs));
	bus->devs[pos] = dev;
	bus->nr++;
	return 0;
}

static void remove_locked(struct io_bus *bus, struct io_dev *dev)
{
	for (size_t i = 0; i < bus->nr; i++) {
		if (bus->devs[i] == dev) {
			memmove(&bus->devs[i], &bus->devs[i + 1], (bus->nr - i - 1) * sizeof(*bus->devs));
			bus->nr--;
			return;
		}
	}
}

int io_bus__add(struct io_bus *bus, struct io_dev *dev, struct err *e)
{
	if (!dev->len || dev->base + dev->len < dev->base)
		return err__set(e, EINVAL, "%s: %s has an empty or wrapping range", bus->name, dev->name);
	pthread_rwlock_wrlock(&bus->lock);
	int r = insert_sorted(bus, dev, e);
	pthread_rwlock_unlock(&bus->lock);
	return r;
}

void io_bus__remove(struct io_bus *bus, struct io_dev *dev)
{
	pthread_rwlock_wrlock(&bus->lock);
	remove_locked(bus, dev);
	pthread_rwlock_unlock(&bus->lock);
}

int io_bus__move(struct io_bus *bus, struct io_dev *dev, uint64_t new_base, struct err *e)
{
	pthread_rwlock_wrlock(&bus->lock);
	uint64_t old = dev->base;
	remove_locked(bus, dev);
	dev->base = new_base;
	int r = insert_sorted(bus, dev, e);
	if (r < 0) {
		dev->base = old;
		struct err ignore = { 0 };
		insert_sorted(bus, dev, &ignore);
	}
	pthread_rwlock_unlock(&bus->lock);
	return r;
}

/* Binary search for the device containing addr; caller holds a lock. */
static struct io_dev *find(struct io_bus *bus, uint64_t addr, unsigned size)
{
	size_t lo = 0, hi = bus->nr;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct io_dev *d = bus->devs[mid];
		if (addr < d->base)
			hi = mid;
		else if (addr >= d->base + d->len)
			lo = mid + 1;
		else
			return addr + size <= d->base + d->len ? d : NULL;
	}
	return NULL;
}

int io_bus__read(struct io_bus *bus, uint64_t addr, void *data, unsigned size)
{
	pthread_rwlock_rdlock(&bus->lock);
	struct io_dev *d = find(bus, addr, size);
	if (d && d->read)
		d->read(d, addr - d->base, data, size);
	else
		memset(data, 0xff, size);
	pthread_rwlock_unlock(&bus->lock);
	return d ? 0 : -ENOENT;
}

int io_bus__write(struct io_bus *bus, uint64_t addr, const void *data, unsigned size)
{
	pthread_rwlock_rdlock(&bus->lock);
	struct io_dev *d = find(bus, addr, size);
	if (d && d->write)
		d->write(d, addr - d->base, data, size);
	pthread_rwlock_unlock(&bus->lock);
	return d ? 0 : -ENOENT;
}
