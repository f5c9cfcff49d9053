#include "vmhop/vm-devices.h"
#include "vmhop/vm.h"

int vm_devices__create(struct vm *vm, struct err *e)
{
	if (vm->cfg->nr_disks)
		return err__set(e, ENOTSUP, "--disk: virtio-blk is not wired in yet");
	return 0;
}

void vm_devices__destroy(struct vm *vm)
{
	(void)vm;
}

void vm_devices__pause(struct vm *vm)
{
	(void)vm;
}

void vm_devices__resume(struct vm *vm)
{
	(void)vm;
}
