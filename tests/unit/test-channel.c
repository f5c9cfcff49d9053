/* TCP channels over loopback: address parsing, listen/accept/connect, whole-
 * buffer transfers both ways at once, ends of stream, timeouts and peers that
 * go away. Timeouts are short for the cases that must time out and generous
 * for the ones that must not; nothing measures wall-clock time. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmhop/channel.h"

#include "test-pattern.h"

#define LOOPBACK	"tcp:127.0.0.1:0"
#define GENEROUS_MS	10000	/* must never be reached */
#define SHORT_MS	100	/* must be reached: the peer is silent */

/* ---- helpers ------------------------------------------------------------ */

static void listen_any(struct channel_listener *l)
{
	struct err e = { 0 };
	ck_assert_msg(channel__listen(LOOPBACK, l, &e) == 0, "%s", e.msg);
	ck_assert_int_ge(l->fd, 0);
}

/* A connected pair: *a the connecting side, *b the accepted one. */
static void connect_pair(struct channel *a, struct channel *b)
{
	struct channel_listener l;
	struct err e = { 0 };
	listen_any(&l);
	ck_assert_msg(channel__connect(l.local, GENEROUS_MS, a, &e) == 0, "%s", e.msg);
	ck_assert_msg(channel__accept(&l, GENEROUS_MS, b, &e) == 0, "%s", e.msg);
	channel__listener_close(&l);
	ck_assert_int_eq(l.fd, -1);
	channel__set_timeout(a, GENEROUS_MS);
	channel__set_timeout(b, GENEROUS_MS);
}

static void parse_ok(const char *uri, bool listen, const char *host, const char *port)
{
	struct channel_addr a;
	struct err e = { 0 };
	ck_assert_msg(channel__parse_uri(uri, listen, &a, &e) == 0, "%s: %s", uri, e.msg);
	ck_assert_int_eq(a.kind, CHANNEL_TCP);
	ck_assert_str_eq(a.host, host);
	ck_assert_str_eq(a.port, port);
}

/* Returns the message so callers can check its text. */
static const char *parse_bad(const char *uri, bool listen, struct err *e)
{
	struct channel_addr a;
	err__clear(e);
	ck_assert_msg(channel__parse_uri(uri, listen, &a, e) == -EINVAL, "%s accepted", uri);
	ck_assert_int_eq(e->code, EINVAL);
	ck_assert_msg(strstr(e->msg, uri) != NULL, "%s: message does not name it: %s", uri, e->msg);
	return e->msg;
}

/* ---- addresses ---------------------------------------------------------- */

START_TEST(uri_good)
{
	parse_ok("tcp:127.0.0.1:5", false, "127.0.0.1", "5");
	parse_ok("tcp:[::1]:7", false, "::1", "7");
	parse_ok("tcp:localhost:9", false, "localhost", "9");
	parse_ok("tcp:0.0.0.0:65535", true, "0.0.0.0", "65535");
	parse_ok("tcp:[fe80::1%lo]:4444", false, "fe80::1%lo", "4444");
	/* port 0 means "pick one", which only makes sense when listening */
	parse_ok("tcp:127.0.0.1:0", true, "127.0.0.1", "0");
	parse_ok("tcp:[::]:0", true, "::", "0");
}
END_TEST

