/* virtio-blk request processing against a temp disk, with the test playing
 * the guest driver: good requests, refused ones, malformed rings, reset,
 * dirty tracking, the device thread and pause/resume. */
#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/check-run.h"
#include "vmhop/util.h"
#include "test-virtio-util.h"

#define DISK_SIZE (64 * 1024ULL)
#define CAP (DISK_SIZE / TG_SECTOR)

static struct tg T;
static char *disk_path;

static void setup_rw(void)
{
	tg_init(&T);
	disk_path = tg_make_disk(&T, "d.img", DISK_SIZE);
	struct err e = { 0 };
	ck_assert_msg(tg_add_blk(&T, disk_path, "vda", false, false, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(tg_driver_init(&T, 0, 16) & 0x7f, 0x0f);
}

static void setup_ro(void)
{
	tg_init(&T);
	disk_path = tg_make_disk(&T, "ro.img", DISK_SIZE);
	struct err e = { 0 };
	ck_assert_msg(tg_add_blk(&T, disk_path, "ro-disk", true, false, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(tg_driver_init(&T, 0, 16) & 0x7f, 0x0f);
}

static void teardown(void)
{
	tg_fini(&T);
	free(disk_path);
}

static void file_read(uint64_t off, void *buf, size_t len)
{
	int fd = open(disk_path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(util__pread_all(fd, buf, len, (off_t)off), 0);
	close(fd);
}

static bool needs_reset(void)
{
	return tg_status(&T) & VIRTIO_CONFIG_S_NEEDS_RESET;
}

START_TEST(read_sectors)
{
	uint8_t buf[3 * TG_SECTOR];
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 5, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	for (size_t i = 0; i < sizeof(buf); i++)
		ck_assert_uint_eq(buf[i], tg_pattern(5 * TG_SECTOR + i));
	struct vring_used_elem u = tg_used(&T, 0);
	ck_assert_uint_eq(u.id, 0);
	ck_assert_uint_eq(u.len, sizeof(buf) + 1);
	/* the last sector, exactly */
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, CAP - 1, buf, TG_SECTOR), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(buf[TG_SECTOR - 1], tg_pattern(DISK_SIZE - 1));
	ck_assert_uint_eq(T.blk->stats.reads, 2);
}
END_TEST

START_TEST(write_then_read)
{
	uint8_t w[2 * TG_SECTOR], r[2 * TG_SECTOR], f[2 * TG_SECTOR];
	for (size_t i = 0; i < sizeof(w); i++)
		w[i] = (uint8_t)(i ^ 0x5a);
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_OUT, 10, w, sizeof(w)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(tg_used(&T, 0).len, 1);
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 10, r, sizeof(r)), VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(w, r, sizeof(w));
	file_read(10 * TG_SECTOR, f, sizeof(f));
	ck_assert_mem_eq(w, f, sizeof(w));
	/* neighbours untouched */
	file_read(9 * TG_SECTOR, f, TG_SECTOR);
	ck_assert_uint_eq(f[0], tg_pattern(9 * TG_SECTOR));
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(T.blk->stats.flushes, 1);
}
END_TEST

/* Virtio 1.x makes no promise about framing: header and data may be split
 * across descriptors anywhere. */
START_TEST(odd_framing)
{
	uint64_t hdr = tg_alloc(&T, 16), d1 = tg_alloc(&T, 100), d2 = tg_alloc(&T, 924), st = tg_alloc(&T, 1);
	struct virtio_blk_outhdr *h = tg_ptr(&T, hdr, 16);
	h->type = VIRTIO_BLK_T_OUT;
	h->sector = 20;
	uint8_t *p1 = tg_ptr(&T, d1, 100), *p2 = tg_ptr(&T, d2, 924);
	for (int i = 0; i < 100; i++)
		p1[i] = (uint8_t)(200 + i);
	for (int i = 0; i < 924; i++)
		p2[i] = (uint8_t)(i * 3);
	uint16_t head = tg_desc(&T, hdr, 5, VRING_DESC_F_NEXT);
	tg_desc(&T, hdr + 5, 11, VRING_DESC_F_NEXT);
	tg_desc(&T, d1, 100, VRING_DESC_F_NEXT);
	tg_desc(&T, d2, 924, VRING_DESC_F_NEXT);
	tg_desc(&T, st, 1, VRING_DESC_F_WRITE);
	tg_publish(&T, head);
	virtio_pci__process_queue(&T.blk->vp, 0);
	ck_assert_uint_eq(tg_used_idx(&T), 1);
	ck_assert_uint_eq(*(uint8_t *)tg_ptr(&T, st, 1), VIRTIO_BLK_S_OK);
	uint8_t f[1024];
	file_read(20 * TG_SECTOR, f, sizeof(f));
	ck_assert_mem_eq(f, p1, 100);
	ck_assert_mem_eq(f + 100, p2, 924);
}
END_TEST

START_TEST(get_id_and_unsupported)
{
	char id[VIRTIO_BLK_ID_BYTES];
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_GET_ID, 0, id, sizeof(id)), VIRTIO_BLK_S_OK);
	ck_assert_str_eq(id, "vda");
	uint8_t buf[TG_SECTOR];
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_DISCARD, 0, buf, 16), VIRTIO_BLK_S_UNSUPP);
	ck_assert_int_eq(tg_blk_req(&T, 0x1234, 0, NULL, 0), VIRTIO_BLK_S_UNSUPP);
	ck_assert(!needs_reset());
}
END_TEST

