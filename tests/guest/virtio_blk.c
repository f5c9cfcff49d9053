/*
 * virtio_blk.c: modern virtio-pci transport and one split virtqueue per
 * device, one request in flight at a time per device, completion polled with
 * interrupts suppressed (ring 3 runs with IF=0).
 */
#include "arch.h"
#include "clock.h"
#include "lib.h"
#include "pci.h"
#include "virtio_blk.h"

#define VIRTIO_VENDOR		0x1AF4
#define VIRTIO_BLK_MODERN	0x1042

#define PCI_STATUS		0x06
#define PCI_STATUS_CAPS		0x10
#define PCI_CAP_PTR		0x34
#define PCI_CAP_VENDOR		0x09

#define CAP_COMMON		1
#define CAP_NOTIFY		2
#define CAP_ISR			3
#define CAP_DEVICE		4

/* struct virtio_pci_common_cfg */
#define COMMON_DFSELECT		0x00
#define COMMON_DF		0x04
#define COMMON_GFSELECT		0x08
#define COMMON_GF		0x0C
#define COMMON_STATUS		0x14
#define COMMON_CFGGEN		0x15
#define COMMON_Q_SELECT		0x16
#define COMMON_Q_SIZE		0x18
#define COMMON_Q_ENABLE		0x1C
#define COMMON_Q_NOFF		0x1E
#define COMMON_Q_DESC		0x20
#define COMMON_Q_AVAIL		0x28
#define COMMON_Q_USED		0x30

#define STATUS_ACKNOWLEDGE	1
#define STATUS_DRIVER		2
#define STATUS_DRIVER_OK	4
#define STATUS_FEATURES_OK	8

#define F_RO_BIT		5	/* VIRTIO_BLK_F_RO */
#define F_VERSION_1_HI		1	/* VIRTIO_F_VERSION_1 is bit 32 */

#define QUEUE_MAX		128
#define DESC_F_NEXT		1
#define DESC_F_WRITE		2
#define AVAIL_F_NO_INTERRUPT	1
#define REQUEST_TIMEOUT_MS	30000

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[QUEUE_MAX];
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct {
		uint32_t id;
		uint32_t len;
	} ring[QUEUE_MAX];
};

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct virtio_blk_vq {
	struct vring_desc desc[QUEUE_MAX] __attribute__((aligned(4096)));
	struct vring_avail avail __attribute__((aligned(4096)));
	struct vring_used used __attribute__((aligned(4096)));
	struct blk_req_hdr req_hdr __attribute__((aligned(64)));
	volatile uint8_t req_status __attribute__((aligned(64)));
};

/* Guest-physical == virtual (identity map), and all of this lies below 32 MiB. */
static struct virtio_blk_vq vqs[VIRTIO_BLK_MAX];

static uint64_t pa(const volatile void *p)
{
	return (uint64_t)(uintptr_t)p;
}

struct cap {
	bool found;
	uint8_t bar;
	uint32_t offset, length;
	uint32_t notify_mult;
};

static void find_caps(unsigned bdf, struct cap caps[5])
{
	unsigned ptr, guard = 0;

	if (!(pci__read16(bdf, PCI_STATUS) & PCI_STATUS_CAPS))
		return;
	for (ptr = pci__read8(bdf, PCI_CAP_PTR) & 0xFC; ptr && guard < 48;
	     ptr = pci__read8(bdf, ptr + 1) & 0xFC, guard++) {
		unsigned type;

		if (pci__read8(bdf, ptr) != PCI_CAP_VENDOR)
			continue;
		type = pci__read8(bdf, ptr + 3);
		if (type < CAP_COMMON || type > CAP_DEVICE || caps[type].found)
			continue;	/* the first capability of a type is the one to use */
		caps[type] = (struct cap){
			.found = true,
			.bar = pci__read8(bdf, ptr + 4),
			.offset = pci__read32(bdf, ptr + 8),
			.length = pci__read32(bdf, ptr + 12),
		};
		if (type == CAP_NOTIFY)
			caps[type].notify_mult = pci__read32(bdf, ptr + 16);
	}
}

