/* Registers every stateful part of a VM as a state section. KVM state is
 * captured into plain structs by pre_save hooks (the VM is paused) and put
 * back by post_load hooks in the order vcpu-state.c keeps. */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/pm.h"
#include "vmhop/uart.h"
#include "vmhop/virtio-blk.h"
#include "vmhop/vcpu-state.h"
#include "vmhop/vcpu.h"
#include "vmhop/vm-config-json.h"
#include "vmhop/vm-sections.h"
#include "vmhop/vm-state.h"
#include "vmhop/vm.h"

/* The section opaque; the state comes first so fields can address it. */
struct cpu_sec {
	struct vcpu_state st;
	struct vcpu *v;
};

struct kvm_sec {
	struct vm_kvm_state st;
	struct vm *vm;
};

/* virtio-blk: transport and PCI state, both pointer-free structs. */
struct blk_state {
	struct virtio_pci_state vp;
	struct pci_dev_state pci;
};

struct blk_sec {
	struct blk_state st;
	struct virtio_blk *blk;
};

struct uart_sec {
	struct uart_state st;
	struct uart *uart;
};

struct config_sec {
	struct vm *vm;			/* saving, or checking on load */
	struct vm_config *out;		/* parsing only */
};

struct vm_sections {
	struct section_registry reg;
	struct config_sec config;
	struct kvm_sec kvm;
	struct cpu_sec *cpus;
	struct blk_sec blks[VM_MAX_DISKS];
	struct uart_sec uart;
};

/* ---- vm-config: the configuration as JSON, so receivers can build the VM */

static int config_save(void *opaque, struct stream_buf *b, struct err *e)
{
	struct config_sec *c = opaque;
	struct json_object *j = NULL;
	int r = vm_config__to_json(c->vm->cfg, &j);
	if (r < 0)
		return err__set(e, -r, "encoding the VM configuration");
	const char *s = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
	size_t n = strlen(s);
	stream_buf__put_u32(b, (uint32_t)n);
	stream_buf__put(b, s, n);
	json_object_put(j);
	return b->error ? err__set(e, -b->error, "encoding the VM configuration") : 0;
}

static int config_load(void *opaque, struct stream_cur *cur, uint32_t version, struct err *e)
{
	struct config_sec *c = opaque;
	uint32_t n = stream_cur__get_u32(cur);
	const uint8_t *p = cur->error ? NULL : stream_cur__take(cur, n);
	if (!p)
		return err__set(e, EINVAL, "vm-config: length %u beyond the section", n);
	char *s = strndup((const char *)p, n);
	if (!s)
		return err__set(e, ENOMEM, "out of memory");
	struct json_tokener *tok = json_tokener_new();
	struct json_object *j = tok ? json_tokener_parse_ex(tok, s, (int)n) : NULL;
	int r = 0;
	if (!j) {
		r = err__set(e, EINVAL, "vm-config: not valid JSON");
	} else if (c->out) {
		r = vm_config__from_json(j, c->out, e);
	} else {
		struct vm_config cfg;
		vm_config__init(&cfg);
		r = vm_config__from_json(j, &cfg, e);
		/* The receiver was built from this same section; a mismatch is a lie. */
		if (!r && (cfg.mem_size != c->vm->cfg->mem_size || cfg.nr_cpus != c->vm->cfg->nr_cpus))
			r = err__set(e, EINVAL, "vm-config: does not match the VM it is loaded into");
		vm_config__free(&cfg);
	}
	if (j)
		json_object_put(j);
	if (tok)
		json_tokener_free(tok);
	free(s);
	return r;
}

static const struct section_desc config_desc = {
	.name = VM_SECTION_CONFIG, .version = 1, .min_version = 1,
	.save = config_save, .load = config_load,
};

/* ---- kvm-vm: PIC, IOAPIC, PIT, kvm-clock ---------------------------------- */

static const struct section_field kvm_fields[] = {
	SECTION_BYTES(struct vm_kvm_state, pic_master, 1),
	SECTION_BYTES(struct vm_kvm_state, pic_slave, 1),
	SECTION_BYTES(struct vm_kvm_state, ioapic, 1),
	SECTION_BYTES(struct vm_kvm_state, pit, 1),
	SECTION_BYTES(struct vm_kvm_state, clock, 1),
	SECTION_FIELDS_END
};

static int kvm_pre_save(void *opaque, struct err *e)
{
	struct kvm_sec *k = opaque;
	return vm_state__save(k->vm, &k->st, e);
}

