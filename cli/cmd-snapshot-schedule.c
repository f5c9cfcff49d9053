/* vmhop snapshot schedule: a small daemon taking checkpoints of one VM on a
 * timer, a full one every M and incrementals between, pruning its directory
 * to the newest N restorable chains after each success.
 *
 * One libuv loop: a timer for the ticks, uv_signal for SIGINT/SIGTERM, and
 * one connection to the VM's control socket kept open for the daemon's life
 * (so that the VM going away is seen at once: exit 1). The VM process writes
 * each file itself, atomically (FILE.tmp.XXXXXX, fsync, link); the daemon
 * only names, asks, logs and prunes. Naming and pruning decisions are in
 * snapshot/schedule-prune.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <uv.h>

#include "cli/commands.h"
#include "vmhop/schedule.h"
#include "vmhop/util.h"

#define WHO "vmhop snapshot schedule"
#define DEFAULT_FULL_EVERY 6
/* Far above any reply (snapshot-create's is a few hundred bytes). */
#define REPLY_MAX (1024 * 1024)

static const char usage_text[] =
	"usage: vmhop snapshot schedule --control PATH --dir DIR --every DURATION --keep N\n"
	"                               [--full-every M] [--live] [--compress none|zstd]\n"
	"                               [--disks include|external] [--once] [--json]\n"
	"\n"
	"Takes a checkpoint of the VM behind --control into DIR every DURATION (30s, 5m,\n"
	"1h, 500ms; the first one at once): a full one every M checkpoints (default 6,\n"
	"1: only full ones), incrementals based on the previous one between. Files are\n"
	"named NAME-YYYYmmddTHHMMSS.mmmZ-full.vmhop or -incr.vmhop (UTC; NAME is the VM's\n"
	"name, or \"vm\"). After each success, DIR is pruned to the newest N chains (a\n"
	"full checkpoint and the incrementals after it); other files are never touched.\n"
	"A failed checkpoint is logged and the next tick takes a full one.\n"
	"\n"
	"  --once    take one checkpoint (continuing DIR's newest chain, or full) and exit\n"
	"  --json    also print each result as a JSON line on stdout\n"
	"\n"
	"One line per result on stderr. Exit status: 0 after SIGINT/SIGTERM (the\n"
	"checkpoint being written is finished first) or a successful --once; 1 when the\n"
	"VM goes away or --once failed; 2 for bad usage. See vmhop-snapshot(1).\n";

struct sched_opts {
	const char *control;
	char *dir;			/* absolute: the VM process may live elsewhere */
	uint64_t every_ms;
	unsigned keep, full_every;
	bool live, compress, once, json;
	const char *disks;
};

enum sched_state { S_CONNECTING, S_STATUS, S_IDLE, S_BUSY, S_DONE };

struct write_req {
	uv_write_t req;
	char data[];
};

/* Everything the daemon knows; the loop's handles point back here. */
struct sched {
	struct sched_opts o;
	uv_loop_t loop;
	uv_pipe_t pipe;
	uv_connect_t connect_req;
	uv_timer_t tick;
	uv_signal_t sigint, sigterm;
	char *rbuf;
	size_t rlen, rcap;
	char name[SCHEDULE_NAME_MAX];
	enum sched_state state;
	bool stopping;
	bool force_full;		/* the last checkpoint failed */
	bool fell_back;			/* --once: the incremental was refused */
	int rc;
	int64_t last_ms;
	uint64_t next_id, want_id;
	/* The checkpoint in flight. */
	char file[PATH_MAX];		/* name within dir */
	char base[PATH_MAX];		/* name within dir, "" for a full one */
	enum schedule_kind kind;
};

static void on_tick(uv_timer_t *t);

static const char *kind_name(enum schedule_kind k)
{
	return k == SCHEDULE_FULL ? "full" : "incr";
}

static int64_t now_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "2026-11-26T01:50:33.123Z" */
static void iso_now(char out[32])
{
	int64_t ms = now_ms();
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm)) {
		snprintf(out, 32, "?");
		return;
	}
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static void logf_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_line(const char *fmt, ...)
{
	char ts[32];
	iso_now(ts);
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s ", ts);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fflush(stderr);
}

static void close_handle(uv_handle_t *h)
{
	if (h->loop && !uv_is_closing(h))
		uv_close(h, NULL);
}