static int map_cap(unsigned bdf, const struct cap *c, const char *name, uint64_t *out,
		   char *err, unsigned errlen)
{
	uint64_t bar;

	if (!c->found) {
		fmt__snprintf(err, errlen, "disk: virtio %s capability missing", name);
		return -1;
	}
	bar = pci__bar_addr(bdf, c->bar);
	if (!bar || bar + c->offset + c->length > 4 * GIB) {
		fmt__snprintf(err, errlen,
			      "disk: virtio %s capability in BAR %u at 0x%llx: not a memory BAR below 4 GiB",
			      name, c->bar, (unsigned long long)bar);
		return -1;
	}
	*out = bar + c->offset;
	return 0;
}

static void set_status(struct virtio_blk *d, uint8_t bits)
{
	mmio_write8(d->common + COMMON_STATUS, (uint8_t)(mmio_read8(d->common + COMMON_STATUS) | bits));
}

static void write64(uint64_t a, uint64_t v)
{
	mmio_write32(a, (uint32_t)v);
	mmio_write32(a + 4, (uint32_t)(v >> 32));
}

static uint64_t read_capacity(const struct virtio_blk *d)
{
	uint32_t lo, hi;
	uint8_t gen;

	do {
		gen = mmio_read8(d->common + COMMON_CFGGEN);
		lo = mmio_read32(d->device);
		hi = mmio_read32(d->device + 4);
	} while (gen != mmio_read8(d->common + COMMON_CFGGEN));
	return ((uint64_t)hi << 32) | lo;
}

unsigned virtio_blk__count(void)
{
	unsigned n = 0;

	while (pci__find(VIRTIO_VENDOR, VIRTIO_BLK_MODERN, n) >= 0)
		n++;
	return n;
}

int virtio_blk__init(struct virtio_blk *d, unsigned nth, char *err, unsigned errlen)
{
	struct cap caps[5] = { 0 };
	struct virtio_blk_vq *vq;
	uint32_t f_lo, f_hi;
	uint16_t qmax;
	int bdf;
	struct timeout t;

	memset(d, 0, sizeof(*d));
	if (nth >= VIRTIO_BLK_MAX) {
		fmt__snprintf(err, errlen, "disk: at most %u virtio-blk devices", VIRTIO_BLK_MAX);
		return -1;
	}
	bdf = pci__find(VIRTIO_VENDOR, VIRTIO_BLK_MODERN, nth);
	if (bdf < 0 && !nth) {
		fmt__snprintf(err, errlen, "disk: no modern virtio-blk (1af4:1042) on PCI bus 0");
		return -1;
	}
	if (bdf < 0) {
		fmt__snprintf(err, errlen, "disk: no virtio-blk of index %u, PCI bus 0 holds %u",
			      nth, virtio_blk__count());
		return -1;
	}
	d->bdf = (unsigned)bdf;
	d->vq = vq = &vqs[nth];
	pci__enable(d->bdf);
	find_caps(d->bdf, caps);
	if (map_cap(d->bdf, &caps[CAP_COMMON], "common", &d->common, err, errlen) ||
	    map_cap(d->bdf, &caps[CAP_NOTIFY], "notify", &d->notify, err, errlen) ||
	    map_cap(d->bdf, &caps[CAP_DEVICE], "device", &d->device, err, errlen))
		return -1;
	d->notify_mult = caps[CAP_NOTIFY].notify_mult;

	mmio_write8(d->common + COMMON_STATUS, 0);	/* reset */
	timeout__start(&t, 5000);
	while (mmio_read8(d->common + COMMON_STATUS)) {
		if (timeout__expired(&t)) {
			fmt__snprintf(err, errlen, "disk: virtio reset did not complete");
			return -1;
		}
		cpu_relax();
	}
	set_status(d, STATUS_ACKNOWLEDGE);
	set_status(d, STATUS_DRIVER);

	mmio_write32(d->common + COMMON_DFSELECT, 0);
	f_lo = mmio_read32(d->common + COMMON_DF);
	mmio_write32(d->common + COMMON_DFSELECT, 1);
	f_hi = mmio_read32(d->common + COMMON_DF);
	d->ro_offered = f_lo & (1u << F_RO_BIT);
	if (!(f_hi & F_VERSION_1_HI)) {
		fmt__snprintf(err, errlen, "disk: device does not offer VIRTIO_F_VERSION_1");
		return -1;
	}
	mmio_write32(d->common + COMMON_GFSELECT, 0);
	mmio_write32(d->common + COMMON_GF, 0);
	mmio_write32(d->common + COMMON_GFSELECT, 1);
	mmio_write32(d->common + COMMON_GF, F_VERSION_1_HI);
	set_status(d, STATUS_FEATURES_OK);
	if (!(mmio_read8(d->common + COMMON_STATUS) & STATUS_FEATURES_OK)) {
		fmt__snprintf(err, errlen, "disk: device refused features (VERSION_1 only)");
		return -1;
	}

	mmio_write16(d->common + COMMON_Q_SELECT, 0);
	qmax = mmio_read16(d->common + COMMON_Q_SIZE);
	if (!qmax) {
		fmt__snprintf(err, errlen, "disk: queue 0 unavailable");
		return -1;
	}
	d->queue_size = qmax < QUEUE_MAX ? qmax : QUEUE_MAX;
	mmio_write16(d->common + COMMON_Q_SIZE, d->queue_size);
	d->notify_off = mmio_read16(d->common + COMMON_Q_NOFF);
	memset(vq, 0, sizeof(*vq));
	vq->avail.flags = AVAIL_F_NO_INTERRUPT;
	write64(d->common + COMMON_Q_DESC, pa(vq->desc));
	write64(d->common + COMMON_Q_AVAIL, pa(&vq->avail));
	write64(d->common + COMMON_Q_USED, pa(&vq->used));
	mmio_write16(d->common + COMMON_Q_ENABLE, 1);
	set_status(d, STATUS_DRIVER_OK);

	d->capacity = read_capacity(d);
	return 0;
}

