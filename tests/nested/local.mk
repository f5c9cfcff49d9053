# tests/nested/: Debian's stock kernel as an L2 guest of vmhop, inside an L1
# VM under QEMU TCG that gives vmhop a real SVM-based KVM (tests/nested/README.md).
# About 6 minutes in all; each skips (77) without qemu-system-x86_64 or a way
# to fetch the kernel package.
NESTED_TESTS = \
	tests/nested/test-boot.py \
	tests/nested/test-pvh.py \
	tests/nested/test-disk.py \
	tests/nested/test-disk-intx.py \
	tests/nested/test-clock.py \
	tests/nested/test-migrate.py \
	tests/nested/test-diskcopy.py \
	tests/nested/test-snapshot.py \
	tests/nested/test-snapshot-disk.py
TESTS += $(NESTED_TESTS)
EXTRA_DIST += $(NESTED_TESTS) tests/nested/nested.py tests/nested/workload.c \
	tests/nested/README.md