/* Ends the loop: every handle closes, uv_run returns. */
static void finish(struct sched *s, int rc)
{
	if (s->state == S_DONE)
		return;
	s->state = S_DONE;
	s->rc = rc;
	close_handle((uv_handle_t *)&s->tick);
	close_handle((uv_handle_t *)&s->sigint);
	close_handle((uv_handle_t *)&s->sigterm);
	close_handle((uv_handle_t *)&s->pipe);
}

static void write_done(uv_write_t *req, int status)
{
	struct sched *s = req->handle->data;
	free(req);
	if (status < 0 && status != UV_ECANCELED && s->state != S_DONE) {
		logf_line("the VM went away: cannot send to %s: %s", s->o.control, uv_strerror(status));
		finish(s, 1);
	}
}

/* Sends one request line; takes req. */
static int send_request(struct sched *s, struct json_object *req)
{
	s->want_id = ++s->next_id;
	json_object_object_add(req, "id", json_object_new_uint64(s->want_id));
	const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len = text ? strlen(text) : 0;
	struct write_req *w = text ? malloc(sizeof(*w) + len + 1) : NULL;
	if (!w) {
		json_object_put(req);
		return UV_ENOMEM;
	}
	memcpy(w->data, text, len);
	w->data[len] = '\n';
	json_object_put(req);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)len + 1);
	int r = uv_write(&w->req, (uv_stream_t *)&s->pipe, &b, 1, write_done);
	if (r)
		free(w);
	return r;
}

/* Reads DIR's scheduled checkpoints of this VM (regular files only). */
static int scan_dir(struct sched *s, struct schedule_set *set, char *why, size_t whylen)
{
	DIR *d = opendir(s->o.dir);
	if (!d) {
		snprintf(why, whylen, "cannot read %s: %s", s->o.dir, strerror(errno));
		return -1;
	}
	int r = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno) {
				snprintf(why, whylen, "cannot read %s: %s", s->o.dir, strerror(errno));
				r = -1;
			}
			break;
		}
		int64_t ms;
		enum schedule_kind k;
		struct stat st;
		if (schedule__parse_name(s->name, de->d_name, &ms, &k) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (schedule__set_add(set, s->name, de->d_name) < 0) {
			snprintf(why, whylen, "out of memory");
			r = -1;
			break;
		}
	}
	if (closedir(d) < 0 && !r) {
		snprintf(why, whylen, "cannot read %s: %s", s->o.dir, strerror(errno));
		r = -1;
	}
	schedule__set_sort(set);
	return r;
}

static void log_failure(struct sched *s, const char *why)
{
	if (!s->file[0])
		logf_line("FAILED checkpoint: %s", why);
	else if (s->kind == SCHEDULE_INCR)
		logf_line("FAILED %s (incr, base %s): %s; the next checkpoint is full", s->file, s->base, why);
	else
		logf_line("FAILED %s (full): %s", s->file, why);
	if (s->o.json) {
		struct json_object *o = json_object_new_object();
		char ts[32], path[PATH_MAX + 1];
		iso_now(ts);
		snprintf(path, sizeof(path), "%s/%s", s->o.dir, s->file);
		if (o) {
			json_object_object_add(o, "time", json_object_new_string(ts));
			json_object_object_add(o, "ok", json_object_new_boolean(false));
			json_object_object_add(o, "file", json_object_new_string(path));
			json_object_object_add(o, "kind", json_object_new_string(kind_name(s->kind)));
			json_object_object_add(o, "error", json_object_new_string(why));
			printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								    JSON_C_TO_STRING_NOSLASHESCAPE));
			fflush(stdout);
			json_object_put(o);
		}
	}
	s->force_full = true;
}

