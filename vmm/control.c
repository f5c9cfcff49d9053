/* Control server: the listening socket, its clients, their line buffers and
 * reply queues. What a line means is control-dispatch.c's business. */
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/control-internal.h"

/* A client that leaves this much of its replies unread is dropped rather
 * than letting it grow the VMM's memory. */
#define WRITE_QUEUE_MAX (1024 * 1024)
#define STOP_GRACE_MS 2000
#define BACKLOG 16

struct write_req {
	uv_write_t req;
	char data[];
};

static void server_unref(struct control_server *s)
{
	if (--s->refs)
		return;
	free(s->path);
	free(s);
}

static void handle_closed(uv_handle_t *h)
{
	server_unref(h->data);
}

void control_client__unref(struct control_client *c)
{
	if (--c->refs)
		return;
	free(c->buf);
	free(c);
}

static void client_closed(uv_handle_t *h)
{
	struct control_client *c = h->data;
	struct control_server *s = c->srv;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nr_clients--;
	c->srv = NULL;
	if (s->stopping && !s->nr_clients && !uv_is_closing((uv_handle_t *)&s->stop_timer))
		uv_close((uv_handle_t *)&s->stop_timer, handle_closed);
	server_unref(s);
	control_client__unref(c);
}

/* Immediate close: queued replies are discarded (the peer is gone, or will
 * not read them). */
static void client_abort(struct control_client *c)
{
	c->closing = true;
	if (!uv_is_closing((uv_handle_t *)&c->pipe))
		uv_close((uv_handle_t *)&c->pipe, client_closed);
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
	struct control_client *c = req->handle->data;

	free(req);
	client_abort(c);
}

void control_client__drop(struct control_client *c)
{
	if (c->dispatching) {
		/* The handler's reply is still to be sent (quit stopping the
		 * server from inside its own handler, say). */
		c->drop_after_dispatch = true;
		return;
	}
	if (c->closing)
		return;
	c->closing = true;
	uv_read_stop((uv_stream_t *)&c->pipe);
	c->reading = false;
	/* A shutdown completes after the queued writes: the last reply (an
	 * error that caused the drop, `quit`'s) still reaches the client. */
	uv_shutdown_t *req = malloc(sizeof(*req));
	if (!req || uv_shutdown(req, (uv_stream_t *)&c->pipe, shutdown_done)) {
		free(req);
		client_abort(c);
	}
}

static void write_done(uv_write_t *req, int status)
{
	struct control_client *c = req->handle->data;

	free(req);
	if (status < 0 && status != UV_ECANCELED)
		client_abort(c);
}

void control_client__send(struct control_client *c, struct json_object *reply)
{
	if (!reply) {
		client_abort(c);	/* out of memory building it */
		return;
	}
	if (c->closing) {
		json_object_put(reply);
		return;
	}
	size_t len;
	const char *text = json_object_to_json_string_length(reply,
			JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	struct write_req *w = text ? malloc(sizeof(*w) + len + 1) : NULL;
	if (!w) {
		json_object_put(reply);
		client_abort(c);
		return;
	}
	memcpy(w->data, text, len);
	w->data[len] = '\n';
	json_object_put(reply);
	uv_buf_t buf = uv_buf_init(w->data, (unsigned)len + 1);
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, write_done)) {
		free(w);
		client_abort(c);
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > WRITE_QUEUE_MAX)
		client_abort(c);
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct control_client *c = h->data;

	/* Reads land right after what is buffered, so a line never needs
	 * copying; process() keeps len < CONTROL_LINE_MAX while reading. */
	*buf = uv_buf_init(c->buf + c->len, (unsigned)(CONTROL_LINE_MAX - c->len));
}

