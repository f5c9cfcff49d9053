# vmm/ devices: PCI bus 0 (conf1), GSI routing and irqfds, the virtio-pci
# transport, split virtqueues, virtio-blk and its raw disk backend (with the
# block trackers and an arrived disk's change record).
# Included from the top Makefile.am. Headers are listed so `make dist` ships them.
libvmhop_a_SOURCES += \
	vmm/irq-routing.c \
	vmm/pci.c \
	vmm/virtqueue.c \
	vmm/virtio-pci.c \
	vmm/virtio-blk.c \
	vmm/blk-track.c \
	vmm/blk-changes.c \
	vmm/disk.c \
	include/vmhop/irq-routing.h \
	include/vmhop/pci.h \
	include/vmhop/virtio.h \
	include/vmhop/virtio-pci.h \
	include/vmhop/virtio-blk.h \
	include/vmhop/blk-track.h \
	include/vmhop/blk-changes.h \
	include/vmhop/disk.h
