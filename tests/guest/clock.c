/* clock.c: TSC frequency from CPUID leaf 0x40000010, else calibrated on PIT channel 2. */
#include "arch.h"
#include "clock.h"

#define PIT_HZ		1193182ULL
#define PIT_CH2		0x42
#define PIT_CMD		0x43
#define PORT_61		0x61	/* bit 0: channel 2 gate, bit 1: speaker, bit 5: OUT2 */
#define CALIB_MS	30
#define PIT_READS	5
#define GAP_CAP_MS	100

uint64_t clock_khz;

static uint64_t tsc_khz_from_cpuid(void)
{
	uint32_t r[4];

	cpuid(1, 0, r);
	if (!(r[2] & (1u << 31)))	/* no hypervisor */
		return 0;
	cpuid(0x40000000, 0, r);
	if (r[0] < 0x40000010)
		return 0;
	cpuid(0x40000010, 0, r);
	return r[0];
}

static uint16_t pit_ch2_count(void)
{
	uint8_t lo, hi;

	outb(PIT_CMD, 0x80);	/* latch channel 2 */
	lo = inb(PIT_CH2);
	hi = inb(PIT_CH2);
	return (uint16_t)(lo | hi << 8);
}

struct pit_sample {
	uint64_t tsc;		/* TSC midway through the read */
	uint64_t width;		/* TSC ticks the read took */
	uint16_t count;
};

/*
 * Each port access is a VM exit of several microseconds, with jitter: read
 * the counter a few times and keep the read that took least TSC time, whose
 * midpoint is closest to the instant the count was latched.
 */
static struct pit_sample pit_best_sample(void)
{
	struct pit_sample best = { .width = UINT64_MAX };

	for (int i = 0; i < PIT_READS; i++) {
		uint64_t t0 = rdtsc();
		uint16_t c = pit_ch2_count();
		uint64_t t1 = rdtsc();

		if (t1 - t0 < best.width)
			best = (struct pit_sample){ t0 + (t1 - t0) / 2, t1 - t0, c };
	}
	return best;
}

/* Channel 2 counts down from 0xFFFF (mode 0, 55 ms); time CALIB_MS of it. */
static uint64_t tsc_khz_from_pit(void)
{
	const uint32_t span = (uint32_t)(PIT_HZ * CALIB_MS / 1000);
	struct pit_sample a, b;
	uint32_t polls = 0;

	outb(PORT_61, (uint8_t)((inb(PORT_61) & ~0x02) | 0x01));	/* gate on, speaker off */
	outb(PIT_CMD, 0xB0);	/* channel 2, lobyte/hibyte, mode 0, binary */
	outb(PIT_CH2, 0xFF);
	outb(PIT_CH2, 0xFF);
	a = pit_best_sample();
	do
		b = pit_best_sample();
	while ((uint16_t)(a.count - b.count) < span && ++polls < 100000);
	if (a.count <= b.count || b.tsc <= a.tsc)
		return 0;
	return (b.tsc - a.tsc) * PIT_HZ / (uint64_t)(a.count - b.count) / 1000;
}

const char *clock__init(void)
{
	clock_khz = tsc_khz_from_cpuid();
	if (clock_khz)
		return "cpuid";
	clock_khz = tsc_khz_from_pit();
	if (!clock_khz)
		clock_khz = 1000000;	/* cannot happen with a PIT; keep arithmetic sane */
	return "pit";
}

uint64_t clock__ms_to_ticks(uint64_t ms)
{
	return ms * clock_khz;
}

uint64_t clock__us_to_ticks(uint64_t us)
{
	return us * clock_khz / 1000;
}

uint64_t clock__ticks_to_ms(uint64_t ticks)
{
	return ticks / clock_khz;
}

void timeout__start(struct timeout *t, uint64_t ms)
{
	t->last = rdtsc();
	t->left = clock__ms_to_ticks(ms);
}

bool timeout__expired(struct timeout *t)
{
	uint64_t now = rdtsc(), gap = now - t->last, cap = clock__ms_to_ticks(GAP_CAP_MS);

	t->last = now;
	if (gap > cap)
		gap = cap;
	if (gap >= t->left)
		return true;
	t->left -= gap;
	return false;
}
