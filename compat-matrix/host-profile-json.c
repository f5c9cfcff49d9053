/* struct host_profile <-> JSON. A profile from a peer is untrusted: the
 * reader bounds the text and its nesting, type-checks and ranges every
 * member, bounds every string and array, and refuses unknown members. It
 * builds into a scratch profile copied out only when all of it is valid. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmhop/host-profile.h"
#include "vmhop/util.h"

#define PFX "host profile: "
#define DEPTH_MAX 8

/* ---- writer ---- */

struct w {
	int err;
};

static struct json_object *chk(struct w *w, struct json_object *o)
{
	if (!o)
		w->err = -ENOMEM;
	return o;
}

static void put(struct w *w, struct json_object *o, const char *k, struct json_object *v)
{
	if (!v) {
		w->err = -ENOMEM;
		return;
	}
	if (!o || json_object_object_add(o, k, v)) {
		json_object_put(v);
		w->err = -ENOMEM;
	}
}

static void push(struct w *w, struct json_object *a, struct json_object *v)
{
	if (!v || !a || json_object_array_add(a, v)) {
		json_object_put(v);
		w->err = -ENOMEM;
	}
}

static struct json_object *hex(uint32_t v)
{
	char b[16];
	snprintf(b, sizeof(b), "0x%08x", v);
	return json_object_new_string(b);
}

static struct json_object *u64(uint64_t v)
{
	return json_object_new_uint64(v);
}

int host_profile__to_json(const struct host_profile *p, struct json_object **out)
{
	struct w w = { 0 };
	struct json_object *o = chk(&w, json_object_new_object());
	put(&w, o, "profile_version", json_object_new_int(HOST_PROFILE_VERSION));
	put(&w, o, "hostname", json_object_new_string(p->hostname));
	put(&w, o, "boot_id", json_object_new_string(p->boot_id));

	struct json_object *cpu = chk(&w, json_object_new_object());
	put(&w, cpu, "vendor", json_object_new_string(p->vendor));
	put(&w, cpu, "family", u64(p->family));
	put(&w, cpu, "model", u64(p->model));
	put(&w, cpu, "stepping", u64(p->stepping));
	put(&w, cpu, "nx", json_object_new_boolean(p->host_nx));
	put(&w, cpu, "kvm_nx", json_object_new_boolean(p->kvm_nx));
	put(&w, o, "cpu", cpu);

	struct json_object *kvm = chk(&w, json_object_new_object());
	put(&w, kvm, "api_version", json_object_new_int(p->kvm_api_version));
	struct json_object *caps = chk(&w, json_object_new_object());
	for (int i = 0; i < HOST_CAP_COUNT; i++)
		put(&w, caps, host_profile__cap_name(i), json_object_new_int64(p->caps[i]));
	put(&w, kvm, "caps", caps);
	struct json_object *cpuid = chk(&w, json_object_new_array());
	for (size_t i = 0; i < p->ncpuid && i < HOST_PROFILE_MAX_CPUID; i++) {
		const struct cpuid_leaf *l = &p->cpuid[i];
		struct json_object *e = chk(&w, json_object_new_object());
		put(&w, e, "function", hex(l->function));
		put(&w, e, "index", u64(l->index));
		put(&w, e, "flags", u64(l->flags));
		put(&w, e, "eax", hex(l->eax));
		put(&w, e, "ebx", hex(l->ebx));
		put(&w, e, "ecx", hex(l->ecx));
		put(&w, e, "edx", hex(l->edx));
		push(&w, cpuid, e);
	}
	put(&w, kvm, "supported_cpuid", cpuid);
	put(&w, o, "kvm", kvm);

	struct json_object *host = chk(&w, json_object_new_object());
	put(&w, host, "cores", u64(p->cores));
	put(&w, host, "vcpus_in_use", u64(p->vcpus_in_use));
	put(&w, host, "mem_total", u64(p->mem_total));
	put(&w, host, "mem_available", u64(p->mem_available));
	put(&w, o, "host", host);

	struct json_object *rel = chk(&w, json_object_new_object());
	put(&w, rel, "level", json_object_new_string(p->release));
	put(&w, rel, "ordinal", u64(p->release_ordinal));
	put(&w, rel, "writes", u64(p->format_write));
	put(&w, rel, "reads_min", u64(p->format_read_min));
	put(&w, rel, "reads_max", u64(p->format_read_max));
	put(&w, o, "release", rel);

	struct json_object *models = chk(&w, json_object_new_array());
	for (size_t i = 0; i < p->nmodels && i < HOST_PROFILE_MAX_MODELS; i++)
		push(&w, models, json_object_new_string(p->models[i]));
	put(&w, o, "cpu_models", models);

	struct json_object *mach = chk(&w, json_object_new_object());
	put(&w, mach, "layout", json_object_new_string(p->machine));
	struct json_object *devs = chk(&w, json_object_new_array());
	for (size_t i = 0; i < p->ndevices && i < HOST_PROFILE_MAX_DEVICES; i++)
		push(&w, devs, json_object_new_string(p->devices[i]));
	put(&w, mach, "devices", devs);
	put(&w, mach, "max_disks", u64(p->max_disks));
	put(&w, o, "machine", mach);

	if (p->have_disks) {
		struct json_object *disks = chk(&w, json_object_new_array());
		for (size_t i = 0; i < p->ndisks && i < VM_MAX_DISKS; i++) {
			const struct compat_disk_view *v = &p->disks[i];
			struct json_object *d = chk(&w, json_object_new_object());
			put(&w, d, "id", json_object_new_string(v->id));
			put(&w, d, "path", json_object_new_string(v->path));
			put(&w, d, "exists", json_object_new_boolean(v->exists));
			put(&w, d, "writable", json_object_new_boolean(v->writable));
			put(&w, d, "size", u64(v->size));
			put(&w, d, "dev", u64(v->dev));
			put(&w, d, "ino", u64(v->ino));
			put(&w, d, "head_sha256", json_object_new_string(v->head_sha256));
			push(&w, disks, d);
		}
		put(&w, o, "disks", disks);
	}
	if (w.err) {
		json_object_put(o);
		return w.err;
	}
	*out = o;
	return 0;
}

