/* The agent's loop: the tls: listener (accept and handshake on the thread
 * pool, one at a time), connections framed in lines, replies, signals. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "vmhop/util.h"

#define READ_CHUNK	65536
#define WRITE_TIMEOUT_MS 10000
#define HANDSHAKE_MS	5000

struct agent_conn {
	struct agent *a;
	struct agent_conn *next;
	struct channel ch;
	uv_poll_t poll;
	char *buf;
	size_t len;
	bool busy;		/* a reply is deferred: later requests wait */
	bool closing;
};

void agent__log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vmhop agent: %s\n", line);
}

static void conn_closed(uv_handle_t *h)
{
	struct agent_conn *c = h->data;
	channel__close(&c->ch);
	free(c->buf);
	free(c);
}

static void conn_close(struct agent_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	struct agent *a = c->a;
	for (struct agent_conn **p = &a->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	a->nconns--;
	agent__jobs_conn_gone(a, c);
	uv_poll_stop(&c->poll);
	uv_close((uv_handle_t *)&c->poll, conn_closed);
}

static void send_obj(struct agent_conn *c, json_object *o)
{
	if (c->closing)
		return;
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	size_t n = strlen(s);
	char *line = malloc(n + 2);
	int r = -ENOMEM;
	if (line) {
		memcpy(line, s, n);
		line[n] = '\n';
		channel__set_timeout(&c->ch, WRITE_TIMEOUT_MS);
		r = channel__write_full(&c->ch, line, n + 1);
		free(line);
	}
	if (r) {
		agent__log("%s: cannot send a reply: %s", c->ch.peer, strerror(-r));
		conn_close(c);
	}
}

void agent__reply(struct agent_conn *c, json_object *id, json_object *ret)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "return", ret ? ret : json_object_new_object());
	if (id)
		json_object_object_add(o, "id", json_object_get(id));
	send_obj(c, o);
	json_object_put(o);
}

void agent__reply_error(struct agent_conn *c, json_object *id, const char *cls,
			const char *fmt, ...)
{
	char desc[AGENT_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	json_object *o = json_object_new_object(), *err = json_object_new_object();
	json_object_object_add(err, "class", json_object_new_string(cls));
	json_object_object_add(err, "desc", json_object_new_string(desc));
	json_object_object_add(o, "error", err);
	if (id)
		json_object_object_add(o, "id", json_object_get(id));
	send_obj(c, o);
	json_object_put(o);
}

/* One request line: parse, check its shape, dispatch. */
static int handle_line(struct agent_conn *c, const char *line)
{
	json_tokener *tok = json_tokener_new_ex(32);
	if (!tok)
		return -ENOMEM;
	json_object *req = json_tokener_parse_ex(tok, line, (int)strlen(line));
	bool bad = json_tokener_get_error(tok) != json_tokener_success ||
		   tok->char_offset != (int)strlen(line);
	json_tokener_free(tok);
	json_object *id = NULL, *cmd = NULL, *args = NULL;
	const char *why = NULL;
	if (bad || !json_object_is_type(req, json_type_object))
		why = "not a JSON object";
	if (!why) {
		json_object_object_get_ex(req, "id", &id);
		json_object_object_foreach(req, k, v) {
			(void)v;
			if (strcmp(k, "execute") && strcmp(k, "arguments") && strcmp(k, "id"))
				why = "unknown member in the request";
		}
	}
	if (!why && (!json_object_object_get_ex(req, "execute", &cmd) ||
		     !json_object_is_type(cmd, json_type_string)))
		why = "execute must be a string";
	if (!why && json_object_object_get_ex(req, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object))
		why = "arguments must be an object";
	int deferred = 0;
	if (why)
		agent__reply_error(c, id, "InvalidRequest", "%s", why);
	else
		deferred = agent__dispatch(c->a, c, json_object_get_string(cmd), args, id);
	json_object_put(req);
	return deferred;
}

static void drain_lines(struct agent_conn *c)
{
	while (!c->busy && !c->closing) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (!nl)
			break;
		*nl = '\0';
		size_t used = (size_t)(nl - c->buf) + 1;
		if (nl > c->buf && nl[-1] == '\r')
			nl[-1] = '\0';
		int d = c->buf[0] ? handle_line(c, c->buf) : 0;
		if (c->closing)
			return;
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
		if (d > 0)
			c->busy = true;
	}
}

