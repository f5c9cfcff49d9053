/* The generic control server against a fake command table: protocol,
 * errors, several clients, async replies, socket path handling. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/unit/test-control-harness.h"

struct fake {
	struct harness *h;
	int count;
};

struct slow {
	uv_timer_t timer;
	struct control_call *call;
};

static int echo(void *ctx, struct json_object *args, struct json_object **result, struct err *e)
{
	*result = json_object_get(args);
	return 0;
}

static int do_fail(void *ctx, struct json_object *args, struct json_object **result, struct err *e)
{
	return err__set(e, EBUSY, "fake failure");
}

static int ranged(void *ctx, struct json_object *args, struct json_object **result, struct err *e)
{
	uint64_t n = 0;
	int r = control__arg_u64(args, "ranged", "n", 1, 10, &n, e);
	if (r < 0)
		return r;
	*result = json_object_new_object();
	json_object_object_add(*result, "n", json_object_new_uint64(n));
	return 0;
}

static int count(void *ctx, struct json_object *args, struct json_object **result, struct err *e)
{
	struct fake *f = ctx;
	*result = json_object_new_object();
	json_object_object_add(*result, "count", json_object_new_int(++f->count));
	return 0;
}

static int not_object(void *ctx, struct json_object *args, struct json_object **result, struct err *e)
{
	*result = json_object_new_int(3);
	return 0;
}

static int stop_server(void *ctx, struct json_object *args, struct json_object **result,
		       struct err *e)
{
	struct fake *f = ctx;
	/* What `quit` does through the VM's stop callback. */
	struct control_server *srv = f->h->srv;
	f->h->srv = NULL;	/* the harness must not stop it again */
	control__stop(srv);
	*result = json_object_new_object();
	json_object_object_add(*result, "bye", json_object_new_boolean(1));
	return 0;
}

static void slow_closed(uv_handle_t *h)
{
	free(h->data);
}

static void slow_fire(uv_timer_t *t)
{
	struct slow *s = t->data;
	struct json_object *res = json_object_new_object();
	json_object_object_add(res, "slow", json_object_new_boolean(1));
	control__call_done(s->call, 0, res, NULL);
	uv_close((uv_handle_t *)t, slow_closed);
}

static int slow(void *ctx, struct json_object *args, struct control_call *call, struct err *e)
{
	struct fake *f = ctx;
	struct slow *s = calloc(1, sizeof(*s));
	s->call = call;
	uv_timer_init(&f->h->loop, &s->timer);
	s->timer.data = s;
	uv_timer_start(&s->timer, slow_fire, 50, 0);
	return 0;
}

static int instant(void *ctx, struct json_object *args, struct control_call *call, struct err *e)
{
	struct err ce = { 0 };
	err__set(&ce, ENOENT, "instant failure");
	control__call_done(call, -ENOENT, NULL, &ce);
	return 0;
}

static int async_refuse(void *ctx, struct json_object *args, struct control_call *call, struct err *e)
{
	return err__set(e, EINVAL, "refused before starting");
}

static const char *const echo_params[] = { "text", "n", "x", NULL };
static const char *const ranged_params[] = { "n", NULL };

static const struct control_cmd table[] = {
	{ "echo", echo, "returns its arguments", echo_params, NULL },
	{ "fail", do_fail, "always fails", NULL, NULL },
	{ "ranged", ranged, "n in [1, 10]", ranged_params, NULL },
	{ "count", count, "counts calls", NULL, NULL },
	{ "not-object", not_object, "a buggy handler", NULL, NULL },
	{ "stop-server", stop_server, "stops the server from a handler", NULL, NULL },
	{ "slow", NULL, "replies after 50 ms", NULL, slow },
	{ "instant", NULL, "async, completes inside the handler", NULL, instant },
	{ "async-refuse", NULL, "async, fails at once", NULL, async_refuse },
};

static struct harness H;
static struct fake F;

static void setup(void)
{
	harness__mkdir(&H);
	F = (struct fake){ .h = &H };
	harness__start(&H, table, sizeof(table) / sizeof(table[0]), &F);
}

