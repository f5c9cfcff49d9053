# transport/: channels behind one ops table (tcp, unix, tls, rdma, file) and the
# fault-injecting wrapper for tests.
libvmhop_a_SOURCES += \
	transport/transport.h \
	transport/uri.c \
	transport/tcp.c \
	transport/unix.c \
	transport/tls.c \
	transport/file.c \
	transport/fault.c \
	transport/region.c \
	transport/rdma.h \
	transport/rdma.c \
	transport/rdma-io.c \
	transport/channel.c
EXTRA_DIST += transport/README.md contrib/make-test-ca.sh
