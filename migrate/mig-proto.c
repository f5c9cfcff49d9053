/* Framing and the hello of the migration handshake (migrate-proto.h). */
#include <ctype.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmhop/migrate-proto.h"
#include "vmhop/release.h"
#include "vmhop/stream.h"

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int io_err(struct channel *c, int rc, const char *doing, struct err *e)
{
	if (rc == -ENODATA || rc == -EPIPE || rc == -ECONNRESET)
		return err__set(e, EPIPE, "%s: %s closed the connection", doing, c->peer);
	if (rc == -ETIMEDOUT)
		return err__set(e, ETIMEDOUT, "%s: no answer from %s within %d ms", doing, c->peer,
				c->timeout_ms);
	return err__setsys(e, -rc, "%s: %s", doing, c->peer);
}

int mig__send(struct channel *c, struct json_object *msg, struct err *e)
{
	size_t len;
	const char *s = json_object_to_json_string_length(msg, JSON_C_TO_STRING_PLAIN, &len);
	if (!s || len > MIG_FRAME_MAX)
		return err__set(e, EMSGSIZE, "migration message too large");
	uint8_t hdr[MIG_MAGIC_LEN + 4], tail[4];
	memcpy(hdr, MIG_MAGIC, MIG_MAGIC_LEN);
	put_le32(hdr + MIG_MAGIC_LEN, (uint32_t)len);
	put_le32(tail, crc32c__update(0, s, len));
	int rc = channel__write_full(c, hdr, sizeof(hdr));
	if (!rc)
		rc = channel__write_full(c, s, len);
	if (!rc)
		rc = channel__write_full(c, tail, sizeof(tail));
	if (rc)
		return io_err(c, rc, "sending a migration message", e);
	return 0;
}

int mig__send_type(struct channel *c, const char *type, struct err *e)
{
	struct json_object *m = json_object_new_object();
	if (!m)
		return err__set(e, ENOMEM, "out of memory");
	json_object_object_add(m, "type", json_object_new_string(type));
	int rc = mig__send(c, m, e);
	json_object_put(m);
	return rc;
}

int mig__send_error(struct channel *c, const char *text)
{
	struct err ignore = { 0 };
	struct json_object *m = json_object_new_object();
	if (!m)
		return -ENOMEM;
	json_object_object_add(m, "type", json_object_new_string("error"));
	json_object_object_add(m, "error", json_object_new_string(text));
	int rc = mig__send(c, m, &ignore);
	json_object_put(m);
	return rc;
}

/* What a peer that is not vmhop sent, printable, for the message. */
static void show_bytes(const uint8_t *p, size_t n, char *buf, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 5 < size; i++)
		o += (size_t)snprintf(buf + o, size - o, isprint(p[i]) ? "%c" : "\\x%02x", p[i]);
	buf[o] = 0;
}

const char *mig__str(struct json_object *o, const char *name)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

bool mig__flag(struct json_object *o, const char *name)
{
	struct json_object *v;
	return json_object_object_get_ex(o, name, &v) && json_object_get_boolean(v);
}