static void take_checkpoint(struct sched *s)
{
	struct schedule_set set = { 0 };
	char why[PATH_MAX + 128];
	s->file[0] = s->base[0] = '\0';
	s->kind = SCHEDULE_FULL;
	if (scan_dir(s, &set, why, sizeof(why)) < 0) {
		log_failure(s, why);
		schedule__set_free(&set);
		if (s->o.once)
			finish(s, 1);
		return;
	}
	const struct schedule_file *base;
	s->kind = schedule__next(&set, s->o.full_every, s->force_full, &base);
	/* Names sort by time even if the clock steps back or two runs fall in
	 * one millisecond. */
	int64_t ms = now_ms();
	if (s->last_ms >= ms)
		ms = s->last_ms + 1;
	if (set.n && set.files[set.n - 1].ms >= ms)
		ms = set.files[set.n - 1].ms + 1;
	int r = schedule__format_name(s->name, ms, s->kind, s->file, sizeof(s->file));
	if (!r && base)
		snprintf(s->base, sizeof(s->base), "%s", base->name);
	schedule__set_free(&set);
	if (r) {
		log_failure(s, "cannot name the checkpoint");
		if (s->o.once)
			finish(s, 1);
		return;
	}
	s->last_ms = ms;

	char path[PATH_MAX * 2 + 2], bpath[PATH_MAX * 2 + 2];
	snprintf(path, sizeof(path), "%s/%s", s->o.dir, s->file);
	struct json_object *req = json_object_new_object(), *args = json_object_new_object();
	if (!req || !args) {
		json_object_put(req);
		json_object_put(args);
		log_failure(s, "out of memory");
		finish(s, 1);
		return;
	}
	json_object_object_add(req, "execute", json_object_new_string("snapshot-create"));
	json_object_object_add(args, "path", json_object_new_string(path));
	if (s->o.compress)
		json_object_object_add(args, "compress", json_object_new_boolean(true));
	if (s->o.live)
		json_object_object_add(args, "live", json_object_new_boolean(true));
	if (s->o.disks)
		json_object_object_add(args, "disks", json_object_new_string(s->o.disks));
	if (s->kind == SCHEDULE_INCR) {
		snprintf(bpath, sizeof(bpath), "%s/%s", s->o.dir, s->base);
		json_object_object_add(args, "base", json_object_new_string(bpath));
	}
	json_object_object_add(req, "arguments", args);
	r = send_request(s, req);
	if (r) {
		logf_line("the VM went away: cannot send to %s: %s", s->o.control, uv_strerror(r));
		finish(s, 1);
		return;
	}
	s->state = S_BUSY;
}

