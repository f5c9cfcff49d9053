/* The agent client (see agent-client.h): the channel API's tls: transport,
 * one request at a time, replies matched by id. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent-client.h"
#include "vmhop/util.h"

#define REPLY_MAX (4u << 20)

int agent_client__uri(const char *host, char *uri, size_t size, struct err *e)
{
	if (!host[0])
		return err__set(e, EINVAL, "empty host name");
	const char *colon = strrchr(host, ':');
	bool v6 = strchr(host, ':') != colon || host[0] == '[';
	int n;
	if (!strncmp(host, "tls:", 4))
		n = snprintf(uri, size, "%s", host);
	else if (colon && !v6)
		n = snprintf(uri, size, "tls:%s", host);
	else if (host[0] == '[' && strstr(host, "]:"))
		n = snprintf(uri, size, "tls:%s", host);
	else if (v6 && host[0] != '[')
		n = snprintf(uri, size, "tls:[%s]:%s", host, AGENT_DEFAULT_PORT);
	else
		n = snprintf(uri, size, "tls:%s:%s", host, AGENT_DEFAULT_PORT);
	if (n < 0 || (size_t)n >= size)
		return err__set(e, ENAMETOOLONG, "host %s: name too long", host);
	return 0;
}

int agent_client__connect(struct agent_client *c, const char *host,
			  const struct channel_tls_opts *tls, int timeout_ms, struct err *e)
{
	memset(c, 0, sizeof(*c));
	c->ch.fd = -1;
	c->next_id = 1;
	snprintf(c->host, sizeof(c->host), "%s", host);
	int r = agent_client__uri(host, c->uri, sizeof(c->uri), e);
	if (r)
		return r;
	c->buf = malloc(REPLY_MAX + 1);
	if (!c->buf)
		return err__set(e, ENOMEM, "out of memory");
	struct err ce = { 0 };
	r = channel__connect_tls(c->uri, timeout_ms, tls, &c->ch, &ce);
	if (r) {
		free(c->buf);
		c->buf = NULL;
		return err__set(e, -r, "agent %s: %s", host, ce.msg);
	}
	c->connected = true;
	return 0;
}

void agent_client__close(struct agent_client *c)
{
	if (c->connected)
		channel__close(&c->ch);
	c->connected = false;
	free(c->buf);
	c->buf = NULL;
}

static json_object *read_reply(struct agent_client *c, int timeout_ms, struct err *e)
{
	channel__set_timeout(&c->ch, timeout_ms);
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			*nl = '\0';
			json_object *o = json_tokener_parse(c->buf);
			size_t used = (size_t)(nl - c->buf) + 1;
			memmove(c->buf, c->buf + used, c->len - used);
			c->len -= used;
			if (!o || !json_object_is_type(o, json_type_object)) {
				if (o)
					json_object_put(o);
				err__set(e, EPROTO, "agent %s: a reply that is not a JSON object", c->host);
				return NULL;
			}
			return o;
		}
		if (c->len >= REPLY_MAX) {
			err__set(e, E2BIG, "agent %s: a reply over %u bytes", c->host, REPLY_MAX);
			return NULL;
		}
		ssize_t n = channel__read_some(&c->ch, c->buf + c->len, REPLY_MAX - c->len);
		if (n == 0) {
			err__set(e, EPIPE, "agent %s closed the connection", c->host);
			return NULL;
		}
		if (n < 0) {
			err__set(e, (int)-n, "agent %s: %s", c->host,
				 n == -ETIMEDOUT ? "no reply in time" : strerror((int)-n));
			return NULL;
		}
		c->len += (size_t)n;
	}
}

json_object *agent_client__call(struct agent_client *c, const char *cmd, json_object *args,
				int timeout_ms, struct err *e)
{
	if (!c->connected) {
		err__set(e, ENOTCONN, "agent %s: not connected", c->host);
		return NULL;
	}
	unsigned id = c->next_id++;
	json_object *req = json_object_new_object();
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	json_object_object_add(req, "id", json_object_new_int64(id));
	const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	size_t n = strlen(s);
	char *line = malloc(n + 1);
	int r = -ENOMEM;
	if (line) {
		memcpy(line, s, n);
		line[n] = '\n';
		channel__set_timeout(&c->ch, timeout_ms);
		r = channel__write_full(&c->ch, line, n + 1);
		free(line);
	}
	json_object_put(req);
	if (r) {
		err__set(e, -r, "agent %s: cannot send %s: %s", c->host, cmd, strerror(-r));
		return NULL;
	}
	for (;;) {
		json_object *o = read_reply(c, timeout_ms, e), *v;
		if (!o)
			return NULL;
		if (!json_object_object_get_ex(o, "id", &v) || json_object_get_int64(v) != id) {
			json_object_put(o);	/* a reply to an earlier request we gave up on */
			continue;
		}
		if (json_object_object_get_ex(o, "return", &v)) {
			json_object_get(v);
			json_object_put(o);
			return v;
		}
		json_object *err = NULL, *cls = NULL, *desc = NULL;
		json_object_object_get_ex(o, "error", &err);
		if (err) {
			json_object_object_get_ex(err, "class", &cls);
			json_object_object_get_ex(err, "desc", &desc);
		}
		err__set(e, EREMOTEIO, "agent %s: %s%s%s", c->host,
			 cls ? json_object_get_string(cls) : "error", desc ? ": " : "",
			 desc ? json_object_get_string(desc) : "");
		json_object_put(o);
		return NULL;
	}
}