void virtio_blk__submit(struct virtio_blk *d, uint32_t type, uint64_t sector, void *buf,
			uint32_t len)
{
	struct virtio_blk_vq *vq = d->vq;
	struct vring_desc *desc = vq->desc;
	unsigned n = 0;

	vq->req_hdr = (struct blk_req_hdr){ .type = type, .sector = sector };
	vq->req_status = 0xFF;
	desc[n++] = (struct vring_desc){ pa(&vq->req_hdr), sizeof(vq->req_hdr), DESC_F_NEXT, 1 };
	if (buf && len) {
		desc[n] = (struct vring_desc){
			pa(buf), len,
			(uint16_t)(DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? DESC_F_WRITE : 0)),
			(uint16_t)(n + 1),
		};
		n++;
	}
	desc[n] = (struct vring_desc){ pa(&vq->req_status), 1, DESC_F_WRITE, 0 };
	desc[n - 1].next = (uint16_t)n;

	vq->avail.ring[d->avail_idx % d->queue_size] = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	d->avail_idx++;
	__atomic_store_n(&vq->avail.idx, d->avail_idx, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	mmio_write16(d->notify + (uint64_t)d->notify_off * d->notify_mult, 0);
	timeout__start(&d->timeout, REQUEST_TIMEOUT_MS);
	d->busy = true;
}

int virtio_blk__poll(struct virtio_blk *d)
{
	if (!d->busy)
		return -1;
	if (__atomic_load_n(&d->vq->used.idx, __ATOMIC_ACQUIRE) == d->used_idx)
		return timeout__expired(&d->timeout) ? -1 : VIRTIO_BLK_BUSY;
	d->used_idx++;
	d->busy = false;
	return d->vq->req_status;
}

int virtio_blk__request(struct virtio_blk *d, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	int st;

	virtio_blk__submit(d, type, sector, buf, len);
	while ((st = virtio_blk__poll(d)) == VIRTIO_BLK_BUSY)
		cpu_relax();
	return st;
}
