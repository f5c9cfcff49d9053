/* tls: and unix: channels over loopback. Certificates come from
 * contrib/make-test-ca.sh, run into a scratch directory: a round trip of a
 * few MiB both ways with a checksum, the TLS-specific waits (bytes kept
 * decrypted inside the session), and every refusal with its message on both
 * sides: wrong CA, expired certificate, name mismatch, client without a
 * certificate, client subject not allowed, plaintext client to a TLS
 * listener, TLS client to a plaintext listener, a key readable by others,
 * missing files. Nothing measures wall-clock time. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmhop/channel.h"
#include "vmhop/migrate.h"
#include "vmhop/util.h"

#include "test-pattern.h"

#define GENEROUS_MS	20000	/* must never be reached */
#define SHORT_MS	100	/* must be reached: the peer is silent */

static char dir[64];
static char ca[128], other_ca[128];
static char dest_pem[128], dest_key[128], src_pem[128], src_key[128];
static char rogue_pem[128], rogue_key[128], expired_pem[128], expired_key[128];
static char other_pem[128], other_key[128];

static void file(char *buf, const char *name)
{
	snprintf(buf, 128, "%s/%s", dir, name);
}

static void make_certs(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vmhop-tls-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	const char *src = getenv("VMHOP_SRCDIR");
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "sh '%s/contrib/make-test-ca.sh' '%s' >/dev/null",
		 src ? src : TEST_SRCDIR, dir);
	ck_assert_int_eq(system(cmd), 0);
	file(ca, "ca.pem");
	file(other_ca, "other-ca.pem");
	file(dest_pem, "dest.pem");
	file(dest_key, "dest.key");
	file(src_pem, "src.pem");
	file(src_key, "src.key");
	file(rogue_pem, "rogue.pem");
	file(rogue_key, "rogue.key");
	file(expired_pem, "expired.pem");
	file(expired_key, "expired.key");
	file(other_pem, "other.pem");
	file(other_key, "other.key");
}

static void remove_certs(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct channel_tls_opts server_opts(void)
{
	return (struct channel_tls_opts){ .ca = ca, .cert = dest_pem, .key = dest_key };
}

static struct channel_tls_opts client_opts(void)
{
	return (struct channel_tls_opts){ .ca = ca, .cert = src_pem, .key = src_key };
}

static uint64_t checksum(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

/* ---- a connecting thread ---------------------------------------------- */

struct client {
	char uri[CHANNEL_URI_MAX];
	struct channel_tls_opts o;
	bool tls;
	struct channel c;
	struct err e;
	int rc;
	pthread_t t;
};

static void *client_main(void *arg)
{
	struct client *k = arg;
	k->rc = k->tls ? channel__connect_tls(k->uri, GENEROUS_MS, &k->o, &k->c, &k->e)
		       : channel__connect(k->uri, GENEROUS_MS, &k->c, &k->e);
	return NULL;
}

static void client_start(struct client *k, const char *uri, const struct channel_tls_opts *o)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->uri, sizeof(k->uri), "%s", uri);
	if (o) {
		k->o = *o;
		k->tls = true;
	}
	ck_assert_int_eq(pthread_create(&k->t, NULL, client_main, k), 0);
}

static void client_join(struct client *k)
{
	ck_assert_int_eq(pthread_join(k->t, NULL), 0);
}

/* The client's tls: URI for a listener at "tls:127.0.0.1:PORT". */
static void tls_listen(const struct channel_tls_opts *o, struct channel_listener *l)
{
	struct err e = { 0 };
	ck_assert_msg(channel__listen_tls("tls:127.0.0.1:0", o, l, &e) == 0, "%s", e.msg);
	ck_assert_msg(!strncmp(l->local, "tls:127.0.0.1:", 14), "%s", l->local);
}

