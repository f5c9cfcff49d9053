/* The host side of the KVM test harness (see kvm-harness.h for the guest's
 * memory map and the rules for guest code). */
#include <check.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/kvm-harness.h"
#include "vmhop/cpuid.h"
#include "vmhop/util.h"

#define PAGE		4096ULL
#define PTE_P		(1ULL << 0)
#define PTE_W		(1ULL << 1)
#define PTE_U		(1ULL << 2)
#define PTE_PS		(1ULL << 7)
#define PTE_ADDR	0x000ffffffffff000ULL
#define STACK_SIZE	(64 * KiB)
#define SHARED_RESERVE	(256 * KiB)	/* room for kvm_harness__alloc_shared() */

/* GDT layout. Ring-0 entries are there only so the table looks like a real
 * one; the vCPU starts at CPL3 and never loads them. */
#define SEL_KERNEL_CS	0x08
#define SEL_KERNEL_DS	0x10
#define SEL_USER_CS	(0x18 | 3)
#define SEL_USER_DS	(0x20 | 3)
#define SEL_TSS		0x28
#define GDT_ENTRIES	7	/* the TSS descriptor takes two */

/* A 64-bit TSS followed by the I/O permission bitmap: all zero, so ring-3
 * `in`/`out` to any port exits to the host instead of raising #GP (kvm-pvm
 * drops IOPL after the first KVM_RUN, notes/pvm-guests.md). The byte after
 * the bitmap must be 0xff. */
#define TSS_SIZE	104
#define TSS_IOMAP	TSS_SIZE
#define IO_BITMAP_SIZE	8192
#define TSS_LIMIT	(TSS_IOMAP + IO_BITMAP_SIZE)	/* index of the 0xff byte */

#define DEFAULT_TIMEOUT_MS 5000

_Static_assert(offsetof(struct ucall, type) == 0 && sizeof(struct ucall) == 56,
	       "kvm_harness_guest_return builds a struct ucall by hand");
_Static_assert(UCALL_DONE == 3, "kvm_harness_guest_return hardcodes UCALL_DONE");

/* Where a guest function returns to: reports UCALL_DONE. Plain assembly, so
 * no compiler flag can add instrumentation to it. */
extern const char kvm_harness_guest_return[];
__asm__(".pushsection .text\n"
	".globl kvm_harness_guest_return\n"
	".type kvm_harness_guest_return, @function\n"
	"kvm_harness_guest_return:\n"
	"	andq $-16, %rsp\n"
	"	xorl %eax, %eax\n"
	"	pushq %rax\n"		/* has_values */
	"	pushq %rax\n"		/* file */
	"	pushq %rax\n"		/* expr */
	"	pushq %rax\n"		/* line */
	"	pushq %rax\n"		/* args[1] */
	"	pushq %rax\n"		/* args[0] */
	"	pushq $3\n"		/* type = UCALL_DONE */
	"	movq %rsp, %rdi\n"
	"	movw $0x1000, %dx\n"
	"	outb %al, %dx\n"
	"	ud2\n"
	".size kvm_harness_guest_return, . - kvm_harness_guest_return\n"
	".popsection\n");

static const char *kvm_path(void)
{
	const char *p = getenv("VMHOP_KVM_DEVICE");
	return p && *p ? p : "/dev/kvm";
}

void kvm_harness__require_kvm(void)
{
	const char *path = kvm_path();
	int fd = open(path, O_RDWR | O_CLOEXEC);
	const char *why = NULL;
	char buf[128];
	if (fd < 0) {
		snprintf(buf, sizeof(buf), "cannot open %s: %s", path, strerror(errno));
		why = buf;
	} else if (ioctl(fd, KVM_GET_API_VERSION, 0) != 12) {
		snprintf(buf, sizeof(buf), "%s is not a KVM device with API version 12", path);
		why = buf;
	}
	if (fd >= 0)
		close(fd);
	if (!why)
		return;
	/* Loud on purpose: a CI log full of passes hides a quiet skip. */
	fprintf(stderr, "\n########################################################\n"
			"SKIP: %s -- every KVM test of this program is skipped\n"
			"########################################################\n\n", why);
	exit(77);
}

