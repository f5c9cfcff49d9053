/* What a VM is made of. Filled from `vmhop run` flags today; later built from
 * a migration stream, so it holds only plain data. */
#ifndef VMHOP_VM_CONFIG_H
#define VMHOP_VM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "vmhop/err.h"

#define VM_MAX_DISKS 8
#define VM_NAME_MAX 64
#define DISK_ID_MAX 32

enum serial_mode { SERIAL_STDIO, SERIAL_FILE, SERIAL_NONE };

#define DISK_GEN_MAX 33

struct disk_config {
	char *path;
	char id[DISK_ID_MAX];
	bool cache_none;	/* O_DIRECT; the default */
	bool readonly;
	/* Set when the disk arrived by copy in a migration: the copy's
	 * generation (hex), which an incremental move back must match. Runtime
	 * only: not in the VM's configuration JSON or sections. */
	char gen[DISK_GEN_MAX];
};

struct vm_config {
	char name[VM_NAME_MAX];
	char *kernel;
	char *initrd;
	char *cmdline;
	uint64_t mem_size;
	unsigned nr_cpus;
	char *cpu_model;
	struct disk_config disks[VM_MAX_DISKS];
	unsigned nr_disks;
	enum serial_mode serial;
	char *serial_path;
	char *control_path;
};

void vm_config__init(struct vm_config *c);
void vm_config__free(struct vm_config *c);
/* Parses "PATH[,id=ID][,cache=none|writeback][,readonly]" and appends it. */
int vm_config__add_disk(struct vm_config *c, const char *spec, struct err *e);
/* Parses "stdio", "none" or "file:PATH". */
int vm_config__set_serial(struct vm_config *c, const char *spec, struct err *e);

#endif
