#include <string.h>

#include "vmhop/util.h"
#include "vmhop/virtio.h"

/* x86_64 hosts only (configure refuses others): the guest's little-endian
 * ring fields are native integers here. Fields are read with single atomic
 * loads so the compiler cannot fetch them twice: the guest may change them
 * between a check and a use. */
static uint16_t load16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}

/* Descriptor tables the ring points at are 16-byte aligned (checked at
 * enable); indirect tables need not be, and are then copied bytewise. */
static void read_desc(const struct vring_desc *p, struct vring_desc *d)
{
	if (((uintptr_t)p & 7) == 0) {
		d->addr = __atomic_load_n(&p->addr, __ATOMIC_RELAXED);
		d->len = __atomic_load_n(&p->len, __ATOMIC_RELAXED);
		d->flags = __atomic_load_n(&p->flags, __ATOMIC_RELAXED);
		d->next = __atomic_load_n(&p->next, __ATOMIC_RELAXED);
		return;
	}
	const volatile unsigned char *s = (const volatile unsigned char *)p;
	unsigned char b[sizeof(*d)];
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = s[i];
	memcpy(d, b, sizeof(*d));
}

void virtq__init(struct virtq *vq, struct virtq_state *st, struct guest_mem *mem, uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	vq->st = st;
	vq->mem = mem;
	vq->max_size = max_size;
	virtq__reset(vq);
}

void virtq__reset(struct virtq *vq)
{
	memset(vq->st, 0, sizeof(*vq->st));
	vq->st->size = vq->max_size;
	vq->st->msix_vector = VIRTIO_NO_VECTOR;
	vq->indirect = false;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
}

int virtq__enable(struct virtq *vq, const char **why)
{
	struct virtq_state *st = vq->st;
	uint64_t n = st->size;
	if (!n || n > vq->max_size || (n & (n - 1))) {
		*why = "queue size is not a power of two within the maximum";
		return -EINVAL;
	}
	if (st->desc % 16 || st->avail % 2 || st->used % 4) {
		*why = "ring address misaligned";
		return -EINVAL;
	}
	/* Without VIRTIO_RING_F_EVENT_IDX the trailing event fields are unused. */
	vq->desc = guest_mem__ptr(vq->mem, st->desc, 16 * n);
	vq->avail = guest_mem__ptr(vq->mem, st->avail, 4 + 2 * n);
	vq->used = guest_mem__ptr(vq->mem, st->used, 4 + 8 * n);
	if (!vq->desc || !vq->avail || !vq->used) {
		vq->desc = NULL;
		vq->avail = NULL;
		vq->used = NULL;
		*why = "ring outside guest RAM";
		return -EINVAL;
	}
	st->enabled = 1;
	return 0;
}

bool virtq__has_work(struct virtq *vq)
{
	if (!vq->st->enabled)
		return false;
	return __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE) != vq->st->last_avail_idx;
}

static int bad(const char **why, const char *msg)
{
	*why = msg;
	return -EIO;
}

int virtq__pop(struct virtq *vq, struct virtq_elem *elem, const char **why)
{
	struct virtq_state *st = vq->st;
	if (!st->enabled)
		return 0;
	/* Acquire: the ring entries and descriptors the guest wrote before
	 * bumping idx must be read after it. */
	uint16_t avail_idx = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
	uint16_t pending = (uint16_t)(avail_idx - st->last_avail_idx);
	if (!pending)
		return 0;
	if (pending > st->size)
		return bad(why, "avail index ran ahead by more than the queue size");
	uint16_t head = load16(&vq->avail->ring[st->last_avail_idx % st->size]);
	if (head >= st->size)
		return bad(why, "avail ring names a descriptor beyond the queue size");

	elem->head = head;
	elem->nr_out = elem->nr_in = 0;
	elem->out_len = elem->in_len = 0;
	const struct vring_desc *table = vq->desc;
	unsigned table_len = st->size, idx = head, count = 0;
	bool indirect = false;
	for (;;) {
		struct vring_desc d;
		read_desc(&table[idx], &d);
		/* A chain visits at most queue-size descriptors, so a loop
		 * shows up as an over-long chain. */
		if (++count > table_len)
			return bad(why, "descriptor chain longer than its table (loop?)");
		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (indirect)
				return bad(why, "indirect descriptor inside an indirect table");
			if (!vq->indirect)
				return bad(why, "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC");
			if (idx != head || (d.flags & VRING_DESC_F_NEXT))
				return bad(why, "indirect descriptor not alone in its chain");
			if (!d.len || d.len % sizeof(struct vring_desc) ||
			    d.len / sizeof(struct vring_desc) > st->size)
				return bad(why, "indirect table length invalid");
			table = guest_mem__ptr(vq->mem, d.addr, d.len);
			if (!table)
				return bad(why, "indirect table outside guest RAM");
			table_len = d.len / sizeof(struct vring_desc);
			idx = 0;
			count = 0;
			indirect = true;
			continue;
		}
		if (d.len) {
			void *host = guest_mem__ptr(vq->mem, d.addr, d.len);
			if (!host)
				return bad(why, "buffer outside guest RAM");
			unsigned n = elem->nr_out + elem->nr_in;
			/* count <= table_len <= queue size <= VIRTQ_MAX_SIZE */
			elem->seg[n] = (struct virtq_seg){ .host = host, .gpa = d.addr, .len = d.len };
			if (d.flags & VRING_DESC_F_WRITE) {
				elem->nr_in++;
				elem->in_len += d.len;
			} else {
				if (elem->nr_in)
					return bad(why, "device-readable buffer after a writable one");
				elem->nr_out++;
				elem->out_len += d.len;
			}
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		idx = d.next;
		if (idx >= table_len)
			return bad(why, "next descriptor index beyond the table");
	}
	st->last_avail_idx++;
	return 1;
}

