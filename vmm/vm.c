#define LOG_TAG "vm"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmhop/boot.h"
#include "vmhop/cpuid.h"
#include "vmhop/layout.h"
#include "vmhop/log.h"
#include "vmhop/pm.h"
#include "vmhop/uart.h"
#include "vmhop/util.h"
#include "vmhop/vcpu.h"
#include "vmhop/vm-devices.h"
#include "vmhop/vm-sections.h"
#include "vmhop/vm.h"

/* Intel-only helper areas KVM needs below 4 GiB, out of our RAM and BARs. */
#define KVM_TSS_ADDR 0xfffbd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL
#define KVM_API_VERSION_EXPECTED 12

const char *vm__state_name(enum vm_state s)
{
	static const char *const names[] = {
		[VM_CREATED] = "created", [VM_RUNNING] = "running", [VM_PAUSED] = "paused",
		[VM_SHUTDOWN] = "shutdown", [VM_QUIT] = "quit", [VM_CRASHED] = "crashed",
		[VM_MIGRATED] = "migrated",
	};
	return s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

static int open_kvm(struct vm *vm, struct err *e)
{
	const char *path = getenv("VMHOP_KVM_DEVICE");
	if (!path || !*path)
		path = "/dev/kvm";
	vm->kvm_fd = open(path, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return err__setsys(e, errno, "cannot open %s (is KVM available and accessible to this user?)",
				   path);
	int v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION_EXPECTED)
		return err__set(e, ENOTTY, "%s is not a usable KVM device (API version %d, need %d)",
				path, v, KVM_API_VERSION_EXPECTED);
	static const struct { int cap; const char *name; } need[] = {
		{ KVM_CAP_IRQCHIP, "IRQCHIP" }, { KVM_CAP_USER_MEMORY, "USER_MEMORY" },
		{ KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR" }, { KVM_CAP_PIT2, "PIT2" },
		{ KVM_CAP_IOEVENTFD, "IOEVENTFD" }, { KVM_CAP_IRQFD, "IRQFD" },
		{ KVM_CAP_EXT_CPUID, "EXT_CPUID" }, { KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(need); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0)
			return err__set(e, ENOTSUP, "%s lacks KVM_CAP_%s, which vmhop needs", path, need[i].name);
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0)
		return err__setsys(e, errno, "KVM_GET_VCPU_MMAP_SIZE");
	vm->max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (vm->max_vcpus <= 0)
		vm->max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (vm->max_vcpus <= 0)
		vm->max_vcpus = 4;
	return 0;
}

static int create_machine(struct vm *vm, struct err *e)
{
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return err__setsys(e, errno, "KVM_CREATE_VM");
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
		return err__setsys(e, errno, "KVM_SET_TSS_ADDR");
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		return err__setsys(e, errno, "KVM_SET_IDENTITY_MAP_ADDR");
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return err__setsys(e, errno, "KVM_CREATE_IRQCHIP");
	struct kvm_pit_config pit = { .flags = 0 };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return err__setsys(e, errno, "KVM_CREATE_PIT2");
	return 0;
}

/* Routes PIC interrupts to the BSP (LINT0 = ExtINT) and NMIs via LINT1, as
 * firmware would, so guests that never program the LAPIC still get them. */
static int setup_lapic(struct vcpu *v, struct err *e)
{
	struct kvm_lapic_state la;
	if (ioctl(v->fd, KVM_GET_LAPIC, &la) < 0)
		return err__setsys(e, errno, "KVM_GET_LAPIC vCPU %u", v->id);
	uint32_t lvt0 = 0x700, lvt1 = 0x400;	/* ExtINT, NMI */
	memcpy(&la.regs[0x350], &lvt0, 4);
	memcpy(&la.regs[0x360], &lvt1, 4);
	if (ioctl(v->fd, KVM_SET_LAPIC, &la) < 0)
		return err__setsys(e, errno, "KVM_SET_LAPIC vCPU %u", v->id);
	return 0;
}

static int create_vcpus(struct vm *vm, const struct boot_entry *be, struct err *e)
{
	const char *model_name = vm->cfg->cpu_model ? vm->cfg->cpu_model : CPUID_DEFAULT_MODEL;
	const struct cpuid_model *model = cpuid__find_model(model_name);
	if (!model)
		return err__set(e, EINVAL, "--cpu-model %s: unknown model (known: %s)", model_name,
				cpuid__model_names());
	struct kvm_cpuid2 *sup = NULL;
	int r = cpuid__get_supported(vm->kvm_fd, &sup, e);
	if (r < 0)
		return r;
	vm->vcpus = calloc(vm->cfg->nr_cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		free(sup);
		return err__set(e, ENOMEM, "out of memory");
	}
	uint32_t tsc_khz = 0;
	for (unsigned i = 0; i < vm->cfg->nr_cpus && !r; i++) {
		struct vcpu *v;
		r = vcpu__create(vm, i, &v, e);
		if (r < 0)
			break;
		vm->vcpus[vm->nr_vcpus++] = v;
		if (i == 0) {
			int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
			tsc_khz = khz > 0 ? (uint32_t)khz : 0;
		}
		struct kvm_cpuid2 *c = NULL;
		r = cpuid__build(model, sup, i, vm->cfg->nr_cpus, tsc_khz, &c, e);
		if (r < 0)
			break;
		if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
			r = err__setsys(e, errno, "KVM_SET_CPUID2 vCPU %u", i);
		free(c);
		if (!r)
			r = setup_lapic(v, e);
		if (!r && be)
			r = boot__setup_vcpu(v, be, e);
	}
	free(sup);
	return r;
}

static int open_serial(struct vm_config *cfg, int *fd, struct err *e)
{
	switch (cfg->serial) {
	case SERIAL_STDIO:
		*fd = STDOUT_FILENO;
		return 0;
	case SERIAL_NONE:
		*fd = -1;
		return 0;
	case SERIAL_FILE:
		/* Appending never destroys an earlier log (a migration source and
		 * destination may share one). */
		*fd = open(cfg->serial_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (*fd < 0)
			return err__setsys(e, errno, "--serial file:%s", cfg->serial_path);
		return 0;
	}
	return err__set(e, EINVAL, "bad serial mode");
}

static int create(struct vm **out, struct vm_config *cfg, bool boot, struct err *e)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return err__set(e, ENOMEM, "out of memory");
	vm->kvm_fd = vm->vm_fd = -1;
	vm->cfg = cfg;
	vm->cold_boot = boot;
	vm->mem.memfd = -1;
	vm->serial_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	/* Timed waits (the vCPU throttle) measure on the monotonic clock, which
	 * wall-clock steps cannot stretch. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_cond_init(&vm->throttle_cond, &ca);
	pthread_condattr_destroy(&ca);
	io_bus__init(&vm->pio, "port I/O");
	io_bus__init(&vm->mmio, "MMIO");

	int r = 0;
	if (cfg->nr_cpus == 0)
		r = err__set(e, EINVAL, "--cpus must be at least 1");
	if (!r && boot && !cfg->kernel)
		r = err__set(e, EINVAL, "--kernel is required");
	if (!r)
		r = open_kvm(vm, e);
	if (!r && cfg->nr_cpus > (unsigned)vm->max_vcpus)
		r = err__set(e, EINVAL, "--cpus %u: this host's KVM allows at most %d vCPUs per VM",
			     cfg->nr_cpus, vm->max_vcpus);
	if (!r)
		r = create_machine(vm, e);
	if (!r)
		r = guest_mem__create(&vm->mem, cfg->mem_size, cfg->name[0] ? cfg->name : "vmhop-ram", e);
	if (!r)
		r = guest_mem__register(&vm->mem, vm->vm_fd, 0, e);
	struct boot_entry be;
	if (!r && boot)
		r = boot__load_kernel(&vm->mem, cfg->kernel, cfg->initrd, cfg->cmdline, &be, e);
	if (!r && boot)
		r = boot__write_mptable(&vm->mem, cfg->nr_cpus, e);
	if (!r && boot)
		r = boot__write_acpi(&vm->mem, cfg->nr_cpus, e);
	if (!r)
		r = open_serial(cfg, &vm->serial_fd, e);
	if (!r)
		r = uart__create(vm, PORT_COM1, 4, vm->serial_fd, &vm->uart, e);
	if (!r)
		r = pm__create(vm, &vm->pm, e);
	if (!r)
		r = vm_devices__create(vm, e);
	if (!r)
		r = create_vcpus(vm, boot ? &be : NULL, e);
	if (!r)
		r = vm_sections__register(vm, e);
	if (r < 0) {
		vm__destroy(vm);
		return r;
	}
	*out = vm;
	return 0;
}

int vm__create(struct vm **out, struct vm_config *cfg, struct err *e)
{
	return create(out, cfg, true, e);
}

int vm__create_incoming(struct vm **out, struct vm_config *cfg, struct err *e)
{
	return create(out, cfg, false, e);
}

void vm__destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm__quit(vm);
	struct err ignore = { 0 };
	vm__set_throttle(vm, 0, &ignore);
	vm__join(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu__destroy(vm->vcpus[i]);
	free(vm->vcpus);
	vm_sections__free(vm);
	vm_devices__destroy(vm);
	pm__destroy(vm->pm);
	uart__destroy(vm->uart);
	if (vm->serial_fd > STDERR_FILENO)
		close(vm->serial_fd);
	guest_mem__destroy(&vm->mem);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	io_bus__destroy(&vm->pio);
	io_bus__destroy(&vm->mmio);
	free(vm->crash_regs);
	free(vm->msr_index);
	pthread_cond_destroy(&vm->throttle_cond);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}

int vm__start(struct vm *vm, struct err *e)
{
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_RUNNING;
	vm->started_ns = util__now_ns();
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		int r = vcpu__start(vm->vcpus[i], e);
		if (r < 0) {
			vm__stop(vm, VM_CRASHED, e->msg);
			return r;
		}
	}
	return 0;
}

int vm__pause(struct vm *vm, struct err *e)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_RUNNING) {
		enum vm_state s = vm->state;
		pthread_mutex_unlock(&vm->lock);
		if (s == VM_PAUSED)
			return 0;
		return err__set(e, EINVAL, "VM is %s", vm__state_name(s));
	}
	vm->pause_req = true;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu__kick(vm->vcpus[i]);
	while (vm->nr_parked + vm->nr_exited < vm->nr_vcpus && !vm__state_ended(vm->state))
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (vm__state_ended(vm->state)) {
		vm->pause_req = false;
		pthread_mutex_unlock(&vm->lock);
		return err__set(e, EINVAL, "VM ended while pausing");
	}
	vm->state = VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	/* Devices quiesce after the vCPUs: no new requests can arrive now. */
	vm_devices__pause(vm);
	return 0;
}

static int resume(struct vm *vm, bool force, struct err *e)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->held) {
		pthread_mutex_unlock(&vm->lock);
		return err__set(e, EBUSY, "a migration has the VM stopped for its final copy; "
				"it resumes here by itself if the migration fails");
	}
	if (vm->handed_off && !force) {
		pthread_mutex_unlock(&vm->lock);
		return err__set(e, EBUSY, "the VM was handed over to a migration destination that "
				"did not confirm it runs: resuming here could run two copies "
				"(resume with force=true only once the destination is known not to run it)");
	}
	vm->handed_off = false;
	if (vm->state != VM_PAUSED) {
		enum vm_state s = vm->state;
		pthread_mutex_unlock(&vm->lock);
		if (s == VM_RUNNING)
			return 0;
		return err__set(e, EINVAL, "VM is %s", vm__state_name(s));
	}
	pthread_mutex_unlock(&vm->lock);
	vm_devices__resume(vm);
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_RUNNING;
	vm->pause_req = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm__resume(struct vm *vm, struct err *e)
{
	return resume(vm, false, e);
}

int vm__resume_forced(struct vm *vm, struct err *e)
{
	return resume(vm, true, e);
}

int vm__request_shutdown(struct vm *vm, struct err *e)
{
	enum vm_state s = vm__state(vm);
	if (s != VM_RUNNING && s != VM_PAUSED)
		return err__set(e, EINVAL, "VM is %s", vm__state_name(s));
	pm__power_button(vm->pm);
	return 0;
}

void vm__stop(struct vm *vm, enum vm_state why, const char *reason)
{
	pthread_mutex_lock(&vm->lock);
	if (vm__state_ended(vm->state)) {
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	vm->state = why;
	snprintf(vm->crash_reason, sizeof(vm->crash_reason), "%s", reason ? reason : "");
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu__kick(vm->vcpus[i]);
	pthread_cond_broadcast(&vm->cond);
	vm_stop_fn cb = vm->on_stop;
	void *opaque = vm->on_stop_opaque;
	pthread_mutex_unlock(&vm->lock);
	if (vm->uart)
		uart__flush(vm->uart);
	if (cb)
		cb(vm, opaque);
}

void vm__quit(struct vm *vm)
{
	vm__stop(vm, VM_QUIT, "stopped by request");
}

void vm__join(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		if (v && v->started) {
			pthread_join(v->thread, NULL);
			v->started = false;
		}
	}
}

enum vm_state vm__state(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	enum vm_state s = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

int vm__irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}
