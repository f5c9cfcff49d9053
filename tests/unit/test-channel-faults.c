/* Every transport under load and under faults: tcp:, unix:, tls: (test
 * certificates from contrib/make-test-ca.sh) over loopback, and file:
 * (recorded, then replayed). For each: 1 GiB (VMHOP_CHANNEL_BULK_MIB to
 * change it) with a CRC32C computed at both ends, a peer that closes mid-transfer, a stalled
 * peer ending in the timeout, a refused connection (file: its analogues),
 * each fault of the fault-injecting wrapper giving a clean error, and a
 * real vmhop stream corrupted on its way, caught by the stream reader's
 * CRC with the record's offset. The in-memory pair (channel__pair) runs the
 * fault and stream cases too. Throughputs are printed, never judged: the
 * machine is shared. Timeouts are short for what must time out and
 * generous for what must not. */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmhop/channel.h"
#include "vmhop/stream.h"

#include "test-pattern.h"
#include "test-stream-util.h"

#define GENEROUS_MS	60000	/* must never be reached */
#define SHORT_MS	200	/* must be reached: the peer is silent */
#define MiB		(1024ull * 1024)

enum transport { T_TCP, T_UNIX, T_TLS, T_FILE, T_PAIR, T_COUNT };
static const char *const tname[T_COUNT] = { "tcp", "unix", "tls", "file", "pair" };

/* Set up once in main, before Check forks each test. */
static char dir[64];
static char ca[128], dest_pem[128], dest_key[128], src_pem[128], src_key[128];

static void path_in_dir(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", dir, name);
}

static int make_certs(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vmhop-chanf-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	const char *src = getenv("VMHOP_SRCDIR");
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "sh '%s/contrib/make-test-ca.sh' '%s' >/dev/null",
		 src ? src : TEST_SRCDIR, dir);
	if (system(cmd) != 0)
		return -1;
	path_in_dir(ca, sizeof(ca), "ca.pem");
	path_in_dir(dest_pem, sizeof(dest_pem), "dest.pem");
	path_in_dir(dest_key, sizeof(dest_key), "dest.key");
	path_in_dir(src_pem, sizeof(src_pem), "src.pem");
	path_in_dir(src_key, sizeof(src_key), "src.key");
	return 0;
}

/* A fresh name in the scratch directory (tests run in forked children). */
static void fresh(char *buf, size_t size, const char *scheme, const char *what)
{
	static unsigned n;
	snprintf(buf, size, "%s:%s/%s-%d-%u", scheme, dir, what, (int)getpid(), n++);
}

