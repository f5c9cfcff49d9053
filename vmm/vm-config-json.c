/* struct vm_config <-> JSON. The reader sees configs sent by migration peers,
 * so it checks everything and builds into a scratch config that is moved to
 * the caller only once all of it is valid. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/vm-config-json.h"

#define PFX "VM config: "

static const char *const top_members[] = {
	"name", "kernel", "initrd", "cmdline", "memory", "cpus", "cpu_model",
	"disks", "serial", "serial_path", "control_path", NULL,
};
static const char *const disk_members[] = { "id", "path", "cache", "readonly", NULL };

static const char *serial_name(enum serial_mode m)
{
	switch (m) {
	case SERIAL_STDIO: return "stdio";
	case SERIAL_FILE: return "file";
	case SERIAL_NONE: return "none";
	}
	return "none";
}

static struct json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;	/* NULL adds a JSON null */
}

/* json-c's add functions cannot fail usefully except on allocation, which
 * shows up as a NULL value we check for below. */
static int add(struct json_object *o, const char *key, struct json_object *v, bool nullable)
{
	if (!v && !nullable)
		return -ENOMEM;
	return json_object_object_add(o, key, v) ? -ENOMEM : 0;
}

static int disk_to_json(const struct disk_config *d, struct json_object **out)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	int r = add(o, "id", json_object_new_string(d->id), false);
	if (!r)
		r = add(o, "path", str_or_null(d->path), true);
	if (!r)
		r = add(o, "cache", json_object_new_string(d->cache_none ? "none" : "writeback"), false);
	if (!r)
		r = add(o, "readonly", json_object_new_boolean(d->readonly), false);
	if (r) {
		json_object_put(o);
		return r;
	}
	*out = o;
	return 0;
}

int vm_config__to_json(const struct vm_config *c, struct json_object **out)
{
	struct json_object *o = json_object_new_object();
	struct json_object *disks = json_object_new_array();
	if (!o || !disks) {
		json_object_put(o);
		json_object_put(disks);
		return -ENOMEM;
	}
	int r = add(o, "name", json_object_new_string(c->name), false);
	if (!r)
		r = add(o, "kernel", str_or_null(c->kernel), true);
	if (!r)
		r = add(o, "initrd", str_or_null(c->initrd), true);
	if (!r)
		/* An empty command line is no command line: null reads back. */
		r = add(o, "cmdline", str_or_null(c->cmdline && *c->cmdline ? c->cmdline : NULL), true);
	if (!r)
		r = add(o, "memory", json_object_new_uint64(c->mem_size), false);
	if (!r)
		r = add(o, "cpus", json_object_new_int64(c->nr_cpus), false);
	if (!r)
		r = add(o, "cpu_model", str_or_null(c->cpu_model), true);
	for (unsigned i = 0; !r && i < c->nr_disks && i < VM_MAX_DISKS; i++) {
		struct json_object *d;
		r = disk_to_json(&c->disks[i], &d);
		if (!r && json_object_array_add(disks, d)) {
			json_object_put(d);
			r = -ENOMEM;
		}
	}
	if (!r) {
		r = add(o, "disks", disks, false);
		disks = NULL;	/* owned by o now, even on failure */
	}
	if (!r)
		r = add(o, "serial", json_object_new_string(serial_name(c->serial)), false);
	if (!r)
		r = add(o, "serial_path", str_or_null(c->serial_path), true);
	if (!r)
		r = add(o, "control_path", str_or_null(c->control_path), true);
	json_object_put(disks);
	if (r) {
		json_object_put(o);
		return r;
	}
	*out = o;
	return 0;
}

/* ---- reader ---- */

static bool listed(const char *const *names, const char *key)
{
	for (; *names; names++)
		if (!strcmp(*names, key))
			return true;
	return false;
}

static int check_members(struct json_object *o, const char *const *names, const char *what,
			 struct err *e)
{
	json_object_object_foreach(o, key, val) {
		(void)val;
		if (!listed(names, key)) {
			/* The name comes from a peer: keep the message one line. */
			char shown[65];
			size_t n = 0;
			for (const char *k = key; *k && n < sizeof(shown) - 1; k++)
				shown[n++] = isprint((unsigned char)*k) ? *k : '?';
			shown[n] = 0;
			return err__set(e, EINVAL, PFX "unknown member '%s' in %s", shown, what);
		}
	}
	return 0;
}