int kvm_harness__check_cap(long cap)
{
	int fd = open(kvm_path(), O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);
	close(fd);
	return r;
}

void kvm_harness__skip(const char *test, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "SKIP: %s: %s\n", test, msg);
}

/* ---- the system slot ---------------------------------------------------- */

static uint64_t sys_alloc(struct kvm_harness *h, uint64_t bytes)
{
	bytes = ALIGN_UP(bytes, PAGE);
	if (bytes > h->sys_size - h->sys_used)
		return 0;
	uint64_t gpa = KVM_HARNESS_SYS_GPA + h->sys_used;
	h->sys_used += bytes;
	return gpa;
}

static void *sys_ptr(struct kvm_harness *h, uint64_t gpa)
{
	return h->sys + (gpa - KVM_HARNESS_SYS_GPA);
}

/* Walks (and fills) the 4-level tables down to `level` (0: PT, 1: PD) and
 * returns the entry for gva there, or NULL when out of memory or when a
 * large page is in the way. */
static uint64_t *pte_at(struct kvm_harness *h, uint64_t gva, int level)
{
	uint64_t *table = sys_ptr(h, h->pml4);
	for (int l = 3; l > level; l--) {
		uint64_t *ent = &table[(gva >> (12 + 9 * l)) & 511];
		if (!(*ent & PTE_P)) {
			uint64_t t = sys_alloc(h, PAGE);
			if (!t)
				return NULL;
			*ent = t | PTE_P | PTE_W | PTE_U;
		} else if (*ent & PTE_PS) {
			return NULL;
		}
		table = sys_ptr(h, *ent & PTE_ADDR);
	}
	return &table[(gva >> (12 + 9 * level)) & 511];
}

static int map_page(struct kvm_harness *h, uint64_t gva, uint64_t gpa, bool large, struct err *e)
{
	uint64_t *pte = pte_at(h, gva, large ? 1 : 0);
	if (!pte)
		return err__set(e, ENOMEM, "cannot map guest address 0x%llx (tables full or overlap)",
				(unsigned long long)gva);
	if (*pte & PTE_P)
		return err__set(e, EEXIST, "guest address 0x%llx mapped twice", (unsigned long long)gva);
	*pte = gpa | PTE_P | PTE_W | PTE_U | (large ? PTE_PS : 0);
	return 0;
}

/* ---- the test binary's image ------------------------------------------- */

static int first_object(struct dl_phdr_info *info, size_t size, void *data)
{
	/* dl_iterate_phdr visits the main program first. */
	*(struct dl_phdr_info *)data = *info;
	return 1;
}

/* The page ranges of every PT_LOAD of the main program, merged. */
static int image_ranges(struct kvm_harness *h, uint64_t *pages, struct err *e)
{
	struct dl_phdr_info info;
	dl_iterate_phdr(first_object, &info);
	h->nr_image = 0;
	*pages = 0;
	for (int i = 0; i < info.dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info.dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t start = (info.dlpi_addr + ph->p_vaddr) & ~(PAGE - 1);
		uint64_t end = ALIGN_UP(info.dlpi_addr + ph->p_vaddr + ph->p_memsz, PAGE);
		if (h->nr_image && start <= h->image[h->nr_image - 1].end) {
			struct kvm_harness_range *last = &h->image[h->nr_image - 1];
			*pages -= (last->end - last->start) / PAGE;
			last->end = MAX(last->end, end);
			*pages += (last->end - last->start) / PAGE;
			continue;
		}
		if (h->nr_image == ARRAY_SIZE(h->image))
			return err__set(e, E2BIG, "too many PT_LOAD segments in the test binary");
		if (end > KVM_HARNESS_SYS_GPA && start < KVM_HARNESS_SYS_GPA + KVM_HARNESS_SYS_MAX)
			return err__set(e, EEXIST, "the test binary is loaded over the harness slot");
		h->image[h->nr_image++] = (struct kvm_harness_range){ start, end };
		*pages += (end - start) / PAGE;
	}
	return h->nr_image ? 0 : err__set(e, ENOEXEC, "no PT_LOAD segment in the test binary");
}