static void teardown(void)
{
	harness__stop(&H);
	harness__rmdir(&H);
}

static void assert_class(struct json_object *reply, const char *cls)
{
	const char *got = reply__class(reply);
	ck_assert_msg(got && !strcmp(got, cls), "expected %s, got %s", cls,
		      json_object_to_json_string(reply));
}

static void expect_class(int fd, const char *req, const char *cls)
{
	struct json_object *r = client__request(fd, req);
	assert_class(r, cls);
	json_object_put(r);
}

/* The connection (and so the server) still works after whatever came before. */
static void assert_alive(int fd)
{
	struct json_object *r = client__request(fd, "{\"execute\":\"echo\",\"arguments\":{\"x\":1}}");
	struct json_object *ret, *x;
	ck_assert_msg(json_object_object_get_ex(r, "return", &ret), "%s", json_object_to_json_string(r));
	ck_assert(json_object_object_get_ex(ret, "x", &x));
	ck_assert_int_eq(json_object_get_int(x), 1);
	json_object_put(r);
}

START_TEST(valid_request)
{
	int fd = client__connect(H.path);
	struct json_object *r = client__request(fd,
		"{\"execute\":\"echo\",\"arguments\":{\"text\":\"hi\",\"n\":7},\"id\":\"abc\"}");
	struct json_object *ret, *v;
	ck_assert(json_object_object_get_ex(r, "return", &ret));
	ck_assert(json_object_object_get_ex(ret, "text", &v));
	ck_assert_str_eq(json_object_get_string(v), "hi");
	ck_assert(json_object_object_get_ex(ret, "n", &v));
	ck_assert_int_eq(json_object_get_int(v), 7);
	ck_assert(json_object_object_get_ex(r, "id", &v));
	ck_assert_str_eq(json_object_get_string(v), "abc");
	ck_assert(!json_object_object_get_ex(r, "error", NULL));
	json_object_put(r);

	/* Any JSON value is an id and comes back unchanged; no id, no id. */
	r = client__request(fd, "{\"id\":{\"k\":[1,2]},\"execute\":\"count\"}");
	ck_assert(json_object_object_get_ex(r, "id", &v));
	ck_assert_str_eq(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), "{\"k\":[1,2]}");
	json_object_put(r);
	r = client__request(fd, "{\"execute\":\"count\"}");
	ck_assert(!json_object_object_get_ex(r, "id", NULL));
	ck_assert(json_object_object_get_ex(r, "return", &ret));
	ck_assert(json_object_object_get_ex(ret, "count", &v));
	ck_assert_int_eq(json_object_get_int(v), 2);
	json_object_put(r);

	/* CRLF line ends and blank keep-alive lines are fine. */
	client__send(fd, "\n  \r\n{\"execute\":\"count\",\"id\":5}\r\n");
	r = client__reply(fd);
	ck_assert(json_object_object_get_ex(r, "return", NULL));
	json_object_put(r);
	close(fd);
}
END_TEST

START_TEST(unknown_command)
{
	int fd = client__connect(H.path);
	struct json_object *r = client__request(fd, "{\"execute\":\"nope\",\"id\":3}");
	assert_class(r, "CommandNotFound");
	ck_assert_ptr_nonnull(strstr(reply__desc(r), "nope"));
	struct json_object *id;
	ck_assert(json_object_object_get_ex(r, "id", &id));
	ck_assert_int_eq(json_object_get_int(id), 3);
	json_object_put(r);
	assert_alive(fd);
	close(fd);
}
END_TEST

START_TEST(malformed_json)
{
	int fd = client__connect(H.path);
	expect_class(fd, "{\"execute\":", "InvalidRequest");
	expect_class(fd, "garbage", "InvalidRequest");
	expect_class(fd, "{\"execute\":\"echo\"} trailing", "InvalidRequest");
	expect_class(fd, "{\"execute\":\"echo\"}{}", "InvalidRequest");
	expect_class(fd, "\xff\xfe", "InvalidRequest");
	/* A NUL byte inside a line. */
	client__send(fd, "{\"execute\":\"echo\"}");
	ck_assert_int_eq(send(fd, "\0x\n", 3, MSG_NOSIGNAL), 3);
	struct json_object *r = client__reply(fd);
	assert_class(r, "InvalidRequest");
	ck_assert_ptr_nonnull(strstr(reply__desc(r), "NUL"));
	json_object_put(r);
	assert_alive(fd);
	close(fd);
}
END_TEST

