# cli/: the vmhop binary's command layer: argument parsing, printing, exit codes.
vmhop_SOURCES += \
	cli/main.c \
	cli/commands.h \
	cli/cmd-run.c \
	cli/vm-loop.c \
	cli/vm-loop.h \
	cli/cmd-ctl.c \
	cli/ctl-client.c \
	cli/ctl-client.h \
	cli/cmd-migrate-send.c \
	cli/cmd-migrate-recv.c \
	cli/cmd-stream-info.c \
	cli/cmd-snapshot.c \
	cli/cmd-host-profile.c \
	cli/cmd-compat-check.c
EXTRA_DIST += cli/README.md
vmhop_SOURCES += cli/cmd-snapshot-schedule.c
vmhop_SOURCES += cli/cmd-agent.c cli/cmd-evacuate.c cli/cmd-evacuate-run.c agent/evacuate.h
