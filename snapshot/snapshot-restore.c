#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int load_records(struct stream_reader *r, struct vm *vm, struct err *e)
{
	struct stream_mem_dec dec;
	int rc = stream__mem_dec_init(&dec, e);
	if (rc < 0)
		return rc;
	struct stream_mem_dst dst = { .host = vm->mem.base, .base_pfn = 0,
				      .npages = vm->mem.nr_pages, .fresh = true };
	struct section_registry *reg = vm_sections__registry(vm);
	struct stream_rec rec;
	while ((rc = stream__next_record(r, &rec)) > 0) {
		if (rec.type == STREAM_REC_SECTION)
			rc = section__load_record(reg, r, &rec, e);
		else if (rec.type == STREAM_REC_MEM)
			rc = stream__mem_read(r, &rec, &dec, &dst);
		else
			rc = stream__rec_skip(r);
		if (rc < 0)
			break;
	}
	stream__mem_dec_free(&dec);
	if (rc < 0)
		return reader_err(r, rc, e);
	rc = stream__expect_eof(r);
	if (rc < 0)
		return reader_err(r, rc, e);
	return section__check_all_loaded(reg, e);
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
	if (!rc)
		rc = vm__create_incoming(&vm, cfg, e);
	/* The configuration section counts as loaded into the new VM too. */
	if (!rc)
		rc = section__decode(vm_sections__registry(vm), payload, plen, base, e);
	if (!rc)
		rc = load_records(&r, vm, e);
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
