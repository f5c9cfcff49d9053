/* The rdma: channel tests, run inside the soft-RoCE guest (tests/rdma/rdma.py):
 *
 *   rdma-chantest ADDR MIB        every case below over rdma:ADDR (loopback
 *                                 through one rxe device), MIB MiB of bulk data
 *   rdma-chantest replay ADDR IN OUT
 *                                 IN (read through a file: channel) sent over
 *                                 rdma:ADDR, received and written to OUT
 *                                 through a file: channel; prints throughput
 *
 * One line per check (`ok - ...` / `not ok - ...`), then `RDMA-TEST PASS` or
 * `RDMA-TEST FAIL` (exit 0 or 1). The fault-injecting wrapper's faults
 * (cut, short, corrupt, stall) run over rdma: too. Throughput is printed, never judged. Short
 * timeouts where a case must time out, generous ones where it must not. */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmhop/channel.h"
#include "vmhop/stream.h"

#define GENEROUS_MS	60000
#define SHORT_MS	1000
#define MiB		(1024ul * 1024)

struct ctx {
	const char *addr;
	int failed;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(struct ctx *x, bool cond, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void check(struct ctx *x, bool cond, const char *fmt, ...)
{
	va_list ap;
	printf("%s - ", cond ? "ok" : "not ok");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		x->failed++;
}

static void pattern(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
	for (size_t i = 0; i + 8 <= n; i += 8) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		memcpy(p + i, &s, 8);
	}
}

/* ---- a connected pair: a thread connects while the caller accepts ------- */

struct client {
	char uri[CHANNEL_URI_MAX];
	struct channel c;
	struct err e;
	int rc;
	pthread_t t;
};

static void *client_main(void *arg)
{
	struct client *k = arg;
	k->rc = channel__connect(k->uri, GENEROUS_MS, &k->c, &k->e);
	return NULL;
}

/* *out connected, *in accepted; 0 or -1 with the reason printed. */
static int pair(struct ctx *x, struct channel *out, struct channel *in)
{
	struct channel_listener l;
	struct err e = { 0 };
	char uri[CHANNEL_URI_MAX];
	snprintf(uri, sizeof(uri), "rdma:%s:0", x->addr);
	if (channel__listen(uri, &l, &e) < 0) {
		check(x, false, "listen on %s: %s", uri, e.msg);
		return -1;
	}
	struct client k = { 0 };
	snprintf(k.uri, sizeof(k.uri), "%s", l.local);
	pthread_create(&k.t, NULL, client_main, &k);
	int rc = channel__accept(&l, GENEROUS_MS, in, &e);
	pthread_join(k.t, NULL);
	channel__listener_close(&l);
	if (rc < 0 || k.rc < 0) {
		check(x, false, "connect to %s: accept: %s; connect: %s", k.uri,
		      rc < 0 ? e.msg : "ok", k.rc < 0 ? k.e.msg : "ok");
		if (!rc)
			channel__close(in);
		if (!k.rc)
			channel__close(&k.c);
		return -1;
	}
	*out = k.c;
	channel__set_timeout(out, GENEROUS_MS);
	channel__set_timeout(in, GENEROUS_MS);
	return 0;
}

/* ---- a writer thread ------------------------------------------------------ */

struct writer {
	struct channel *c;
	size_t total, chunk;
	uint64_t seed;
	struct channel_region *rg;	/* zero copy from this region when set */
	uint8_t *region;
	uint32_t crc;
	int rc;
	bool close_after;
	double seconds;
	pthread_t t;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	double t0 = now_s();
	uint8_t *buf = w->rg ? NULL : malloc(w->chunk);
	size_t done = 0;
	w->rc = 0;
	while (done < w->total && !w->rc) {
		size_t n = w->total - done < w->chunk ? w->total - done : w->chunk;
		if (w->rg) {
			w->crc = crc32c__update(w->crc, w->region + done, n);
			w->rc = channel__write_region(w->c, w->rg, done, n);
		} else {
			pattern(buf, n, w->seed + done / w->chunk);
			w->crc = crc32c__update(w->crc, buf, n);
			w->rc = channel__write_full(w->c, buf, n);
		}
		done += n;
	}
	if (!w->rc)
		w->rc = channel__flush(w->c);
	w->seconds = now_s() - t0;
	free(buf);
	if (w->close_after)
		channel__close(w->c);
	return NULL;
}

/* Reads len bytes in chunks; their CRC32C. */
static int read_crc(struct channel *c, size_t len, uint32_t *crc)
{
	uint8_t *buf = malloc(MiB);
	int rc = 0;
	*crc = 0;
	for (size_t done = 0; done < len && !rc; ) {
		size_t n = len - done < MiB ? len - done : MiB;
		rc = channel__read_full(c, buf, n);
		if (!rc)
			*crc = crc32c__update(*crc, buf, n);
		done += n;
	}
	free(buf);
	return rc;
}

/* ---- the cases ------------------------------------------------------------ */

static void bulk(struct ctx *x, size_t mib)
{
	struct channel out, in;
	if (pair(x, &out, &in))
		return;
	check(x, out.kind == CHANNEL_RDMA && in.kind == CHANNEL_RDMA && !strncmp(in.peer, "rdma:", 5),
	      "connected over rdma: (peer %s)", in.peer);
	struct writer w = { .c = &out, .total = mib * MiB, .chunk = MiB, .seed = 1 };
	double t0 = now_s();
	pthread_create(&w.t, NULL, writer_main, &w);
	uint32_t crc;
	int rc = read_crc(&in, w.total, &crc);
	pthread_join(w.t, NULL);
	double s = now_s() - t0;
	check(x, !rc && !w.rc && crc == w.crc, "%zu MiB, CRC32C at both ends: sent %08x, received %08x "
	      "(writer %d, reader %d); %.1f MiB/s", mib, w.crc, crc, w.rc, rc, (double)mib / s);
	printf("BULK mib=%zu seconds=%.2f mib_s=%.1f\n", mib, s, (double)mib / s);
	/* then the end: a clean close after the last byte */
	channel__close(&out);
	uint8_t b;
	rc = channel__read_full(&in, &b, 1);
	check(x, rc == -ENODATA, "the writer's close is a clean end of stream (%d)", rc);
	channel__close(&in);
}

static void zero_copy(struct ctx *x, size_t mib)
{
	struct channel out, in;
	if (pair(x, &out, &in))
		return;
	size_t len = mib * MiB;
	uint8_t *region = aligned_alloc(4096, len);
	pattern(region, len, 99);
	struct channel_region *rg;
	struct err e = { 0 };
	int rc = channel__region_add(&out, region, len, &rg, &e);
	check(x, rc == 0, "a %zu MiB region registered for zero-copy sends%s%s", mib,
	      rc ? ": " : "", rc ? e.msg : "");
	if (rc) {
		free(region);
		channel__close(&out);
		channel__close(&in);
		return;
	}
	/* region bytes, then copied ones: one ordered stream */
	struct writer w = { .c = &out, .total = len, .chunk = 3 * MiB + 4096, .rg = rg,
			    .region = region };
	double t0 = now_s();
	pthread_create(&w.t, NULL, writer_main, &w);
	uint32_t crc;
	rc = read_crc(&in, len, &crc);
	pthread_join(w.t, NULL);
	double s = now_s() - t0;
	int wrc = channel__write_full(&out, "tail", 4);
	char tail[4] = { 0 };
	int trc = channel__read_full(&in, tail, 4);
	check(x, !rc && !w.rc && crc == w.crc && !wrc && !trc && !memcmp(tail, "tail", 4),
	      "%zu MiB sent from a registered region without a copy, in order with copied bytes, "
	      "CRC32C %08x/%08x; %.1f MiB/s", mib, w.crc, crc, (double)mib / s);
	channel__region_del(&out, rg);
	channel__close(&out);
	channel__close(&in);
	free(region);
}

/* The reader goes away after 1 MiB: the writer fails, without waiting for
 * its timeout. */
static void reader_closes(struct ctx *x)
{
	struct channel out, in;
	if (pair(x, &out, &in))
		return;
	struct writer w = { .c = &out, .total = 256 * MiB, .chunk = MiB, .seed = 2 };
	pthread_create(&w.t, NULL, writer_main, &w);
	uint32_t crc;
	int rc = read_crc(&in, MiB, &crc);
	channel__close(&in);
	pthread_join(w.t, NULL);
	check(x, !rc && (w.rc == -EPIPE || w.rc == -ECONNRESET),
	      "the reader closes mid-transfer: the writer gets %s (%d), not its timeout",
	      strerror(-w.rc), w.rc);
	channel__close(&out);
}

/* The writer goes away mid-buffer: the reader sees an end in the middle;
 * and after exactly the bytes expected, a clean end. */
static void writer_closes(struct ctx *x)
{
	struct channel out, in;
	if (pair(x, &out, &in))
		return;
	uint8_t *buf = calloc(1, MiB);
	int wrc = channel__write_full(&out, buf, 100 * 1024);
	channel__close(&out);
	int rc = channel__read_full(&in, buf, MiB);
	check(x, !wrc && rc == -EPIPE, "the writer closes after 100 KiB of 1 MiB: the reader "
	      "gets an end mid-buffer (%d)", rc);
	channel__close(&in);
	free(buf);
}

static void refused(struct ctx *x)
{
	struct channel_listener l;
	struct err e = { 0 };
	char uri[CHANNEL_URI_MAX];
	snprintf(uri, sizeof(uri), "rdma:%s:0", x->addr);
	if (channel__listen(uri, &l, &e) < 0) {
		check(x, false, "listen on %s: %s", uri, e.msg);
		return;
	}
	snprintf(uri, sizeof(uri), "%s", l.local);
	channel__listener_close(&l);
	struct channel c;
	err__clear(&e);
	int rc = channel__connect(uri, GENEROUS_MS, &c, &e);
	check(x, rc == -ECONNREFUSED && strstr(e.msg, "cannot connect to") &&
	      strstr(e.msg, "refused"), "nobody listens: %s (%d)", e.msg, rc);
	err__clear(&e);
	snprintf(uri, sizeof(uri), "rdma:%s:0", x->addr);
	channel__listen(uri, &l, &e);
	struct channel in;
	rc = channel__accept(&l, 300, &in, &e);
	check(x, rc == -ETIMEDOUT && strstr(e.msg, "no connection on rdma:"), "accept with "
	      "nobody connecting: %s", e.msg);
	channel__listener_close(&l);
}

/* A peer that neither reads nor writes: both directions end in the
 * timeout; wait_readable says there is nothing. */
static void stalled(struct ctx *x)
{
	struct channel out, in;
	if (pair(x, &out, &in))
		return;
	channel__set_timeout(&in, SHORT_MS);
	uint8_t b;
	double t0 = now_s();
	int rc = channel__read_full(&in, &b, 1);
	check(x, rc == -ETIMEDOUT, "a silent writer: the read times out (%d) after %.2f s", rc,
	      now_s() - t0);
	check(x, channel__wait_readable(&in, 200) == 0, "wait_readable: nothing to read");
	channel__set_timeout(&out, SHORT_MS);
	struct writer w = { .c = &out, .total = 256 * MiB, .chunk = MiB, .seed = 3 };
	t0 = now_s();
	writer_main(&w);
	check(x, w.rc == -ETIMEDOUT, "a reader that never reads: the writer times out (%d) "
	      "after %.2f s", w.rc, now_s() - t0);
	/* it reads after all: what was queued arrives, in order */
	channel__set_timeout(&in, GENEROUS_MS);
	uint8_t *buf = malloc(MiB), *want = malloc(MiB);
	pattern(want, MiB, 3);
	rc = channel__read_full(&in, buf, MiB);
	check(x, !rc && !memcmp(buf, want, MiB), "the stalled reader then reads the first MiB "
	      "intact (%d)", rc);
	check(x, channel__wait_readable(&in, 1000) == 1, "wait_readable: more is queued");
	free(buf);
	free(want);
	channel__close(&out);
	channel__close(&in);
}

struct shooter {
	struct channel *c;
	pthread_t t;
};

static void *shoot(void *arg)
{
	struct shooter *s = arg;
	usleep(300 * 1000);
	channel__shutdown(s->c);
	return NULL;
}

/* channel__shutdown from another thread ends a read that waits: a
 * migration's abort. */
static void shutdown_other_thread(struct ctx *x)
{
	struct channel out, in;
	if (pair(x, &out, &in))
		return;
	struct shooter s = { .c = &in };
	pthread_create(&s.t, NULL, shoot, &s);
	uint8_t b;
	double t0 = now_s();
	int rc = channel__read_full(&in, &b, 1);
	pthread_join(s.t, NULL);
	check(x, rc == -ENODATA || rc == -EPIPE, "channel__shutdown from another thread ends a "
	      "waiting read (%d) after %.2f s", rc, now_s() - t0);
	rc = channel__write_full(&out, &b, 1);
	int rc2 = rc ? rc : channel__flush(&out);
	check(x, rc2 == -EPIPE || rc2 == -ECONNRESET, "the peer's writes fail (%d)", rc2);
	channel__close(&out);
	channel__close(&in);
}

/* ---- the fault-injecting wrapper around rdma: channels ------------------- */

static void wrap(struct ctx *x, struct channel *c, const char *spec)
{
	struct channel_fault_spec f;
	struct err e = { 0 };
	if (channel__fault_parse(spec, &f, &e) || channel__fault_wrap(c, &f, &e))
		check(x, false, "wrap %s: %s", spec, e.msg);
}

/* 2 MiB through a wrapper on the writer (wrap_out) or the reader. Returns
 * the reader's result; *wrc the writer's; got holds what arrived. */
static int faulty(struct ctx *x, const char *spec, bool wrap_out, size_t len, int timeout_ms,
		  uint8_t *got, int *wrc)
{
	struct channel out, in;
	if (pair(x, &out, &in))
		return -EIO;
	wrap(x, wrap_out ? &out : &in, spec);
	channel__set_timeout(&out, timeout_ms);
	channel__set_timeout(&in, timeout_ms);
	struct writer w = { .c = &out, .total = len, .chunk = len, .seed = 7 };
	pthread_create(&w.t, NULL, writer_main, &w);
	int rc = channel__read_full(&in, got, len);
	pthread_join(w.t, NULL);
	*wrc = w.rc;
	channel__close(&out);
	channel__close(&in);
	return rc;
}

static void faults(struct ctx *x)
{
	size_t len = 2 * MiB, n = 300001;
	uint8_t *want = malloc(len), *got = calloc(1, len);
	int wrc, rc;
	pattern(want, len, 7);

	rc = faulty(x, "cut@300001", true, len, GENEROUS_MS, got, &wrc);
	check(x, wrc == -EPIPE && rc == -EPIPE && !memcmp(got, want, n),
	      "cut@%zu on the writer: it gets EPIPE (%d), the reader the first %zu bytes intact "
	      "and an end mid-buffer (%d)", n, wrc, n, rc);
	memset(got, 0, len);
	rc = faulty(x, "cut@300001", false, len, GENEROUS_MS, got, &wrc);
	/* the writer may have queued everything into the reader's buffers */
	check(x, rc == -ECONNRESET && (wrc == -EPIPE || wrc == -ECONNRESET || !wrc) &&
	      !memcmp(got, want, n), "cut@%zu on the reader: it reads the first %zu bytes, then "
	      "ECONNRESET (%d); the writer: %d", n, n, rc, wrc);
	rc = faulty(x, "short:65536", true, len, GENEROUS_MS, got, &wrc);
	check(x, !rc && !wrc && !memcmp(got, want, len), "short:65536 on the writer: every "
	      "partial SEND arrives, in order (%d, %d)", wrc, rc);
	rc = faulty(x, "short:5", false, 256 * 1024, GENEROUS_MS, got, &wrc);
	check(x, !rc && !wrc && !memcmp(got, want, 256 * 1024), "short:5 on the reader: 256 KiB "
	      "read 1-5 bytes at a time, intact (%d, %d)", wrc, rc);
	rc = faulty(x, "corrupt@123457", true, len, GENEROUS_MS, got, &wrc);
	bool one = !rc && !wrc && (got[123457] ^ want[123457]) == 0xff;
	got[123457] ^= 0xff;
	check(x, one && !memcmp(got, want, len), "corrupt@123457 on the writer: exactly that byte "
	      "arrives flipped (%d, %d)", wrc, rc);
	memset(got, 0, len);
	rc = faulty(x, "stall@300001", true, len, SHORT_MS, got, &wrc);
	check(x, wrc == -ETIMEDOUT && rc == -ETIMEDOUT && !memcmp(got, want, n),
	      "stall@%zu on the writer: both ends time out (%d, %d), what went before intact",
	      n, wrc, rc);
	free(want);
	free(got);
}

static int all(const char *addr, size_t mib)
{
	struct ctx x = { .addr = addr };
	refused(&x);
	bulk(&x, mib);
	zero_copy(&x, mib < 64 ? mib : 64);
	reader_closes(&x);
	writer_closes(&x);
	stalled(&x);
	shutdown_other_thread(&x);
	faults(&x);
	printf("RDMA-TEST %s (%d failed)\n", x.failed ? "FAIL" : "PASS", x.failed);
	return x.failed ? 1 : 0;
}

/* ---- replay: a recorded stream, file: -> rdma: -> file: ------------------- */

static int copy(struct channel *from, struct channel *to, uint64_t *bytes)
{
	uint8_t *buf = malloc(MiB);
	int rc = 0;
	*bytes = 0;
	for (;;) {
		ssize_t n = channel__read_some(from, buf, MiB);
		if (n <= 0) {
			rc = (int)n;
			break;
		}
		rc = channel__write_full(to, buf, (size_t)n);
		if (rc)
			break;
		*bytes += (uint64_t)n;
	}
	free(buf);
	return rc;
}

struct sender {
	const char *in;
	struct channel *out;
	uint64_t bytes;
	int rc;
	struct err e;
	pthread_t t;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	char uri[CHANNEL_URI_MAX];
	struct channel_listener l;
	struct channel f;
	snprintf(uri, sizeof(uri), "file:%s", s->in);
	s->rc = channel__listen(uri, &l, &s->e);
	if (!s->rc) {
		s->rc = channel__accept(&l, 0, &f, &s->e);
		channel__listener_close(&l);
	}
	if (!s->rc) {
		s->rc = copy(&f, s->out, &s->bytes);
		if (!s->rc)
			s->rc = channel__flush(s->out);
		channel__close(&f);
	}
	channel__close(s->out);
	return NULL;
}

static int replay(const char *addr, const char *in, const char *out)
{
	struct ctx x = { .addr = addr };
	struct channel o, i, f;
	if (pair(&x, &o, &i))
		return 1;
	struct sender s = { .in = in, .out = &o };
	double t0 = now_s();
	pthread_create(&s.t, NULL, sender_main, &s);
	char uri[CHANNEL_URI_MAX];
	struct err e = { 0 };
	uint64_t bytes = 0;
	snprintf(uri, sizeof(uri), "file:%s", out);
	int rc = channel__connect(uri, 0, &f, &e);
	if (!rc) {
		rc = copy(&i, &f, &bytes);
		if (!rc)
			rc = channel__flush(&f);
		channel__close(&f);
	}
	channel__close(&i);
	pthread_join(s.t, NULL);
	double sec = now_s() - t0;
	check(&x, !rc && !s.rc && bytes == s.bytes, "replayed %s over rdma:%s into %s: sent %llu, "
	      "received %llu bytes (sender %d %s, receiver %d %s)", in, addr, out,
	      (unsigned long long)s.bytes, (unsigned long long)bytes, s.rc, s.e.msg, rc, e.msg);
	printf("REPLAY bytes=%llu seconds=%.2f mib_s=%.1f\n", (unsigned long long)bytes, sec,
	       (double)bytes / MiB / sec);
	return x.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && !strcmp(argv[1], "replay"))
		return replay(argv[2], argv[3], argv[4]);
	if (argc == 3)
		return all(argv[1], strtoul(argv[2], NULL, 10));
	fprintf(stderr, "usage: rdma-chantest ADDR MIB | rdma-chantest replay ADDR IN OUT\n");
	return 2;
}