/* Copies through /proc/self/mem rather than memcpy: the kernel reads the
 * pages, so ASan's poisoned redzones around globals are not "accessed". */
static int copy_image(struct kvm_harness *h, struct err *e)
{
	int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err__setsys(e, errno, "open /proc/self/mem");
	int r = 0;
	for (unsigned i = 0; i < h->nr_image && !r; i++) {
		const struct kvm_harness_range *rg = &h->image[i];
		uint64_t len = rg->end - rg->start;
		uint64_t gpa = sys_alloc(h, len);
		if (!gpa) {
			r = err__set(e, ENOMEM, "harness slot too small for the image");
			break;
		}
		r = util__pread_all(fd, sys_ptr(h, gpa), len, (off_t)rg->start);
		if (r < 0) {
			r = err__set(e, -r, "reading own image at 0x%llx: %s",
				     (unsigned long long)rg->start, strerror(-r));
			break;
		}
		for (uint64_t off = 0; off < len && !r; off += PAGE)
			r = map_page(h, rg->start + off, gpa + off, false, e);
	}
	close(fd);
	return r;
}

/* ---- descriptor tables -------------------------------------------------- */

static uint64_t seg_desc(uint8_t access, uint8_t flags)
{
	/* base 0, limit 0xfffff (with G: 4 GiB) */
	return 0xffffULL | ((uint64_t)access << 40) | (0xfULL << 48) | ((uint64_t)flags << 52);
}

static void write_gdt(uint64_t *gdt, uint64_t tss)
{
	gdt[0] = 0;
	gdt[SEL_KERNEL_CS / 8] = seg_desc(0x9b, 0xa);	/* P, DPL0, code; G, L */
	gdt[SEL_KERNEL_DS / 8] = seg_desc(0x93, 0xc);	/* P, DPL0, data; G, D */
	gdt[SEL_USER_CS / 8] = seg_desc(0xfb, 0xa);	/* P, DPL3, code; G, L */
	gdt[SEL_USER_DS / 8] = seg_desc(0xf3, 0xc);	/* P, DPL3, data; G, D */
	uint64_t limit = TSS_LIMIT;
	gdt[SEL_TSS / 8] = (limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x8bULL << 40) |
			   (((limit >> 16) & 0xf) << 48) | (((tss >> 24) & 0xff) << 56);
	gdt[SEL_TSS / 8 + 1] = tss >> 32;
}

static struct kvm_segment user_seg(uint16_t sel, bool code)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel,
		.type = code ? 0xb : 0x3, .present = 1, .dpl = 3, .s = 1, .g = 1,
		.l = code, .db = !code,
	};
}

static int setup_sregs(struct kvm_harness *h, uint64_t gdt, uint64_t tss, uint64_t idt, struct err *e)
{
	struct kvm_sregs s;
	if (ioctl(h->vcpu_fd, KVM_GET_SREGS, &s) < 0)
		return err__setsys(e, errno, "KVM_GET_SREGS");
	s.cs = user_seg(SEL_USER_CS, true);
	s.ds = s.es = s.fs = s.gs = s.ss = user_seg(SEL_USER_DS, false);
	s.tr = (struct kvm_segment){ .base = tss, .limit = TSS_LIMIT, .selector = SEL_TSS,
				     .type = 0xb, .present = 1 };
	s.ldt = (struct kvm_segment){ .type = 0x2, .unusable = 1 };
	s.gdt.base = gdt;
	s.gdt.limit = GDT_ENTRIES * 8 - 1;
	/* An empty IDT: any guest exception escalates to a triple fault, which
	 * the host reports as a crash with the faulting RIP. */
	s.idt.base = idt;
	s.idt.limit = 0;
	s.cr0 = 0x80010033;	/* PG WP NE ET MP PE */
	s.cr3 = h->pml4;
	s.cr4 = 0x620;		/* OSXMMEXCPT OSFXSR PAE: compiled code may use SSE */
	s.efer = 0x500;		/* LMA LME */
	if (ioctl(h->vcpu_fd, KVM_SET_SREGS, &s) < 0)
		return err__setsys(e, errno, "KVM_SET_SREGS (long mode, CPL3)");
	return 0;
}

