/* The agent's requests (vmhop-agent(1) lists their arguments and replies):
 * ping, host-profile, list-vms, prepare-incoming, migrate-vm, query, cancel,
 * list-jobs. Arguments are checked strictly: an unknown one is refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "vmhop/compat.h"
#include "vmhop/util.h"

#define INVALID "InvalidParameter"
#define GENERIC "GenericError"

/* Refuses members of args not in allowed (NULL-terminated). */
static const char *unknown_arg(json_object *args, const char *const *allowed)
{
	if (!args)
		return NULL;
	json_object_object_foreach(args, k, v) {
		(void)v;
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = !strcmp(allowed[i], k);
		if (!ok)
			return k;
	}
	return NULL;
}

/* A string argument; NULL when absent. *bad set when present but not a string. */
static const char *str_arg(json_object *args, const char *name, bool *bad)
{
	json_object *v;
	if (!args || !json_object_object_get_ex(args, name, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	if (!json_object_is_type(v, json_type_string)) {
		*bad = true;
		return NULL;
	}
	return json_object_get_string(v);
}

/* Up to max strings from an array argument; -1 when it is not one. */
static int strs_arg(json_object *args, const char *name, const char **out, size_t max)
{
	json_object *v;
	if (!args || !json_object_object_get_ex(args, name, &v))
		return 0;
	if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > max)
		return -1;
	size_t n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(v, i);
		if (!json_object_is_type(s, json_type_string))
			return -1;
		out[i] = json_object_get_string(s);
	}
	return (int)n;
}

static unsigned vcpus_here(struct agent *a)
{
	struct err e = { 0 };
	json_object *vms = NULL;
	unsigned n = 0;
	if (agent__list_vms(a, &vms, &e))
		return 0;
	for (size_t i = 0; i < json_object_array_length(vms); i++) {
		json_object *c;
		if (json_object_object_get_ex(json_object_array_get_idx(vms, i), "cpus", &c))
			n += (unsigned)json_object_get_int(c);
	}
	json_object_put(vms);
	return n;
}

static int host_profile(struct agent *a, struct agent_conn *c, json_object *args, json_object *id)
{
	static const char *const allowed[] = { "vm", "disk_map", NULL };
	const char *bad = unknown_arg(args, allowed);
	const char *maps[16];
	int nmap = strs_arg(args, "disk_map", maps, ARRAY_SIZE(maps));
	if (bad || nmap < 0) {
		agent__reply_error(c, id, INVALID, bad ? "unknown argument '%s'" : "%s: a list of OLD=NEW strings",
				   bad ? bad : "disk_map");
		return 0;
	}
	struct host_profile *p = malloc(sizeof(*p));
	struct vm_config vm;
	struct compat_vm_ext ext;
	struct err e = { 0 };
	json_object *jvm = NULL;
	bool have_vm = args && json_object_object_get_ex(args, "vm", &jvm);
	vm_config__init(&vm);
	int r = p ? 0 : err__set(&e, ENOMEM, "out of memory");
	if (!r) {
		if (a->override)
			*p = *a->override;
		else
			r = host_profile__collect(p, &e);
	}
	if (!r && !a->override)
		p->vcpus_in_use = vcpus_here(a);
	if (!r && have_vm) {
		r = compat__vm_from_json(jvm, &vm, &ext, &e);
		if (r) {
			agent__reply_error(c, id, INVALID, "vm: %s", e.msg);
			goto out;
		}
		r = host_profile__view_disks(p, &vm, maps, (size_t)nmap, &e);
	}
	json_object *j = NULL;
	if (!r && host_profile__to_json(p, &j))
		r = err__set(&e, ENOMEM, "out of memory");
	if (r)
		agent__reply_error(c, id, GENERIC, "%s", e.msg);
	else
		agent__reply(c, id, j);
out:
	vm_config__free(&vm);
	free(p);
	return 0;
}

