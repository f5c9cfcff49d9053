# tests/rdma/: RDMA transport tests inside a TCG guest with soft-RoCE (rdma_rxe).
# The guest runs rdma-chantest (every channel case over rdma:) and replays a
# recorded migration stream; see tests/rdma/README.md. Skips (77) without
# qemu-system-x86_64 or a way to fetch the kernel package, or with
# VMHOP_RDMA_SKIP=1.
check_PROGRAMS += tests/rdma/rdma-chantest
tests_rdma_rdma_chantest_SOURCES = tests/rdma/rdma-chantest.c
tests_rdma_rdma_chantest_LDADD = $(VMHOP_LIBS)
TESTS += tests/rdma/test-rdma.py
EXTRA_DIST += tests/rdma/test-rdma.py tests/rdma/rdma.py tests/rdma/README.md
