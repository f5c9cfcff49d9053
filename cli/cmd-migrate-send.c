/* vmhop migrate-send: asks a running VM (through its control socket) to
 * migrate, follows it to the end and reports. The VMM process does the work;
 * this is a client on two connections: one `migrate` request whose reply
 * comes when the migration ends, one for `query-migrate` progress. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/commands.h"
#include "cli/ctl-client.h"
#include "vmhop/channel.h"
#include "vmhop/compat.h"
#include "vmhop/migrate.h"
#include "vmhop/util.h"

#define WHO "vmhop migrate-send"
#define POLL_MS 250
#define FAULT_ENV "VMHOP_MIGRATE_FAULT"

static const char send_usage[] =
	"usage: vmhop migrate-send --control PATH --to URI [OPTIONS]\n"
	"\n"
	"Live-migrate the VM behind control socket PATH to a `vmhop migrate-recv`\n"
	"listening at URI, showing progress until it ends. On failure before the\n"
	"commit the guest keeps running here.\n"
	"\n"
	"  --control PATH          the running VM's control socket\n"
	"  --to URI                the destination: tcp:ADDR:PORT, tls:ADDR:PORT (TLS 1.3,\n"
	"                          mutual certificates) or unix:PATH\n"
	"  --tls-ca FILE           tls: the CA that signed the destination's certificate\n"
	"  --tls-cert FILE         tls: this side's certificate (PEM)\n"
	"  --tls-key FILE          tls: its key (PEM, not readable by group or others)\n"
	"  --tls-name NAME         tls: the name the destination's certificate must carry\n"
	"                          (default: ADDR of --to)\n"
	"  --max-downtime MS       pause budget for the final copy (default 300)\n"
	"  --max-bandwidth RATE    bytes per second, K/M/G suffixes (default unlimited)\n"
	"  --compress none|zstd    compress pages (default none)\n"
	"  --auto-converge         throttle the vCPUs while the guest dirties memory\n"
	"                          faster than the link carries it\n"
	"  --timeout SECONDS       fail when not done by then (default: no limit)\n"
	"  --io-timeout SECONDS    a destination silent this long has failed (default 15)\n"
	"  --unsafe                let writable disks without cache=none move (a warning\n"
	"                          instead of a refusal; never overrides other rules)\n"
	"  --channels N            spread memory over N connections to URI (1-16,\n"
	"                          default 1); the first also carries state and commit\n"
	"  --copy-disk ID          copy disk ID to the destination during the migration\n"
	"                          (repeatable); other disks must be on shared storage\n"
	"  --copy-all-disks        copy every writable disk\n"
	"  --verify-disks          compare SHA-256 digests of every copied disk on both\n"
	"                          sides before the switchover\n"
	"  --incremental-disks     send only the blocks written since the disk arrived here,\n"
	"                          onto the copy it left on the destination\n"
	"  --full-copy-fallback    with --incremental-disks: copy in full where no\n"
	"                          matching earlier copy exists (else refuse)\n"
	"  --json                  the last line of output is one JSON object\n"
	"  -q, --quiet             no progress line\n"
	"  -h, --help              this text\n"
	"\n"
	"Exit status: 0 when the destination runs the guest; 1 when the migration\n"
	"failed (the guest runs here) or is unconfirmed (paused here, see\n"
	"vmhop-migrate-send(1)); 2 for bad options or an unreachable VM.\n";

enum { OPT_CONTROL = 256, OPT_TO, OPT_DOWNTIME, OPT_BANDWIDTH, OPT_COMPRESS, OPT_AUTO_CONVERGE,
       OPT_TIMEOUT, OPT_IO_TIMEOUT, OPT_JSON, OPT_UNSAFE, OPT_TLS_CA, OPT_TLS_CERT, OPT_TLS_KEY,
       OPT_TLS_NAME, OPT_COPY_DISK, OPT_COPY_ALL, OPT_VERIFY_DISKS, OPT_INCREMENTAL,
       OPT_FALLBACK, OPT_CHANNELS };

static const struct option send_options[] = {
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "to", required_argument, NULL, OPT_TO },
	{ "max-downtime", required_argument, NULL, OPT_DOWNTIME },
	{ "max-bandwidth", required_argument, NULL, OPT_BANDWIDTH },
	{ "compress", required_argument, NULL, OPT_COMPRESS },
	{ "auto-converge", no_argument, NULL, OPT_AUTO_CONVERGE },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "io-timeout", required_argument, NULL, OPT_IO_TIMEOUT },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "unsafe", no_argument, NULL, OPT_UNSAFE },
	{ "tls-ca", required_argument, NULL, OPT_TLS_CA },
	{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },
	{ "tls-key", required_argument, NULL, OPT_TLS_KEY },
	{ "tls-name", required_argument, NULL, OPT_TLS_NAME },
	{ "channels", required_argument, NULL, OPT_CHANNELS },
	{ "copy-disk", required_argument, NULL, OPT_COPY_DISK },
	{ "copy-all-disks", no_argument, NULL, OPT_COPY_ALL },
	{ "verify-disks", no_argument, NULL, OPT_VERIFY_DISKS },
	{ "incremental-disks", no_argument, NULL, OPT_INCREMENTAL },
	{ "full-copy-fallback", no_argument, NULL, OPT_FALLBACK },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct send_opts {
	const char *control;
	bool json, quiet;
	struct json_object *args;	/* the migrate request's arguments */
};

