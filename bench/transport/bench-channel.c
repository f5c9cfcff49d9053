/* bench-channel: throughput of the channel layer alone over loopback, tcp:
 * beside tls: (mutual, the certificates of contrib/make-test-ca.sh in DIR),
 * with the migration engine's write size (256 KiB) and the stream reader's
 * read size, and the CPU time each end spent. Not part of `make check`; the
 * VM-level numbers are bench/transport/run.py's.
 *   bench-channel --pki DIR [--size MIB|SIZE] [--runs N] */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "vmhop/channel.h"
#include "vmhop/util.h"

#define WRITE_SIZE (256 * 1024)
#define READ_SIZE (1024 * 1024)

struct opts {
	uint64_t size;
	int runs;
	char ca[512], cert[2][512], key[2][512];	/* [0] source, [1] destination */
};

struct side {
	const struct opts *o;
	bool tls;
	char uri[CHANNEL_URI_MAX];
	uint8_t *buf;
	double cpu_s;		/* this thread's CPU time */
	int rc;
	struct err e;
};

static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct channel_tls_opts tls_opts(const struct opts *o, int dest)
{
	return (struct channel_tls_opts){ .ca = o->ca, .cert = o->cert[dest],
					  .key = o->key[dest], .name = "localhost" };
}

static void *sender(void *arg)
{
	struct side *s = arg;
	struct channel c;
	struct channel_tls_opts t = tls_opts(s->o, 0);
	s->rc = s->tls ? channel__connect_tls(s->uri, 10000, &t, &c, &s->e)
		       : channel__connect(s->uri, 10000, &c, &s->e);
	if (s->rc)
		return NULL;
	double t0 = thread_cpu();
	for (uint64_t off = 0; off < s->o->size && !s->rc; off += WRITE_SIZE)
		s->rc = channel__write_full(&c, s->buf + off % (64 * MiB), WRITE_SIZE);
	if (!s->rc)
		s->rc = channel__flush(&c);
	s->cpu_s = thread_cpu() - t0;
	uint8_t ack;
	if (!s->rc)
		s->rc = channel__read_full(&c, &ack, 1);
	channel__close(&c);
	return NULL;
}

static int one_run(const struct opts *o, bool tls, uint8_t *src, double *mibs,
		   double *send_cpu, double *recv_cpu)
{
	struct channel_listener l;
	struct err e = { 0 };
	struct channel_tls_opts t = tls_opts(o, 1);
	const char *uri = tls ? "tls:127.0.0.1:0" : "tcp:127.0.0.1:0";
	int rc = tls ? channel__listen_tls(uri, &t, &l, &e) : channel__listen(uri, &l, &e);
	if (rc) {
		fprintf(stderr, "bench-channel: %s\n", e.msg);
		return rc;
	}
	struct side s = { .o = o, .tls = tls, .buf = src };
	snprintf(s.uri, sizeof(s.uri), "%s", l.local);
	pthread_t th;
	if (pthread_create(&th, NULL, sender, &s)) {
		channel__listener_close(&l);
		return -EAGAIN;
	}
	struct channel c;
	rc = channel__accept(&l, 10000, &c, &e);
	uint8_t *buf = malloc(READ_SIZE);
	uint64_t got = 0;
	double t0 = (double)util__now_ns() / 1e9, c0 = thread_cpu();
	while (!rc && buf && got < o->size) {
		ssize_t n = channel__read_some(&c, buf, READ_SIZE);
		if (n <= 0)
			rc = n ? (int)n : -EPIPE;
		else
			got += (uint64_t)n;
	}
	double wall = (double)util__now_ns() / 1e9 - t0;
	*recv_cpu = thread_cpu() - c0;
	if (!rc)
		rc = channel__write_full(&c, "k", 1);
	pthread_join(th, NULL);
	if (got)
		channel__close(&c);
	channel__listener_close(&l);
	free(buf);
	if (rc || s.rc) {
		fprintf(stderr, "bench-channel: %s run failed: %s %s\n", tls ? "tls" : "tcp",
			strerror(-(rc ? rc : s.rc)), s.e.msg);
		return rc ? rc : s.rc;
	}
	*mibs = (double)o->size / MiB / wall;
	*send_cpu = s.cpu_s;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	struct opts o = { .size = GiB, .runs = 5 };
	const char *pki = NULL;
	static const struct option lo[] = { { "pki", 1, NULL, 'p' }, { "size", 1, NULL, 's' },
					    { "runs", 1, NULL, 'r' }, { 0 } };
	for (int ch; (ch = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
		if (ch == 'p')
			pki = optarg;
		else if (ch == 's') {
			/* A bare number is MiB; "1G" and the like are sizes. */
			if (util__parse_size(optarg, &o.size) < 0)
				o.size = 0;
			else if (optarg[strspn(optarg, "0123456789")] == '\0')
				o.size *= MiB;
		} else if (ch == 'r')
			o.runs = atoi(optarg);
		else
			return 2;
	}
	if (!pki || !o.size || o.size % WRITE_SIZE || o.runs < 1 || o.runs > 50) {
		fprintf(stderr, "usage: bench-channel --pki DIR [--size MIB|SIZE (a multiple of 256K)] [--runs N]\n");
		return 2;
	}
	snprintf(o.ca, sizeof(o.ca), "%s/ca.pem", pki);
	snprintf(o.cert[0], sizeof(o.cert[0]), "%s/src.pem", pki);
	snprintf(o.key[0], sizeof(o.key[0]), "%s/src.key", pki);
	snprintf(o.cert[1], sizeof(o.cert[1]), "%s/dest.pem", pki);
	snprintf(o.key[1], sizeof(o.key[1]), "%s/dest.key", pki);
	uint8_t *src = malloc(64 * MiB);
	if (!src)
		return 1;
	uint32_t x = 1;
	for (size_t i = 0; i < 64 * MiB; i++) {	/* incompressible, like guest data */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		src[i] = (uint8_t)x;
	}
	double r[2][50], sc[2][50], rc[2][50];
	for (int i = 0; i < o.runs; i++)
		for (int k = 0; k < 2; k++)	/* alternate: load hits both alike */
			if (one_run(&o, k, src, &r[k][i], &sc[k][i], &rc[k][i]))
				return 1;
	double med[2], scpu[2], rcpu[2];
	for (int k = 0; k < 2; k++) {
		qsort(r[k], (size_t)o.runs, sizeof(double), cmp_double);
		qsort(sc[k], (size_t)o.runs, sizeof(double), cmp_double);
		qsort(rc[k], (size_t)o.runs, sizeof(double), cmp_double);
		med[k] = r[k][o.runs / 2];
		scpu[k] = sc[k][o.runs / 2];
		rcpu[k] = rc[k][o.runs / 2];
		printf("%s: %.0f MiB/s (min %.0f max %.0f), CPU s/GiB send %.2f recv %.2f\n",
		       k ? "tls" : "tcp", med[k], r[k][0], r[k][o.runs - 1],
		       scpu[k] * GiB / (double)o.size, rcpu[k] * GiB / (double)o.size);
	}
	double load[1];
	getloadavg(load, 1);
	printf("tls/tcp %.2f (load %.1f, %d runs of %llu MiB)\n", med[1] / med[0], load[0],
	       o.runs, (unsigned long long)(o.size / MiB));
	free(src);
	return 0;
}