/* A string with no NUL or control characters (they would end up in file
 * names, logs and the guest's command line), at most max bytes. */
static int get_text(struct json_object *v, const char *what, size_t max, bool allow_empty,
		    const char **out, struct err *e)
{
	if (!json_object_is_type(v, json_type_string))
		return err__set(e, EINVAL, PFX "%s must be a string", what);
	const char *s = json_object_get_string(v);
	size_t len = (size_t)json_object_get_string_len(v);
	if (len > max)
		return err__set(e, EINVAL, PFX "%s is longer than %zu bytes", what, max);
	if (!len && !allow_empty)
		return err__set(e, EINVAL, PFX "%s is empty", what);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return err__set(e, EINVAL, PFX "%s contains a control character", what);
	*out = s;
	return 0;
}

/* An optional string member: absent or null leaves *out NULL. */
static int get_opt_str(struct json_object *o, const char *key, size_t max, char **out,
		       struct err *e)
{
	struct json_object *v = json_object_object_get(o, key);
	if (!v)
		return 0;
	const char *s;
	int r = get_text(v, key, max, false, &s, e);
	if (r)
		return r;
	if (!(*out = strdup(s)))
		return err__set(e, ENOMEM, "out of memory");
	return 0;
}

static int get_uint(struct json_object *o, const char *key, uint64_t min, uint64_t max,
		    bool *found, uint64_t *out, struct err *e)
{
	struct json_object *v;
	*found = json_object_object_get_ex(o, key, &v);
	if (!*found)
		return 0;
	/* Negative integers read as 0 through get_uint64: test the sign. */
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return err__set(e, EINVAL, PFX "%s must be a non-negative integer", key);
	uint64_t x = json_object_get_uint64(v);
	if (x < min || x > max)
		return err__set(e, EINVAL, PFX "%s %llu is out of range [%llu, %llu]", key,
				(unsigned long long)x, (unsigned long long)min,
				(unsigned long long)max);
	*out = x;
	return 0;
}