START_TEST(not_an_object)
{
	int fd = client__connect(H.path);
	expect_class(fd, "[1,2]", "InvalidRequest");
	expect_class(fd, "42", "InvalidRequest");
	expect_class(fd, "\"execute\"", "InvalidRequest");
	expect_class(fd, "null", "InvalidRequest");
	assert_alive(fd);
	close(fd);
}
END_TEST

START_TEST(bad_envelope)
{
	int fd = client__connect(H.path);
	expect_class(fd, "{}", "InvalidRequest");
	expect_class(fd, "{\"arguments\":{},\"id\":1}", "InvalidRequest");
	expect_class(fd, "{\"execute\":42}", "InvalidRequest");
	expect_class(fd, "{\"execute\":null}", "InvalidRequest");
	expect_class(fd, "{\"execute\":\"echo\",\"arguments\":[1]}", "InvalidRequest");
	expect_class(fd, "{\"execute\":\"echo\",\"arguments\":null}", "InvalidRequest");
	expect_class(fd, "{\"execute\":\"echo\",\"extra\":1}", "InvalidRequest");
	/* The id comes back even for a bad request, when there is one. */
	struct json_object *r = client__request(fd, "{\"id\":9}"), *id;
	ck_assert(json_object_object_get_ex(r, "id", &id));
	ck_assert_int_eq(json_object_get_int(id), 9);
	json_object_put(r);
	assert_alive(fd);
	close(fd);
}
END_TEST

START_TEST(arguments_checked)
{
	int fd = client__connect(H.path);
	expect_class(fd, "{\"execute\":\"echo\",\"arguments\":{\"bogus\":1}}", "InvalidParameter");
	expect_class(fd, "{\"execute\":\"count\",\"arguments\":{\"n\":1}}", "InvalidParameter");
	expect_class(fd, "{\"execute\":\"ranged\",\"arguments\":{\"n\":11}}", "InvalidParameter");
	expect_class(fd, "{\"execute\":\"ranged\",\"arguments\":{\"n\":-1}}", "InvalidParameter");
	expect_class(fd, "{\"execute\":\"ranged\",\"arguments\":{\"n\":\"3\"}}", "InvalidParameter");
	struct json_object *r = client__request(fd, "{\"execute\":\"ranged\",\"arguments\":{\"n\":10}}");
	ck_assert(json_object_object_get_ex(r, "return", NULL));
	json_object_put(r);
	close(fd);
}
END_TEST

START_TEST(handler_errors)
{
	int fd = client__connect(H.path);
	struct json_object *r = client__request(fd, "{\"execute\":\"fail\"}");
	assert_class(r, "GenericError");
	ck_assert_str_eq(reply__desc(r), "fake failure");
	json_object_put(r);
	expect_class(fd, "{\"execute\":\"not-object\"}", "GenericError");
	assert_alive(fd);
	close(fd);
}
END_TEST

static char *long_request(size_t total)
{
	/* {"execute":"echo","arguments":{"text":"xxx..."}}\n, total bytes. */
	const char *head = "{\"execute\":\"echo\",\"arguments\":{\"text\":\"";
	const char *tail = "\"}}\n";
	char *s = malloc(total + 1);
	size_t hl = strlen(head), tl = strlen(tail);
	memcpy(s, head, hl);
	memset(s + hl, 'x', total - hl - tl);
	memcpy(s + total - tl, tail, tl + 1);
	return s;
}

