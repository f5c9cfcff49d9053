/* A blocking client of a vmhop agent (mutual TLS, JSON lines), for `vmhop
 * evacuate` and tests: connect, send a request, read its reply. */
#ifndef VMHOP_AGENT_CLIENT_H
#define VMHOP_AGENT_CLIENT_H

#include <json-c/json.h>

#include "vmhop/channel.h"
#include "vmhop/err.h"

struct agent_client {
	char host[256];		/* as the user named it: "h2" or "10.77.0.3" */
	char uri[CHANNEL_URI_MAX];	/* tls:ADDR:PORT */
	struct channel ch;
	bool connected;
	char *buf;		/* bytes read past the last reply */
	size_t len;
	unsigned next_id;
};

/* HOST or HOST:PORT (default port 7070) -> tls:HOST:PORT. */
int agent_client__uri(const char *host, char *uri, size_t size, struct err *e);
int agent_client__connect(struct agent_client *c, const char *host,
			  const struct channel_tls_opts *tls, int timeout_ms, struct err *e);
/* The reply's "return" object (the caller puts it), or NULL with e set: an
 * error reply ("HOST: CLASS: desc"), a dropped connection, a timeout. */
json_object *agent_client__call(struct agent_client *c, const char *cmd, json_object *args,
				int timeout_ms, struct err *e);
void agent_client__close(struct agent_client *c);

#define AGENT_DEFAULT_PORT "7070"

#endif
