/* The migration handshake around the stream: small framed JSON messages that
 * go both ways on the same channel (hello, error, ready, go, running).
 *
 *   frame = "VMHOPMIG" | u32 LE length | JSON object (length bytes) | u32 LE
 *           CRC32C of the JSON
 *
 * Source -> destination: hello, then the stream (vmhop-stream(5)), then go.
 * Destination -> source: hello (accepting or refusing), then ready once the
 * whole stream is loaded, then running once its vCPUs run; error at any
 * time. Every message is an object with a string "type". A peer is untrusted:
 * lengths are capped before anything is allocated. */
#ifndef VMHOP_MIGRATE_PROTO_H
#define VMHOP_MIGRATE_PROTO_H

#include <json-c/json.h>

#include "vmhop/channel.h"
#include "vmhop/err.h"

#define MIG_MAGIC	"VMHOPMIG"
#define MIG_MAGIC_LEN	8
#define MIG_FRAME_MAX	(256 * 1024)	/* hellos carry host profiles */
#define MIG_PROTO	1	/* handshake version, in hello */

/* Sends one message (not taken). */
int mig__send(struct channel *c, struct json_object *msg, struct err *e);
/* Sends {"type": type} or {"type": "error", "error": text}. */
int mig__send_type(struct channel *c, const char *type, struct err *e);
int mig__send_error(struct channel *c, const char *text);
/* Receives one message within timeout_ms (0: the channel's own timeout).
 * `what` names the expected message for errors ("the destination's hello").
 * An "error" message from the peer becomes an error here, naming the peer's
 * reason. On success *out is a new object of the given type (or any type
 * when type is NULL). */
int mig__recv(struct channel *c, int timeout_ms, const char *type, const char *what,
	      struct json_object **out, struct err *e);

/* The hello both sides send: protocol, release level, stream formats, host. */
struct json_object *mig__hello(const char *role, struct err *e);
/* Checks the peer's hello: protocol version, and (on the destination) that
 * the source's release level may move here. */
int mig__check_hello(struct json_object *peer, const char *peer_role, struct err *e);
/* A message's string field (NULL when absent or not a string), and a
 * boolean one (false when absent). */
const char *mig__str(struct json_object *o, const char *name);
bool mig__flag(struct json_object *o, const char *name);

#endif
