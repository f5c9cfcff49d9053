/* Fault injection for migration tests: a spec "PHASE:ACTION" names a point
 * of the protocol and what to do there. Only honoured when the process runs
 * with VMHOP_TEST_HOOKS=1, so a production VMM cannot be told to misbehave.
 *
 * Phases: hello (after the hellos), round1 (first memory round), precopy (the
 * second round), stopcopy (vCPUs just stopped), ready (the source got ready /
 * the destination sent it), go (the source sent go / the destination got it).
 * Actions: cut (drop the connection), stall (go silent for the I/O timeout
 * plus a second, then carry on), kill (SIGKILL this process), delay (wait
 * half a second: lets a test order events between the two sides), stray
 * (channelN on the source only: that channel's first pages are sent as
 * pages of another channel's group, which the destination must refuse). */
#ifndef VMHOP_MIGRATE_FAULT_H
#define VMHOP_MIGRATE_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "vmhop/channel.h"
#include "vmhop/err.h"

#define MIGRATE_TEST_HOOKS_ENV "VMHOP_TEST_HOOKS"

/* Validates a spec (empty is fine); -EINVAL naming the problem otherwise,
 * -EPERM without VMHOP_TEST_HOOKS=1. */
int mig_fault__check(const char *spec, struct err *e);
/* At `phase`: performs the spec's action if it names this phase. Returns
 * -ECONNABORTED after a cut (the caller fails here), 0 otherwise. */
int mig_fault__at(const char *spec, const char *phase, struct channel *c,
		  uint64_t io_timeout_ms, struct err *e);
/* Whether the spec is exactly PHASE:ACTION (for actions the caller itself
 * carries out, like stray). */
bool mig_fault__is(const char *spec, const char *phase, const char *action);

#endif
