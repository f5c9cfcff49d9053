/* The client side of a VM's control socket, shared by the commands that talk
 * to a running VM (ctl, migrate-send, snapshot create). Blocking calls; each
 * prints its own one-line error, prefixed with `who`. */
#ifndef VMHOP_CLI_CTL_CLIENT_H
#define VMHOP_CLI_CTL_CLIENT_H

#include <stdint.h>

/* A connected fd, or -1. */
int ctl_client__connect(const char *path, const char *who);
/* Sends one request line (the newline is added); 0 or -errno. */
int ctl_client__send(int fd, const char *path, const char *line, const char *who);
/* One reply line without its newline (malloc'd), or NULL after an error or
 * timeout_ms (0: wait for ever). */
char *ctl_client__read(int fd, const char *path, uint64_t timeout_ms, const char *who);

#endif
