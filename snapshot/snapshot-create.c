#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmhop/release.h"
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

/* Writes the whole VM (paused) into fd. */
static int write_stream(struct vm *vm, int fd, bool compress, struct snapshot_stats *st,
			struct err *e)
{
	struct release_matrix m;
	struct release_policy pol;
	int r = release__policy(&m, &pol, e);
	if (r < 0)
		return r;
	struct stream_io io;
	stream__io_fd(&io, fd);
	struct stream_writer w;
	r = stream__writer_init_release(&w, &io, &pol, STREAM_FEAT_DIGEST, true);
	if (r < 0) {
		err__set(e, w.err.code ? w.err.code : -r, "%s", w.err.code ? w.err.msg : "stream writer");
		stream__writer_free(&w);
		return r;
	}
	struct stream_mem_enc enc;
	struct stream_mem_enc_opts eo = { .compress = compress, .detect_zero = true };
	r = stream__mem_enc_init(&enc, &eo, e);
	if (r < 0) {
		stream__writer_free(&w);
		return r;
	}
	struct stream_ram ram = { .host = vm->mem.base, .npages = vm->mem.nr_pages };
	r = section__save_stream(vm_sections__registry(vm), &w, &enc, &ram, e);
	if (r < 0 && w.err.code && !e->code)
		err__set(e, w.err.code, "%s", w.err.msg);
	st->pages_zero = enc.stats.pages[STREAM_PAGE_ZERO];
	st->pages_raw = enc.stats.pages[STREAM_PAGE_RAW];
	st->pages_zstd = enc.stats.pages[STREAM_PAGE_ZSTD];
	st->bytes = w.off;
	stream__mem_enc_free(&enc);
	stream__writer_free(&w);
	return r;
}

int snapshot__create(struct vm *vm, const char *path, bool compress, bool live,
		     struct snapshot_stats *st, struct err *e)
{
	memset(st, 0, sizeof(*st));
	uint64_t t0 = util__now_ns();
	struct stat sb;
	if (lstat(path, &sb) == 0)
		return err__set(e, EEXIST, "%s already exists: checkpoints never overwrite a file", path);
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 16);
	if (!tmp)
		return err__set(e, ENOMEM, "out of memory");
	snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		int r = err__setsys(e, errno, "cannot create a checkpoint next to %s", path);
		free(tmp);
		return r;
	}
	int r = section__check_migratable(vm_sections__registry(vm), e);
	if (!r && live) {
		r = snapshot__write_live(vm, fd, compress, st, e);
		goto written;
	}
	bool was_running = vm__state(vm) == VM_RUNNING;
	uint64_t p0 = util__now_ns();
	if (!r && was_running)
		r = vm__pause(vm, e);
	if (!r)
		r = write_stream(vm, fd, compress, st, e);
	if (was_running) {
		struct err ignore = { 0 };
		vm__resume(vm, &ignore);
		st->pause_ns = util__now_ns() - p0;
	}
written:
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
	free(tmp);
	st->total_ns = util__now_ns() - t0;
	return r;
}
