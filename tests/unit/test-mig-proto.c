/* The migration handshake's messages (migrate-proto.h) over a socketpair
 * wrapped as a channel: framing both ways, every refusal of mig__recv with its
 * text, the hello and its checks (protocol, role, release levels), and the
 * fault-hook specs (migrate-fault.h). */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmhop/migrate-fault.h"
#include "vmhop/migrate-proto.h"
#include "vmhop/release.h"
#include "vmhop/stream.h"

#define PEER		"test-peer"
#define WHAT		"the hello"
#define GENEROUS_MS	10000	/* must never be reached */
#define SHORT_MS	100	/* must be reached: the peer is silent */

/* us: the side under test; them: the raw peer, written by hand. */
static struct channel us, them;

static void setup(void)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	us = (struct channel){ .kind = CHANNEL_TCP, .fd = sv[0], .timeout_ms = GENEROUS_MS };
	them = (struct channel){ .kind = CHANNEL_TCP, .fd = sv[1], .timeout_ms = GENEROUS_MS };
	snprintf(us.peer, sizeof(us.peer), "%s", PEER);
	snprintf(them.peer, sizeof(them.peer), "us");
	unsetenv(RELEASE_ENV);
	unsetenv(MIGRATE_TEST_HOOKS_ENV);
}

static void teardown(void)
{
	channel__close(&us);
	channel__close(&them);
}

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The peer sends raw bytes. */
static void peer_raw(const void *p, size_t n)
{
	ck_assert_int_eq(channel__write_full(&them, p, n), 0);
}

/* The peer sends a frame around body[0..n) with the given length field and
 * a right (or deliberately wrong) CRC. */
static void peer_frame_ex(const void *body, size_t n, uint32_t len_field, bool good_crc)
{
	uint8_t hdr[MIG_MAGIC_LEN + 4], tail[4];
	memcpy(hdr, MIG_MAGIC, MIG_MAGIC_LEN);
	le32(hdr + MIG_MAGIC_LEN, len_field);
	uint32_t crc = crc32c__update(0, body, n);
	le32(tail, good_crc ? crc : crc ^ 0x80u);
	peer_raw(hdr, sizeof(hdr));
	peer_raw(body, n);
	peer_raw(tail, sizeof(tail));
}

static void peer_frame(const char *json)
{
	peer_frame_ex(json, strlen(json), (uint32_t)strlen(json), true);
}

/* The peer stops writing: we see the end of the stream. */
static void peer_done(void)
{
	ck_assert_int_eq(shutdown(them.fd, SHUT_WR), 0);
}

/* mig__recv must fail with code; returns the message. */
static const char *recv_fails(const char *type, int code, struct err *e)
{
	struct json_object *o = NULL;
	err__clear(e);
	int rc = mig__recv(&us, 0, type, WHAT, &o, e);
	ck_assert_msg(rc == -code, "mig__recv gave %d (%s), expected %d", rc, e->msg, -code);
	ck_assert_int_eq(e->code, code);
	ck_assert_ptr_null(o);
	return e->msg;
}

static struct json_object *recv_ok(const char *type)
{
	struct json_object *o = NULL;
	struct err e = { 0 };
	ck_assert_msg(mig__recv(&us, 0, type, WHAT, &o, &e) == 0, "%s", e.msg);
	ck_assert_ptr_nonnull(o);
	return o;
}

static const char *type_of(struct json_object *o)
{
	struct json_object *t;
	ck_assert(json_object_object_get_ex(o, "type", &t));
	return json_object_get_string(t);
}

/* Nothing left unread on our side (0: only look). */
static void nothing_pending(void)
{
	ck_assert_int_eq(channel__wait_readable(&us, 0), 0);
}

/* ---- framing ------------------------------------------------------------ */

