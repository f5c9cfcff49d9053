/* Split virtqueues on their own: a guest_mem, a queue state, rings written
 * by hand. Chain walking, index wraparound, the copy helpers, enable checks
 * and every malformed-ring rule. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "vmhop/virtio.h"

#define MEM	(4 * 1024 * 1024ULL)
#define DESC	0x1000ULL
#define AVAIL	0x2000ULL
#define USED	0x3000ULL
#define QSZ	8

static struct guest_mem M;
static struct virtq_state S;
static struct virtq Q;
static struct virtq_elem E;
static uint16_t avail_idx;

static void *ptr(uint64_t gpa, uint64_t len)
{
	void *p = guest_mem__ptr(&M, gpa, len);
	ck_assert_ptr_nonnull(p);
	return p;
}

static void desc(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc *d = ptr(table + 16ULL * i, 16);
	*d = (struct vring_desc){ .addr = addr, .len = len, .flags = flags, .next = next };
}

static void publish(uint16_t head)
{
	struct vring_avail *a = ptr(AVAIL, 4 + 2 * QSZ);
	a->ring[avail_idx % QSZ] = head;
	a->idx = ++avail_idx;
}

static void setup(void)
{
	struct err e = { 0 };
	ck_assert_int_eq(guest_mem__create(&M, MEM, "ring", &e), 0);
	virtq__init(&Q, &S, &M, 16);
	S.size = QSZ;
	S.desc = DESC;
	S.avail = AVAIL;
	S.used = USED;
	const char *why = NULL;
	ck_assert_int_eq(virtq__enable(&Q, &why), 0);
	Q.indirect = true;
	avail_idx = 0;
}

static void teardown(void)
{
	guest_mem__destroy(&M);
}

static const char *pop_bad(void)
{
	const char *why = NULL;
	ck_assert_int_eq(virtq__pop(&Q, &E, &why), -EIO);
	ck_assert_ptr_nonnull(why);
	return why;
}

START_TEST(pop_push_basic)
{
	const char *why;
	ck_assert(!virtq__has_work(&Q));
	ck_assert_int_eq(virtq__pop(&Q, &E, &why), 0);
	desc(DESC, 3, 0x10000, 10, VRING_DESC_F_NEXT, 5);
	desc(DESC, 5, 0x10100, 0, VRING_DESC_F_NEXT, 6);	/* empty: skipped */
	desc(DESC, 6, 0x20000, 30, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 7);
	desc(DESC, 7, 0x20100, 40, VRING_DESC_F_WRITE, 0);
	publish(3);
	ck_assert(virtq__has_work(&Q));
	ck_assert_int_eq(virtq__pop(&Q, &E, &why), 1);
	ck_assert_uint_eq(E.head, 3);
	ck_assert_uint_eq(E.nr_out, 1);
	ck_assert_uint_eq(E.nr_in, 2);
	ck_assert_uint_eq(E.out_len, 10);
	ck_assert_uint_eq(E.in_len, 70);
	ck_assert_uint_eq(E.seg[1].gpa, 0x20000);
	ck_assert_ptr_eq(E.seg[2].host, ptr(0x20100, 40));
	ck_assert(!virtq__has_work(&Q));
	ck_assert_int_eq(guest_mem__track_vmm_writes(&M, true), 0);
	virtq__push(&Q, &E, 70);
	struct vring_used *u = ptr(USED, 4 + 8 * QSZ);
	ck_assert_uint_eq(u->idx, 1);
	ck_assert_uint_eq(u->ring[0].id, 3);
	ck_assert_uint_eq(u->ring[0].len, 70);
	ck_assert(M.vmm_dirty[USED / 4096 / 64] & (1ULL << (USED / 4096 % 64)));
	ck_assert(virtq__needs_interrupt(&Q));
	((struct vring_avail *)ptr(AVAIL, 4))->flags = VRING_AVAIL_F_NO_INTERRUPT;
	ck_assert(!virtq__needs_interrupt(&Q));
}
END_TEST

START_TEST(index_wraparound)
{
	S.last_avail_idx = S.used_idx = 65534;
	avail_idx = 65534;
	((struct vring_used *)ptr(USED, 4))->idx = 65534;
	for (int i = 0; i < 4; i++) {
		const char *why;
		desc(DESC, (uint16_t)i, 0x10000, 1, VRING_DESC_F_WRITE, 0);
		publish((uint16_t)i);
		ck_assert_int_eq(virtq__pop(&Q, &E, &why), 1);
		ck_assert_uint_eq(E.head, i);
		virtq__push(&Q, &E, 1);
	}
	ck_assert_uint_eq(S.last_avail_idx, 2);
	ck_assert_uint_eq(((struct vring_used *)ptr(USED, 4))->idx, 2);
	/* 65534 % 8 == 6: entries 6, 7, 0, 1 */
	ck_assert_uint_eq(((struct vring_used *)ptr(USED, 4 + 8 * QSZ))->ring[7].id, 1);
}
END_TEST

