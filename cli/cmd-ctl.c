/* vmhop ctl: send one request to a VM's control socket and print the reply.
 * A blocking client: one connection, one request, one reply. Exit codes:
 * 0 success, 1 the VM answered with an error, 2 usage or connection trouble. */
#include <getopt.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/commands.h"
#include "cli/ctl-client.h"
#include "vmhop/util.h"

#define DEFAULT_TIMEOUT 30
#define EXIT_REPLY_ERROR 1
#define EXIT_USAGE 2

static const char usage_text[] =
	"usage: vmhop ctl --control PATH [--json] [--timeout SECONDS] COMMAND [NAME=VALUE ...]\n"
	"       vmhop ctl --control PATH [--json] [--timeout SECONDS] --raw REQUEST\n"
	"\n"
	"Sends one request to a running VM's control socket and prints the reply.\n"
	"\n"
	"options:\n"
	"  -c, --control PATH     the VM's control socket (vmhop run --control PATH)\n"
	"  -j, --json             print the reply as the JSON line the VM sent\n"
	"  -t, --timeout SECONDS  wait at most this long for the reply (default 30, 0: no limit)\n"
	"  -r, --raw REQUEST      send REQUEST, a whole JSON request, instead of COMMAND\n"
	"  -h, --help             show this help\n"
	"\n"
	"Each NAME=VALUE becomes an argument of COMMAND; VALUE is taken as JSON when it\n"
	"parses as JSON (42, true, null, \"text\", [1,2]) and as a string otherwise.\n"
	"'vmhop ctl --control PATH query-commands' lists the commands.\n"
	"\n"
	"exit status: 0 success, 1 the VM replied with an error, 2 usage or connection error.\n"
	"See vmhop-ctl(1) for the protocol.\n";

struct opts {
	const char *path;
	const char *raw;
	bool json;
	uint64_t timeout_s;
};

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "vmhop ctl: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (try 'vmhop ctl --help')\n");
	return EXIT_USAGE;
}

/* A value that parses as JSON is JSON; anything else is a string, so that
 * `path=/tmp/x` needs no quoting. Returns false only when out of memory. */
static bool parse_value(const char *text, struct json_object **out)
{
	struct json_tokener *tok = json_tokener_new();
	if (!tok)
		return false;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *v = json_tokener_parse_ex(tok, text, -1);
	bool ok = json_tokener_get_error(tok) == json_tokener_success;
	json_tokener_free(tok);
	if (ok) {
		*out = v;	/* NULL is JSON null */
		return true;
	}
	json_object_put(v);
	*out = json_object_new_string(text);
	return *out != NULL;
}

/* Builds {"execute": CMD, "arguments": {...}, "id": 1}; NULL on a usage error
 * (already reported, *rc set). */
static char *build_request(int argc, char **argv, int *rc)
{
	struct json_object *req = json_object_new_object();
	struct json_object *args = json_object_new_object();
	char *line = NULL;
	*rc = EXIT_USAGE;
	if (!req || !args)
		goto out;
	json_object_object_add(req, "execute", json_object_new_string(argv[0]));
	for (int i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq || eq == argv[i]) {
			usage_error("expected NAME=VALUE, got '%s'", argv[i]);
			goto out;
		}
		char *name = strndup(argv[i], (size_t)(eq - argv[i]));
		if (!name)
			goto out;
		struct json_object *v;
		bool dup = json_object_object_get_ex(args, name, NULL);
		if (dup)
			usage_error("argument '%s' given twice", name);
		if (dup || !parse_value(eq + 1, &v)) {
			free(name);
			goto out;
		}
		json_object_object_add(args, name, v);
		free(name);
	}
	if (json_object_object_length(args)) {
		json_object_object_add(req, "arguments", args);
		args = NULL;
	}
	json_object_object_add(req, "id", json_object_new_int(1));
	line = strdup(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
						     JSON_C_TO_STRING_NOSLASHESCAPE));
out:
	json_object_put(req);
	json_object_put(args);
	return line;
}

/* --raw: JSON is sent compacted onto one line; anything else verbatim, so
 * that the server's handling of garbage can be tried by hand. */
static char *raw_request(const char *raw)
{
	struct json_tokener *tok = json_tokener_new();
	if (!tok)
		return NULL;
	struct json_object *v = json_tokener_parse_ex(tok, raw, -1);
	bool ok = json_tokener_get_error(tok) == json_tokener_success && v;
	json_tokener_free(tok);
	char *line = ok ? strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
					JSON_C_TO_STRING_NOSLASHESCAPE)) : NULL;
	json_object_put(v);
	if (!ok && !strchr(raw, '\n'))
		line = strdup(raw);
	return line;
}

