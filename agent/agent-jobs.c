/* The agent's jobs: a `vmhop migrate-recv` child waiting for (then running)
 * an incoming VM, or a `vmhop migrate-send` child moving a local VM away.
 * Their stderr goes to a log in the run directory; a receiver's is read on
 * the way, for the address it listens on and the moment the guest runs. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "vmhop/util.h"

#define MAX_ARGS 48

const char *agent__job_state_name(enum job_state s)
{
	static const char *const names[] = {
		[JOB_STARTING] = "starting", [JOB_WAITING] = "waiting", [JOB_ACTIVE] = "active",
		[JOB_RUNNING] = "running", [JOB_COMPLETED] = "completed", [JOB_FAILED] = "failed",
		[JOB_ENDED] = "ended",
	};
	return names[s];
}

static bool finished(const struct agent_job *j)
{
	return j->state == JOB_COMPLETED || j->state == JOB_FAILED || j->state == JOB_ENDED;
}

struct agent_job *agent__job_find(struct agent *a, unsigned id)
{
	for (size_t i = 0; id && i < AGENT_MAX_JOBS; i++)
		if (a->jobs[i].id == id)
			return &a->jobs[i];
	return NULL;
}

/* A slot: a free one, else the oldest finished; never one whose handles
 * libuv is still closing. */
static struct agent_job *new_job(struct agent *a, struct err *e)
{
	struct agent_job *best = NULL;
	for (size_t i = 0; i < AGENT_MAX_JOBS; i++) {
		struct agent_job *j = &a->jobs[i];
		if (j->open_handles)
			continue;
		if (!j->id)
			return j;
		if (finished(j) && !j->open_handles && (!best || j->id < best->id))
			best = j;
	}
	if (!best)
		err__set(e, EBUSY, "%d jobs under way: try again later", AGENT_MAX_JOBS);
	else if (best->summary)
		json_object_put(best->summary);
	return best;
}

static void finish(struct agent_job *j, enum job_state st, const char *why)
{
	if (finished(j))
		return;
	j->state = st;
	j->ended_ns = util__now_ns();
	if (why && !j->error[0])
		snprintf(j->error, sizeof(j->error), "%s", why);
	agent__log("job %u (%s %s): %s%s%s", j->id, j->kind == JOB_INCOMING ? "incoming" : "outgoing",
		   j->vm, agent__job_state_name(st), j->error[0] ? ": " : "", j->error);
}

/* The prepare-incoming caller learns the address, or why there is none. */
static void answer_waiter(struct agent_job *j)
{
	struct agent_conn *c = j->waiter;
	if (!c)
		return;
	j->waiter = NULL;
	if (j->state == JOB_WAITING) {
		json_object *r = json_object_new_object();
		json_object_object_add(r, "id", json_object_new_int64(j->id));
		json_object_object_add(r, "uri", json_object_new_string(j->uri));
		json_object_object_add(r, "control", json_object_new_string(j->control));
		agent__reply(c, j->waiter_id, r);
	} else {
		agent__reply_error(c, j->waiter_id, "GenericError", "the receiver for %s did not start: %s",
				   j->vm, j->error[0] ? j->error : "it ended");
	}
	json_object_put(j->waiter_id);
	j->waiter_id = NULL;
	agent__conn_resume(c);
}

void agent__jobs_conn_gone(struct agent *a, struct agent_conn *c)
{
	for (size_t i = 0; i < AGENT_MAX_JOBS; i++)
		if (a->jobs[i].waiter == c) {
			a->jobs[i].waiter = NULL;
			json_object_put(a->jobs[i].waiter_id);
			a->jobs[i].waiter_id = NULL;
		}
}

static void handle_closed(uv_handle_t *h)
{
	struct agent_job *j = h->data;
	j->open_handles--;
	if (!j->open_handles && j->logfd >= 0) {
		close(j->logfd);
		j->logfd = -1;
	}
}

static void close_handle(struct agent_job *j, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, handle_closed);
}