START_TEST(out_of_range)
{
	uint8_t buf[2 * TG_SECTOR] = { 0 };
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, CAP, buf, TG_SECTOR), VIRTIO_BLK_S_IOERR);
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, CAP - 1, buf, 2 * TG_SECTOR), VIRTIO_BLK_S_IOERR);
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_OUT, CAP - 1, buf, 2 * TG_SECTOR), VIRTIO_BLK_S_IOERR);
	/* sector * 512 would overflow */
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, UINT64_MAX / 256, buf, TG_SECTOR), VIRTIO_BLK_S_IOERR);
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_OUT, UINT64_MAX, buf, TG_SECTOR), VIRTIO_BLK_S_IOERR);
	/* not a whole number of sectors */
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, 100), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(T.blk->stats.errors, 6);
	uint8_t f[TG_SECTOR];
	file_read(DISK_SIZE - TG_SECTOR, f, TG_SECTOR);
	ck_assert_uint_eq(f[0], tg_pattern(DISK_SIZE - TG_SECTOR));
	ck_assert(!needs_reset());
}
END_TEST

START_TEST(readonly_refuses_writes)
{
	ck_assert(tg_device_features(&T) & (1ULL << VIRTIO_BLK_F_RO));
	uint8_t w[TG_SECTOR], f[TG_SECTOR];
	memset(w, 0xAB, sizeof(w));
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_OUT, 0, w, sizeof(w)), VIRTIO_BLK_S_IOERR);
	file_read(0, f, sizeof(f));
	ck_assert_uint_eq(f[0], tg_pattern(0));
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, f, sizeof(f)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(f[1], tg_pattern(1));
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(rw_disk_not_ro)
{
	uint64_t f = tg_device_features(&T);
	ck_assert(!(f & (1ULL << VIRTIO_BLK_F_RO)));
	ck_assert(f & (1ULL << VIRTIO_F_VERSION_1));
	ck_assert(f & (1ULL << VIRTIO_BLK_F_FLUSH));
	ck_assert(f & (1ULL << VIRTIO_BLK_F_BLK_SIZE));
	ck_assert(f & (1ULL << VIRTIO_BLK_F_SEG_MAX));
	ck_assert(f & (1ULL << VIRTIO_RING_F_INDIRECT_DESC));
	/* config space */
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_DEVCFG_OFF + 0, 4), CAP);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_DEVCFG_OFF + 4, 4), 0);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_DEVCFG_OFF + 0, 8), CAP);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_DEVCFG_OFF + 12, 4), VIRTIO_BLK_SEG_MAX);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_DEVCFG_OFF + 20, 4), 512);
}
END_TEST

/* ---- malformed rings: NEEDS_RESET, no crash, nothing used ---- */

static void expect_broken(void)
{
	uint16_t before = tg_used_idx(&T);
	virtio_pci__process_queue(&T.blk->vp, 0);
	ck_assert_uint_eq(tg_used_idx(&T), before);
	ck_assert(needs_reset());
	ck_assert_ptr_nonnull(T.blk->vp.broken_reason);
}

