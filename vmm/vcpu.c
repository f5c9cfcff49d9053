#define LOG_TAG "vcpu"
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmhop/log.h"
#include "vmhop/vcpu.h"
#include "vmhop/vm.h"

/* SIGUSR1 only interrupts KVM_RUN (EINTR); the handler has nothing to do. */
#define VCPU_KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
	(void)sig;
}

int vcpu__create(struct vm *vm, unsigned id, struct vcpu **out, struct err *e)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	if (!v)
		return err__set(e, ENOMEM, "out of memory");
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		int r = err__setsys(e, errno, "KVM_CREATE_VCPU %u", id);
		free(v);
		return r;
	}
	v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		int r = err__setsys(e, errno, "mapping kvm_run of vCPU %u", id);
		close(v->fd);
		free(v);
		return r;
	}
	*out = v;
	return 0;
}

void vcpu__destroy(struct vcpu *v)
{
	if (!v)
		return;
	if (v->run && v->run != MAP_FAILED)
		munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v);
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
}

int vcpu__setup_pvh(struct vcpu *v, uint64_t entry, uint64_t start_info, struct err *e)
{
	struct kvm_sregs sregs;
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return err__setsys(e, errno, "KVM_GET_SREGS vCPU %u", v->id);
	flat_segment(&sregs.cs, 0x10, 0xb);
	flat_segment(&sregs.ds, 0x18, 0x3);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	/* VMX insists on a usable busy TSS even though PVH never loads one. */
	sregs.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = 0x20,
					  .type = 0xb, .present = 1, .s = 0 };
	sregs.cr0 = 0x11;	/* PE | ET */
	sregs.cr3 = 0;
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return err__setsys(e, errno, "KVM_SET_SREGS vCPU %u", v->id);

	struct kvm_regs regs = { .rip = entry, .rbx = start_info, .rflags = 0x2 };
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return err__setsys(e, errno, "KVM_SET_REGS vCPU %u", v->id);

	/* With the in-kernel LAPIC, application processors wait for INIT/SIPI.
	 * PVH has no AP bring-up protocol of its own, so every vCPU starts at
	 * the entry point and finds its index from its APIC id. */
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		return err__setsys(e, errno, "KVM_SET_MP_STATE vCPU %u", v->id);
	return 0;
}

