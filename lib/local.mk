# lib/: helpers every module uses (errors, logging, parsing, I/O loops).
libvmhop_a_SOURCES += lib/err.c lib/log.c lib/util.c
EXTRA_DIST += lib/README.md

# Every public header, so `make dist` ships them.
noinst_HEADERS = \
	include/vmhop/boot.h \
	include/vmhop/channel.h \
	include/vmhop/ram-extents.h \
	include/vmhop/compat.h \
	include/vmhop/cpu-models.h \
	include/vmhop/host-profile.h \
	include/vmhop/migrate.h \
	include/vmhop/migrate-proto.h \
	include/vmhop/migrate-fault.h \
	include/vmhop/control-vm.h \
	include/vmhop/control.h \
	include/vmhop/cpuid.h \
	include/vmhop/dirty-log.h \
	include/vmhop/disk.h \
	include/vmhop/disk-sections.h \
	include/vmhop/blk-track.h \
	include/vmhop/err.h \
	include/vmhop/guest-mem.h \
	include/vmhop/io-bus.h \
	include/vmhop/irq-routing.h \
	include/vmhop/layout.h \
	include/vmhop/log.h \
	include/vmhop/pci.h \
	include/vmhop/pm.h \
	include/vmhop/release.h \
	include/vmhop/section.h \
	include/vmhop/snapshot.h \
	include/vmhop/stream.h \
	include/vmhop/uart.h \
	include/vmhop/util.h \
	include/vmhop/vcpu-state.h \
	include/vmhop/vcpu.h \
	include/vmhop/virtio-blk.h \
	include/vmhop/virtio-pci.h \
	include/vmhop/virtio.h \
	include/vmhop/vm-config-json.h \
	include/vmhop/vm-config.h \
	include/vmhop/vm-devices.h \
	include/vmhop/vm-sections.h \
	include/vmhop/vm-state.h \
	include/vmhop/vm.h
