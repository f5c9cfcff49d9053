# transport/: channels (tcp today; tls and rdma behind the same calls).
libvmhop_a_SOURCES += \
	transport/uri.c \
	transport/tcp.c \
	transport/channel.c
EXTRA_DIST += transport/README.md
