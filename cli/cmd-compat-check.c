/* vmhop compat-check: the pre-flight rules for one move, one row per
 * finding (PASS / WARN / FAIL, the reason, the fix), as a table or JSON.
 * Exit 0 all pass, 1 warnings only, 2 any failure (or no check possible).
 * Offline: a VM config and two recorded host profiles. Live (--control,
 * --to): the running VM and a destination's migrate-recv, through the
 * migration handshake. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/commands.h"
#include "cli/ctl-client.h"
#include "vmhop/compat.h"

#define NAME "vmhop compat-check"
#define EXIT_CANNOT 2	/* usage errors and unreadable input: never "go" */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmhop compat-check --vm-config FILE --source-profile FILE --dest-profile FILE\n"
		"                          [--unsafe] [--json]\n"
		"       vmhop compat-check --control PATH --to URI [--unsafe] [--json]\n"
		"                          [--tls-ca FILE --tls-cert FILE --tls-key FILE [--tls-name NAME]]\n"
		"Check whether a VM can move from one host to another before anything moves:\n"
		"CPU vendor, CPU model features, NX, disk cache modes and reachability,\n"
		"devices and memory that cannot move, release levels and stream formats,\n"
		"the destination's limits, the guest definition. One row per finding with\n"
		"the reason and the fix. Exit status: 0 all pass, 1 warnings only, 2 a rule\n"
		"failed (or the check could not run). See vmhop-compat-check(1).\n"
		"\n"
		"  --vm-config FILE       the VM ('vmhop ctl --json CONTROL query-config' output)\n"
		"  --source-profile FILE  'vmhop host-profile --json' of the source host\n"
		"  --dest-profile FILE    the same of the destination host\n"
		"  --unsafe               writable disks without cache=none warn instead of fail\n"
		"  --json                 print one JSON object instead of the table\n"
		"  --control PATH, --to URI\n"
		"                         the live form: ask the destination's migrate-recv\n"
		"                         (tcp:, tls: or unix:, as vmhop migrate-send --to)\n"
		"  --tls-ca/--tls-cert/--tls-key FILE, --tls-name NAME\n"
		"                         for a tls: destination, as vmhop migrate-send\n"
		"  --help                 this text\n");
}

struct args {
	const char *vm, *src, *dst, *control, *to;
	const char *tls[4];	/* ca, cert, key, name: for a tls: destination */
	bool unsafe, json;
};

static const char *const tls_keys[] = { "tls_ca", "tls_cert", "tls_key", "tls_name" };

static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		{ "vm-config", required_argument, NULL, 'v' },
		{ "source-profile", required_argument, NULL, 's' },
		{ "dest-profile", required_argument, NULL, 'd' },
		{ "control", required_argument, NULL, 'c' },
		{ "to", required_argument, NULL, 't' },
		{ "unsafe", no_argument, NULL, 'u' },
		{ "json", no_argument, NULL, 'j' },
		{ "tls-ca", required_argument, NULL, 'A' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "tls-name", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v:s:d:c:t:ujh", opts, NULL)) != -1) {
		switch (c) {
		case 'v': a->vm = optarg; break;
		case 's': a->src = optarg; break;
		case 'd': a->dst = optarg; break;
		case 'c': a->control = optarg; break;
		case 't': a->to = optarg; break;
		case 'u': a->unsafe = true; break;
		case 'j': a->json = true; break;
		case 'A': a->tls[0] = optarg; break;
		case 'C': a->tls[1] = optarg; break;
		case 'K': a->tls[2] = optarg; break;
		case 'N': a->tls[3] = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_CANNOT;
		}
	}
	if (optind != argc) {
		fprintf(stderr, NAME ": unexpected argument '%s'\n", argv[optind]);
		return EXIT_CANNOT;
	}
	bool live = a->control || a->to, offline = a->vm || a->src || a->dst;
	if (live && offline) {
		fprintf(stderr, NAME ": --control/--to (live) and --vm-config/--source-profile/--dest-profile (offline) do not mix\n");
		return EXIT_CANNOT;
	}
	if (!live && (!a->vm || !a->src || !a->dst)) {
		fprintf(stderr, NAME ": --vm-config, --source-profile and --dest-profile are all required\n");
		return EXIT_CANNOT;
	}
	if (live && (!a->control || !a->to)) {
		fprintf(stderr, NAME ": the live form needs both --control PATH and --to tcp:ADDR:PORT\n");
		return EXIT_CANNOT;
	}
	return -1;	/* go on */
}