static int bad(const char *opt, const char *val, const char *want)
{
	fprintf(stderr, WHO ": %s %s: expected %s\n", opt, val, want);
	return 2;
}

/* A TLS file as an absolute path: the VMM process opens it, from its own
 * working directory. */
static int tls_file(struct send_opts *o, const char *opt, const char *key, const char *path)
{
	char *abs = realpath(path, NULL);
	if (!abs) {
		fprintf(stderr, WHO ": %s %s: %s\n", opt, path, strerror(errno));
		return 2;
	}
	json_object_object_add(o->args, key, json_object_new_string(abs));
	free(abs);
	return 0;
}

/* tls: needs the three files; the TLS options go with tls: only. */
static int tls_usage(struct send_opts *o)
{
	static const char *const keys[] = { "tls_ca", "tls_cert", "tls_key", "tls_name" };
	static const char *const opts[] = { "--tls-ca FILE", "--tls-cert FILE", "--tls-key FILE",
					    "--tls-name" };
	struct json_object *u;
	json_object_object_get_ex(o->args, "uri", &u);
	bool tls = !strncmp(json_object_get_string(u), "tls:", 4);
	char missing[80] = "";
	bool any = false;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		bool has = json_object_object_get_ex(o->args, keys[i], NULL);
		any |= has;
		if (!has && i < 3) {
			strcat(missing, missing[0] ? ", " : "");
			strcat(missing, opts[i]);
		}
	}
	if (tls && missing[0]) {
		fprintf(stderr, WHO ": --to %s needs --tls-ca, --tls-cert and --tls-key (missing: "
			"%s)\n", json_object_get_string(u), missing);
		return -1;
	}
	if (!tls && any) {
		fprintf(stderr, WHO ": --tls-ca, --tls-cert, --tls-key and --tls-name go with "
			"--to tls:ADDR:PORT only\n");
		return -1;
	}
	return 0;
}

