/* The KVM test harness itself: port I/O exits in both directions, guest
 * memory seen from the host and back, and how guest failures are reported
 * (assert with file:line, a fault, a hang). Guest code: test-kvm-harness-guest.c. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "tests/unit/kvm-harness.h"
#include "vmhop/util.h"

#define RAM_SIZE (4 * MiB)

static uint64_t data_value(const uint8_t *d, unsigned size)
{
	uint64_t v = 0;
	memcpy(&v, d, size);
	return v;
}

static void expect_out(struct kvm_harness *h, uint16_t port, uint8_t size, uint64_t value)
{
	uint8_t *d = kvm_harness__expect_io(h, port, size, KVM_EXIT_IO_OUT, 1);
	ck_assert_msg(data_value(d, size) == value, "out to port 0x%x: value 0x%llx, expected 0x%llx",
		      port, (unsigned long long)data_value(d, size), (unsigned long long)value);
}

static void answer_in(struct kvm_harness *h, uint16_t port, uint8_t size, uint32_t value)
{
	uint8_t *d = kvm_harness__expect_io(h, port, size, KVM_EXIT_IO_IN, 1);
	memcpy(d, &value, size);
}

START_TEST(port_io_exits)
{
	struct kvm_harness *h = kvm_harness__new(RAM_SIZE);
	struct err e = { 0 };
	ck_assert_msg(kvm_harness__start(h, guest_port_io, 0, 0, &e) == 0, "%s", e.msg);

	expect_out(h, 0x80, 1, 0x12);
	expect_out(h, 0x82, 2, 0x3456);
	expect_out(h, 0x84, 4, 0x789abcde);
	expect_out(h, 0xffff, 1, 0xa5);
	expect_out(h, 0xfff8, 4, 0xffffffff);
	for (unsigned i = 0; i < 8; i++)
		expect_out(h, 0x88, 1, i * 3);
	answer_in(h, 0x90, 1, 0x5a);
	answer_in(h, 0x92, 2, 0xbeef);
	answer_in(h, 0x94, 4, 0xdeadbeef);
	answer_in(h, 0x3f8, 1, 0);

	/* rep outsw: KVM may batch the words into one exit (count > 1) or,
	 * as its emulator does for OUTS, exit once per word. */
	static const uint16_t words[3] = { 0x1111, 0x2222, 0x3333 };
	for (unsigned got = 0; got < 3;) {
		struct ucall uc;
		char what[640];
		int r = kvm_harness__run(h, &uc, &e);
		kvm_harness__describe(h, r, &uc, &e, what, sizeof(what));
		struct kvm_run *run = h->run;
		ck_assert_msg(r == 0 && run->exit_reason == KVM_EXIT_IO && run->io.port == 0x98 &&
			      run->io.size == 2 && run->io.direction == KVM_EXIT_IO_OUT &&
			      run->io.count >= 1 && run->io.count <= 3 - got,
			      "expected rep outsw to port 0x98, got %s", what);
		const uint8_t *d = (uint8_t *)run + run->io.data_offset;
		for (uint32_t i = 0; i < run->io.count; i++, got++)
			ck_assert_uint_eq(data_value(d + 2 * i, 2), words[got]);
	}

	kvm_harness__expect_sync(h, 42);
	kvm_harness__expect_done(h);
	kvm_harness__destroy(h);
}
END_TEST

START_TEST(memory_both_ways)
{
	struct kvm_harness *h = kvm_harness__new(RAM_SIZE);
	struct err e = { 0 };
	/* Odd start and a length crossing several pages. */
	const uint64_t gpa = 3 * 4096 + 8 * 5, words = 3 * 512 + 7;
	volatile uint64_t *host = guest_mem__ptr(&h->mem, gpa, words * 8);
	ck_assert_ptr_nonnull((void *)host);
	ck_assert_msg(kvm_harness__start(h, guest_memory, kvm_harness__ram_gva(gpa), words, &e) == 0,
		      "%s", e.msg);

	kvm_harness__expect_sync(h, 1);
	for (uint64_t i = 0; i < words; i++) {
		ck_assert_msg(host[i] == guest_pattern(1, i), "word %llu: host sees 0x%llx, guest wrote 0x%llx",
			      (unsigned long long)i, (unsigned long long)host[i],
			      (unsigned long long)guest_pattern(1, i));
		host[i] = guest_pattern(2, i);
	}
	/* Neighbours untouched: the guest wrote exactly [gpa, gpa + words * 8). */
	ck_assert_uint_eq(*(uint64_t *)(h->mem.base + gpa - 8), 0);
	ck_assert_uint_eq(*(uint64_t *)(h->mem.base + gpa + words * 8), 0);

	kvm_harness__expect_sync(h, 2);
	kvm_harness__expect_done(h);	/* guest_memory returned */
	kvm_harness__destroy(h);
}
END_TEST