/* A receiver's stderr line: what it says about its progress. */
static void receiver_line(struct agent_job *j, const char *line)
{
	const char *p;
	if (j->state == JOB_STARTING && (p = strstr(line, "listening on "))) {
		snprintf(j->uri, sizeof(j->uri), "%s", p + strlen("listening on "));
		j->uri[strcspn(j->uri, " \t")] = '\0';
		j->state = JOB_WAITING;
		answer_waiter(j);
	} else if (strstr(line, "received the guest from ")) {
		j->state = JOB_RUNNING;
		agent__log("job %u (incoming %s): the guest runs here", j->id, j->vm);
	} else if (!finished(j) && (p = strstr(line, "migrate-recv: ")) && j->state != JOB_RUNNING &&
		   !strstr(line, "answered a pre-flight") && !strstr(line, "listening on") &&
		   !strstr(line, "warning:")) {
		snprintf(j->error, sizeof(j->error), "%s", p + strlen("migrate-recv: "));
	}
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct agent_job *j = h->data;
	(void)hint;
	/* One buffer per job: each read callback is done with it before the
	 * next read of either pipe. */
	*buf = uv_buf_init(j->readbuf, sizeof(j->readbuf));
}

static void err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct agent_job *j = s->data;
	if (n < 0) {
		close_handle(j, (uv_handle_t *)s);
		return;
	}
	if (j->logfd >= 0 && n > 0 && util__write_all(j->logfd, buf->base, (size_t)n))
		agent__log("job %u: cannot write %s", j->id, j->log);
	for (ssize_t i = 0; i < n; i++) {
		char ch = buf->base[i];
		if (ch == '\n' || j->errlen + 1 >= sizeof(j->errline)) {
			j->errline[j->errlen] = '\0';
			if (j->kind == JOB_INCOMING)
				receiver_line(j, j->errline);
			else if (j->errline[0])
				snprintf(j->error, sizeof(j->error), "%.*s", (int)sizeof(j->error) - 1, j->errline);
			j->errlen = 0;
		} else {
			j->errline[j->errlen++] = ch;
		}
	}
}

static void out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct agent_job *j = s->data;
	if (n < 0) {
		close_handle(j, (uv_handle_t *)s);
		return;
	}
	size_t room = sizeof(j->outbuf) - 1 - j->outlen;
	size_t take = MIN((size_t)n, room);
	memcpy(j->outbuf + j->outlen, buf->base, take);
	j->outlen += take;
	j->outbuf[j->outlen] = '\0';
}

