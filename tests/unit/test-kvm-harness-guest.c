/* Guest code of test-kvm-harness.c. Runs at CPL3 inside the test VM:
 * compiled without instrumentation (tests/unit/harness.mk) and calls nothing
 * outside this file, kvm-harness.h and the test guest's inline helpers
 * (tests/guest/arch.h: port I/O, all inline asm). */
#include <stddef.h>
#include <stdint.h>

#include "tests/guest/arch.h"
#include "tests/unit/kvm-harness.h"

/* Kept in .rodata on purpose: the guest reads the binary's copy. */
static const uint16_t string_words[3] = { 0x1111, 0x2222, 0x3333 };

void guest_port_io(uint64_t unused0, uint64_t unused1)
{
	/* Every size, low and high ports (the TSS bitmap covers all 65536). */
	outb(0x80, 0x12);
	outw(0x82, 0x3456);
	outl(0x84, 0x789abcde);
	outb(0xffff, 0xa5);
	outl(0xfff8, 0xffffffff);
	for (uint8_t i = 0; i < 8; i++)
		outb(0x88, (uint8_t)(i * 3));

	/* The host answers each read with a value it chose. */
	GUEST_ASSERT_EQ(inb(0x90), 0x5a);
	GUEST_ASSERT_EQ(inw(0x92), 0xbeef);
	GUEST_ASSERT_EQ(inl(0x94), 0xdeadbeef);
	GUEST_ASSERT_EQ(inb(0x3f8), 0x00);

	/* A string instruction: one exit with count 3. */
	const void *src = string_words;
	uint64_t n = 3;
	__asm__ volatile("rep outsw" : "+S"(src), "+c"(n) : "d"((uint16_t)0x98) : "memory");
	GUEST_ASSERT_EQ(n, 0);
	GUEST_SYNC(42);
	GUEST_DONE();
}

uint64_t guest_pattern(uint64_t seed, uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed * 0xbf58476d1ce4e5b9ULL;
	return x ^ (x >> 31);
}

void guest_memory(uint64_t buf_gva, uint64_t words)
{
	volatile uint64_t *p = (volatile uint64_t *)buf_gva;
	for (uint64_t i = 0; i < words; i++)
		p[i] = guest_pattern(1, i);
	GUEST_SYNC(1);
	/* The host has checked our pattern and written its own. */
	for (uint64_t i = 0; i < words; i++)
		GUEST_ASSERT_EQ(p[i], guest_pattern(2, i));
	GUEST_SYNC(2);
}

void guest_assert_fails(uint64_t unused0, uint64_t unused1)
{
	volatile uint64_t one = 1;
	GUEST_SYNC(__LINE__ + 1);
	GUEST_ASSERT_EQ(one + 1, 3);
	GUEST_DONE();
}

void guest_returns(uint64_t a, uint64_t b)
{
	GUEST_SYNC(a + b);
}

void guest_faults(uint64_t bad_gva, uint64_t unused1)
{
	GUEST_SYNC(1);
	*(volatile uint64_t *)bad_gva = 1;
	GUEST_SYNC(2);
}

void guest_spins(uint64_t unused0, uint64_t unused1)
{
	for (;;)
		__asm__ volatile("pause");
}
