/* Live checkpoints: the guest keeps running while its memory goes to the
 * file in pre-copy rounds driven by the dirty log, and is paused only for
 * the last pages and the device state (it is left paused for the caller). Memory records for a page may then
 * appear several times in the file; a reader keeps the last (restore loads
 * them in order, the index points at the newest). Page data goes through a
 * staging buffer because the guest keeps changing it while it is written. */
#include <stdlib.h>
#include <string.h>

#include "snapshot/snapshot-internal.h"
#include "vmhop/dirty-log.h"
#include "vmhop/ram-extents.h"
#include "vmhop/section.h"
#include "vmhop/snapshot.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"
#include "vmhop/vm-sections.h"
#include "vmhop/vm.h"

#define STAGE_SIZE (1u << 20)
#define MAX_ROUNDS 8
/* Stop copying live once a round leaves this little, or stops shrinking. */
#define SMALL_ENOUGH (4u << 20)

struct live {
	struct vm *vm;
	struct stream_writer w;
	struct stream_mem_enc enc;
	struct stream_stage stage;
	struct ckpt_out out;
	struct stream_ram ram;
	struct dirty_log dl;
	uint64_t *bm;
	struct err *e;
};


static int writer_err(struct live *l, int rc)
{
	if (!l->e->code)
		err__set(l->e, l->w.err.code ? l->w.err.code : (rc < 0 ? -rc : EIO), "%s",
			 l->w.err.code ? l->w.err.msg : "writing the checkpoint failed");
	return rc < 0 ? rc : -EIO;
}

static int first_copy(struct live *l)
{
	struct ram_extents x;
	int rc = ram_extents__list(l->vm->mem.memfd, l->vm->mem.nr_pages, &x, l->e);
	for (size_t i = 0; !rc && i < x.n; i++)
		if ((rc = stream__mem_write_range(&l->w, &l->enc, &l->ram, x.v[i].first, x.v[i].count)))
			rc = writer_err(l, rc);
	ram_extents__free(&x);
	return rc;
}

/* Copies what the log reports, re-arming each run just before it is read. */
static int copy_dirty(struct live *l, uint64_t *copied)
{
	uint64_t n = l->vm->mem.nr_pages;
	*copied = 0;
	int rc = dirty_log__fetch(&l->dl, l->bm, l->e);
	for (uint64_t a = dirty_bitmap__next(l->bm, n, 0); !rc && a < n;
	     a = dirty_bitmap__next(l->bm, n, a)) {
		uint64_t b = dirty_bitmap__next_clear(l->bm, n, a);
		rc = dirty_log__clear(&l->dl, l->bm, a, b - a, l->e);
		if (!rc && (rc = stream__mem_write_range(&l->w, &l->enc, &l->ram, a, b - a)))
			rc = writer_err(l, rc);
		dirty_bitmap__clear_range(l->bm, a, b - a);
		*copied += b - a;
		a = b;
	}
	return rc;
}

int snapshot__write_live(struct vm *vm, int fd, bool compress, struct snapshot_chain_info *chain,
			 struct snapshot_stats *st, snapshot_instant_fn at_instant, void *opaque,
			 bool *paused_out, uint64_t *pause_t0, struct err *e)
{
	struct live l = { .vm = vm, .e = e };
	l.ram = (struct stream_ram){ .host = vm->mem.base, .npages = vm->mem.nr_pages };
	dirty_log__init(&l.dl, &vm->mem, vm->vm_fd);
	bool out = false, writer = false, encoder = false, logging = false, paused = false;
	int rc = ckpt_out__open(&l.out, fd, &l.stage, e);
	if (!rc)
		out = true;
	if (!rc && stream_stage__init(&l.stage, STAGE_SIZE, ckpt_out__sink, &l.out) < 0)
		rc = err__set(e, ENOMEM, "out of memory");
	if (!rc) {
		writer = true;
		rc = ckpt_out__writer(&l.out, &l.stage.io, &l.w, e);
	}
	struct stream_mem_enc_opts eo = { .compress = compress, .detect_zero = true };
	if (!rc && !(rc = stream__mem_enc_init(&l.enc, &eo, e)))
		encoder = true;
	if (!rc && !(l.bm = calloc(dirty_log__bitmap_words(&l.dl), sizeof(uint64_t))))
		rc = err__set(e, ENOMEM, "out of memory");
	if (!rc) {
		struct err ignore = { 0 };
		(void)dirty_log__enable_manual_protect(&l.dl, false, &ignore);
		if (!(rc = dirty_log__start(&l.dl, e)))
			logging = true;
	}
	if (!rc)
		rc = section__save_one(vm_sections__registry(vm), &l.w, VM_SECTION_CONFIG, e);
	if (!rc)
		rc = snapshot_chain__write(&l.w, chain, e);
	if (!rc)
		rc = first_copy(&l);
	/* Rounds while the guest runs, until little is left or it stops
	 * shrinking: the rest is copied with the vCPUs stopped. */
	uint64_t prev = UINT64_MAX, copied = 0;
	for (unsigned round = 0; !rc && round < MAX_ROUNDS; round++) {
		if ((rc = copy_dirty(&l, &copied)))
			break;
		if (copied * GUEST_PAGE_SIZE <= SMALL_ENOUGH || copied >= prev)
			break;
		prev = copied;
	}
	uint64_t p0 = util__now_ns();
	if (!rc && vm__state(vm) == VM_RUNNING) {
		if (!(rc = vm__pause(vm, e)))
			paused = true;
	}
	if (!rc)
		rc = copy_dirty(&l, &copied);
	if (!rc)
		rc = section__save_except(vm_sections__registry(vm), &l.w, VM_SECTION_CONFIG, e);
	/* Stopped before the instant: the caller may start its own tracking
	 * on the same slots there. */
	if (logging) {
		struct err ignore = { 0 };
		dirty_log__stop(&l.dl, &ignore);
	}
	/* The content is complete: the guest may run while the END record
	 * waits for the digest threads and the last stage reaches the file. */
	if (!rc) {
		at_instant(opaque, paused, p0);
		paused = false;
	}
	if (!rc && (rc = stream__finish(&l.w)))
		rc = writer_err(&l, rc);
	if (!rc && (rc = stream_stage__flush(&l.stage)) < 0)
		rc = err__setsys(e, -rc, "writing the checkpoint");
	*paused_out = paused;
	*pause_t0 = p0;
	dirty_log__destroy(&l.dl);
	free(l.bm);
	if (encoder) {
		st->pages_zero = l.enc.stats.pages[STREAM_PAGE_ZERO];
		st->pages_raw = l.enc.stats.pages[STREAM_PAGE_RAW];
		st->pages_zstd = l.enc.stats.pages[STREAM_PAGE_ZSTD];
		stream__mem_enc_free(&l.enc);
	}
	if (writer) {
		st->bytes = l.w.off;
		stream__writer_free(&l.w);
	}
	stream_stage__free(&l.stage);
	if (out)
		ckpt_out__close(&l.out);
	return rc;
}