START_TEST(line_limit)
{
	int fd = client__connect(H.path);
	/* Exactly CONTROL_LINE_MAX bytes with the newline: accepted. */
	char *s = long_request(CONTROL_LINE_MAX);
	client__send(fd, s);
	free(s);
	struct json_object *r = client__reply(fd);
	ck_assert_msg(json_object_object_get_ex(r, "return", NULL), "%.200s",
		      json_object_to_json_string(r));
	json_object_put(r);

	/* One more byte: an error reply, then the server hangs up. */
	s = long_request(CONTROL_LINE_MAX + 1);
	client__send(fd, s);
	free(s);
	r = client__reply(fd);
	assert_class(r, "InvalidRequest");
	ck_assert_ptr_nonnull(strstr(reply__desc(r), "longer"));
	json_object_put(r);
	ck_assert(client__eof(fd));
	close(fd);

	/* Others are unaffected. */
	fd = client__connect(H.path);
	assert_alive(fd);
	close(fd);
}
END_TEST

START_TEST(endless_line)
{
	/* A client streaming a line with no end is cut off, not buffered. */
	int fd = client__connect(H.path);
	char chunk[4096];
	memset(chunk, 'a', sizeof(chunk));
	size_t sent = 0;
	while (sent < 4 * CONTROL_LINE_MAX) {
		ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (n <= 0)
			break;	/* the server hung up */
		sent += (size_t)n;
	}
	struct json_object *r = client__reply(fd);
	assert_class(r, "InvalidRequest");
	json_object_put(r);
	close(fd);
}
END_TEST

START_TEST(two_clients)
{
	int a = client__connect(H.path);
	int b = client__connect(H.path);
	/* A's request arrives in pieces; B is served in between. */
	client__send(a, "{\"execute\":\"echo\",");
	struct json_object *r = client__request(b, "{\"execute\":\"echo\",\"arguments\":{\"text\":\"b\"}}");
	struct json_object *ret, *v;
	ck_assert(json_object_object_get_ex(r, "return", &ret));
	ck_assert(json_object_object_get_ex(ret, "text", &v));
	ck_assert_str_eq(json_object_get_string(v), "b");
	json_object_put(r);
	r = client__request(a, "\"arguments\":{\"text\":\"a\"}}");
	ck_assert(json_object_object_get_ex(r, "return", &ret));
	ck_assert(json_object_object_get_ex(ret, "text", &v));
	ck_assert_str_eq(json_object_get_string(v), "a");
	json_object_put(r);
	/* B's garbage does not disturb A. */
	expect_class(b, "}}}", "InvalidRequest");
	assert_alive(a);
	close(a);
	close(b);
}
END_TEST

START_TEST(pipelined)
{
	int fd = client__connect(H.path);
	client__send(fd, "{\"execute\":\"count\",\"id\":1}\n{\"execute\":\"slow\",\"id\":2}\n"
		     "{\"execute\":\"count\",\"id\":3}\nbad\n{\"execute\":\"instant\",\"id\":4}\n"
		     "{\"execute\":\"async-refuse\",\"id\":5}\n{\"execute\":\"count\",\"id\":6}\n");
	/* Replies keep request order even though `slow` answers later. */
	static const char *const expect[] = {
		"return", "return", "return", "error", "error", "error", "return",
	};
	static const int ids[] = { 1, 2, 3, -1, 4, 5, 6 };
	for (int i = 0; i < 7; i++) {
		struct json_object *r = client__reply(fd), *id;
		ck_assert_msg(json_object_object_get_ex(r, expect[i], NULL), "reply %d: %s", i,
			      json_object_to_json_string(r));
		if (ids[i] < 0) {
			ck_assert(!json_object_object_get_ex(r, "id", NULL));
		} else {
			ck_assert(json_object_object_get_ex(r, "id", &id));
			ck_assert_int_eq(json_object_get_int(id), ids[i]);
		}
		if (ids[i] == 2) {
			struct json_object *ret;
			ck_assert(json_object_object_get_ex(r, "return", &ret));
			ck_assert(json_object_object_get_ex(ret, "slow", NULL));
		}
		if (ids[i] == 4) {
			assert_class(r, "GenericError");
			ck_assert_str_eq(reply__desc(r), "instant failure");
		}
		if (ids[i] == 5)
			assert_class(r, "InvalidParameter");
		json_object_put(r);
	}
	close(fd);
}
END_TEST