START_TEST(assert_reports_file_and_line)
{
	struct kvm_harness *h = kvm_harness__new(RAM_SIZE);
	struct err e = { 0 };
	struct ucall uc;
	ck_assert_msg(kvm_harness__start(h, guest_assert_fails, 0, 0, &e) == 0, "%s", e.msg);
	uint64_t line = kvm_harness__expect_any_sync(h);

	int r = kvm_harness__run(h, &uc, &e);
	ck_assert_int_eq(r, UCALL_ASSERT);
	ck_assert_uint_eq(uc.line, line);
	ck_assert_msg(uc.file && strstr(uc.file, "test-kvm-harness-guest.c"), "file %s", uc.file);
	ck_assert_str_eq(uc.expr, "one + 1 == 3");
	ck_assert_uint_eq(uc.has_values, 1);
	ck_assert_uint_eq(uc.args[0], 2);
	ck_assert_uint_eq(uc.args[1], 3);
	char what[640];
	kvm_harness__describe(h, r, &uc, &e, what, sizeof(what));
	ck_assert_msg(strstr(what, "test-kvm-harness-guest.c:") && strstr(what, "(0x2 vs 0x3)"), "%s", what);

	/* A failed guest is never resumed. */
	ck_assert_int_eq(kvm_harness__run(h, &uc, &e), -EINVAL);
	kvm_harness__destroy(h);
}
END_TEST

START_TEST(return_is_done_and_args_arrive)
{
	struct kvm_harness *h = kvm_harness__new(RAM_SIZE);
	struct err e = { 0 };
	ck_assert_msg(kvm_harness__start(h, guest_returns, 40, 2, &e) == 0, "%s", e.msg);
	kvm_harness__expect_sync(h, 42);
	kvm_harness__expect_done(h);
	/* The same VM runs a second guest function. */
	ck_assert_msg(kvm_harness__start(h, guest_returns, 1ULL << 40, 5, &e) == 0, "%s", e.msg);
	kvm_harness__expect_sync(h, (1ULL << 40) + 5);
	kvm_harness__expect_done(h);
	kvm_harness__destroy(h);
}
END_TEST

START_TEST(fault_is_reported)
{
	struct kvm_harness *h = kvm_harness__new(RAM_SIZE);
	struct err e = { 0 };
	struct ucall uc;
	/* Past the end of the RAM mapping: not present, a page fault. */
	uint64_t bad = kvm_harness__ram_gva(RAM_SIZE) + 64;
	ck_assert_msg(kvm_harness__start(h, guest_faults, bad, 0, &e) == 0, "%s", e.msg);
	kvm_harness__expect_sync(h, 1);
	int r = kvm_harness__run(h, &uc, &e);
	char what[640];
	kvm_harness__describe(h, r, &uc, &e, what, sizeof(what));
	ck_assert_msg(r == 0 && (h->run->exit_reason == KVM_EXIT_SHUTDOWN ||
				 h->run->exit_reason == KVM_EXIT_INTERNAL_ERROR),
		      "expected a crash, got %s", what);
	ck_assert_msg(strstr(what, "rip 0x"), "%s", what);
	ck_assert(h->dead);
	kvm_harness__destroy(h);
}
END_TEST

START_TEST(hang_times_out)
{
	struct kvm_harness *h = kvm_harness__new(RAM_SIZE);
	struct err e = { 0 };
	struct ucall uc;
	h->timeout_ms = 100;
	ck_assert_msg(kvm_harness__start(h, guest_spins, 0, 0, &e) == 0, "%s", e.msg);
	uint64_t t0 = util__now_ns();
	ck_assert_int_eq(kvm_harness__run(h, &uc, &e), -ETIMEDOUT);
	ck_assert_uint_lt(util__now_ns() - t0, 2000000000ULL);
	kvm_harness__destroy(h);
}
END_TEST

static Suite *harness_suite(void)
{
	Suite *s = suite_create("kvm-harness");
	TCase *tc = tcase_create("guest");
	tcase_add_test(tc, port_io_exits);
	tcase_add_test(tc, memory_both_ways);
	tcase_add_test(tc, assert_reports_file_and_line);
	tcase_add_test(tc, return_is_done_and_args_arrive);
	tcase_add_test(tc, fault_is_reported);
	tcase_add_test(tc, hang_times_out);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	kvm_harness__require_kvm();
	return check_run(harness_suite());
}
