/* vmhop: one binary, one subcommand per file (cli/cmd-*.c). */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "config.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "run", cmd_run, "start a VM in this process" },
	{ "ctl", cmd_ctl, "send a request to a running VM's control socket" },
	{ "migrate-send", cmd_migrate_send, "live-migrate a running VM to another vmhop" },
	{ "migrate-recv", cmd_migrate_recv, "receive a live-migrated VM and run it" },
	{ "snapshot", cmd_snapshot, "checkpoint a running VM to a file, or restore one" },
	{ "stream-info", cmd_stream_info, "describe a migration stream or snapshot file" },
	{ "host-profile", cmd_host_profile, "describe this host for migration planning" },
	{ "compat-check", cmd_compat_check, "check whether a VM can move between two hosts" },
	{ "agent", cmd_agent, "serve this host to evacuate and other clients (mutual TLS)" },
	{ "evacuate", cmd_evacuate, "move every VM off a host to other hosts" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: vmhop COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'vmhop COMMAND --help' describes each command; see also vmhop(1).\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("vmhop %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "vmhop: unknown command '%s' (try 'vmhop --help')\n", argv[1]);
	return 2;
}
