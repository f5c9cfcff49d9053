/*
 * main.c: the ring-3 program every CPU enters from entry.S.
 *
 * The BSP (APIC ID 0) reads the boot information and parameters, gives each
 * CPU its memory region, then loops: heartbeat and shutdown poll, one step
 * on each disk, a slice of its own memory work.  APs run their memory
 * work until told to stop (under multiboot, APs run only if smp=N asks the
 * BSP to start them).  At the end every CPU verifies its memory once
 * more and the BSP prints the verdict and powers off.
 */
#include <stdbool.h>
#include <stdint.h>

#include "arch.h"
#include "boot.h"
#include "clock.h"
#include "cmdline.h"
#include "disk_work.h"
#include "layout.h"
#include "lib.h"
#include "mem_work.h"
#include "power.h"
#include "serial.h"
#include "smp.h"
#include "trap.h"

#define START_TIMEOUT_MS	10000
#define FINISH_TIMEOUT_MS	60000
#define BSP_SLICE_US		1000	/* memory work between heartbeat/disk checks */
#define BSP_DISK_SLICE_US	100	/* the same while the disk workload is active */
#define AP_SLICE_MS		10

static struct boot_info boot;
static struct params params;
static struct mem_worker workers[MAX_CPUS];
static struct disk_work disks[MAX_DISKS];
static unsigned ncpus, ndisks;

/* Shared between CPUs, always through __atomic builtins. */
static int arrived[MAX_CPUS];
static int finished[MAX_CPUS];
static int go;
static int stop;
static int failed_cpu = -1;	/* first worker that found a mismatch */

void guest_main(unsigned cpu, uint32_t info, unsigned kind) __attribute__((noreturn));

static void __attribute__((noreturn)) park(void)
{
	for (;;)
		cpu_relax();
}

static void __attribute__((noreturn)) verdict_fail(const char *reason)
{
	serial__printf("VERDICT FAIL %s", reason);
	power__off();
}

static void record_failure(unsigned cpu)
{
	int none = -1;

	__atomic_compare_exchange_n(&failed_cpu, &none, (int)cpu, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE);
}

static void __attribute__((noreturn)) ap_main(unsigned cpu)
{
	struct mem_worker *w = &workers[cpu];
	bool ok = true;

	__atomic_store_n(&arrived[cpu], 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		cpu_relax();
	if (cpu >= ncpus)
		park();		/* not in the MP table: not ours to use */
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		long n = mem_work__step(w, rdtsc() + clock__ms_to_ticks(AP_SLICE_MS));

		if (n < 0) {
			ok = false;
			record_failure(cpu);
			break;
		}
		if (n == 0)
			cpu_relax();
	}
	if (ok && mem_work__finish(w))
		record_failure(cpu);
	__atomic_store_n(&finished[cpu], 1, __ATOMIC_RELEASE);
	park();
}

static void wait_for_cpus(int *flags, uint64_t ms, const char *what)
{
	for (unsigned c = 1; c < ncpus; c++) {
		struct timeout t;

		timeout__start(&t, ms);
		while (!__atomic_load_n(&flags[c], __ATOMIC_ACQUIRE)) {
			if (timeout__expired(&t)) {
				char msg[64];

				fmt__snprintf(msg, sizeof(msg), "cpu %u did not %s", c, what);
				verdict_fail(msg);
			}
			cpu_relax();
		}
	}
}

static void setup(uint32_t info, unsigned kind)
{
	char err[200], cmdline_err[200], extra[64] = "";
	const char *clock_src;
	int cmdline_bad;

	if (boot__parse(&boot, kind, info, err, sizeof(err)))
		verdict_fail(err);
	cmdline_bad = cmdline__parse(boot.cmdline, &params, cmdline_err, sizeof(cmdline_err));
	ncpus = boot.ncpus;
	if (!cmdline_bad && kind == BOOT_MULTIBOOT)
		ncpus = (unsigned)params.smp;
	clock_src = clock__init();
	serial__printf("VMHOP-GUEST start cpus=%u mem_mib=%llu tsc_khz=%llu boot=%s", ncpus,
		       (unsigned long long)(boot.ram_bytes / MIB), (unsigned long long)clock_khz,
		       boot.kind_name);
	if (cmdline_bad)
		verdict_fail(cmdline_err);
	/* disks= and disk_rate= only when given: the line stays as it was without them. */
	if (params.disks)
		fmt__snprintf(extra, sizeof(extra), " disks=%llu", (unsigned long long)params.disks);
	if (params.disk_rate)
		fmt__snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " disk_rate=%llu",
			      (unsigned long long)params.disk_rate);
	serial__printf("CONFIG seconds=%llu dirty=%llu rate=%llu passes=%llu verify=%u disk=%s disk_mib=%llu disk_loop=%u hb=%llu smp=%llu clock=%s%s",
		       (unsigned long long)params.seconds, (unsigned long long)params.dirty,
		       (unsigned long long)params.rate, (unsigned long long)params.passes,
		       params.verify ? 1u : 0u,
		       cmdline__disk_name(params.disk), (unsigned long long)params.disk_mib,
		       params.disk_loop ? 1u : 0u, (unsigned long long)params.hb_ms,
		       (unsigned long long)params.smp, clock_src, extra);
	if (mem_work__plan(workers, ncpus, &boot, params.dirty, params.rate, params.verify, err,
			   sizeof(err)))
		verdict_fail(err);
	for (unsigned c = 0; c < ncpus; c++)
		workers[c].passes = params.passes;
	if (workers[0].npages)
		serial__printf("MEM pages_per_cpu=%llu region=0x%llx-0x%llx",
			       (unsigned long long)workers[0].npages,
			       (unsigned long long)workers[0].base,
			       (unsigned long long)(workers[ncpus - 1].base +
						    workers[ncpus - 1].npages * PAGE_SIZE));
	else
		serial__printf("MEM none");

	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	if (kind == BOOT_MULTIBOOT && ncpus > 1)
		smp__start_aps(ncpus);
	wait_for_cpus(arrived, START_TIMEOUT_MS, "start");

	ndisks = disk_work__count(&params);
	for (unsigned i = 0; i < ndisks; i++)
		if (disk_work__start(&disks[i], &params, i))
			verdict_fail(disks[i].fail);
}

