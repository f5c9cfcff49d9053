# Control socket: the generic server (fake command table), the VM's commands
# (fake VM, no KVM), vm_config JSON, and the `vmhop ctl` client.
CONTROL_TESTS = \
	tests/unit/test-control \
	tests/unit/test-control-vm \
	tests/unit/test-control-vmconfig \
	tests/unit/test-control-cli
check_PROGRAMS += $(CONTROL_TESTS)
TESTS += $(CONTROL_TESTS)

CONTROL_HARNESS = tests/unit/test-control-harness.c tests/unit/test-control-harness.h

tests_unit_test_control_SOURCES = tests/unit/test-control.c $(CONTROL_HARNESS)
tests_unit_test_control_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_control_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)

tests_unit_test_control_vm_SOURCES = tests/unit/test-control-vm.c
tests_unit_test_control_vm_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_control_vm_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)

tests_unit_test_control_vmconfig_SOURCES = tests/unit/test-control-vmconfig.c
tests_unit_test_control_vmconfig_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_control_vmconfig_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)

# The client is compiled in, so it is tested without the vmhop binary.
tests_unit_test_control_cli_SOURCES = tests/unit/test-control-cli.c cli/cmd-ctl.c cli/ctl-client.c $(CONTROL_HARNESS)
tests_unit_test_control_cli_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_control_cli_LDADD = $(VMHOP_LIBS) $(CHECK_LIBS)