int host_profile__to_text(const struct host_profile *p, char **out)
{
	struct json_object *j;
	int r = host_profile__to_json(p, &j);
	if (r)
		return r;
	const char *t = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
						       JSON_C_TO_STRING_NOSLASHESCAPE);
	*out = t ? strdup(t) : NULL;
	json_object_put(j);
	return *out ? 0 : -ENOMEM;
}

/* ---- reader ---- */

static int members(struct json_object *o, const char *what, const char *const *names,
		   struct err *e)
{
	if (!json_object_is_type(o, json_type_object))
		return err__set(e, EINVAL, PFX "%s must be an object", what);
	json_object_object_foreach(o, key, val) {
		(void)val;
		bool ok = false;
		for (const char *const *n = names; *n && !ok; n++)
			ok = !strcmp(*n, key);
		if (!ok) {
			/* The key is the peer's: no control characters into our message. */
			char k[65];
			snprintf(k, sizeof(k), "%s", key);
			for (char *c = k; *c; c++)
				if ((unsigned char)*c < 0x20 || *c == 0x7f)
					*c = '?';
			return err__set(e, EINVAL, PFX "unknown member '%s' in %s", k, what);
		}
	}
	return 0;
}

static struct json_object *need(struct json_object *o, const char *key, const char *what,
				int *r, struct err *e)
{
	struct json_object *v;
	if (*r)
		return NULL;
	if (!json_object_object_get_ex(o, key, &v) || !v) {
		*r = err__set(e, EINVAL, PFX "%s.%s is missing", what, key);
		return NULL;
	}
	return v;
}

/* A string of printable ASCII (or UTF-8 bytes >= 0x80), 0..size-1 bytes. */
static void get_str(struct json_object *o, const char *key, const char *what, char *dst,
		    size_t size, bool allow_empty, int *r, struct err *e)
{
	struct json_object *v = need(o, key, what, r, e);
	if (!v)
		return;
	if (!json_object_is_type(v, json_type_string)) {
		*r = err__set(e, EINVAL, PFX "%s.%s must be a string", what, key);
		return;
	}
	const char *s = json_object_get_string(v);
	size_t len = (size_t)json_object_get_string_len(v);
	if (len >= size || (!len && !allow_empty)) {
		*r = err__set(e, EINVAL, PFX "%s.%s must be 1..%zu bytes", what, key, size - 1);
		return;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			*r = err__set(e, EINVAL, PFX "%s.%s contains a control character", what, key);
			return;
		}
	memcpy(dst, s, len);
	dst[len] = '\0';
}

