/* snapshot restore: a VM rebuilt from a checkpoint (and its chain). The
 * files are mapped, not read: one pass over each checks every record's CRC
 * and indexes where each guest page's newest copy lies, the device state is
 * loaded, and the vCPUs start while the pages are still in the files:
 * vmm/lazy-mem.c fills each one on first touch and the rest behind the
 * guest's back (or all of them at once with eager filling). The whole-file
 * SHA-256 is `snapshot verify`'s job: the CRCs already catch any corrupt
 * byte, and hashing every byte again would cost more than the restore. */
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot/snapshot-internal.h"
#include "vmhop/lazy-mem.h"
#include "vmhop/log.h"
#include "vmhop/release.h"
#include "vmhop/section.h"
#include "vmhop/snapshot.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"
#include "vmhop/vm-config.h"
#include "vmhop/vm-sections.h"
#include "vmhop/vm.h"

static int reader_err(struct stream_reader *r, int rc, struct err *e)
{
	return stream__reader_err(r, rc, "", e);
}

struct opened {
	int fd;
	struct stream_io io;
	struct stream_reader r;
};

static int open_stream(const char *path, struct opened *f, const struct release_policy *pol,
		       struct err *e)
{
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0)
		return err__setsys(e, errno, "cannot open %s", path);
	stream__io_fd(&f->io, f->fd);
	int rc = stream__reader_init(&f->r, &f->io);
	if (!rc && (rc = stream__read_header(&f->r, NULL, pol)) < 0)
		reader_err(&f->r, rc, e);
	return rc;
}