void agent__conn_resume(struct agent_conn *c)
{
	c->busy = false;
	drain_lines(c);
}

static void conn_readable(uv_poll_t *h, int status, int events)
{
	struct agent_conn *c = h->data;
	(void)events;
	if (status < 0) {
		conn_close(c);
		return;
	}
	channel__set_timeout(&c->ch, WRITE_TIMEOUT_MS);
	while (!c->closing && channel__wait_readable(&c->ch, 0) == 1) {
		if (c->len + READ_CHUNK > AGENT_LINE_MAX + READ_CHUNK) {
			agent__reply_error(c, NULL, "InvalidRequest", "request line over %u bytes",
					   AGENT_LINE_MAX);
			conn_close(c);
			return;
		}
		ssize_t n = channel__read_some(&c->ch, c->buf + c->len, READ_CHUNK);
		if (n == -ETIMEDOUT || n == -EAGAIN)
			break;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->len += (size_t)n;
		drain_lines(c);
		if (!c->busy && c->len >= AGENT_LINE_MAX) {
			agent__reply_error(c, NULL, "InvalidRequest", "request line over %u bytes",
					   AGENT_LINE_MAX);
			conn_close(c);
			return;
		}
	}
}

static void listen_ready(uv_poll_t *h, int status, int events);

/* On the thread pool: one accept with its TLS handshake. */
static void accept_work(uv_work_t *w)
{
	struct agent *a = w->data;
	err__clear(&a->accept_err);
	a->accept_rc = channel__accept(&a->l, 1000, &a->accepted, &a->accept_err);
}

static void accept_done(uv_work_t *w, int status)
{
	struct agent *a = w->data;
	if (a->stopping) {
		if (!status && !a->accept_rc)
			channel__close(&a->accepted);
		return;
	}
	if (status == 0 && a->accept_rc == 0) {
		struct agent_conn *c = calloc(1, sizeof(*c));
		char *buf = malloc(AGENT_LINE_MAX + READ_CHUNK);
		if (!c || !buf || a->nconns >= AGENT_MAX_CONNS) {
			agent__log("%s: refused: %s", a->accepted.peer,
				   !c || !buf ? "out of memory" : "too many connections");
			channel__close(&a->accepted);
			free(c);
			free(buf);
		} else {
			c->a = a;
			c->ch = a->accepted;
			c->buf = buf;
			c->poll.data = c;
			int r = uv_poll_init(a->loop, &c->poll, c->ch.fd);
			if (!r)
				r = uv_poll_start(&c->poll, UV_READABLE, conn_readable);
			if (r) {
				agent__log("%s: %s", c->ch.peer, uv_strerror(r));
				channel__close(&c->ch);
				free(buf);
				free(c);
			} else {
				c->next = a->conns;
				a->conns = c;
				a->nconns++;
				/* The handshake may have brought a request along. */
				conn_readable(&c->poll, 0, UV_READABLE);
			}
		}
	} else if (a->accept_rc != -ETIMEDOUT) {
		/* The refusals of mutual TLS land here: no certificate, another CA... */
		agent__log("refused a client: %s", a->accept_err.msg);
	}
	int r = uv_poll_start(&a->lpoll, UV_READABLE, listen_ready);
	if (r)
		agent__log("cannot watch the listener again: %s", uv_strerror(r));
}

static void listen_ready(uv_poll_t *h, int status, int events)
{
	struct agent *a = h->data;
	(void)events;
	if (status < 0 || a->stopping)
		return;
	uv_poll_stop(&a->lpoll);
	a->accept_work.data = a;
	int r = uv_queue_work(a->loop, &a->accept_work, accept_work, accept_done);
	if (r) {
		agent__log("cannot accept: %s", uv_strerror(r));
		uv_poll_start(&a->lpoll, UV_READABLE, listen_ready);
	}
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct agent *a = s->data;
	agent__log("%s: stopping (incoming migrations not yet running a guest are cancelled; "
		   "guests keep running)", strsignal(signum));
	a->stopping = true;
	agent__jobs_stop(a);
	uv_poll_stop(&a->lpoll);
	while (a->conns)
		conn_close(a->conns);
	uv_signal_stop(&a->sigterm);
	uv_signal_stop(&a->sigint);
	uv_close((uv_handle_t *)&a->lpoll, NULL);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
}

