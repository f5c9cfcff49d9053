/* Bytes for transfer and hashing tests: a xorshift stream, incompressible
 * like guest data, the same for the same seed. Header-only: the channel and
 * stream suites link different helpers. */
#ifndef VMHOP_TEST_PATTERN_H
#define VMHOP_TEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>

static inline void test_pattern(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed | 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

#endif