/* A mutual TLS pair: *a the connecting side, *b the accepted one. */
static void tls_pair(struct channel *a, struct channel *b)
{
	struct channel_listener l;
	struct channel_tls_opts so = server_opts(), co = client_opts();
	struct client k;
	struct err e = { 0 };
	tls_listen(&so, &l);
	client_start(&k, l.local, &co);
	ck_assert_msg(channel__accept(&l, GENEROUS_MS, b, &e) == 0, "%s", e.msg);
	client_join(&k);
	ck_assert_msg(k.rc == 0, "%s", k.e.msg);
	channel__listener_close(&l);
	*a = k.c;
	ck_assert_int_eq(a->kind, CHANNEL_TLS);
	ck_assert_int_eq(b->kind, CHANNEL_TLS);
	channel__set_timeout(a, GENEROUS_MS);
	channel__set_timeout(b, GENEROUS_MS);
}

/* A refused handshake: the listener's and the client's messages must hold
 * the given words (NULL: not checked). */
static void refused(const struct channel_tls_opts *so, const struct channel_tls_opts *co,
		    const char *server_words, const char *client_words)
{
	struct channel_listener l;
	struct channel c;
	struct client k;
	struct err e = { 0 };
	tls_listen(so, &l);
	client_start(&k, l.local, co);
	int rc = channel__accept(&l, GENEROUS_MS, &c, &e);
	client_join(&k);
	channel__listener_close(&l);
	ck_assert_msg(rc < 0, "the listener accepted it");
	ck_assert_int_eq(c.fd, -1);
	ck_assert_msg(k.rc < 0, "the client got through");
	ck_assert_int_eq(k.c.fd, -1);
	ck_assert_msg(!strchr(e.msg, '\n') && !strchr(k.e.msg, '\n'), "one line: %s / %s", e.msg,
		      k.e.msg);
	if (server_words)
		ck_assert_msg(strstr(e.msg, server_words), "listener: '%s' lacks '%s'", e.msg,
			      server_words);
	if (client_words)
		ck_assert_msg(strstr(k.e.msg, client_words), "client: '%s' lacks '%s'", k.e.msg,
			      client_words);
	fprintf(stderr, "listener: %s\nclient:   %s\n", e.msg, k.e.msg);
}

/* ---- round trips ------------------------------------------------------ */

enum { LEN = 5 * 1024 * 1024 + 77 };

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