void virtq__push(struct virtq *vq, const struct virtq_elem *elem, uint32_t len)
{
	struct virtq_state *st = vq->st;
	uint16_t slot = st->used_idx % st->size;
	struct vring_used_elem *ue = &vq->used->ring[slot];
	__atomic_store_n(&ue->id, (uint32_t)elem->head, __ATOMIC_RELAXED);
	__atomic_store_n(&ue->len, len, __ATOMIC_RELAXED);
	guest_mem__mark_dirty(vq->mem, st->used + 4 + 8ull * slot, 8);
	st->used_idx++;
	/* Release: the element (and the data) is visible before the index. */
	__atomic_store_n(&vq->used->idx, st->used_idx, __ATOMIC_RELEASE);
	guest_mem__mark_dirty(vq->mem, st->used + 2, 2);
}

bool virtq__needs_interrupt(struct virtq *vq)
{
	/* Full barrier: the used index store must be visible before we look at
	 * the driver's flag, or an interrupt it asked for could be lost. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(load16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
}

/* Calls fn on each piece of [off, off+n) of one part; returns bytes covered. */
static size_t walk(const struct virtq_elem *elem, bool in, uint64_t off, uint64_t n,
		   void (*fn)(const struct virtq_seg *s, uint64_t soff, uint64_t len, uint64_t done, void *ctx),
		   void *ctx)
{
	unsigned first = in ? elem->nr_out : 0;
	unsigned end = in ? elem->nr_out + elem->nr_in : elem->nr_out;
	uint64_t done = 0;
	for (unsigned i = first; i < end && done < n; i++) {
		const struct virtq_seg *s = &elem->seg[i];
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		uint64_t len = MIN((uint64_t)s->len - off, n - done);
		fn(s, off, len, done, ctx);
		done += len;
		off = 0;
	}
	return (size_t)done;
}

static void copy_out(const struct virtq_seg *s, uint64_t soff, uint64_t len, uint64_t done, void *ctx)
{
	memcpy((char *)ctx + done, (const char *)s->host + soff, len);
}

size_t virtq__read_out(const struct virtq_elem *elem, uint64_t off, void *dst, size_t n)
{
	return walk(elem, false, off, n, copy_out, dst);
}

struct write_ctx {
	struct virtq *vq;
	const void *src;
};

static void copy_in(const struct virtq_seg *s, uint64_t soff, uint64_t len, uint64_t done, void *ctx)
{
	struct write_ctx *w = ctx;
	memcpy((char *)s->host + soff, (const char *)w->src + done, len);
	guest_mem__mark_dirty(w->vq->mem, s->gpa + soff, len);
}

size_t virtq__write_in(struct virtq *vq, const struct virtq_elem *elem, uint64_t off,
		       const void *src, size_t n)
{
	struct write_ctx w = { .vq = vq, .src = src };
	return walk(elem, true, off, n, copy_in, &w);
}

static void mark(const struct virtq_seg *s, uint64_t soff, uint64_t len, uint64_t done, void *ctx)
{
	guest_mem__mark_dirty(((struct virtq *)ctx)->mem, s->gpa + soff, len);
}

void virtq__mark_in_dirty(struct virtq *vq, const struct virtq_elem *elem, uint64_t off, uint64_t len)
{
	walk(elem, true, off, len, mark, vq);
}

struct iov_ctx {
	struct iovec *iov;
	int max;
	int n;
};

static void add_iov(const struct virtq_seg *s, uint64_t soff, uint64_t len, uint64_t done, void *ctx)
{
	struct iov_ctx *c = ctx;
	if (c->n < c->max)
		c->iov[c->n] = (struct iovec){ .iov_base = (char *)s->host + soff, .iov_len = len };
	c->n++;
}

int virtq__iov(const struct virtq_elem *elem, bool in, uint64_t off, uint64_t len,
	       struct iovec *iov, int max)
{
	struct iov_ctx c = { .iov = iov, .max = max };
	if (walk(elem, in, off, len, add_iov, &c) != len)
		return -EINVAL;
	return c.n > max ? -ENOSPC : c.n;
}
