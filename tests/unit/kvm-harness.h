/* A KVM-selftests-style harness: guest code is a plain C function of the test
 * binary, run in a tiny VM on one vCPU at CPL3 in long mode.
 *
 * How: the harness copies the test binary's loaded segments (every PT_LOAD
 * of the main program) into guest memory and maps each page at the same
 * virtual address it has in this process, so a function pointer of the host
 * is a valid guest entry point and string literals (file names in asserts)
 * read the same on both sides. PIE or not does not matter: the copy is taken
 * from memory, after relocation. The guest gets a private copy of .data and
 * .bss as they were when the VM was created; host and guest share only guest
 * RAM and what kvm_harness__alloc_shared() returns.
 *
 * Guest physical memory:
 *   RAM                    test RAM: a guest_mem (memfd) with vmhop's own
 *                          layout (slot 0 from 0 up to 3 GiB, slot 1 from
 *                          4 GiB for the rest), mapped in the guest at
 *                          KVM_HARNESS_RAM_GVA + gpa. Dirty-log tests look at
 *                          these slots only.
 *   KVM_HARNESS_SYS_GPA..  in the 32-bit hole (no devices here), the
 *                          harness's own slot, never logged: GDT, TSS
 *                          with an all-zero I/O bitmap, page tables, the
 *                          binary's copy, the guest stack, shared mailboxes.
 *                          Identity-mapped (guest virtual == guest physical).
 *
 * Guest code must not be instrumented (no sanitizer, no stack protector: it
 * cannot reach the sanitizer runtime, libc or TLS) and must not call libc.
 * Put it in a tests/unit/test-kvm-*-guest.c file: tests/unit/harness.mk
 * compiles those with KVM_GUEST_CFLAGS. Guest functions reach the host only
 * through the GUEST_* macros below (an `out` to KVM_HARNESS_UCALL_PORT with
 * RDI pointing at a struct ucall on the guest stack). */
#ifndef TESTS_UNIT_KVM_HARNESS_H
#define TESTS_UNIT_KVM_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

/* ---- shared by guest and host ----------------------------------------- */

#define KVM_HARNESS_UCALL_PORT	0x1000
#define KVM_HARNESS_SYS_GPA	0xC0000000ULL	/* LAYOUT_LOW_RAM_END: never RAM */
#define KVM_HARNESS_SYS_MAX	0x3EC00000ULL	/* up to LAYOUT_PCI_MMIO_END */
#define KVM_HARNESS_SYS_SLOT	8
#define KVM_HARNESS_RAM_GVA	0x100000000000ULL	/* 16 TiB: clear of the binary */
#define KVM_HARNESS_RAM_MAX	(4ULL << 30)

enum ucall_type {
	UCALL_NONE,
	UCALL_SYNC,	/* args[0]: the value of GUEST_SYNC() */
	UCALL_ASSERT,	/* expr, file, line; args[0..1] for GUEST_ASSERT_EQ */
	UCALL_DONE,	/* GUEST_DONE() or the guest function returned */
};

struct ucall {
	uint64_t type;
	uint64_t args[2];
	uint64_t line;
	const char *expr;	/* string literals of the binary, valid on the host */
	const char *file;
	uint64_t has_values;	/* args hold the two sides of GUEST_ASSERT_EQ */
};

/* Always inlined, so that it is compiled with the guest file's flags. */
static inline __attribute__((always_inline)) void
guest_ucall(uint64_t type, uint64_t a0, uint64_t a1, uint64_t has_values,
	    const char *expr, const char *file, uint64_t line)
{
	struct ucall uc = {
		.type = type, .args = { a0, a1 }, .line = line,
		.expr = expr, .file = file, .has_values = has_values,
	};
	/* "memory": the host reads uc, and may change memory the guest reads
	 * after the sync, so nothing may be cached across the exit. */
	__asm__ volatile("outb %%al, %%dx"
			 : : "a"(0), "d"((uint16_t)KVM_HARNESS_UCALL_PORT), "D"(&uc) : "memory");
}

#define GUEST_SYNC(v) guest_ucall(UCALL_SYNC, (uint64_t)(v), 0, 0, NULL, __FILE__, __LINE__)
#define GUEST_DONE() guest_ucall(UCALL_DONE, 0, 0, 0, NULL, __FILE__, __LINE__)
/* The host never resumes a guest after a failed assert; ud2 makes sure. */
#define GUEST_ASSERT(cond) do { \
	if (!(cond)) { \
		guest_ucall(UCALL_ASSERT, 0, 0, 0, #cond, __FILE__, __LINE__); \
		__builtin_trap(); \
	} \
} while (0)
#define GUEST_ASSERT_EQ(a, b) do { \
	uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b); \
	if (a_ != b_) { \
		guest_ucall(UCALL_ASSERT, a_, b_, 1, #a " == " #b, __FILE__, __LINE__); \
		__builtin_trap(); \
	} \
} while (0)

/* ---- guest entry points and mailboxes of the test-kvm-* programs -------- */

/* test-kvm-harness-guest.c */
void guest_port_io(uint64_t unused0, uint64_t unused1);
void guest_memory(uint64_t buf_gva, uint64_t words);
void guest_assert_fails(uint64_t unused0, uint64_t unused1);
void guest_returns(uint64_t a, uint64_t b);
void guest_faults(uint64_t bad_gva, uint64_t unused1);
void guest_spins(uint64_t unused0, uint64_t unused1);
/* The value of word i of guest_memory()'s pattern (`seed` 1: guest writes,
 * 2: host writes). Plain code, so the host calls it too. */
