/* The VM description the rules check: a vm_config in the JSON `query-config`
 * returns, plus the compat members vm_config does not have yet (memory
 * backing, assigned host devices). Input may come from anywhere: bounded,
 * strict, unknown members refused (by vm_config__from_json). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmhop/compat.h"
#include "vmhop/util.h"
#include "vmhop/vm-config-json.h"

#define PFX "VM config: "
#define VM_JSON_MAX (1u << 20)

static bool pci_addr_chars(const char *s)
{
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F') ||
		      *s == ':' || *s == '.' || *s == '-' || *s == '_'))
			return false;
	return true;
}

static int ext_from_json(struct json_object *j, struct compat_vm_ext *x, struct err *e)
{
	struct json_object *v;
	memset(x, 0, sizeof(*x));
	if (json_object_object_get_ex(j, "memory_backing", &v)) {
		static const char *const names[] = { "memfd", "anonymous", "file", "hugetlbfs" };
		const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
		bool ok = false;
		for (int i = 0; i < 4 && !ok; i++)
			if (!strcmp(s, names[i])) {
				x->backing = (enum compat_mem_backing)i;
				ok = true;
			}
		if (!ok)
			return err__set(e, EINVAL, PFX "memory_backing must be \"memfd\", \"anonymous\", \"file\" or \"hugetlbfs\"");
	}
	if (json_object_object_get_ex(j, "memory_path", &v) && v) {
		if (!json_object_is_type(v, json_type_string) ||
		    (size_t)json_object_get_string_len(v) >= sizeof(x->memory_path))
			return err__set(e, EINVAL, PFX "memory_path must be a string of at most %zu bytes",
					sizeof(x->memory_path) - 1);
		const char *s = json_object_get_string(v);
		for (const char *p = s; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return err__set(e, EINVAL, PFX "memory_path contains a control character");
		snprintf(x->memory_path, sizeof(x->memory_path), "%s", s);
	}
	if (json_object_object_get_ex(j, "host_devices", &v)) {
		if (!json_object_is_type(v, json_type_array) ||
		    json_object_array_length(v) > COMPAT_MAX_HOST_DEVICES)
			return err__set(e, EINVAL, PFX "host_devices must be an array of at most %d",
					COMPAT_MAX_HOST_DEVICES);
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			struct json_object *d = json_object_array_get_idx(v, i);
			if (!json_object_is_type(d, json_type_string) || !json_object_get_string_len(d) ||
			    (size_t)json_object_get_string_len(d) >= HOST_PROFILE_NAME_MAX ||
			    !pci_addr_chars(json_object_get_string(d)))
				return err__set(e, EINVAL, PFX "host_devices[%zu] must be a device address such as 0000:3b:00.0", i);
			snprintf(x->host_devices[i], HOST_PROFILE_NAME_MAX, "%s", json_object_get_string(d));
			x->nhost_devices = i + 1;
		}
	}
	return 0;
}

int compat__vm_from_json(struct json_object *j, struct vm_config *vm, struct compat_vm_ext *ext,
			 struct err *e)
{
	static const char *const ext_keys[] = { "memory_backing", "memory_path", "host_devices" };
	vm_config__init(vm);
	struct json_object *inner;
	if (json_object_is_type(j, json_type_object) && json_object_object_get_ex(j, "error", &inner))
		return err__set(e, EINVAL, PFX "is an error reply, not a configuration");
	if (json_object_is_type(j, json_type_object) && json_object_object_get_ex(j, "return", &inner)) {
		json_object_object_foreach(j, key, val) {
			(void)val;
			if (strcmp(key, "return") && strcmp(key, "id"))
				return err__set(e, EINVAL, PFX "unknown member in the reply (only return and id)");
		}
		j = inner;
	}
	if (!json_object_is_type(j, json_type_object))
		return err__set(e, EINVAL, PFX "must be a JSON object");
	int r = ext_from_json(j, ext, e);
	if (r)
		return r;
	/* A shallow copy without the compat members for the strict reader. */
	struct json_object *copy = json_object_new_object();
	if (!copy)
		return err__set(e, ENOMEM, "out of memory");
	json_object_object_foreach(j, key, val) {
		bool skip = false;
		for (size_t i = 0; i < 3; i++)
			skip |= !strcmp(key, ext_keys[i]);
		if (!skip && json_object_object_add(copy, key, json_object_get(val))) {
			json_object_put(copy);
			return err__set(e, ENOMEM, "out of memory");
		}
	}
	r = vm_config__from_json(copy, vm, e);
	json_object_put(copy);
	return r;
}

int compat__load_vm(const char *path, struct vm_config *vm, struct compat_vm_ext *ext,
		    struct err *e)
{
	vm_config__init(vm);
	char *buf = NULL;
	size_t off = 0;
	int r = util__read_file(path, VM_JSON_MAX, &buf, &off, e);
	struct json_object *j = NULL;
	if (!r) {
		struct json_tokener *tok = json_tokener_new_ex(16);
		if (!tok)
			r = err__set(e, ENOMEM, "out of memory");
		else {
			json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
			j = json_tokener_parse_ex(tok, buf, (int)off);
			enum json_tokener_error je = json_tokener_get_error(tok);
			size_t end = json_tokener_get_parse_end(tok);
			json_tokener_free(tok);
			while (end < off && strchr(" \t\r\n", buf[end]) && buf[end])
				end++;
			if (je != json_tokener_success || !j)
				r = err__set(e, EINVAL, "%s: not valid JSON: %s", path,
					     je == json_tokener_continue ? "unexpected end of input" :
					     json_tokener_error_desc(je));
			else if (end < off)
				r = err__set(e, EINVAL, "%s: trailing data after the JSON object", path);
		}
	}
	if (!r) {
		struct err ve = { 0 };
		r = compat__vm_from_json(j, vm, ext, &ve);
		/* vm_config__from_json may quote a member name from the file. */
		for (char *c = ve.msg; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = '?';
		if (r)
			err__set(e, ve.code, "%s: %s", path, ve.msg);
	}
	json_object_put(j);
	free(buf);
	return r;
}
