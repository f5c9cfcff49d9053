#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/snapshot-internal.h"
#include "vmhop/dirty-log.h"
#include "vmhop/ram-extents.h"
#include "vmhop/section.h"
#include "vmhop/snapshot.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"
#include "vmhop/vm-sections.h"
#include "vmhop/vm.h"

static int fsync_dir(const char *path, struct err *e)
{
	char *copy = strdup(path);
	if (!copy)
		return err__set(e, ENOMEM, "out of memory");
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;
	if (fd < 0 || fsync(fd) < 0)
		r = err__setsys(e, errno, "syncing the directory of %s", path);
	if (fd >= 0)
		close(fd);
	free(copy);
	return r;
}

/* Sends the pages set in bm (an incremental checkpoint's memory). */
static int write_pages(struct stream_writer *w, struct stream_mem_enc *enc,
		       const struct stream_ram *ram, const uint64_t *bm)
{
	uint64_t n = ram->npages;
	for (uint64_t a = dirty_bitmap__next(bm, n, 0); a < n; a = dirty_bitmap__next(bm, n, a)) {
		uint64_t b = dirty_bitmap__next_clear(bm, n, a);
		int rc = stream__mem_write_range(w, enc, ram, a, b - a);
		if (rc < 0)
			return rc;
		a = b;
	}
	return 0;
}

/* A full checkpoint's memory: the memfd's data extents only. Pages never
 * populated read back as zero (a restore starts from zeroed RAM), and
 * reading them here would make the kernel allocate them. */
static int write_populated(struct vm *vm, struct stream_writer *w, struct stream_mem_enc *enc,
			   const struct stream_ram *ram, struct err *e)
{
	struct ram_extents x;
	int rc = ram_extents__list(vm->mem.memfd, ram->npages, &x, e);
	for (size_t i = 0; !rc && i < x.n; i++)
		rc = stream__mem_write_range(w, enc, ram, x.v[i].first, x.v[i].count);
	ram_extents__free(&x);
	return rc;
}

/* A paused checkpoint's writing: the VM's records, then the index and the
 * END record, whose digest waits for the file hasher's threads (which hash
 * what is written while the rest is being written). */
struct ckpt_write {
	struct ckpt_out out;
	struct stream_writer w;
	struct stream_mem_enc enc;
	bool have_out, have_writer, have_enc;
};

static int writer_err(struct ckpt_write *c, int r, const char *what, struct err *e)
{
	if (r < 0 && !e->code)
		err__set(e, c->w.err.code ? c->w.err.code : -r, "%s", c->w.err.code ? c->w.err.msg : what);
	return r;
}

static int ckpt_write__open(struct ckpt_write *c, int fd, bool compress, struct err *e)
{
	memset(c, 0, sizeof(*c));
	int r = ckpt_out__open(&c->out, fd, NULL, e);
	if (!r) {
		c->have_out = true;
		c->have_writer = true;
		r = ckpt_out__writer(&c->out, &c->out.io, &c->w, e);
	}
	struct stream_mem_enc_opts eo = { .compress = compress, .detect_zero = true };
	if (!r && !(r = stream__mem_enc_init(&c->enc, &eo, e)))
		c->have_enc = true;
	return r;
}

/* Configuration, chain, disks, then all of memory, or only the pages in
 * `dirty` for an incremental one, then the devices, the index and END. */
static int ckpt_write__body(struct ckpt_write *c, struct vm *vm, bool include_disks,
			    struct snapshot_chain_info *chain, const uint64_t *dirty,
			    struct err *e)
{
	struct section_registry *reg = vm_sections__registry(vm);
	struct stream_ram ram = { .host = vm->mem.base, .npages = vm->mem.nr_pages };
	struct stream_writer *w = &c->w;
	int r = section__save_one(reg, w, VM_SECTION_CONFIG, e);
	if (!r)
		r = snapshot_chain__write(w, chain, e);
	/* An incremental checkpoint holds the disks' changes only. */
	if (!r && include_disks)
		r = snapshot_disk__save(w, vm, dirty != NULL, e);
	/* Memory before the device state: a device's post_load may look at
	 * guest memory (virtio rings), as after a migration. */
	if (!r)
		r = writer_err(c, dirty ? write_pages(w, &c->enc, &ram, dirty) :
					  write_populated(vm, w, &c->enc, &ram, e), "writing memory", e);
	if (!r)
		r = section__save_except(reg, w, VM_SECTION_CONFIG, e);
	if (!r)
		r = writer_err(c, stream__finish(w), "writing the end", e);
	return r;
}

static void ckpt_write__close(struct ckpt_write *c, struct snapshot_stats *st)
{
	if (c->have_enc) {
		st->pages_zero = c->enc.stats.pages[STREAM_PAGE_ZERO];
		st->pages_raw = c->enc.stats.pages[STREAM_PAGE_RAW];
		st->pages_zstd = c->enc.stats.pages[STREAM_PAGE_ZSTD];
		stream__mem_enc_free(&c->enc);
	}
	if (c->have_writer) {
		st->bytes = c->w.off;
		stream__writer_free(&c->w);
	}
	if (c->have_out)
		ckpt_out__close(&c->out);
}

/* The checkpoint's instant, still paused: the next incremental one counts
 * from here (if this one fails after all, there is no base to count from
 * and the next checkpoint must be full). */