START_TEST(hangups)
{
	/* A client leaving with its async call pending, one leaving before
	 * reading many replies (SIGPIPE would kill us), one that half-closes
	 * after a request without newline: none disturbs the server. */
	int fd = client__connect(H.path);
	client__send(fd, "{\"execute\":\"slow\"}\n{\"execute\":\"count\"}\n");
	close(fd);
	fd = client__connect(H.path);
	for (int i = 0; i < 200; i++)
		client__send(fd, "{\"execute\":\"query-commands\"}\n");
	close(fd);
	fd = client__connect(H.path);
	client__send(fd, "{\"execute\":\"echo\",\"arguments\":{\"x\":2},\"id\":\"last\"}");
	shutdown(fd, SHUT_WR);
	struct json_object *r = client__reply(fd), *id;
	ck_assert(json_object_object_get_ex(r, "id", &id));
	ck_assert_str_eq(json_object_get_string(id), "last");
	json_object_put(r);
	ck_assert(client__eof(fd));
	close(fd);
	usleep(100 * 1000);	/* let `slow` complete for a client long gone */
	fd = client__connect(H.path);
	assert_alive(fd);
	close(fd);
}
END_TEST

START_TEST(query_commands)
{
	int fd = client__connect(H.path);
	struct json_object *r = client__request(fd, "{\"execute\":\"query-commands\"}");
	struct json_object *ret, *list;
	ck_assert(json_object_object_get_ex(r, "return", &ret));
	ck_assert(json_object_object_get_ex(ret, "commands", &list));
	size_t n = json_object_array_length(list);
	ck_assert_uint_eq(n, sizeof(table) / sizeof(table[0]) + 1);
	bool seen_echo = false, seen_self = false;
	for (size_t i = 0; i < n; i++) {
		struct json_object *c = json_object_array_get_idx(list, i), *name, *args, *help;
		ck_assert(json_object_object_get_ex(c, "name", &name));
		ck_assert(json_object_object_get_ex(c, "help", &help));
		ck_assert(json_object_object_get_ex(c, "arguments", &args));
		if (!strcmp(json_object_get_string(name), "echo")) {
			seen_echo = true;
			ck_assert_uint_eq(json_object_array_length(args), 3);
			ck_assert_str_eq(json_object_get_string(help), "returns its arguments");
		}
		seen_self |= !strcmp(json_object_get_string(name), "query-commands");
	}
	ck_assert(seen_echo && seen_self);
	json_object_put(r);
	expect_class(fd, "{\"execute\":\"query-commands\",\"arguments\":{\"x\":1}}", "InvalidParameter");
	close(fd);
}
END_TEST