static uint64_t get_uint(struct json_object *o, const char *key, const char *what, uint64_t max,
			 int *r, struct err *e)
{
	struct json_object *v = need(o, key, what, r, e);
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
	    json_object_get_uint64(v) > max) {
		*r = err__set(e, EINVAL, PFX "%s.%s must be an integer in [0, %llu]", what, key,
			      (unsigned long long)max);
		return 0;
	}
	return json_object_get_uint64(v);
}

static bool get_bool(struct json_object *o, const char *key, const char *what, int *r,
		     struct err *e)
{
	struct json_object *v = need(o, key, what, r, e);
	if (!v)
		return false;
	if (!json_object_is_type(v, json_type_boolean)) {
		*r = err__set(e, EINVAL, PFX "%s.%s must be true or false", what, key);
		return false;
	}
	return json_object_get_boolean(v);
}

static uint32_t get_hex(struct json_object *o, const char *key, const char *what, int *r,
			struct err *e)
{
	char s[16];
	get_str(o, key, what, s, sizeof(s), false, r, e);
	if (*r)
		return 0;
	size_t n = strlen(s);
	bool ok = n >= 3 && n <= 10 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	for (size_t i = 2; ok && i < n; i++)
		ok = strchr("0123456789abcdefABCDEF", s[i]) != NULL;
	if (!ok) {
		*r = err__set(e, EINVAL, PFX "%s.%s must be a hex string \"0x\" and 1-8 digits", what, key);
		return 0;
	}
	return (uint32_t)strtoul(s, NULL, 16);
}

static struct json_object *get_arr(struct json_object *o, const char *key, const char *what,
				   size_t max, int *r, struct err *e)
{
	struct json_object *v = need(o, key, what, r, e);
	if (!v)
		return NULL;
	if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > max) {
		*r = err__set(e, EINVAL, PFX "%s.%s must be an array of at most %zu", what, key, max);
		return NULL;
	}
	return v;
}

static bool name_chars(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("-_.+", *s)))
			return false;
	return true;
}

static int read_cpu(struct json_object *j, struct host_profile *p, struct err *e)
{
	static const char *const names[] = { "vendor", "family", "model", "stepping", "nx",
					     "kvm_nx", NULL };
	int r = members(j, "cpu", names, e);
	get_str(j, "vendor", "cpu", p->vendor, sizeof(p->vendor), true, &r, e);
	p->family = (uint32_t)get_uint(j, "family", "cpu", 0x10f, &r, e);
	p->model = (uint32_t)get_uint(j, "model", "cpu", 0xff, &r, e);
	p->stepping = (uint32_t)get_uint(j, "stepping", "cpu", 0xf, &r, e);
	p->host_nx = get_bool(j, "nx", "cpu", &r, e);
	p->kvm_nx = get_bool(j, "kvm_nx", "cpu", &r, e);
	return r;
}

static int read_kvm(struct json_object *j, struct host_profile *p, struct err *e)
{
	static const char *const names[] = { "api_version", "caps", "supported_cpuid", NULL };
	int r = members(j, "kvm", names, e);
	p->kvm_api_version = (int)get_uint(j, "api_version", "kvm", 1000, &r, e);
	struct json_object *caps = need(j, "caps", "kvm", &r, e);
	if (!r) {
		const char *cn[HOST_CAP_COUNT + 1];
		for (int i = 0; i < HOST_CAP_COUNT; i++)
			cn[i] = host_profile__cap_name(i);
		cn[HOST_CAP_COUNT] = NULL;
		r = members(caps, "kvm.caps", cn, e);
		for (int i = 0; !r && i < HOST_CAP_COUNT; i++) {
			struct json_object *v;
			if (json_object_object_get_ex(caps, cn[i], &v))
				p->caps[i] = (int64_t)get_uint(caps, cn[i], "kvm.caps", INT32_MAX, &r, e);
		}
	}
	struct json_object *arr = get_arr(j, "supported_cpuid", "kvm", HOST_PROFILE_MAX_CPUID, &r, e);
	static const char *const en[] = { "function", "index", "flags", "eax", "ebx", "ecx", "edx",
					  NULL };
	for (size_t i = 0; !r && arr && i < json_object_array_length(arr); i++) {
		struct json_object *x = json_object_array_get_idx(arr, i);
		char what[48];
		snprintf(what, sizeof(what), "kvm.supported_cpuid[%zu]", i);
		if ((r = members(x, what, en, e)))
			break;
		struct cpuid_leaf *l = &p->cpuid[i];
		l->function = get_hex(x, "function", what, &r, e);
		l->index = (uint32_t)get_uint(x, "index", what, UINT32_MAX, &r, e);
		l->flags = (uint32_t)get_uint(x, "flags", what, UINT32_MAX, &r, e);
		l->eax = get_hex(x, "eax", what, &r, e);
		l->ebx = get_hex(x, "ebx", what, &r, e);
		l->ecx = get_hex(x, "ecx", what, &r, e);
		l->edx = get_hex(x, "edx", what, &r, e);
		for (size_t k = 0; !r && k < i; k++)
			if (p->cpuid[k].function == l->function && p->cpuid[k].index == l->index)
				r = err__set(e, EINVAL, PFX "%s repeats leaf 0x%x index %u", what,
					     l->function, l->index);
		p->ncpuid = i + 1;
	}
	return r;
}