static int parse(int argc, char **argv, struct send_opts *o)
{
	int c;
	uint64_t n;
	struct err e = { 0 };
	struct channel_addr addr;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":qh", send_options, NULL)) != -1) {
		const char *opt = argv[optind - 1];
		switch (c) {
		case OPT_CONTROL: o->control = optarg; break;
		case OPT_TO:
			if (channel__parse_uri(optarg, false, &addr, &e) < 0) {
				fprintf(stderr, WHO ": --to: %s\n", e.msg);
				return 2;
			}
			if (addr.kind == CHANNEL_FILE) {
				fprintf(stderr, WHO ": --to %s: a live migration needs tcp:, tls: or "
					"unix: (file: holds a recorded stream)\n", optarg);
				return 2;
			}
			json_object_object_add(o->args, "uri", json_object_new_string(optarg));
			break;
		case OPT_DOWNTIME:
			if (util__parse_uint(optarg, 1, 3600000, &n) < 0)
				return bad("--max-downtime", optarg, "milliseconds from 1 to 3600000");
			json_object_object_add(o->args, "max_downtime_ms", json_object_new_int64((int64_t)n));
			break;
		case OPT_BANDWIDTH:
			if (util__parse_size(optarg, &n) < 0 || n > UINT64_MAX / 2)
				return bad("--max-bandwidth", optarg, "bytes per second such as 100M or 1G");
			json_object_object_add(o->args, "max_bandwidth", json_object_new_int64((int64_t)n));
			break;
		case OPT_COMPRESS:
			if (strcmp(optarg, "none") && strcmp(optarg, "zstd"))
				return bad("--compress", optarg, "none or zstd");
			json_object_object_add(o->args, "compress", json_object_new_string(optarg));
			break;
		case OPT_AUTO_CONVERGE:
			json_object_object_add(o->args, "auto_converge", json_object_new_boolean(1));
			break;
		case OPT_TIMEOUT:
		case OPT_IO_TIMEOUT:
			if (util__parse_uint(optarg, c == OPT_TIMEOUT ? 0 : 1,
					     c == OPT_TIMEOUT ? 86400 * 365 : 3600, &n) < 0)
				return bad(c == OPT_TIMEOUT ? "--timeout" : "--io-timeout", optarg,
					   c == OPT_TIMEOUT ? "seconds (0: no limit)" : "seconds from 1 to 3600");
			json_object_object_add(o->args, c == OPT_TIMEOUT ? "timeout" : "io_timeout",
					       json_object_new_int64((int64_t)n));
			break;
		case OPT_TLS_CA:
		case OPT_TLS_CERT:
		case OPT_TLS_KEY: {
			const char *key = c == OPT_TLS_CA ? "tls_ca" : c == OPT_TLS_CERT ? "tls_cert" : "tls_key";
			int r = tls_file(o, opt, key, optarg);
			if (r)
				return r;
			break;
		}
		case OPT_TLS_NAME:
			if (!*optarg || strlen(optarg) > 255)
				return bad("--tls-name", optarg, "a DNS name or an IP address");
			json_object_object_add(o->args, "tls_name", json_object_new_string(optarg));
			break;
		case OPT_JSON: o->json = true; break;
		case OPT_UNSAFE:
			json_object_object_add(o->args, "unsafe", json_object_new_boolean(1));
			break;
		case OPT_CHANNELS:
			if (util__parse_uint(optarg, 1, MIGRATE_MAX_CHANNELS, &n) < 0)
				return bad("--channels", optarg, "a number of connections from 1 to 16");
			json_object_object_add(o->args, "channels", json_object_new_int64((int64_t)n));
			break;
		case OPT_COPY_DISK: {
			struct json_object *ids;
			if (!*optarg || strlen(optarg) >= DISK_ID_MAX)
				return bad("--copy-disk", optarg, "a disk id (vmhop-run(1) --disk ...,id=ID)");
			if (!json_object_object_get_ex(o->args, "copy_disks", &ids)) {
				ids = json_object_new_array();
				json_object_object_add(o->args, "copy_disks", ids);
			}
			json_object_array_add(ids, json_object_new_string(optarg));
			break;
		}
		case OPT_COPY_ALL:
		case OPT_VERIFY_DISKS:
		case OPT_INCREMENTAL:
		case OPT_FALLBACK: {
			const char *key = c == OPT_COPY_ALL ? "copy_all_disks" :
					  c == OPT_VERIFY_DISKS ? "verify_disks" :
					  c == OPT_INCREMENTAL ? "incremental_disks" : "full_copy_fallback";
			json_object_object_add(o->args, key, json_object_new_boolean(1));
			break;
		}
		case 'q': o->quiet = true; break;
		case 'h': fputs(send_usage, stdout); exit(0);
		case ':':
			fprintf(stderr, WHO ": %s needs a value\n", opt);
			return 2;
		default:
			fprintf(stderr, WHO ": unknown option '%s' (see vmhop migrate-send --help)\n", opt);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, WHO ": unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o->control || !json_object_object_get_ex(o->args, "uri", NULL)) {
		fprintf(stderr, WHO ": --control PATH and --to URI are required\n");
		return 2;
	}
	if (tls_usage(o) < 0)
		return 2;
	bool copying = json_object_object_get_ex(o->args, "copy_disks", NULL) ||
		       json_object_object_get_ex(o->args, "copy_all_disks", NULL);
	if (!copying && (json_object_object_get_ex(o->args, "verify_disks", NULL) ||
			 json_object_object_get_ex(o->args, "incremental_disks", NULL) ||
			 json_object_object_get_ex(o->args, "full_copy_fallback", NULL))) {
		fprintf(stderr, WHO ": --verify-disks, --incremental-disks and --full-copy-fallback "
			"go with --copy-disk ID or --copy-all-disks\n");
		return 2;
	}
	if (json_object_object_get_ex(o->args, "full_copy_fallback", NULL) &&
	    !json_object_object_get_ex(o->args, "incremental_disks", NULL)) {
		fprintf(stderr, WHO ": --full-copy-fallback goes with --incremental-disks\n");
		return 2;
	}
	const char *fault = getenv(FAULT_ENV);
	if (fault && *fault)
		json_object_object_add(o->args, "fault", json_object_new_string(fault));
	return 0;
}

