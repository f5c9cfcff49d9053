/* Diagnostics on stderr, each line prefixed with the program and a module tag. */
#ifndef VMHOP_LOG_H
#define VMHOP_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log__set_level(enum log_level lvl);
enum log_level log__level(void);
void log__msg(enum log_level lvl, const char *tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#ifndef LOG_TAG
#define LOG_TAG "vmhop"
#endif
#define pr_err(...)   log__msg(LOG_ERROR, LOG_TAG, __VA_ARGS__)
#define pr_warn(...)  log__msg(LOG_WARN, LOG_TAG, __VA_ARGS__)
#define pr_info(...)  log__msg(LOG_INFO, LOG_TAG, __VA_ARGS__)
#define pr_debug(...) log__msg(LOG_DEBUG, LOG_TAG, __VA_ARGS__)

#endif
