#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmhop/pci.h"
#include "vmhop/util.h"
#include "test-virtio-util.h"

void tg_init(struct tg *t)
{
	memset(t, 0, sizeof(*t));
	struct err e = { 0 };
	t->vm.kvm_fd = t->vm.vm_fd = -1;
	ck_assert_int_eq(guest_mem__create(&t->vm.mem, TG_MEM, "tg", &e), 0);
	ck_assert_int_eq(io_bus__init(&t->vm.pio, "pio"), 0);
	ck_assert_int_eq(io_bus__init(&t->vm.mmio, "mmio"), 0);
	ck_assert_msg(pci__create(&t->vm, &e) == 0, "%s", e.msg);
	const char *tmp = getenv("TMPDIR");
	snprintf(t->dir, sizeof(t->dir), "%s/vmhop-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(t->dir));
	t->data_next = TG_DATA;
}

void tg_fini(struct tg *t)
{
	for (unsigned i = 0; i < t->vm.nr_blk; i++)
		virtio_blk__destroy(t->vm.blk[i]);
	t->vm.nr_blk = 0;
	pci__destroy(&t->vm);
	io_bus__destroy(&t->vm.pio);
	io_bus__destroy(&t->vm.mmio);
	guest_mem__destroy(&t->vm.mem);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	ck_assert_int_eq(system(cmd), 0);
}

uint8_t tg_pattern(uint64_t off)
{
	return (uint8_t)(off * 7 + off / TG_SECTOR * 13 + 1);
}

char *tg_make_disk(struct tg *t, const char *name, uint64_t size)
{
	char *path = malloc(strlen(t->dir) + strlen(name) + 2);
	sprintf(path, "%s/%s", t->dir, name);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	ck_assert_int_ge(fd, 0);
	uint8_t *buf = malloc(size ? size : 1);
	for (uint64_t i = 0; i < size; i++)
		buf[i] = tg_pattern(i);
	ck_assert_int_eq(util__write_all(fd, buf, size), 0);
	free(buf);
	close(fd);
	return path;
}

static void irq_capture(struct virtio_pci *vp, uint16_t vector, void *opaque)
{
	struct tg *t = opaque;
	t->irqs++;
	t->last_vector = vector;
}

int tg_add_blk(struct tg *t, const char *path, const char *id, bool readonly, bool cache_none,
	       struct err *e)
{
	struct disk_config dc = { .path = (char *)path, .readonly = readonly, .cache_none = cache_none };
	snprintf(dc.id, sizeof(dc.id), "%s", id);
	int r = virtio_blk__create(&t->vm, &dc, e);
	if (r < 0)
		return r;
	t->blk = t->vm.blk[t->vm.nr_blk - 1];
	t->bar = virtio_pci__bar_base(&t->blk->vp);
	virtio_pci__set_irq_hook(&t->blk->vp, irq_capture, t);
	return 0;
}

uint64_t tg_rd(struct tg *t, uint64_t off, unsigned size)
{
	uint64_t v = 0;
	ck_assert_int_eq(io_bus__read(&t->vm.mmio, t->bar + off, &v, size), 0);
	return v;
}

void tg_wr(struct tg *t, uint64_t off, unsigned size, uint64_t val)
{
	ck_assert_int_eq(io_bus__write(&t->vm.mmio, t->bar + off, &val, size), 0);
}

uint8_t tg_status(struct tg *t)
{
	return (uint8_t)tg_rd(t, VIRTIO_PCI_COMMON_STATUS, 1);
}

uint64_t tg_device_features(struct tg *t)
{
	tg_wr(t, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	uint64_t lo = tg_rd(t, VIRTIO_PCI_COMMON_DF, 4);
	tg_wr(t, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	uint64_t hi = tg_rd(t, VIRTIO_PCI_COMMON_DF, 4);
	return lo | hi << 32;
}

uint8_t tg_driver_init(struct tg *t, uint64_t features, uint16_t qsize)
{
	tg_wr(t, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	ck_assert_int_eq(tg_status(t), 0);
	tg_wr(t, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	tg_wr(t, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	if (!features)
		features = tg_device_features(t);
	tg_wr(t, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	tg_wr(t, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)features);
	tg_wr(t, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	tg_wr(t, VIRTIO_PCI_COMMON_GF, 4, features >> 32);
	uint8_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
	tg_wr(t, VIRTIO_PCI_COMMON_STATUS, 1, s);
	if (!(tg_status(t) & VIRTIO_CONFIG_S_FEATURES_OK))
		return tg_status(t);
	memset(tg_ptr(t, TG_RING, 0x3000), 0, 0x3000);
	tg_wr(t, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	tg_wr(t, VIRTIO_PCI_COMMON_Q_SIZE, 2, qsize);
	tg_wr(t, VIRTIO_PCI_COMMON_Q_DESCLO, 4, TG_RING);
	tg_wr(t, VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0);
	tg_wr(t, VIRTIO_PCI_COMMON_Q_AVAILLO, 8, TG_RING + 0x1000);
	tg_wr(t, VIRTIO_PCI_COMMON_Q_USEDLO, 4, TG_RING + 0x2000);
	tg_wr(t, VIRTIO_PCI_COMMON_Q_USEDHI, 4, 0);
	tg_wr(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	t->qsize = qsize;
	t->avail_idx = 0;
	t->next_desc = 0;
	tg_wr(t, VIRTIO_PCI_COMMON_STATUS, 1, s | VIRTIO_CONFIG_S_DRIVER_OK);
	return tg_status(t);
}

void *tg_ptr(struct tg *t, uint64_t gpa, uint64_t len)
{
	void *p = guest_mem__ptr(&t->vm.mem, gpa, len);
	ck_assert_ptr_nonnull(p);
	return p;
}

uint64_t tg_alloc(struct tg *t, uint64_t len)
{
	uint64_t a = t->data_next;
	t->data_next = ALIGN_UP(a + len, 16ULL);
	ck_assert_uint_le(t->data_next, TG_MEM);
	return a;
}

void tg_desc_at(struct tg *t, uint64_t table, uint16_t idx, uint64_t addr, uint32_t len,
		uint16_t flags, uint16_t next)
{
	struct vring_desc *d = tg_ptr(t, (table ? table : TG_RING) + 16ULL * idx, 16);
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

uint16_t tg_desc(struct tg *t, uint64_t addr, uint32_t len, uint16_t flags)
{
	uint16_t i = t->next_desc;
	t->next_desc = (uint16_t)((i + 1) % t->qsize);
	tg_desc_at(t, 0, i, addr, len, flags, t->next_desc);
	return i;
}

void tg_publish(struct tg *t, uint16_t head)
{
	struct vring_avail *a = tg_ptr(t, TG_RING + 0x1000, 4 + 2ULL * t->qsize);
	a->ring[t->avail_idx % t->qsize] = head;
	__atomic_store_n(&a->idx, ++t->avail_idx, __ATOMIC_RELEASE);
}

void tg_set_avail_flags(struct tg *t, uint16_t flags)
{
	struct vring_avail *a = tg_ptr(t, TG_RING + 0x1000, 4);
	a->flags = flags;
}

uint16_t tg_used_idx(struct tg *t)
{
	struct vring_used *u = tg_ptr(t, TG_RING + 0x2000, 4);
	return __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE);
}

struct vring_used_elem tg_used(struct tg *t, uint16_t i)
{
	struct vring_used *u = tg_ptr(t, TG_RING + 0x2000, 4 + 8ULL * t->qsize);
	return u->ring[i % t->qsize];
}

static bool data_is_in(uint32_t type)
{
	return type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
}

uint64_t tg_blk_submit(struct tg *t, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len)
{
	uint64_t hdr = tg_alloc(t, 16), st = tg_alloc(t, 1);
	struct virtio_blk_outhdr *h = tg_ptr(t, hdr, 16);
	h->type = type;
	h->ioprio = 0;
	h->sector = sector;
	*(uint8_t *)tg_ptr(t, st, 1) = 0xEE;
	uint16_t head = tg_desc(t, hdr, 16, VRING_DESC_F_NEXT);
	if (len)
		tg_desc(t, data_gpa, len, VRING_DESC_F_NEXT | (data_is_in(type) ? VRING_DESC_F_WRITE : 0));
	tg_desc(t, st, 1, VRING_DESC_F_WRITE);
	tg_publish(t, head);
	return st;
}

int tg_blk_req(struct tg *t, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	uint64_t data = tg_alloc(t, len ? len : 1);
	if (len && !data_is_in(type))
		memcpy(tg_ptr(t, data, len), buf, len);
	uint16_t before = tg_used_idx(t);
	uint64_t st = tg_blk_submit(t, type, sector, data, len);
	virtio_pci__process_queue(&t->blk->vp, 0);
	if (tg_used_idx(t) == before)
		return -1;
	if (len && data_is_in(type))
		memcpy(buf, tg_ptr(t, data, len), len);
	return *(uint8_t *)tg_ptr(t, st, 1);
}

void tg_notify(struct tg *t, uint16_t q)
{
	tg_wr(t, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * q, 2, q);
}

bool tg_wait_used(struct tg *t, uint16_t idx, int timeout_ms)
{
	for (int i = 0; i < timeout_ms; i++) {
		if (tg_used_idx(t) == idx)
			return true;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return tg_used_idx(t) == idx;
}