uint64_t guest_pattern(uint64_t seed, uint64_t i);

/* test-kvm-dirty-log-guest.c: the host fills the plan, the guest writes
 * `iteration` at pages[i] * 4096 + offsets[i] of RAM for every i < nr_writes,
 * reads every page of reads[], then GUEST_SYNC(iteration). iteration 0 ends. */
#define DIRTY_PLAN_MAX_WRITES 512
#define DIRTY_PLAN_MAX_READS 64
struct dirty_plan {
	uint64_t iteration;
	uint64_t nr_writes;
	uint64_t nr_reads;
	uint64_t pages[DIRTY_PLAN_MAX_WRITES];
	uint64_t offsets[DIRTY_PLAN_MAX_WRITES];
	uint64_t reads[DIRTY_PLAN_MAX_READS];
};
void guest_dirty_writer(uint64_t plan_gva, uint64_t ram_gva);

/* ---- host side --------------------------------------------------------- */

#include <linux/kvm.h>
#include <stddef.h>

#include "vmhop/err.h"
#include "vmhop/guest-mem.h"

struct kvm_harness_range {
	uint64_t start, end;	/* virtual addresses of a copied image range */
};

struct kvm_harness {
	int kvm_fd;
	int vm_fd;
	int vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	struct guest_mem mem;		/* test RAM */
	uint8_t *sys;			/* the harness's slot */
	uint64_t sys_size;
	uint64_t sys_used;		/* bump allocator, bytes */
	uint64_t pml4;			/* guest-physical */
	uint64_t stack_top;		/* guest-virtual == guest-physical */
	struct kvm_harness_range image[16];
	unsigned nr_image;
	/* Per kvm_harness__run(), 0: none. Enforced with ITIMER_REAL: the
	 * harness owns SIGALRM (Check's own timer lives in its parent). */
	unsigned timeout_ms;
	bool dead;			/* asserted, crashed or timed out */
};

/* Exits 77 with a loud SKIP line when /dev/kvm cannot be used: call first
 * thing in main(). */
void kvm_harness__require_kvm(void);
/* KVM_CHECK_EXTENSION on /dev/kvm: > 0 when supported. */
int kvm_harness__check_cap(long cap);
/* Prints "SKIP: <test>: <why>" (a skip inside a Check test, which then
 * returns and counts as passed). */
#define KVM_HARNESS_SKIP(...) kvm_harness__skip(__func__, __VA_ARGS__)
void kvm_harness__skip(const char *test, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Builds the VM: test RAM of ram_size bytes (2 MiB .. KVM_HARNESS_RAM_MAX;
 * above 3 GiB it spans two slots, as in vmhop; untouched RAM costs nothing),
 * the system slot, the binary's image, one vCPU in long mode at CPL3. */
int kvm_harness__create(struct kvm_harness **out, uint64_t ram_size, struct err *e);
void kvm_harness__destroy(struct kvm_harness *h);

/* Sets the vCPU to enter fn(arg0, arg1) on a fresh stack; returning from fn
 * counts as GUEST_DONE(). fn is any function of the test binary. */
int kvm_harness__start(struct kvm_harness *h, const void *fn, uint64_t arg0, uint64_t arg1,
		       struct err *e);

/* Runs until the guest makes a ucall or causes any other exit.
 * Returns the ucall type (> 0) with *uc filled in, 0 for another exit (see
 * h->run), or -errno (-ETIMEDOUT after h->timeout_ms). */
int kvm_harness__run(struct kvm_harness *h, struct ucall *uc, struct err *e);

/* One-line description of what kvm_harness__run() returned, for failure
 * messages: ucall with value or guest file:line, or exit reason and RIP. */
void kvm_harness__describe(struct kvm_harness *h, int ret, const struct ucall *uc,
			   const struct err *e, char *buf, size_t len);

/* Memory of the system slot that host and guest share, zeroed, page aligned
 * (dirty logging never sees it). Returns the host pointer; *gva gets the
 * guest address. NULL when the slot is full. */
void *kvm_harness__alloc_shared(struct kvm_harness *h, uint64_t size, uint64_t *gva);
/* Guest virtual address of a test RAM guest-physical address. RAM is mapped
 * with 4 KiB pages: with shadow paging (kvm-pvm) a read fault on a page whose
 * guest PTE is already dirty maps it writable and logs it, so a 2 MiB PTE
 * dirtied by one write would make reads of its 511 neighbours "dirty". */
static inline uint64_t kvm_harness__ram_gva(uint64_t gpa)
{
	return KVM_HARNESS_RAM_GVA + gpa;
}

/* Asserting wrappers for Check tests (fail with the guest's file:line). */
void kvm_harness__expect_sync(struct kvm_harness *h, uint64_t value);
/* Returns the SYNC value, whatever it is. */
uint64_t kvm_harness__expect_any_sync(struct kvm_harness *h);
void kvm_harness__expect_done(struct kvm_harness *h);
/* Expects a port I/O exit other than a ucall; returns its data bytes (an IN
 * exit's answer is written there before the next run). */
uint8_t *kvm_harness__expect_io(struct kvm_harness *h, uint16_t port, uint8_t size,
				uint8_t direction, uint32_t count);
/* kvm_harness__create() that fails the test on error. */
struct kvm_harness *kvm_harness__new(uint64_t ram_size);

#endif