int mig__recv(struct channel *c, int timeout_ms, const char *type, const char *what,
	      struct json_object **out, struct err *e)
{
	int saved = c->timeout_ms;
	if (timeout_ms)
		c->timeout_ms = timeout_ms;
	uint8_t hdr[MIG_MAGIC_LEN + 4];
	char doing[160];
	snprintf(doing, sizeof(doing), "waiting for %s", what);
	int rc = channel__read_full(c, hdr, sizeof(hdr));
	if (rc) {
		rc = io_err(c, rc, doing, e);
		c->timeout_ms = saved;
		return rc;
	}
	if (memcmp(hdr, MIG_MAGIC, MIG_MAGIC_LEN)) {
		c->timeout_ms = saved;
		/* A TLS handshake record: the peer expects a tls: channel. */
		if (hdr[0] == 0x16 && hdr[1] == 0x03)
			return err__set(e, EPROTO, "%s speaks TLS to a plaintext endpoint: use tls: "
					"addresses with the --tls-* options on both sides", c->peer);
		char shown[64];
		show_bytes(hdr, sizeof(hdr), shown, sizeof(shown));
		return err__set(e, EPROTO, "%s is not a vmhop migration peer: expected %s, got \"%s\"",
				c->peer, what, shown);
	}
	uint32_t len = get_le32(hdr + MIG_MAGIC_LEN);
	if (len == 0 || len > MIG_FRAME_MAX) {
		c->timeout_ms = saved;
		return err__set(e, EPROTO, "%s sent a %u-byte message (at most %u allowed) instead of %s",
				c->peer, len, MIG_FRAME_MAX, what);
	}
	char *buf = malloc(len + 4);
	if (!buf) {
		c->timeout_ms = saved;
		return err__set(e, ENOMEM, "out of memory");
	}
	rc = channel__read_full(c, buf, len + 4);
	if (rc)
		rc = io_err(c, rc, doing, e);
	c->timeout_ms = saved;
	if (rc) {
		free(buf);
		return rc;
	}
	if (crc32c__update(0, buf, len) != get_le32((uint8_t *)buf + len)) {
		free(buf);
		return err__set(e, EPROTO, "%s: %s is corrupt (checksum mismatch)", c->peer, what);
	}
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = tok ? json_tokener_parse_ex(tok, buf, (int)len) : NULL;
	bool complete = tok && json_tokener_get_error(tok) == json_tokener_success &&
			json_tokener_get_parse_end(tok) == len;
	if (tok)
		json_tokener_free(tok);
	free(buf);
	const char *t = o && complete && json_object_is_type(o, json_type_object) ?
			mig__str(o, "type") : NULL;
	if (!t) {
		json_object_put(o);
		return err__set(e, EPROTO, "%s: %s is not a JSON object with a type", c->peer, what);
	}
	if (!strcmp(t, "error")) {
		const char *why = mig__str(o, "error");
		rc = err__set(e, ECANCELED, "%s reported: %s", c->peer, why ? why : "an error");
		json_object_put(o);
		return rc;
	}
	if (type && strcmp(t, type)) {
		rc = err__set(e, EPROTO, "%s sent '%.40s' while vmhop waited for %s", c->peer, t, what);
		json_object_put(o);
		return rc;
	}
	*out = o;
	return 0;
}

struct json_object *mig__hello(const char *role, struct err *e)
{
	struct release_matrix m;
	struct release_policy pol;
	if (release__policy(&m, &pol, e) < 0)
		return NULL;
	struct json_object *o = json_object_new_object();
	struct json_object *formats = json_object_new_array();
	if (!o || !formats) {
		json_object_put(o);
		json_object_put(formats);
		err__set(e, ENOMEM, "out of memory");
		return NULL;
	}
	for (unsigned f = pol.self->read_min; f <= pol.self->read_max; f++)
		json_object_array_add(formats, json_object_new_int(f));
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = 0;
	json_object_object_add(o, "type", json_object_new_string("hello"));
	json_object_object_add(o, "proto", json_object_new_int(MIG_PROTO));
	json_object_object_add(o, "role", json_object_new_string(role));
	json_object_object_add(o, "release", json_object_new_string(pol.self->name));
	json_object_object_add(o, "release_ordinal", json_object_new_int(pol.self->ordinal));
	json_object_object_add(o, "write_format", json_object_new_int(pol.self->write_format));
	json_object_object_add(o, "read_formats", formats);
	json_object_object_add(o, "host", json_object_new_string(host));
	return o;
}

static int int_field(struct json_object *o, const char *name, int64_t min, int64_t max,
		     int64_t *out)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_int))
		return -1;
	int64_t x = json_object_get_int64(v);
	if (x < min || x > max)
		return -1;
	*out = x;
	return 0;
}

int mig__check_hello(struct json_object *peer, const char *peer_role, struct err *e)
{
	int64_t proto, ordinal, format;
	const char *role = mig__str(peer, "role"), *rel = mig__str(peer, "release");
	if (int_field(peer, "proto", 1, 65535, &proto) || !role || !rel ||
	    int_field(peer, "release_ordinal", 0, 65535, &ordinal) ||
	    int_field(peer, "write_format", 0, 65535, &format))
		return err__set(e, EPROTO, "the peer's hello is missing proto, role or release fields");
	if (proto != MIG_PROTO)
		return err__set(e, EPROTO, "the peer speaks migration protocol %lld, this vmhop %d",
				(long long)proto, MIG_PROTO);
	if (strcmp(role, peer_role))
		return err__set(e, EPROTO, "the peer is a migration %.20s, expected a %s", role, peer_role);
	if (strcmp(peer_role, "source"))
		return 0;
	/* The destination decides whether the source's level may move here: the
	 * same rule snapshot restore applies, before any memory moves. */
	struct release_matrix m;
	struct release_policy pol;
	int rc = release__policy(&m, &pol, e);
	if (rc)
		return rc;
	return release__check_incoming(&pol, rel, (unsigned)ordinal, (unsigned)format, e);
}
