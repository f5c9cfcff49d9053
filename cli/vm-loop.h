/* Runs a created VM on this thread's libuv loop: control socket, signals,
 * and the VM's end. Shared by run, migrate-recv and snapshot restore. */
#ifndef VMHOP_CLI_VM_LOOP_H
#define VMHOP_CLI_VM_LOOP_H

struct vm;

/* Starts the vCPUs and returns the process exit code once the VM ended,
 * after printing why on stderr (prefixed with `who`). */
int vm_loop__run(struct vm *vm, const char *who);

/* The same, calling started(vm, opaque) once the vCPUs run (migrate-recv
 * confirms `running` to the source there). A non-zero return stops the VM. */
typedef int (*vm_loop_started_fn)(struct vm *vm, void *opaque);
int vm_loop__run_hooked(struct vm *vm, const char *who, vm_loop_started_fn started,
			void *opaque);

#endif
