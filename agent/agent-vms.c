/* The VMs of this host: every control socket (NAME.sock) in the run
 * directory, asked query-status and query-config with a short deadline. A
 * socket nobody answers on is a VM that has gone: skipped, not an error. */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/agent.h"
#include "vmhop/util.h"

#define VM_TIMEOUT_MS	2000
#define REPLY_MAX	(1u << 20)

bool agent__valid_name(const char *name)
{
	size_t n = strlen(name);
	if (!n || n >= AGENT_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

static int connect_unix(const char *path, struct err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return err__set(e, ENAMETOOLONG, "%s: path too long for a unix socket", path);
	memcpy(sa.sun_path, path, strlen(path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err__setsys(e, errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = errno;
		close(fd);
		return err__setsys(e, r, "cannot connect to %s", path);
	}
	return fd;
}

json_object *agent__vm_request(const char *control, const char *cmd, json_object *args,
			       int timeout_ms, struct err *e)
{
	int fd = connect_unix(control, e);
	if (fd < 0)
		return NULL;
	json_object *req = json_object_new_object();
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	char line[4096];
	int len = snprintf(line, sizeof(line), "%s\n",
			   json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
	json_object_put(req);
	json_object *reply = NULL;
	char *buf = NULL;
	if (len <= 0 || (size_t)len >= sizeof(line)) {
		err__set(e, E2BIG, "%s: request too long", control);
		goto out;
	}
	/* MSG_NOSIGNAL: a VM that hangs up is an error, not SIGPIPE. */
	if (send(fd, line, (size_t)len, MSG_NOSIGNAL) != len) {
		err__setsys(e, errno, "cannot send to %s", control);
		goto out;
	}
	buf = malloc(REPLY_MAX + 1);
	if (!buf) {
		err__set(e, ENOMEM, "out of memory");
		goto out;
	}
	size_t got = 0;
	uint64_t deadline = util__now_ns() + (uint64_t)timeout_ms * 1000000ULL;
	for (;;) {
		char *nl = memchr(buf, '\n', got);
		if (nl) {
			*nl = '\0';
			break;
		}
		uint64_t now = util__now_ns();
		if (now >= deadline || got == REPLY_MAX) {
			err__set(e, ETIMEDOUT, "%s: no reply to %s within %d ms", control, cmd,
				 timeout_ms);
			goto out;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, (int)((deadline - now) / 1000000ULL) + 1);
		if (r < 0 && errno != EINTR) {
			err__setsys(e, errno, "waiting for %s", control);
			goto out;
		}
		if (r <= 0)
			continue;
		ssize_t n = recv(fd, buf + got, REPLY_MAX - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err__set(e, EPIPE, "%s closed the connection before replying to %s", control,
				 cmd);
			goto out;
		}
		got += (size_t)n;
	}
	reply = json_tokener_parse(buf);
	if (!reply || !json_object_is_type(reply, json_type_object)) {
		if (reply)
			json_object_put(reply);
		reply = NULL;
		err__set(e, EPROTO, "%s: the reply to %s is not a JSON object", control, cmd);
	}
out:
	free(buf);
	close(fd);
	return reply;
}

static json_object *ret_of(json_object *reply)
{
	json_object *r = NULL;
	if (reply && json_object_object_get_ex(reply, "return", &r) &&
	    json_object_is_type(r, json_type_object))
		return r;
	return NULL;
}

static void copy_member(json_object *to, json_object *from, const char *name, const char *as)
{
	json_object *v;
	if (json_object_object_get_ex(from, name, &v))
		json_object_object_add(to, as ? as : name, json_object_get(v));
}

/* One VM as list-vms reports it, or NULL when it does not answer or no
 * longer runs here. */
static json_object *describe(const char *control)
{
	struct err e = { 0 };
	json_object *st = agent__vm_request(control, "query-status", NULL, VM_TIMEOUT_MS, &e);
	json_object *s = ret_of(st), *v;
	json_object *out = NULL, *cf = NULL;
	if (!s || !json_object_object_get_ex(s, "status", &v))
		goto out;
	const char *status = json_object_get_string(v);
	if (strcmp(status, "running") && strcmp(status, "paused"))
		goto out;
	cf = agent__vm_request(control, "query-config", NULL, VM_TIMEOUT_MS, &e);
	json_object *c = ret_of(cf);
	if (!c)
		goto out;
	out = json_object_new_object();
	copy_member(out, c, "name", NULL);
	json_object_object_add(out, "control", json_object_new_string(control));
	json_object_object_add(out, "status", json_object_new_string(status));
	copy_member(out, s, "handed_off", NULL);
	copy_member(out, c, "memory", NULL);
	copy_member(out, c, "cpus", NULL);
	copy_member(out, c, "cpu_model", NULL);
	copy_member(out, c, "disks", NULL);
	json_object_object_add(out, "config", json_object_get(c));
out:
	if (st)
		json_object_put(st);
	if (cf)
		json_object_put(cf);
	return out;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int agent__list_vms(struct agent *a, json_object **out, struct err *e)
{
	DIR *d = opendir(a->o.run_dir);
	if (!d)
		return err__setsys(e, errno, "cannot read the run directory %s", a->o.run_dir);
	char *names[256];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < ARRAY_SIZE(names)) {
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".sock"))
			continue;
		names[n] = strdup(de->d_name);
		if (names[n])
			n++;
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), by_name);
	json_object *vms = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		char path[1024];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", a->o.run_dir, names[i]);
		free(names[i]);
		if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		json_object *vm = describe(path);
		if (vm)
			json_object_array_add(vms, vm);
	}
	*out = vms;
	return 0;
}
