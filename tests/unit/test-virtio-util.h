/* A VM without KVM for device tests: guest RAM (a memfd), the two buses, the
 * PCI bus, and no irqchip. Tests play the guest driver: they write the
 * device's registers through vm->mmio and build rings in guest RAM by hand. */
#ifndef TEST_VIRTIO_UTIL_H
#define TEST_VIRTIO_UTIL_H

#include <linux/virtio_blk.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmhop/virtio-blk.h"
#include "vmhop/vm.h"

#define TG_MEM		(8 * 1024 * 1024ULL)
#define TG_RING		0x10000ULL	/* desc; avail at +0x1000, used at +0x2000 */
#define TG_DATA		0x100000ULL	/* buffers are allocated from here */
#define TG_SECTOR	512

struct tg {
	struct vm vm;
	char dir[256];
	struct virtio_blk *blk;
	uint64_t bar;
	uint16_t qsize;
	uint16_t avail_idx;
	uint16_t next_desc;
	uint64_t data_next;
	unsigned irqs;
	uint16_t last_vector;
};

void tg_init(struct tg *t);
void tg_fini(struct tg *t);

/* Byte at offset `off` of a fresh test disk. */
uint8_t tg_pattern(uint64_t off);
/* Creates dir/name holding `size` bytes of tg_pattern; returns a malloc'd path. */
char *tg_make_disk(struct tg *t, const char *name, uint64_t size);
/* Adds a virtio-blk for `path`; captures interrupts in t->irqs/last_vector. */
int tg_add_blk(struct tg *t, const char *path, const char *id, bool readonly, bool cache_none,
	       struct err *e);

uint64_t tg_rd(struct tg *t, uint64_t off, unsigned size);
void tg_wr(struct tg *t, uint64_t off, unsigned size, uint64_t val);
uint8_t tg_status(struct tg *t);

/* Driver bring-up (4.1.5.1.1 / 3.1.1): reset, ACKNOWLEDGE, DRIVER, features,
 * FEATURES_OK, queue 0 at TG_RING with `qsize` entries, DRIVER_OK. Returns
 * the status read back at the end. features == 0 acks everything offered. */
uint8_t tg_driver_init(struct tg *t, uint64_t features, uint16_t qsize);
uint64_t tg_device_features(struct tg *t);

void *tg_ptr(struct tg *t, uint64_t gpa, uint64_t len);
uint64_t tg_alloc(struct tg *t, uint64_t len);
/* Writes descriptor `idx` (of the main table, or of `table` if nonzero). */
void tg_desc_at(struct tg *t, uint64_t table, uint16_t idx, uint64_t addr, uint32_t len,
		uint16_t flags, uint16_t next);
/* Next free main-table descriptor, chained to the one after it if NEXT. */
uint16_t tg_desc(struct tg *t, uint64_t addr, uint32_t len, uint16_t flags);
void tg_publish(struct tg *t, uint16_t head);
uint16_t tg_used_idx(struct tg *t);
struct vring_used_elem tg_used(struct tg *t, uint16_t i);
void tg_set_avail_flags(struct tg *t, uint16_t flags);

/* A whole block request: header, data (device-writable for IN/GET_ID,
 * readable otherwise), status byte, as three descriptors. Processes it
 * synchronously and returns the status byte, or -1 if nothing was used. */
int tg_blk_req(struct tg *t, uint32_t type, uint64_t sector, void *buf, uint32_t len);
/* Same but leaves it to the device thread after a notify write. */
uint64_t tg_blk_submit(struct tg *t, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len);
void tg_notify(struct tg *t, uint16_t q);
bool tg_wait_used(struct tg *t, uint16_t idx, int timeout_ms);

#endif
