/* The Linux guest's workload (static, run by the L2 init of tests/nested):
 * heartbeats with CLOCK_MONOTONIC and CLOCK_REALTIME, memory dirtying that
 * verifies its own contents round after round, and a verdict line.
 *
 *   workload [beats=N] [interval_ms=MS] [dirty_mib=MIB]
 *
 * Prints `WL: HB seq=N mono=S.NNNNNNNNN real=S.NNNNNNNNN` once per interval,
 * then `WL: VERDICT PASS ...` or `WL: VERDICT FAIL reason`; exits 0 or 1. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096u

static unsigned long arg(int argc, char **argv, const char *name, unsigned long def)
{
	size_t n = strlen(name);
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], name, n) && argv[i][n] == '=')
			return strtoul(argv[i] + n + 1, NULL, 0);
	return def;
}

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("WL: VERDICT FAIL ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
	return 1;
}

/* Every 8-byte word of page p in round r holds stamp(p, r, word). */
static uint64_t stamp(uint64_t page, uint64_t round, uint64_t word)
{
	return (page << 32) ^ (round << 16) ^ word ^ 0x5a5a000000000000ull;
}

int main(int argc, char **argv)
{
	unsigned long beats = arg(argc, argv, "beats", 5);
	unsigned long interval_ms = arg(argc, argv, "interval_ms", 1000);
	unsigned long dirty_mib = arg(argc, argv, "dirty_mib", 0);
	size_t pages = dirty_mib * (1024 * 1024 / PAGE);
	uint64_t *mem = NULL;
	if (pages) {
		mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			return fail("mmap of %lu MiB failed", dirty_mib);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	double mono0 = now(CLOCK_MONOTONIC), last = mono0, max_gap = 0;
	unsigned long verified = 0;
	for (unsigned long seq = 1; seq <= beats; seq++) {
		/* Check the previous round, then write this one. */
		for (size_t p = 0; p < pages; p++) {
			uint64_t *w = mem + p * (PAGE / 8);
			if (seq > 1)
				for (uint64_t i = 0; i < PAGE / 8; i++)
					if (w[i] != stamp(p, seq - 1, i))
						return fail("page %lu word changed behind our back (round %lu)",
							    (unsigned long)p, seq - 1);
			for (uint64_t i = 0; i < PAGE / 8; i++)
				w[i] = stamp(p, seq, i);
		}
		if (seq > 1)
			verified += pages;
		double mono = now(CLOCK_MONOTONIC), real = now(CLOCK_REALTIME);
		if (mono < last)
			return fail("CLOCK_MONOTONIC went backwards at heartbeat %lu", seq);
		if (mono - last > max_gap)
			max_gap = mono - last;
		last = mono;
		printf("WL: HB seq=%lu mono=%.9f real=%.9f\n", seq, mono, real);
		struct timespec ts = { (time_t)(interval_ms / 1000), (long)(interval_ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	printf("WL: VERDICT PASS beats=%lu pages_verified=%lu max_gap=%.3f elapsed=%.3f\n", beats,
	       verified, max_gap, now(CLOCK_MONOTONIC) - mono0);
	return 0;
}
