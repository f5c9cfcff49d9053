#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/unit/test-control-harness.h"

#define WAIT_MS 5000

void harness__mkdir(struct harness *h)
{
	memset(h, 0, sizeof(*h));
	snprintf(h->dir, sizeof(h->dir), "/tmp/vmhop-ctl-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(h->dir));
	snprintf(h->path, sizeof(h->path), "%s/ctl.sock", h->dir);
}

static void *loop_thread(void *arg)
{
	struct harness *h = arg;
	uv_run(&h->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void stop_cb(uv_async_t *a)
{
	struct harness *h = a->data;
	control__stop(h->srv);
	h->srv = NULL;
	uv_close((uv_handle_t *)a, NULL);
}

void harness__start(struct harness *h, const struct control_cmd *table, size_t n, void *ctx)
{
	struct err e = { 0 };
	ck_assert_int_eq(uv_loop_init(&h->loop), 0);
	int r = control__start(&h->srv, &h->loop, h->path, table, n, ctx, &e);
	ck_assert_msg(r == 0, "control__start: %d %s", r, e.msg);
	ck_assert_int_eq(uv_async_init(&h->loop, &h->stop, stop_cb), 0);
	h->stop.data = h;
	ck_assert_int_eq(pthread_create(&h->thread, NULL, loop_thread, h), 0);
	h->running = true;
}

void harness__stop(struct harness *h)
{
	if (!h->running)
		return;
	uv_async_send(&h->stop);
	pthread_join(h->thread, NULL);
	h->running = false;
	/* Everything the server opened is closed: nothing for UV_EBUSY. */
	ck_assert_int_eq(uv_loop_close(&h->loop), 0);
}

void harness__rmdir(struct harness *h)
{
	unlink(h->path);
	rmdir(h->dir);
}

int client__connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s",
		      path, strerror(errno));
	return fd;
}

void client__send(int fd, const char *s)
{
	size_t len = strlen(s), off = 0;
	while (off < len) {
		ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);
		ck_assert_msg(n > 0, "send: %s", strerror(errno));
		off += (size_t)n;
	}
}

/* Byte at a time: replies are short, and it never reads past the line. */
char *client__line(int fd)
{
	size_t cap = 256, len = 0;
	char *buf = malloc(cap);
	ck_assert_ptr_nonnull(buf);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, WAIT_MS) <= 0)
			break;
		char ch;
		ssize_t n = read(fd, &ch, 1);
		if (n <= 0)
			break;
		if (ch == '\n') {
			buf[len] = '\0';
			return buf;
		}
		if (len + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		buf[len++] = ch;
	}
	free(buf);
	return NULL;
}

struct json_object *client__reply(int fd)
{
	char *line = client__line(fd);
	ck_assert_msg(line != NULL, "no reply");
	struct json_object *o = json_tokener_parse(line);
	ck_assert_msg(json_object_is_type(o, json_type_object), "bad reply: %s", line);
	free(line);
	return o;
}

struct json_object *client__request(int fd, const char *req)
{
	client__send(fd, req);
	client__send(fd, "\n");
	return client__reply(fd);
}

bool client__eof(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, WAIT_MS) <= 0)
		return false;
	/* 0, or ECONNRESET when the server closed with our bytes unread. */
	char ch;
	return read(fd, &ch, 1) <= 0;
}

const char *reply__class(struct json_object *reply)
{
	struct json_object *err, *cls;
	if (!json_object_object_get_ex(reply, "error", &err))
		return NULL;
	ck_assert(json_object_object_get_ex(err, "class", &cls));
	return json_object_get_string(cls);
}

const char *reply__desc(struct json_object *reply)
{
	struct json_object *err, *desc;
	if (!json_object_object_get_ex(reply, "error", &err))
		return NULL;
	ck_assert(json_object_object_get_ex(err, "desc", &desc));
	return json_object_get_string(desc);
}