START_TEST(socket_mode_and_unlink)
{
	struct stat st;
	ck_assert_int_eq(lstat(H.path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	harness__stop(&H);
	ck_assert_int_eq(lstat(H.path, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

START_TEST(stop_inside_handler)
{
	int other = client__connect(H.path);
	assert_alive(other);
	int fd = client__connect(H.path);
	struct json_object *r = client__request(fd, "{\"execute\":\"stop-server\",\"id\":1}");
	ck_assert_msg(json_object_object_get_ex(r, "return", NULL), "%s", json_object_to_json_string(r));
	json_object_put(r);
	ck_assert(client__eof(fd));
	ck_assert(client__eof(other));
	close(fd);
	close(other);
	ck_assert_int_eq(access(H.path, F_OK), -1);
	harness__stop(&H);	/* the loop ends: nothing was left open */
}
END_TEST

START_TEST(stop_with_clients_pending)
{
	int fd = client__connect(H.path);
	client__send(fd, "{\"execute\":\"slow\"}\n");
	usleep(10 * 1000);
	harness__stop(&H);	/* must not wait for, or crash on, the call */
	close(fd);
}
END_TEST

START_TEST(too_many_clients)
{
	int fds[CONTROL_MAX_CLIENTS];
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		fds[i] = client__connect(H.path);
		assert_alive(fds[i]);
	}
	int extra = client__connect(H.path);
	struct json_object *r = client__reply(extra);
	assert_class(r, "GenericError");
	json_object_put(r);
	ck_assert(client__eof(extra));
	close(extra);
	close(fds[0]);
	usleep(50 * 1000);
	extra = client__connect(H.path);
	assert_alive(extra);
	close(extra);
	for (int i = 1; i < CONTROL_MAX_CLIENTS; i++)
		close(fds[i]);
}
END_TEST

/* ---- socket path handling, each with its own server ---- */

static int start_on(uv_loop_t *loop, const char *path, struct control_server **srv, struct err *e)
{
	return control__start(srv, loop, path, table, 1, NULL, e);
}

static void finish(uv_loop_t *loop, struct control_server *srv)
{
	control__stop(srv);
	uv_run(loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(loop), 0);
}

START_TEST(stale_socket_reused)
{
	struct harness h;
	harness__mkdir(&h);
	/* A socket nobody listens on: what a killed VM leaves behind. */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h.path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(access(h.path, F_OK), 0);

	harness__start(&h, table, 1, NULL);
	fd = client__connect(h.path);
	assert_alive(fd);
	close(fd);
	harness__stop(&h);
	harness__rmdir(&h);
}
END_TEST

START_TEST(socket_in_use)
{
	int fd = client__connect(H.path);	/* the first server is busy too */
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct control_server *srv = NULL;
	struct err e = { 0 };
	int r = start_on(&loop, H.path, &srv, &e);
	ck_assert_int_eq(r, -EADDRINUSE);
	char want[256];
	snprintf(want, sizeof(want), "control socket %s is in use by a running VM", H.path);
	ck_assert_str_eq(e.msg, want);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	/* The refusal left the first server's socket alone. */
	assert_alive(fd);
	close(fd);
	fd = client__connect(H.path);
	assert_alive(fd);
	close(fd);
}
END_TEST

START_TEST(missing_directory)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct control_server *srv = NULL;
	struct err e = { 0 };
	int r = start_on(&loop, "/nonexistent-vmhop-dir/sub/ctl.sock", &srv, &e);
	ck_assert_int_eq(r, -ENOENT);
	ck_assert_str_eq(e.msg, "cannot create control socket /nonexistent-vmhop-dir/sub/ctl.sock: "
			 "directory /nonexistent-vmhop-dir/sub does not exist");
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(not_a_socket)
{
	struct harness h;
	harness__mkdir(&h);
	FILE *f = fopen(h.path, "w");
	fputs("precious\n", f);
	fclose(f);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct control_server *srv = NULL;
	struct err e = { 0 };
	ck_assert_int_eq(start_on(&loop, h.path, &srv, &e), -EEXIST);
	ck_assert_ptr_nonnull(strstr(e.msg, "not a socket"));
	ck_assert_int_eq(access(h.path, F_OK), 0);	/* never removed */
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	harness__rmdir(&h);
}
END_TEST

START_TEST(path_too_long)
{
	char path[200];
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct control_server *srv = NULL;
	struct err e = { 0 };
	ck_assert_int_eq(start_on(&loop, path, &srv, &e), -ENAMETOOLONG);
	ck_assert_ptr_nonnull(strstr(e.msg, "too long"));
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(restart_same_path)
{
	struct harness h;
	harness__mkdir(&h);
	uv_loop_t loop;
	for (int i = 0; i < 2; i++) {
		uv_loop_init(&loop);
		struct control_server *srv = NULL;
		struct err e = { 0 };
		ck_assert_msg(start_on(&loop, h.path, &srv, &e) == 0, "%s", e.msg);
		finish(&loop, srv);
	}
	harness__rmdir(&h);
}
END_TEST

START_TEST(stop_keeps_foreign_socket)
{
	/* Our socket was replaced by someone else's: stop leaves it. */
	struct harness h;
	harness__mkdir(&h);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct control_server *srv = NULL;
	struct err e = { 0 };
	ck_assert_int_eq(start_on(&loop, h.path, &srv, &e), 0);
	ck_assert_int_eq(unlink(h.path), 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h.path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	finish(&loop, srv);
	ck_assert_int_eq(access(h.path, F_OK), 0);
	close(fd);
	harness__rmdir(&h);
}
END_TEST

START_TEST(arg_helpers)
{
	struct json_object *a = json_tokener_parse(
		"{\"s\":\"abc\",\"nul\":\"a\\u0000b\",\"n\":5,\"neg\":-1,\"d\":1.5,\"big\":18446744073709551615,"
		"\"b\":true}");
	struct err e = { 0 };
	const char *s;
	uint64_t n;
	bool b;
	ck_assert_int_eq(control__arg_str(a, "t", "s", 8, &s, &e), 1);
	ck_assert_str_eq(s, "abc");
	ck_assert_int_eq(control__arg_str(a, "t", "missing", 8, &s, &e), 0);
	ck_assert_int_eq(control__arg_str(a, "t", "s", 2, &s, &e), -EINVAL);
	err__clear(&e);
	ck_assert_int_eq(control__arg_str(a, "t", "nul", 8, &s, &e), -EINVAL);
	err__clear(&e);
	ck_assert_int_eq(control__arg_str(a, "t", "n", 8, &s, &e), -EINVAL);
	err__clear(&e);
	ck_assert_int_eq(control__arg_u64(a, "t", "n", 0, 10, &n, &e), 1);
	ck_assert_uint_eq(n, 5);
	ck_assert_int_eq(control__arg_u64(a, "t", "n", 6, 10, &n, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "t: argument 'n' must be between 6 and 10");
	err__clear(&e);
	ck_assert_int_eq(control__arg_u64(a, "t", "neg", 0, UINT64_MAX, &n, &e), -EINVAL);
	err__clear(&e);
	ck_assert_int_eq(control__arg_u64(a, "t", "d", 0, UINT64_MAX, &n, &e), -EINVAL);
	err__clear(&e);
	ck_assert_int_eq(control__arg_u64(a, "t", "big", 0, UINT64_MAX, &n, &e), 1);
	ck_assert_uint_eq(n, UINT64_MAX);
	ck_assert_int_eq(control__arg_bool(a, "t", "b", &b, &e), 1);
	ck_assert(b);
	ck_assert_int_eq(control__arg_bool(a, "t", "n", &b, &e), -EINVAL);
	ck_assert_str_eq(control__error_class(-EINVAL), "InvalidParameter");
	ck_assert_str_eq(control__error_class(-EBUSY), "GenericError");
	json_object_put(a);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("protocol");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, valid_request);
	tcase_add_test(tc, unknown_command);
	tcase_add_test(tc, malformed_json);
	tcase_add_test(tc, not_an_object);
	tcase_add_test(tc, bad_envelope);
	tcase_add_test(tc, arguments_checked);
	tcase_add_test(tc, handler_errors);
	tcase_add_test(tc, line_limit);
	tcase_add_test(tc, endless_line);
	tcase_add_test(tc, two_clients);
	tcase_add_test(tc, pipelined);
	tcase_add_test(tc, hangups);
	tcase_add_test(tc, query_commands);
	tcase_add_test(tc, socket_mode_and_unlink);
	tcase_add_test(tc, stop_inside_handler);
	tcase_add_test(tc, stop_with_clients_pending);
	tcase_add_test(tc, too_many_clients);
	tcase_add_test(tc, socket_in_use);
	suite_add_tcase(s, tc);

	tc = tcase_create("socket-path");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, stale_socket_reused);
	tcase_add_test(tc, missing_directory);
	tcase_add_test(tc, not_a_socket);
	tcase_add_test(tc, path_too_long);
	tcase_add_test(tc, restart_same_path);
	tcase_add_test(tc, stop_keeps_foreign_socket);
	suite_add_tcase(s, tc);

	tc = tcase_create("args");
	tcase_add_test(tc, arg_helpers);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
