# Check suites for the PCI bus, GSI routing, virtio-pci, virtqueues,
# virtio-blk, the disk backend and an arrived disk's change record. Only test-virtio-kvm needs /dev/kvm: the others build a VM
# from guest RAM and buses only and play the guest driver themselves;
# test-virtio-kvm checks the ioctls on a real VM and skips (77) without it.
# Included from tests/unit/local.mk.
DEVICE_TESTS = \
	tests/unit/test-pci \
	tests/unit/test-disk \
	tests/unit/test-blk-changes \
	tests/unit/test-virtio-ring \
	tests/unit/test-virtio-pci \
	tests/unit/test-virtio-blk \
	tests/unit/test-virtio-kvm
check_PROGRAMS += $(DEVICE_TESTS)
TESTS += $(DEVICE_TESTS)

DEVICE_TEST_UTIL = tests/unit/test-virtio-util.c tests/unit/test-virtio-util.h
DEVICE_TEST_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
DEVICE_TEST_LIBS = $(VMHOP_LIBS) $(CHECK_LIBS)

tests_unit_test_pci_SOURCES = tests/unit/test-pci.c
tests_unit_test_pci_CFLAGS = $(DEVICE_TEST_CFLAGS)
tests_unit_test_pci_LDADD = $(DEVICE_TEST_LIBS)
tests_unit_test_disk_SOURCES = tests/unit/test-disk.c
tests_unit_test_disk_CFLAGS = $(DEVICE_TEST_CFLAGS)
tests_unit_test_disk_LDADD = $(DEVICE_TEST_LIBS)
tests_unit_test_blk_changes_SOURCES = tests/unit/test-blk-changes.c
tests_unit_test_blk_changes_CFLAGS = $(DEVICE_TEST_CFLAGS)
tests_unit_test_blk_changes_LDADD = $(DEVICE_TEST_LIBS)
tests_unit_test_virtio_ring_SOURCES = tests/unit/test-virtio-ring.c
tests_unit_test_virtio_ring_CFLAGS = $(DEVICE_TEST_CFLAGS)
tests_unit_test_virtio_ring_LDADD = $(DEVICE_TEST_LIBS)
tests_unit_test_virtio_pci_SOURCES = tests/unit/test-virtio-pci.c $(DEVICE_TEST_UTIL)
tests_unit_test_virtio_pci_CFLAGS = $(DEVICE_TEST_CFLAGS)
tests_unit_test_virtio_pci_LDADD = $(DEVICE_TEST_LIBS)
tests_unit_test_virtio_blk_SOURCES = tests/unit/test-virtio-blk.c $(DEVICE_TEST_UTIL)
tests_unit_test_virtio_blk_CFLAGS = $(DEVICE_TEST_CFLAGS)
tests_unit_test_virtio_blk_LDADD = $(DEVICE_TEST_LIBS)
tests_unit_test_virtio_kvm_SOURCES = tests/unit/test-virtio-kvm.c $(DEVICE_TEST_UTIL)
tests_unit_test_virtio_kvm_CFLAGS = $(DEVICE_TEST_CFLAGS)
tests_unit_test_virtio_kvm_LDADD = $(DEVICE_TEST_LIBS)