static int list_vms(struct agent *a, struct agent_conn *c, json_object *args, json_object *id)
{
	static const char *const allowed[] = { NULL };
	const char *bad = unknown_arg(args, allowed);
	if (bad) {
		agent__reply_error(c, id, INVALID, "unknown argument '%s'", bad);
		return 0;
	}
	json_object *vms;
	struct err e = { 0 };
	if (agent__list_vms(a, &vms, &e)) {
		agent__reply_error(c, id, GENERIC, "%s", e.msg);
		return 0;
	}
	json_object *r = json_object_new_object();
	json_object_object_add(r, "run_dir", json_object_new_string(a->o.run_dir));
	json_object_object_add(r, "vms", vms);
	agent__reply(c, id, r);
	return 0;
}

static int prepare_incoming(struct agent *a, struct agent_conn *c, json_object *args,
			    json_object *id)
{
	static const char *const allowed[] = { "name", "disk_map", "copy_disks", NULL };
	const char *bad = unknown_arg(args, allowed);
	bool wrong = false, copy = false;
	const char *name = str_arg(args, "name", &wrong);
	json_object *v;
	if (args && json_object_object_get_ex(args, "copy_disks", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			wrong = true;
		else
			copy = json_object_get_boolean(v);
	}
	const char *maps[VM_MAX_DISKS];
	int nmap = strs_arg(args, "disk_map", maps, ARRAY_SIZE(maps));
	if (bad || wrong || nmap < 0 || !name) {
		agent__reply_error(c, id, INVALID, bad ? "unknown argument '%s'" : "%s", bad ? bad :
				   !name ? "name (string) is required" :
				   "name is a string, copy_disks a bool, disk_map a list of OLD=NEW strings");
		return 0;
	}
	if (!agent__valid_name(name)) {
		agent__reply_error(c, id, INVALID, "name '%s': letters, digits, '-', '_' and '.' only",
				   name);
		return 0;
	}
	struct agent_job *j;
	struct err e = { 0 };
	char dir[600];
	/* Copied disks land in the run directory's disks/NAME/ (as ID.img:
	 * two VMs may both have a vda). */
	snprintf(dir, sizeof(dir), "%s/disks", a->o.run_dir);
	if (copy && mkdir(dir, 0750) < 0 && errno != EEXIST) {
		agent__reply_error(c, id, GENERIC, "cannot make %s: %s", dir, strerror(errno));
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/disks/%s", a->o.run_dir, name);
	if (copy && !a->copy_disk) {
		agent__reply_error(c, id, GENERIC, "this host's vmhop cannot receive copied disks");
		return 0;
	}
	if (copy && mkdir(dir, 0750) < 0 && errno != EEXIST) {
		agent__reply_error(c, id, GENERIC, "cannot make %s: %s", dir, strerror(errno));
		return 0;
	}
	if (agent__job_incoming(a, name, maps, (size_t)nmap, copy ? dir : NULL, &j, &e)) {
		agent__reply_error(c, id, GENERIC, "%s", e.msg);
		return 0;
	}
	/* The reply waits for the receiver to say where it listens. */
	j->waiter = c;
	j->waiter_id = id ? json_object_get(id) : NULL;
	return 1;
}

static int migrate_vm(struct agent *a, struct agent_conn *c, json_object *args, json_object *id)
{
	static const char *const allowed[] = { "vm", "uri", "tls_name", "max_bandwidth",
					       "max_downtime_ms", "copy_disks", "unsafe", NULL };
	const char *bad = unknown_arg(args, allowed);
	bool wrong = false;
	struct agent_migrate_args m = { 0 };
	m.vm = str_arg(args, "vm", &wrong);
	m.uri = str_arg(args, "uri", &wrong);
	m.tls_name = str_arg(args, "tls_name", &wrong);
	m.max_bandwidth = str_arg(args, "max_bandwidth", &wrong);
	json_object *v;
	if (args && json_object_object_get_ex(args, "max_downtime_ms", &v)) {
		if (!json_object_is_type(v, json_type_int) || json_object_get_int(v) < 1)
			wrong = true;
		else
			m.max_downtime_ms = json_object_get_int(v);
	}
	if (args && json_object_object_get_ex(args, "unsafe", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			wrong = true;
		else
			m.unsafe = json_object_get_boolean(v);
	}
	int ncopy = strs_arg(args, "copy_disks", m.copy_disks, ARRAY_SIZE(m.copy_disks));
	if (bad || wrong || ncopy < 0 || !m.vm || !m.uri) {
		agent__reply_error(c, id, INVALID, bad ? "unknown argument '%s'" : "%s", bad ? bad :
				   !m.vm || !m.uri ? "vm and uri (strings) are required" :
				   "an argument has the wrong type");
		return 0;
	}
	m.ncopy = (size_t)ncopy;
	if (!agent__valid_name(m.vm)) {
		agent__reply_error(c, id, INVALID, "vm '%s': not a VM name", m.vm);
		return 0;
	}
	struct agent_job *j;
	struct err e = { 0 };
	if (agent__job_outgoing(a, &m, &j, &e)) {
		agent__reply_error(c, id, GENERIC, "%s", e.msg);
		return 0;
	}
	agent__reply(c, id, agent__job_json(j));
	return 0;
}

static struct agent_job *job_arg(struct agent *a, struct agent_conn *c, json_object *args,
				 json_object *id)
{
	static const char *const allowed[] = { "id", NULL };
	const char *bad = unknown_arg(args, allowed);
	json_object *v = NULL;
	if (bad || !args || !json_object_object_get_ex(args, "id", &v) ||
	    !json_object_is_type(v, json_type_int)) {
		agent__reply_error(c, id, INVALID, bad ? "unknown argument '%s'" : "%s",
				   bad ? bad : "id (integer) is required");
		return NULL;
	}
	struct agent_job *j = agent__job_find(a, (unsigned)json_object_get_int64(v));
	if (!j)
		agent__reply_error(c, id, GENERIC, "no job %lld here",
				   (long long)json_object_get_int64(v));
	return j;
}

static int query(struct agent *a, struct agent_conn *c, json_object *args, json_object *id)
{
	struct agent_job *j = job_arg(a, c, args, id);
	if (j)
		agent__reply(c, id, agent__job_json(j));
	return 0;
}

static int cancel(struct agent *a, struct agent_conn *c, json_object *args, json_object *id)
{
	struct agent_job *j = job_arg(a, c, args, id);
	struct err e = { 0 };
	if (!j)
		return 0;
	if (agent__job_cancel(j, &e))
		agent__reply_error(c, id, GENERIC, "%s", e.msg);
	else
		agent__reply(c, id, NULL);
	return 0;
}

static int list_jobs(struct agent *a, struct agent_conn *c, json_object *args, json_object *id)
{
	(void)args;
	json_object *arr = json_object_new_array();
	for (size_t i = 0; i < AGENT_MAX_JOBS; i++)
		if (a->jobs[i].id)
			json_object_array_add(arr, agent__job_json(&a->jobs[i]));
	json_object *r = json_object_new_object();
	json_object_object_add(r, "jobs", arr);
	agent__reply(c, id, r);
	return 0;
}

static int ping(struct agent *a, struct agent_conn *c, json_object *args, json_object *id)
{
	(void)args;
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '\0';
	json_object *r = json_object_new_object();
	json_object_object_add(r, "hostname", json_object_new_string(host));
	json_object_object_add(r, "address", json_object_new_string(a->host));
	json_object_object_add(r, "copy_disk", json_object_new_boolean(a->copy_disk));
	agent__reply(c, id, r);
	return 0;
}

struct request {
	const char *name;
	int (*fn)(struct agent *a, struct agent_conn *c, json_object *args, json_object *id);
};

static const struct request requests[] = {
	{ "ping", ping },
	{ "host-profile", host_profile },
	{ "list-vms", list_vms },
	{ "prepare-incoming", prepare_incoming },
	{ "migrate-vm", migrate_vm },
	{ "query", query },
	{ "cancel", cancel },
	{ "list-jobs", list_jobs },
};

int agent__dispatch(struct agent *a, struct agent_conn *c, const char *cmd, json_object *args,
		    json_object *id)
{
	for (size_t i = 0; i < ARRAY_SIZE(requests); i++)
		if (!strcmp(requests[i].name, cmd))
			return requests[i].fn(a, c, args, id);
	agent__reply_error(c, id, "CommandNotFound", "no request '%s' (see vmhop-agent(1))", cmd);
	return 0;
}