static void close_stream(struct opened *f)
{
	stream__reader_free(&f->r);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/* The record after the configuration: the chain section, when there is one
 * (checkpoints before chains existed have none and count as full). */
static int read_chain(struct stream_reader *r, struct snapshot_chain_info *c, uint8_t **pending,
		      uint32_t *pending_len, uint64_t *pending_base, struct err *e)
{
	memset(c, 0, sizeof(*c));
	*pending = NULL;
	struct stream_rec rec;
	int rc = stream__next_record(r, &rec);
	if (rc <= 0)
		return rc < 0 ? reader_err(r, rc, e) : err__set(e, EINVAL, "the checkpoint ends after its configuration");
	if (rec.type != STREAM_REC_SECTION)
		return err__set(e, EINVAL, "offset %llu: expected a section after the configuration",
				(unsigned long long)rec.off);
	uint64_t base = stream__tell(r);
	uint8_t *p;
	if ((rc = stream__read_payload(r, STREAM_SECTION_MAX, &p)) < 0)
		return reader_err(r, rc, e);
	if (!snapshot_chain__is_chain(p, rec.len, base)) {
		*pending = p;		/* an older file's first state section */
		*pending_len = rec.len;
		*pending_base = base;
		return 0;
	}
	rc = snapshot_chain__decode(p, rec.len, base, c, e);
	free(p);
	return rc;
}

int snapshot_chain__read_file(const char *path, struct snapshot_chain_info *c, struct err *e)
{
	struct release_matrix m;
	struct release_policy pol;
	struct opened f = { .fd = -1 };
	struct vm_config cfg;
	uint8_t *payload = NULL, *pending = NULL;
	uint32_t plen, pl;
	uint64_t base, pb;
	vm_config__init(&cfg);
	int rc = release__policy(&m, &pol, e);
	if (!rc)
		rc = open_stream(path, &f, &pol, e);
	if (!rc)
		rc = vm_sections__read_config(&f.r, &cfg, &payload, &plen, &base, e);
	if (!rc)
		rc = read_chain(&f.r, c, &pending, &pl, &pb, e);
	if (!rc && pending)
		memset(c, 0, sizeof(*c));
	free(pending);
	free(payload);
	vm_config__free(&cfg);
	close_stream(&f);
	return rc;
}

/* The memory of every earlier link, oldest first: each base is checked to
 * be the very checkpoint the later one was taken on. */
static int load_base(struct restore_index *x, const char *dir, uint64_t mem_size,
		     const struct snapshot_chain_info *child, unsigned depth,
		     const struct release_policy *pol, struct err *e)
{
	if (depth >= SNAPSHOT_CHAIN_MAX)
		return err__set(e, ELOOP, "the checkpoint chain is longer than %d links", SNAPSHOT_CHAIN_MAX);
	char path[4400];
	snprintf(path, sizeof(path), "%s/%s", dir, child->base_name);
	struct restore_file f = { .fd = -1 };
	struct vm_config cfg;
	struct snapshot_chain_info c;
	uint8_t *payload = NULL, *pending = NULL;
	uint32_t plen, pl;
	uint64_t base, pb;
	vm_config__init(&cfg);
	int rc = access(path, F_OK) ? err__set(e, ENOENT, "base checkpoint %s is missing (the "
					       "chain needs every earlier link)", path) : 0;
	if (!rc)
		rc = restore_file__open(&f, path, path, pol, e);
	if (!rc)
		rc = vm_sections__read_config(&f.r, &cfg, &payload, &plen, &base, e);
	if (!rc)
		rc = read_chain(&f.r, &c, &pending, &pl, &pb, e);
	if (!rc && (pending || memcmp(c.uuid, child->base_uuid, sizeof(c.uuid))))
		rc = err__set(e, EINVAL, "%s is not the checkpoint this one was taken on (another VM's "
			      "or another chain's)", path);
	if (!rc && cfg.mem_size != mem_size)
		rc = err__set(e, EINVAL, "%s holds a %llu-byte VM, this chain a %llu-byte one", path,
			      (unsigned long long)cfg.mem_size, (unsigned long long)mem_size);
	if (!rc && !snapshot_chain__is_full(&c))
		rc = load_base(x, dir, mem_size, &c, depth + 1, pol, e);
	/* Only its memory counts: the state is the newest link's. */
	if (!rc)
		rc = restore_index__file(x, &f, false, e);
	if (rc < 0 && e->code && !strstr(e->msg, path)) {
		char why[sizeof(e->msg)];
		snprintf(why, sizeof(why), "%s", e->msg);
		err__clear(e);
		err__set(e, rc < 0 ? -rc : EIO, "base %s: %s", path, why);
	}
	free(pending);
	free(payload);
	vm_config__free(&cfg);
	restore_file__close(&f);
	return rc;
}

/* What comes between the configuration and the VM's own state: the chain
 * section, then (disks=include) the disk images, which are created here,
 * before the VM opens its disks. The first state section read is left in
 * `pending`. */
struct preamble {
	struct snapshot_chain_info chain;
	uint8_t *pending;		/* a state section already read, or */
	uint32_t pending_len;
	uint64_t pending_base;
	bool pending_mem;		/* a MEM record whose header was read */
	struct stream_rec mem_rec;
	struct disk_restore *disks;
};

/* The disk sections that follow the chain section (p->pending may hold the
 * first record already read). */
static int read_disks(struct stream_reader *r, const struct vm_config *cfg, struct preamble *p,
		      struct err *e)
{
	int rc;
	if (p->pending)
		goto check;
	for (;;) {
		struct stream_rec rec;
		rc = stream__next_record(r, &rec);
		if (rc <= 0)
			return rc < 0 ? reader_err(r, rc, e) :
				err__set(e, EINVAL, "the checkpoint ends before the VM's state");
		if (rec.type == STREAM_REC_MEM) {
			/* Memory comes next: it is loaded once the VM exists. */
			p->pending_mem = true;
			p->mem_rec = rec;
			return 0;
		}
		if (rec.type != STREAM_REC_SECTION)
			return err__set(e, EINVAL, "offset %llu: a %s record where the VM's state begins",
					(unsigned long long)rec.off, stream__rec_name(rec.type));
		p->pending_base = stream__tell(r);
		p->pending_len = rec.len;
		if ((rc = stream__read_payload(r, STREAM_SECTION_MAX, &p->pending)) < 0)
			return reader_err(r, rc, e);
check:
		if (!snapshot_disk__is_disk(p->pending, p->pending_len, p->pending_base))
			return 0;
		if (!p->disks && !(p->disks = snapshot_disk__restore_new(e)))
			return -ENOMEM;
		rc = snapshot_disk__load(p->disks, p->pending, p->pending_len, p->pending_base, cfg, e);
		free(p->pending);
		p->pending = NULL;
		if (rc < 0)
			return rc;
	}
}

/* An incremental checkpoint's disks: the chain's earlier links rebuild the
 * images, oldest first (the base creates them, each later link writes the
 * blocks changed since the one before). Their memory and the checks that
 * each base is the right one come later (load_base). */
static int base_disks(struct disk_restore **dr, const char *path, const struct vm_config *cfg,
		      const struct snapshot_chain_info *child, unsigned depth,
		      const struct release_policy *pol, struct err *e)
{
	if (depth >= SNAPSHOT_CHAIN_MAX)
		return err__set(e, ELOOP, "the checkpoint chain is longer than %d links", SNAPSHOT_CHAIN_MAX);
	char dir[4096], bpath[4400];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	snprintf(bpath, sizeof(bpath), "%s/%s", slash ? dir : ".", child->base_name);
	if (access(bpath, F_OK))
		return err__set(e, ENOENT, "base checkpoint %s is missing (the chain needs every "
				"earlier link)", bpath);
	struct opened f = { .fd = -1 };
	struct vm_config bcfg;
	struct preamble bp = { 0 };
	uint8_t *payload = NULL;
	uint32_t plen;
	uint64_t base;
	vm_config__init(&bcfg);
	int rc = open_stream(bpath, &f, pol, e);
	if (!rc)
		rc = vm_sections__read_config(&f.r, &bcfg, &payload, &plen, &base, e);
	if (!rc)
		rc = read_chain(&f.r, &bp.chain, &bp.pending, &bp.pending_len, &bp.pending_base, e);
	if (!rc && !bp.pending && !snapshot_chain__is_full(&bp.chain))
		rc = base_disks(dr, bpath, cfg, &bp.chain, depth + 1, pol, e);
	bp.disks = *dr;
	if (!rc)
		rc = read_disks(&f.r, cfg, &bp, e);
	*dr = bp.disks;
	if (rc < 0 && e->code && !strstr(e->msg, bpath)) {
		char why[sizeof(e->msg)];
		snprintf(why, sizeof(why), "%s", e->msg);
		err__clear(e);
		err__set(e, -rc, "base %s: %s", bpath, why);
	}
	free(bp.pending);
	free(payload);
	vm_config__free(&bcfg);
	close_stream(&f);
	return rc;
}

static int read_preamble(struct stream_reader *r, const struct vm_config *cfg, struct preamble *p,
			 const char *path, const struct release_policy *pol, struct err *e)
{
	int rc = read_chain(r, &p->chain, &p->pending, &p->pending_len, &p->pending_base, e);
	if (!rc && !p->pending && !snapshot_chain__is_full(&p->chain))
		rc = base_disks(&p->disks, path, cfg, &p->chain, 0, pol, e);
	return rc < 0 ? rc : read_disks(r, cfg, p, e);
}

static void fill_failed(void *opaque, const char *why)
{
	vm__stop(opaque, VM_CRASHED, why);
}

/* Auto: a lazy fill is expected to copy at about a quarter of the speed the
 * checking pass read the files (measured here: UFFDIO_COPY ~2.3 GB/s, the
 * mapped CRC pass ~9 GB/s). A guest stalls on first touches of pages not
 * filled yet, so past this long a fill costs the guest more than copying
 * everything before it starts (an emulated or overloaded host). */
#define FILL_SLOWDOWN	4
#define LAZY_FILL_MAX_MS 1000

static bool choose_eager(enum snapshot_fill fill, uint64_t bytes, uint64_t check_ns)
{
	if (fill != SNAPSHOT_FILL_AUTO)
		return fill == SNAPSHOT_FILL_EAGER;
	/* bytes / (bytes / check_ns / FILL_SLOWDOWN), in ms */
	double est_ms = (double)check_ns * FILL_SLOWDOWN / 1e6;
	if (est_ms <= LAZY_FILL_MAX_MS)
		return false;
	pr_info("restore: copying the guest's memory before it starts: filling %llu MiB lazily "
		"would take about %.0f ms on this host (checked at %.0f MiB/s)",
		(unsigned long long)(bytes >> 20), est_ms,
		check_ns ? (double)bytes / (1 << 20) / ((double)check_ns / 1e9) : 0.0);
	return true;
}

/* Memory in place: lazily (the fill runs on beside the guest) or all of it
 * now, when asked, when too slow here, or where userfaultfd cannot be
 * used. */
static int place_memory(struct restore_index *x, struct vm *vm, bool eager, struct err *e)
{
	if (!eager) {
		struct err why = { 0 };
		/* Tests: first touches only, until something needs all of RAM. */
		const char *defer = getenv("VMHOP_TEST_LAZY_DEFER");
		if (defer && !strcmp(defer, "1"))
			lazy_mem__defer(x->lm);
		int rc = lazy_mem__start(x->lm, &vm->mem, fill_failed, vm, &why);
		if (rc != -EOPNOTSUPP) {
			if (rc < 0)
				*e = why;
			else
				x->lm = NULL;	/* the guest memory owns it now */
			return rc;
		}
		pr_warn("restore: %s: copying the guest's memory before it starts", why.msg);
	}
	return lazy_mem__fill_now(x->lm, &vm->mem, e);
}

/* The newest file's memory and state after its preamble, and the memory of
 * the chain's older links before it. */
static int index_all(struct restore_index *x, const char *path, uint64_t mem_size,
		     struct restore_file *newest, struct preamble *pre,
		     const struct release_policy *pol, struct err *e)
{
	char *copy = strdup(path);
	if (!copy)
		return err__set(e, ENOMEM, "out of memory");
	int rc = 0;
	if (!snapshot_chain__is_full(&pre->chain))
		rc = load_base(x, dirname(copy), mem_size, &pre->chain, 1, pol, e);
	free(copy);
	if (!rc && pre->pending) {
		rc = restore_index__hold(x, pre->pending, pre->pending_len, pre->pending_base, e);
		if (!rc)
			pre->pending = NULL;
	}
	if (rc)
		return rc;
	if (!pre->pending_mem)
		return restore_index__file(x, newest, true, e);
	/* Its first MEM record was opened by the preamble. */
	rc = restore_index__add(x, newest, e);
	if (!rc)
		rc = restore_index__mem(x, newest, &pre->mem_rec, e);
	return rc ? rc : restore_index__file(x, newest, true, e);
}

/* The VM is built on a thread of its own while the files are checked. */
struct builder {
	struct vm_config *cfg;
	struct vm *vm;
	struct err e;
	int rc;
};

static void *build_main(void *arg)
{
	struct builder *b = arg;
	b->rc = vm__create_incoming(&b->vm, b->cfg, &b->e);
	return NULL;
}

/* The checkpoint's disks where this host has them (--disk-map OLD=NEW). */
static int map_disks(struct vm_config *cfg, const struct snapshot_restore_opts *o, struct err *e)
{
	for (unsigned i = 0; i < cfg->nr_disks; i++)
		for (unsigned k = 0; k < o->nr_maps; k++) {
			const char *eq = strchr(o->maps[k], '=');
			size_t n = eq ? (size_t)(eq - o->maps[k]) : 0;
			if (!eq || strlen(cfg->disks[i].path) != n || strncmp(cfg->disks[i].path, o->maps[k], n))
				continue;
			char *to = strdup(eq + 1);
			if (!to)
				return err__set(e, ENOMEM, "out of memory");
			free(cfg->disks[i].path);
			cfg->disks[i].path = to;
			break;
		}
	return 0;
}

int snapshot__restore(const char *path, const struct snapshot_restore_opts *o,
		      struct vm **out, struct vm_config **cfg_out, struct err *e)
{
	uint64_t t0 = util__now_ns();
	struct release_matrix m;
	struct release_policy pol;
	struct restore_file f = { .fd = -1 };
	struct restore_index x = { 0 };
	struct vm_config *cfg = calloc(1, sizeof(*cfg));
	uint8_t *payload = NULL;
	uint32_t plen = 0;
	uint64_t base = 0;
	int rc = cfg ? release__policy(&m, &pol, e) : err__set(e, ENOMEM, "out of memory");
	if (rc < 0) {
		free(cfg);
		return rc;
	}
	vm_config__init(cfg);
	rc = restore_file__open(&f, path, "", &pol, e);
	if (!rc)
		rc = vm_sections__read_config(&f.r, cfg, &payload, &plen, &base, e);
	/* The checkpoint's console destination belongs to the old process. */
	if (!rc)
		rc = vm_config__set_serial(cfg, o && o->serial ? o->serial : "stdio", e);
	if (!rc) {
		free(cfg->control_path);
		cfg->control_path = o && o->control ? strdup(o->control) : NULL;
	}
	if (!rc && o)
		rc = map_disks(cfg, o, e);
	struct preamble pre = { 0 };
	if (!rc)
		rc = read_preamble(&f.r, cfg, &pre, path, &pol, e);
	/* The disk images are complete before the VM opens them; they are
	 * removed again if the restore fails after all. */
	if (!rc && pre.disks)
		rc = snapshot_disk__sync(pre.disks, e);
	struct builder b = { .cfg = cfg };
	pthread_t bt;
	bool building = false;
	if (!rc) {
		int r = pthread_create(&bt, NULL, build_main, &b);
		building = r == 0;
		if (r)
			build_main(&b);
	}
	uint64_t t1 = util__now_ns();
	if (!rc)
		rc = restore_index__init(&x, cfg->mem_size / GUEST_PAGE_SIZE, e);
	if (!rc)
		rc = index_all(&x, path, cfg->mem_size, &f, &pre, &pol, e);
	uint64_t t2 = util__now_ns();
	if (building)
		pthread_join(bt, NULL);
	if (!rc && b.rc < 0) {
		*e = b.e;
		rc = b.rc;
	}
	struct vm *vm = b.vm;
	/* Every record is checked: no corrupt byte can turn up past here. The
	 * configuration section counts as loaded into the new VM too. */
	struct section_registry *reg = vm ? vm_sections__registry(vm) : NULL;
	if (!rc)
		rc = section__decode(reg, payload, plen, base, e);
	uint64_t bytes = x.dec.stats.bytes[STREAM_PAGE_RAW] + x.dec.stats.bytes[STREAM_PAGE_ZSTD];
	bool eager = !rc && choose_eager(o ? o->fill : SNAPSHOT_FILL_AUTO, bytes, t2 - t1);
	if (!rc)
		rc = place_memory(&x, vm, eager, e);
	uint64_t t3 = util__now_ns();
	for (size_t i = 0; !rc && i < x.nr_secs; i++)
		rc = section__decode(reg, x.secs[i].payload, x.secs[i].len, x.secs[i].base, e);
	if (!rc)
		rc = section__check_all_loaded(reg, e);
	if (!rc)
		pr_debug("restore: configuration read in %.1f ms; %llu MiB of pages in %u file(s) "
			 "checked and indexed in %.1f ms (the VM built meanwhile), memory %s in "
			 "%.1f ms, device state in %.1f ms",
			 (double)(t1 - t0) / 1e6,
			 (unsigned long long)bytes >> 20, x.files, (double)(t2 - t1) / 1e6,
			 eager ? "copied" : "set up for lazy filling",
			 (double)(t3 - t2) / 1e6, (double)(util__now_ns() - t3) / 1e6);
	if (pre.disks) {
		struct err ignore = { 0 };
		snapshot_disk__restore_end(pre.disks, rc == 0, &ignore);
	}
	restore_index__free(&x);
	free(pre.pending);
	free(payload);
	restore_file__close(&f);
	if (rc < 0) {
		vm__destroy(vm);
		vm_config__free(cfg);
		free(cfg);
		return rc;
	}
	*out = vm;
	*cfg_out = cfg;
	return 0;
}
