/* cmdline.h: the guest's parameters, from space-separated key=value words. */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

enum disk_mode { DISK_NONE, DISK_RW, DISK_RO };

struct params {
	uint64_t seconds;	/* 0: until the host asks for shutdown */
	uint64_t dirty;		/* bytes kept dirty, all CPUs together */
	uint64_t rate;		/* bytes per second, all CPUs together; 0: unlimited */
	uint64_t passes;	/* full rounds to write, then only keep it; 0: no end */
	bool verify;
	enum disk_mode disk;
	uint64_t disk_mib;
	bool disk_loop;
	uint64_t disks;		/* virtio-blk devices to drive; 0: every one found (up to 4) */
	uint64_t disk_rate;	/* bytes written per second, per disk; 0: unlimited */
	uint64_t hb_ms;
	uint64_t smp;		/* multiboot only: CPUs to start with INIT/SIPI (default 1) */
};

/* Unknown keys are ignored; a bad value of a known key is an error (reason in err). */
int cmdline__parse(const char *s, struct params *p, char *err, unsigned errlen);
const char *cmdline__disk_name(enum disk_mode m);

#endif
