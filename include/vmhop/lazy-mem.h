/* Guest RAM filled from mapped checkpoint files after the vCPUs start.
 *
 * A restore checks the files first (every record's CRC) and records, per
 * guest page, where its newest copy lies: a raw page or a zstd frame in one
 * of the files, or nothing (a zero or never-populated page, left a hole in
 * the memfd). Then either
 *  - lazy_mem__start: the memfd's shared mapping is registered with
 *    userfaultfd (missing pages); a fault thread fills each page the guest,
 *    KVM on its behalf or the VMM touches first (UFFDIO_COPY straight from
 *    the file mapping, UFFDIO_ZEROPAGE for zero pages), and a populator
 *    thread fills the rest in page order, after which the registration and
 *    the files are dropped; or
 *  - lazy_mem__fill_now: the same pages copied in place at once (no
 *    userfaultfd: the eager path).
 * Anything that reads guest RAM wholesale through the memfd (its data
 * extents) must call guest_mem__wait_whole first: until the populator is
 * done, a page not yet filled is a hole there. Page-by-page reads through
 * the mapping are always right (they fault and get filled). */
#ifndef VMHOP_LAZY_MEM_H
#define VMHOP_LAZY_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmhop/err.h"

struct guest_mem;
struct lazy_mem;

#define LAZY_MEM_MAX_FILES 256
#define LAZY_MEM_ZERO 0		/* page kinds, as the stream's */
#define LAZY_MEM_RAW 1
#define LAZY_MEM_ZSTD 2

/* Called once, from a filler thread, when a page cannot be filled (the
 * file changed or shrank under the restore): the VM must stop. */
typedef void (*lazy_mem_fail_fn)(void *opaque, const char *why);

struct lazy_mem_stats {
	uint64_t pages_file;		/* pages with data in the files */
	uint64_t pages_faulted;		/* filled on first touch */
	uint64_t pages_zero_faulted;	/* zero pages given on first touch */
	uint64_t faults;
	uint64_t done_ns;		/* start -> every page in place */
};

/* An empty index for npages pages of guest RAM. */
struct lazy_mem *lazy_mem__new(uint64_t npages, struct err *e);
/* Hands over a read-only mapping of a whole file (and its fd, used for
 * zstd frames once the guest runs): returns its file number (>= 0). The
 * mapping and fd are released by lazy_mem__destroy or once the populator
 * is done, whatever happens. */
int lazy_mem__add_file(struct lazy_mem *l, int fd, const uint8_t *map, size_t len,
		       struct err *e);
/* Pages pfn..pfn+n-1 now come from file `file` at data_off (raw: n pages
 * back to back; zstd: n == 1, data_off at the frame's u32 length) or are
 * zero. A later call for a page replaces an earlier one, so a chain is
 * indexed oldest file first. The caller has checked the range. */
void lazy_mem__set(struct lazy_mem *l, uint64_t pfn, uint32_t n, unsigned file, uint8_t kind,
		   uint64_t data_off);
/* Registers m's memfd mapping (m->nr_pages must be the index's npages) and
 * starts the fault and populator threads;
 * the guest may run from here on. Attaches l to the guest_mem, which then
 * owns it (guest_mem__destroy ends it). -EOPNOTSUPP when userfaultfd cannot
 * be used here (then l is untouched: lazy_mem__fill_now still works). */
int lazy_mem__start(struct lazy_mem *l, struct guest_mem *m, lazy_mem_fail_fn fail, void *opaque,
		    struct err *e);
/* Before lazy_mem__start: the populator waits until someone calls
 * lazy_mem__wait, so every page the guest touches until then comes through
 * the fault thread (tests: VMHOP_TEST_LAZY_DEFER=1 on a restore). */
void lazy_mem__defer(struct lazy_mem *l);
/* Copies every page into m now and releases the files (no threads). */
int lazy_mem__fill_now(struct lazy_mem *l, struct guest_mem *m, struct err *e);
/* Blocks until every page is in place (at once when not started or done);
 * -EIO when filling failed (the VM was stopped through the fail callback). */
int lazy_mem__wait(struct lazy_mem *l, struct err *e);
void lazy_mem__get_stats(struct lazy_mem *l, struct lazy_mem_stats *st);
/* Stops the threads (a fill in progress is abandoned) and frees l. */
void lazy_mem__destroy(struct lazy_mem *l);

#endif
