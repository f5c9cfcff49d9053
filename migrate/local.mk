# migrate/: the stream codec (header, framed records, CRC32C, digest), memory
# records and index, and the state-section registry. See migrate/README.md.
libvmhop_a_SOURCES += \
	migrate/crc32c.c \
	migrate/stream-io.c \
	migrate/stream-stage.c \
	migrate/ram-extents.c \
	migrate/stream-buf.c \
	migrate/stream-header.c \
	migrate/stream-types.c \
	migrate/stream-write.c \
	migrate/stream-hash.c \
	include/vmhop/stream-hash.h \
	migrate/file-hasher.c \
	include/vmhop/file-hasher.h \
	migrate/stream-read.c \
	migrate/stream-mem-enc.c \
	migrate/stream-mem-dec.c \
	migrate/stream-index.c \
	migrate/section.c \
	migrate/section-codec.c \
	migrate/section-stream.c \
	migrate/disk-sections.c \
	migrate/disk-digest.c \
	migrate/disk-send.c \
	migrate/disk-readahead.c \
	migrate/disk-recv.c \
	migrate/disk-copy.h \
	migrate/mig-proto.c \
	migrate/mig-fault.c \
	migrate/mig-source.c \
	migrate/mig-lanes.c \
	migrate/mig-lanes.h \
	migrate/mig-source.h \
	migrate/mig-control.c \
	migrate/mig-dest.c
EXTRA_DIST += migrate/README.md
