/* vmhop migrate-recv: a VMM process that starts with no VM, receives one
 * from a migration source, runs it once the source says go, and then lives
 * on like `vmhop run`. */
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/vm-loop.h"
#include "vmhop/log.h"
#include "vmhop/migrate-fault.h"
#include "vmhop/migrate.h"
#include "vmhop/util.h"
#include "vmhop/vm-config.h"
#include "vmhop/vm.h"

#define WHO "vmhop migrate-recv"
#define MAX_MAPS 16
#define FAULT_ENV "VMHOP_MIGRATE_FAULT"

static const char recv_usage[] =
	"usage: vmhop migrate-recv --listen URI [OPTIONS]\n"
	"\n"
	"Wait for one incoming live migration, then run the guest it brings (the VM's\n"
	"memory size, vCPUs, CPU model, devices and disks come from the stream).\n"
	"Exits like `vmhop run` once that guest shuts down.\n"
	"\n"
	"  --listen URI            where to accept the source: tcp:ADDR:PORT,\n"
	"                          tls:ADDR:PORT (TLS 1.3, mutual certificates) or\n"
	"                          unix:PATH (port 0: any free port; the address\n"
	"                          chosen is printed on stderr)\n"
	"  --tls-ca FILE           tls: the CA that signed the sources' certificates\n"
	"  --tls-cert FILE         tls: this side's certificate (PEM)\n"
	"  --tls-key FILE          tls: its key (PEM, not readable by group or others)\n"
	"  --tls-allow NAME        tls: accept only a source whose certificate subject\n"
	"                          is NAME (its CN, or the whole subject as RFC 2253);\n"
	"                          repeatable; default: any the CA signed\n"
	"  --control PATH          control socket of the received VM (vmhop-ctl(1))\n"
	"  --serial MODE           stdio (default), file:PATH or none\n"
	"  --disk-map OLD=NEW      open the source's disk OLD (its path, or for a disk the\n"
	"                          source copies, its id) as NEW here; repeatable\n"
	"  --disk-dir DIR          create the disks the source copies in DIR, as ID.img\n"
	"                          (never over an existing file)\n"
	"  --accept-timeout SECS   give up when no source connects in time (default: wait)\n"
	"  --io-timeout SECS       a source silent this long has failed (default 15)\n"
	"  -v, --verbose           more diagnostics on stderr\n"
	"  -h, --help              this text\n"
	"\n"
	"Exit status: 0 when the received guest powers off (or on `quit`); 1 when\n"
	"the migration fails (nothing runs here then) or the guest fails; 2 for bad\n"
	"options.\n";

enum { OPT_LISTEN = 256, OPT_CONTROL, OPT_SERIAL, OPT_DISK_MAP, OPT_ACCEPT_TIMEOUT,
       OPT_IO_TIMEOUT, OPT_TLS_CA, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_ALLOW, OPT_DISK_DIR };

static const struct option recv_options[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "disk-map", required_argument, NULL, OPT_DISK_MAP },
	{ "disk-dir", required_argument, NULL, OPT_DISK_DIR },
	{ "accept-timeout", required_argument, NULL, OPT_ACCEPT_TIMEOUT },
	{ "io-timeout", required_argument, NULL, OPT_IO_TIMEOUT },
	{ "tls-ca", required_argument, NULL, OPT_TLS_CA },
	{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },
	{ "tls-key", required_argument, NULL, OPT_TLS_KEY },
	{ "tls-allow", required_argument, NULL, OPT_TLS_ALLOW },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct recv_args {
	const char *listen;
	uint64_t accept_timeout_s;
	struct migrate_recv_opts o;
	const char *from[MAX_MAPS], *to[MAX_MAPS];
	char *maps[MAX_MAPS];
	struct channel_tls_opts tls;
	bool any_tls;
};

static int parse_map(struct recv_args *a, const char *spec)
{
	const char *eq = strchr(spec, '=');
	if (!eq || eq == spec || !eq[1]) {
		fprintf(stderr, WHO ": --disk-map %s: expected OLD=NEW\n", spec);
		return 2;
	}
	if (a->o.nr_maps == MAX_MAPS) {
		fprintf(stderr, WHO ": at most %d --disk-map options\n", MAX_MAPS);
		return 2;
	}
	char *copy = strdup(spec);
	if (!copy)
		return 1;
	copy[eq - spec] = 0;
	a->maps[a->o.nr_maps] = copy;
	a->from[a->o.nr_maps] = copy;
	a->to[a->o.nr_maps] = copy + (eq - spec) + 1;
	a->o.nr_maps++;
	return 0;
}

