#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vmhop/err.h"

static int verr(struct err *e, int code, int sys, const char *fmt, va_list ap)
{
	if (code <= 0)
		code = EIO;
	if (!e)
		return -code;
	if (e->code)
		return -code;
	e->code = code;
	int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	if (sys && n >= 0 && (size_t)n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, ": %s", strerror(code));
	return -code;
}

int err__set(struct err *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = verr(e, code, 0, fmt, ap);
	va_end(ap);
	return r;
}

int err__setsys(struct err *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = verr(e, code, 1, fmt, ap);
	va_end(ap);
	return r;
}

void err__clear(struct err *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}
