/* The Linux guest's workload (static, run by the L2 init of tests/nested):
 * heartbeats with CLOCK_MONOTONIC and CLOCK_REALTIME, memory dirtying that
 * verifies its own contents round after round, optionally a disk pattern and
 * a clock watcher, and a verdict line.
 *
 *   workload [beats=N] [interval_ms=MS] [dirty_mib=MIB]
 *            [disk=DEV disk_block=B disk_ahead=fail|report] [watch_ms=MS] [trace=1]
 *
 * Prints `WL: HB seq=N mono=S.NNNNNNNNN real=S.NNNNNNNNN` once per interval,
 * then `WL: VERDICT PASS ...` or `WL: VERDICT FAIL reason`; exits 0 or 1.
 *
 * disk=DEV: at heartbeat N, 4 KiB block B+N of DEV (O_DIRECT) is read (it must
 * be all zero: never written), written with block N's pattern (128 lines
 * "WL-DISK seq=NNNNNN line=LLL", each padded to 31 characters and a newline),
 * flushed (fdatasync), read back and compared; after the last heartbeat every
 * block is read and compared again. A block that already holds its own
 * pattern before it is written was written by a later run of the same
 * guest (a checkpoint restored after the original ran on): with
 * disk_ahead=fail (the default) that fails, with disk_ahead=report it is
 * counted (`WL: DISK ahead seq=N` and ahead=N in the verdict).
 *
 * watch_ms=MS: a thread sleeps MS at a time and measures how much more than
 * MS CLOCK_MONOTONIC advanced across each sleep (the "excess": a clock jump,
 * or the guest not running, e.g. its vCPUs paused by a migration), prints
 * `WL: JUMP mono=... real=... excess_ms=...` for each excess over 100 ms, and
 * fails the verdict if CLOCK_MONOTONIC or CLOCK_REALTIME ever goes backwards
 * between two of its readings. The verdict reports max_excess_ms (and when).
 *
 * trace=1: a `WL: T seq=N STEP` line before each step of a round. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define BLOCK 4096u

static unsigned long arg(int argc, char **argv, const char *name, unsigned long def)
{
	size_t n = strlen(name);
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], name, n) && argv[i][n] == '=')
			return strtoul(argv[i] + n + 1, NULL, 0);
	return def;
}

static const char *sarg(int argc, char **argv, const char *name, const char *def)
{
	size_t n = strlen(name);
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], name, n) && argv[i][n] == '=')
			return argv[i] + n + 1;
	return def;
}

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned long ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0)
		;
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

/* ------------------------------------------------------------ clock watcher */

static struct {
	unsigned long ms;
	atomic_int stop;
	/* Written by the watcher only; read by main after pthread_join. */
	double max_excess, max_excess_at, real_back, mono_back;
	unsigned long samples;
} W;

static void *watcher(void *unused)
{
	(void)unused;
	double pm = now(CLOCK_MONOTONIC), pr = now(CLOCK_REALTIME);
	while (!atomic_load(&W.stop)) {
		sleep_ms(W.ms);
		double m = now(CLOCK_MONOTONIC), r = now(CLOCK_REALTIME);
		double excess = (m - pm) - (double)W.ms / 1000;
		W.samples++;
		if (m < pm && pm - m > W.mono_back)
			W.mono_back = pm - m;
		if (r < pr && pr - r > W.real_back)
			W.real_back = pr - r;
		if (excess > W.max_excess) {
			W.max_excess = excess;
			W.max_excess_at = m;
		}
		if (excess > 0.1)
			printf("WL: JUMP mono=%.9f real=%.9f excess_ms=%.1f real_step_ms=%.1f\n", m, r,
			       excess * 1000, (r - pr) * 1000);
		pm = m;
		pr = r;
	}
	return NULL;
}

/* --------------------------------------------------------------- disk pattern */

static void disk_pattern(unsigned long seq, char *buf)
{
	char line[40];
	for (unsigned i = 0; i < BLOCK / 32; i++) {
		snprintf(line, sizeof line, "WL-DISK seq=%06lu line=%03u", seq, i);
		snprintf(buf + i * 32, 33, "%-31.31s\n", line);
	}
}

static int disk_io(int write, int fd, char *buf, unsigned long block)
{
	off_t off = (off_t)block * BLOCK;
	ssize_t n = write ? pwrite(fd, buf, BLOCK, off) : pread(fd, buf, BLOCK, off);
	return n == (ssize_t)BLOCK ? 0 : -1;
}

