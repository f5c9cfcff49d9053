/* Transport addresses: `tcp:HOST:PORT`, HOST a name, an IPv4 address or a
 * bracketed IPv6 literal. */
#include <stdio.h>
#include <string.h>

#include "vmhop/channel.h"
#include "vmhop/util.h"

int channel__parse_uri(const char *uri, bool listen, struct channel_addr *a, struct err *e)
{
	memset(a, 0, sizeof(*a));
	if (strncmp(uri, "tcp:", 4))
		return err__set(e, EINVAL, "address %s: unknown transport (expected tcp:HOST:PORT)", uri);
	a->kind = CHANNEL_TCP;
	const char *h = uri + 4, *colon;
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