static int report(const struct compat_report *r, bool json)
{
	if (json) {
		struct json_object *j;
		if (compat__report_to_json(r, &j)) {
			fprintf(stderr, NAME ": out of memory\n");
			return EXIT_CANNOT;
		}
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(j);
	} else {
		compat__print(stdout, r);
	}
	if (fflush(stdout) == EOF) {
		fprintf(stderr, NAME ": writing standard output failed\n");
		return EXIT_CANNOT;
	}
	return compat__exit_code(r);
}

/* The live form: the VM itself runs the migration handshake with
 * check_only (its own profile and its view of its disks, the destination's
 * from the hello, the same rules), moving nothing; the destination answers
 * and keeps listening. */
static int live_check(const struct args *a)
{
	struct json_object *args = json_object_new_object(), *req = json_object_new_object();
	if (!args || !req) {
		json_object_put(args);
		json_object_put(req);
		fprintf(stderr, NAME ": out of memory\n");
		return EXIT_CANNOT;
	}
	json_object_object_add(args, "uri", json_object_new_string(a->to));
	json_object_object_add(args, "check_only", json_object_new_boolean(1));
	/* The VM process opens the TLS files: give it absolute paths. */
	for (size_t i = 0; i < 4; i++) {
		if (!a->tls[i])
			continue;
		char *abs = i < 3 ? realpath(a->tls[i], NULL) : strdup(a->tls[i]);
		if (!abs) {
			fprintf(stderr, NAME ": --%s %s: %s\n", tls_keys[i] + 0, a->tls[i], strerror(errno));
			json_object_put(args);
			json_object_put(req);
			return EXIT_CANNOT;
		}
		json_object_object_add(args, tls_keys[i], json_object_new_string(abs));
		free(abs);
	}
	if (a->unsafe)
		json_object_object_add(args, "unsafe", json_object_new_boolean(1));
	json_object_object_add(req, "execute", json_object_new_string("migrate"));
	json_object_object_add(req, "arguments", args);
	int rc = EXIT_CANNOT, fd = ctl_client__connect(a->control, NAME);
	char *reply = NULL;
	if (fd >= 0 && !ctl_client__send(fd, a->control, json_object_to_json_string_ext(req,
					 JSON_C_TO_STRING_PLAIN), NAME))
		reply = ctl_client__read(fd, a->control, 120000, NAME);
	if (fd >= 0)
		close(fd);
	json_object_put(req);
	struct json_object *j = reply ? json_tokener_parse(reply) : NULL, *ret, *pf, *err, *d;
	struct compat_report *r = malloc(sizeof(*r));
	struct err e = { 0 };
	if (!j || !r) {
		if (reply)
			fprintf(stderr, NAME ": the VM's reply is not JSON\n");
	} else if (json_object_object_get_ex(j, "error", &err)) {
		fprintf(stderr, NAME ": %s\n", json_object_object_get_ex(err, "desc", &d) ?
			json_object_get_string(d) : "the VM refused the check");
	} else if (!json_object_object_get_ex(j, "return", &ret) ||
		   !json_object_object_get_ex(ret, "preflight", &pf) ||
		   compat__report_from_json(pf, r, &e) < 0) {
		fprintf(stderr, NAME ": the VM's reply holds no pre-flight report%s%s\n",
			e.code ? ": " : "", e.msg);
	} else {
		rc = report(r, a->json);
	}
	json_object_put(j);
	free(reply);
	free(r);
	return rc;
}

static int offline_check(const struct args *a)
{
	struct host_profile *src = malloc(sizeof(*src)), *dst = malloc(sizeof(*dst));
	struct compat_report *r = malloc(sizeof(*r));
	struct vm_config vm;
	struct compat_vm_ext ext;
	struct err e = { 0 };
	int rc = EXIT_CANNOT;
	vm_config__init(&vm);
	if (!src || !dst || !r)
		fprintf(stderr, NAME ": out of memory\n");
	else if (compat__load_vm(a->vm, &vm, &ext, &e) || host_profile__load(a->src, src, &e) ||
		 host_profile__load(a->dst, dst, &e))
		fprintf(stderr, NAME ": %s\n", e.msg);
	else {
		struct compat_opts opts = { .unsafe = a->unsafe, .ext = &ext };
		if (compat__check(&vm, src, dst, &opts, r) && !a->json)
			fprintf(stderr, NAME ": %s\n", r->rows[0].reason);
		rc = report(r, a->json);
	}
	vm_config__free(&vm);
	free(src);
	free(dst);
	free(r);
	return rc;
}

int cmd_compat_check(int argc, char **argv)
{
	struct args a = { 0 };
	int rc = parse_args(argc, argv, &a);
	if (rc >= 0)
		return rc;
	return a.control ? live_check(&a) : offline_check(&a);
}
