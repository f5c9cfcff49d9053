#include <stdarg.h>
#include <stdio.h>

#include "vmhop/log.h"

/* The one process-wide setting: how chatty diagnostics are. */
static enum log_level current_level = LOG_WARN;

void log__set_level(enum log_level lvl)
{
	current_level = lvl;
}

enum log_level log__level(void)
{
	return current_level;
}

void log__msg(enum log_level lvl, const char *tag, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	if (lvl > current_level)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One fprintf per line so concurrent threads do not interleave. */
	fprintf(stderr, "vmhop: %s: %s: %s\n", tag, names[lvl], line);
}