static void print_value(struct json_object *v, int indent);

static void print_members(struct json_object *o, int indent, bool after_dash)
{
	bool first = true;
	json_object_object_foreach(o, key, val) {
		printf("%*s%s:", first && after_dash ? 0 : indent, "", key);
		first = false;
		print_value(val, indent);
	}
}

static void print_items(struct json_object *a, int indent)
{
	size_t n = json_object_array_length(a);
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(a, i);
		printf("%*s-", indent, "");
		if (json_object_is_type(v, json_type_object) && json_object_object_length(v)) {
			printf(" ");
			print_members(v, indent + 2, true);
		} else {
			print_value(v, indent);
		}
	}
}

/* The rest of a line begun by "key:" or "-": a scalar, or nested lines. */
static void print_value(struct json_object *v, int indent)
{
	if (json_object_is_type(v, json_type_object) && json_object_object_length(v)) {
		printf("\n");
		print_members(v, indent + 2, false);
	} else if (json_object_is_type(v, json_type_array) && json_object_array_length(v)) {
		printf("\n");
		print_items(v, indent + 2);
	} else if (json_object_is_type(v, json_type_string)) {
		printf(" %s\n", json_object_get_string(v));
	} else {
		printf(" %s\n", v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN) : "null");
	}
}

/* who: the command the user typed, for messages ("vmhop ctl", or the
 * command that goes through this one, e.g. "vmhop snapshot create"). */
static int show_reply(const char *who, const char *path, const char *line, bool json)
{
	struct json_object *reply = json_tokener_parse(line);
	struct json_object *ret = NULL, *err = NULL;
	if (!json_object_is_type(reply, json_type_object) ||
	    (!json_object_object_get_ex(reply, "return", &ret) &&
	     !json_object_object_get_ex(reply, "error", &err))) {
		fprintf(stderr, "%s: %s sent a malformed reply: %.200s\n", who, path, line);
		json_object_put(reply);
		return EXIT_USAGE;
	}
	int rc = err ? EXIT_REPLY_ERROR : 0;
	if (json) {
		printf("%s\n", line);
	} else if (err) {
		struct json_object *cls = json_object_object_get(err, "class");
		struct json_object *desc = json_object_object_get(err, "desc");
		fprintf(stderr, "%s: %s: %s\n", who,
			cls ? json_object_get_string(cls) : "GenericError",
			desc ? json_object_get_string(desc) : "(no description)");
	} else if (json_object_is_type(ret, json_type_object)) {
		print_members(ret, 0, false);
	} else {
		print_value(ret, 0);
	}
	json_object_put(reply);
	return rc;
}

static int parse_opts(int argc, char **argv, struct opts *o, bool *help)
{
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "raw", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	opterr = 0;
	/* '+': stop at COMMAND, so NAME=VALUE arguments are never options. */
	while ((ch = getopt_long(argc, argv, "+:c:jt:r:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->path = optarg; break;
		case 'j': o->json = true; break;
		case 'r': o->raw = optarg; break;
		case 'h': *help = true; return 0;
		case 't':
			if (util__parse_uint(optarg, 0, 86400 * 365, &o->timeout_s))
				return usage_error("--timeout %s: expected whole seconds", optarg);
			break;
		case ':':
			return usage_error("%s needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	return 0;
}

int cmd_ctl(int argc, char **argv)
{
	struct opts o = { .timeout_s = DEFAULT_TIMEOUT };
	bool help = false;
	int rc = parse_opts(argc, argv, &o, &help);
	if (rc)
		return rc;
	if (help) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (!o.path)
		return usage_error("%s", "--control PATH is required");
	if (o.raw && optind < argc)
		return usage_error("--raw takes the whole request; unexpected '%s'", argv[optind]);
	if (!o.raw && optind >= argc)
		return usage_error("%s", "no COMMAND given");

	char *line = o.raw ? raw_request(o.raw) : build_request(argc - optind, argv + optind, &rc);
	if (!line) {
		if (o.raw)
			return usage_error("%s", "--raw: REQUEST must be JSON or a single line");
		return rc;
	}
	const char *who = strncmp(argv[0], "vmhop ", 6) ? "vmhop ctl" : argv[0];
	int fd = ctl_client__connect(o.path, who);
	char *reply = NULL;
	rc = EXIT_USAGE;
	if (fd >= 0 && ctl_client__send(fd, o.path, line, who) == 0 &&
	    (reply = ctl_client__read(fd, o.path, o.timeout_s * 1000, who)))
		rc = show_reply(who, o.path, reply, o.json);
	if (fd >= 0)
		close(fd);
	free(reply);
	free(line);
	return rc;
}