struct instant {
	struct vm *vm;
	struct snapshot_chain_info *chain;
	const char *path;
	bool include_disks;
	struct snapshot_stats *st;
	bool tracking;
};

static void start_tracking(struct instant *in)
{
	struct err te = { 0 };
	in->tracking = snapshot_track__restart(in->vm, in->chain, in->path, &te) == 0;
	if (in->tracking)
		snapshot_track__set_disks(in->vm, in->include_disks);
}

static void resume_after(struct vm *vm, uint64_t p0, struct snapshot_stats *st)
{
	struct err ignore = { 0 };
	vm__resume(vm, &ignore);
	st->pause_ns = util__now_ns() - p0;
}

/* The live write's instant (snapshot_instant_fn). */
static void live_at_instant(void *opaque, bool paused, uint64_t p0)
{
	struct instant *in = opaque;
	start_tracking(in);
	if (paused)
		resume_after(in->vm, p0, in->st);
}

int snapshot__create(struct vm *vm, const char *path, const struct snapshot_create_opts *o,
		     struct snapshot_stats *st, struct err *e)
{
	memset(st, 0, sizeof(*st));
	uint64_t t0 = util__now_ns();
	struct stat sb;
	if (lstat(path, &sb) == 0)
		return err__set(e, EEXIST, "%s already exists: checkpoints never overwrite a file", path);
	if (o->live && o->base)
		return err__set(e, EINVAL, "an incremental checkpoint (base) is written paused: "
				"drop live, or take a full live one");
	if (o->live && o->include_disks)
		return err__set(e, EINVAL, "disks=include copies the disks with the vCPUs stopped: "
				"drop live, or use disks=external");
	struct snapshot_chain_info chain;
	int r = snapshot_chain__new(&chain, e);
	struct snapshot_chain_info prev;
	if (!r && o->base && !(r = snapshot_track__check_base(vm, o->base, &prev, e))) {
		memcpy(chain.base_uuid, prev.base_uuid, sizeof(chain.base_uuid));
		chain.seq = prev.seq;
		memcpy(chain.base_name, prev.base_name, sizeof(chain.base_name));
	}
	if (r < 0)
		return r;
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 16);
	if (!tmp)
		return err__set(e, ENOMEM, "out of memory");
	snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = err__setsys(e, errno, "cannot create a checkpoint next to %s", path);
		free(tmp);
		return r;
	}
	r = section__check_migratable(vm_sections__registry(vm), e);
	/* Just restored: the memfd is whole only once the fill is done. Waited
	 * for before the pause, so the pause stays short. */
	if (!r)
		r = guest_mem__wait_whole(&vm->mem, e);
	bool was_running = vm__state(vm) == VM_RUNNING, paused = false, fetched = false;
	struct ckpt_write cw;
	bool writing = false, armed = false;
	uint64_t p0 = util__now_ns();
	struct instant in = { .vm = vm, .chain = &chain, .path = path,
			      .include_disks = o->include_disks, .st = st };
	if (!r && o->live) {
		/* The live write needs the dirty log itself. */
		snapshot__track_drop(vm);
		r = snapshot__write_live(vm, fd, o->compress, &chain, st, live_at_instant, &in,
					 &paused, &p0, e);
	} else if (!r) {
		armed = snapshot_track__arm(vm);
		if (was_running && !(r = vm__pause(vm, e)))
			paused = true;
		const uint64_t *dirty = NULL;
		if (!r && o->base && !(dirty = snapshot_track__fetch(vm, e)))
			r = -e->code;
		fetched = dirty != NULL;
		if (!r) {
			writing = true;
			r = ckpt_write__open(&cw, fd, o->compress, e);
		}
		/* Paused until the digest is done too: the guest's vCPUs would
		 * take the CPUs its threads need, and the checkpoint would take
		 * longer as a whole. */
		if (!r)
			r = ckpt_write__body(&cw, vm, o->include_disks, &chain, dirty, e);
	}
	/* A paused one's instant: still paused (the live write has had its). */
	if (!r && !o->live)
		start_tracking(&in);
	/* A failed incremental one consumed the changes since its base: the
	 * next checkpoint has nothing to count from and must be full. Nor has
	 * one after a failed first checkpoint (the tracker armed for it). */
	if (r < 0 && (fetched || armed))
		snapshot__track_drop(vm);
	if (paused)
		resume_after(vm, p0, st);
	if (writing)
		ckpt_write__close(&cw, st);
	if (!r && fsync(fd) < 0)
		r = err__setsys(e, errno, "writing %s", tmp);
	if (close(fd) < 0 && !r)
		r = err__setsys(e, errno, "writing %s", tmp);
	/* Link under the final name without replacing anything that appeared
	 * meanwhile: a checkpoint never clobbers a file. */
	if (!r && link(tmp, path) < 0)
		r = err__setsys(e, errno, "cannot name the checkpoint %s", path);
	unlink(tmp);
	if (!r)
		r = fsync_dir(path, e);
	if (r < 0 && in.tracking)
		snapshot__track_drop(vm);
	free(tmp);
	memcpy(st->uuid, chain.uuid, sizeof(st->uuid));
	st->incremental = o->base != NULL;
	st->total_ns = util__now_ns() - t0;
	return r;
}