static int kvm_post_load(void *opaque, uint32_t version, struct err *e)
{
	struct kvm_sec *k = opaque;
	return vm_state__load(k->vm, &k->st, e);
}

static const struct section_desc kvm_desc = {
	.name = "kvm-vm", .version = 1, .min_version = 1, .fields = kvm_fields,
	.pre_save = kvm_pre_save, .post_load = kvm_post_load,
};

/* ---- cpu: one per vCPU ------------------------------------------------------ */

static const struct section_field cpu_fields[] = {
	SECTION_U32(struct vcpu_state, nr_cpuid, 1),
	SECTION_BYTES(struct vcpu_state, cpuid, 1),
	SECTION_BYTES(struct vcpu_state, mp_state, 1),
	SECTION_BYTES(struct vcpu_state, regs, 1),
	SECTION_BYTES(struct vcpu_state, sregs, 1),
	SECTION_BYTES(struct vcpu_state, xsave, 1),
	SECTION_BYTES(struct vcpu_state, xcrs, 1),
	SECTION_BYTES(struct vcpu_state, debugregs, 1),
	SECTION_BYTES(struct vcpu_state, lapic, 1),
	SECTION_U32(struct vcpu_state, nr_msrs, 1),
	SECTION_BYTES(struct vcpu_state, msrs, 1),
	SECTION_BYTES(struct vcpu_state, events, 1),
	SECTION_U32(struct vcpu_state, tsc_khz, 1),
	SECTION_U32(struct vcpu_state, has_xsave, 1),
	SECTION_U32(struct vcpu_state, has_xcrs, 1),
	SECTION_FIELDS_END
};

static int cpu_pre_save(void *opaque, struct err *e)
{
	struct cpu_sec *c = opaque;
	return vcpu_state__save(c->v, &c->st, e);
}

static int cpu_post_load(void *opaque, uint32_t version, struct err *e)
{
	struct cpu_sec *c = opaque;
	return vcpu_state__load(c->v, &c->st, e);
}

static const struct section_desc cpu_desc = {
	.name = "cpu", .version = 1, .min_version = 1, .fields = cpu_fields,
	.pre_save = cpu_pre_save, .post_load = cpu_post_load,
};

/* ---- uart and pm: device registers ------------------------------------------ */

static const struct section_field uart_fields[] = {
	SECTION_U8(struct uart_state, ier, 1), SECTION_U8(struct uart_state, iir_pending, 1),
	SECTION_U8(struct uart_state, lcr, 1), SECTION_U8(struct uart_state, mcr, 1),
	SECTION_U8(struct uart_state, lsr, 1), SECTION_U8(struct uart_state, msr, 1),
	SECTION_U8(struct uart_state, scr, 1), SECTION_U8(struct uart_state, fcr, 1),
	SECTION_U8(struct uart_state, dll, 1), SECTION_U8(struct uart_state, dlm, 1),
	SECTION_BYTES(struct uart_state, rx, 1), SECTION_U8(struct uart_state, rx_head, 1),
	SECTION_U8(struct uart_state, rx_count, 1), SECTION_U8(struct uart_state, thr_irq, 1),
	SECTION_FIELDS_END
};

static int uart_pre_save(void *opaque, struct err *e)
{
	struct uart_sec *u = opaque;
	u->st = *uart__state(u->uart);
	return 0;
}

/* Loaded into a copy first: a bad stream must not reach the live device,
 * and the interrupt line has to follow the loaded registers. */
static int uart_post_load(void *opaque, uint32_t version, struct err *e)
{
	struct uart_sec *u = opaque;
	if (u->st.rx_head >= sizeof(u->st.rx) || u->st.rx_count > sizeof(u->st.rx))
		return err__set(e, EINVAL, "uart: receive buffer indexes out of range");
	*uart__state(u->uart) = u->st;
	uart__post_load(u->uart);
	return 0;
}

static const struct section_desc uart_desc = {
	.name = "uart", .version = 1, .min_version = 1, .fields = uart_fields,
	.pre_save = uart_pre_save, .post_load = uart_post_load,
};

static const struct section_field pm_fields[] = {
	SECTION_U16(struct pm_state, pm1_sts, 1), SECTION_U16(struct pm_state, pm1_en, 1),
	SECTION_U16(struct pm_state, pm1_cnt, 1), SECTION_U8(struct pm_state, reset_cf9, 1),
	SECTION_FIELDS_END
};