/* Both directions at once, each checked by a checksum at the far end. */
START_TEST(tls_round_trip)
{
	struct channel a, b;
	tls_pair(&a, &b);
	uint8_t *out_a = malloc(LEN), *out_b = malloc(LEN), *in_a = malloc(LEN), *in_b = malloc(LEN);
	ck_assert(out_a && out_b && in_a && in_b);
	test_pattern(out_a, LEN, 0x1234);
	test_pattern(out_b, LEN, 0xbeef);
	/* One direction at a time: a session is used by one thread at once. */
	struct writer wa = { .c = &a, .buf = out_a, .len = LEN, .rc = 1 };
	struct writer wb = { .c = &b, .buf = out_b, .len = LEN, .rc = 1 };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, writer_main, &wa), 0);
	ck_assert_int_eq(channel__read_full(&b, in_b, LEN), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(wa.rc, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, writer_main, &wb), 0);
	ck_assert_int_eq(channel__read_full(&a, in_a, LEN), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(wb.rc, 0);
	ck_assert(checksum(in_b, LEN) == checksum(out_a, LEN));
	ck_assert(checksum(in_a, LEN) == checksum(out_b, LEN));
	ck_assert(!memcmp(in_b, out_a, LEN));
	/* Statistics, and who is at the other end: the verified subjects. */
	/* (the handshake's own bytes are not counted; a few of ours may be) */
	ck_assert_msg(a.bytes_out >= LEN && b.bytes_in >= LEN && b.bytes_out >= LEN && a.bytes_in >= LEN &&
		      a.bytes_out == b.bytes_in && b.bytes_out == a.bytes_in,
		      "%llu %llu %llu %llu", (unsigned long long)a.bytes_out, (unsigned long long)b.bytes_in,
		      (unsigned long long)b.bytes_out, (unsigned long long)a.bytes_in);
	char who[256];
	channel__identity(&a, who, sizeof(who));
	ck_assert_msg(strstr(who, "CN=vmhop-dest"), "%s", who);
	channel__identity(&b, who, sizeof(who));
	ck_assert_msg(strstr(who, "CN=vmhop-src"), "%s", who);

	/* nothing more on either side */
	ck_assert_int_eq(channel__wait_readable(&a, 0), 0);
	ck_assert_int_eq(channel__wait_readable(&b, 0), 0);
	ck_assert_int_eq(channel__wait_readable(&a, SHORT_MS), 0);

	/* bytes decrypted and kept in the session count as readable though
	 * the socket has nothing */
	ck_assert_int_eq(channel__write_full(&b, "hello", 5), 0);
	ck_assert_int_eq(channel__wait_readable(&a, GENEROUS_MS), 1);
	char buf[8];
	ck_assert_int_eq(channel__read_full(&a, buf, 1), 0);
	ck_assert_int_eq(channel__wait_readable(&a, 0), 1);
	ck_assert_int_eq(channel__read_full(&a, buf, 4), 0);
	ck_assert(!memcmp(buf, "ello", 4));
	ck_assert_int_eq(channel__wait_readable(&a, 0), 0);

	/* a silent peer times out */
	channel__set_timeout(&a, SHORT_MS);
	ck_assert_int_eq(channel__read_full(&a, buf, 4), -ETIMEDOUT);
	ck_assert_int_eq(channel__write_full(&b, "xy", 2), 0);
	ck_assert_int_eq(channel__read_full(&a, buf, 4), -ETIMEDOUT);
	ck_assert_int_eq(channel__write_full(&b, "zw", 2), 0);
	ck_assert_int_eq(channel__read_full(&a, buf, 2), 0);
	channel__set_timeout(&a, GENEROUS_MS);

	/* ends: clean at a boundary, then mid-buffer */
	ck_assert_int_eq(channel__write_full(&b, "1234", 4), 0);
	channel__close(&b);
	ck_assert_int_eq(channel__read_full(&a, buf, 4), 0);
	ck_assert_int_eq(channel__read_full(&a, buf, 4), -ENODATA);
	ck_assert_int_eq(channel__wait_readable(&a, 0), 1);
	channel__close(&a);
	channel__close(&a);	/* twice is harmless */
	free(out_a);
	free(out_b);
	free(in_a);
	free(in_b);
}
END_TEST