static double now_s(void)
{
	struct timespec ts;
	ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- connecting: a thread connects while the caller accepts ----------- */

struct client {
	char uri[CHANNEL_URI_MAX];
	bool tls;
	struct channel_tls_opts o;
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

static void listen_on(enum transport t, struct channel_listener *l)
{
	struct err e = { 0 };
	char uri[CHANNEL_URI_MAX];
	struct channel_tls_opts so = { .ca = ca, .cert = dest_pem, .key = dest_key };
	int rc;
	switch (t) {
	case T_TCP:
		rc = channel__listen("tcp:127.0.0.1:0", l, &e);
		break;
	case T_UNIX:
		fresh(uri, sizeof(uri), "unix", "s");
		rc = channel__listen(uri, l, &e);
		break;
	case T_TLS:
		rc = channel__listen_tls("tls:127.0.0.1:0", &so, l, &e);
		break;
	default:
		ck_abort_msg("no listener for %s", tname[t]);
		return;
	}
	ck_assert_msg(rc == 0, "%s", e.msg);
}

/* A connected pair: *out sends, *in receives (either may do both except
 * over file:). file: is the exception: *out is the writer of a fresh file
 * and *in stays closed until replay() opens the reader. */
static void connect_pair(enum transport t, struct channel *out, struct channel *in,
			 char *file_uri)
{
	struct err e = { 0 };
	*in = (struct channel){ .fd = -1 };
	if (t == T_FILE) {
		fresh(file_uri, CHANNEL_URI_MAX, "file", "rec");
		ck_assert_msg(channel__connect(file_uri, GENEROUS_MS, out, &e) == 0, "%s", e.msg);
		ck_assert_int_eq(out->kind, CHANNEL_FILE);
		channel__set_timeout(out, GENEROUS_MS);
		return;
	}
	if (t == T_PAIR) {
		ck_assert_msg(channel__pair(out, in, &e) == 0, "%s", e.msg);
	} else {
		struct channel_listener l;
		struct client k = { .tls = t == T_TLS,
				    .o = { .ca = ca, .cert = src_pem, .key = src_key } };
		listen_on(t, &l);
		snprintf(k.uri, sizeof(k.uri), "%s", l.local);
		ck_assert_int_eq(pthread_create(&k.t, NULL, client_main, &k), 0);
		ck_assert_msg(channel__accept(&l, GENEROUS_MS, in, &e) == 0, "%s", e.msg);
		ck_assert_int_eq(pthread_join(k.t, NULL), 0);
		ck_assert_msg(k.rc == 0, "%s", k.e.msg);
		channel__listener_close(&l);
		*out = k.c;
	}
	channel__set_timeout(out, GENEROUS_MS);
	channel__set_timeout(in, GENEROUS_MS);
}

/* file: the recorded file opened for reading. */
static void replay(const char *file_uri, struct channel *in)
{
	struct channel_listener l;
	struct err e = { 0 };
	ck_assert_msg(channel__listen(file_uri, &l, &e) == 0, "%s", e.msg);
	ck_assert_msg(channel__accept(&l, GENEROUS_MS, in, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(in->kind, CHANNEL_FILE);
	/* one reader per listener */
	struct channel again;
	err__clear(&e);
	ck_assert_int_eq(channel__accept(&l, GENEROUS_MS, &again, &e), -EALREADY);
	channel__listener_close(&l);
	channel__set_timeout(in, GENEROUS_MS);
}

static void wrap(struct channel *c, const char *spec)
{
	struct channel_fault_spec f;
	struct err e = { 0 };
	ck_assert_msg(channel__fault_parse(spec, &f, &e) == 0, "%s", e.msg);
	ck_assert_msg(channel__fault_wrap(c, &f, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(c->kind, CHANNEL_FAULT);
}

/* ---- bulk data: a numbered pattern, CRC32C at both ends ---------------- */

enum { CHUNK = 1024 * 1024 };

struct sender {
	struct channel *c;
	uint64_t total;
	uint32_t crc;
	uint64_t done;
	int rc;
	bool close_after;
};

/* Chunk i is the pattern with i in its first 8 bytes, so reordered or
 * repeated chunks change the checksum. */
static void *sender_main(void *arg)
{
	struct sender *s = arg;
	uint8_t *buf = malloc(CHUNK);
	if (!buf) {
		s->rc = -ENOMEM;
		return NULL;
	}
	test_pattern(buf, CHUNK, 0x5eed);
	s->rc = 0;
	for (uint64_t i = 0; s->done < s->total && !s->rc; i++) {
		size_t n = s->total - s->done < CHUNK ? (size_t)(s->total - s->done) : CHUNK;
		memcpy(buf, &i, sizeof(i) < n ? sizeof(i) : n);
		s->crc = crc32c__update(s->crc, buf, n);
		s->rc = channel__write_full(s->c, buf, n);
		if (!s->rc)
			s->done += n;
	}
	if (s->close_after) {
		if (!s->rc)
			s->rc = channel__flush(s->c);
		channel__close(s->c);
	}
	free(buf);
	return NULL;
}

/* Reads total bytes in chunks; returns the first error (0: all read). */
static int receive(struct channel *c, uint64_t total, uint32_t *crc, uint64_t *got)
{
	uint8_t *buf = malloc(CHUNK);
	ck_assert_ptr_nonnull(buf);
	int rc = 0;
	*got = 0;
	while (*got < total && !rc) {
		size_t n = total - *got < CHUNK ? (size_t)(total - *got) : CHUNK;
		rc = channel__read_full(c, buf, n);
		if (!rc) {
			*crc = crc32c__update(*crc, buf, n);
			*got += n;
		}
	}
	free(buf);
	return rc;
}

static uint64_t bulk_len(void)
{
	const char *env = getenv("VMHOP_CHANNEL_BULK_MIB");
	if (env && atoi(env) > 0)
		return (uint64_t)atoi(env) * MiB;
	return 1024 * MiB;
}

START_TEST(bulk)
{
	enum transport t = (enum transport)_i;
	struct channel out, in;
	char file_uri[CHANNEL_URI_MAX];
	uint64_t total = bulk_len() + 4093;	/* and a ragged end */
	connect_pair(t, &out, &in, file_uri);
	struct sender s = { .c = &out, .total = total, .close_after = true };
	uint32_t crc = 0;
	uint64_t got;
	double t0 = now_s();
	pthread_t th;
	if (t == T_FILE) {
		sender_main(&s);	/* record, then replay */
		ck_assert_msg(s.rc == 0, "recording: %s", strerror(-s.rc));
		struct stat st;
		ck_assert_int_eq(stat(file_uri + 5, &st), 0);
		ck_assert_uint_eq((uint64_t)st.st_size, total);
		ck_assert_uint_eq(st.st_mode & 0777, 0600);
		replay(file_uri, &in);
		ck_assert_int_eq(receive(&in, total, &crc, &got), 0);
	} else {
		ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &s), 0);
		ck_assert_int_eq(receive(&in, total, &crc, &got), 0);
		ck_assert_int_eq(pthread_join(th, NULL), 0);
		ck_assert_msg(s.rc == 0, "sender: %s", strerror(-s.rc));
	}
	double dt = now_s() - t0;
	ck_assert_uint_eq(got, total);
	ck_assert_uint_eq(s.done, total);
	ck_assert_msg(crc == s.crc, "checksums differ: sent %08x, received %08x", s.crc, crc);
	/* the sender closed: a clean end at the boundary */
	char b;
	ck_assert_int_eq(channel__read_full(&in, &b, 1), -ENODATA);
	fprintf(stderr, "bulk %s: %llu MiB in %.2f s (%.0f MiB/s%s), crc32c %08x both ends\n",
		tname[t], (unsigned long long)(total / MiB), dt, (double)total / MiB / dt,
		t == T_FILE ? ", recorded with fsync then replayed" : "", crc);
	channel__close(&in);
	if (t == T_FILE)
		ck_assert_int_eq(unlink(file_uri + 5), 0);
}
END_TEST

/* ---- a peer that goes away mid-transfer -------------------------------- */

START_TEST(peer_closes_mid_transfer)
{
	enum transport t = (enum transport)_i;
	struct channel out, in;
	char file_uri[CHANNEL_URI_MAX];
	uint8_t *buf = malloc(CHUNK);
	ck_assert_ptr_nonnull(buf);
	ck_assert(signal(SIGPIPE, SIG_DFL) != SIG_ERR);	/* a SIGPIPE would kill the test */

	/* The sender goes after 1 MiB + 5 bytes: the reader's second MiB ends
	 * mid-buffer (-EPIPE), never a hang or a short success. */
	connect_pair(t, &out, &in, file_uri);
	struct sender s = { .c = &out, .total = MiB + 5, .close_after = true };
	pthread_t th;
	if (t == T_FILE) {
		sender_main(&s);
		replay(file_uri, &in);
	} else {
		ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &s), 0);
	}
	ck_assert_int_eq(channel__read_full(&in, buf, CHUNK), 0);
	ck_assert_int_eq(channel__read_full(&in, buf, CHUNK), -EPIPE);
	if (t != T_FILE)
		ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(s.rc, 0);
	channel__close(&in);

	/* The reader goes after 1 MiB: the sender's next writes fail. */
	if (t != T_FILE) {
		connect_pair(t, &out, &in, file_uri);
		struct sender s2 = { .c = &out, .total = 1024 * MiB };
		ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &s2), 0);
		ck_assert_int_eq(channel__read_full(&in, buf, CHUNK), 0);
		channel__close(&in);
		ck_assert_int_eq(pthread_join(th, NULL), 0);
		ck_assert_msg(s2.rc == -EPIPE || s2.rc == -ECONNRESET, "sender: %d (%s)", s2.rc,
			      strerror(-s2.rc));
		ck_assert_uint_lt(s2.done, s2.total);
		channel__close(&out);
	}
	free(buf);
}
END_TEST

