/* vmhop run: one VM in this process until it shuts down or is told to quit. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/vm-loop.h"
#include "vmhop/log.h"
#include "vmhop/util.h"
#include "vmhop/vm-config.h"
#include "vmhop/vm.h"

static const char run_usage[] =
	"usage: vmhop run --kernel PATH [OPTIONS]\n"
	"\n"
	"Start one VM in this process; exits when the guest powers off.\n"
	"\n"
	"  --kernel PATH        PVH ELF kernel (XEN_ELFNOTE_PHYS32_ENTRY) to boot\n"
	"  --initrd PATH        initial ramdisk\n"
	"  --cmdline STR        kernel command line\n"
	"  --memory SIZE        guest RAM, with K/M/G suffix (default 512M)\n"
	"  --cpus N             number of vCPUs (default 1)\n"
	"  --cpu-model NAME     baseline (default, like qemu64), x86-64-v2, x86-64-v3, host\n"
	"  --disk SPEC          PATH[,id=ID][,cache=none|writeback][,readonly]; repeatable;\n"
	"                       cache=none (O_DIRECT) is the default\n"
	"  --serial MODE        stdio (default), file:PATH (appended) or none\n"
	"  --control PATH       control socket (JSON lines, see vmhop-ctl(1))\n"
	"  --name NAME          VM name shown by query-status\n"
	"  -v, --verbose        more diagnostics on stderr (repeat for debug)\n"
	"  -h, --help           this text\n"
	"\n"
	"Exit status: 0 when the guest powers off or resets, or on `quit`;\n"
	"1 when the VM fails (triple fault, KVM error: registers are dumped);\n"
	"2 for bad options.\n";

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEMORY, OPT_CPUS, OPT_CPU_MODEL,
       OPT_DISK, OPT_SERIAL, OPT_CONTROL, OPT_NAME };

static const struct option run_options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "cpu-model", required_argument, NULL, OPT_CPU_MODEL },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int set_string(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -ENOMEM;
}

/* Returns 0, or prints one line and returns the exit code. */
static int parse(int argc, char **argv, struct vm_config *cfg)
{
	struct err e = { 0 };
	int verbose = 0;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "vh", run_options, NULL)) != -1) {
		uint64_t n;
		int r = 0;
		switch (c) {
		case OPT_KERNEL: r = set_string(&cfg->kernel, optarg); break;
		case OPT_INITRD: r = set_string(&cfg->initrd, optarg); break;
		case OPT_CMDLINE: r = set_string(&cfg->cmdline, optarg); break;
		case OPT_CPU_MODEL: r = set_string(&cfg->cpu_model, optarg); break;
		case OPT_CONTROL: r = set_string(&cfg->control_path, optarg); break;
		case OPT_MEMORY:
			r = util__parse_size(optarg, &n);
			if (r < 0 || n < 2 * MiB || n % (4 * KiB)) {
				fprintf(stderr, "vmhop run: --memory %s: expected a size like 512M or 1G "
					"(at least 2M, a multiple of 4K)\n", optarg);
				return 2;
			}
			cfg->mem_size = n;
			break;
		case OPT_CPUS:
			if (util__parse_uint(optarg, 1, 4096, &n) < 0) {
				fprintf(stderr, "vmhop run: --cpus %s: expected a number from 1 to 4096\n", optarg);
				return 2;
			}
			cfg->nr_cpus = (unsigned)n;
			break;
		case OPT_DISK: r = vm_config__add_disk(cfg, optarg, &e); break;
		case OPT_SERIAL: r = vm_config__set_serial(cfg, optarg, &e); break;
		case OPT_NAME:
			if (strlen(optarg) >= sizeof(cfg->name)) {
				fprintf(stderr, "vmhop run: --name: at most %zu characters\n", sizeof(cfg->name) - 1);
				return 2;
			}
			snprintf(cfg->name, sizeof(cfg->name), "%s", optarg);
			break;
		case 'v': verbose++; break;
		case 'h': fputs(run_usage, stdout); exit(0);
		case ':':
			fprintf(stderr, "vmhop run: %s needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "vmhop run: unknown option '%s' (see vmhop run --help)\n", argv[optind - 1]);
			return 2;
		}
		if (r < 0) {
			fprintf(stderr, "vmhop run: %s\n", e.code ? e.msg : strerror(-r));
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmhop run: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!cfg->kernel) {
		fprintf(stderr, "vmhop run: --kernel is required (see vmhop run --help)\n");
		return 2;
	}
	log__set_level(verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	vm_config__init(&cfg);
	int rc = parse(argc, argv, &cfg);
	if (rc) {
		vm_config__free(&cfg);
		return rc;
	}
	struct err e = { 0 };
	struct vm *vm = NULL;
	if (vm__create(&vm, &cfg, &e) < 0) {
		fprintf(stderr, "vmhop run: %s\n", e.msg);
		vm_config__free(&cfg);
		return 1;
	}
	rc = vm_loop__run(vm, "vmhop run");
	vm__destroy(vm);
	vm_config__free(&cfg);
	return rc;
}
