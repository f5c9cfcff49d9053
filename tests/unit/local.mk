# tests/unit/: Check suites, one program per module.
include tests/unit/stream.mk
