/* vmhop agent: the per-host daemon (agent/agent-server.c and friends). This
 * file only reads options. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/agent.h"
#include "cli/commands.h"
#include "vmhop/util.h"

#define WHO "vmhop agent"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmhop agent --listen tls:ADDR:PORT --run-dir DIR --tls-ca FILE --tls-cert FILE\n"
		"                   --tls-key FILE [OPTIONS]\n"
		"\n"
		"Serve this host to `vmhop evacuate` and other clients over mutual TLS, in JSON\n"
		"lines: its profile, the VMs whose control sockets are in DIR, receivers for\n"
		"incoming VMs, moves of local VMs. Runs until SIGTERM or SIGINT; guests keep\n"
		"running when it stops. See vmhop-agent(1).\n"
		"\n"
		"  --listen URI            tls:ADDR:PORT, ADDR this host's own address (receivers\n"
		"                          for incoming VMs listen there too; port 0: any)\n"
		"  --run-dir DIR           VMs' control sockets (NAME.sock), serial logs and the\n"
		"                          agent's job logs\n"
		"  --tls-ca FILE           the CA that signs clients and other hosts\n"
		"  --tls-cert FILE         this host's certificate (PEM)\n"
		"  --tls-key FILE          its key (PEM, not readable by group or others)\n"
		"  --tls-allow NAME        accept only clients whose certificate subject is NAME\n"
		"                          (CN or RFC 2253); repeatable; default: any the CA signed\n"
		"  --profile-override FILE answer this host-profile JSON instead of this host's\n"
		"                          (for tests and planning exercises)\n"
		"  --accept-timeout SECS   a receiver nobody connects to ends after this (default 120)\n"
		"  -h, --help              this text\n"
		"\n"
		"Exit status: 0 after SIGTERM/SIGINT; 1 when it cannot start; 2 for bad options.\n");
}

int cmd_agent(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "tls-ca", required_argument, NULL, 'a' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-key", required_argument, NULL, 'k' },
		{ "tls-allow", required_argument, NULL, 'A' },
		{ "profile-override", required_argument, NULL, 'p' },
		{ "accept-timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct agent_opts o = { 0 };
	uint64_t v;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'l': o.listen = optarg; break;
		case 'r': o.run_dir = optarg; break;
		case 'a': o.tls.ca = optarg; break;
		case 'c': o.tls.cert = optarg; break;
		case 'k': o.tls.key = optarg; break;
		case 'A':
			if (o.tls.nr_allow == CHANNEL_TLS_ALLOW_MAX) {
				fprintf(stderr, WHO ": at most %d --tls-allow options\n",
					CHANNEL_TLS_ALLOW_MAX);
				return 2;
			}
			o.tls.allow[o.tls.nr_allow++] = optarg;
			break;
		case 'p': o.profile_override = optarg; break;
		case 't':
			if (util__parse_uint(optarg, 1, 86400, &v)) {
				fprintf(stderr, WHO ": --accept-timeout %s: expected 1 to 86400 seconds\n",
					optarg);
				return 2;
			}
			o.accept_timeout_s = (int)v;
			break;
		case 'h': usage(stdout); return 0;
		case ':':
			fprintf(stderr, WHO ": %s needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, WHO ": unknown option '%s' (see vmhop agent --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, WHO ": unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	char missing[128] = "";
	if (!o.listen)
		strcat(missing, ", --listen URI");
	if (!o.run_dir)
		strcat(missing, ", --run-dir DIR");
	if (!o.tls.ca)
		strcat(missing, ", --tls-ca FILE");
	if (!o.tls.cert)
		strcat(missing, ", --tls-cert FILE");
	if (!o.tls.key)
		strcat(missing, ", --tls-key FILE");
	if (missing[0]) {
		fprintf(stderr, WHO ": missing: %s\n", missing + 2);
		return 2;
	}
	struct stat st;
	if (stat(o.run_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, WHO ": --run-dir %s: not a directory\n", o.run_dir);
		return 2;
	}
	struct err e = { 0 };
	if (agent__run(&o, &e)) {
		fprintf(stderr, WHO ": %s\n", e.msg);
		return 1;
	}
	return 0;
}
