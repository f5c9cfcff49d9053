/* libFuzzer target: the migration handshake's receiver (migrate-proto.h).
 * The input is everything the peer sends: it is written into one end of a
 * socketpair, whose write side is then shut down, and mig__recv reads
 * messages from the other end until it fails; the first is expected to be a
 * hello, later ones may be anything. Every hello received is checked as a
 * source's and as a destination's. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmhop/migrate-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* More than a socketpair buffers by default: the rest of a larger input is
 * dropped, so no write ever blocks. A frame is at most MIG_FRAME_MAX + 16. */
#define FEED_MAX	(2 * MIG_FRAME_MAX)
#define MESSAGES_MAX	16

static void check(struct json_object *o)
{
	struct err e = { 0 };
	mig__check_hello(o, "source", &e);
	err__clear(&e);
	mig__check_hello(o, "destination", &e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	int buf = FEED_MAX + 4096;
	(void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	size_t off = 0, want = size < FEED_MAX ? size : FEED_MAX;
	while (off < want) {
		ssize_t n = send(sv[1], data + off, want - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(sv[1], SHUT_WR);

	/* The data is all there and the end follows it: no read waits long,
	 * the timeout only guards against a bug. */
	struct channel c = { .kind = CHANNEL_TCP, .fd = sv[0], .timeout_ms = 1000 };
	strcpy(c.peer, "fuzz-peer");
	for (int i = 0; i < MESSAGES_MAX; i++) {
		struct json_object *o = NULL;
		struct err e = { 0 };
		if (mig__recv(&c, 0, i ? NULL : "hello", "a message", &o, &e) < 0) {
			if (o || !e.code || !e.msg[0])
				abort();	/* failures set the error, never *out */
			break;
		}
		if (!o)
			abort();
		struct json_object *t;
		if (json_object_object_get_ex(o, "type", &t) &&
		    !strcmp(json_object_get_string(t), "hello"))
			check(o);
		json_object_put(o);
	}
	close(sv[0]);
	close(sv[1]);
	return 0;
}