static int setup_cpuid(struct kvm_harness *h, struct err *e)
{
	/* KVM refuses EFER.LME unless the vCPU's CPUID has long mode. */
	struct kvm_cpuid2 *sup = NULL;
	int r = cpuid__get_supported(h->kvm_fd, &sup, e);
	if (r < 0)
		return r;
	if (ioctl(h->vcpu_fd, KVM_SET_CPUID2, sup) < 0)
		r = err__setsys(e, errno, "KVM_SET_CPUID2");
	free(sup);
	return r;
}

/* ---- timeout ------------------------------------------------------------ */

static void on_timer(int sig)
{
	(void)sig;	/* only there to make KVM_RUN return EINTR */
}

static int arm_timer(unsigned ms)
{
	struct itimerval it = { .it_value = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 } };
	return setitimer(ITIMER_REAL, &it, NULL);
}

/* ---- create / destroy --------------------------------------------------- */

int kvm_harness__create(struct kvm_harness **out, uint64_t ram_size, struct err *e)
{
	if (ram_size < 2 * MiB || ram_size > KVM_HARNESS_RAM_MAX || ram_size % PAGE)
		return err__set(e, EINVAL, "harness RAM must be a page multiple in [2M, 4G]");
	struct kvm_harness *h = calloc(1, sizeof(*h));
	if (!h)
		return err__set(e, ENOMEM, "out of memory");
	h->kvm_fd = h->vm_fd = h->vcpu_fd = -1;
	h->mem.memfd = -1;
	h->timeout_ms = DEFAULT_TIMEOUT_MS;
	int r = 0;

	h->kvm_fd = open(kvm_path(), O_RDWR | O_CLOEXEC);
	if (h->kvm_fd < 0) {
		r = err__setsys(e, errno, "open %s", kvm_path());
		goto fail;
	}
	h->vm_fd = ioctl(h->kvm_fd, KVM_CREATE_VM, 0);
	if (h->vm_fd < 0) {
		r = err__setsys(e, errno, "KVM_CREATE_VM");
		goto fail;
	}
	r = guest_mem__create(&h->mem, ram_size, "kvm-harness-ram", e);
	if (!r)
		r = guest_mem__register(&h->mem, h->vm_fd, 0, e);
	if (r)
		goto fail;

	uint64_t image_pages;
	r = image_ranges(h, &image_pages, e);
	if (r)
		goto fail;
	/* Tables: one PT per 512 pages mapped, the upper levels, and partial
	 * tables at both ends of every range. */
	uint64_t pt_pages = 16 + (image_pages + ram_size / PAGE) / 512 + 4 * (h->nr_image + 2);
	h->sys_size = ALIGN_UP((8 + pt_pages + image_pages) * PAGE + STACK_SIZE + SHARED_RESERVE,
			       2 * MiB);
	if (h->sys_size > KVM_HARNESS_SYS_MAX) {
		r = err__set(e, E2BIG, "the test binary is too large for the harness slot");
		goto fail;
	}
	h->sys = mmap(NULL, h->sys_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (h->sys == MAP_FAILED) {
		h->sys = NULL;
		r = err__setsys(e, errno, "mapping %llu bytes for the harness slot",
				(unsigned long long)h->sys_size);
		goto fail;
	}
	struct kvm_userspace_memory_region kr = {
		.slot = KVM_HARNESS_SYS_SLOT, .guest_phys_addr = KVM_HARNESS_SYS_GPA,
		.memory_size = h->sys_size, .userspace_addr = (uint64_t)(uintptr_t)h->sys,
	};
	if (ioctl(h->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0) {
		r = err__setsys(e, errno, "KVM_SET_USER_MEMORY_REGION (harness slot)");
		goto fail;
	}

	uint64_t gdt = sys_alloc(h, PAGE);
	uint64_t tss = sys_alloc(h, TSS_LIMIT + 1);
	uint64_t idt = sys_alloc(h, PAGE);
	h->pml4 = sys_alloc(h, PAGE);
	uint64_t stack = sys_alloc(h, STACK_SIZE);
	h->stack_top = stack + STACK_SIZE;
	write_gdt(sys_ptr(h, gdt), tss);
	uint8_t *t = sys_ptr(h, tss);
	uint16_t iomap = TSS_IOMAP;
	memcpy(t + 102, &iomap, sizeof(iomap));
	t[TSS_LIMIT] = 0xff;

	/* Identity map of the slot with 2 MiB pages: the CPU reaches the GDT,
	 * TSS and stack, and the host turns guest pointers into offsets. */
	for (uint64_t off = 0; off < h->sys_size && !r; off += 2 * MiB)
		r = map_page(h, KVM_HARNESS_SYS_GPA + off, KVM_HARNESS_SYS_GPA + off, true, e);
	if (!r)
		r = copy_image(h, e);
	for (unsigned i = 0; i < h->mem.nr_regions && !r; i++) {
		const struct guest_mem_region *rg = &h->mem.regions[i];
		for (uint64_t gpa = rg->gpa; gpa < rg->gpa + rg->size && !r; gpa += PAGE)
			r = map_page(h, kvm_harness__ram_gva(gpa), gpa, false, e);
	}
	if (r)
		goto fail;

	int mmap_size = ioctl(h->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size <= 0) {
		r = err__setsys(e, errno, "KVM_GET_VCPU_MMAP_SIZE");
		goto fail;
	}
	h->run_size = (size_t)mmap_size;
	h->vcpu_fd = ioctl(h->vm_fd, KVM_CREATE_VCPU, 0UL);
	if (h->vcpu_fd < 0) {
		r = err__setsys(e, errno, "KVM_CREATE_VCPU");
		goto fail;
	}
	h->run = mmap(NULL, h->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, h->vcpu_fd, 0);
	if (h->run == MAP_FAILED) {
		h->run = NULL;
		r = err__setsys(e, errno, "mapping kvm_run");
		goto fail;
	}
	r = setup_cpuid(h, e);
	if (!r)
		r = setup_sregs(h, gdt, tss, idt, e);
	if (r)
		goto fail;

	/* No SA_RESTART: the alarm must interrupt KVM_RUN. */
	struct sigaction sa = { .sa_handler = on_timer };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	*out = h;
	return 0;
fail:
	kvm_harness__destroy(h);
	return r;
}

void kvm_harness__destroy(struct kvm_harness *h)
{
	if (!h)
		return;
	if (h->run)
		munmap(h->run, h->run_size);
	if (h->vcpu_fd >= 0)
		close(h->vcpu_fd);
	if (h->vm_fd >= 0)
		close(h->vm_fd);
	if (h->kvm_fd >= 0)
		close(h->kvm_fd);
	if (h->sys)
		munmap(h->sys, h->sys_size);
	guest_mem__destroy(&h->mem);
	free(h);
}

void *kvm_harness__alloc_shared(struct kvm_harness *h, uint64_t size, uint64_t *gva)
{
	uint64_t gpa = sys_alloc(h, size);
	if (!gpa)
		return NULL;
	*gva = gpa;	/* identity-mapped */
	return sys_ptr(h, gpa);
}

/* ---- running ------------------------------------------------------------ */

int kvm_harness__start(struct kvm_harness *h, const void *fn, uint64_t arg0, uint64_t arg1,
		       struct err *e)
{
	uint64_t rsp = h->stack_top - 8;	/* as after a call: rsp + 8 is 16-aligned */
	uint64_t ret = (uint64_t)(uintptr_t)kvm_harness_guest_return;
	memcpy(sys_ptr(h, rsp), &ret, sizeof(ret));
	struct kvm_regs regs = {
		.rip = (uint64_t)(uintptr_t)fn, .rsp = rsp, .rdi = arg0, .rsi = arg1,
		/* IOPL 3 as on hardware KVM; kvm-pvm relies on the TSS bitmap. */
		.rflags = 0x3002,
	};
	if (ioctl(h->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return err__setsys(e, errno, "KVM_SET_REGS");
	h->dead = false;
	return 0;
}

/* A guest string pointer is used only if it lies, NUL included, inside the
 * copied image: then the host's own bytes at that address are the same. */
static const char *image_string(struct kvm_harness *h, const char *p)
{
	uint64_t a = (uint64_t)(uintptr_t)p;
	for (unsigned i = 0; p && i < h->nr_image; i++) {
		if (a >= h->image[i].start && a < h->image[i].end &&
		    memchr(p, '\0', h->image[i].end - a))
			return p;
	}
	return "?";
}

static int read_ucall(struct kvm_harness *h, struct ucall *uc, struct err *e)
{
	struct kvm_regs regs;
	if (ioctl(h->vcpu_fd, KVM_GET_REGS, &regs) < 0)
		return err__setsys(e, errno, "KVM_GET_REGS");
	uint64_t a = regs.rdi;
	if (a < KVM_HARNESS_SYS_GPA || a - KVM_HARNESS_SYS_GPA > h->sys_size - sizeof(*uc))
		return err__set(e, EPROTO, "ucall with bad pointer 0x%llx at rip 0x%llx",
				(unsigned long long)a, (unsigned long long)regs.rip);
	memcpy(uc, sys_ptr(h, a), sizeof(*uc));
	uc->file = uc->file ? image_string(h, uc->file) : NULL;
	uc->expr = uc->expr ? image_string(h, uc->expr) : NULL;
	if (uc->type <= UCALL_NONE || uc->type > UCALL_DONE)
		return err__set(e, EPROTO, "ucall of unknown type %llu", (unsigned long long)uc->type);
	return (int)uc->type;
}

int kvm_harness__run(struct kvm_harness *h, struct ucall *uc, struct err *e)
{
	memset(uc, 0, sizeof(*uc));
	if (h->dead)
		return err__set(e, EINVAL, "the guest already failed; not resuming it");
	uint64_t deadline = util__now_ns() + (uint64_t)h->timeout_ms * 1000000ULL;
	if (h->timeout_ms)
		arm_timer(h->timeout_ms);
	int r;
	while ((r = ioctl(h->vcpu_fd, KVM_RUN, 0)) < 0) {
		if (errno != EINTR && errno != EAGAIN)
			break;
		if (h->timeout_ms && util__now_ns() >= deadline) {
			h->dead = true;
			return err__set(e, ETIMEDOUT, "guest still running after %u ms", h->timeout_ms);
		}
	}
	int saved = errno;
	if (h->timeout_ms)
		arm_timer(0);
	if (r < 0) {
		h->dead = true;
		return err__setsys(e, saved, "KVM_RUN");
	}
	struct kvm_run *run = h->run;
	if (run->exit_reason == KVM_EXIT_IO && run->io.port == KVM_HARNESS_UCALL_PORT &&
	    run->io.direction == KVM_EXIT_IO_OUT) {
		r = read_ucall(h, uc, e);
		if (r < 0 || r == UCALL_ASSERT)
			h->dead = true;
		return r;
	}
	if (run->exit_reason == KVM_EXIT_SHUTDOWN || run->exit_reason == KVM_EXIT_INTERNAL_ERROR ||
	    run->exit_reason == KVM_EXIT_FAIL_ENTRY)
		h->dead = true;
	return 0;
}

static const char *exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_IO: return "port I/O";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_SHUTDOWN: return "triple fault (an exception in guest code)";
	case KVM_EXIT_FAIL_ENTRY: return "VM entry failure";
	case KVM_EXIT_INTERNAL_ERROR: return "KVM internal error";
	case KVM_EXIT_INTR: return "interrupted";
	default: return "other";
	}
}

void kvm_harness__describe(struct kvm_harness *h, int ret, const struct ucall *uc,
			   const struct err *e, char *buf, size_t len)
{
	const char *file = uc->file ? uc->file : "?";
	if (ret < 0) {
		snprintf(buf, len, "harness: %s", e && e->code ? e->msg : strerror(-ret));
	} else if (ret == UCALL_SYNC) {
		snprintf(buf, len, "GUEST_SYNC(%llu) at %s:%llu", (unsigned long long)uc->args[0], file,
			 (unsigned long long)uc->line);
	} else if (ret == UCALL_DONE) {
		snprintf(buf, len, "GUEST_DONE");
	} else if (ret == UCALL_ASSERT) {
		if (uc->has_values)
			snprintf(buf, len, "guest assertion failed at %s:%llu: %s (0x%llx vs 0x%llx)",
				 file, (unsigned long long)uc->line, uc->expr ? uc->expr : "?",
				 (unsigned long long)uc->args[0], (unsigned long long)uc->args[1]);
		else
			snprintf(buf, len, "guest assertion failed at %s:%llu: %s", file,
				 (unsigned long long)uc->line, uc->expr ? uc->expr : "?");
	} else {
		struct kvm_run *run = h->run;
		struct kvm_regs regs = { 0 };
		ioctl(h->vcpu_fd, KVM_GET_REGS, &regs);
		struct dl_phdr_info info;
		dl_iterate_phdr(first_object, &info);
		char exe[256] = "<test binary>";
		ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (l > 0)
			exe[l] = '\0';
		/* The addr2line command names the guest function that failed. */
		int n = snprintf(buf, len, "unexpected %s exit (reason %u) at rip 0x%llx "
				 "(addr2line -f -e %s 0x%llx)",
				 exit_name(run->exit_reason), run->exit_reason,
				 (unsigned long long)regs.rip, exe,
				 (unsigned long long)(regs.rip - info.dlpi_addr));
		if (n >= 0 && (size_t)n < len && run->exit_reason == KVM_EXIT_IO)
			snprintf(buf + n, len - (size_t)n, ": %s port 0x%x size %u count %u",
				 run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run->io.port,
				 run->io.size, run->io.count);
		else if (n >= 0 && (size_t)n < len && run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
			snprintf(buf + n, len - (size_t)n, ": suberror %u", run->internal.suberror);
	}
}

/* ---- asserting wrappers -------------------------------------------------- */

static int run_checked(struct kvm_harness *h, struct ucall *uc, struct err *e, char *what,
		       size_t len)
{
	int r = kvm_harness__run(h, uc, e);
	kvm_harness__describe(h, r, uc, e, what, len);
	return r;
}

void kvm_harness__expect_sync(struct kvm_harness *h, uint64_t value)
{
	struct ucall uc;
	struct err e = { 0 };
	char what[640];
	int r = run_checked(h, &uc, &e, what, sizeof(what));
	ck_assert_msg(r == UCALL_SYNC && uc.args[0] == value, "expected GUEST_SYNC(%llu), got %s",
		      (unsigned long long)value, what);
}

uint64_t kvm_harness__expect_any_sync(struct kvm_harness *h)
{
	struct ucall uc;
	struct err e = { 0 };
	char what[640];
	int r = run_checked(h, &uc, &e, what, sizeof(what));
	ck_assert_msg(r == UCALL_SYNC, "expected GUEST_SYNC, got %s", what);
	return uc.args[0];
}

void kvm_harness__expect_done(struct kvm_harness *h)
{
	struct ucall uc;
	struct err e = { 0 };
	char what[640];
	int r = run_checked(h, &uc, &e, what, sizeof(what));
	ck_assert_msg(r == UCALL_DONE, "expected GUEST_DONE, got %s", what);
}

uint8_t *kvm_harness__expect_io(struct kvm_harness *h, uint16_t port, uint8_t size,
				uint8_t direction, uint32_t count)
{
	struct ucall uc;
	struct err e = { 0 };
	char what[640];
	int r = run_checked(h, &uc, &e, what, sizeof(what));
	struct kvm_run *run = h->run;
	ck_assert_msg(r == 0 && run->exit_reason == KVM_EXIT_IO && run->io.port == port &&
		      run->io.size == size && run->io.direction == direction &&
		      run->io.count == count,
		      "expected %s port 0x%x size %u count %u, got %s",
		      direction == KVM_EXIT_IO_OUT ? "out" : "in", port, size, count, what);
	return (uint8_t *)run + run->io.data_offset;
}

struct kvm_harness *kvm_harness__new(uint64_t ram_size)
{
	struct kvm_harness *h = NULL;
	struct err e = { 0 };
	int r = kvm_harness__create(&h, ram_size, &e);
	ck_assert_msg(r == 0, "creating the test VM: %s", e.msg);
	return h;
}
