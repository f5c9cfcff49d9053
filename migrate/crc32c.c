/* CRC32C (Castagnoli, reflected polynomial 0x82f63b78), as used by iSCSI and
 * ext4: init 0xffffffff, final xor 0xffffffff.
 *
 * Two implementations, chosen once at run time:
 *  - SSE4.2 `crc32` instructions, three independent streams interleaved so
 *    the 3-cycle latency of the instruction is hidden, the three partial CRCs
 *    joined with precomputed "append N zero bytes" tables (Mark Adler's
 *    method);
 *  - slice-by-8 tables for CPUs without SSE4.2.
 * crc32c__copy() computes the CRC while copying, so a payload is read from
 * memory once: that is what keeps raw pages near memcpy speed. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vmhop/stream.h"

#define POLY 0x82f63b78u
#define LONG_BLK 8192
#define SHORT_BLK 256

static uint32_t sw_table[8][256];
static uint32_t long_shift[4][256];
static uint32_t short_shift[4][256];
static bool have_hw;
static bool ready;

static uint32_t sw_update(uint32_t crc, const uint8_t *p, size_t len);

/* The raw CRC state's image after `len` zero bytes, for each state bit:
 * through the byte tables (built first), not bit by bit, which took 2-3 ms
 * of every process's first CRC (a restore's whole budget is 20). */
static void build_shift(uint32_t tab[4][256], size_t len)
{
	static const uint8_t zeros[LONG_BLK];
	uint32_t op[32];
	for (int i = 0; i < 32; i++)
		op[i] = sw_update(1u << i, zeros, len);
	for (uint32_t n = 0; n < 256; n++)
		for (int k = 0; k < 4; k++) {
			uint32_t v = n << (8 * k), s = 0;
			for (int i = 0; v; i++, v >>= 1)
				if (v & 1)
					s ^= op[i];
			tab[k][n] = s;
		}
}

static inline uint32_t shift(uint32_t tab[4][256], uint32_t crc)
{
	return tab[0][crc & 0xff] ^ tab[1][(crc >> 8) & 0xff] ^
	       tab[2][(crc >> 16) & 0xff] ^ tab[3][crc >> 24];
}

static void init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (POLY & (0u - (c & 1)));
		sw_table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = sw_table[0][n];
		for (int k = 1; k < 8; k++) {
			c = sw_table[0][c & 0xff] ^ (c >> 8);
			sw_table[k][n] = c;
		}
	}
	build_shift(long_shift, LONG_BLK);
	build_shift(short_shift, SHORT_BLK);
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_hw = __builtin_cpu_supports("sse4.2");
#endif
	__atomic_store_n(&ready, true, __ATOMIC_RELEASE);
}

static inline void ensure_init(void)
{
	/* Idempotent: two threads racing here compute identical tables. */
	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE))
		init();
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline void store64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint32_t sw_update(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		crc = sw_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t v = load64(p) ^ crc;
		crc = sw_table[7][v & 0xff] ^ sw_table[6][(v >> 8) & 0xff] ^
		      sw_table[5][(v >> 16) & 0xff] ^ sw_table[4][(v >> 24) & 0xff] ^
		      sw_table[3][(v >> 32) & 0xff] ^ sw_table[2][(v >> 40) & 0xff] ^
		      sw_table[1][(v >> 48) & 0xff] ^ sw_table[0][v >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = sw_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
#define HW __attribute__((target("sse4.2")))

HW static inline uint64_t hw64(uint64_t crc, uint64_t v)
{
	return __builtin_ia32_crc32di(crc, v);
}

HW static inline uint32_t hw8(uint32_t crc, uint8_t v)
{
	return __builtin_ia32_crc32qi(crc, v);
}

/* One stream per block, three blocks at a time; `dst` may be NULL. */
#define HW_BLOCKS(BLK, TAB)						\
	while (len >= 3 * (size_t)(BLK)) {				\
		uint64_t c1 = 0, c2 = 0;				\
		const uint8_t *end = src + (BLK);			\
		if (dst) {						\
			do {						\
				uint64_t a = load64(src);		\
				uint64_t b = load64(src + (BLK));	\
				uint64_t d = load64(src + 2 * (BLK));	\
				c0 = hw64(c0, a);			\
				c1 = hw64(c1, b);			\
				c2 = hw64(c2, d);			\
				store64(dst, a);			\
				store64(dst + (BLK), b);		\
				store64(dst + 2 * (BLK), d);		\
				src += 8;				\
				dst += 8;				\
			} while (src < end);				\
			dst += 2 * (BLK);				\
		} else {						\
			do {						\
				c0 = hw64(c0, load64(src));		\
				c1 = hw64(c1, load64(src + (BLK)));	\
				c2 = hw64(c2, load64(src + 2 * (BLK)));	\
				src += 8;				\
			} while (src < end);				\
		}							\
		c0 = shift(TAB, (uint32_t)c0) ^ (uint32_t)c1;		\
		c0 = shift(TAB, (uint32_t)c0) ^ (uint32_t)c2;		\
		src += 2 * (BLK);					\
		len -= 3 * (size_t)(BLK);				\
	}

HW static uint32_t hw_update(uint32_t crc, uint8_t *dst, const uint8_t *src, size_t len)
{
	uint64_t c0 = crc;
	while (len && ((uintptr_t)src & 7)) {
		if (dst)
			*dst++ = *src;
		c0 = hw8((uint32_t)c0, *src++);
		len--;
	}
	/* Copying runs fastest with short blocks (measured: long blocks make
	 * the three load/store streams fight), checksumming with long ones. */
	if (!dst) {
		HW_BLOCKS(LONG_BLK, long_shift)
	}
	HW_BLOCKS(SHORT_BLK, short_shift)
	while (len >= 8) {
		uint64_t v = load64(src);
		c0 = hw64(c0, v);
		if (dst) {
			store64(dst, v);
			dst += 8;
		}
		src += 8;
		len -= 8;
	}
	while (len--) {
		if (dst)
			*dst++ = *src;
		c0 = hw8((uint32_t)c0, *src++);
	}
	return (uint32_t)c0;
}
#endif

uint32_t crc32c__update(uint32_t crc, const void *buf, size_t len)
{
	ensure_init();
	crc = ~crc;
#if defined(__x86_64__)
	if (have_hw)
		return ~hw_update(crc, NULL, buf, len);
#endif
	return ~sw_update(crc, buf, len);
}

uint32_t crc32c__copy(uint32_t crc, void *dst, const void *src, size_t len)
{
	ensure_init();
	crc = ~crc;
#if defined(__x86_64__)
	if (have_hw)
		return ~hw_update(crc, dst, src, len);
#endif
	memcpy(dst, src, len);
	return ~sw_update(crc, src, len);
}

uint32_t crc32c__update_sw(uint32_t crc, const void *buf, size_t len)
{
	ensure_init();
	return ~sw_update(~crc, buf, len);
}

bool crc32c__hw_available(void)
{
	ensure_init();
	return have_hw;
}
