/* Error reports: library code fills a struct err and returns -errno; only the
 * command layer prints it (one line) and chooses the exit code. */
#ifndef VMHOP_ERR_H
#define VMHOP_ERR_H

#include <errno.h>

struct err {
	int code;		/* positive errno value, 0 when no error */
	char msg[512];		/* one line, no trailing newline */
};

/* Records the first error only (later ones would hide the cause) and returns
 * -code so callers can write `return err__set(e, EINVAL, "...")`. */
int err__set(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Like err__set but appends ": strerror(code)". */
int err__setsys(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void err__clear(struct err *e);

#endif