/* Disk copy came with a later migrate-send: ask the binary the children
 * run rather than assume. */
static bool has_copy_disk(const char *vmhop)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "'%s' migrate-send --help 2>/dev/null", vmhop);
	FILE *f = popen(cmd, "r");
	if (!f)
		return false;
	char line[512];
	bool found = false;
	while (fgets(line, sizeof(line), f))
		found |= strstr(line, "--copy-disk") != NULL;
	pclose(f);
	return found;
}

static int listen_host(const char *uri, char *host, size_t size, struct err *e)
{
	struct channel_addr ad;
	int r = channel__parse_uri(uri, true, &ad, e);
	if (r)
		return r;
	if (ad.kind != CHANNEL_TLS)
		return err__set(e, EINVAL, "--listen %s: the agent listens on tls: only (mutual certificates)",
				uri);
	/* Receivers listen on the agent's address: a wildcard gives them none
	 * a source could reach, so it is refused here. */
	if (!strcmp(ad.host, "0.0.0.0") || !strcmp(ad.host, "::") || !ad.host[0])
		return err__set(e, EINVAL, "--listen %s: give the host's own address (receivers listen there too)",
				uri);
	snprintf(host, size, "%s", ad.host);
	return 0;
}

int agent__run(const struct agent_opts *o, struct err *e)
{
	struct agent *a = calloc(1, sizeof(*a));
	if (!a)
		return err__set(e, ENOMEM, "out of memory");
	a->o = *o;
	/* The children run this very binary; its path is resolved now so that
	 * a shell (has_copy_disk's popen) names the same file. */
	if (!a->o.vmhop) {
		ssize_t n = readlink("/proc/self/exe", a->self, sizeof(a->self) - 1);
		if (n <= 0) {
			free(a);
			return err__setsys(e, errno, "cannot find this program (/proc/self/exe)");
		}
		a->self[n] = '\0';
		a->o.vmhop = a->self;
	}
	if (!a->o.accept_timeout_s)
		a->o.accept_timeout_s = 120;
	a->o.tls.handshake_timeout_ms = HANDSHAKE_MS;
	a->next_id = 1;
	a->t0_ns = util__now_ns();
	a->copy_disk = !strchr(a->o.vmhop, '\'') && has_copy_disk(a->o.vmhop);
	int r = listen_host(o->listen, a->host, sizeof(a->host), e);
	if (!r && o->profile_override) {
		a->override = malloc(sizeof(*a->override));
		r = a->override ? host_profile__load(o->profile_override, a->override, e) :
				  err__set(e, ENOMEM, "out of memory");
	}
	if (!r)
		r = channel__listen_tls(o->listen, &a->o.tls, &a->l, e);
	if (r) {
		free(a->override);
		free(a);
		return r;
	}
	uv_loop_t loop;
	uv_loop_init(&loop);
	a->loop = &loop;
	a->lpoll.data = a;
	a->sigterm.data = a;
	a->sigint.data = a;
	if ((r = uv_poll_init(&loop, &a->lpoll, a->l.fd)) ||
	    (r = uv_poll_start(&a->lpoll, UV_READABLE, listen_ready)) ||
	    (r = uv_signal_init(&loop, &a->sigterm)) ||
	    (r = uv_signal_start(&a->sigterm, on_signal, SIGTERM)) ||
	    (r = uv_signal_init(&loop, &a->sigint)) ||
	    (r = uv_signal_start(&a->sigint, on_signal, SIGINT))) {
		err__set(e, -r, "starting the loop: %s", uv_strerror(r));
		channel__listener_close(&a->l);
		free(a->override);
		free(a);
		return -EIO;
	}
	/* Scripts wait for this line (and read the port when it was 0). */
	agent__log("listening on %s, run directory %s%s%s", a->l.local, o->run_dir,
		   o->profile_override ? ", profile from " : "",
		   o->profile_override ? o->profile_override : "");
	uv_run(&loop, UV_RUN_DEFAULT);
	channel__listener_close(&a->l);
	if (uv_loop_close(&loop) == UV_EBUSY)
		agent__log("warning: handles left open at exit");
	agent__jobs_free(a);
	free(a->override);
	free(a);
	return 0;
}