static bool valid_disk_id(const char *s)
{
	if (!*s || strlen(s) >= DISK_ID_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	return true;
}

static bool valid_cpu_model(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.' || *s == '+'))
			return false;
	return true;
}

static int disk_from_json(struct json_object *o, unsigned idx, struct vm_config *c,
			  struct err *e)
{
	char what[32];
	snprintf(what, sizeof(what), "disks[%u]", idx);
	if (!json_object_is_type(o, json_type_object))
		return err__set(e, EINVAL, PFX "%s must be an object", what);
	int r = check_members(o, disk_members, what, e);
	if (r)
		return r;

	struct disk_config *d = &c->disks[idx];
	d->cache_none = true;
	struct json_object *v;
	const char *s;
	if (!json_object_object_get_ex(o, "id", &v))
		return err__set(e, EINVAL, PFX "%s has no id", what);
	if (!json_object_is_type(v, json_type_string) || !valid_disk_id(json_object_get_string(v)) ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return err__set(e, EINVAL, PFX "%s.id must be letters, digits, - and _, at most %d",
				what, DISK_ID_MAX - 1);
	snprintf(d->id, sizeof(d->id), "%s", json_object_get_string(v));
	for (unsigned i = 0; i < idx; i++)
		if (!strcmp(c->disks[i].id, d->id))
			return err__set(e, EINVAL, PFX "disk id '%s' is used twice", d->id);

	if (!json_object_object_get_ex(o, "path", &v))
		return err__set(e, EINVAL, PFX "%s has no path", what);
	snprintf(what, sizeof(what), "disks[%u].path", idx);
	if ((r = get_text(v, what, VM_CONFIG_JSON_PATH_MAX, false, &s, e)))
		return r;
	if (!(d->path = strdup(s)))
		return err__set(e, ENOMEM, "out of memory");

	if (json_object_object_get_ex(o, "cache", &v)) {
		const char *mode = json_object_is_type(v, json_type_string) ?
			json_object_get_string(v) : "";
		if (!strcmp(mode, "none"))
			d->cache_none = true;
		else if (!strcmp(mode, "writeback"))
			d->cache_none = false;
		else
			return err__set(e, EINVAL, PFX "disks[%u].cache must be \"none\" or \"writeback\"", idx);
	}
	if (json_object_object_get_ex(o, "readonly", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return err__set(e, EINVAL, PFX "disks[%u].readonly must be true or false", idx);
		d->readonly = json_object_get_boolean(v);
	}
	return 0;
}

static int disks_from_json(struct json_object *j, struct vm_config *c, struct err *e)
{
	struct json_object *arr;
	if (!json_object_object_get_ex(j, "disks", &arr))
		return 0;
	if (!json_object_is_type(arr, json_type_array))
		return err__set(e, EINVAL, PFX "disks must be an array");
	size_t n = json_object_array_length(arr);
	if (n > VM_MAX_DISKS)
		return err__set(e, EINVAL, PFX "%zu disks, at most %d", n, VM_MAX_DISKS);
	for (size_t i = 0; i < n; i++) {
		/* Count the slot first so vm_config__free sees a partly filled one. */
		c->nr_disks = (unsigned)i + 1;
		int r = disk_from_json(json_object_array_get_idx(arr, i), (unsigned)i, c, e);
		if (r)
			return r;
	}
	return 0;
}

static int serial_from_json(struct json_object *j, struct vm_config *c, struct err *e)
{
	struct json_object *v;
	if (json_object_object_get_ex(j, "serial", &v)) {
		const char *m = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
		if (!strcmp(m, "stdio"))
			c->serial = SERIAL_STDIO;
		else if (!strcmp(m, "file"))
			c->serial = SERIAL_FILE;
		else if (!strcmp(m, "none"))
			c->serial = SERIAL_NONE;
		else
			return err__set(e, EINVAL, PFX "serial must be \"stdio\", \"file\" or \"none\"");
	}
	int r = get_opt_str(j, "serial_path", VM_CONFIG_JSON_PATH_MAX, &c->serial_path, e);
	if (r)
		return r;
	if (c->serial == SERIAL_FILE && !c->serial_path)
		return err__set(e, EINVAL, PFX "serial \"file\" needs a serial_path");
	if (c->serial != SERIAL_FILE && c->serial_path)
		return err__set(e, EINVAL, PFX "serial_path is only for serial \"file\"");
	return 0;
}

static int parse(struct json_object *j, struct vm_config *c, struct err *e)
{
	if (!j || !json_object_is_type(j, json_type_object))
		return err__set(e, EINVAL, PFX "must be a JSON object");
	int r = check_members(j, top_members, "the configuration", e);
	if (r)
		return r;

	struct json_object *v;
	if (json_object_object_get_ex(j, "name", &v)) {
		const char *s;
		if ((r = get_text(v, "name", VM_NAME_MAX - 1, true, &s, e)))
			return r;
		snprintf(c->name, sizeof(c->name), "%s", s);
	}
	if ((r = get_opt_str(j, "kernel", VM_CONFIG_JSON_PATH_MAX, &c->kernel, e)) ||
	    (r = get_opt_str(j, "initrd", VM_CONFIG_JSON_PATH_MAX, &c->initrd, e)) ||
	    (r = get_opt_str(j, "cmdline", VM_CONFIG_JSON_CMDLINE_MAX, &c->cmdline, e)) ||
	    (r = get_opt_str(j, "cpu_model", VM_CONFIG_JSON_CPU_MODEL_MAX, &c->cpu_model, e)) ||
	    (r = get_opt_str(j, "control_path", VM_CONFIG_JSON_PATH_MAX, &c->control_path, e)))
		return r;
	if (c->cpu_model && !valid_cpu_model(c->cpu_model))
		return err__set(e, EINVAL, PFX "cpu_model must be letters, digits and - _ . +");

	bool found;
	uint64_t x;
	if ((r = get_uint(j, "memory", VM_CONFIG_JSON_MEM_MIN, VM_CONFIG_JSON_MEM_MAX, &found, &x, e)))
		return r;
	if (found) {
		if (x % 4096)
			return err__set(e, EINVAL, PFX "memory %llu is not a multiple of 4096",
					(unsigned long long)x);
		c->mem_size = x;
	}
	if ((r = get_uint(j, "cpus", 1, VM_CONFIG_JSON_CPUS_MAX, &found, &x, e)))
		return r;
	if (found)
		c->nr_cpus = (unsigned)x;
	if ((r = disks_from_json(j, c, e)))
		return r;
	return serial_from_json(j, c, e);
}

int vm_config__from_json(struct json_object *j, struct vm_config *c, struct err *e)
{
	struct vm_config tmp;
	vm_config__init(&tmp);
	int r = parse(j, &tmp, e);
	if (r) {
		vm_config__free(&tmp);
		vm_config__init(c);
		return r;
	}
	*c = tmp;
	return 0;
}
