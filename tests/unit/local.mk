# tests/unit/: Check suites, one program per module.
include tests/unit/stream.mk
include tests/unit/devices.mk
include tests/unit/control.mk
include tests/unit/migrate.mk
include tests/unit/harness.mk
include tests/unit/compat.mk
include tests/unit/schedule.mk