/* migrate-send --json: the last line of stdout is the summary. */
static void parse_summary(struct agent_job *j)
{
	char *end = j->outbuf + j->outlen;
	while (end > j->outbuf && (end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	char *last = strrchr(j->outbuf, '\n');
	last = last ? last + 1 : j->outbuf;
	if (!*last)
		return;
	json_object *o = json_tokener_parse(last);
	if (o && json_object_is_type(o, json_type_object))
		j->summary = o;
	else if (o)
		json_object_put(o);
}

static void proc_exit(uv_process_t *p, int64_t status, int sig)
{
	struct agent_job *j = p->data;
	j->proc_live = false;
	char why[128];
	if (sig)
		snprintf(why, sizeof(why), "%s was killed by signal %d",
			 j->kind == JOB_INCOMING ? "migrate-recv" : "migrate-send", sig);
	else
		snprintf(why, sizeof(why), "%s exited with status %" PRId64,
			 j->kind == JOB_INCOMING ? "migrate-recv" : "migrate-send", status);
	if (j->kind == JOB_OUTGOING) {
		parse_summary(j);
		json_object *err = NULL;
		if (j->summary && json_object_object_get_ex(j->summary, "error", &err) &&
		    json_object_get_string(err)[0])
			snprintf(j->error, sizeof(j->error), "%s", json_object_get_string(err));
		finish(j, !sig && status == 0 ? JOB_COMPLETED : JOB_FAILED, why);
	} else if (j->state == JOB_RUNNING) {
		finish(j, JOB_ENDED, NULL);
	} else {
		finish(j, JOB_FAILED, why);
		answer_waiter(j);
	}
	close_handle(j, (uv_handle_t *)p);
}

static int spawn(struct agent *a, struct agent_job *j, char **argv, struct err *e)
{
	j->logfd = open(j->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (j->logfd < 0)
		return err__setsys(e, errno, "cannot open the job log %s", j->log);
	uv_pipe_init(a->loop, &j->out, 0);
	uv_pipe_init(a->loop, &j->err, 0);
	j->out.data = j->err.data = j->proc.data = j;
	j->open_handles = 2;
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE },
		{ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&j->out },
		{ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&j->err },
	};
	uv_process_options_t po = {
		.exit_cb = proc_exit, .file = a->o.vmhop, .args = argv,
		.stdio = stdio, .stdio_count = 3,
	};
	int r = uv_spawn(a->loop, &j->proc, &po);
	if (r) {
		/* uv_spawn leaves the process handle to be closed too. */
		j->open_handles++;
		close_handle(j, (uv_handle_t *)&j->proc);
		close_handle(j, (uv_handle_t *)&j->out);
		close_handle(j, (uv_handle_t *)&j->err);
		return err__set(e, -r, "cannot start %s: %s", a->o.vmhop, uv_strerror(r));
	}
	j->open_handles++;
	j->proc_live = true;
	uv_read_start((uv_stream_t *)&j->out, alloc_cb, out_read);
	uv_read_start((uv_stream_t *)&j->err, alloc_cb, err_read);
	j->started_ns = util__now_ns();
	return 0;
}

static void push(char **argv, size_t *n, const char *s)
{
	if (*n < MAX_ARGS - 1)
		argv[(*n)++] = (char *)s;
	argv[*n] = NULL;
}

static void push_tls(struct agent *a, char **argv, size_t *n)
{
	push(argv, n, "--tls-ca");
	push(argv, n, a->o.tls.ca);
	push(argv, n, "--tls-cert");
	push(argv, n, a->o.tls.cert);
	push(argv, n, "--tls-key");
	push(argv, n, a->o.tls.key);
}

static void init_job(struct agent *a, struct agent_job *j, enum job_kind k, const char *vm)
{
	memset(j, 0, sizeof(*j));
	j->a = a;
	j->id = a->next_id++;
	j->kind = k;
	j->logfd = -1;
	snprintf(j->vm, sizeof(j->vm), "%s", vm);
	snprintf(j->control, sizeof(j->control), "%s/%s.sock", a->o.run_dir, vm);
}

int agent__job_incoming(struct agent *a, const char *name, const char *const *disk_map,
			size_t nmap, const char *disk_dir, struct agent_job **out, struct err *e)
{
	for (size_t i = 0; i < AGENT_MAX_JOBS; i++) {
		const struct agent_job *o = &a->jobs[i];
		if (o->id && o->kind == JOB_INCOMING && !finished(o) && !strcmp(o->vm, name))
			return err__set(e, EEXIST, "a receiver for %s is already under way (job %u)",
					name, o->id);
	}
	struct agent_job *j = new_job(a, e);
	if (!j)
		return -EBUSY;
	init_job(a, j, JOB_INCOMING, name);
	if (access(j->control, F_OK) == 0) {
		/* A socket nobody answers on was left by a VM that died. */
		struct err ve = { 0 };
		json_object *st = agent__vm_request(j->control, "query-status", NULL, 2000, &ve);
		if (st || ve.code != ECONNREFUSED) {
			if (st)
				json_object_put(st);
			j->id = 0;
			return err__set(e, EEXIST, "%s exists: a VM named %s already runs here",
					j->control, name);
		}
		agent__log("removing the stale control socket %s", j->control);
		if (unlink(j->control) < 0 && errno != ENOENT) {
			j->id = 0;
			return err__setsys(e, errno, "cannot remove the stale %s", j->control);
		}
	}
	j->state = JOB_STARTING;
	snprintf(j->log, sizeof(j->log), "%s/%s.recv-%u.log", a->o.run_dir, name, j->id);
	char listen[CHANNEL_URI_MAX + 8], serial[600], timeout[16];
	bool v6 = strchr(a->host, ':') != NULL;
	snprintf(listen, sizeof(listen), "tls:%s%s%s:0", v6 ? "[" : "", a->host, v6 ? "]" : "");
	snprintf(serial, sizeof(serial), "file:%s/%s.serial", a->o.run_dir, name);
	snprintf(timeout, sizeof(timeout), "%d", a->o.accept_timeout_s);
	char *argv[MAX_ARGS];
	size_t n = 0;
	push(argv, &n, "vmhop");
	push(argv, &n, "migrate-recv");
	push(argv, &n, "--listen");
	push(argv, &n, listen);
	push_tls(a, argv, &n);
	push(argv, &n, "--control");
	push(argv, &n, j->control);
	push(argv, &n, "--serial");
	push(argv, &n, serial);
	push(argv, &n, "--accept-timeout");
	push(argv, &n, timeout);
	for (size_t i = 0; i < nmap; i++) {
		push(argv, &n, "--disk-map");
		push(argv, &n, disk_map[i]);
	}
	if (disk_dir) {
		push(argv, &n, "--disk-dir");
		push(argv, &n, disk_dir);
	}
	int r = spawn(a, j, argv, e);
	if (r) {
		j->id = 0;
		return r;
	}
	agent__log("job %u: receiving %s (log %s)", j->id, name, j->log);
	*out = j;
	return 0;
}

int agent__job_outgoing(struct agent *a, const struct agent_migrate_args *m,
			struct agent_job **out, struct err *e)
{
	for (size_t i = 0; i < AGENT_MAX_JOBS; i++) {
		const struct agent_job *o = &a->jobs[i];
		if (o->id && o->kind == JOB_OUTGOING && !finished(o) && !strcmp(o->vm, m->vm))
			return err__set(e, EBUSY, "%s is already moving (job %u)", m->vm, o->id);
	}
	struct agent_job *j = new_job(a, e);
	if (!j)
		return -EBUSY;
	init_job(a, j, JOB_OUTGOING, m->vm);
	if (access(j->control, F_OK) != 0) {
		j->id = 0;
		return err__set(e, ENOENT, "no VM %s here (no %s)", m->vm, j->control);
	}
	j->state = JOB_ACTIVE;
	snprintf(j->uri, sizeof(j->uri), "%s", m->uri);
	snprintf(j->log, sizeof(j->log), "%s/%s.send-%u.log", a->o.run_dir, m->vm, j->id);
	char downtime[16];
	char *argv[MAX_ARGS];
	size_t n = 0;
	push(argv, &n, "vmhop");
	push(argv, &n, "migrate-send");
	push(argv, &n, "--control");
	push(argv, &n, j->control);
	push(argv, &n, "--to");
	push(argv, &n, j->uri);
	push(argv, &n, "--json");
	push(argv, &n, "--quiet");
	if (!strncmp(m->uri, "tls:", 4)) {
		push_tls(a, argv, &n);
		if (m->tls_name) {
			push(argv, &n, "--tls-name");
			push(argv, &n, m->tls_name);
		}
	}
	if (m->max_bandwidth) {
		push(argv, &n, "--max-bandwidth");
		push(argv, &n, m->max_bandwidth);
	}
	if (m->max_downtime_ms > 0) {
		snprintf(downtime, sizeof(downtime), "%d", m->max_downtime_ms);
		push(argv, &n, "--max-downtime");
		push(argv, &n, downtime);
	}
	if (m->unsafe)
		push(argv, &n, "--unsafe");
	for (size_t i = 0; i < m->ncopy; i++) {
		push(argv, &n, "--copy-disk");
		push(argv, &n, m->copy_disks[i]);
	}
	int r = spawn(a, j, argv, e);
	if (r) {
		j->id = 0;
		return r;
	}
	agent__log("job %u: moving %s to %s (log %s)", j->id, m->vm, m->uri, j->log);
	*out = j;
	return 0;
}

int agent__job_cancel(struct agent_job *j, struct err *e)
{
	if (finished(j))
		return err__set(e, EALREADY, "job %u has already ended (%s)", j->id,
				agent__job_state_name(j->state));
	if (j->kind == JOB_INCOMING) {
		if (j->state == JOB_RUNNING)
			return err__set(e, EBUSY, "job %u: the guest already runs here", j->id);
		snprintf(j->error, sizeof(j->error), "cancelled");
		if (j->proc_live)
			uv_process_kill(&j->proc, SIGTERM);
		return 0;
	}
	json_object *r = agent__vm_request(j->control, "migrate-cancel", NULL, 5000, e);
	if (!r)
		return -EIO;
	json_object *err;
	int rc = 0;
	if (json_object_object_get_ex(r, "error", &err)) {
		json_object *d = NULL;
		json_object_object_get_ex(err, "desc", &d);
		rc = err__set(e, EBUSY, "%s: %s", j->vm, d ? json_object_get_string(d) : "refused");
	}
	json_object_put(r);
	return rc;
}

json_object *agent__job_json(struct agent_job *j)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_int64(j->id));
	json_object_object_add(o, "kind", json_object_new_string(j->kind == JOB_INCOMING ?
								 "incoming" : "outgoing"));
	json_object_object_add(o, "vm", json_object_new_string(j->vm));
	json_object_object_add(o, "state", json_object_new_string(agent__job_state_name(j->state)));
	json_object_object_add(o, "uri", json_object_new_string(j->uri));
	json_object_object_add(o, "log", json_object_new_string(j->log));
	uint64_t end = j->ended_ns ? j->ended_ns : util__now_ns();
	json_object_object_add(o, "elapsed_ms",
			       json_object_new_double((double)(end - j->started_ns) / 1e6));
	/* On the agent's clock (ms since it started): overlaps can be checked. */
	json_object_object_add(o, "started_ms",
			       json_object_new_double((double)(j->started_ns - j->a->t0_ns) / 1e6));
	if (j->ended_ns)
		json_object_object_add(o, "ended_ms",
				       json_object_new_double((double)(j->ended_ns - j->a->t0_ns) / 1e6));
	if (j->error[0] && (j->state == JOB_FAILED || j->kind == JOB_OUTGOING))
		json_object_object_add(o, "error", json_object_new_string(j->error));
	if (j->summary)
		json_object_object_add(o, "summary", json_object_get(j->summary));
	if (j->kind == JOB_OUTGOING && j->state == JOB_ACTIVE) {
		struct err e = { 0 };
		json_object *r = agent__vm_request(j->control, "query-migrate", NULL, 2000, &e), *ret;
		if (r && json_object_object_get_ex(r, "return", &ret))
			json_object_object_add(o, "progress", json_object_get(ret));
		if (r)
			json_object_put(r);
	}
	return o;
}

void agent__jobs_stop(struct agent *a)
{
	for (size_t i = 0; i < AGENT_MAX_JOBS; i++) {
		struct agent_job *j = &a->jobs[i];
		if (!j->id)
			continue;
		if (j->kind == JOB_INCOMING && j->proc_live && j->state != JOB_RUNNING) {
			agent__log("job %u: cancelling the receiver for %s", j->id, j->vm);
			uv_process_kill(&j->proc, SIGTERM);
		}
		/* Closing the handles leaves the children alone. */
		close_handle(j, (uv_handle_t *)&j->proc);
		close_handle(j, (uv_handle_t *)&j->out);
		close_handle(j, (uv_handle_t *)&j->err);
	}
}

void agent__jobs_free(struct agent *a)
{
	for (size_t i = 0; i < AGENT_MAX_JOBS; i++) {
		struct agent_job *j = &a->jobs[i];
		if (j->summary)
			json_object_put(j->summary);
		if (j->waiter_id)
			json_object_put(j->waiter_id);
		j->summary = j->waiter_id = NULL;
	}
}
