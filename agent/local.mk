# agent/: the per-host agent and the evacuation planner.
libvmhop_a_SOURCES += agent/plan.c agent/plan.h \
	agent/agent.h agent/agent-server.c agent/agent-requests.c agent/agent-jobs.c \
	agent/agent-vms.c agent/agent-client.c agent/agent-client.h
EXTRA_DIST += agent/README.md
EXTRA_DIST += contrib/vmhop-agent.service
