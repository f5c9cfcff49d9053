/* Shared between the control server's files: control.c (sockets, clients,
 * buffers), control-dispatch.c (requests and replies). Not a public API. */
#ifndef VMHOP_VMM_CONTROL_INTERNAL_H
#define VMHOP_VMM_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

#include "vmhop/control.h"

struct control_client {
	uv_pipe_t pipe;			/* pipe.data points back here */
	struct control_server *srv;	/* NULL once the handle has closed */
	struct control_client *prev, *next;
	char *buf;			/* CONTROL_LINE_MAX bytes */
	size_t len;			/* bytes buffered, not yet a full line */
	struct control_call *pending;	/* an async call owes a reply */
	bool reading;
	bool eof;			/* the peer finished sending */
	bool dispatching;		/* inside a handler: defer drops */
	bool drop_after_dispatch;
	bool closing;			/* dropped: no more requests or replies */
	unsigned refs;			/* the handle, plus a pending call */
};

struct control_call {
	struct control_client *client;
	struct json_object *id;		/* the request's id (a reference) or NULL */
};

struct control_server {
	uv_loop_t *loop;
	uv_pipe_t listener;
	uv_timer_t stop_timer;		/* bounds how long stop waits for clients */
	const struct control_cmd *table;
	size_t n;
	void *ctx;
	char *path;
	dev_t dev;			/* identity of the socket we bound, so  */
	ino_t ino;			/* stop never unlinks someone else's    */
	struct control_client *clients;
	unsigned nr_clients;
	bool stopping;
	unsigned refs;			/* listener, timer, one per client */
};

/* control.c */
/* Queues one reply line; takes `reply`. Drops the client if it cannot. */
void control_client__send(struct control_client *c, struct json_object *reply);
/* Stops reading and closes once queued replies are written. */
void control_client__drop(struct control_client *c);
/* Handles buffered lines in order until one is pending or none is left. */
void control_client__process(struct control_client *c);
void control_client__unref(struct control_client *c);

/* control-dispatch.c */
/* Handles one request line (no newline; NUL-terminated at line[len]). */
void control_dispatch__line(struct control_client *c, char *line, size_t len);
/* {"error": {"class": cls, "desc": desc}, "id": id}; id may be NULL. */
struct json_object *control_dispatch__error(const char *cls, const char *desc,
					    struct json_object *id);

#endif
