/* Test hooks for the fault-injection tests (migrate-fault.h). */
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmhop/migrate-fault.h"

static const char *const phases[] = { "hello", "round1", "disk", "precopy", "diskround",
				      "stopcopy", "ready", "go" };
static const char *const actions[] = { "cut", "stall", "kill", "delay", "stray" };

static bool one_of(const char *s, size_t len, const char *const *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(set[i]) == len && !memcmp(s, set[i], len))
			return true;
	return false;
}

/* "channelN": the N-th further channel of --channels (1..15). */
static bool channel_phase(const char *s, size_t len)
{
	if (len < 8 || len > 9 || memcmp(s, "channel", 7))
		return false;
	unsigned n = 0;
	for (size_t i = 7; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (unsigned)(s[i] - '0');
	}
	return n >= 1 && n <= 15;
}

int mig_fault__check(const char *spec, struct err *e)
{
	if (!spec || !*spec)
		return 0;
	const char *hooks = getenv(MIGRATE_TEST_HOOKS_ENV);
	if (!hooks || strcmp(hooks, "1"))
		return err__set(e, EPERM, "fault injection is a test hook: the VMM must run with %s=1",
				MIGRATE_TEST_HOOKS_ENV);
	const char *colon = strchr(spec, ':');
	if (!colon || (!one_of(spec, (size_t)(colon - spec), phases, sizeof(phases) / sizeof(*phases)) &&
		       !channel_phase(spec, (size_t)(colon - spec))) ||
	    !one_of(colon + 1, strlen(colon + 1), actions, sizeof(actions) / sizeof(*actions)))
		return err__set(e, EINVAL, "fault '%s': expected PHASE:ACTION with PHASE one of "
				"hello, round1, disk, precopy, diskround, stopcopy, ready, go, channel1..channel15 and ACTION cut, stall, kill, delay or stray",
				spec);
	return 0;
}

bool mig_fault__is(const char *spec, const char *phase, const char *action)
{
	size_t n = strlen(phase);
	return spec && !strncmp(spec, phase, n) && spec[n] == ':' && !strcmp(spec + n + 1, action);
}

int mig_fault__at(const char *spec, const char *phase, struct channel *c,
		  uint64_t io_timeout_ms, struct err *e)
{
	size_t n = strlen(phase);
	if (!spec || strncmp(spec, phase, n) || spec[n] != ':')
		return 0;
	const char *action = spec + n + 1;
	if (!strcmp(action, "kill")) {
		raise(SIGKILL);
	} else if (!strcmp(action, "cut")) {
		channel__shutdown(c);
		return err__set(e, ECONNABORTED, "connection cut at %s (test hook)", phase);
	} else if (!strcmp(action, "stall") || !strcmp(action, "delay")) {
		uint64_t ms = action[0] == 's' ? io_timeout_ms + 1000 : 500;
		struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) < 0)
			;
	}
	return 0;
}
