/* Control protocol: one request line in, one reply object out. Everything a
 * client sends is untrusted; a bad request costs it an error reply, never
 * the VM anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/control-internal.h"

static const struct control_cmd query_commands_cmd = {
	"query-commands", NULL, "list the commands this socket accepts", NULL, NULL,
};

struct json_object *control_dispatch__error(const char *cls, const char *desc,
					    struct json_object *id)
{
	struct json_object *reply = json_object_new_object();
	struct json_object *err = json_object_new_object();
	if (!reply || !err) {
		json_object_put(reply);
		json_object_put(err);
		return NULL;
	}
	json_object_object_add(err, "class", json_object_new_string(cls));
	json_object_object_add(err, "desc", json_object_new_string(desc));
	json_object_object_add(reply, "error", err);
	if (id)
		json_object_object_add(reply, "id", json_object_get(id));
	return reply;
}

static struct json_object *reply_return(struct json_object *result, struct json_object *id)
{
	struct json_object *reply = json_object_new_object();
	if (!result)
		result = json_object_new_object();
	if (!reply || !result) {
		json_object_put(reply);
		json_object_put(result);
		return NULL;
	}
	json_object_object_add(reply, "return", result);
	if (id)
		json_object_object_add(reply, "id", json_object_get(id));
	return reply;
}

const char *control__error_class(int rc)
{
	return rc == -EINVAL ? "InvalidParameter" : "GenericError";
}

static struct json_object *reply_failure(int rc, const struct err *e, struct json_object *id)
{
	if (rc >= 0)
		rc = -EIO;	/* a handler that failed without saying how */
	const char *desc = e && e->code && e->msg[0] ? e->msg : strerror(-rc);
	return control_dispatch__error(control__error_class(rc), desc, id);
}

/* Results are objects so clients can always print `return` as key/values. */
static struct json_object *reply_result(const char *name, int rc, struct json_object *result,
					const struct err *e, struct json_object *id)
{
	if (rc < 0) {
		json_object_put(result);
		return reply_failure(rc, e, id);
	}
	if (result && !json_object_is_type(result, json_type_object)) {
		json_object_put(result);
		char desc[128];
		snprintf(desc, sizeof(desc), "internal error: %.64s returned a non-object", name);
		return control_dispatch__error("GenericError", desc, id);
	}
	return reply_return(result, id);
}

static struct json_object *query_commands(const struct control_server *s)
{
	struct json_object *list = json_object_new_array();
	struct json_object *res = json_object_new_object();
	if (!list || !res) {
		json_object_put(list);
		json_object_put(res);
		return NULL;
	}
	json_object_object_add(res, "commands", list);
	for (size_t i = 0; i <= s->n; i++) {
		const struct control_cmd *cmd = i < s->n ? &s->table[i] : &query_commands_cmd;
		struct json_object *o = json_object_new_object();
		struct json_object *params = json_object_new_array();
		if (!o || !params) {
			json_object_put(o);
			json_object_put(params);
			json_object_put(res);
			return NULL;
		}
		for (const char *const *p = cmd->params; p && *p; p++)
			json_object_array_add(params, json_object_new_string(*p));
		json_object_object_add(o, "name", json_object_new_string(cmd->name));
		json_object_object_add(o, "help", json_object_new_string(cmd->help ? cmd->help : ""));
		json_object_object_add(o, "arguments", params);
		json_object_array_add(list, o);
	}
	return res;
}

static const struct control_cmd *lookup(const struct control_server *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->table[i].name, name))
			return &s->table[i];
	if (!strcmp(name, query_commands_cmd.name))
		return &query_commands_cmd;
	return NULL;
}

static bool accepts(const struct control_cmd *cmd, const char *key)
{
	for (const char *const *p = cmd->params; p && *p; p++)
		if (!strcmp(*p, key))
			return true;
	return false;
}

/* Parses one line into a request object, or says why it is not one. */
static struct json_object *parse_request(const char *line, size_t len, char *why, size_t whylen)
{
	if (memchr(line, '\0', len)) {
		snprintf(why, whylen, "request contains a NUL byte");
		return NULL;
	}
	struct json_tokener *tok = json_tokener_new();
	if (!tok) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	/* -1: the line is NUL-terminated, so a bare number at its end is
	 * complete and trailing garbage is an error in strict mode. */
	struct json_object *req = json_tokener_parse_ex(tok, line, -1);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	if (!req || jerr != json_tokener_success) {
		snprintf(why, whylen, "malformed JSON at byte %zu: %s",
			 json_tokener_get_parse_end(tok), json_tokener_error_desc(jerr));
		json_object_put(req);
		req = NULL;
	} else if (!json_object_is_type(req, json_type_object)) {
		snprintf(why, whylen, "a request must be a JSON object");
		json_object_put(req);
		req = NULL;
	}
	json_tokener_free(tok);
	return req;
}