START_TEST(round_trip)
{
	struct err e = { 0 };
	struct json_object *m = json_tokener_parse(
		"{\"type\":\"hello\",\"n\":-7,\"s\":\"caf\\u00e9 \\\"q\\\"\",\"a\":[1,{\"b\":null}]}");
	ck_assert_ptr_nonnull(m);
	/* both directions of the same pair */
	ck_assert_msg(mig__send(&them, m, &e) == 0, "%s", e.msg);
	struct json_object *got = recv_ok("hello");
	ck_assert(json_object_equal(m, got));
	json_object_put(got);
	ck_assert_msg(mig__send(&us, m, &e) == 0, "%s", e.msg);
	got = NULL;
	ck_assert_msg(mig__recv(&them, 0, NULL, "it", &got, &e) == 0, "%s", e.msg);
	ck_assert(json_object_equal(m, got));
	json_object_put(got);
	json_object_put(m);

	/* several messages back to back, any type accepted with NULL */
	ck_assert_int_eq(mig__send_type(&them, "ready", &e), 0);
	ck_assert_int_eq(mig__send_type(&them, "go", &e), 0);
	ck_assert_int_eq(mig__send_type(&them, "running", &e), 0);
	got = recv_ok(NULL);
	ck_assert_str_eq(type_of(got), "ready");
	ck_assert_int_eq(json_object_object_length(got), 1);
	json_object_put(got);
	got = recv_ok("go");
	json_object_put(got);
	got = recv_ok("running");
	json_object_put(got);
	nothing_pending();
}
END_TEST

/* The wire format, byte for byte, as migrate-proto.h describes it. */
START_TEST(wire_format)
{
	struct err e = { 0 };
	ck_assert_int_eq(mig__send_type(&them, "go", &e), 0);
	const char *json = "{\"type\":\"go\"}";
	size_t n = strlen(json);
	uint8_t buf[64];
	ck_assert_int_eq(channel__read_full(&us, buf, 12 + n + 4), 0);
	nothing_pending();
	ck_assert(!memcmp(buf, "VMHOPMIG", 8));
	ck_assert_uint_eq(buf[8] | buf[9] << 8 | buf[10] << 16 | (uint32_t)buf[11] << 24, n);
	ck_assert(!memcmp(buf + 12, json, n));
	uint8_t crc[4];
	le32(crc, crc32c__update(0, json, n));
	ck_assert(!memcmp(buf + 12 + n, crc, 4));
}
END_TEST

struct sender {
	struct json_object *msg;
	int rc;
	struct err e;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	s->rc = mig__send(&them, s->msg, &s->e);
	return NULL;
}

/* The largest message there may be passes (sent from a thread: a socketpair
 * does not buffer that much); one byte more is refused by the sender. */
START_TEST(size_limit_on_send)
{
	struct err e = { 0 };
	const char *pre = "{\"type\":\"x\",\"pad\":\"", *post = "\"}";
	size_t fixed = strlen(pre) + strlen(post);
	char *pad = malloc(MIG_FRAME_MAX + 1);
	memset(pad, 'p', MIG_FRAME_MAX - fixed);
	pad[MIG_FRAME_MAX - fixed] = '\0';
	struct json_object *m = json_object_new_object();
	json_object_object_add(m, "type", json_object_new_string("x"));
	json_object_object_add(m, "pad", json_object_new_string(pad));
	size_t len;
	json_object_to_json_string_length(m, JSON_C_TO_STRING_PLAIN, &len);
	ck_assert_uint_eq(len, MIG_FRAME_MAX);
	struct sender snd = { .msg = m, .rc = 1 };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, sender_main, &snd), 0);
	struct json_object *got = recv_ok("x");
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_msg(snd.rc == 0, "%s", snd.e.msg);
	ck_assert(json_object_equal(m, got));
	json_object_put(got);
	json_object_put(m);

	pad[MIG_FRAME_MAX - fixed] = 'p';
	pad[MIG_FRAME_MAX - fixed + 1] = '\0';
	m = json_object_new_object();
	json_object_object_add(m, "type", json_object_new_string("x"));
	json_object_object_add(m, "pad", json_object_new_string(pad));
	ck_assert_int_eq(mig__send(&them, m, &e), -EMSGSIZE);
	ck_assert_int_eq(e.code, EMSGSIZE);
	json_object_put(m);
	free(pad);
	nothing_pending();	/* nothing went out */
}
END_TEST

START_TEST(send_to_gone_peer)
{
	struct err e = { 0 };
	channel__close(&us);
	ck_assert_int_eq(mig__send_type(&them, "go", &e), -EPIPE);
	ck_assert_str_eq(e.msg, "sending a migration message: us closed the connection");
	ck_assert_int_lt(mig__send_error(&them, "whatever"), 0);
}
END_TEST