START_TEST(malformed_loop)
{
	uint64_t hdr = tg_alloc(&T, 16);
	tg_desc_at(&T, 0, 0, hdr, 16, VRING_DESC_F_NEXT, 1);
	tg_desc_at(&T, 0, 1, hdr, 16, VRING_DESC_F_NEXT, 2);
	tg_desc_at(&T, 0, 2, hdr, 16, VRING_DESC_F_NEXT, 0);
	tg_publish(&T, 0);
	expect_broken();
	/* a broken device serves nothing until reset */
	uint8_t buf[TG_SECTOR];
	T.next_desc = 4;
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), -1);
}
END_TEST

START_TEST(malformed_oob_address)
{
	uint64_t hdr = tg_alloc(&T, 16), st = tg_alloc(&T, 1);
	struct virtio_blk_outhdr *h = tg_ptr(&T, hdr, 16);
	h->type = VIRTIO_BLK_T_IN;
	uint16_t head = tg_desc(&T, hdr, 16, VRING_DESC_F_NEXT);
	tg_desc(&T, TG_MEM - 256, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);	/* straddles the end of RAM */
	tg_desc(&T, st, 1, VRING_DESC_F_WRITE);
	tg_publish(&T, head);
	expect_broken();
	ck_assert_str_eq(T.blk->vp.broken_reason, "buffer outside guest RAM");
}
END_TEST

START_TEST(malformed_huge_address)
{
	uint16_t head = tg_desc(&T, 0xFFFFFFFFFFFFF000ULL, 0x2000, 0);
	tg_publish(&T, head);
	expect_broken();
}
END_TEST

START_TEST(malformed_too_long_indirect)
{
	/* queue size 16: an indirect table of 17 entries is longer than allowed */
	uint64_t tbl = tg_alloc(&T, 17 * 16);
	for (uint16_t i = 0; i < 17; i++)
		tg_desc_at(&T, tbl, i, tg_alloc(&T, 16), 16, i < 16 ? VRING_DESC_F_NEXT : VRING_DESC_F_WRITE,
			   (uint16_t)(i + 1));
	uint16_t head = tg_desc(&T, tbl, 17 * 16, VRING_DESC_F_INDIRECT);
	tg_publish(&T, head);
	expect_broken();
}
END_TEST

START_TEST(malformed_next_out_of_table)
{
	tg_desc_at(&T, 0, 0, tg_alloc(&T, 16), 16, VRING_DESC_F_NEXT, 16);
	tg_publish(&T, 0);
	expect_broken();
}
END_TEST

START_TEST(malformed_avail_jump)
{
	struct vring_avail *a = tg_ptr(&T, TG_RING + 0x1000, 4);
	a->idx = 17;	/* 17 new entries in a 16-entry queue */
	expect_broken();
}
END_TEST

START_TEST(malformed_head_index)
{
	tg_publish(&T, 16);
	expect_broken();
}
END_TEST

START_TEST(malformed_order_and_status)
{
	/* writable before readable */
	uint64_t st = tg_alloc(&T, 1), hdr = tg_alloc(&T, 16);
	uint16_t head = tg_desc(&T, st, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT);
	tg_desc(&T, hdr, 16, 0);
	tg_publish(&T, head);
	expect_broken();
}
END_TEST

START_TEST(malformed_no_status)
{
	uint64_t hdr = tg_alloc(&T, 16);
	tg_publish(&T, tg_desc(&T, hdr, 16, 0));
	expect_broken();
}
END_TEST

START_TEST(reset_recovers)
{
	tg_publish(&T, 99);
	expect_broken();
	ck_assert_int_eq(tg_driver_init(&T, 0, 8), 0x0f);
	ck_assert(!needs_reset());
	uint8_t buf[TG_SECTOR];
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 1, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(buf[0], tg_pattern(TG_SECTOR));
	ck_assert_uint_eq(T.blk->vp.st.vq[0].last_avail_idx, 1);
}
END_TEST

