/*
 * mem_work.c: the memory self-check that live migration must not break.
 *
 * Round r writes pattern(page, r) into every page of the worker's region;
 * before writing, the page must hold pattern(page, r - 1) exactly (round 0:
 * zero, never written).  A page the migration lost, sent stale or sent to
 * the wrong place shows up as the first mismatching qword.
 */
#include "arch.h"
#include "clock.h"
#include "lib.h"
#include "mem_work.h"

#define QWORDS		(PAGE_SIZE / 8)
#define REGION_FLOOR	(32 * MIB)
#define REGION_CEIL	(4 * GIB)	/* the identity map's end */
#define ROUND_MUL	0x9E3779B97F4A7C15ULL
#define INDEX_MUL	0xD6E8FEB86659FD93ULL
#define SALT		0x564D484F50000000ULL	/* "VMHOP" */
#define BURST_MS	20
#define TSC_EVERY	16	/* pages between rdtsc reads */

/*
 * qword i of pattern(page, round) is base ^ i * INDEX_MUL; round 0 is all
 * zero.  Rounds differ in every qword (ROUND_MUL is odd), pages by their
 * address, and no round >= 1 is all zero (qwords 0 and 1 differ).
 */
static uint64_t pattern_base(uint64_t gpa, uint64_t round)
{
	return round ? gpa ^ SALT ^ (round * ROUND_MUL) : 0;
}

static uint64_t pattern_step(uint64_t round)
{
	return round ? INDEX_MUL : 0;
}

static void write_page(uint64_t *p, uint64_t base, uint64_t step)
{
	for (unsigned i = 0; i < QWORDS; i++)
		p[i] = base ^ (i * step);
}

static bool page_ok(const uint64_t *p, uint64_t base, uint64_t step)
{
	uint64_t diff = 0;

	for (unsigned i = 0; i < QWORDS; i++)
		diff |= p[i] ^ (base ^ (i * step));
	return !diff;
}

static int report(struct mem_worker *w, uint64_t idx, uint64_t round)
{
	uint64_t gpa = w->base + idx * PAGE_SIZE;
	const uint64_t *p = (const uint64_t *)(uintptr_t)gpa;
	uint64_t base = pattern_base(gpa, round), step = pattern_step(round);
	unsigned i = 0;

	while (i < QWORDS - 1 && p[i] == (base ^ (i * step)))
		i++;
	fmt__snprintf(w->fail, sizeof(w->fail),
		      "mem cpu=%u page=0x%llx round=%llu qword=%u expected=0x%016llx got=0x%016llx",
		      w->cpu, (unsigned long long)gpa, (unsigned long long)round, i,
		      (unsigned long long)(base ^ (i * step)), (unsigned long long)p[i]);
	return -1;
}

int mem_work__plan(struct mem_worker *w, unsigned ncpus, const struct boot_info *bi,
		   uint64_t bytes, uint64_t rate, bool verify, char *err, unsigned errlen)
{
	uint64_t per_cpu = bytes / ncpus / PAGE_SIZE;
	uint64_t avail = 0;
	unsigned r = 0;
	uint64_t cursor = 0;

	if (bytes && !per_cpu)
		per_cpu = 1;
	for (unsigned c = 0; c < ncpus; c++) {
		memset(&w[c], 0, sizeof(w[c]));
		w[c].cpu = c;
		w[c].round = 1;
		w[c].verify = verify;
		w[c].npages = per_cpu;
		if (rate) {
			uint64_t cpu_rate = rate / ncpus ? rate / ncpus : 1;

			w[c].cost = (clock_khz * 1000 * PAGE_SIZE << 16) / cpu_rate;
			w[c].burst = clock__ms_to_ticks(BURST_MS);
		}
		if (!per_cpu)
			continue;
		/* First fit, in address order, one contiguous range per CPU. */
		for (; r < bi->nram; r++, cursor = 0) {
			uint64_t s = bi->ram[r].start, e = bi->ram[r].end;

			s = s < REGION_FLOOR ? REGION_FLOOR : (s + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
			e = (e > REGION_CEIL ? REGION_CEIL : e) & ~(PAGE_SIZE - 1);
			if (cursor > s)
				s = cursor;
			if (s < e && (e - s) / PAGE_SIZE >= per_cpu) {
				w[c].base = s;
				cursor = s + per_cpu * PAGE_SIZE;
				break;
			}
		}
		if (r == bi->nram) {
			for (unsigned i = 0; i < bi->nram; i++) {
				uint64_t s = bi->ram[i].start < REGION_FLOOR ? REGION_FLOOR : bi->ram[i].start;
				uint64_t e = bi->ram[i].end > REGION_CEIL ? REGION_CEIL : bi->ram[i].end;

				if (s < e)
					avail += e - s;
			}
			fmt__snprintf(err, errlen,
				      "mem: dirty=%llu bytes (%u cpus x %llu pages) does not fit in RAM between 32 MiB and 4 GiB (%llu MiB there)",
				      (unsigned long long)bytes, ncpus, (unsigned long long)per_cpu,
				      (unsigned long long)(avail / MIB));
			return -1;
		}
	}
	return 0;
}

/* Rate limit: a page may be written once the TSC reaches next_tsc. */
static bool may_write(struct mem_worker *w, uint64_t now)
{
	uint64_t frac;

	if (!w->cost)
		return true;
	if (!w->next_tsc || now > w->next_tsc + w->burst)
		w->next_tsc = now > w->burst ? now - w->burst : 0;	/* no catch-up burst after a pause */
	if (now < w->next_tsc)
		return false;
	frac = w->next_frac + (w->cost & 0xFFFF);
	w->next_tsc += (w->cost >> 16) + (frac >> 16);
	w->next_frac = (uint32_t)(frac & 0xFFFF);
	return true;
}

long mem_work__step(struct mem_worker *w, uint64_t until)
{
	long done = 0;
	uint64_t now = rdtsc();

	if (!w->npages || (w->passes && w->round > w->passes))
		return 0;
	for (;;) {
		uint64_t gpa = w->base + w->pos * PAGE_SIZE;
		uint64_t *p = (uint64_t *)(uintptr_t)gpa;

		if (done % TSC_EVERY == 0 && done) {
			now = rdtsc();
			if (now >= until)
				break;
		}
		if (!may_write(w, now)) {
			now = rdtsc();
			if (!may_write(w, now))
				break;
		}
		if (w->verify) {
			if (!page_ok(p, pattern_base(gpa, w->round - 1), pattern_step(w->round - 1)))
				return report(w, w->pos, w->round - 1);
			w->pages_verified++;
		}
		write_page(p, pattern_base(gpa, w->round), pattern_step(w->round));
		done++;
		if (++w->pos == w->npages) {
			w->pos = 0;
			w->round++;
			if (w->passes && w->round > w->passes)
				break;	/* done: the memory stays as it is */
		}
	}
	return done;
}

int mem_work__finish(struct mem_worker *w)
{
	if (!w->verify)
		return 0;
	for (uint64_t i = 0; i < w->npages; i++) {
		uint64_t gpa = w->base + i * PAGE_SIZE;
		uint64_t round = i < w->pos ? w->round : w->round - 1;

		if (!page_ok((const uint64_t *)(uintptr_t)gpa, pattern_base(gpa, round),
			     pattern_step(round)))
			return report(w, i, round);
		w->pages_verified++;
	}
	return 0;
}

uint64_t mem_work__rounds(const struct mem_worker *w)
{
	return w->round - 1;
}
