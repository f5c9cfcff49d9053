/* One VM in this process: the KVM fds, guest RAM, vCPU threads, buses and
 * devices. Nothing here prints or exits; errors come back as struct err. */
#ifndef VMHOP_VM_H
#define VMHOP_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"
#include "vmhop/guest-mem.h"
#include "vmhop/io-bus.h"
#include "vmhop/vm-config.h"

struct vm;
struct vcpu;
struct uart;
struct pci_bus;
struct pm_dev;
struct virtio_blk;
struct irq_routing;
struct vm_sections;
struct migration;
struct snapshot_tracker;

enum vm_state {
	VM_CREATED,	/* built, vCPUs not started */
	VM_RUNNING,
	VM_PAUSED,
	VM_SHUTDOWN,	/* guest powered off or reset: exit status 0 */
	VM_QUIT,	/* stopped by `quit` */
	VM_CRASHED,	/* triple fault, internal error, emulation failure */
	VM_MIGRATED,	/* handed over to a destination that confirmed it runs */
};

const char *vm__state_name(enum vm_state s);

/* True once the VM can never run again. */
static inline bool vm__state_ended(enum vm_state s)
{
	return s == VM_SHUTDOWN || s == VM_QUIT || s == VM_CRASHED || s == VM_MIGRATED;
}

/* Called once, from whichever thread ended the VM (a vCPU thread, or the
 * caller of vm__quit), after the state became SHUTDOWN/QUIT/CRASHED. */
typedef void (*vm_stop_fn)(struct vm *vm, void *opaque);

struct vm {
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	int max_vcpus;
	struct vm_config *cfg;
	struct guest_mem mem;
	struct io_bus pio;
	struct io_bus mmio;

	struct vcpu **vcpus;
	unsigned nr_vcpus;

	struct uart *uart;
	struct pm_dev *pm;
	struct pci_bus *pci;
	struct irq_routing *irq;
	struct virtio_blk *blk[VM_MAX_DISKS];
	unsigned nr_blk;

	/* Run control. `lock` guards state and the pause handshake. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	bool pause_req;
	unsigned nr_parked;	/* vCPU threads parked for a pause */
	unsigned nr_exited;	/* vCPU threads that have returned */
	char crash_reason[512];	/* one line, set when state == VM_CRASHED */
	char *crash_regs;	/* multi-line register dump, malloc'd */
	vm_stop_fn on_stop;
	void *on_stop_opaque;
	uint64_t started_ns;
	/* Created to boot (vm__create): a writable disk takes the change record
	 * a VM that ended on it left (vmhop/blk-changes.h). */
	bool cold_boot;
	int serial_fd;
	struct vm_sections *sections;	/* state-section registry and buffers */
	/* MSRs a save reads: the same for every vCPU of this VM, so probed once
	 * (on the first save) rather than per vCPU and per save. */
	uint32_t *msr_index;
	uint32_t nr_msr_index;
	/* Set once a migration sent `go`: the destination may be running this
	 * guest, so only an explicit forced resume may run it here again. */
	bool handed_off;
	/* A migration is under way (pause and checkpoints wait for its end), and
	 * holds the vCPUs stopped for its final copy (no resume then). */
	bool migrating;
	bool held;
	/* vCPU throttling (auto-converge), guarded by `lock`; see vm__set_throttle. */
	unsigned throttle_pct;
	bool throttle_running;
	pthread_t throttle_thread;
	pthread_cond_t throttle_cond;
	uint64_t throttle_sleep_ns;
	/* The outgoing migration of this VM (migrate/), owned there. */
	struct migration *migration;
	/* Dirty tracking since the last checkpoint (snapshot/), owned there. */
	struct snapshot_tracker *ckpt;
};

/* Opens /dev/kvm (path overridable for tests), creates the VM, irqchip, PIT,
 * RAM, devices and vCPUs, and loads the kernel. Does not start vCPUs. */
int vm__create(struct vm **out, struct vm_config *cfg, struct err *e);
/* Builds the same VM without loading a kernel: its state (RAM, vCPUs,
 * devices) comes from a migration stream or snapshot afterwards. */
int vm__create_incoming(struct vm **out, struct vm_config *cfg, struct err *e);
void vm__destroy(struct vm *vm);
int vm__start(struct vm *vm, struct err *e);
/* Parks every vCPU outside KVM_RUN; returns once all are parked. */
int vm__pause(struct vm *vm, struct err *e);
/* Refuses (-EBUSY) once the VM was handed off to a migration destination. */
int vm__resume(struct vm *vm, struct err *e);
/* Resumes even a handed-off VM: the operator's decision, never automatic. */
int vm__resume_forced(struct vm *vm, struct err *e);
/* Throttles every vCPU to run only (100 - pct)% of the time (0 stops it,
 * at most 99): a helper thread kicks the vCPUs out of KVM_RUN every period
 * and they sleep before entering again, as QEMU's auto-converge does. A
 * pause or the VM's end cuts the sleep short. */
int vm__set_throttle(struct vm *vm, unsigned pct, struct err *e);
/* Asks the guest to power off (ACPI power button status bit). */
int vm__request_shutdown(struct vm *vm, struct err *e);
/* Stops the VM now (state QUIT). */
void vm__quit(struct vm *vm);
/* Marks the VM ended (used by devices and vCPU threads). First caller wins. */
void vm__stop(struct vm *vm, enum vm_state why, const char *reason);
/* Waits for every vCPU thread to return. */
void vm__join(struct vm *vm);
enum vm_state vm__state(struct vm *vm);

/* Interrupt lines of the in-kernel irqchip (GSI = IOAPIC pin). */
int vm__irq_line(struct vm *vm, unsigned gsi, int level);

#endif