static void read_done(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void handle_line(struct control_client *c, char *line, size_t len)
{
	if (len && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	c->dispatching = true;
	control_dispatch__line(c, line, len);
	c->dispatching = false;
	if (c->drop_after_dispatch) {
		c->drop_after_dispatch = false;
		control_client__drop(c);
	}
}

void control_client__process(struct control_client *c)
{
	while (!c->pending && !c->closing) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			size_t used = (size_t)(nl - c->buf) + 1;
			handle_line(c, c->buf, used - 1);
			/* The handler may have dropped the client; buf is
			 * still ours until the handle closes. */
			memmove(c->buf, c->buf + used, c->len - used);
			c->len -= used;
		} else if (c->len == CONTROL_LINE_MAX) {
			char desc[96];
			snprintf(desc, sizeof(desc), "request line longer than %d bytes",
				 CONTROL_LINE_MAX - 1);
			control_client__send(c, control_dispatch__error("InvalidRequest", desc, NULL));
			control_client__drop(c);
		} else if (c->eof && c->len) {
			/* A last request without its newline (echo -n). The
			 * buffer has room for the NUL: len < CONTROL_LINE_MAX. */
			size_t len = c->len;
			c->len = 0;
			handle_line(c, c->buf, len);
		} else {
			break;
		}
	}
	if (c->closing)
		return;
	if (c->pending) {
		/* Replies keep the order of requests: read no further until
		 * the pending one is answered. */
		if (c->reading)
			uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	} else if (c->eof) {
		control_client__drop(c);
	} else if (!c->reading) {
		if (uv_read_start((uv_stream_t *)&c->pipe, alloc_buf, read_done) == 0)
			c->reading = true;
		else
			client_abort(c);
	}
}

