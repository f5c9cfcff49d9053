/* Typed access to a control command's arguments, with messages that name the
 * command and the argument, so handlers stay a few lines long. */
#include <string.h>

#include "vmhop/control.h"

int control__arg_str(struct json_object *args, const char *cmd, const char *name,
		     size_t max_len, const char **out, struct err *e)
{
	struct json_object *v = json_object_object_get(args, name);
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return err__set(e, EINVAL, "%s: argument '%s' must be a string", cmd, name);
	const char *s = json_object_get_string(v);
	size_t len = (size_t)json_object_get_string_len(v);
	/* JSON may carry \u0000; C strings would silently cut it short. */
	if (strlen(s) != len)
		return err__set(e, EINVAL, "%s: argument '%s' contains a NUL character", cmd, name);
	if (len > max_len)
		return err__set(e, EINVAL, "%s: argument '%s' is longer than %zu bytes", cmd, name, max_len);
	*out = s;
	return 1;
}

int control__arg_u64(struct json_object *args, const char *cmd, const char *name,
		     uint64_t min, uint64_t max, uint64_t *out, struct err *e)
{
	struct json_object *v = json_object_object_get(args, name);
	if (!v)
		return 0;
	/* json-c keeps integers as int64 or uint64: a negative one reads as
	 * 0 through get_uint64, so test the sign first. */
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return err__set(e, EINVAL, "%s: argument '%s' must be a non-negative integer", cmd, name);
	uint64_t x = json_object_get_uint64(v);
	if (x < min || x > max)
		return err__set(e, EINVAL, "%s: argument '%s' must be between %llu and %llu", cmd, name,
				(unsigned long long)min, (unsigned long long)max);
	*out = x;
	return 1;
}

int control__arg_bool(struct json_object *args, const char *cmd, const char *name,
		      bool *out, struct err *e)
{
	struct json_object *v = json_object_object_get(args, name);
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return err__set(e, EINVAL, "%s: argument '%s' must be true or false", cmd, name);
	*out = json_object_get_boolean(v);
	return 1;
}
