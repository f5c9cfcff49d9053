/* The decisions of `vmhop snapshot schedule`, apart from its I/O: how its
 * checkpoints are named, which kind comes next, and which files pruning may
 * delete. Pure functions on names and lists (snapshot/schedule-prune.c), so
 * that they are tested without a VM or a directory.
 *
 * A scheduled checkpoint is named NAME-YYYYmmddTHHMMSS.mmmZ-full.vmhop or
 * NAME-YYYYmmddTHHMMSS.mmmZ-incr.vmhop (UTC), so that names sort by time. A
 * chain is a full checkpoint and the incrementals after it, each based on the
 * one before. Any other name (another VM's checkpoints, `FILE.tmp.XXXXXX` of
 * a write in progress, the operator's own files) is not the scheduler's and is
 * never touched. */
#ifndef VMHOP_SCHEDULE_H
#define VMHOP_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum schedule_kind { SCHEDULE_FULL, SCHEDULE_INCR };

/* "-YYYYmmddTHHMMSS.mmmZ-full.vmhop" */
#define SCHEDULE_TS_LEN 20
#define SCHEDULE_SUFFIX_LEN (1 + SCHEDULE_TS_LEN + 11)
#define SCHEDULE_NAME_MAX 64	/* NAME, without the suffix, with its NUL */

/* The VM's name made safe for a file name: [A-Za-z0-9._+-] kept, anything else
 * becomes '_', at most SCHEDULE_NAME_MAX - 1 bytes; "vm" when empty or when
 * it would be "." or "..". */
void schedule__vm_name(const char *name, char out[SCHEDULE_NAME_MAX]);

/* NAME-TS-KIND.vmhop for ms since the epoch (UTC). 0, or -EINVAL (ms
 * negative or past year 9999), -ENAMETOOLONG (len too small). */
int schedule__format_name(const char *vm_name, int64_t ms, enum schedule_kind kind,
			  char *buf, size_t len);

/* 0 when file is a scheduled checkpoint of vm_name (exactly that NAME, a
 * valid timestamp, a kind), with its time and kind; -EINVAL otherwise. */
int schedule__parse_name(const char *vm_name, const char *file, int64_t *ms,
			 enum schedule_kind *kind);

/* "30s", "5m", "1h", "2d", "500ms"; a bare number is seconds. At least
 * 100 ms, at most 366 days. 0 or -EINVAL. */
int schedule__parse_duration(const char *s, uint64_t *ms);

struct schedule_file {
	char *name;			/* file name, no directory (owned) */
	int64_t ms;
	enum schedule_kind kind;
};

/* The scheduler's files in one directory for one VM, oldest first once
 * sorted. */
struct schedule_set {
	struct schedule_file *files;
	size_t n, cap;
};

/* Adds file if it is vm_name's scheduled checkpoint: 1 added, 0 not ours,
 * -ENOMEM. */
int schedule__set_add(struct schedule_set *s, const char *vm_name, const char *file);
/* Oldest first (by time, then full before incr, then name). */
void schedule__set_sort(struct schedule_set *s);
void schedule__set_free(struct schedule_set *s);

/* Restorable chains in a sorted set: full checkpoints. */
size_t schedule__chains(const struct schedule_set *s);

/* What to take next in a sorted set: SCHEDULE_FULL when there is no chain,
 * when force_full, or when the newest chain already has full_every
 * checkpoints; otherwise SCHEDULE_INCR with *base the newest file. */
enum schedule_kind schedule__next(const struct schedule_set *s, unsigned full_every,
				  bool force_full, const struct schedule_file **base);

/* Which files of a sorted set pruning deletes to keep the newest `keep`
 * restorable chains: everything older than the oldest kept full checkpoint
 * (older chains, and incrementals whose full checkpoint is gone). Sets
 * del[i] for each file to delete and returns how many; *kept gets the
 * number of chains that remain. keep 0 deletes nothing. */
size_t schedule__prune(const struct schedule_set *s, unsigned keep, bool *del, size_t *kept);

#endif
