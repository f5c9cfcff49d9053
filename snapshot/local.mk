# snapshot/: checkpoints of a VM into stream files, and VMs rebuilt from them.
libvmhop_a_SOURCES += \
	snapshot/snapshot-create.c \
	snapshot/snapshot-live.c \
	snapshot/snapshot-out.c \
	snapshot/snapshot-chain.c \
	snapshot/snapshot-disk.c \
	snapshot/snapshot-internal.h \
	snapshot/snapshot-restore.c \
	snapshot/restore-index.c \
	snapshot/snapshot-control.c \
	include/vmhop/snapshot.h
EXTRA_DIST += snapshot/README.md
# The checkpoint scheduler's naming and pruning decisions (pure; its daemon is cli/cmd-snapshot-schedule.c).
libvmhop_a_SOURCES += snapshot/schedule-prune.c include/vmhop/schedule.h
EXTRA_DIST += contrib/vmhop-snapshot@.service contrib/vmhop-snapshot-once@.service contrib/vmhop-snapshot-once@.timer