static void read_done(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct control_client *c = st->data;

	if (nread == UV_EOF) {
		c->eof = true;
	} else if (nread < 0) {
		client_abort(c);
		return;
	} else {
		c->len += (size_t)nread;
	}
	control_client__process(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct control_server *s = listener->data;

	if (status < 0 || s->stopping)
		return;
	struct control_client *c = calloc(1, sizeof(*c));
	if (c)
		c->buf = malloc(CONTROL_LINE_MAX);
	if (!c || !c->buf || uv_pipe_init(s->loop, &c->pipe, 0)) {
		/* Out of memory: not accepting makes libuv hold the connection
		 * and stop listening. A VMM this short of memory has worse
		 * problems; the VM itself is not touched. */
		if (c)
			free(c->buf);
		free(c);
		return;
	}
	c->pipe.data = c;
	c->srv = s;
	c->refs = 1;
	c->next = s->clients;
	if (s->clients)
		s->clients->prev = c;
	s->clients = c;
	s->nr_clients++;
	s->refs++;
	if (uv_accept(listener, (uv_stream_t *)&c->pipe)) {
		client_abort(c);
		return;
	}
	if (s->nr_clients > CONTROL_MAX_CLIENTS) {
		char desc[80];
		snprintf(desc, sizeof(desc), "too many control clients (at most %d)",
			 CONTROL_MAX_CLIENTS);
		control_client__send(c, control_dispatch__error("GenericError", desc, NULL));
		control_client__drop(c);
		return;
	}
	control_client__process(c);	/* starts reading */
}

/* Something accepting connections at `path` means a live VM owns it; a
 * refused connection means its owner died and left it behind. */
static int probe_existing(const char *path, const struct sockaddr_un *sa, struct err *e)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return err__setsys(e, errno, "cannot create control socket %s", path);
	}
	if (!S_ISSOCK(st.st_mode))
		return err__set(e, EEXIST, "cannot create control socket %s: it exists and is not a socket",
				path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err__setsys(e, errno, "cannot create control socket %s", path);
	int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int saved = errno;
	close(fd);
	/* EAGAIN: a listener whose backlog is full is still a listener. */
	if (r == 0 || saved == EAGAIN || saved == EINPROGRESS)
		return err__set(e, EADDRINUSE, "control socket %s is in use by a running VM", path);
	if (saved != ECONNREFUSED)
		return err__setsys(e, saved, "cannot check existing control socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return err__setsys(e, errno, "cannot remove stale control socket %s", path);
	return 0;
}

static int check_parent(const char *path, struct err *e)
{
	char *copy = strdup(path);
	if (!copy)
		return err__set(e, ENOMEM, "out of memory");
	const char *dir = dirname(copy);
	struct stat st;
	int r = 0;
	if (stat(dir, &st) < 0) {
		if (errno == ENOENT)
			r = err__set(e, ENOENT, "cannot create control socket %s: directory %s does not exist",
				     path, dir);
		else
			r = err__setsys(e, errno, "cannot create control socket %s: directory %s",
					path, dir);
	} else if (!S_ISDIR(st.st_mode)) {
		r = err__set(e, ENOTDIR, "cannot create control socket %s: %s is not a directory",
			     path, dir);
	}
	free(copy);
	return r;
}

static int bind_listen(struct control_server *s, const char *path, struct err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);

	if (!len)
		return err__set(e, EINVAL, "control socket path is empty");
	if (len >= sizeof(sa.sun_path))
		return err__set(e, ENAMETOOLONG, "control socket path %s is too long (%zu bytes, at most %zu)",
				path, len, sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, len);
	int r = check_parent(path, e);
	if (!r)
		r = probe_existing(path, &sa, e);
	if (r)
		return r;

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err__setsys(e, errno, "cannot create control socket %s", path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = errno == EADDRINUSE ?
			err__set(e, EADDRINUSE, "control socket %s is in use by a running VM", path) :
			err__setsys(e, errno, "cannot bind control socket %s", path);
		close(fd);
		return r;
	}
	/* chmod before listen: until listen, every connect is refused, so
	 * nobody gets in while the umask's mode is on the inode. */
	struct stat st;
	if (chmod(path, 0600) < 0 || stat(path, &st) < 0 || listen(fd, BACKLOG) < 0) {
		r = err__setsys(e, errno, "cannot set up control socket %s", path);
		unlink(path);
		close(fd);
		return r;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	return fd;
}

int control__start(struct control_server **out, uv_loop_t *loop, const char *path,
		   const struct control_cmd *table, size_t n, void *ctx, struct err *e)
{
	struct control_server *s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		return err__set(e, ENOMEM, "out of memory");
	}
	int fd = bind_listen(s, path, e);
	if (fd < 0) {
		free(s->path);
		free(s);
		return fd;
	}
	/* libuv writes with write(2): without this a client that hangs up
	 * before its reply would kill the whole VM. Left alone if the
	 * program chose its own handling. */
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);

	s->loop = loop;
	s->table = table;
	s->n = n;
	s->ctx = ctx;
	s->refs = 2;
	uv_timer_init(loop, &s->stop_timer);
	s->stop_timer.data = s;
	uv_pipe_init(loop, &s->listener, 0);
	s->listener.data = s;
	int r = uv_pipe_open(&s->listener, fd);
	bool adopted = r == 0;
	if (!r)
		r = uv_listen((uv_stream_t *)&s->listener, BACKLOG, on_connection);
	if (r) {
		/* The handles are initialised: they are freed by the loop. */
		if (!adopted)
			close(fd);
		unlink(path);
		s->stopping = true;
		uv_close((uv_handle_t *)&s->listener, handle_closed);
		uv_close((uv_handle_t *)&s->stop_timer, handle_closed);
		return err__set(e, -r, "cannot listen on control socket %s: %s", path, uv_strerror(r));
	}
	*out = s;
	return 0;
}

static void stop_grace_over(uv_timer_t *t)
{
	struct control_server *s = t->data;

	for (struct control_client *c = s->clients; c; c = c->next)
		client_abort(c);
}

void control__stop(struct control_server *s)
{
	if (!s || s->stopping)
		return;
	s->stopping = true;
	uv_close((uv_handle_t *)&s->listener, handle_closed);

	/* Only our own socket: another VM may have taken the path since. */
	struct stat st;
	if (stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);

	for (struct control_client *c = s->clients; c; c = c->next)
		control_client__drop(c);
	if (s->nr_clients) {
		uv_timer_start(&s->stop_timer, stop_grace_over, STOP_GRACE_MS, 0);
	} else {
		uv_close((uv_handle_t *)&s->stop_timer, handle_closed);
	}
}