START_TEST(copy_helpers)
{
	desc(DESC, 0, 0x10000, 5, VRING_DESC_F_NEXT, 1);
	desc(DESC, 1, 0x10010, 7, VRING_DESC_F_NEXT, 2);
	desc(DESC, 2, 0x20000, 3, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3);
	desc(DESC, 3, 0x20010, 9, VRING_DESC_F_WRITE, 0);
	memcpy(ptr(0x10000, 5), "hello", 5);
	memcpy(ptr(0x10010, 7), " world!", 7);
	publish(0);
	const char *why;
	ck_assert_int_eq(virtq__pop(&Q, &E, &why), 1);
	char buf[16] = { 0 };
	ck_assert_uint_eq(virtq__read_out(&E, 3, buf, 6), 6);
	ck_assert_str_eq(buf, "lo wor");
	ck_assert_uint_eq(virtq__read_out(&E, 10, buf, 10), 2);	/* only 12 bytes */
	ck_assert_int_eq(guest_mem__track_vmm_writes(&M, true), 0);
	ck_assert_uint_eq(virtq__write_in(&Q, &E, 1, "ABCDEFGHIJK", 11), 11);
	ck_assert_mem_eq(ptr(0x20000, 3), "\0AB", 3);
	ck_assert_mem_eq(ptr(0x20010, 9), "CDEFGHIJK", 9);
	ck_assert(M.vmm_dirty[0] & (1ULL << 0x20));
	struct iovec iov[4];
	ck_assert_int_eq(virtq__iov(&E, true, 2, 5, iov, 4), 2);
	ck_assert_ptr_eq(iov[0].iov_base, ptr(0x20002, 1));
	ck_assert_uint_eq(iov[0].iov_len, 1);
	ck_assert_uint_eq(iov[1].iov_len, 4);
	ck_assert_int_eq(virtq__iov(&E, true, 0, 12, iov, 1), -ENOSPC);
	ck_assert_int_eq(virtq__iov(&E, true, 0, 13, iov, 4), -EINVAL);
	ck_assert_int_eq(virtq__iov(&E, false, 0, 12, iov, 4), 2);
}
END_TEST

