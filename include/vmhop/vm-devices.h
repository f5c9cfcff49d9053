/* The VM's PCI devices, created from its configuration: one place that
 * knows the device set, so vm.c stays free of device details. */
#ifndef VMHOP_VM_DEVICES_H
#define VMHOP_VM_DEVICES_H

#include "vmhop/err.h"

struct vm;

int vm_devices__create(struct vm *vm, struct err *e);
void vm_devices__destroy(struct vm *vm);
/* Stop taking device requests and finish in-flight ones (vCPUs are parked). */
void vm_devices__pause(struct vm *vm);
void vm_devices__resume(struct vm *vm);

#endif
