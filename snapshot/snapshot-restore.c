#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot/snapshot-internal.h"
#include "vmhop/release.h"
#include "vmhop/section.h"
#include "vmhop/snapshot.h"
#include "vmhop/stream.h"
#include "vmhop/vm-config.h"
#include "vmhop/vm-sections.h"
#include "vmhop/vm.h"

static int reader_err(struct stream_reader *r, int rc, struct err *e)
{
	return stream__reader_err(r, rc, "", e);
}

/* Where the restored memory goes: fresh (zero) RAM; a later record of a
 * page replaces an earlier one, so a chain loads oldest first. */
struct loader {
	struct vm *vm;
	struct stream_mem_dec dec;
	struct stream_mem_dst dst;
	const char *dir;		/* the chain's directory */
};

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
static int load_base(struct loader *l, const struct snapshot_chain_info *child, unsigned depth,
		     const struct release_policy *pol, struct err *e)
{
	if (depth >= SNAPSHOT_CHAIN_MAX)
		return err__set(e, ELOOP, "the checkpoint chain is longer than %d links", SNAPSHOT_CHAIN_MAX);
	char path[4400];
	snprintf(path, sizeof(path), "%s/%s", l->dir, child->base_name);
	struct opened f = { .fd = -1 };
	struct vm_config cfg;
	struct snapshot_chain_info c;
	uint8_t *payload = NULL, *pending = NULL;
	uint32_t plen, pl;
	uint64_t base, pb;
	vm_config__init(&cfg);
	int rc = access(path, F_OK) ? err__set(e, ENOENT, "base checkpoint %s is missing (the "
					       "chain needs every earlier link)", path) : 0;
	if (!rc)
		rc = open_stream(path, &f, pol, e);
	if (!rc)
		rc = vm_sections__read_config(&f.r, &cfg, &payload, &plen, &base, e);
	if (!rc)
		rc = read_chain(&f.r, &c, &pending, &pl, &pb, e);
	if (!rc && (pending || memcmp(c.uuid, child->base_uuid, sizeof(c.uuid))))
		rc = err__set(e, EINVAL, "%s is not the checkpoint this one was taken on (another VM's "
			      "or another chain's)", path);
	if (!rc && (cfg.mem_size != l->vm->cfg->mem_size))
		rc = err__set(e, EINVAL, "%s holds a %llu-byte VM, this chain a %llu-byte one", path,
			      (unsigned long long)cfg.mem_size, (unsigned long long)l->vm->cfg->mem_size);
	if (!rc && !snapshot_chain__is_full(&c))
		rc = load_base(l, &c, depth + 1, pol, e);
	/* Only its memory counts: the state is the newest link's. */
	struct stream_rec rec;
	while (!rc && (rc = stream__next_record(&f.r, &rec)) > 0) {
		if (rec.type == STREAM_REC_MEM)
			rc = stream__mem_read(&f.r, &rec, &l->dec, &l->dst);
		else
			rc = stream__rec_skip(&f.r);
		if (rc < 0)
			rc = reader_err(&f.r, rc, e);
	}
	if (!rc && (rc = stream__expect_eof(&f.r)) < 0)
		rc = reader_err(&f.r, rc, e);
	if (rc < 0 && e->code && !strstr(e->msg, path)) {
		char why[sizeof(e->msg)];
		snprintf(why, sizeof(why), "%s", e->msg);
		err__clear(e);
		err__set(e, rc < 0 ? -rc : EIO, "base %s: %s", path, why);
	}
	free(pending);
	free(payload);
	vm_config__free(&cfg);
	close_stream(&f);
	return rc;
}

