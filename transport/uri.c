/* Transport addresses: `tcp:HOST:PORT`, `tls:HOST:PORT` and
 * `rdma:HOST:PORT`, HOST a name, an IPv4 address or a bracketed IPv6
 * literal; `unix:PATH`; `file:PATH`. */
#include <stdio.h>
#include <string.h>

#include "vmhop/channel.h"
#include "vmhop/util.h"

static int parse_unix(const char *uri, struct channel_addr *a, struct err *e)
{
	const char *path = uri + 5;
	a->kind = CHANNEL_UNIX;
	if (!*path)
		return err__set(e, EINVAL, "address %s: missing path (expected unix:PATH)", uri);
	if (strlen(path) >= 108)	/* sun_path */
		return err__set(e, EINVAL, "address %s: the path is longer than 107 bytes", uri);
	snprintf(a->host, sizeof(a->host), "%s", path);
	return 0;
}

static int parse_file(const char *uri, struct channel_addr *a, struct err *e)
{
	const char *path = uri + 5;
	a->kind = CHANNEL_FILE;
	if (!*path)
		return err__set(e, EINVAL, "address %s: missing path (expected file:PATH)", uri);
	if (strlen(path) >= sizeof(a->host))
		return err__set(e, EINVAL, "address %s: the path is longer than %zu bytes", uri,
				sizeof(a->host) - 1);
	snprintf(a->host, sizeof(a->host), "%s", path);
	return 0;
}

int channel__parse_uri(const char *uri, bool listen, struct channel_addr *a, struct err *e)
{
	memset(a, 0, sizeof(*a));
	if (!strncmp(uri, "unix:", 5))
		return parse_unix(uri, a, e);
	if (!strncmp(uri, "file:", 5))
		return parse_file(uri, a, e);
	if (!strncmp(uri, "tcp:", 4))
		a->kind = CHANNEL_TCP;
	else if (!strncmp(uri, "tls:", 4))
		a->kind = CHANNEL_TLS;
	else if (!strncmp(uri, "rdma:", 5))
		a->kind = CHANNEL_RDMA;
	else
		return err__set(e, EINVAL, "address %s: unknown transport (expected tcp:HOST:PORT, "
				"tls:HOST:PORT, rdma:HOST:PORT, unix:PATH or file:PATH)", uri);
	const char *h = strchr(uri, ':') + 1, *colon;
	size_t hlen;
	if (*h == '[') {
		const char *close = strchr(h, ']');
		if (!close || close[1] != ':')
			return err__set(e, EINVAL, "address %s: expected [IPV6]:PORT", uri);
		h++;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(h, ':');
		if (!colon)
			return err__set(e, EINVAL, "address %s: missing :PORT", uri);
		hlen = (size_t)(colon - h);
		if (memchr(h, ':', hlen))
			return err__set(e, EINVAL, "address %s: put an IPv6 address in brackets", uri);
	}
	if (!hlen || hlen >= sizeof(a->host))
		return err__set(e, EINVAL, "address %s: missing or too long host", uri);
	memcpy(a->host, h, hlen);
	uint64_t port;
	if (util__parse_uint(colon + 1, listen ? 0 : 1, 65535, &port) < 0)
		return err__set(e, EINVAL, "address %s: port must be a number from %d to 65535",
				uri, listen ? 0 : 1);
	snprintf(a->port, sizeof(a->port), "%u", (unsigned)port);
	return 0;
}
