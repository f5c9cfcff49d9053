/* Runs a control server on a libuv loop in its own thread, as the VMM runs
 * it on its main thread, and gives tests blocking clients to talk to it. */
#ifndef VMHOP_TEST_CONTROL_HARNESS_H
#define VMHOP_TEST_CONTROL_HARNESS_H

#include <pthread.h>
#include <stdbool.h>

#include "vmhop/control.h"

struct harness {
	uv_loop_t loop;
	uv_async_t stop;
	pthread_t thread;
	bool running;
	struct control_server *srv;
	char dir[64];
	char path[108];		/* fits sockaddr_un.sun_path */
};

/* A fresh directory for a test's sockets, in h->dir; h->path is DIR/ctl.sock. */
void harness__mkdir(struct harness *h);
/* Starts the server on h->path (or fails the test) and runs its loop. */
void harness__start(struct harness *h, const struct control_cmd *table, size_t n, void *ctx);
/* Stops the server from the loop thread and waits until every handle is
 * closed; fails the test if the loop still has handles afterwards. */
void harness__stop(struct harness *h);
void harness__rmdir(struct harness *h);

int client__connect(const char *path);
void client__send(int fd, const char *s);
/* One reply line (malloc'd, no newline), or NULL on EOF / after 5 s. */
char *client__line(int fd);
/* The next reply parsed; fails the test on EOF or bad JSON. */
struct json_object *client__reply(int fd);
/* Sends `req` plus a newline and returns the parsed reply. */
struct json_object *client__request(int fd, const char *req);
/* True when the server closed the connection (EOF within 5 s). */
bool client__eof(int fd);

/* "class" of an error reply, or NULL for a return. */
const char *reply__class(struct json_object *reply);
const char *reply__desc(struct json_object *reply);

#endif
