# vmm/: the VM process — KVM, guest RAM, vCPUs, buses, devices, control socket.
libvmhop_a_SOURCES += \
	vmm/io-bus.c \
	vmm/guest-mem.c \
	vmm/vm-config.c