/* An array of names into dst, `size` bytes apart. */
static int read_names(struct json_object *arr, const char *what, char *dst, size_t size,
		      size_t *n, struct err *e)
{
	int r = 0;
	for (size_t i = 0; !r && i < json_object_array_length(arr); i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(v, json_type_string) ||
		    (size_t)json_object_get_string_len(v) >= size || !json_object_get_string_len(v) ||
		    !name_chars(json_object_get_string(v)) ||
		    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
			return err__set(e, EINVAL, PFX "%s[%zu] must be a name of 1..%zu of [A-Za-z0-9-_.+]",
					what, i, size - 1);
		snprintf(dst + i * size, size, "%s", json_object_get_string(v));
		*n = i + 1;
	}
	return r;
}

static int read_disks(struct json_object *arr, struct host_profile *p, struct err *e)
{
	static const char *const dn[] = { "id", "path", "exists", "writable", "size", "dev", "ino",
					  "head_sha256", NULL };
	int r = 0;
	p->have_disks = true;
	for (size_t i = 0; !r && i < json_object_array_length(arr); i++) {
		struct json_object *x = json_object_array_get_idx(arr, i);
		char what[32];
		snprintf(what, sizeof(what), "disks[%zu]", i);
		if ((r = members(x, what, dn, e)))
			break;
		struct compat_disk_view *v = &p->disks[i];
		get_str(x, "id", what, v->id, sizeof(v->id), false, &r, e);
		get_str(x, "path", what, v->path, sizeof(v->path), false, &r, e);
		v->exists = get_bool(x, "exists", what, &r, e);
		v->writable = get_bool(x, "writable", what, &r, e);
		v->size = get_uint(x, "size", what, UINT64_MAX, &r, e);
		v->dev = get_uint(x, "dev", what, UINT64_MAX, &r, e);
		v->ino = get_uint(x, "ino", what, UINT64_MAX, &r, e);
		get_str(x, "head_sha256", what, v->head_sha256, sizeof(v->head_sha256), true, &r, e);
		if (!r && !name_chars(v->id))
			r = err__set(e, EINVAL, PFX "%s.id has characters other than [A-Za-z0-9-_.+]", what);
		p->ndisks = i + 1;
	}
	return r;
}