static int parse(int argc, char **argv, struct recv_args *a)
{
	int verbose = 0, c;
	uint64_t n;
	optind = 1;
	opterr = 0;
	a->o.io_timeout_ms = MIGRATE_DEFAULT_IO_TIMEOUT_MS;
	while ((c = getopt_long(argc, argv, ":vh", recv_options, NULL)) != -1) {
		int r = 0;
		switch (c) {
		case OPT_LISTEN: a->listen = optarg; break;
		case OPT_CONTROL: a->o.control = optarg; break;
		case OPT_SERIAL: a->o.serial = optarg; break;
		case OPT_DISK_MAP: r = parse_map(a, optarg); break;
		case OPT_DISK_DIR: {
			struct stat st;
			if (stat(optarg, &st) < 0 || !S_ISDIR(st.st_mode)) {
				fprintf(stderr, WHO ": --disk-dir %s: not a directory\n", optarg);
				return 2;
			}
			a->o.disk_dir = optarg;
			break;
		}
		case OPT_TLS_CA: a->tls.ca = optarg; a->any_tls = true; break;
		case OPT_TLS_CERT: a->tls.cert = optarg; a->any_tls = true; break;
		case OPT_TLS_KEY: a->tls.key = optarg; a->any_tls = true; break;
		case OPT_TLS_ALLOW:
			if (!*optarg) {
				fprintf(stderr, WHO ": --tls-allow needs a subject name\n");
				return 2;
			}
			if (a->tls.nr_allow == CHANNEL_TLS_ALLOW_MAX) {
				fprintf(stderr, WHO ": at most %d --tls-allow options\n",
					CHANNEL_TLS_ALLOW_MAX);
				return 2;
			}
			a->tls.allow[a->tls.nr_allow++] = optarg;
			a->any_tls = true;
			break;
		case OPT_ACCEPT_TIMEOUT:
		case OPT_IO_TIMEOUT:
			if (util__parse_uint(optarg, c == OPT_IO_TIMEOUT ? 1 : 0,
					     c == OPT_IO_TIMEOUT ? 3600 : 86400, &n) < 0) {
				fprintf(stderr, WHO ": --%s %s: expected seconds (%s)\n",
					c == OPT_IO_TIMEOUT ? "io-timeout" : "accept-timeout", optarg,
					c == OPT_IO_TIMEOUT ? "1 to 3600" : "0 to 86400, 0: wait");
				return 2;
			}
			if (c == OPT_IO_TIMEOUT)
				a->o.io_timeout_ms = n * 1000;
			else
				a->accept_timeout_s = n;
			break;
		case 'v': verbose++; break;
		case 'h': fputs(recv_usage, stdout); exit(0);
		case ':':
			fprintf(stderr, WHO ": %s needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, WHO ": unknown option '%s' (see vmhop migrate-recv --help)\n",
				argv[optind - 1]);
			return 2;
		}
		if (r)
			return r;
	}
	if (optind < argc) {
		fprintf(stderr, WHO ": unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!a->listen) {
		fprintf(stderr, WHO ": --listen URI is required\n");
		return 2;
	}
	struct err e = { 0 };
	struct channel_addr addr;
	if (channel__parse_uri(a->listen, true, &addr, &e) < 0) {
		fprintf(stderr, WHO ": --listen: %s\n", e.msg);
		return 2;
	}
	if (addr.kind == CHANNEL_FILE) {
		fprintf(stderr, WHO ": --listen %s: a live migration needs tcp:, tls: or unix: "
			"(file: holds a recorded stream)\n", a->listen);
		return 2;
	}
	if (addr.kind == CHANNEL_TLS && (!a->tls.ca || !a->tls.cert || !a->tls.key)) {
		char missing[64] = "";
		const char *what[] = { a->tls.ca ? NULL : "--tls-ca FILE",
				       a->tls.cert ? NULL : "--tls-cert FILE",
				       a->tls.key ? NULL : "--tls-key FILE" };
		for (int i = 0; i < 3; i++)
			if (what[i]) {
				strcat(missing, missing[0] ? ", " : "");
				strcat(missing, what[i]);
			}
		fprintf(stderr, WHO ": --listen %s needs --tls-ca, --tls-cert and --tls-key "
			"(missing: %s)\n", a->listen, missing);
		return 2;
	}
	if (addr.kind != CHANNEL_TLS && a->any_tls) {
		fprintf(stderr, WHO ": --tls-ca, --tls-cert, --tls-key and --tls-allow go with "
			"--listen tls:ADDR:PORT only\n");
		return 2;
	}
	a->tls.handshake_timeout_ms = (int)a->o.io_timeout_ms;
	struct vm_config probe;
	vm_config__init(&probe);
	if (a->o.serial && vm_config__set_serial(&probe, a->o.serial, &e) < 0) {
		vm_config__free(&probe);
		fprintf(stderr, WHO ": %s\n", e.msg);
		return 2;
	}
	vm_config__free(&probe);
	a->o.fault = getenv(FAULT_ENV);
	if (a->o.fault && mig_fault__check(a->o.fault, &e) < 0) {
		fprintf(stderr, WHO ": %s: %s\n", FAULT_ENV, e.msg);
		return 2;
	}
	a->o.map_from = a->from;
	a->o.map_to = a->to;
	log__set_level(verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);
	return 0;
}

static int on_started(struct vm *vm, void *opaque)
{
	struct migrate_incoming *in = opaque;
	struct err e = { 0 };
	(void)vm;
	/* The guest is ours now whatever happens to this message: the source
	 * never resumes on its own after go, so keep running even if it is lost. */
	if (migrate__incoming_running(in, &e) < 0)
		fprintf(stderr, WHO ": warning: could not confirm to the source that the guest runs "
			"(%s); the source keeps its copy paused\n", e.msg);
	return 0;
}

int cmd_migrate_recv(int argc, char **argv)
{
	struct recv_args a = { 0 };
	int rc = parse(argc, argv, &a);
	struct err e = { 0 };
	struct channel_listener l = { .fd = -1 };
	struct migrate_incoming in = { .ch = { .fd = -1 } };
	if (!rc && channel__listen_tls(a.listen, &a.tls, &l, &e) < 0) {
		fprintf(stderr, WHO ": %s\n", e.msg);
		rc = 1;
	}
	if (!rc) {
		fprintf(stderr, WHO ": listening on %s\n", l.local);
		fflush(stderr);
	}
	uint64_t t0 = 0;
	/* Pre-flight checks (compat-check) only ask for this host's profile;
	 * the listener stays until a migration proper arrives. */
	while (!rc) {
		if (channel__accept(&l, (int)(a.accept_timeout_s * 1000), &in.ch, &e) < 0) {
			fprintf(stderr, WHO ": %s\n", e.msg);
			rc = 1;
			break;
		}
		t0 = util__now_ns();
		a.o.listener = &l;	/* the source's further channels (--channels) */
		int r = migrate__incoming(&in, &a.o, &e);
		if (r == MIGRATE_PROBED) {
			fprintf(stderr, WHO ": answered a pre-flight check from %s\n", in.ch.peer);
			fflush(stderr);
			continue;
		}
		if (r < 0) {
			fprintf(stderr, WHO ": migration from %s failed after %llu memory records: %s\n",
				in.ch.peer[0] ? in.ch.peer : "?", (unsigned long long)in.mem_records, e.msg);
			rc = 1;
		}
		break;
	}
	/* One migration per process: nobody else may connect now. */
	channel__listener_close(&l);
	if (!rc) {
		char who[256];
		channel__identity(&in.ch, who, sizeof(who));
		fprintf(stderr, WHO ": received the guest from %s%s%s%s (%.1f MiB in %llu rounds, %.0f ms); "
			"running it\n", in.ch.peer, strcmp(who, in.ch.peer) ? " (" : "",
			strcmp(who, in.ch.peer) ? who : "", strcmp(who, in.ch.peer) ? ")" : "",
			(double)in.bytes / (1024.0 * 1024.0),
			(unsigned long long)in.rounds, (double)(util__now_ns() - t0) / 1e6);
		fflush(stderr);
		rc = vm_loop__run_hooked(in.vm, WHO, on_started, &in);
		migrate__incoming_free(&in);
	}
	for (unsigned i = 0; i < a.o.nr_maps; i++)
		free(a.maps[i]);
	return rc;
}