START_TEST(not_a_vmhop_peer)
{
	struct err e = { 0 };
	peer_raw("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38);
	ck_assert_str_eq(recv_fails("hello", EPROTO, &e),
			 PEER " is not a vmhop migration peer: expected " WHAT ", got \"HTTP/1.1 200\"");
}
END_TEST

START_TEST(not_a_vmhop_peer_binary)
{
	struct err e = { 0 };
	peer_raw("SSH-2.0\r\n\x00\x01\xff", 12);
	ck_assert_str_eq(recv_fails("hello", EPROTO, &e),
			 PEER " is not a vmhop migration peer: expected " WHAT
			 ", got \"SSH-2.0\\x0d\\x0a\\x00\\x01\\xff\"");
}
END_TEST

/* A bad length is refused from the header alone: the bytes after it (here
 * a marker) are still unread afterwards. The peer does not close, so a
 * receiver that went on to read a body would time out instead. */
static void bad_length(uint32_t len, const char *shown)
{
	struct err e = { 0 };
	uint8_t hdr[12];
	memcpy(hdr, MIG_MAGIC, MIG_MAGIC_LEN);
	le32(hdr + 8, len);
	peer_raw(hdr, 12);
	peer_raw("MARK", 4);
	char want[256];
	snprintf(want, sizeof(want), PEER " sent a %s-byte message (at most %d allowed) instead of " WHAT,
		 shown, MIG_FRAME_MAX);
	ck_assert_str_eq(recv_fails("hello", EPROTO, &e), want);
	char mark[4];
	ck_assert_int_eq(channel__read_full(&us, mark, 4), 0);
	ck_assert(!memcmp(mark, "MARK", 4));
	nothing_pending();
}

START_TEST(length_zero)
{
	bad_length(0, "0");
}
END_TEST

START_TEST(length_over_cap)
{
	bad_length(MIG_FRAME_MAX + 1, "262145");
	bad_length(0x7fffffffu, "2147483647");
	bad_length(0xfffffffcu, "4294967292");	/* len + 4 would wrap to 0 */
	bad_length(0xffffffffu, "4294967295");
}
END_TEST

START_TEST(crc_mismatch)
{
	struct err e = { 0 };
	const char *json = "{\"type\":\"hello\"}";
	peer_frame_ex(json, strlen(json), (uint32_t)strlen(json), false);
	ck_assert_str_eq(recv_fails("hello", EPROTO, &e),
			 PEER ": " WHAT " is corrupt (checksum mismatch)");
	nothing_pending();
}
END_TEST

static void not_typed(const char *body, size_t n)
{
	struct err e = { 0 };
	peer_frame_ex(body, n, (uint32_t)n, true);
	ck_assert_str_eq(recv_fails("hello", EPROTO, &e),
			 PEER ": " WHAT " is not a JSON object with a type");
	nothing_pending();
}

START_TEST(body_not_json)
{
	not_typed("not json", 8);
	not_typed("{\"type\":\"hello\"", 15);		/* cut short */
	not_typed("{\"type\":\"hello\"} {}", 19);	/* trailing data */
	not_typed("{\"type\":\"hello\"}\0", 17);	/* trailing NUL */
	not_typed("\0{\"type\":\"hello\"}", 17);
	not_typed("{\"type\":\"he\0llo\"}", 17);	/* raw NUL in a string */
	not_typed("\xff\xfe", 2);
}
END_TEST

START_TEST(json_without_type)
{
	not_typed("{}", 2);
	not_typed("{\"kind\":\"hello\"}", 16);
	not_typed("{\"type\":5}", 10);
	not_typed("{\"type\":null}", 13);
	not_typed("{\"type\":[\"hello\"]}", 18);
	not_typed("[{\"type\":\"hello\"}]", 18);
	not_typed("\"hello\"", 7);
	not_typed("42", 2);
}
END_TEST

START_TEST(peer_error)
{
	struct err e = { 0 };
	ck_assert_int_eq(mig__send_error(&them, "refusing stream from release SP3"), 0);
	ck_assert_str_eq(recv_fails("hello", ECANCELED, &e),
			 PEER " reported: refusing stream from release SP3");
	/* an error is an error whatever was expected */
	ck_assert_int_eq(mig__send_error(&them, "disk full"), 0);
	ck_assert_str_eq(recv_fails(NULL, ECANCELED, &e), PEER " reported: disk full");
	peer_frame("{\"type\":\"error\"}");
	ck_assert_str_eq(recv_fails("ready", ECANCELED, &e), PEER " reported: an error");
	peer_frame("{\"type\":\"error\",\"error\":17}");
	ck_assert_str_eq(recv_fails("ready", ECANCELED, &e), PEER " reported: an error");
	nothing_pending();
}
END_TEST

START_TEST(wrong_type)
{
	struct err e = { 0 };
	peer_frame("{\"type\":\"ready\"}");
	ck_assert_str_eq(recv_fails("hello", EPROTO, &e),
			 PEER " sent 'ready' while vmhop waited for " WHAT);
	/* a long type is cut in the message */
	char json[200], type[101];
	memset(type, 't', 100);
	type[100] = '\0';
	snprintf(json, sizeof(json), "{\"type\":\"%s\"}", type);
	peer_frame(json);
	char want[256];
	snprintf(want, sizeof(want), PEER " sent '%.40s' while vmhop waited for " WHAT, type);
	ck_assert_str_eq(recv_fails("hello", EPROTO, &e), want);
	/* a prefix of the expected type is not it */
	peer_frame("{\"type\":\"hell\"}");
	recv_fails("hello", EPROTO, &e);
	nothing_pending();
}
END_TEST

START_TEST(peer_closes_before_frame)
{
	struct err e = { 0 };
	peer_done();
	ck_assert_str_eq(recv_fails("hello", EPIPE, &e),
			 "waiting for " WHAT ": " PEER " closed the connection");
}
END_TEST

START_TEST(truncated_header)
{
	struct err e = { 0 };
	peer_raw("VMHOPMIG\x10", 9);
	peer_done();
	ck_assert_str_eq(recv_fails("hello", EPIPE, &e),
			 "waiting for " WHAT ": " PEER " closed the connection");
}
END_TEST

START_TEST(truncated_body)
{
	struct err e = { 0 };
	uint8_t hdr[12];
	memcpy(hdr, MIG_MAGIC, MIG_MAGIC_LEN);
	le32(hdr + 8, 16);
	peer_raw(hdr, 12);
	peer_raw("{\"type\":", 8);
	peer_done();
	ck_assert_str_eq(recv_fails("hello", EPIPE, &e),
			 "waiting for " WHAT ": " PEER " closed the connection");
}
END_TEST

START_TEST(truncated_crc)
{
	struct err e = { 0 };
	const char *json = "{\"type\":\"hello\"}";
	uint8_t hdr[12];
	memcpy(hdr, MIG_MAGIC, MIG_MAGIC_LEN);
	le32(hdr + 8, (uint32_t)strlen(json));
	peer_raw(hdr, 12);
	peer_raw(json, strlen(json));
	peer_raw("\x01\x02", 2);
	peer_done();
	ck_assert_str_eq(recv_fails("hello", EPIPE, &e),
			 "waiting for " WHAT ": " PEER " closed the connection");
}
END_TEST

START_TEST(peer_resets)
{
	struct err e = { 0 };
	/* a TCP reset reads as ECONNRESET: the same "closed" message */
	struct channel_listener l;
	ck_assert_msg(channel__listen("tcp:127.0.0.1:0", &l, &e) == 0, "%s", e.msg);
	struct channel c, s;
	ck_assert_msg(channel__connect(l.local, GENEROUS_MS, &c, &e) == 0, "%s", e.msg);
	ck_assert_msg(channel__accept(&l, GENEROUS_MS, &s, &e) == 0, "%s", e.msg);
	channel__listener_close(&l);
	ck_assert_int_eq(channel__write_full(&c, "unread", 6), 0);
	ck_assert_int_eq(channel__wait_readable(&s, GENEROUS_MS), 1);
	channel__close(&s);	/* unread data: the close sends a reset */
	struct json_object *o = NULL;
	err__clear(&e);
	ck_assert_int_eq(mig__recv(&c, GENEROUS_MS, "hello", WHAT, &o, &e), -EPIPE);
	ck_assert_msg(strstr(e.msg, "closed the connection") != NULL, "%s", e.msg);
	channel__close(&c);
}
END_TEST

START_TEST(timeout_silent_peer)
{
	struct err e = { 0 };
	struct json_object *o = NULL;
	ck_assert_int_eq(mig__recv(&us, SHORT_MS, "hello", WHAT, &o, &e), -ETIMEDOUT);
	ck_assert_ptr_null(o);
	ck_assert_str_eq(e.msg, "waiting for " WHAT ": no answer from " PEER " within 100 ms");
	/* the channel's own timeout is back afterwards */
	ck_assert_int_eq(us.timeout_ms, GENEROUS_MS);
	/* and the channel's own timeout applies with 0 */
	channel__set_timeout(&us, SHORT_MS);
	err__clear(&e);
	ck_assert_int_eq(mig__recv(&us, 0, "hello", WHAT, &o, &e), -ETIMEDOUT);
	ck_assert_int_eq(us.timeout_ms, SHORT_MS);
	/* the channel still works */
	peer_frame("{\"type\":\"hello\"}");
	o = recv_ok("hello");
	json_object_put(o);
}
END_TEST

/* The timeout given to mig__recv covers the whole message: a peer that
 * sends a header and then goes silent times out after it too. The channel's
 * own timeout is longer here and must not be the one that ends the wait. */
START_TEST(timeout_mid_frame)
{
	struct err e = { 0 };
	struct json_object *o = NULL;
	channel__set_timeout(&us, 3000);
	uint8_t hdr[12];
	memcpy(hdr, MIG_MAGIC, MIG_MAGIC_LEN);
	le32(hdr + 8, 16);
	peer_raw(hdr, 12);
	peer_raw("{\"ty", 4);
	ck_assert_int_eq(mig__recv(&us, SHORT_MS, "hello", WHAT, &o, &e), -ETIMEDOUT);
	ck_assert_ptr_null(o);
	ck_assert_str_eq(e.msg, "waiting for " WHAT ": no answer from " PEER " within 100 ms");
	ck_assert_int_eq(us.timeout_ms, 3000);
}
END_TEST

/* ---- hello -------------------------------------------------------------- */

static int64_t int_of(struct json_object *o, const char *k)
{
	struct json_object *v;
	ck_assert_msg(json_object_object_get_ex(o, k, &v), "no %s", k);
	ck_assert_msg(json_object_is_type(v, json_type_int), "%s not an int", k);
	return json_object_get_int64(v);
}

static const char *str_of(struct json_object *o, const char *k)
{
	struct json_object *v;
	ck_assert_msg(json_object_object_get_ex(o, k, &v), "no %s", k);
	ck_assert_msg(json_object_is_type(v, json_type_string), "%s not a string", k);
	return json_object_get_string(v);
}

static void check_hello_fields(struct json_object *h, const char *role, const char *rel,
			       int ordinal, int wformat, int rmin, int rmax)
{
	ck_assert_str_eq(str_of(h, "type"), "hello");
	ck_assert_int_eq(int_of(h, "proto"), MIG_PROTO);
	ck_assert_str_eq(str_of(h, "role"), role);
	ck_assert_str_eq(str_of(h, "release"), rel);
	ck_assert_int_eq(int_of(h, "release_ordinal"), ordinal);
	ck_assert_int_eq(int_of(h, "write_format"), wformat);
	struct json_object *f;
	ck_assert(json_object_object_get_ex(h, "read_formats", &f));
	ck_assert(json_object_is_type(f, json_type_array));
	ck_assert_uint_eq(json_object_array_length(f), (size_t)(rmax - rmin + 1));
	for (int i = rmin; i <= rmax; i++)
		ck_assert_int_eq(json_object_get_int(json_object_array_get_idx(f, (size_t)(i - rmin))), i);
	char host[256] = "";
	ck_assert_int_eq(gethostname(host, sizeof(host) - 1), 0);
	ck_assert_str_eq(str_of(h, "host"), host);
	ck_assert_int_eq(json_object_object_length(h), 8);
}

START_TEST(hello_contents)
{
	struct err e = { 0 };
	struct json_object *h = mig__hello("source", &e);
	ck_assert_msg(h != NULL, "%s", e.msg);
	check_hello_fields(h, "source", "SP3", 3, 3, 1, 3);
	json_object_put(h);

	setenv(RELEASE_ENV, "SP2", 1);
	h = mig__hello("destination", &e);
	ck_assert_msg(h != NULL, "%s", e.msg);
	check_hello_fields(h, "destination", "SP2", 2, 2, 1, 2);
	json_object_put(h);

	setenv(RELEASE_ENV, "SP1", 1);
	h = mig__hello("source", &e);
	ck_assert_msg(h != NULL, "%s", e.msg);
	check_hello_fields(h, "source", "SP1", 1, 1, 1, 1);
	json_object_put(h);

	setenv(RELEASE_ENV, "SP9", 1);
	err__clear(&e);
	ck_assert_ptr_null(mig__hello("source", &e));
	ck_assert_int_eq(e.code, EINVAL);
	ck_assert_str_eq(e.msg, "VMHOP_RELEASE_LEVEL=SP9 names no release level of this build");
}
END_TEST

/* A hello made at one level, checked at another, through a real frame. */
static int hello_between(const char *src_level, const char *dst_level, struct err *e)
{
	if (src_level)
		setenv(RELEASE_ENV, src_level, 1);
	else
		unsetenv(RELEASE_ENV);
	struct json_object *h = mig__hello("source", e);
	ck_assert_msg(h != NULL, "%s", e->msg);
	ck_assert_msg(mig__send(&them, h, e) == 0, "%s", e->msg);
	json_object_put(h);
	if (dst_level)
		setenv(RELEASE_ENV, dst_level, 1);
	else
		unsetenv(RELEASE_ENV);
	struct json_object *got = recv_ok("hello");
	err__clear(e);
	int rc = mig__check_hello(got, "source", e);
	json_object_put(got);
	return rc;
}

START_TEST(hello_same_level)
{
	struct err e = { 0 };
	ck_assert_msg(hello_between(NULL, NULL, &e) == 0, "%s", e.msg);
	ck_assert_msg(hello_between("SP2", "SP2", &e) == 0, "%s", e.msg);
}
END_TEST

START_TEST(hello_release_refused)
{
	struct err e = { 0 };
	/* this build (SP3) sends to a destination acting as SP2 */
	ck_assert_int_eq(hello_between(NULL, "SP2", &e), -EPROTO);
	ck_assert_int_eq(e.code, EPROTO);
	ck_assert_str_eq(e.msg,
			 "refusing stream from release SP3: this host runs SP2 and accepts SP1..SP2");
	ck_assert_int_eq(hello_between("SP3", "SP1", &e), -EPROTO);
	ck_assert_str_eq(e.msg, "refusing stream from release SP3: this host runs SP1 and accepts SP1");
	ck_assert_int_eq(hello_between("SP2", "SP1", &e), -EPROTO);
}
END_TEST

START_TEST(hello_release_accepted)
{
	struct err e = { 0 };
	ck_assert_msg(hello_between("SP2", "SP3", &e) == 0, "%s", e.msg);
	ck_assert_msg(hello_between("SP2", NULL, &e) == 0, "%s", e.msg);
	ck_assert_msg(hello_between("SP1", "SP3", &e) == 0, "%s", e.msg);
	ck_assert_msg(hello_between("SP1", "SP2", &e) == 0, "%s", e.msg);
}
END_TEST

/* The destination's hello is checked by the source for protocol and role
 * only: the release decision is the destination's. */
START_TEST(hello_destination_not_release_checked)
{
	struct err e = { 0 };
	setenv(RELEASE_ENV, "SP1", 1);
	struct json_object *h = mig__hello("destination", &e);
	ck_assert_msg(h != NULL, "%s", e.msg);
	unsetenv(RELEASE_ENV);
	ck_assert_msg(mig__check_hello(h, "destination", &e) == 0, "%s", e.msg);
	json_object_put(h);
}
END_TEST

static struct json_object *good_hello(void)
{
	struct err e = { 0 };
	struct json_object *h = mig__hello("source", &e);
	ck_assert_msg(h != NULL, "%s", e.msg);
	return h;
}

static void hello_refused(struct json_object *h, const char *want)
{
	struct err e = { 0 };
	ck_assert_int_eq(mig__check_hello(h, "source", &e), -EPROTO);
	ck_assert_int_eq(e.code, EPROTO);
	ck_assert_str_eq(e.msg, want);
	json_object_put(h);
}

#define MISSING "the peer's hello is missing proto, role or release fields"

START_TEST(hello_wrong_proto)
{
	struct json_object *h = good_hello();
	json_object_object_add(h, "proto", json_object_new_int(2));
	hello_refused(h, "the peer speaks migration protocol 2, this vmhop 1");
	h = good_hello();
	json_object_object_add(h, "proto", json_object_new_int(65535));
	hello_refused(h, "the peer speaks migration protocol 65535, this vmhop 1");
	/* out of range or not a number: as good as missing */
	h = good_hello();
	json_object_object_add(h, "proto", json_object_new_int(0));
	hello_refused(h, MISSING);
	h = good_hello();
	json_object_object_add(h, "proto", json_object_new_int64(1LL << 40));
	hello_refused(h, MISSING);
	h = good_hello();
	json_object_object_add(h, "proto", json_object_new_string("1"));
	hello_refused(h, MISSING);
	h = good_hello();
	json_object_object_add(h, "proto", json_object_new_double(1.0));
	hello_refused(h, MISSING);
}
END_TEST

START_TEST(hello_wrong_role)
{
	struct err e = { 0 };
	struct json_object *h = mig__hello("destination", &e);
	ck_assert_ptr_nonnull(h);
	hello_refused(h, "the peer is a migration destination, expected a source");
	h = good_hello();
	ck_assert_int_eq(mig__check_hello(h, "destination", &e), -EPROTO);
	ck_assert_str_eq(e.msg, "the peer is a migration source, expected a destination");
	json_object_put(h);
	/* a long role is cut */
	h = good_hello();
	json_object_object_add(h, "role", json_object_new_string("sourcesourcesourcesourcesource"));
	hello_refused(h, "the peer is a migration sourcesourcesourceso, expected a source");
}
END_TEST

START_TEST(hello_missing_fields)
{
	static const char *const fields[] = {
		"proto", "role", "release", "release_ordinal", "write_format",
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++) {
		struct json_object *h = good_hello();
		json_object_object_del(h, fields[i]);
		hello_refused(h, MISSING);
		/* wrong JSON type: a string where a number belongs and back */
		h = good_hello();
		struct json_object *v;
		ck_assert(json_object_object_get_ex(h, fields[i], &v));
		json_object_object_add(h, fields[i], json_object_is_type(v, json_type_string) ?
				       json_object_new_int(1) : json_object_new_string("1"));
		hello_refused(h, MISSING);
	}
	struct json_object *h = good_hello();
	json_object_object_add(h, "release_ordinal", json_object_new_int(-1));
	hello_refused(h, MISSING);
	h = good_hello();
	json_object_object_add(h, "write_format", json_object_new_int(65536));
	hello_refused(h, MISSING);
	/* not an object at all */
	h = json_object_new_array();
	hello_refused(h, MISSING);
	h = json_object_new_object();
	hello_refused(h, MISSING);
}
END_TEST

/* Release fields that do not match the data are refused the same way a
 * stream header would be. */
START_TEST(hello_release_fields_checked)
{
	struct json_object *h = good_hello();
	json_object_object_add(h, "release", json_object_new_string("SP9"));
	json_object_object_add(h, "release_ordinal", json_object_new_int(9));
	hello_refused(h, "refusing stream from release SP9 (a newer release): this host runs SP3 "
		      "and accepts SP1..SP3");
	h = good_hello();
	json_object_object_add(h, "release_ordinal", json_object_new_int(2));
	hello_refused(h, "refusing stream from release SP3 (its level number does not match this "
		      "host's data): this host runs SP3 and accepts SP1..SP3");
	h = good_hello();
	json_object_object_add(h, "write_format", json_object_new_int(4));
	hello_refused(h, "refusing stream format version 4 from release SP3: this host runs SP3 "
		      "and reads format versions 1..3");
}
END_TEST

/* ---- fault hooks -------------------------------------------------------- */

START_TEST(fault_check)
{
	struct err e = { 0 };
	ck_assert_int_eq(mig_fault__check("", &e), 0);
	ck_assert_int_eq(mig_fault__check(NULL, &e), 0);
	ck_assert_int_eq(mig_fault__check("hello:cut", &e), -EPERM);
	ck_assert_int_eq(e.code, EPERM);
	ck_assert_msg(strstr(e.msg, "VMHOP_TEST_HOOKS=1") != NULL, "%s", e.msg);
	setenv(MIGRATE_TEST_HOOKS_ENV, "0", 1);
	err__clear(&e);
	ck_assert_int_eq(mig_fault__check("hello:cut", &e), -EPERM);
	setenv(MIGRATE_TEST_HOOKS_ENV, "yes", 1);
	ck_assert_int_eq(mig_fault__check("hello:cut", &e), -EPERM);

	setenv(MIGRATE_TEST_HOOKS_ENV, "1", 1);
	static const char *const phases[] = { "hello", "round1", "precopy", "stopcopy", "ready", "go" };
	static const char *const actions[] = { "cut", "stall", "kill", "delay", "stray" };
	for (size_t p = 0; p < 6; p++)
		for (size_t a = 0; a < 5; a++) {
			char spec[32];
			snprintf(spec, sizeof(spec), "%s:%s", phases[p], actions[a]);
			err__clear(&e);
			ck_assert_msg(mig_fault__check(spec, &e) == 0, "%s: %s", spec, e.msg);
		}
	ck_assert_int_eq(mig_fault__check("", &e), 0);
	ck_assert_int_eq(mig_fault__check("channel2:stray", &e), 0);
	/* Exactly PHASE:ACTION, for the actions the caller carries out. */
	ck_assert(mig_fault__is("channel2:stray", "channel2", "stray"));
	ck_assert(!mig_fault__is("channel2:stray", "channel1", "stray"));
	ck_assert(!mig_fault__is("channel2:stray", "channel", "stray"));
	ck_assert(!mig_fault__is("channel2:cut", "channel2", "stray"));
	ck_assert(!mig_fault__is("channel2:strayx", "channel2", "stray"));
	ck_assert(!mig_fault__is(NULL, "channel2", "stray"));

	static const char *const bad[] = {
		"hello", "hello:", ":cut", ":", "bogus:cut", "hello:explode", "hello:cut:cut",
		"HELLO:cut", "hello:CUT", "hell:cut", "hello:cu", "hello :cut", "round1:cutx",
		"hellohello:cut",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		err__clear(&e);
		ck_assert_msg(mig_fault__check(bad[i], &e) == -EINVAL, "%s accepted", bad[i]);
		ck_assert_int_eq(e.code, EINVAL);
		char want[32];
		snprintf(want, sizeof(want), "fault '%s': ", bad[i]);
		ck_assert_msg(!strncmp(e.msg, want, strlen(want)), "%s", e.msg);
	}
}
END_TEST

START_TEST(fault_at)
{
	struct err e = { 0 };
	/* other phases and no spec: nothing happens */
	ck_assert_int_eq(mig_fault__at(NULL, "hello", &us, 1000, &e), 0);
	ck_assert_int_eq(mig_fault__at("go:cut", "hello", &us, 1000, &e), 0);
	ck_assert_int_eq(mig_fault__at("hello:cut", "hell", &us, 1000, &e), 0);
	ck_assert_int_eq(mig_fault__at("ready:kill", "go", &us, 1000, &e), 0);
	ck_assert_int_eq(e.code, 0);
	nothing_pending();
	/* cut: the peer sees the connection end */
	ck_assert_int_eq(mig_fault__at("hello:cut", "hello", &us, 1000, &e), -ECONNABORTED);
	ck_assert_int_eq(e.code, ECONNABORTED);
	ck_assert_str_eq(e.msg, "connection cut at hello (test hook)");
	char c;
	ck_assert_int_eq(channel__read_full(&them, &c, 1), -ENODATA);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("mig-proto");
	TCase *tc = tcase_create("frames");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, wire_format);
	tcase_add_test(tc, size_limit_on_send);
	tcase_add_test(tc, send_to_gone_peer);
	tcase_add_test(tc, not_a_vmhop_peer);
	tcase_add_test(tc, not_a_vmhop_peer_binary);
	tcase_add_test(tc, length_zero);
	tcase_add_test(tc, length_over_cap);
	tcase_add_test(tc, crc_mismatch);
	tcase_add_test(tc, body_not_json);
	tcase_add_test(tc, json_without_type);
	tcase_add_test(tc, peer_error);
	tcase_add_test(tc, wrong_type);
	tcase_add_test(tc, peer_closes_before_frame);
	tcase_add_test(tc, truncated_header);
	tcase_add_test(tc, truncated_body);
	tcase_add_test(tc, truncated_crc);
	tcase_add_test(tc, peer_resets);
	tcase_add_test(tc, timeout_silent_peer);
	tcase_add_test(tc, timeout_mid_frame);
	suite_add_tcase(s, tc);

	tc = tcase_create("hello");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, hello_contents);
	tcase_add_test(tc, hello_same_level);
	tcase_add_test(tc, hello_release_refused);
	tcase_add_test(tc, hello_release_accepted);
	tcase_add_test(tc, hello_destination_not_release_checked);
	tcase_add_test(tc, hello_wrong_proto);
	tcase_add_test(tc, hello_wrong_role);
	tcase_add_test(tc, hello_missing_fields);
	tcase_add_test(tc, hello_release_fields_checked);
	suite_add_tcase(s, tc);

	tc = tcase_create("fault");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fault_check);
	tcase_add_test(tc, fault_at);
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
