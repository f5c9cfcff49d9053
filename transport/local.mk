# transport/: channels behind one ops table (tcp, unix, tls).
libvmhop_a_SOURCES += \
	transport/transport.h \
	transport/uri.c \
	transport/tcp.c \
	transport/unix.c \
	transport/tls.c \
	transport/channel.c
EXTRA_DIST += transport/README.md contrib/make-test-ca.sh
