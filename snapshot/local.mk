# snapshot/: checkpoints of a VM into stream files, and VMs rebuilt from them.
libvmhop_a_SOURCES += \
	snapshot/snapshot-create.c \
	snapshot/snapshot-live.c \
	snapshot/snapshot-chain.c \
	snapshot/snapshot-internal.h \
	snapshot/snapshot-restore.c \
	snapshot/snapshot-control.c \
	include/vmhop/snapshot.h
EXTRA_DIST += snapshot/README.md