START_TEST(indirect_read)
{
	uint64_t hdr = tg_alloc(&T, 16), d = tg_alloc(&T, 1024), st = tg_alloc(&T, 1), tbl = tg_alloc(&T, 64);
	struct virtio_blk_outhdr *h = tg_ptr(&T, hdr, 16);
	h->type = VIRTIO_BLK_T_IN;
	h->sector = 2;
	tg_desc_at(&T, tbl, 0, hdr, 16, VRING_DESC_F_NEXT, 1);
	tg_desc_at(&T, tbl, 1, d, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 3);
	tg_desc_at(&T, tbl, 3, d + 512, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	tg_desc_at(&T, tbl, 2, st, 1, VRING_DESC_F_WRITE, 0);
	tg_publish(&T, tg_desc(&T, tbl, 64, VRING_DESC_F_INDIRECT));
	virtio_pci__process_queue(&T.blk->vp, 0);
	ck_assert_uint_eq(tg_used_idx(&T), 1);
	ck_assert_uint_eq(*(uint8_t *)tg_ptr(&T, st, 1), VIRTIO_BLK_S_OK);
	uint8_t *p = tg_ptr(&T, d, 1024);
	for (int i = 0; i < 1024; i++)
		ck_assert_uint_eq(p[i], tg_pattern(2 * TG_SECTOR + (uint64_t)i));
}
END_TEST

START_TEST(indirect_not_negotiated)
{
	uint64_t f = tg_device_features(&T) & ~(1ULL << VIRTIO_RING_F_INDIRECT_DESC);
	ck_assert_int_eq(tg_driver_init(&T, f, 16), 0x0f);
	uint64_t tbl = tg_alloc(&T, 16);
	tg_desc_at(&T, tbl, 0, tg_alloc(&T, 1), 1, VRING_DESC_F_WRITE, 0);
	tg_publish(&T, tg_desc(&T, tbl, 16, VRING_DESC_F_INDIRECT));
	expect_broken();
}
END_TEST

static bool page_dirty(uint64_t gpa)
{
	uint64_t p = guest_mem__offset(&T.vm.mem, gpa) / GUEST_PAGE_SIZE;
	return T.vm.mem.vmm_dirty[p / 64] & (1ULL << (p % 64));
}

START_TEST(vmm_writes_marked_dirty)
{
	ck_assert_int_eq(guest_mem__track_vmm_writes(&T.vm.mem, true), 0);
	/* data on its own pages, away from the rings and the headers */
	uint64_t d = 0x400000;
	uint64_t hdr = tg_alloc(&T, 16), st = 0x500000 + 7;
	struct virtio_blk_outhdr *h = tg_ptr(&T, hdr, 16);
	h->type = VIRTIO_BLK_T_IN;
	h->sector = 0;
	uint16_t head = tg_desc(&T, hdr, 16, VRING_DESC_F_NEXT);
	tg_desc(&T, d + 4096 - 512, 1024, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
	tg_desc(&T, st, 1, VRING_DESC_F_WRITE);
	tg_publish(&T, head);
	virtio_pci__process_queue(&T.blk->vp, 0);
	ck_assert_uint_eq(tg_used_idx(&T), 1);
	ck_assert(page_dirty(d));
	ck_assert(page_dirty(d + 4096));
	ck_assert(!page_dirty(d + 8192));
	ck_assert(!page_dirty(d - 4096));
	ck_assert(page_dirty(st));
	ck_assert(page_dirty(TG_RING + 0x2000));	/* used ring */
	ck_assert(!page_dirty(TG_RING));		/* desc table: only read */
	ck_assert(!page_dirty(TG_RING + 0x1000));	/* avail ring: only read */
	ck_assert(!page_dirty(hdr));
	/* a write request dirties only the status byte and the used ring */
	memset((void *)T.vm.mem.vmm_dirty, 0, (T.vm.mem.nr_pages + 63) / 64 * 8);
	head = tg_desc(&T, hdr, 16, VRING_DESC_F_NEXT);
	h->type = VIRTIO_BLK_T_OUT;
	tg_desc(&T, d, 512, VRING_DESC_F_NEXT);
	tg_desc(&T, st, 1, VRING_DESC_F_WRITE);
	tg_publish(&T, head);
	virtio_pci__process_queue(&T.blk->vp, 0);
	ck_assert(!page_dirty(d));
	ck_assert(page_dirty(st));
	ck_assert(page_dirty(TG_RING + 0x2000));
}
END_TEST

START_TEST(intx_interrupts)
{
	uint8_t buf[TG_SECTOR];
	unsigned before = T.irqs;
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(T.irqs, before + 1);
	ck_assert_uint_eq(T.last_vector, VIRTIO_NO_VECTOR);
	ck_assert(T.blk->vp.pci.st.intx_level);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_QUEUE);
	ck_assert(!T.blk->vp.pci.st.intx_level);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_ISR_OFF, 1), 0);
	/* a polling driver can ask for no interrupts */
	tg_set_avail_flags(&T, VRING_AVAIL_F_NO_INTERRUPT);
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(T.irqs, before + 1);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_ISR_OFF, 1), 0);
}
END_TEST

