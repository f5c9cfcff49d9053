# vmm/: the VM process — KVM, guest RAM, vCPUs, buses, devices, control socket.
libvmhop_a_SOURCES += \
	vmm/io-bus.c \
	vmm/guest-mem.c \
	vmm/lazy-mem.c \
	include/vmhop/lazy-mem.h \
	vmm/vm-config.c \
	vmm/vm.c \
	vmm/vm-state.c \
	vmm/vm-devices.c \
	vmm/vm-sections.c \
	vmm/vcpu.c \
	vmm/vcpu-state.c \
	vmm/cpuid.c \
	vmm/boot-common.c \
	vmm/boot-pvh.c \
	vmm/boot-bzimage.c \
	vmm/boot-vcpu.c \
	vmm/acpi.c \
	vmm/mptable.c \
	vmm/uart.c \
	vmm/pm.c \
	vmm/throttle.c
EXTRA_DIST += vmm/README.md
