/* The VM's control commands (query-status, pause, resume, shutdown, quit,
 * query-config). Start the server with them and the struct vm as ctx:
 *
 *	size_t n;
 *	const struct control_cmd *cmds = control_vm__commands(&n);
 *	control__start(&srv, loop, cfg->control_path, cmds, n, vm, &e);
 *
 * Later commands (migrate, snapshot...) are entries added to the table in
 * vmm/control-vm.c, their handlers in their own files. */
#ifndef VMHOP_CONTROL_VM_H
#define VMHOP_CONTROL_VM_H

#include "vmhop/control.h"
#include "vmhop/vm.h"

const struct control_cmd *control_vm__commands(size_t *n);

#endif
