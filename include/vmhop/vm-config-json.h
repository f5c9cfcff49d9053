/* struct vm_config as JSON: `query-config` shows it, and the migration stream
 * will carry it, so the reader treats its input as hostile (a peer we do not
 * control): every member is type-checked, ranged and length-bounded, and
 * unknown members are refused rather than ignored.
 *
 * {"name": "vm1", "kernel": "/boot/guest.elf", "initrd": null,
 *  "cmdline": "...", "memory": 536870912, "cpus": 2, "cpu_model": null,
 *  "disks": [{"id": "vda", "path": "/d.img", "cache": "none", "readonly": false}],
 *  "serial": "stdio"|"none"|"file", "serial_path": null, "control_path": null}
 *
 * Optional strings are null when unset; memory is in bytes. */
#ifndef VMHOP_VM_CONFIG_JSON_H
#define VMHOP_VM_CONFIG_JSON_H

#include <json-c/json.h>

#include "vmhop/err.h"
#include "vmhop/vm-config.h"

/* Bounds the reader enforces (the writer never produces more). */
#define VM_CONFIG_JSON_PATH_MAX 4095	/* kernel, initrd, disk, serial, control */
#define VM_CONFIG_JSON_CMDLINE_MAX 65535	/* vmhop run --cmdline allows as much */
#define VM_CONFIG_JSON_CPU_MODEL_MAX 63
#define VM_CONFIG_JSON_MEM_MIN (2ULL << 20)	/* 2 MiB, as vmhop run --memory */
#define VM_CONFIG_JSON_MEM_MAX (16ULL << 40)	/* 16 TiB */
#define VM_CONFIG_JSON_CPUS_MAX 4096	/* as vmhop run --cpus */

/* A new object describing c. Returns 0 or -ENOMEM. */
int vm_config__to_json(const struct vm_config *c, struct json_object **out);
/* Fills *c (vm_config__init'd first, so members the JSON leaves out keep
 * their defaults) from j. On failure returns -EINVAL (or -ENOMEM) with e
 * naming the member, and leaves *c initialised and empty. */
int vm_config__from_json(struct json_object *j, struct vm_config *c, struct err *e);

#endif