START_TEST(uri_bad)
{
	struct err e = { 0 };
	/* the exact texts users see */
	ck_assert_str_eq(parse_bad("tcp:127.0.0.1", false, &e),
			 "address tcp:127.0.0.1: missing :PORT");
	ck_assert_str_eq(parse_bad("tcp:127.0.0.1:0", false, &e),
			 "address tcp:127.0.0.1:0: port must be a number from 1 to 65535");
	ck_assert_str_eq(parse_bad("tcp:127.0.0.1:70000", true, &e),
			 "address tcp:127.0.0.1:70000: port must be a number from 0 to 65535");
	ck_assert_str_eq(parse_bad("udp:127.0.0.1:5", false, &e),
			 "address udp:127.0.0.1:5: unknown transport (expected tcp:HOST:PORT, "
			 "tls:HOST:PORT, rdma:HOST:PORT, unix:PATH or file:PATH)");
	ck_assert_str_eq(parse_bad("tcp:::1:5", false, &e),
			 "address tcp:::1:5: put an IPv6 address in brackets");
	ck_assert_str_eq(parse_bad("tcp::5", false, &e),
			 "address tcp::5: missing or too long host");

	/* and the rest, by kind */
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:127.0.0.1:70000", false, &e), "port"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:h:", false, &e), "port"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:h:5x", false, &e), "port"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:h:-1", false, &e), "port"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:h: 5", false, &e), "port"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:h:99999999999999999999999", false, &e), "port"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:[::1]", false, &e), "[IPV6]:PORT"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:[::1:5", false, &e), "[IPV6]:PORT"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:[]:5", false, &e), "host"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp::0", true, &e), "host"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp:", false, &e), "missing :PORT"));
	ck_assert_ptr_nonnull(strstr(parse_bad("", false, &e), "unknown transport"));
	ck_assert_ptr_nonnull(strstr(parse_bad("TCP:127.0.0.1:5", false, &e), "unknown transport"));
	ck_assert_ptr_nonnull(strstr(parse_bad("tcp127.0.0.1:5", false, &e), "unknown transport"));

	/* host[256] holds 255 characters and no more */
	char uri[4 + 256 + 3], host[257];
	memset(host, 'h', 256);
	host[256] = '\0';
	snprintf(uri, sizeof(uri), "tcp:%s:5", host);
	ck_assert_ptr_nonnull(strstr(parse_bad(uri, false, &e), "too long host"));
	host[255] = '\0';
	snprintf(uri, sizeof(uri), "tcp:%s:5", host);
	parse_ok(uri, false, host, "5");
}
END_TEST

/* The connecting side and the listening side both refuse a bad address
 * before touching the network, and leave their fd at -1. */
START_TEST(uri_bad_in_calls)
{
	struct err e = { 0 };
	struct channel c = { .fd = 42 };
	ck_assert_int_eq(channel__connect("tcp:127.0.0.1:0", 1000, &c, &e), -EINVAL);
	ck_assert_int_eq(c.fd, -1);
	ck_assert_str_eq(e.msg, "address tcp:127.0.0.1:0: port must be a number from 1 to 65535");
	struct channel_listener l = { .fd = 42 };
	err__clear(&e);
	ck_assert_int_eq(channel__listen("udp:127.0.0.1:0", &l, &e), -EINVAL);
	ck_assert_int_eq(l.fd, -1);
	channel__listener_close(&l);	/* harmless on a failed listener */
}
END_TEST

/* ---- listen, accept, connect -------------------------------------------- */