/* One step on each disk: 1 if any did something; a failure ends the run here. */
static int disks_step(bool *active)
{
	int any = 0;

	*active = false;
	for (unsigned i = 0; i < ndisks; i++) {
		int d = disk_work__step(&disks[i]);

		if (d < 0)
			verdict_fail(disks[i].fail);
		any |= d;
		*active |= disk_work__active(&disks[i]);
	}
	return any;
}

/* The run: returns why it ended. */
static const char *run(uint64_t t_boot)
{
	const uint64_t period = clock__ms_to_ticks(params.hb_ms);
	const uint64_t t_start = rdtsc();
	const uint64_t t_end = params.seconds ? t_start + clock__ms_to_ticks(params.seconds * 1000) : 0;
	uint64_t hb_next = t_start, seq = 0;

	for (;;) {
		uint64_t now = rdtsc(), until;
		bool disk_active;
		long n;
		int d;

		if (now >= hb_next) {
			serial__printf("HB seq=%llu tsc=%llu t_ms=%llu", (unsigned long long)++seq,
				       (unsigned long long)now,
				       (unsigned long long)clock__ticks_to_ms(now - t_boot));
			/* On the period grid; after a pause (VM stopped, migrated) one beat and re-arm. */
			hb_next += period;
			if (hb_next <= now)
				hb_next = now + period;
			if (power__shutdown_requested())
				return "shutdown";
		}
		if (t_end && now >= t_end)
			return "seconds";
		if (__atomic_load_n(&failed_cpu, __ATOMIC_ACQUIRE) >= 0)
			return "failure";

		d = disks_step(&disk_active);
		until = now + clock__us_to_ticks(disk_active ? BSP_DISK_SLICE_US : BSP_SLICE_US);
		if (until > hb_next)
			until = hb_next;
		n = mem_work__step(&workers[0], until);
		if (n < 0)
			record_failure(0);
		if (n == 0 && d == 0)
			cpu_relax();
	}
}

static void __attribute__((noreturn)) finish(const char *reason, uint64_t t_boot)
{
	uint64_t rounds = UINT64_MAX, verified = 0;
	char more[16] = "";
	int bad;

	serial__printf("FINISH reason=%s t_ms=%llu", reason,
		       (unsigned long long)clock__ticks_to_ms(rdtsc() - t_boot));
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	if (!workers[0].fail[0] && mem_work__finish(&workers[0]))
		record_failure(0);
	wait_for_cpus(finished, FINISH_TIMEOUT_MS, "finish");

	bad = __atomic_load_n(&failed_cpu, __ATOMIC_ACQUIRE);
	if (bad >= 0)
		verdict_fail(workers[bad].fail);
	for (unsigned i = 0; i < ndisks; i++)
		if (disk_work__finish(&disks[i]))
			verdict_fail(disks[i].fail);

	for (unsigned c = 0; c < ncpus; c++) {
		uint64_t r = mem_work__rounds(&workers[c]);

		if (r < rounds)
			rounds = r;
		verified += workers[c].pages_verified;
	}
	if (!params.dirty)
		rounds = 0;
	/* Every disk ran the same mode and passed: the first one's verdict speaks for all. */
	if (ndisks > 1)
		fmt__snprintf(more, sizeof(more), " disks=%u", ndisks);
	serial__printf("VERDICT PASS cpus=%u rounds=%llu pages_verified=%llu disk=%s%s", ncpus,
		       (unsigned long long)rounds, (unsigned long long)verified, disks[0].verdict,
		       more);
	power__off();
}

void guest_main(unsigned cpu, uint32_t info, unsigned kind)
{
	uint64_t t_boot;

	if (cpu != 0)
		ap_main(cpu);
	t_boot = rdtsc();
	trap__init();
	serial__init();
	power__init();
	setup(info, kind);
	finish(run(t_boot), t_boot);
}
