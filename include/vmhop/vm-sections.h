/* The VM's state sections: what a migration stream or snapshot carries,
 * registered once per VM in save order. The vm-config section comes first so
 * a receiver can build the VM before loading the rest. */
#ifndef VMHOP_VM_SECTIONS_H
#define VMHOP_VM_SECTIONS_H

#include "vmhop/err.h"
#include "vmhop/section.h"

struct vm;
struct vm_config;

#define VM_SECTION_CONFIG "vm-config"

int vm_sections__register(struct vm *vm, struct err *e);
void vm_sections__free(struct vm *vm);
struct section_registry *vm_sections__registry(struct vm *vm);
struct stream_reader;
/* Reads a stream's first record, which must be the vm-config section, into
 * cfg. The payload (malloc'd), its length and stream offset are handed back
 * for section__decode() once the VM is built from cfg. */
int vm_sections__read_config(struct stream_reader *r, struct vm_config *cfg, uint8_t **payload,
			     uint32_t *len, uint64_t *base, struct err *e);
/* Reads a vm-config SECTION payload into cfg (for building the receiver). */
int vm_sections__parse_config(const uint8_t *payload, size_t len, uint64_t base,
			      struct vm_config *cfg, struct err *e);

#endif