static const struct section_desc pm_desc = {
	.name = "pm", .version = 1, .min_version = 1, .fields = pm_fields,
};

static const struct section_field blk_fields[] = {
	SECTION_BYTES(struct blk_state, vp, 1),
	SECTION_BYTES(struct blk_state, pci, 1),
	SECTION_FIELDS_END
};

/* Devices are quiesced by the pause, so copying their state is consistent. */
static int blk_pre_save(void *opaque, struct err *e)
{
	struct blk_sec *b = opaque;
	b->st.vp = b->blk->vp.st;
	b->st.pci = b->blk->vp.pci.st;
	return 0;
}

static int blk_post_load(void *opaque, uint32_t version, struct err *e)
{
	struct blk_sec *b = opaque;
	b->blk->vp.st = b->st.vp;
	b->blk->vp.pci.st = b->st.pci;
	virtio_pci__post_load(&b->blk->vp);
	return 0;
}

static const struct section_desc blk_desc = {
	.name = "virtio-blk", .version = 1, .min_version = 1, .fields = blk_fields,
	.pre_save = blk_pre_save, .post_load = blk_post_load,
};

int vm_sections__register(struct vm *vm, struct err *e)
{
	struct vm_sections *s = calloc(1, sizeof(*s));
	if (!s)
		return err__set(e, ENOMEM, "out of memory");
	s->cpus = calloc(vm->nr_vcpus, sizeof(*s->cpus));
	if (!s->cpus) {
		free(s);
		return err__set(e, ENOMEM, "out of memory");
	}
	vm->sections = s;
	section__registry_init(&s->reg);
	s->config.vm = vm;
	s->kvm.vm = vm;
	int r = section__register(&s->reg, &config_desc, 0, &s->config, e);
	for (unsigned i = 0; !r && i < vm->nr_vcpus; i++) {
		s->cpus[i].v = vm->vcpus[i];
		r = section__register(&s->reg, &cpu_desc, i, &s->cpus[i], e);
	}
	s->uart.uart = vm->uart;
	if (!r)
		r = section__register(&s->reg, &uart_desc, 0, &s->uart, e);
	if (!r)
		r = section__register(&s->reg, &pm_desc, 0, pm__state(vm->pm), e);
	for (unsigned i = 0; !r && i < vm->nr_blk; i++) {
		s->blks[i].blk = vm->blk[i];
		r = section__register(&s->reg, &blk_desc, i, &s->blks[i], e);
	}
	/* The irqchips and clock go last: the clock must restart from the
	 * moment everything else is in place. */
	if (!r)
		r = section__register(&s->reg, &kvm_desc, 0, &s->kvm, e);
	return r;
}

void vm_sections__free(struct vm *vm)
{
	struct vm_sections *s = vm->sections;
	if (!s)
		return;
	section__registry_free(&s->reg);
	free(s->cpus);
	free(s);
	vm->sections = NULL;
}

struct section_registry *vm_sections__registry(struct vm *vm)
{
	return &vm->sections->reg;
}

int vm_sections__parse_config(const uint8_t *payload, size_t len, uint64_t base,
			      struct vm_config *cfg, struct err *e)
{
	struct section_registry reg;
	section__registry_init(&reg);
	struct config_sec c = { .out = cfg };
	int r = section__register(&reg, &config_desc, 0, &c, e);
	if (!r)
		r = section__decode(&reg, payload, len, base, e);
	section__registry_free(&reg);
	return r;
}

int vm_sections__read_config(struct stream_reader *r, struct vm_config *cfg, uint8_t **payload,
			     uint32_t *len, uint64_t *base, struct err *e)
{
	struct stream_rec rec;
	int rc = stream__next_record(r, &rec);
	if (rc <= 0)
		return rc < 0 ? stream__reader_err(r, rc, "", e) :
			err__set(e, EPROTO, "the stream holds no VM");
	if (rec.type != STREAM_REC_SECTION)
		return err__set(e, EPROTO, "offset %llu: expected the %s section first, found a %s record",
				(unsigned long long)rec.off, VM_SECTION_CONFIG, stream__rec_name(rec.type));
	*base = stream__tell(r);
	if ((rc = stream__read_payload(r, STREAM_SECTION_MAX, payload)) < 0)
		return stream__reader_err(r, rc, "", e);
	*len = rec.len;
	return vm_sections__parse_config(*payload, rec.len, *base, cfg, e);
}
