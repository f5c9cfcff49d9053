# vmm/control*: the control socket server (generic), the VM's command table,
# and struct vm_config as JSON. Headers are listed so that dist ships them.
libvmhop_a_SOURCES += \
	include/vmhop/control.h \
	include/vmhop/control-vm.h \
	include/vmhop/vm-config-json.h \
	vmm/control-internal.h \
	vmm/control.c \
	vmm/control-dispatch.c \
	vmm/control-args.c \
	vmm/control-vm.c \
	vmm/vm-config-json.c