/* After a success: deletes what no kept chain needs. */
static void prune(struct sched *s, size_t *kept, size_t *deleted, struct json_object *names)
{
	struct schedule_set set = { 0 };
	char why[PATH_MAX + 128];
	*kept = *deleted = 0;
	if (scan_dir(s, &set, why, sizeof(why)) < 0) {
		logf_line("not pruning: %s", why);
		schedule__set_free(&set);
		return;
	}
	bool *del = calloc(set.n ? set.n : 1, sizeof(*del));
	if (!del) {
		logf_line("not pruning: out of memory");
		schedule__set_free(&set);
		return;
	}
	schedule__prune(&set, s->o.keep, del, kept);
	int dfd = open(s->o.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		logf_line("not pruning: cannot open %s: %s", s->o.dir, strerror(errno));
	for (size_t i = 0; dfd >= 0 && i < set.n; i++) {
		if (!del[i])
			continue;
		if (unlinkat(dfd, set.files[i].name, 0) < 0) {
			if (errno != ENOENT)
				logf_line("cannot delete %s/%s: %s", s->o.dir, set.files[i].name,
					  strerror(errno));
			continue;
		}
		(*deleted)++;
		if (names)
			json_object_array_add(names, json_object_new_string(set.files[i].name));
	}
	if (dfd >= 0 && *deleted && fsync(dfd) < 0)
		logf_line("syncing %s: %s", s->o.dir, strerror(errno));
	if (dfd >= 0 && close(dfd) < 0)
		logf_line("closing %s: %s", s->o.dir, strerror(errno));
	free(del);
	schedule__set_free(&set);
}

static double num(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static void checkpoint_done(struct sched *s, struct json_object *ret)
{
	s->force_full = false;
	struct json_object *o = s->o.json ? json_object_new_object() : NULL;
	struct json_object *names = o ? json_object_new_array() : NULL;
	size_t kept, deleted;
	prune(s, &kept, &deleted, names);
	uint64_t bytes = 0;
	struct json_object *v;
	if (json_object_object_get_ex(ret, "bytes", &v))
		bytes = (uint64_t)json_object_get_int64(v);
	double pause = num(ret, "pause_ms"), total = num(ret, "total_ms");
	logf_line("checkpoint %s kind=%s%s%s bytes=%llu pause_ms=%.1f total_ms=%.1f chains=%zu pruned=%zu",
		  s->file, kind_name(s->kind), s->base[0] ? " base=" : "", s->base,
		  (unsigned long long)bytes, pause, total, kept, deleted);
	if (!o) {
		json_object_put(names);
		return;
	}
	char ts[32], path[PATH_MAX + 1];
	iso_now(ts);
	snprintf(path, sizeof(path), "%s/%s", s->o.dir, s->file);
	json_object_object_add(o, "time", json_object_new_string(ts));
	json_object_object_add(o, "ok", json_object_new_boolean(true));
	json_object_object_add(o, "file", json_object_new_string(path));
	json_object_object_add(o, "kind", json_object_new_string(kind_name(s->kind)));
	if (s->base[0]) {
		snprintf(path, sizeof(path), "%s/%s", s->o.dir, s->base);
		json_object_object_add(o, "base", json_object_new_string(path));
	} else {
		json_object_object_add(o, "base", NULL);
	}
	json_object_object_add(o, "bytes", json_object_new_uint64(bytes));
	json_object_object_add(o, "pause_ms", json_object_new_double(pause));
	json_object_object_add(o, "total_ms", json_object_new_double(total));
	json_object_object_add(o, "chains", json_object_new_uint64(kept));
	json_object_object_add(o, "pruned", names);
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
}

static void on_status(struct sched *s, struct json_object *ret)
{
	struct json_object *v;
	const char *name = ret && json_object_object_get_ex(ret, "name", &v) ?
		json_object_get_string(v) : NULL;
	schedule__vm_name(name, s->name);
	logf_line("scheduling %s/%s-*.vmhop: every %llu ms, keep %u chains, a full checkpoint every %u%s",
		  s->o.dir, s->name, (unsigned long long)s->o.every_ms, s->o.keep, s->o.full_every,
		  s->o.once ? " (once)" : "");
	s->state = S_IDLE;
	/* The first checkpoint now, the next ones every DURATION after it. */
	int r = s->o.once ? 0 : uv_timer_start(&s->tick, on_tick, s->o.every_ms, s->o.every_ms);
	if (r) {
		logf_line("timer: %s", uv_strerror(r));
		finish(s, 1);
		return;
	}
	take_checkpoint(s);
}

static void on_result(struct sched *s, struct json_object *ret, struct json_object *err)
{
	s->state = S_IDLE;
	if (ret) {
		checkpoint_done(s, ret);
		if (s->o.once)
			finish(s, 0);
	} else {
		struct json_object *v = NULL;
		const char *desc = err && json_object_object_get_ex(err, "desc", &v) ?
			json_object_get_string(v) : "(no description)";
		log_failure(s, desc);
		if (s->o.once && s->kind == SCHEDULE_INCR && !s->fell_back) {
			/* A timer-driven --once has no next tick: a refused
			 * incremental (the VM restarted, the chain's last file
			 * is not its last checkpoint) falls back at once. */
			s->fell_back = true;
			take_checkpoint(s);
			return;
		}
		if (s->o.once)
			finish(s, 1);
	}
	if (s->state == S_IDLE && s->stopping)
		finish(s, 0);
}

static void handle_line(struct sched *s, const char *line)
{
	struct json_object *reply = json_tokener_parse(line);
	struct json_object *ret = NULL, *err = NULL, *id = NULL;
	if (!json_object_is_type(reply, json_type_object) ||
	    (!json_object_object_get_ex(reply, "return", &ret) &&
	     !json_object_object_get_ex(reply, "error", &err))) {
		logf_line("%s sent a malformed reply: %.200s", s->o.control, line);
		json_object_put(reply);
		return;
	}
	if (!json_object_object_get_ex(reply, "id", &id) ||
	    (uint64_t)json_object_get_int64(id) != s->want_id) {
		json_object_put(reply);	/* not an answer to our request */
		return;
	}
	if (s->state == S_STATUS) {
		if (err) {
			struct json_object *v;
			logf_line("query-status failed: %s", json_object_object_get_ex(err, "desc", &v) ?
				  json_object_get_string(v) : "(no description)");
			finish(s, 1);
		} else {
			on_status(s, ret);
		}
	} else if (s->state == S_BUSY) {
		on_result(s, ret, err);
	}
	json_object_put(reply);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct sched *s = h->data;
	(void)hint;
	if (s->rcap - s->rlen < 4096 && s->rcap < REPLY_MAX) {
		size_t cap = s->rcap ? s->rcap * 2 : 8192;
		char *nb = realloc(s->rbuf, cap);
		if (nb) {
			s->rbuf = nb;
			s->rcap = cap;
		}
	}
	*buf = uv_buf_init(s->rbuf ? s->rbuf + s->rlen : NULL,
			   s->rbuf ? (unsigned)(s->rcap - s->rlen) : 0);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct sched *s = st->data;
	(void)buf;
	if (nread == 0 || s->state == S_DONE)
		return;
	if (nread < 0) {
		if (s->state == S_BUSY)
			logf_line("the VM went away while writing %s (%s): exiting", s->file,
				  nread == UV_EOF ? "control socket closed" : uv_strerror((int)nread));
		else
			logf_line("the VM went away (%s): exiting",
				  nread == UV_EOF ? "control socket closed" : uv_strerror((int)nread));
		finish(s, 1);
		return;
	}
	s->rlen += (size_t)nread;
	char *start = s->rbuf, *nl;
	while (s->state != S_DONE && (nl = memchr(start, '\n', s->rlen - (size_t)(start - s->rbuf)))) {
		*nl = '\0';
		handle_line(s, start);
		start = nl + 1;
	}
	if (s->state == S_DONE)
		return;
	size_t rest = s->rlen - (size_t)(start - s->rbuf);
	memmove(s->rbuf, start, rest);
	s->rlen = rest;
	if (s->rlen == s->rcap) {
		logf_line("%s sent a reply larger than %d bytes", s->o.control, REPLY_MAX);
		finish(s, 1);
	}
}

static void on_connect(uv_connect_t *req, int status)
{
	struct sched *s = req->data;
	if (s->state == S_DONE)
		return;
	if (status < 0) {
		logf_line("cannot connect to %s: %s", s->o.control, uv_strerror(status));
		finish(s, 1);
		return;
	}
	int r = uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
	struct json_object *q = r ? NULL : json_object_new_object();
	if (q) {
		json_object_object_add(q, "execute", json_object_new_string("query-status"));
		r = send_request(s, q);
	}
	if (r || (!q)) {
		logf_line("cannot talk to %s: %s", s->o.control, r ? uv_strerror(r) : "out of memory");
		finish(s, 1);
		return;
	}
	s->state = S_STATUS;
}

static void on_tick(uv_timer_t *t)
{
	struct sched *s = t->data;
	if (s->state == S_BUSY) {
		if (!s->stopping)
			logf_line("tick skipped: %s is still being written", s->file);
		return;
	}
	if (s->state == S_IDLE && !s->stopping)
		take_checkpoint(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct sched *s = h->data;
	if (s->state == S_BUSY) {
		if (!s->stopping)
			logf_line("%s: stopping once %s is written", strsignal(signum), s->file);
		s->stopping = true;
		return;
	}
	logf_line("%s: stopping", strsignal(signum));
	finish(s, 0);
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, WHO ": ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see vmhop snapshot schedule --help)\n");
	return 2;
}

/* 0, 2 after a usage error (reported), or 1 after help (*help set). */
static int parse_opts(int argc, char **argv, struct sched_opts *o, bool *help)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' }, { "dir", required_argument, NULL, 'D' },
		{ "every", required_argument, NULL, 'e' }, { "keep", required_argument, NULL, 'k' },
		{ "full-every", required_argument, NULL, 'f' }, { "live", no_argument, NULL, 'l' },
		{ "compress", required_argument, NULL, 'z' }, { "disks", required_argument, NULL, 'd' },
		{ "once", no_argument, NULL, '1' }, { "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool have_every = false, have_keep = false;
	uint64_t v;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o->control = optarg; break;
		case 'D': dir = optarg; break;
		case 'l': o->live = true; break;
		case '1': o->once = true; break;
		case 'j': o->json = true; break;
		case 'h': *help = true; return 0;
		case 'e':
			if (schedule__parse_duration(optarg, &o->every_ms))
				return usage_error("--every %s: expected a duration such as 30s, 5m, 1h "
						   "(at least 100ms)", optarg);
			have_every = true;
			break;
		case 'k':
			if (util__parse_uint(optarg, 1, 100000, &v))
				return usage_error("--keep %s: expected a number of chains, 1 or more", optarg);
			o->keep = (unsigned)v;
			have_keep = true;
			break;
		case 'f':
			if (util__parse_uint(optarg, 1, 100000, &v))
				return usage_error("--full-every %s: expected a number of checkpoints, "
						   "1 or more", optarg);
			o->full_every = (unsigned)v;
			break;
		case 'z':
			if (strcmp(optarg, "none") && strcmp(optarg, "zstd"))
				return usage_error("--compress %s: expected none or zstd", optarg);
			o->compress = !strcmp(optarg, "zstd");
			break;
		case 'd':
			if (strcmp(optarg, "include") && strcmp(optarg, "external"))
				return usage_error("--disks %s: expected include or external", optarg);
			o->disks = optarg;
			break;
		case ':':
			return usage_error("%s needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!o->control || !dir)
		return usage_error("%s", "--control and --dir are required");
	if (!have_keep)
		return usage_error("%s", "--keep N is required");
	if (!have_every && !o->once)
		return usage_error("%s", "--every DURATION is required (or --once)");
	o->dir = realpath(dir, NULL);
	struct stat st;
	if (!o->dir || stat(o->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, WHO ": --dir %s: %s\n", dir, o->dir ? "not a directory" : strerror(errno));
		free(o->dir);
		o->dir = NULL;
		return 2;
	}
	/* The VM takes paths of up to 4096 bytes: DIR/NAME-TS-KIND.vmhop. */
	if (strlen(o->dir) + 1 + SCHEDULE_NAME_MAX + SCHEDULE_SUFFIX_LEN >= 4096) {
		fprintf(stderr, WHO ": --dir %s: the path is too long\n", o->dir);
		free(o->dir);
		o->dir = NULL;
		return 2;
	}
	return 0;
}

static int watch_signal(struct sched *s, uv_signal_t *h, int signum)
{
	int r = uv_signal_init(&s->loop, h);
	if (!r) {
		h->data = s;
		r = uv_signal_start(h, on_signal, signum);
	}
	return r;
}

int cmd_snapshot_schedule(int argc, char **argv)
{
	struct sched *s = calloc(1, sizeof(*s));
	if (!s) {
		fprintf(stderr, WHO ": out of memory\n");
		return 1;
	}
	s->o.full_every = DEFAULT_FULL_EVERY;
	bool help = false;
	int rc = parse_opts(argc, argv, &s->o, &help);
	if (rc || help) {
		if (help)
			fputs(usage_text, stdout);
		free(s->o.dir);
		free(s);
		return rc;
	}
	int r = uv_loop_init(&s->loop);
	if (r) {
		fprintf(stderr, WHO ": event loop: %s\n", uv_strerror(r));
		free(s->o.dir);
		free(s);
		return 1;
	}
	/* A VM that hangs up must give an error on write, not kill us. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		r = UV_EINVAL;
	if (!r)
		r = watch_signal(s, &s->sigint, SIGINT);
	if (!r)
		r = watch_signal(s, &s->sigterm, SIGTERM);
	if (!r && !(r = uv_timer_init(&s->loop, &s->tick)))
		s->tick.data = s;
	if (!r && !(r = uv_pipe_init(&s->loop, &s->pipe, 0)))
		s->pipe.data = s;
	if (r) {
		fprintf(stderr, WHO ": event loop: %s\n", uv_strerror(r));
		finish(s, 1);
	} else {
		s->connect_req.data = s;
		uv_pipe_connect(&s->connect_req, &s->pipe, s->o.control, on_connect);
	}
	uv_run(&s->loop, UV_RUN_DEFAULT);
	/* Every handle is closed by finish(); a second run lets their close
	 * callbacks run if the first ended early. */
	finish(s, s->rc);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	r = uv_loop_close(&s->loop);
	if (r)
		fprintf(stderr, WHO ": event loop: %s\n", uv_strerror(r));
	rc = s->rc;
	free(s->rbuf);
	free(s->o.dir);
	free(s);
	return rc;
}