/* The whole path a polling guest takes: notify write (no ioeventfd without
 * KVM, so the BAR handler signals the eventfd), device thread, used ring. */
START_TEST(device_thread_serves_notifies)
{
	tg_set_avail_flags(&T, VRING_AVAIL_F_NO_INTERRUPT);
	uint64_t d = tg_alloc(&T, 4 * TG_SECTOR);
	uint8_t *p = tg_ptr(&T, d, 4 * TG_SECTOR);
	memset(p, 0x3c, 4 * TG_SECTOR);
	uint64_t st1 = tg_blk_submit(&T, VIRTIO_BLK_T_OUT, 40, d, 4 * TG_SECTOR);
	uint64_t st2 = tg_blk_submit(&T, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	tg_notify(&T, 0);
	ck_assert(tg_wait_used(&T, 2, 3000));
	ck_assert_uint_eq(*(uint8_t *)tg_ptr(&T, st1, 1), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(*(uint8_t *)tg_ptr(&T, st2, 1), VIRTIO_BLK_S_OK);
	uint8_t f[4 * TG_SECTOR];
	file_read(40 * TG_SECTOR, f, sizeof(f));
	ck_assert_mem_eq(f, p, sizeof(f));
	/* 100 more, notified one by one (sectors 44.., clear of the write) */
	for (int i = 0; i < 100; i++) {
		uint64_t b = tg_alloc(&T, TG_SECTOR), sector = (44 + (uint64_t)i) % CAP;
		tg_blk_submit(&T, VIRTIO_BLK_T_IN, sector, b, TG_SECTOR);
		tg_notify(&T, 0);
		ck_assert(tg_wait_used(&T, (uint16_t)(3 + i), 3000));
		ck_assert_uint_eq(*(uint8_t *)tg_ptr(&T, b, 1), tg_pattern(sector * TG_SECTOR));
	}
	ck_assert_uint_eq(T.irqs, 0);
}
END_TEST

START_TEST(pause_holds_requests)
{
	virtio_blk__pause(T.blk);
	uint64_t b = tg_alloc(&T, TG_SECTOR);
	uint64_t st = tg_blk_submit(&T, VIRTIO_BLK_T_IN, 3, b, TG_SECTOR);
	tg_notify(&T, 0);
	struct timespec ts = { 0, 50 * 1000000 };
	nanosleep(&ts, NULL);
	virtio_pci__process_queue(&T.blk->vp, 0);	/* refused too while paused */
	ck_assert_uint_eq(tg_used_idx(&T), 0);
	ck_assert_uint_eq(*(uint8_t *)tg_ptr(&T, st, 1), 0xEE);
	virtio_blk__resume(T.blk);
	ck_assert(tg_wait_used(&T, 1, 3000));
	ck_assert_uint_eq(*(uint8_t *)tg_ptr(&T, st, 1), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(*(uint8_t *)tg_ptr(&T, b, 1), tg_pattern(3 * TG_SECTOR));
}
END_TEST

/* Pausing while the thread is busy returns only when it stopped, and the
 * used ring then stays still. */
START_TEST(pause_under_load)
{
	tg_driver_init(&T, 0, 256);
	tg_set_avail_flags(&T, VRING_AVAIL_F_NO_INTERRUPT);
	for (int i = 0; i < 80; i++)
		tg_blk_submit(&T, VIRTIO_BLK_T_IN, (uint64_t)(i % CAP), tg_alloc(&T, TG_SECTOR), TG_SECTOR);
	tg_notify(&T, 0);
	virtio_blk__pause(T.blk);
	uint16_t at_pause = tg_used_idx(&T);
	struct timespec ts = { 0, 20 * 1000000 };
	nanosleep(&ts, NULL);
	ck_assert_uint_eq(tg_used_idx(&T), at_pause);
	ck_assert_uint_eq(T.blk->vp.st.vq[0].used_idx, at_pause);
	virtio_blk__resume(T.blk);
	ck_assert(tg_wait_used(&T, 80, 3000));
}
END_TEST

/* What migration will do: pause, copy guest RAM and the plain state
 * structs into a fresh device of another VM, post_load, resume. The guest's
 * ring simply carries on there. */
START_TEST(state_moves_to_new_device)
{
	tg_set_avail_flags(&T, VRING_AVAIL_F_NO_INTERRUPT);
	uint8_t buf[TG_SECTOR];
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, (uint64_t)i, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	/* one more offered but not served before the pause */
	virtio_blk__pause(T.blk);
	uint64_t b = tg_alloc(&T, TG_SECTOR);
	uint64_t st = tg_blk_submit(&T, VIRTIO_BLK_T_IN, 7, b, TG_SECTOR);

	static struct tg D;
	tg_init(&D);
	struct err e = { 0 };
	ck_assert_msg(tg_add_blk(&D, disk_path, "vda", false, false, &e) == 0, "%s", e.msg);
	virtio_blk__pause(D.blk);
	memcpy(D.vm.mem.base, T.vm.mem.base, TG_MEM);
	D.blk->vp.st = T.blk->vp.st;
	D.blk->vp.pci.st = T.blk->vp.pci.st;
	virtio_pci__post_load(&D.blk->vp);
	virtio_blk__resume(D.blk);
	D.qsize = T.qsize;
	D.avail_idx = T.avail_idx;
	D.next_desc = T.next_desc;
	D.data_next = T.data_next;
	ck_assert(tg_wait_used(&D, 4, 3000));
	ck_assert_uint_eq(*(uint8_t *)tg_ptr(&D, st, 1), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(*(uint8_t *)tg_ptr(&D, b, 1), tg_pattern(7 * TG_SECTOR));
	ck_assert_int_eq(tg_blk_req(&D, VIRTIO_BLK_T_IN, 9, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(buf[0], tg_pattern(9 * TG_SECTOR));
	ck_assert_uint_eq(tg_used_idx(&D), 5);
	ck_assert_uint_eq(tg_status(&D), 0x0f);
	/* the source served nothing after its pause */
	ck_assert_uint_eq(tg_used_idx(&T), 3);
	tg_fini(&D);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("virtio-blk");
	TCase *tc = tcase_create("requests");
	tcase_add_checked_fixture(tc, setup_rw, teardown);
	tcase_add_test(tc, read_sectors);
	tcase_add_test(tc, write_then_read);
	tcase_add_test(tc, odd_framing);
	tcase_add_test(tc, get_id_and_unsupported);
	tcase_add_test(tc, out_of_range);
	tcase_add_test(tc, rw_disk_not_ro);
	tcase_add_test(tc, indirect_read);
	tcase_add_test(tc, vmm_writes_marked_dirty);
	tcase_add_test(tc, intx_interrupts);
	suite_add_tcase(s, tc);

	tc = tcase_create("readonly");
	tcase_add_checked_fixture(tc, setup_ro, teardown);
	tcase_add_test(tc, readonly_refuses_writes);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_checked_fixture(tc, setup_rw, teardown);
	tcase_add_test(tc, malformed_loop);
	tcase_add_test(tc, malformed_oob_address);
	tcase_add_test(tc, malformed_huge_address);
	tcase_add_test(tc, malformed_too_long_indirect);
	tcase_add_test(tc, malformed_next_out_of_table);
	tcase_add_test(tc, malformed_avail_jump);
	tcase_add_test(tc, malformed_head_index);
	tcase_add_test(tc, malformed_order_and_status);
	tcase_add_test(tc, malformed_no_status);
	tcase_add_test(tc, indirect_not_negotiated);
	tcase_add_test(tc, reset_recovers);
	suite_add_tcase(s, tc);

	tc = tcase_create("thread");
	tcase_add_checked_fixture(tc, setup_rw, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, device_thread_serves_notifies);
	tcase_add_test(tc, pause_holds_requests);
	tcase_add_test(tc, pause_under_load);
	tcase_add_test(tc, state_moves_to_new_device);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(suite());
}