START_TEST(listen_port0_gets_real_port)
{
	struct channel_listener l;
	listen_any(&l);
	ck_assert_int_eq(l.kind, CHANNEL_TCP);
	ck_assert_msg(!strncmp(l.local, "tcp:127.0.0.1:", 14), "%s", l.local);
	/* l.local is itself a valid address to connect to */
	struct channel_addr a;
	struct err e = { 0 };
	ck_assert_msg(channel__parse_uri(l.local, false, &a, &e) == 0, "%s: %s", l.local, e.msg);
	ck_assert_str_ne(a.port, "0");
	ck_assert_int_gt(atoi(a.port), 0);

	struct channel c, s;
	ck_assert_msg(channel__connect(l.local, GENEROUS_MS, &c, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(c.peer, l.local);
	ck_assert_int_eq(c.timeout_ms, 0);
	ck_assert_msg(channel__accept(&l, GENEROUS_MS, &s, &e) == 0, "%s", e.msg);
	ck_assert_msg(!strncmp(s.peer, "tcp:127.0.0.1:", 14), "%s", s.peer);
	ck_assert_int_eq(s.timeout_ms, 0);
	channel__close(&c);
	channel__close(&s);
	ck_assert_int_eq(c.fd, -1);
	channel__close(&c);	/* twice is harmless */
	channel__listener_close(&l);
	channel__listener_close(&l);
}
END_TEST

START_TEST(listen_v6)
{
	struct channel_listener l;
	struct err e = { 0 };
	if (channel__listen("tcp:[::1]:0", &l, &e) < 0)
		return;	/* no IPv6 loopback here: nothing to test */
	ck_assert_msg(!strncmp(l.local, "tcp:[::1]:", 10), "%s", l.local);
	struct channel c, s;
	ck_assert_msg(channel__connect(l.local, GENEROUS_MS, &c, &e) == 0, "%s", e.msg);
	ck_assert_msg(channel__accept(&l, GENEROUS_MS, &s, &e) == 0, "%s", e.msg);
	ck_assert_msg(!strncmp(s.peer, "tcp:[::1]:", 10), "%s", s.peer);
	channel__close(&c);
	channel__close(&s);
	channel__listener_close(&l);
}
END_TEST

START_TEST(accept_times_out)
{
	struct channel_listener l;
	struct channel c = { .fd = -1 };
	struct err e = { 0 };
	listen_any(&l);
	ck_assert_int_eq(channel__accept(&l, SHORT_MS, &c, &e), -ETIMEDOUT);
	ck_assert_int_eq(e.code, ETIMEDOUT);
	ck_assert_msg(strstr(e.msg, l.local) != NULL, "%s", e.msg);
	ck_assert_int_eq(c.fd, -1);
	channel__listener_close(&l);
}
END_TEST

START_TEST(connect_refused)
{
	/* A port that was just free: listen, note it, close. */
	struct channel_listener l;
	listen_any(&l);
	char uri[CHANNEL_URI_MAX];
	snprintf(uri, sizeof(uri), "%s", l.local);
	channel__listener_close(&l);

	struct channel c;
	struct err e = { 0 };
	ck_assert_int_eq(channel__connect(uri, GENEROUS_MS, &c, &e), -ECONNREFUSED);
	ck_assert_int_eq(c.fd, -1);
	ck_assert_msg(strstr(e.msg, "refused") != NULL, "%s", e.msg);
	ck_assert_msg(strstr(e.msg, uri) != NULL, "%s", e.msg);
}
END_TEST

/* ---- transfers ---------------------------------------------------------- */

enum { DUPLEX_LEN = 3 * 1024 * 1024 + 123 };

struct writer {
	struct channel *c;
	const uint8_t *buf;
	size_t len;
	int rc;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	w->rc = channel__write_full(w->c, w->buf, w->len);
	return NULL;
}

/* Both directions in flight at once: a thread writes a->b while the main
 * thread writes b->a in pieces and reads a->b between them, then reads the
 * rest. Neither side's write can complete without the other reading. */
START_TEST(full_duplex)
{
	struct channel a, b;
	connect_pair(&a, &b);
	uint8_t *out_a = malloc(DUPLEX_LEN), *out_b = malloc(DUPLEX_LEN);
	uint8_t *in_a = malloc(DUPLEX_LEN), *in_b = malloc(DUPLEX_LEN);
	ck_assert(out_a && out_b && in_a && in_b);
	test_pattern(out_a, DUPLEX_LEN, 0x1234);
	test_pattern(out_b, DUPLEX_LEN, 0xbeef);

	struct writer w = { .c = &a, .buf = out_a, .len = DUPLEX_LEN, .rc = 1 };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	/* Main: 64 KiB of b->a, 64 KiB of a->b, then read on a whatever b->a
	 * went out. Socket buffers hold far less than a whole direction, so
	 * neither side would finish without the other reading. */
	size_t wb = 0, rb = 0, ra = 0;
	const size_t step = 64 * 1024;
	while (wb < DUPLEX_LEN || rb < DUPLEX_LEN || ra < DUPLEX_LEN) {
		if (wb < DUPLEX_LEN) {
			size_t n = DUPLEX_LEN - wb < step ? DUPLEX_LEN - wb : step;
			ck_assert_int_eq(channel__write_full(&b, out_b + wb, n), 0);
			wb += n;
		}
		if (rb < DUPLEX_LEN) {
			size_t n = DUPLEX_LEN - rb < step ? DUPLEX_LEN - rb : step;
			ck_assert_int_eq(channel__read_full(&b, in_b + rb, n), 0);
			rb += n;
		}
		if (ra < wb) {
			size_t n = wb - ra;
			ck_assert_int_eq(channel__read_full(&a, in_a + ra, n), 0);
			ra += n;
		}
	}
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(w.rc, 0);
	ck_assert(!memcmp(in_b, out_a, DUPLEX_LEN));
	ck_assert(!memcmp(in_a, out_b, DUPLEX_LEN));

	/* nothing more on either side */
	ck_assert_int_eq(channel__wait_readable(&a, 0), 0);
	ck_assert_int_eq(channel__wait_readable(&b, 0), 0);
	free(out_a);
	free(out_b);
	free(in_a);
	free(in_b);
	channel__close(&a);
	channel__close(&b);
}
END_TEST

/* read_full on a bigger buffer than any one recv returns, with a peer that
 * writes from another thread: pieces are put together. */
START_TEST(read_full_assembles)
{
	struct channel a, b;
	connect_pair(&a, &b);
	enum { LEN = 1024 * 1024 };
	uint8_t *out = malloc(LEN), *in = malloc(LEN);
	test_pattern(out, LEN, 77);
	struct writer w = { .c = &a, .buf = out, .len = LEN, .rc = 1 };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	ck_assert_int_eq(channel__read_full(&b, in, LEN), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(w.rc, 0);
	ck_assert(!memcmp(in, out, LEN));
	/* zero-length transfers do nothing and succeed */
	ck_assert_int_eq(channel__write_full(&a, out, 0), 0);
	ck_assert_int_eq(channel__read_full(&b, in, 0), 0);
	free(out);
	free(in);
	channel__close(&a);
	channel__close(&b);
}
END_TEST

START_TEST(end_of_stream_at_boundary)
{
	struct channel a, b;
	connect_pair(&a, &b);
	ck_assert_int_eq(channel__write_full(&b, "12345678", 8), 0);
	channel__close(&b);
	char buf[8];
	ck_assert_int_eq(channel__read_full(&a, buf, 8), 0);
	ck_assert(!memcmp(buf, "12345678", 8));
	ck_assert_int_eq(channel__read_full(&a, buf, 8), -ENODATA);
	ck_assert_int_eq(channel__read_some(&a, buf, 8), 0);
	/* end of stream counts as readable, and stays so */
	ck_assert_int_eq(channel__wait_readable(&a, 0), 1);
	ck_assert_int_eq(channel__wait_readable(&a, -1), 1);
	channel__close(&a);
}
END_TEST

START_TEST(end_of_stream_mid_buffer)
{
	struct channel a, b;
	connect_pair(&a, &b);
	ck_assert_int_eq(channel__write_full(&b, "12345", 5), 0);
	channel__close(&b);
	char buf[8];
	ck_assert_int_eq(channel__read_full(&a, buf, 8), -EPIPE);
	ck_assert(!memcmp(buf, "12345", 5));
	channel__close(&a);
}
END_TEST

START_TEST(read_times_out_on_silent_peer)
{
	struct channel a, b;
	connect_pair(&a, &b);
	channel__set_timeout(&a, SHORT_MS);
	ck_assert_int_eq(a.timeout_ms, SHORT_MS);
	char buf[4];
	ck_assert_int_eq(channel__read_full(&a, buf, 4), -ETIMEDOUT);
	ck_assert_int_eq(channel__read_some(&a, buf, 4), -ETIMEDOUT);
	/* part of a buffer, then silence */
	ck_assert_int_eq(channel__write_full(&b, "xy", 2), 0);
	ck_assert_int_eq(channel__read_full(&a, buf, 4), -ETIMEDOUT);
	/* the channel still works afterwards */
	ck_assert_int_eq(channel__write_full(&b, "zw", 2), 0);
	ck_assert_int_eq(channel__read_full(&a, buf, 2), 0);
	ck_assert(!memcmp(buf, "zw", 2));
	channel__close(&a);
	channel__close(&b);
}
END_TEST

/* A peer that does not read: the writer's buffers fill and write_full gives
 * up after the timeout instead of blocking. */
START_TEST(write_times_out_on_stuck_peer)
{
	struct channel a, b;
	connect_pair(&a, &b);
	channel__set_timeout(&a, SHORT_MS);
	enum { CHUNK = 256 * 1024 };
	uint8_t *buf = calloc(1, CHUNK);
	int rc = 0;
	for (int i = 0; i < 1024 && !rc; i++)	/* 256 MiB: far more than any buffer */
		rc = channel__write_full(&a, buf, CHUNK);
	ck_assert_int_eq(rc, -ETIMEDOUT);
	free(buf);
	channel__close(&a);
	channel__close(&b);
}
END_TEST

START_TEST(wait_readable)
{
	struct channel a, b;
	connect_pair(&a, &b);
	/* 0 only looks; a silent peer gives 0 (a hang here ends in the test
	 * timeout, which is the failure) */
	ck_assert_int_eq(channel__wait_readable(&a, 0), 0);
	ck_assert_int_eq(channel__wait_readable(&a, SHORT_MS), 0);
	ck_assert_int_eq(channel__write_full(&b, "!", 1), 0);
	ck_assert_int_eq(channel__wait_readable(&a, GENEROUS_MS), 1);
	ck_assert_int_eq(channel__wait_readable(&a, 0), 1);
	ck_assert_int_eq(channel__wait_readable(&a, -1), 1);
	char ch;
	ck_assert_int_eq(channel__read_some(&a, &ch, 1), 1);
	ck_assert_int_eq(ch, '!');
	ck_assert_int_eq(channel__wait_readable(&a, 0), 0);
	/* a peer that hangs up wakes the waiter too */
	channel__shutdown(&b);
	ck_assert_int_eq(channel__wait_readable(&a, GENEROUS_MS), 1);
	ck_assert_int_eq(channel__read_some(&a, &ch, 1), 0);
	channel__close(&a);
	channel__close(&b);
}
END_TEST

/* Writes to a peer that went away end in -EPIPE or -ECONNRESET. SIGPIPE is
 * left at its default, so a send without MSG_NOSIGNAL would kill the test
 * (Check reports the signal). */
static void write_until_error(struct channel *a)
{
	enum { CHUNK = 64 * 1024 };
	uint8_t *buf = calloc(1, CHUNK);
	int rc = 0;
	for (int i = 0; i < 4096 && !rc; i++)
		rc = channel__write_full(a, buf, CHUNK);
	ck_assert_msg(rc == -EPIPE || rc == -ECONNRESET, "write_full gave %d (%s)", rc,
		      strerror(-rc));
	/* and it stays an error */
	rc = channel__write_full(a, buf, CHUNK);
	ck_assert_msg(rc == -EPIPE || rc == -ECONNRESET, "write_full gave %d", rc);
	free(buf);
}

START_TEST(write_to_shut_down_peer)
{
	ck_assert(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
	struct channel a, b;
	connect_pair(&a, &b);
	channel__shutdown(&b);	/* b's fd stays open */
	write_until_error(&a);
	channel__close(&a);
	channel__close(&b);
}
END_TEST

START_TEST(write_to_closed_peer)
{
	ck_assert(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
	struct channel a, b;
	connect_pair(&a, &b);
	channel__close(&b);
	write_until_error(&a);
	channel__close(&a);
}
END_TEST

/* Our own shutdown: the peer sees the end of the stream, and reads on our
 * side end too. */
START_TEST(own_shutdown)
{
	struct channel a, b;
	connect_pair(&a, &b);
	channel__shutdown(&a);
	char buf[4];
	ck_assert_int_eq(channel__read_full(&b, buf, 4), -ENODATA);
	ck_assert_int_eq(channel__read_full(&a, buf, 4), -ENODATA);
	channel__close(&a);
	channel__shutdown(&a);	/* after close: a no-op */
	channel__close(&b);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("channel");
	TCase *tc = tcase_create("uri");
	tcase_add_test(tc, uri_good);
	tcase_add_test(tc, uri_bad);
	tcase_add_test(tc, uri_bad_in_calls);
	suite_add_tcase(s, tc);

	tc = tcase_create("connect");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, listen_port0_gets_real_port);
	tcase_add_test(tc, listen_v6);
	tcase_add_test(tc, accept_times_out);
	tcase_add_test(tc, connect_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("transfer");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, full_duplex);
	tcase_add_test(tc, read_full_assembles);
	tcase_add_test(tc, end_of_stream_at_boundary);
	tcase_add_test(tc, end_of_stream_mid_buffer);
	tcase_add_test(tc, read_times_out_on_silent_peer);
	tcase_add_test(tc, write_times_out_on_stuck_peer);
	tcase_add_test(tc, wait_readable);
	tcase_add_test(tc, write_to_shut_down_peer);
	tcase_add_test(tc, write_to_closed_peer);
	tcase_add_test(tc, own_shutdown);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