static int parse(struct json_object *j, struct host_profile *p, struct err *e)
{
	static const char *const top[] = { "profile_version", "hostname", "boot_id", "cpu", "kvm",
					   "host", "release", "cpu_models", "machine", "disks", NULL };
	static const char *const hn[] = { "cores", "vcpus_in_use", "mem_total", "mem_available",
					  NULL };
	static const char *const rn[] = { "level", "ordinal", "writes", "reads_min", "reads_max",
					  NULL };
	static const char *const mn[] = { "layout", "devices", "max_disks", NULL };
	int r = members(j, "the profile", top, e);
	uint64_t ver = get_uint(j, "profile_version", "profile", 1000, &r, e);
	if (!r && ver != HOST_PROFILE_VERSION)
		return err__set(e, EINVAL, PFX "profile_version %llu, this build reads %d",
				(unsigned long long)ver, HOST_PROFILE_VERSION);
	get_str(j, "hostname", "profile", p->hostname, sizeof(p->hostname), true, &r, e);
	get_str(j, "boot_id", "profile", p->boot_id, sizeof(p->boot_id), true, &r, e);
	struct json_object *v = need(j, "cpu", "profile", &r, e);
	if (!r)
		r = read_cpu(v, p, e);
	v = need(j, "kvm", "profile", &r, e);
	if (!r)
		r = read_kvm(v, p, e);
	v = need(j, "host", "profile", &r, e);
	if (!r)
		r = members(v, "host", hn, e);
	if (!r) {
		p->cores = (unsigned)get_uint(v, "cores", "host", 1u << 20, &r, e);
		p->vcpus_in_use = (unsigned)get_uint(v, "vcpus_in_use", "host", 1u << 24, &r, e);
		p->mem_total = get_uint(v, "mem_total", "host", UINT64_MAX, &r, e);
		p->mem_available = get_uint(v, "mem_available", "host", UINT64_MAX, &r, e);
		if (!r && !p->cores)
			r = err__set(e, EINVAL, PFX "host.cores must be at least 1");
	}
	v = need(j, "release", "profile", &r, e);
	if (!r)
		r = members(v, "release", rn, e);
	if (!r) {
		get_str(v, "level", "release", p->release, sizeof(p->release), false, &r, e);
		p->release_ordinal = (unsigned)get_uint(v, "ordinal", "release", 65535, &r, e);
		p->format_write = (unsigned)get_uint(v, "writes", "release", 65535, &r, e);
		p->format_read_min = (unsigned)get_uint(v, "reads_min", "release", 65535, &r, e);
		p->format_read_max = (unsigned)get_uint(v, "reads_max", "release", 65535, &r, e);
		if (!r && !name_chars(p->release))
			r = err__set(e, EINVAL, PFX "release.level has characters other than [A-Za-z0-9-_.+]");
		if (!r && p->format_read_min > p->format_read_max)
			r = err__set(e, EINVAL, PFX "release.reads_min is above reads_max");
	}
	v = get_arr(j, "cpu_models", "profile", HOST_PROFILE_MAX_MODELS, &r, e);
	if (!r)
		r = read_names(v, "cpu_models", p->models[0], CPU_MODEL_NAME_MAX, &p->nmodels, e);
	v = need(j, "machine", "profile", &r, e);
	if (!r)
		r = members(v, "machine", mn, e);
	if (!r) {
		get_str(v, "layout", "machine", p->machine, sizeof(p->machine), false, &r, e);
		struct json_object *d = get_arr(v, "devices", "machine", HOST_PROFILE_MAX_DEVICES, &r, e);
		if (!r)
			r = read_names(d, "machine.devices", p->devices[0], HOST_PROFILE_NAME_MAX,
				       &p->ndevices, e);
		p->max_disks = (unsigned)get_uint(v, "max_disks", "machine", 1024, &r, e);
	}
	if (!r && json_object_object_get_ex(j, "disks", &v) && v) {
		struct json_object *d = get_arr(j, "disks", "profile", VM_MAX_DISKS, &r, e);
		if (!r)
			r = read_disks(d, p, e);
	}
	return r;
}

int host_profile__from_json(struct json_object *j, struct host_profile *p, struct err *e)
{
	struct host_profile *tmp = calloc(1, sizeof(*tmp));
	if (!tmp)
		return err__set(e, ENOMEM, "out of memory");
	int r = j ? parse(j, tmp, e) : err__set(e, EINVAL, PFX "must be a JSON object");
	if (!r)
		*p = *tmp;
	free(tmp);
	return r;
}

int host_profile__parse(const char *text, size_t len, struct host_profile *p, struct err *e)
{
	if (len > HOST_PROFILE_JSON_MAX)
		return err__set(e, EFBIG, PFX "%zu bytes, at most %u", len, HOST_PROFILE_JSON_MAX);
	if (memchr(text, '\0', len))
		return err__set(e, EINVAL, PFX "contains a NUL byte");
	struct json_tokener *tok = json_tokener_new_ex(DEPTH_MAX);
	if (!tok)
		return err__set(e, ENOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *j = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	int r;
	if (je != json_tokener_success || !j) {
		r = err__set(e, EINVAL, PFX "not valid JSON: %s",
			     je == json_tokener_continue ? "unexpected end of input" :
			     json_tokener_error_desc(je));
	} else {
		for (; used < len && strchr(" \t\r\n", text[used]); used++)
			;
		r = used < len ? err__set(e, EINVAL, PFX "trailing data after the JSON object") :
			host_profile__from_json(j, p, e);
	}
	json_object_put(j);
	return r;
}

int host_profile__load(const char *path, struct host_profile *p, struct err *e)
{
	char *buf = NULL;
	size_t off = 0;
	int r = util__read_file(path, HOST_PROFILE_JSON_MAX, &buf, &off, e);
	if (!r) {
		struct err pe = { 0 };
		r = host_profile__parse(buf, off, p, &pe);
		if (r)
			err__set(e, pe.code, "%s: %s", path, pe.msg);
	}
	free(buf);
	return r;
}
