#include "vmhop/irq-routing.h"
#include "vmhop/pci.h"
#include "vmhop/virtio-blk.h"
#include "vmhop/vm-devices.h"
#include "vmhop/vm.h"

int vm_devices__create(struct vm *vm, struct err *e)
{
	int r = irq_routing__create(&vm->irq, vm->vm_fd, e);
	if (!r)
		r = pci__create(vm, e);
	for (unsigned i = 0; !r && i < vm->cfg->nr_disks; i++)
		r = virtio_blk__create(vm, &vm->cfg->disks[i], e);
	return r;
}

void vm_devices__destroy(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_blk; i++)
		virtio_blk__destroy(vm->blk[i]);
	vm->nr_blk = 0;
	if (vm->pci)
		pci__destroy(vm);
	irq_routing__destroy(vm->irq);
	vm->irq = NULL;
}

void vm_devices__pause(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_blk; i++)
		virtio_blk__pause(vm->blk[i]);
}

void vm_devices__resume(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_blk; i++)
		virtio_blk__resume(vm->blk[i]);
}
