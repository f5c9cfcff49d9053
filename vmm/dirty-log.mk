# vmm/dirty-log: KVM dirty log + VMM writes as one bitmap (live migration,
# incremental snapshots). The header is listed so that dist ships it.
libvmhop_a_SOURCES += \
	include/vmhop/dirty-log.h \
	vmm/dirty-log.c