START_TEST(chain_of_queue_size)
{
	for (uint16_t i = 0; i < QSZ; i++)
		desc(DESC, i, 0x10000 + 64ULL * i, 64, i + 1 < QSZ ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	publish(0);
	const char *why;
	ck_assert_int_eq(virtq__pop(&Q, &E, &why), 1);
	ck_assert_uint_eq(E.nr_out, QSZ);
}
END_TEST

START_TEST(bad_loop)
{
	desc(DESC, 0, 0x10000, 1, VRING_DESC_F_NEXT, 1);
	desc(DESC, 1, 0x10000, 1, VRING_DESC_F_NEXT, 0);
	publish(0);
	ck_assert_str_eq(pop_bad(), "descriptor chain longer than its table (loop?)");
}
END_TEST

START_TEST(bad_self_loop)
{
	desc(DESC, 4, 0x10000, 1, VRING_DESC_F_NEXT, 4);
	publish(4);
	pop_bad();
}
END_TEST

START_TEST(indirect_ok_unaligned_table)
{
	uint64_t tbl = 0x30008;	/* 8-byte aligned only */
	uint8_t *t = ptr(tbl, 48);
	struct vring_desc d[3] = {
		{ .addr = 0x10000, .len = 16, .flags = VRING_DESC_F_NEXT, .next = 2 },
		{ .addr = 0x20000, .len = 1, .flags = VRING_DESC_F_WRITE, .next = 0 },
		{ .addr = 0x10100, .len = 512, .flags = VRING_DESC_F_NEXT, .next = 1 },
	};
	memcpy(t, d, sizeof(d));
	desc(DESC, 2, tbl, 48, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE /* ignored */, 0);
	publish(2);
	const char *why;
	ck_assert_int_eq(virtq__pop(&Q, &E, &why), 1);
	ck_assert_uint_eq(E.head, 2);
	ck_assert_uint_eq(E.out_len, 528);
	ck_assert_uint_eq(E.in_len, 1);
	/* odd alignment too */
	tbl = 0x30101;
	memcpy(ptr(tbl, 48), d, sizeof(d));
	desc(DESC, 3, tbl, 48, VRING_DESC_F_INDIRECT, 0);
	publish(3);
	ck_assert_int_eq(virtq__pop(&Q, &E, &why), 1);
	ck_assert_uint_eq(E.out_len, 528);
}
END_TEST

START_TEST(bad_indirect_loop)
{
	desc(0x30000, 0, 0x10000, 1, VRING_DESC_F_NEXT, 1);
	desc(0x30000, 1, 0x10000, 1, VRING_DESC_F_NEXT, 0);
	desc(DESC, 0, 0x30000, 32, VRING_DESC_F_INDIRECT, 0);
	publish(0);
	pop_bad();
}
END_TEST

START_TEST(bad_indirect_forms)
{
	desc(0x30000, 0, 0x10000, 1, 0, 0);
	desc(0x30010, 0, 0x30000, 16, VRING_DESC_F_INDIRECT, 0);
	/* nested */
	desc(DESC, 0, 0x30010, 16, VRING_DESC_F_INDIRECT, 0);
	publish(0);
	ck_assert_str_eq(pop_bad(), "indirect descriptor inside an indirect table");
}
END_TEST

START_TEST(bad_indirect_with_next)
{
	desc(0x30000, 0, 0x10000, 1, 0, 0);
	desc(DESC, 0, 0x30000, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	desc(DESC, 1, 0x10000, 1, 0, 0);
	publish(0);
	ck_assert_str_eq(pop_bad(), "indirect descriptor not alone in its chain");
}
END_TEST

START_TEST(bad_indirect_not_head)
{
	desc(0x30000, 0, 0x10000, 1, 0, 0);
	desc(DESC, 0, 0x10000, 1, VRING_DESC_F_NEXT, 1);
	desc(DESC, 1, 0x30000, 16, VRING_DESC_F_INDIRECT, 0);
	publish(0);
	pop_bad();
}
END_TEST

START_TEST(bad_indirect_len)
{
	desc(DESC, 0, 0x30000, 20, VRING_DESC_F_INDIRECT, 0);
	publish(0);
	ck_assert_str_eq(pop_bad(), "indirect table length invalid");
	S.last_avail_idx = avail_idx;
	desc(DESC, 1, 0x30000, 0, VRING_DESC_F_INDIRECT, 0);
	publish(1);
	pop_bad();
	S.last_avail_idx = avail_idx;
	desc(DESC, 2, MEM - 16, 32, VRING_DESC_F_INDIRECT, 0);
	publish(2);
	ck_assert_str_eq(pop_bad(), "indirect table outside guest RAM");
	S.last_avail_idx = avail_idx;
	Q.indirect = false;
	desc(DESC, 3, 0x30000, 16, VRING_DESC_F_INDIRECT, 0);
	publish(3);
	ck_assert_str_eq(pop_bad(), "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC");
}
END_TEST

START_TEST(bad_addresses)
{
	desc(DESC, 0, MEM - 1, 2, 0, 0);
	publish(0);
	ck_assert_str_eq(pop_bad(), "buffer outside guest RAM");
	S.last_avail_idx = avail_idx;
	desc(DESC, 1, UINT64_MAX - 3, 8, 0, 0);	/* wraps */
	publish(1);
	pop_bad();
	S.last_avail_idx = avail_idx;
	desc(DESC, 2, 0xC0000000ULL, 8, 0, 0);		/* the MMIO hole */
	publish(2);
	pop_bad();
}
END_TEST

START_TEST(enable_checks)
{
	const char *why;
	struct { uint16_t size; uint64_t d, a, u; } bad[] = {
		{ 0, DESC, AVAIL, USED },
		{ 6, DESC, AVAIL, USED },
		{ 32, DESC, AVAIL, USED },		/* above max (16) */
		{ 8, DESC + 8, AVAIL, USED },
		{ 8, DESC, AVAIL + 1, USED },
		{ 8, DESC, AVAIL, USED + 2 },
		{ 8, MEM - 64, AVAIL, USED },
		{ 8, DESC, MEM - 8, USED },
		{ 8, DESC, AVAIL, MEM - 32 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		virtq__reset(&Q);
		S.size = bad[i].size;
		S.desc = bad[i].d;
		S.avail = bad[i].a;
		S.used = bad[i].u;
		why = NULL;
		ck_assert_msg(virtq__enable(&Q, &why) == -EINVAL, "case %zu", i);
		ck_assert_ptr_nonnull(why);
		ck_assert_uint_eq(S.enabled, 0);
	}
	/* rings packed right up to the end of RAM are fine */
	virtq__reset(&Q);
	S.size = 8;
	S.desc = MEM - 128 - 20 - 68;
	S.desc &= ~15ULL;
	S.avail = MEM - 68 - 20;
	S.used = MEM - 68;
	ck_assert_int_eq(virtq__enable(&Q, &why), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("virtqueue");
	TCase *tc = tcase_create("ring");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, pop_push_basic);
	tcase_add_test(tc, index_wraparound);
	tcase_add_test(tc, copy_helpers);
	tcase_add_test(tc, chain_of_queue_size);
	tcase_add_test(tc, bad_loop);
	tcase_add_test(tc, bad_self_loop);
	tcase_add_test(tc, indirect_ok_unaligned_table);
	tcase_add_test(tc, bad_indirect_loop);
	tcase_add_test(tc, bad_indirect_forms);
	tcase_add_test(tc, bad_indirect_with_next);
	tcase_add_test(tc, bad_indirect_not_head);
	tcase_add_test(tc, bad_indirect_len);
	tcase_add_test(tc, bad_addresses);
	tcase_add_test(tc, enable_checks);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(suite());
}