static char *request(const char *cmd, struct json_object *args)
{
	struct json_object *r = json_object_new_object();
	if (!r)
		return NULL;
	json_object_object_add(r, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(r, "arguments", json_object_get(args));
	char *s = strdup(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
	json_object_put(r);
	return s;
}

static double num(struct json_object *o, const char *k)
{
	struct json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_double(v) : 0;
}

static const char *str(struct json_object *o, const char *k)
{
	struct json_object *v;
	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string) ?
	       json_object_get_string(v) : NULL;
}

/* query-migrate on fd: the "return" object (new reference) or NULL. */
static struct json_object *query(int fd, const char *path)
{
	char *line = request("query-migrate", NULL);
	char *reply = line && !ctl_client__send(fd, path, line, WHO) ?
		      ctl_client__read(fd, path, 10000, WHO) : NULL;
	free(line);
	struct json_object *o = reply ? json_tokener_parse(reply) : NULL, *ret = NULL;
	free(reply);
	if (o && json_object_object_get_ex(o, "return", &ret))
		json_object_get(ret);
	else
		ret = NULL;
	json_object_put(o);
	return ret;
}

struct progress {
	bool tty;
	int shown;		/* a \r line is on the terminal */
	char last[64];		/* phase and round last printed (not a tty) */
};

static void show_progress(struct progress *p, struct json_object *q)
{
	const char *phase = str(q, "status");
	char key[64];
	snprintf(key, sizeof(key), "%s/%.0f/%.0f", phase ? phase : "?", num(q, "rounds"),
		 num(q, "throttle_pct"));
	if (!p->tty && !strcmp(key, p->last))
		return;
	snprintf(p->last, sizeof(p->last), "%s", key);
	/* While copying, the round under way; at the end, how many there were. */
	double round = num(q, "rounds");
	if (phase && (!strcmp(phase, "active") || !strcmp(phase, "setup")))
		round += 1;
	/* Disk copies: how much of them has gone so far. */
	char disks[48] = "";
	if (num(q, "disk_bytes_sent") > 0)
		snprintf(disks, sizeof(disks), "  disks %.1f MiB", num(q, "disk_bytes_sent") / 1048576.0);
	char line[240];
	snprintf(line, sizeof(line),
		 "migrate: %-9s round %-3.0f remaining %8.1f MiB  %7.1f MiB/s  dirty %6.1f MiB/s"
		 "  ETA %5.1f s%s%s", phase ? phase : "?", round,
		 num(q, "remaining_bytes") / 1048576.0, num(q, "throughput_mib_s"),
		 num(q, "dirty_rate_mib_s"), num(q, "eta_ms") / 1000.0,
		 num(q, "throttle_pct") > 0 ? "  throttled" : "", disks);
	if (p->tty) {
		fprintf(stderr, "\r%-100s", line);
		p->shown = 1;
	} else {
		fprintf(stderr, "%s\n", line);
	}
	fflush(stderr);
}

/* The pre-flight table, when a rule did not simply pass. */
static void show_preflight(struct json_object *st)
{
	struct json_object *pf;
	struct err e = { 0 };
	struct compat_report *r = malloc(sizeof(*r));
	if (r && st && json_object_object_get_ex(st, "preflight", &pf) &&
	    !compat__report_from_json(pf, r, &e) && (r->warn || r->fail)) {
		fprintf(stderr, "pre-flight checks:\n");
		compat__print(stderr, r);
	}
	free(r);
}

static void summary(struct json_object *st, const char *status, const char *error, bool json)
{
	show_preflight(st);
	struct json_object *u;
	if (st && json_object_object_get_ex(st, "unsafe", &u) && json_object_get_boolean(u))
		fprintf(stderr, WHO ": warning: this move was unsafe (--unsafe): the pre-flight "
			"report above says what was let through\n");
	if (error)
		fprintf(stderr, WHO ": migration %s: %s\n", status, error);
	else
		printf("migration completed in %.0f ms: downtime %.1f ms, %.0f rounds, %.1f MiB sent "
		       "(%.0f raw pages, %.0f compressed, %.0f zero or never used of %.0f), "
		       "%.1f MiB/s\n", num(st, "total_ms"), num(st, "downtime_ms"), num(st, "rounds"),
		       num(st, "bytes_sent") / 1048576.0, num(st, "pages_sent_raw"),
		       num(st, "pages_sent_compressed"), num(st, "pages_skipped_zero"),
		       num(st, "pages_total"), num(st, "throughput_mib_s"));
	struct json_object *disks, *d;
	if (!error && st && json_object_object_get_ex(st, "disks", &disks))
		for (size_t i = 0; i < json_object_array_length(disks); i++) {
			d = json_object_array_get_idx(disks, i);
			printf("disk %s: %s, %.1f MiB sent, %.0f blocks resent", str(d, "id"),
			       str(d, "mode"), num(d, "bytes_sent") / 1048576.0, num(d, "blocks_resent"));
			if (str(d, "sha256_destination"))
				printf(", SHA-256 %s on both sides", str(d, "sha256_destination"));
			printf("\n");
		}
	if (!json)
		return;
	struct json_object *out = json_object_new_object();
	if (!out)
		return;
	static const char *const keys[] = {
		"total_ms", "downtime_ms", "setup_ms", "rounds", "bytes_sent", "pages_total",
		"pages_skipped_zero", "pages_sent_raw", "pages_sent_compressed", "throughput_mib_s",
		"dirty_rate_mib_s", "unsafe", "peer", "disk_bytes_sent", "disks", "channels", "preflight",
	};
	json_object_object_add(out, "status", json_object_new_string(status));
	if (error)
		json_object_object_add(out, "error", json_object_new_string(error));
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		struct json_object *v;
		if (st && json_object_object_get_ex(st, keys[i], &v))
			json_object_object_add(out, keys[i], json_object_get(v));
	}
	printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
	json_object_put(out);
}

