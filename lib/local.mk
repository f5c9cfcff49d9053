# lib/: helpers every module uses (errors, logging, parsing, I/O loops).
libvmhop_a_SOURCES += lib/err.c lib/log.c lib/util.c
EXTRA_DIST += lib/README.md
