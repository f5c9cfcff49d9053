# tests/e2e/: whole-command tests on real /dev/kvm (python3, stdlib only).
E2E_TESTS = \
	tests/e2e/test-boot-smp.py \
	tests/e2e/test-disk.py \
	tests/e2e/test-control.py \
	tests/e2e/test-bad-input.py \
	tests/e2e/test-snapshot.py \
	tests/e2e/test-snapshot-live.py \
	tests/e2e/test-snapshot-schedule.py \
	tests/e2e/test-snapshot-chain.py \
	tests/e2e/test-snapshot-disks.py \
	tests/e2e/test-snapshot-lazy.py \
	tests/e2e/test-migrate.py \
	tests/e2e/test-migrate-converge.py \
	tests/e2e/test-migrate-faults.py \
	tests/e2e/test-migrate-pingpong.py \
	tests/e2e/test-migrate-peers.py \
	tests/e2e/test-migrate-disk.py \
	tests/e2e/test-migrate-tls.py \
	tests/e2e/test-migrate-diskcopy.py \
	tests/e2e/test-migrate-diskcopy-faults.py \
	tests/e2e/test-migrate-diskcopy-back.py \
	tests/e2e/test-migrate-diskcopy-restart.py \
	tests/e2e/test-migrate-channels.py \
	tests/e2e/test-compat-live.py \
	tests/e2e/test-compat-check.py
TESTS += $(E2E_TESTS)
EXTRA_DIST += $(E2E_TESTS) tests/e2e/vmhoptest.py tests/e2e/diskback.py tests/e2e/README.md
# The tests import vmhoptest from their own directory.
PY_LOG_COMPILER = env PYTHONPATH=$(abs_top_srcdir)/tests/e2e $(PYTHON3)