int cmd_migrate_send(int argc, char **argv)
{
	struct send_opts o = { .args = json_object_new_object() };
	if (!o.args)
		return 1;
	int rc = parse(argc, argv, &o);
	int a = -1, b = -1;
	char *line = NULL, *reply = NULL;
	struct json_object *final = NULL;
	if (!rc && ((a = ctl_client__connect(o.control, WHO)) < 0 ||
		    (b = ctl_client__connect(o.control, WHO)) < 0))
		rc = 2;
	/* The id of the VM's last migration before ours: a refused request
	 * leaves it unchanged, so its numbers are not mistaken for ours. */
	struct json_object *before = rc ? NULL : query(b, o.control);
	int64_t prev_id = before ? (int64_t)num(before, "id") : -1;
	json_object_put(before);
	if (!rc && (!(line = request("migrate", o.args)) ||
		    ctl_client__send(a, o.control, line, WHO) < 0))
		rc = 2;
	struct progress p = { .tty = isatty(STDERR_FILENO) && !o.quiet };
	while (!rc) {
		struct pollfd pf = { .fd = a, .events = POLLIN };
		int n = poll(&pf, 1, POLL_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != 0)
			break;
		struct json_object *q = o.quiet ? NULL : query(b, o.control);
		if (q)
			show_progress(&p, q);
		json_object_put(q);
	}
	if (p.shown)
		fputc('\n', stderr);
	if (!rc)
		reply = ctl_client__read(a, o.control, 10000, WHO);
	struct json_object *r = reply ? json_tokener_parse(reply) : NULL, *ret, *err;
	if (!rc && r && json_object_object_get_ex(r, "return", &ret)) {
		summary(ret, "completed", NULL, o.json);
	} else if (!rc) {
		const char *why = r && json_object_object_get_ex(r, "error", &err) ? str(err, "desc") : NULL;
		/* The VM is still there after a failure: its numbers say how far
		 * it got, and whether the guest waits unconfirmed. */
		final = query(b, o.control);
		if (final && (int64_t)num(final, "id") == prev_id) {
			json_object_put(final);	/* refused: nothing of ours ran */
			final = NULL;
		}
		const char *status = final ? str(final, "status") : NULL;
		summary(final, status ? status : "failed",
			why ? why : "the VM closed its control socket before the migration ended", o.json);
		rc = 1;
	}
	if (rc == 2 && o.json && o.control) {
		/* Scripts read the last line whatever happened. */
		printf("{\"status\":\"failed\",\"error\":\"could not talk to the VM's control "
		       "socket (see the message above)\"}\n");
	}
	json_object_put(r);
	json_object_put(final);
	free(reply);
	free(line);
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	json_object_put(o.args);
	return rc;
}