static int load_records(struct loader *l, struct stream_reader *r, struct err *e)
{
	struct section_registry *reg = vm_sections__registry(l->vm);
	struct stream_rec rec;
	int rc;
	while ((rc = stream__next_record(r, &rec)) > 0) {
		if (rec.type == STREAM_REC_SECTION)
			rc = section__load_record(reg, r, &rec, e);
		else if (rec.type == STREAM_REC_MEM)
			rc = stream__mem_read(r, &rec, &l->dec, &l->dst);
		else
			rc = stream__rec_skip(r);
		if (rc < 0)
			break;
	}
	if (rc < 0)
		return reader_err(r, rc, e);
	rc = stream__expect_eof(r);
	if (rc < 0)
		return reader_err(r, rc, e);
	return section__check_all_loaded(reg, e);
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

static int read_preamble(struct stream_reader *r, const struct vm_config *cfg, struct preamble *p,
			 struct err *e)
{
	int rc = read_chain(r, &p->chain, &p->pending, &p->pending_len, &p->pending_base, e);
	if (rc < 0)
		return rc;
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

/* After the VM is built from the newest file's configuration: the first
 * state section, the chain's older memory, then the newest file's state
 * and memory. */
static int load_all(struct vm *vm, const char *path, struct stream_reader *r,
		    struct preamble *pre, const struct release_policy *pol, struct err *e)
{
	struct loader l = { .vm = vm };
	char *copy = strdup(path);
	if (!copy)
		return err__set(e, ENOMEM, "out of memory");
	l.dir = dirname(copy);
	/* Fresh RAM is zero: with a record of the pages written so far, a zero
	 * page costs nothing unless an earlier link wrote that page. */
	uint64_t *written = calloc((vm->mem.nr_pages + 63) / 64, sizeof(uint64_t));
	if (!written) {
		free(copy);
		return err__set(e, ENOMEM, "out of memory");
	}
	l.dst = (struct stream_mem_dst){ .host = vm->mem.base, .base_pfn = 0,
					 .npages = vm->mem.nr_pages, .written = written,
					 .fresh = true };
	int rc = stream__mem_dec_init(&l.dec, e);
	bool dec = !rc;
	if (!rc && !snapshot_chain__is_full(&pre->chain))
		rc = load_base(&l, &pre->chain, 1, pol, e);
	if (!rc && pre->pending)
		rc = section__decode(vm_sections__registry(vm), pre->pending, pre->pending_len,
				     pre->pending_base, e);
	if (!rc && pre->pending_mem && (rc = stream__mem_read(r, &pre->mem_rec, &l.dec, &l.dst)) < 0)
		rc = reader_err(r, rc, e);
	if (!rc)
		rc = load_records(&l, r, e);
	if (dec)
		stream__mem_dec_free(&l.dec);
	free(written);
	free(copy);
	return rc;
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
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err__setsys(e, errno, "cannot open");
	struct release_matrix m;
	struct release_policy pol;
	struct stream_io io;
	struct stream_reader r;
	struct vm_config *cfg = calloc(1, sizeof(*cfg));
	uint8_t *payload = NULL;
	uint32_t plen = 0;
	uint64_t base = 0;
	struct vm *vm = NULL;
	int rc = cfg ? release__policy(&m, &pol, e) : err__set(e, ENOMEM, "out of memory");
	if (rc < 0) {
		free(cfg);
		close(fd);
		return rc;
	}
	vm_config__init(cfg);
	stream__io_fd(&io, fd);
	rc = stream__reader_init(&r, &io);
	struct stream_header h;
	if (!rc && (rc = stream__read_header(&r, &h, &pol)) < 0)
		reader_err(&r, rc, e);
	if (!rc)
		rc = vm_sections__read_config(&r, cfg, &payload, &plen, &base, e);
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
		rc = read_preamble(&r, cfg, &pre, e);
	/* The disk images are complete before the VM opens them; they are
	 * removed again if the restore fails after all. */
	if (!rc && pre.disks)
		rc = snapshot_disk__sync(pre.disks, e);
	if (!rc)
		rc = vm__create_incoming(&vm, cfg, e);
	/* The configuration section counts as loaded into the new VM too. */
	if (!rc)
		rc = section__decode(vm_sections__registry(vm), payload, plen, base, e);
	if (!rc)
		rc = load_all(vm, path, &r, &pre, &pol, e);
	if (pre.disks) {
		struct err ignore = { 0 };
		snapshot_disk__restore_end(pre.disks, rc == 0, &ignore);
	}
	free(pre.pending);
	free(payload);
	stream__reader_free(&r);
	close(fd);
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