/* ---- a stalled peer ------------------------------------------------------ */

START_TEST(stalled_peer_times_out)
{
	enum transport t = (enum transport)_i;
	struct channel out, in;
	char file_uri[CHANNEL_URI_MAX];
	uint8_t *buf = calloc(1, CHUNK);
	ck_assert_ptr_nonnull(buf);
	connect_pair(t, &out, &in, file_uri);
	/* a silent sender: the reader gives up after its timeout */
	channel__set_timeout(&in, SHORT_MS);
	ck_assert_int_eq(channel__read_full(&in, buf, 16), -ETIMEDOUT);
	ck_assert_int_eq(channel__wait_readable(&in, SHORT_MS), 0);
	/* a reader that stopped reading: the sender's buffers fill, then the
	 * timeout (256 MiB is far more than any socket buffer) */
	channel__set_timeout(&out, SHORT_MS);
	int rc = 0;
	for (int i = 0; i < 256 && !rc; i++)
		rc = channel__write_full(&out, buf, CHUNK);
	ck_assert_int_eq(rc, -ETIMEDOUT);
	channel__close(&out);
	channel__close(&in);
	free(buf);
}
END_TEST

/* ---- refusals ------------------------------------------------------------ */

START_TEST(refused)
{
	enum transport t = (enum transport)_i;
	struct err e = { 0 };
	struct channel c;
	struct channel_listener l;
	char uri[CHANNEL_URI_MAX];
	struct channel_tls_opts co = { .ca = ca, .cert = src_pem, .key = src_key };
	int rc, want = -ECONNREFUSED;
	switch (t) {
	case T_TCP:
	case T_TLS:
		/* a port that was just free */
		listen_on(t, &l);
		snprintf(uri, sizeof(uri), "%s", l.local);
		channel__listener_close(&l);
		rc = t == T_TLS ? channel__connect_tls(uri, GENEROUS_MS, &co, &c, &e)
				: channel__connect(uri, GENEROUS_MS, &c, &e);
		break;
	case T_UNIX: {
		/* a socket nobody listens on any more, and no socket at all */
		fresh(uri, sizeof(uri), "unix", "stale");
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		ck_assert_int_ge(fd, 0);
		ck_assert_uint_lt(strlen(uri + 5), sizeof(sun.sun_path));
		memcpy(sun.sun_path, uri + 5, strlen(uri + 5));
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
		ck_assert_int_eq(close(fd), 0);
		rc = channel__connect(uri, GENEROUS_MS, &c, &e);
		ck_assert_int_eq(rc, -ECONNREFUSED);
		ck_assert_int_eq(c.fd, -1);
		ck_assert_msg(strstr(e.msg, uri), "%s", e.msg);
		err__clear(&e);
		fresh(uri, sizeof(uri), "unix", "none");
		rc = channel__connect(uri, GENEROUS_MS, &c, &e);
		want = -ENOENT;
		break;
	}
	case T_FILE: {
		/* no connection to refuse: an existing file is never clobbered,
		 * and a missing one cannot be replayed */
		fresh(uri, sizeof(uri), "file", "exists");
		int fd = open(uri + 5, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(write(fd, "keep", 4), 4);
		ck_assert_int_eq(close(fd), 0);
		rc = channel__connect(uri, GENEROUS_MS, &c, &e);
		ck_assert_int_eq(rc, -EEXIST);
		ck_assert_int_eq(c.fd, -1);
		ck_assert_msg(strstr(e.msg, "never overwritten"), "%s", e.msg);
		struct stat st;
		ck_assert_int_eq(stat(uri + 5, &st), 0);
		ck_assert_int_eq(st.st_size, 4);
		err__clear(&e);
		fresh(uri, sizeof(uri), "file", "missing");
		rc = channel__listen(uri, &l, &e);
		ck_assert_int_eq(l.fd, -1);
		want = -ENOENT;
		break;
	}
	default:
		return;
	}
	ck_assert_msg(rc == want, "%s: %d (%s), wanted %d", uri, rc, e.msg, want);
	ck_assert_msg(strstr(e.msg, uri), "the message names %s: %s", uri, e.msg);
	fprintf(stderr, "refused %s: %s\n", tname[t], e.msg);
}
END_TEST

/* file: is one way: the writer cannot read, the reader cannot write. */
START_TEST(file_one_way)
{
	struct channel out, in;
	char uri[CHANNEL_URI_MAX], b[4];
	connect_pair(T_FILE, &out, &in, uri);
	ck_assert_int_eq(channel__read_some(&out, b, 4), -EBADF);
	ck_assert_int_eq(channel__write_full(&out, "data", 4), 0);
	ck_assert_int_eq(channel__flush(&out), 0);
	channel__close(&out);
	ck_assert_int_eq(channel__flush(&out), -EBADF);
	replay(uri, &in);
	ck_assert_int_eq(channel__write_full(&in, "x", 1), -EBADF);
	ck_assert_int_eq(channel__flush(&in), 0);
	ck_assert_int_eq(channel__wait_readable(&in, 0), 1);
	ck_assert_int_eq(channel__read_full(&in, b, 4), 0);
	ck_assert(!memcmp(b, "data", 4));
	ck_assert_int_eq(channel__read_full(&in, b, 4), -ENODATA);
	channel__close(&in);
	channel__close(&in);	/* twice is harmless */
}
END_TEST

/* ---- the fault-injecting wrapper ----------------------------------------- */

START_TEST(fault_specs)
{
	struct channel_fault_spec f;
	struct err e = { 0 };
	ck_assert_int_eq(channel__fault_parse("cut@123", &f, &e), 0);
	ck_assert_int_eq(f.kind, CHANNEL_FAULT_CUT);
	ck_assert_uint_eq(f.at, 123);
	ck_assert_int_eq(channel__fault_parse("stall@0", &f, &e), 0);
	ck_assert_int_eq(f.kind, CHANNEL_FAULT_STALL);
	ck_assert_int_eq(channel__fault_parse("corrupt@9", &f, &e), 0);
	ck_assert_int_eq(f.kind, CHANNEL_FAULT_CORRUPT);
	ck_assert_uint_eq(f.at, 9);
	ck_assert_int_eq(channel__fault_parse("short", &f, &e), 0);
	ck_assert_int_eq(f.kind, CHANNEL_FAULT_SHORT);
	ck_assert_uint_eq(f.max_chunk, 0);
	ck_assert_int_eq(channel__fault_parse("short:3", &f, &e), 0);
	ck_assert_uint_eq(f.max_chunk, 3);
	static const char *const bad[] = { "cut", "cut@", "cut@x", "cut@-1", "short:0",
					   "short:", "stall", "flip@3", "", "corrupt@1k" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err__clear(&e);
		ck_assert_msg(channel__fault_parse(bad[i], &f, &e) == -EINVAL, "%s accepted", bad[i]);
		ck_assert_msg(strstr(e.msg, "fault"), "%s", e.msg);
	}
	/* a closed channel cannot be wrapped */
	struct channel c = { .fd = -1 };
	ck_assert_int_eq(channel__fault_parse("short", &f, &e), 0);
	ck_assert_int_eq(channel__fault_wrap(&c, &f, &e), -EBADF);
}
END_TEST

enum { FLEN = 4 * 1024 * 1024 + 11, AT = 1024 * 1024 + 3 };

/* The bytes the sender of the fault tests writes. */
static uint8_t *fault_data(void)
{
	uint8_t *p = malloc(FLEN);
	ck_assert_ptr_nonnull(p);
	test_pattern(p, FLEN, 0xfa17);
	return p;
}

struct raw_writer {
	struct channel *c;
	const uint8_t *p;
	size_t len;
	int rc;
	bool close_after;
};

static void *raw_writer_main(void *arg)
{
	struct raw_writer *w = arg;
	w->rc = channel__write_full(w->c, w->p, w->len);
	if (w->close_after) {
		if (!w->rc)
			w->rc = channel__flush(w->c);
		channel__close(w->c);
	}
	return NULL;
}

/* Sends len bytes through *out (wrapped or not) while reading them on *in
 * (over file:, writes first and replays after). The writer closes *out when
 * close_writer. Returns the reader's result; *wrc the writer's. */
static int transfer(enum transport t, struct channel *out, struct channel *in,
		    const char *file_uri, const uint8_t *data, size_t len, uint8_t *got,
		    bool close_writer, int *wrc)
{
	struct raw_writer w = { .c = out, .p = data, .len = len, .close_after = close_writer };
	pthread_t th;
	int rc;
	if (t == T_FILE) {
		raw_writer_main(&w);
		replay(file_uri, in);
		rc = channel__read_full(in, got, len);
	} else {
		ck_assert_int_eq(pthread_create(&th, NULL, raw_writer_main, &w), 0);
		rc = channel__read_full(in, got, len);
		if (rc && rc != -ETIMEDOUT) {
			/* a cut stays cut */
			if (in->kind == CHANNEL_FAULT)
				ck_assert_int_eq(channel__read_full(in, got, 1), rc);
			/* let a blocked writer go: a socket shut down for
			 * reading still takes data; a closed one resets (a
			 * stalled writer has its timeout) */
			channel__close(in);
		}
		ck_assert_int_eq(pthread_join(th, NULL), 0);
	}
	*wrc = w.rc;
	return rc;
}

/* Which end wears the wrapper: the sending or the receiving one. */
enum side { SENDER, RECEIVER };

static void fault_case(enum transport t, enum side side, const char *spec)
{
	struct channel out, in;
	char file_uri[CHANNEL_URI_MAX], fspec[64];
	bool stall = !strncmp(spec, "stall", 5), short_ = !strncmp(spec, "short", 5);
	/* 1..k bytes per call is slow by design (over tls: a record each) */
	size_t len = short_ ? 256 * 1024 + 11 : FLEN;
	uint8_t *data = fault_data(), *got = calloc(1, FLEN);
	ck_assert_ptr_nonnull(got);
	snprintf(fspec, sizeof(fspec), spec, AT);
	connect_pair(t, &out, &in, file_uri);
	if (side == SENDER)
		wrap(&out, fspec);
	if (stall)
		channel__set_timeout(&out, SHORT_MS);
	int wrc, rc;
	if (side == RECEIVER && t == T_FILE) {
		/* record untouched, wrap the replaying reader */
		struct raw_writer w = { .c = &out, .p = data, .len = len, .close_after = true };
		raw_writer_main(&w);
		ck_assert_int_eq(w.rc, 0);
		replay(file_uri, &in);
		wrap(&in, fspec);
		wrc = 0;
	} else if (side == RECEIVER) {
		wrap(&in, fspec);
	}
	if (stall)
		channel__set_timeout(&in, SHORT_MS);
	if (side == RECEIVER && t == T_FILE) {
		rc = channel__read_full(&in, got, len);
	} else {
		/* with a stall, the writer stays open until both ends have
		 * timed out: neither may see the other go first */
		bool close_writer = !(stall && t != T_FILE);
		rc = transfer(t, &out, &in, file_uri, data, len, got, close_writer, &wrc);
		if (!close_writer)
			channel__close(&out);
	}

	if (short_) {
		/* everything arrives, in pieces */
		ck_assert_int_eq(wrc, 0);
		ck_assert_int_eq(rc, 0);
		ck_assert(!memcmp(data, got, len));
	} else if (!strncmp(spec, "corrupt", 7)) {
		/* everything arrives, one byte flipped: the raw checksums differ
		 * and only byte AT is wrong */
		ck_assert_int_eq(wrc, 0);
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_ne(crc32c__update(0, data, len), crc32c__update(0, got, len));
		ck_assert_int_eq(got[AT], data[AT] ^ 0xff);
		got[AT] ^= 0xff;
		ck_assert(!memcmp(data, got, len));
	} else if (!strncmp(spec, "cut", 3)) {
		/* exactly AT bytes, then a clean error on both sides */
		ck_assert(!memcmp(data, got, AT));
		if (side == SENDER) {
			ck_assert_int_eq(wrc, -EPIPE);
			ck_assert_int_eq(rc, -EPIPE);	/* the end, mid-buffer */
		} else {
			ck_assert_int_eq(rc, -ECONNRESET);
			ck_assert_msg(wrc == -EPIPE || wrc == -ECONNRESET || wrc == 0,
				      "writer: %d", wrc);
			if (t == T_FILE)	/* and it stays cut */
				ck_assert_int_eq(channel__read_full(&in, got, 1), -ECONNRESET);
		}
	} else {
		/* stalled after AT bytes: the timeout on the stalled side, and
		 * on a reader waiting for a stalled sender */
		ck_assert(stall);
		ck_assert(!memcmp(data, got, AT));
		if (side == SENDER) {
			ck_assert_int_eq(wrc, -ETIMEDOUT);
			/* file: the reader sees the recording end after AT */
			ck_assert_int_eq(rc, t == T_FILE ? -EPIPE : -ETIMEDOUT);
		} else {
			ck_assert_int_eq(rc, -ETIMEDOUT);
			ck_assert_int_eq(channel__wait_readable(&in, SHORT_MS), 0);
		}
	}
	fprintf(stderr, "fault %s on the %s over %s: writer %s, reader %s\n", fspec,
		side == SENDER ? "sender" : "receiver", tname[t], wrc ? strerror(-wrc) : "ok",
		rc ? strerror(-rc) : "ok");
	channel__close(&in);
	free(data);
	free(got);
}

static const char *const faults[] = { "cut@%d", "stall@%d", "short", "short:3", "corrupt@%d" };
enum { NFAULTS = sizeof(faults) / sizeof(faults[0]) };

/* _i: transport * NFAULTS * 2 + fault * 2 + side */
START_TEST(fault)
{
	ck_assert(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
	enum transport t = (enum transport)(_i / (NFAULTS * 2));
	fault_case(t, (enum side)(_i % 2), faults[(_i / 2) % NFAULTS]);
}
END_TEST

/* The wrapper's reads are short too: read_some never returns more than K. */
START_TEST(short_reads_are_short)
{
	struct channel a, b;
	struct err e = { 0 };
	ck_assert_int_eq(channel__pair(&a, &b, &e), 0);
	channel__set_timeout(&a, GENEROUS_MS);
	channel__set_timeout(&b, GENEROUS_MS);
	wrap(&b, "short:3");
	ck_assert_int_eq(channel__write_full(&a, "0123456789", 10), 0);
	char buf[16];
	size_t got = 0;
	while (got < 10) {
		ssize_t n = channel__read_some(&b, buf + got, sizeof(buf) - got);
		ck_assert_int_ge(n, 1);
		ck_assert_int_le(n, 3);
		got += (size_t)n;
	}
	ck_assert(!memcmp(buf, "0123456789", 10));
	ck_assert_int_eq(channel__wait_readable(&b, 0), 0);
	channel__close(&a);
	ck_assert_int_eq(channel__wait_readable(&b, GENEROUS_MS), 1);
	ck_assert_int_eq(channel__read_some(&b, buf, 1), 0);
	channel__close(&b);
	channel__close(&b);
}
END_TEST

/* ---- a real stream, corrupted on its way --------------------------------- */

static ssize_t chan_read(void *opaque, void *buf, size_t len)
{
	return channel__read_some(opaque, buf, len);
}

/* Reads a stream from c, every record skipped (its CRC still checked).
 * Returns 0 at a verified END, or -errno with the reader's message. */
static int read_stream(struct channel *c, struct err *e)
{
	struct stream_io io = { .read = chan_read, .opaque = c };
	struct stream_reader r;
	int rc = stream__reader_init(&r, &io);
	if (rc < 0)
		return err__set(e, -rc, "reader: %s", strerror(-rc));
	rc = stream__read_header(&r, NULL, NULL);
	while (!rc) {
		struct stream_rec rec;
		rc = stream__next_record(&r, &rec);
		if (rc <= 0)
			break;
		rc = stream__rec_skip(&r);
	}
	if (rc < 0)
		stream__reader_err(&r, rc, "", e);
	stream__reader_free(&r);
	return rc;
}

/* The records of a stream in memory. */
static size_t list_records(const struct stream_mem *m, struct stream_rec *recs, size_t max)
{
	struct stream_mem v;
	struct stream_io io;
	struct stream_reader r;
	stream__mem_init_read(&v, m->buf, m->len);
	stream__io_mem(&io, &v);
	ck_assert_int_eq(stream__reader_init(&r, &io), 0);
	ck_assert_int_eq(stream__read_header(&r, NULL, NULL), 0);
	size_t n = 0;
	for (;;) {
		struct stream_rec rec;
		int rc = stream__next_record(&r, &rec);
		ck_assert_int_ge(rc, 0);
		if (!rc)
			break;
		if (n < max)
			recs[n++] = rec;
		ck_assert_int_eq(stream__rec_skip(&r), 0);
	}
	stream__reader_free(&r);
	return n;
}

/* _i: transport * 2 + (0: a SECTION record hit, 1: a MEM record hit) */
START_TEST(stream_corrupted)
{
	enum transport t = (enum transport)(_i / 2);
	uint16_t type = _i % 2 ? STREAM_REC_MEM : STREAM_REC_SECTION;
	struct stream_mem m;
	struct sample_opts so = { .format = STREAM_FORMAT_MAX, .npages = 64 };
	sample_stream(&m, &so);
	struct stream_rec recs[64];
	size_t n = list_records(&m, recs, 64), k;
	for (k = 0; k < n && recs[k].type != type; k++)
		;
	ck_assert_msg(k < n, "no %s record in the sample", stream__rec_name(type));
	uint64_t at = recs[k].off + STREAM_REC_HDR_SIZE + recs[k].len / 2;

	/* first untouched: it reads to its END */
	struct channel out, in;
	char file_uri[CHANNEL_URI_MAX], spec[64];
	struct err e = { 0 };
	int wrc;
	pthread_t th;
	for (int pass = 0; pass < 2; pass++) {
		connect_pair(t, &out, &in, file_uri);
		if (pass) {
			snprintf(spec, sizeof(spec), "corrupt@%llu", (unsigned long long)at);
			wrap(&out, spec);
		}
		struct raw_writer w = { .c = &out, .p = m.buf, .len = m.len, .close_after = true };
		if (t == T_FILE) {
			raw_writer_main(&w);
			replay(file_uri, &in);
		} else {
			ck_assert_int_eq(pthread_create(&th, NULL, raw_writer_main, &w), 0);
		}
		err__clear(&e);
		int rc = read_stream(&in, &e);
		channel__close(&in);
		if (t != T_FILE)
			ck_assert_int_eq(pthread_join(th, NULL), 0);
		wrc = w.rc;
		ck_assert_msg(wrc == 0 || (pass && (wrc == -EPIPE || wrc == -ECONNRESET)),
			      "writer: %d", wrc);
		if (!pass) {
			ck_assert_msg(rc == 0, "clean stream over %s: %s", tname[t], e.msg);
			continue;
		}
		char want[96];
		snprintf(want, sizeof(want), "checksum mismatch in record %s at offset %llu",
			 stream__rec_name(type), (unsigned long long)recs[k].off);
		ck_assert_int_eq(rc, -EBADMSG);
		ck_assert_msg(strstr(e.msg, want), "'%s' lacks '%s'", e.msg, want);
		/* and where it was found: the record's CRC, after the flipped byte */
		ck_assert_int_gt(err_offset(e.msg), (long long)at);
		fprintf(stderr, "stream over %s, %s: %s\n", tname[t], spec, e.msg);
	}
	stream__mem_free(&m);
	if (t == T_FILE)
		ck_assert_int_eq(unlink(file_uri + 5), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("channel-faults");
	TCase *tc = tcase_create("bulk");
	/* ample for 1 GiB under ASan on a shared machine: a hang is what
	 * this catches, not slowness */
	tcase_set_timeout(tc, 900);
	tcase_add_loop_test(tc, bulk, T_TCP, T_PAIR);
	suite_add_tcase(s, tc);

	tc = tcase_create("peers");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, peer_closes_mid_transfer, T_TCP, T_PAIR);
	tcase_add_loop_test(tc, stalled_peer_times_out, T_TCP, T_FILE);
	tcase_add_loop_test(tc, stalled_peer_times_out, T_PAIR, T_COUNT);
	tcase_add_loop_test(tc, refused, T_TCP, T_PAIR);
	tcase_add_test(tc, file_one_way);
	suite_add_tcase(s, tc);

	tc = tcase_create("faults");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, fault_specs);
	tcase_add_test(tc, short_reads_are_short);
	tcase_add_loop_test(tc, fault, 0, T_COUNT * NFAULTS * 2);
	tcase_add_loop_test(tc, stream_corrupted, 0, T_COUNT * 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (make_certs() < 0) {
		fprintf(stderr, "cannot make test certificates in %s\n", dir);
		return EXIT_FAILURE;
	}
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
