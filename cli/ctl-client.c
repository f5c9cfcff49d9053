#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/ctl-client.h"
#include "vmhop/util.h"

/* Far above any reply today (query-config is a few KiB), low enough that a
 * confused peer cannot make the client eat memory. */
#define REPLY_MAX (16 * 1024 * 1024)

int ctl_client__connect(const char *path, const char *who)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "%s: cannot connect to %s: %s\n", who, path, strerror(ENAMETOOLONG));
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "%s: cannot connect to %s: %s\n", who, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int ctl_client__send(int fd, const char *path, const char *line, const char *who)
{
	size_t len = strlen(line);
	char *buf = malloc(len + 1);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, line, len);
	buf[len] = '\n';
	size_t off = 0;
	int r = 0;
	while (off < len + 1) {
		/* MSG_NOSIGNAL: a VM that hangs up gets an error, not SIGPIPE. */
		ssize_t n = send(fd, buf + off, len + 1 - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			fprintf(stderr, "%s: cannot send to %s: %s\n", who, path, strerror(errno));
			break;
		}
		off += (size_t)n;
	}
	free(buf);
	return r;
}

char *ctl_client__read(int fd, const char *path, uint64_t timeout_ms, const char *who)
{
	uint64_t deadline = util__now_ns() + timeout_ms * 1000000ULL;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		int wait_ms = -1;
		if (timeout_ms) {
			uint64_t now = util__now_ns();
			if (now >= deadline) {
				fprintf(stderr, "%s: no reply from %s within %llu ms\n", who, path,
					(unsigned long long)timeout_ms);
				break;
			}
			wait_ms = (int)MIN((deadline - now + 999999) / 1000000, (uint64_t)INT32_MAX);
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, wait_ms);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0)
			continue;	/* the deadline check above reports it */
		if (len + 1 == cap) {
			if (cap >= REPLY_MAX) {
				fprintf(stderr, "%s: reply from %s is larger than %d bytes\n",
					who, path, REPLY_MAX);
				break;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = pr < 0 ? -1 : read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "%s: %s closed the connection without replying%s%s\n",
				who, path, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			break;
		}
		char *nl = memchr(buf + len, '\n', (size_t)n);
		len += (size_t)n;
		if (nl) {
			*nl = '\0';
			return buf;
		}
	}
	free(buf);
	return NULL;
}

