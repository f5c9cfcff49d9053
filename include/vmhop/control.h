/* The control socket of a VM process: JSON lines over a unix stream socket,
 * one request, one reply, several clients at once, served on a libuv loop.
 * The protocol is documented in man/vmhop-ctl.1.
 *
 * The server knows nothing about VMs: it dispatches to a table of commands.
 * Adding a command means adding a table entry (see vmm/control-vm.c). Every
 * handler runs on the loop's thread, one at a time. */
#ifndef VMHOP_CONTROL_H
#define VMHOP_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <uv.h>

#include "vmhop/err.h"

/* Bytes of one request line, newline included. A longer line gets an
 * InvalidRequest reply and the client is dropped: the server would otherwise
 * buffer whatever a client sends. */
#define CONTROL_LINE_MAX (64 * 1024)
/* Clients connected at once; more are answered with an error and closed. */
#define CONTROL_MAX_CLIENTS 32

struct control_server;
/* One request whose reply is still owed: what an asynchronous handler keeps
 * and completes later with control__call_done(). */
struct control_call;

/* A synchronous handler. `args` is never NULL (an empty object when the
 * request had none), only holds names listed in `params`, and is valid only
 * until the handler returns (take a reference to keep it). On success,
 * return 0 and optionally set *result to a new JSON object (ownership passes
 * to the server; NULL replies `{}`). On failure return -errno and fill e:
 * -EINVAL replies class InvalidParameter, anything else GenericError. */
typedef int (*control_fn)(void *ctx, struct json_object *args,
			  struct json_object **result, struct err *e);

/* An asynchronous handler, for commands that finish later (migrate, ...).
 * Return 0 after taking `call`: the reply is then sent when
 * control__call_done(call, ...) runs, possibly from inside this handler.
 * Return -errno (filling e) to fail at once; `call` is then not taken.
 * Later requests of the same client wait for this reply, so replies keep
 * the order of requests. */
typedef int (*control_async_fn)(void *ctx, struct json_object *args,
				struct control_call *call, struct err *e);

struct control_cmd {
	const char *name;
	control_fn fn;			/* exactly one of fn and fn_async */
	const char *help;		/* one line, shown by query-commands */
	/* Argument names the command accepts, NULL-terminated; NULL for a
	 * command taking none. Others are refused before the handler runs. */
	const char *const *params;
	control_async_fn fn_async;
};

/* Binds PATH (mode 0600) and serves `table` on `loop`; `table` and `ctx`
 * must outlive the server. The built-in `query-commands` lists the table.
 * A socket at PATH that still accepts connections belongs to a running VM
 * and is refused; one nobody listens on is stale and replaced; a file that
 * is not a socket is never removed. SIGPIPE is set to ignored if it was at
 * its default, because a client hanging up must not kill the VM. */
int control__start(struct control_server **out, uv_loop_t *loop, const char *path,
		   const struct control_cmd *table, size_t n, void *ctx, struct err *e);

/* Stops listening, unlinks the socket (if it is still ours) and closes every
 * client once the replies already queued are written (after 2 s at most).
 * Call it once, on the loop's thread: `s` is invalid afterwards (NULL is a
 * no-op, so clear your pointer). A handler may call it; its own reply is
 * still sent. The server's handles close asynchronously, with callbacks that
 * free it: do not uv_close() them yourself (a uv_walk closing every handle
 * would leak the server); run the loop until it has nothing left
 * (uv_run(loop, UV_RUN_DEFAULT) returns). Calls still pending stay valid;
 * completing them sends nothing. */
void control__stop(struct control_server *s);

/* Completes an asynchronous call, on the loop's thread, exactly once: rc 0
 * replies `result` (taken; NULL means `{}`), rc < 0 replies an error from e
 * (or strerror(-rc) when e is NULL or empty). Threads other than the loop's
 * hand their completion over with a uv_async_t first. */
void control__call_done(struct control_call *call, int rc, struct json_object *result,
			const struct err *e);

/* The loop an asynchronous call was made on (valid inside its handler), so
 * the handler can set up the uv_async_t its worker thread completes with. */
uv_loop_t *control__call_loop(const struct control_call *call);

/* The error class a handler's -errno maps to ("InvalidParameter", ...). */
const char *control__error_class(int rc);

/* Argument helpers for handlers. Each returns 1 when the argument is present
 * and valid (output set), 0 when absent (output untouched), -EINVAL with e
 * filled when it has the wrong type or is out of range. `cmd` names the
 * command in messages. *out of control__arg_str points into args. */
int control__arg_str(struct json_object *args, const char *cmd, const char *name,
		     size_t max_len, const char **out, struct err *e);
int control__arg_u64(struct json_object *args, const char *cmd, const char *name,
		     uint64_t min, uint64_t max, uint64_t *out, struct err *e);
int control__arg_bool(struct json_object *args, const char *cmd, const char *name,
		      bool *out, struct err *e);

#endif