/* Checks the envelope; returns the reply for a bad one, NULL when good. */
static struct json_object *check_request(struct json_object *req, struct json_object *id,
					 const char **name, struct json_object **args)
{
	struct json_object_iterator it = json_object_iter_begin(req);
	struct json_object_iterator end = json_object_iter_end(req);
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		const char *key = json_object_iter_peek_name(&it);
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id")) {
			char desc[160];
			snprintf(desc, sizeof(desc),
				 "unknown member '%.64s' in request (expected execute, arguments, id)", key);
			return control_dispatch__error("InvalidRequest", desc, id);
		}
	}
	struct json_object *exec;
	if (!json_object_object_get_ex(req, "execute", &exec))
		return control_dispatch__error("InvalidRequest", "request has no 'execute'", id);
	if (!json_object_is_type(exec, json_type_string))
		return control_dispatch__error("InvalidRequest", "'execute' must be a string", id);
	*name = json_object_get_string(exec);
	/* get_ex: `"arguments": null` is present (and wrong), not absent. */
	bool has_args = json_object_object_get_ex(req, "arguments", args);
	if (has_args && !json_object_is_type(*args, json_type_object))
		return control_dispatch__error("InvalidRequest", "'arguments' must be an object", id);
	return NULL;
}

static struct json_object *check_args(const struct control_cmd *cmd, struct json_object *args,
				      struct json_object *id)
{
	json_object_object_foreach(args, key, val) {
		(void)val;
		if (accepts(cmd, key))
			continue;
		char desc[200];
		snprintf(desc, sizeof(desc), "%s: unknown argument '%.64s'%s", cmd->name, key,
			 cmd->params && cmd->params[0] ? " (query-commands lists its arguments)" :
			 " (it takes none)");
		return control_dispatch__error("InvalidParameter", desc, id);
	}
	return NULL;
}

static struct json_object *run_async(struct control_client *c, const struct control_cmd *cmd,
				     struct json_object *args, struct json_object *id)
{
	struct control_call *call = calloc(1, sizeof(*call));
	if (!call)
		return control_dispatch__error("GenericError", strerror(ENOMEM), id);
	call->client = c;
	call->id = id ? json_object_get(id) : NULL;
	c->refs++;
	c->pending = call;
	struct err e = { 0 };
	int rc = cmd->fn_async(c->srv->ctx, args, call, &e);
	if (rc >= 0)
		return NULL;	/* the reply comes through control__call_done */
	c->pending = NULL;
	json_object_put(call->id);
	free(call);
	control_client__unref(c);
	return reply_failure(rc, &e, id);
}

static struct json_object *execute(struct control_client *c, struct json_object *req)
{
	struct json_object *id = json_object_object_get(req, "id");
	const char *name = NULL;
	struct json_object *args = NULL;
	struct json_object *reply = check_request(req, id, &name, &args);
	if (reply)
		return reply;
	const struct control_cmd *cmd = lookup(c->srv, name);
	if (!cmd) {
		char desc[160];
		snprintf(desc, sizeof(desc), "unknown command '%.64s' (query-commands lists them)", name);
		return control_dispatch__error("CommandNotFound", desc, id);
	}
	struct json_object *empty = NULL;
	if (!args && !(args = empty = json_object_new_object()))
		return control_dispatch__error("GenericError", strerror(ENOMEM), id);
	reply = check_args(cmd, args, id);
	if (!reply) {
		if (cmd == &query_commands_cmd) {
			struct json_object *res = query_commands(c->srv);
			reply = res ? reply_return(res, id) :
				control_dispatch__error("GenericError", strerror(ENOMEM), id);
		} else if (cmd->fn_async) {
			reply = run_async(c, cmd, args, id);
		} else {
			struct json_object *result = NULL;
			struct err e = { 0 };
			int rc = cmd->fn(c->srv->ctx, args, &result, &e);
			reply = reply_result(cmd->name, rc, result, &e, id);
			if (!reply)	/* out of memory: say so rather than hang */
				reply = control_dispatch__error("GenericError", strerror(ENOMEM), id);
		}
	}
	json_object_put(empty);
	return reply;
}

void control_dispatch__line(struct control_client *c, char *line, size_t len)
{
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len)
		return;		/* blank lines are keep-alives, not requests */

	char why[160];
	struct json_object *req = parse_request(line, len, why, sizeof(why));
	if (!req) {
		control_client__send(c, control_dispatch__error("InvalidRequest", why, NULL));
		return;
	}
	struct json_object *reply = execute(c, req);
	json_object_put(req);
	if (reply)
		control_client__send(c, reply);
}

void control__call_done(struct control_call *call, int rc, struct json_object *result,
			const struct err *e)
{
	struct control_client *c = call->client;
	struct json_object *reply = reply_result("command", rc, result, e, call->id);

	json_object_put(call->id);
	free(call);
	c->pending = NULL;
	if (c->closing) {
		json_object_put(reply);	/* the client left; nobody to tell */
	} else {
		control_client__send(c, reply);
		/* Inside the handler, the dispatch loop carries on itself. */
		if (!c->dispatching)
			control_client__process(c);
	}
	control_client__unref(c);
}

uv_loop_t *control__call_loop(const struct control_call *call)
{
	return call->client->srv->loop;
}