START_TEST(tls_ends_and_shutdown)
{
	struct channel a, b;
	char buf[16];
	tls_pair(&a, &b);
	ck_assert_int_eq(channel__write_full(&b, "12345", 5), 0);
	channel__close(&b);
	ck_assert_int_eq(channel__read_full(&a, buf, 8), -EPIPE);
	/* writing to a peer that went away: an error, never SIGPIPE */
	ck_assert(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
	int rc = 0;
	static uint8_t big[256 * 1024];
	for (int i = 0; i < 64 && !rc; i++)
		rc = channel__write_full(&a, big, sizeof(big));
	ck_assert_msg(rc == -EPIPE || rc == -ECONNRESET, "%d", rc);
	channel__close(&a);

	/* the destination's refusal (migrate/mig-dest.c): a message, then the
	 * socket's write side shut under the session; the peer reads the
	 * message and then an end, and its close is read as an end too */
	tls_pair(&a, &b);
	ck_assert_int_eq(channel__write_full(&b, "why", 3), 0);
	ck_assert_int_eq(shutdown(b.fd, SHUT_WR), 0);
	ck_assert_int_eq(channel__read_full(&a, buf, 3), 0);
	ck_assert(!memcmp(buf, "why", 3));
	ck_assert_int_eq(channel__read_full(&a, buf, 1), -ENODATA);
	channel__close(&a);
	ck_assert_int_eq(channel__read_some(&b, buf, 1), 0);
	channel__close(&b);

	/* shutdown from our side: both see the end */
	tls_pair(&a, &b);
	channel__shutdown(&a);
	ck_assert_int_eq(channel__read_full(&b, buf, 4), -ENODATA);
	ck_assert_int_eq(channel__read_full(&a, buf, 4), -ENODATA);
	channel__close(&a);
	channel__close(&b);
}
END_TEST

START_TEST(tls_allow_and_name)
{
	/* the allow list by CN and by whole RFC 2253 subject; the name
	 * expected given explicitly */
	struct channel_tls_opts so = server_opts(), co = client_opts();
	so.allow[so.nr_allow++] = "someone-else";
	so.allow[so.nr_allow++] = "CN=vmhop-src,O=vmhop test";
	co.name = "localhost";
	struct channel_listener l;
	struct channel c;
	struct client k;
	struct err e = { 0 };
	tls_listen(&so, &l);
	client_start(&k, l.local, &co);
	ck_assert_msg(channel__accept(&l, GENEROUS_MS, &c, &e) == 0, "%s", e.msg);
	client_join(&k);
	ck_assert_msg(k.rc == 0, "%s", k.e.msg);
	channel__set_timeout(&c, GENEROUS_MS);
	channel__set_timeout(&k.c, GENEROUS_MS);
	ck_assert_int_eq(channel__write_full(&k.c, "ping", 4), 0);
	char buf[4];
	ck_assert_int_eq(channel__read_full(&c, buf, 4), 0);
	channel__close(&c);
	channel__close(&k.c);

	so.allow[1] = "vmhop-src";
	client_start(&k, l.local, &co);
	ck_assert_msg(channel__accept(&l, GENEROUS_MS, &c, &e) == 0, "%s", e.msg);
	client_join(&k);
	ck_assert_msg(k.rc == 0, "%s", k.e.msg);
	channel__close(&c);
	channel__close(&k.c);
	channel__listener_close(&l);
}
END_TEST

/* ---- refusals ---------------------------------------------------------- */

START_TEST(tls_wrong_ca)
{
	struct channel_tls_opts so = server_opts(), co = client_opts();
	/* the client's certificate comes from another CA */
	co.cert = other_pem;
	co.key = other_key;
	refused(&so, &co, "unknown CA", "does not trust our certificate");
	/* the client does not know the listener's CA */
	co = client_opts();
	co.ca = other_ca;
	refused(&so, &co, "does not trust our certificate", "unknown CA");
}
END_TEST

START_TEST(tls_expired)
{
	struct channel_tls_opts so = server_opts(), co = client_opts();
	co.cert = expired_pem;
	co.key = expired_key;
	refused(&so, &co, "expired on", "it has expired");
	/* and the listener's */
	so.cert = expired_pem;
	so.key = expired_key;
	co = client_opts();
	co.name = "vmhop-src";
	refused(&so, &co, "it has expired", "expired on");
}
END_TEST

START_TEST(tls_name_mismatch)
{
	struct channel_tls_opts so = server_opts(), co = client_opts();
	co.name = "elsewhere.example";
	refused(&so, &co, "not for the name the client expects", "name mismatch");
	co.name = "10.9.8.7";
	refused(&so, &co, "refused our certificate", "is not for the name 10.9.8.7");
}
END_TEST

START_TEST(tls_client_without_certificate)
{
	struct channel_tls_opts so = server_opts(), co = { .ca = ca };
	refused(&so, &co, "presented no certificate", "requires a client certificate");
}
END_TEST

START_TEST(tls_subject_not_allowed)
{
	struct channel_tls_opts so = server_opts(), co = client_opts();
	so.allow[so.nr_allow++] = "vmhop-src";
	co.cert = rogue_pem;
	co.key = rogue_key;
	refused(&so, &co, "CN=vmhop-rogue,O=vmhop test) is not allowed (not in --tls-allow)",
		"--tls-allow");
}
END_TEST

/* A tcp: client on a tls: listener. */
START_TEST(tls_plaintext_client)
{
	struct channel_tls_opts so = server_opts();
	struct channel_listener l;
	struct channel c, s;
	struct err e = { 0 };
	tls_listen(&so, &l);
	char uri[CHANNEL_URI_MAX + 16];
	snprintf(uri, sizeof(uri), "tcp:%s", l.local + 4);
	ck_assert_msg(channel__connect(uri, GENEROUS_MS, &c, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(channel__write_full(&c, "VMHOPMIG\x10\0\0\0", 12), 0);
	ck_assert_int_eq(channel__accept(&l, GENEROUS_MS, &s, &e), -EPROTO);
	ck_assert_int_eq(s.fd, -1);
	ck_assert_msg(strstr(e.msg, "does not speak TLS: it sent plaintext (\"VMHOPMIG\\x10"),
		      "%s", e.msg);
	ck_assert_msg(strstr(e.msg, "tcp: instead of tls:"), "%s", e.msg);
	fprintf(stderr, "listener: %s\n", e.msg);
	/* the plaintext client sees the connection end */
	channel__set_timeout(&c, GENEROUS_MS);
	char buf[4];
	ck_assert_int_lt(channel__read_full(&c, buf, 4), 0);
	channel__close(&c);
	channel__listener_close(&l);
}
END_TEST

/* A tls: client on a tcp: listener that answers in plaintext, and on one
 * that hangs up. */
START_TEST(tls_client_to_plaintext)
{
	struct channel_tls_opts co = client_opts();
	for (int answer = 1; answer >= 0; answer--) {
		struct channel_listener l;
		struct channel s;
		struct client k;
		struct err e = { 0 };
		ck_assert_msg(channel__listen("tcp:127.0.0.1:0", &l, &e) == 0, "%s", e.msg);
		char uri[CHANNEL_URI_MAX + 16];
		snprintf(uri, sizeof(uri), "tls:%s", l.local + 4);
		client_start(&k, uri, &co);
		ck_assert_msg(channel__accept(&l, GENEROUS_MS, &s, &e) == 0, "%s", e.msg);
		channel__set_timeout(&s, GENEROUS_MS);
		char hello[5];
		ck_assert_int_eq(channel__read_full(&s, hello, 5), 0);
		ck_assert_int_eq(hello[0], 0x16);	/* a TLS handshake record */
		if (answer)
			ck_assert_int_eq(channel__write_full(&s, "VMHOPMIG\0\1\0\0{}", 14), 0);
		channel__shutdown(&s);
		client_join(&k);
		ck_assert_int_lt(k.rc, 0);
		ck_assert_int_eq(k.c.fd, -1);
		ck_assert_msg(strstr(k.e.msg, answer ? "answered in plaintext, not TLS"
					     : "closed the connection during the TLS handshake"),
			      "%s", k.e.msg);
		ck_assert_msg(strstr(k.e.msg, uri), "%s", k.e.msg);
		fprintf(stderr, "client:   %s\n", k.e.msg);
		channel__close(&s);
		channel__listener_close(&l);
	}
}
END_TEST

START_TEST(tls_bad_settings)
{
	struct channel_listener l;
	struct channel c;
	struct err e = { 0 };
	/* missing files, named */
	ck_assert_int_eq(channel__listen("tls:127.0.0.1:0", &l, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "tls:127.0.0.1:0 needs a CA, a certificate and a key; missing: "
			 "--tls-ca --tls-cert --tls-key");
	ck_assert_int_eq(l.fd, -1);
	channel__listener_close(&l);
	err__clear(&e);
	ck_assert_int_eq(channel__connect("tls:127.0.0.1:9", 1000, &c, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "missing: --tls-ca --tls-cert --tls-key"), "%s", e.msg);
	ck_assert_int_eq(c.fd, -1);
	err__clear(&e);
	struct channel_tls_opts so = { .ca = ca, .cert = dest_pem };
	ck_assert_int_eq(channel__listen_tls("tls:127.0.0.1:0", &so, &l, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "missing: --tls-key"), "%s", e.msg);

	/* a key readable by others */
	char loose[100];
	snprintf(loose, sizeof(loose), "%.60s/loose.key", dir);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 644 '%s'", dest_key, loose, loose);
	ck_assert_int_eq(system(cmd), 0);
	so.key = loose;
	err__clear(&e);
	ck_assert_int_eq(channel__listen_tls("tls:127.0.0.1:0", &so, &l, &e), -EPERM);
	ck_assert_msg(strstr(e.msg, "is readable by group or others"), "%s", e.msg);
	ck_assert_msg(strstr(e.msg, loose), "%s", e.msg);
	struct channel_tls_opts co = client_opts();
	co.key = loose;
	err__clear(&e);
	ck_assert_int_eq(channel__connect_tls("tls:127.0.0.1:9", 1000, &co, &c, &e), -EPERM);

	/* files that are not what they should be */
	so = server_opts();
	so.key = src_key;
	err__clear(&e);
	ck_assert_int_eq(channel__listen_tls("tls:127.0.0.1:0", &so, &l, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "does not match its certificate"), "%s", e.msg);
	so = server_opts();
	so.ca = "/nonexistent/ca.pem";
	err__clear(&e);
	ck_assert_int_eq(channel__listen_tls("tls:127.0.0.1:0", &so, &l, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "TLS CA /nonexistent/ca.pem"), "%s", e.msg);
}
END_TEST

/* A writer whose peer never reads times out, also inside a TLS record. */
/* The writer fills the socket long before the reader starts: its records
 * wait in the session's gathering buffer, the write is retried with the
 * same bytes (as SSL_write wants), and every byte arrives once, in order. */
START_TEST(tls_slow_reader)
{
	struct channel a, b;
	tls_pair(&a, &b);
	size_t len = 4 * LEN;
	uint8_t *out = malloc(len), *in = malloc(len);
	ck_assert(out && in);
	test_pattern(out, len, 0x5157);
	struct writer w = { .c = &a, .buf = out, .len = len, .rc = 1 };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	usleep(200 * 1000);
	/* odd read sizes: records split across reads, several in one */
	for (size_t off = 0, step = 1; off < len; off += step, step = step * 5 % 300007 + 1)
		ck_assert_int_eq(channel__read_full(&b, in + off, MIN(step, len - off)), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(w.rc, 0);
	ck_assert(!memcmp(in, out, len));
	ck_assert_int_eq(channel__wait_readable(&b, 0), 0);
	channel__close(&a);
	channel__close(&b);
	free(out);
	free(in);
}
END_TEST

START_TEST(tls_write_times_out)
{
	struct channel a, b;
	tls_pair(&a, &b);
	channel__set_timeout(&a, SHORT_MS);
	static uint8_t big[256 * 1024];
	int rc = 0;
	for (int i = 0; i < 4096 && !rc; i++)
		rc = channel__write_full(&a, big, sizeof(big));
	ck_assert_int_eq(rc, -ETIMEDOUT);
	channel__close(&a);
	channel__close(&b);
}
END_TEST

/* The TLS settings of a `migrate` control request. */
static int params(const char *json, struct migrate_params *p, struct err *e)
{
	struct json_object *args = json_tokener_parse(json);
	ck_assert_ptr_nonnull(args);
	err__clear(e);
	int rc = migrate__params_from_json(p, args, e);
	json_object_put(args);
	return rc;
}

START_TEST(tls_migrate_params)
{
	static struct migrate_params p;
	struct err e;
	ck_assert_int_eq(params("{\"uri\": \"tls:h:1\", \"tls_ca\": \"/c\", \"tls_cert\": \"/p\", "
				"\"tls_key\": \"/k\", \"tls_name\": \"n\"}", &p, &e), 0);
	ck_assert_str_eq(p.tls_ca, "/c");
	ck_assert_str_eq(p.tls_cert, "/p");
	ck_assert_str_eq(p.tls_key, "/k");
	ck_assert_str_eq(p.tls_name, "n");
	ck_assert_int_eq(params("{\"uri\": \"tls:h:1\", \"tls_cert\": \"/p\"}", &p, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "migrate: a tls: uri needs tls_ca, tls_cert and tls_key (missing: "
			 "tls_ca, tls_key)");
	ck_assert_int_eq(params("{\"uri\": \"tcp:h:1\", \"tls_ca\": \"/c\"}", &p, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "with a tls: uri only"), "%s", e.msg);
	ck_assert_int_eq(params("{\"uri\": \"tls:h:1\", \"tls_ca\": \"\", \"tls_cert\": \"/p\", "
				"\"tls_key\": \"/k\"}", &p, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "'tls_ca' is empty"), "%s", e.msg);
	ck_assert_int_eq(params("{\"uri\": \"unix:/run/x.sock\"}", &p, &e), 0);
	ck_assert_str_eq(p.uri, "unix:/run/x.sock");
	ck_assert_str_eq(p.tls_ca, "");
}
END_TEST

/* ---- unix: ---------------------------------------------------------------- */

START_TEST(unix_round_trip)
{
	char path[128], uri[160];
	snprintf(path, sizeof(path), "%s/mig.sock", dir);
	snprintf(uri, sizeof(uri), "unix:%s", path);
	struct channel_addr a;
	struct err e = { 0 };
	ck_assert_int_eq(channel__parse_uri(uri, false, &a, &e), 0);
	ck_assert_int_eq(a.kind, CHANNEL_UNIX);
	ck_assert_str_eq(a.host, path);
	ck_assert_int_eq(channel__parse_uri("unix:", true, &a, &e), -EINVAL);

	struct channel_listener l;
	struct channel c, s;
	ck_assert_msg(channel__listen(uri, &l, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(l.local, uri);
	ck_assert_int_eq(access(path, F_OK), 0);
	ck_assert_msg(channel__connect(uri, GENEROUS_MS, &c, &e) == 0, "%s", e.msg);
	ck_assert_msg(channel__accept(&l, GENEROUS_MS, &s, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(s.kind, CHANNEL_UNIX);
	channel__set_timeout(&c, GENEROUS_MS);
	channel__set_timeout(&s, GENEROUS_MS);
	uint8_t *out = malloc(LEN), *in = malloc(LEN);
	ck_assert(out && in);
	test_pattern(out, LEN, 77);
	struct writer w = { .c = &c, .buf = out, .len = LEN, .rc = 1 };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	ck_assert_int_eq(channel__read_full(&s, in, LEN), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(w.rc, 0);
	ck_assert(checksum(in, LEN) == checksum(out, LEN));
	channel__close(&c);
	ck_assert_int_eq(channel__read_full(&s, in, 1), -ENODATA);
	channel__close(&s);
	/* a second listener on a live path is refused */
	struct channel_listener l2;
	err__clear(&e);
	ck_assert_int_lt(channel__listen(uri, &l2, &e), 0);
	ck_assert_msg(strstr(e.msg, "another process listens there"), "%s", e.msg);
	channel__listener_close(&l);
	ck_assert_int_ne(access(path, F_OK), 0);	/* the listener removed its path */
	/* nobody listens: refused */
	err__clear(&e);
	ck_assert_int_eq(channel__connect(uri, GENEROUS_MS, &c, &e), -ENOENT);
	ck_assert_int_eq(c.fd, -1);
	free(out);
	free(in);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("channel-tls");
	TCase *tc = tcase_create("tls");
	tcase_add_unchecked_fixture(tc, make_certs, remove_certs);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, tls_round_trip);
	tcase_add_test(tc, tls_ends_and_shutdown);
	tcase_add_test(tc, tls_allow_and_name);
	tcase_add_test(tc, tls_wrong_ca);
	tcase_add_test(tc, tls_expired);
	tcase_add_test(tc, tls_name_mismatch);
	tcase_add_test(tc, tls_client_without_certificate);
	tcase_add_test(tc, tls_subject_not_allowed);
	tcase_add_test(tc, tls_plaintext_client);
	tcase_add_test(tc, tls_client_to_plaintext);
	tcase_add_test(tc, tls_bad_settings);
	tcase_add_test(tc, tls_slow_reader);
	tcase_add_test(tc, tls_write_times_out);
	tcase_add_test(tc, tls_migrate_params);
	tcase_add_test(tc, unix_round_trip);
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