char *vcpu__dump_regs(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	if (ioctl(v->fd, KVM_GET_REGS, &r) == 0) {
		fprintf(f, "vCPU %u registers:\n", v->id);
		fprintf(f, " rip %016llx rflags %016llx\n", r.rip, r.rflags);
		fprintf(f, " rax %016llx rbx %016llx rcx %016llx rdx %016llx\n", r.rax, r.rbx, r.rcx, r.rdx);
		fprintf(f, " rsi %016llx rdi %016llx rsp %016llx rbp %016llx\n", r.rsi, r.rdi, r.rsp, r.rbp);
		fprintf(f, " r8  %016llx r9  %016llx r10 %016llx r11 %016llx\n", r.r8, r.r9, r.r10, r.r11);
		fprintf(f, " r12 %016llx r13 %016llx r14 %016llx r15 %016llx\n", r.r12, r.r13, r.r14, r.r15);
	} else {
		fprintf(f, "vCPU %u: KVM_GET_REGS failed: %s\n", v->id, strerror(errno));
	}
	if (ioctl(v->fd, KVM_GET_SREGS, &s) == 0) {
		fprintf(f, " cr0 %016llx cr2 %016llx cr3 %016llx cr4 %016llx efer %016llx\n",
			s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
		fprintf(f, " cs %04x base %llx type %x dpl %u l %u db %u; ss %04x; tr %04x base %llx\n",
			s.cs.selector, s.cs.base, s.cs.type, s.cs.dpl, s.cs.l, s.cs.db,
			s.ss.selector, s.tr.selector, s.tr.base);
		fprintf(f, " gdt %llx/%x idt %llx/%x\n", s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit);
	}
	fclose(f);
	return out;
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		int r;
		if (run->io.direction == KVM_EXIT_IO_OUT)
			r = io_bus__write(&v->vm->pio, run->io.port, data, run->io.size);
		else
			r = io_bus__read(&v->vm->pio, run->io.port, data, run->io.size);
		if (r == -ENOENT && log__level() >= LOG_DEBUG) {
			uint32_t val = 0;
			memcpy(&val, data, run->io.size < 4 ? run->io.size : 4);
			pr_debug("vCPU %u: unclaimed port %s 0x%x size %u value 0x%x", v->id,
				 run->io.direction == KVM_EXIT_IO_OUT ? "write" : "read",
				 run->io.port, run->io.size, val);
		}
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	if (run->mmio.len > sizeof(run->mmio.data))
		return;
	if (run->mmio.is_write)
		io_bus__write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
	else
		io_bus__read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
}

static void crash(struct vcpu *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void crash(struct vcpu *v, const char *fmt, ...)
{
	char reason[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	char *dump = vcpu__dump_regs(v);
	pthread_mutex_lock(&v->vm->lock);
	if (!v->vm->crash_regs)
		v->vm->crash_regs = dump;
	else
		free(dump);
	pthread_mutex_unlock(&v->vm->lock);
	char line[512];
	snprintf(line, sizeof(line), "vCPU %u: %s", v->id, reason);
	vm__stop(v->vm, VM_CRASHED, line);
}

static const char *internal_suberror(uint32_t s)
{
	switch (s) {
	case KVM_INTERNAL_ERROR_EMULATION: return "emulation failure";
	case KVM_INTERNAL_ERROR_SIMUL_EX: return "simultaneous exceptions";
	case KVM_INTERNAL_ERROR_DELIVERY_EV: return "event delivery failure";
	default: return "internal error";
	}
}

/* Returns false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_HLT:
		/* Only reachable without an in-kernel LAPIC. */
		crash(v, "guest halted with interrupts unavailable");
		return false;
	case KVM_EXIT_SHUTDOWN:
		crash(v, "triple fault");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
			vm__stop(v->vm, VM_SHUTDOWN, "guest reset");
		else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
			vm__stop(v->vm, VM_SHUTDOWN, "guest powered off");
		else
			crash(v, "system event %u", run->system_event.type);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		crash(v, "VM entry failed (hardware reason 0x%llx)",
		      (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_INTERNAL_ERROR: {
		char extra[128] = "";
		size_t off = 0;
		for (uint32_t i = 0; i < run->internal.ndata && i < 4 && off < sizeof(extra); i++)
			off += (size_t)snprintf(extra + off, sizeof(extra) - off, " %llx",
						(unsigned long long)run->internal.data[i]);
		crash(v, "KVM %s (suberror %u%s%s)", internal_suberror(run->internal.suberror),
		      run->internal.suberror, off ? ", data" : "", extra);
		return false;
	}
	default:
		crash(v, "unexpected KVM exit reason %u", run->exit_reason);
		return false;
	}
}

/* Parks while a pause is requested. Returns false when the VM ended. Called
 * with vm->lock held. */
static bool park_if_requested(struct vcpu *v)
{
	struct vm *vm = v->vm;
	/* State read while an I/O exit is unfinished would be mid-instruction
	 * (KVM's api.rst: complete it before migrating). With immediate_exit
	 * left set, the next KVM_RUN finishes it and returns EINTR without
	 * running guest code; the vCPU parks after that. */
	if (vm->pause_req && v->io_pending && !vm__state_ended(vm->state))
		return true;
	if (vm->pause_req && !vm__state_ended(vm->state)) {
		vm->nr_parked++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_req && !vm__state_ended(vm->state))
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->nr_parked--;
	}
	/* Cleared under the lock: a pauser sets it under the same lock, so a
	 * request made after this point still interrupts the next KVM_RUN. */
	v->run->immediate_exit = 0;
	return !vm__state_ended(vm->state);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		pthread_mutex_lock(&vm->lock);
		bool go = park_if_requested(v);
		pthread_mutex_unlock(&vm->lock);
		if (!go)
			break;
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				v->io_pending = false;
			if (errno == EINTR || errno == EAGAIN) {
				vcpu__throttle_sleep(v);
				continue;
			}
			crash(v, "KVM_RUN failed: %s", strerror(errno));
			break;
		}
		v->io_pending = v->run->exit_reason == KVM_EXIT_IO ||
				v->run->exit_reason == KVM_EXIT_MMIO;
		if (!handle_exit(v))
			break;
	}
	pthread_mutex_lock(&vm->lock);
	vm->nr_exited++;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vcpu__start(struct vcpu *v, struct err *e)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return err__setsys(e, errno, "sigaction");
	/* Threads inherit this mask; only vCPU threads unblock the kick signal. */
	sigset_t set, old;
	sigfillset(&set);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	int r = pthread_create(&v->thread, NULL, vcpu_thread, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return err__setsys(e, r, "starting vCPU %u thread", v->id);
	v->started = true;
	return 0;
}

void vcpu__kick(struct vcpu *v)
{
	v->run->immediate_exit = 1;
	if (v->started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}
