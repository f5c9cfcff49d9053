/* vmhop snapshot: checkpoints of running VMs, and VMs restored from them. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/vm-loop.h"
#include "vmhop/log.h"
#include "vmhop/snapshot.h"
#include "vmhop/vm-config.h"
#include "vmhop/vm.h"

static const char snapshot_usage[] =
	"usage: vmhop snapshot create --control PATH --output FILE [--compress none|zstd]\n"
	"                             [--live] [--base FILE] [--disks include|external] [--json]\n"
	"       vmhop snapshot restore FILE [--control PATH] [--serial MODE] [--disk-map OLD=NEW]...\n"
	"                              [--fill auto|lazy|eager] [-v]\n"
	"       vmhop snapshot info FILE [--json]\n"
	"       vmhop snapshot verify FILE\n"
	"       vmhop snapshot schedule --control PATH --dir DIR --every DURATION --keep N [...]\n"
	"\n"
	"create   pause the VM behind --control, write its state and memory to FILE\n"
	"         (a new file, written atomically), resume it; prints the pause.\n"
	"         --live: the guest runs while its memory is written, paused only\n"
	"         for the last pages and the device state. --base FILE: an\n"
	"         incremental checkpoint of what changed since FILE, the VM's\n"
	"         last checkpoint (restore follows the chain)\n"
	"restore  start a VM in this process from FILE; exits like `vmhop run`. Memory\n"
	"         stays in FILE until the guest touches it or a background thread\n"
	"         copies it in (--fill lazy); --fill eager copies it all before the\n"
	"         vCPUs start; auto (the default): lazy unless this host is too\n"
	"         slow to finish the fill within a second\n"
	"info     describe FILE (header, sections, memory)\n"
	"verify   check every record checksum and the SHA-256 trailer of FILE\n"
	"schedule a daemon checkpointing the VM into DIR on a timer, pruned to the\n"
	"         newest N chains (vmhop snapshot schedule --help)\n";

static int create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' }, { "output", required_argument, NULL, 'o' },
		{ "compress", required_argument, NULL, 'z' }, { "disks", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
		{ "live", no_argument, NULL, 'l' }, { "base", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char *control = NULL, *output = NULL, *disks = NULL, *base = NULL;
	bool compress = false, json = false, live = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': control = optarg; break;
		case 'o': output = optarg; break;
		case 'd': disks = optarg; break;
		case 'j': json = true; break;
		case 'l': live = true; break;
		case 'b': base = optarg; break;
		case 'z':
			if (strcmp(optarg, "none") && strcmp(optarg, "zstd")) {
				fprintf(stderr, "vmhop snapshot create: --compress %s: expected none or zstd\n", optarg);
				return 2;
			}
			compress = !strcmp(optarg, "zstd");
			break;
		case 'h': fputs(snapshot_usage, stdout); return 0;
		default:
			fprintf(stderr, "vmhop snapshot create: bad option '%s' (see vmhop snapshot --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (!control || !output || optind < argc) {
		fprintf(stderr, "vmhop snapshot create: --control and --output are required\n");
		return 2;
	}
	/* The running VM's process writes the file: it owns the memory. */
	char path_arg[4200], disks_arg[64];
	snprintf(path_arg, sizeof(path_arg), "path=%s", output);
	char *av[14];
	int ac = 0;
	/* Messages name the command the user typed. */
	av[ac++] = "vmhop snapshot create";
	av[ac++] = "--control";
	av[ac++] = (char *)control;
	if (json)
		av[ac++] = "--json";
	av[ac++] = "snapshot-create";
	av[ac++] = path_arg;
	if (compress)
		av[ac++] = "compress=true";
	if (live)
		av[ac++] = "live=true";
	char base_arg[4200];
	if (base) {
		snprintf(base_arg, sizeof(base_arg), "base=%s", base);
		av[ac++] = base_arg;
	}
	if (disks) {
		snprintf(disks_arg, sizeof(disks_arg), "disks=%s", disks);
		av[ac++] = disks_arg;
	}
	av[ac] = NULL;
	optind = 0;	/* full getopt reset for the second parser */
	return cmd_ctl(ac, av);
}

static int restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' }, { "serial", required_argument, NULL, 's' },
		{ "disk-map", required_argument, NULL, 'm' }, { "fill", required_argument, NULL, 'f' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	struct snapshot_restore_opts o = { 0 };
	const char *maps[SNAPSHOT_MAX_MAPS];
	int c, verbose = 0;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		switch (c) {
		case 'v': verbose++; break;
		case 'c': o.control = optarg; break;
		case 's': o.serial = optarg; break;
		case 'f':
			if (!strcmp(optarg, "auto")) {
				o.fill = SNAPSHOT_FILL_AUTO;
			} else if (!strcmp(optarg, "lazy")) {
				o.fill = SNAPSHOT_FILL_LAZY;
			} else if (!strcmp(optarg, "eager")) {
				o.fill = SNAPSHOT_FILL_EAGER;
			} else {
				fprintf(stderr, "vmhop snapshot restore: --fill %s: expected auto, lazy "
					"or eager\n", optarg);
				return 2;
			}
			break;
		case 'm':
			if (!strchr(optarg, '=') || optarg[0] == '=' || o.nr_maps == SNAPSHOT_MAX_MAPS) {
				fprintf(stderr, "vmhop snapshot restore: --disk-map %s: expected OLD=NEW "
					"(at most %d)\n", optarg, SNAPSHOT_MAX_MAPS);
				return 2;
			}
			maps[o.nr_maps++] = optarg;
			o.maps = maps;
			break;
		case 'h': fputs(snapshot_usage, stdout); return 0;
		default:
			fprintf(stderr, "vmhop snapshot restore: bad option '%s' (see vmhop snapshot --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "vmhop snapshot restore: expected one checkpoint FILE\n");
		return 2;
	}
	log__set_level(verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);
	struct err e = { 0 };
	struct vm *vm = NULL;
	struct vm_config *cfg = NULL;
	if (snapshot__restore(argv[optind], &o, &vm, &cfg, &e) < 0) {
		fprintf(stderr, "vmhop snapshot restore: %s: %s\n", argv[optind], e.msg);
		return 1;
	}
	int rc = vm_loop__run(vm, "vmhop snapshot restore");
	vm__destroy(vm);
	vm_config__free(cfg);
	free(cfg);
	return rc;
}

int cmd_snapshot(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(snapshot_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	if (!strcmp(sub, "create"))
		return create(argc - 1, argv + 1);
	if (!strcmp(sub, "restore"))
		return restore(argc - 1, argv + 1);
	if (!strcmp(sub, "info") || !strcmp(sub, "verify"))
		return cmd_stream_info(argc - 1, argv + 1);
	if (!strcmp(sub, "schedule"))
		return cmd_snapshot_schedule(argc - 1, argv + 1);
	fprintf(stderr, "vmhop snapshot: unknown subcommand '%s' (create, restore, info, verify, "
		"schedule)\n", sub);
	return 2;
}