static int all_zero(const char *buf)
{
	for (unsigned i = 0; i < BLOCK; i++)
		if (buf[i])
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	unsigned long beats = arg(argc, argv, "beats", 5);
	unsigned long interval_ms = arg(argc, argv, "interval_ms", 1000);
	unsigned long dirty_mib = arg(argc, argv, "dirty_mib", 0);
	const char *disk = sarg(argc, argv, "disk", NULL);
	unsigned long disk_block = arg(argc, argv, "disk_block", 256);
	int ahead_ok = !strcmp(sarg(argc, argv, "disk_ahead", "fail"), "report");
	int trace = (int)arg(argc, argv, "trace", 0);
	W.ms = arg(argc, argv, "watch_ms", 0);
	size_t pages = dirty_mib * (1024 * 1024 / PAGE);
	uint64_t *mem = NULL;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pages) {
		mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			return fail("mmap of %lu MiB failed", dirty_mib);
	}
	int fd = -1;
	char *want = NULL, *got = NULL;
	if (disk) {
		fd = open(disk, O_RDWR | O_DIRECT);
		if (fd < 0)
			return fail("open %s: %s", disk, strerror(errno));
		if (posix_memalign((void **)&want, BLOCK, BLOCK) || posix_memalign((void **)&got, BLOCK, BLOCK))
			return fail("posix_memalign");
	}
	pthread_t tid;
	if (W.ms && pthread_create(&tid, NULL, watcher, NULL))
		return fail("pthread_create");
	double mono0 = now(CLOCK_MONOTONIC), last = mono0, last_real = now(CLOCK_REALTIME), max_gap = 0;
	unsigned long verified = 0, ahead = 0;
	for (unsigned long seq = 1; seq <= beats; seq++) {
		if (trace)
			printf("WL: T seq=%lu memory\n", seq);
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
		if (disk) {
			unsigned long b = disk_block + seq;
			disk_pattern(seq, want);
			if (trace)
				printf("WL: T seq=%lu disk read\n", seq);
			if (disk_io(0, fd, got, b))
				return fail("disk read of block %lu (seq %lu): %s", b, seq, strerror(errno));
			if (!all_zero(got)) {
				if (memcmp(got, want, BLOCK))
					return fail("disk block %lu (seq %lu) holds something else before it is written: %.31s",
						    b, seq, got);
				if (!ahead_ok)
					return fail("disk block %lu (seq %lu) already holds its pattern before it is written",
						    b, seq);
				ahead++;
				printf("WL: DISK ahead seq=%lu\n", seq);
			}
			if (trace)
				printf("WL: T seq=%lu disk write+flush\n", seq);
			if (disk_io(1, fd, want, b) || fdatasync(fd))
				return fail("disk write of block %lu (seq %lu): %s", b, seq, strerror(errno));
			memset(got, 0, BLOCK);
			if (disk_io(0, fd, got, b))
				return fail("disk read back of block %lu (seq %lu): %s", b, seq, strerror(errno));
			if (memcmp(got, want, BLOCK))
				return fail("disk block %lu (seq %lu) reads back wrong: %.31s", b, seq, got);
		}
		double mono = now(CLOCK_MONOTONIC), real = now(CLOCK_REALTIME);
		if (mono < last)
			return fail("CLOCK_MONOTONIC went backwards at heartbeat %lu", seq);
		if (real < last_real)
			return fail("CLOCK_REALTIME went backwards at heartbeat %lu (by %.6f s)", seq, last_real - real);
		if (mono - last > max_gap)
			max_gap = mono - last;
		last = mono;
		last_real = real;
		printf("WL: HB seq=%lu mono=%.9f real=%.9f\n", seq, mono, real);
		sleep_ms(interval_ms);
	}
	char extra[256] = "";
	size_t len = 0;
	if (disk) {
		for (unsigned long seq = 1; seq <= beats; seq++) {
			disk_pattern(seq, want);
			if (disk_io(0, fd, got, disk_block + seq))
				return fail("final disk read of block %lu: %s", disk_block + seq, strerror(errno));
			if (memcmp(got, want, BLOCK))
				return fail("final disk check: block %lu (seq %lu) holds %.31s", disk_block + seq, seq,
					    got);
		}
		len += (size_t)snprintf(extra + len, sizeof extra - len, " disk_blocks=%lu ahead=%lu", beats, ahead);
	}
	if (W.ms) {
		atomic_store(&W.stop, 1);
		pthread_join(tid, NULL);
		if (W.mono_back > 0)
			return fail("CLOCK_MONOTONIC went backwards by %.6f s (clock watcher)", W.mono_back);
		if (W.real_back > 0)
			return fail("CLOCK_REALTIME went backwards by %.6f s (clock watcher)", W.real_back);
		len += (size_t)snprintf(extra + len, sizeof extra - len,
					" max_excess_ms=%.1f max_excess_at=%.3f watch_samples=%lu", W.max_excess * 1000,
					W.max_excess_at, W.samples);
	}
	printf("WL: VERDICT PASS beats=%lu pages_verified=%lu max_gap=%.3f elapsed=%.3f%s\n", beats, verified,
	       max_gap, now(CLOCK_MONOTONIC) - mono0, extra);
	return 0;
}
