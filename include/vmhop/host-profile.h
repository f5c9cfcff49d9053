/* A host's profile: what a destination must tell a source (and an operator
 * planning a move) about itself: CPU vendor and identity, NX, the KVM API
 * and the capabilities that matter to moves, KVM's supported CPUID, cores
 * and memory, the release level and stream formats, the CPU models it can
 * run, the machine layout and devices it builds, and optionally its view of
 * a VM's disks. `vmhop host-profile` prints it; the migration handshake
 * will carry it. From a peer it is untrusted: the JSON reader checks types,
 * ranges and lengths, refuses unknown members, and bounds the input. */
#ifndef VMHOP_HOST_PROFILE_H
#define VMHOP_HOST_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "vmhop/cpu-models.h"
#include "vmhop/err.h"
#include "vmhop/release.h"
#include "vmhop/vm-config.h"

#define HOST_PROFILE_VERSION	1	/* the JSON "profile_version" */
#define HOST_PROFILE_JSON_MAX	(1u << 20)	/* bytes a reader accepts */
#define HOST_PROFILE_MAX_CPUID	256
#define HOST_PROFILE_MAX_MODELS	CPU_MODELS_MAX
#define HOST_PROFILE_MAX_DEVICES 16
#define HOST_PROFILE_NAME_MAX	64	/* hostname, machine, device names */
#define HOST_PROFILE_PATH_MAX	4096	/* including the NUL */
#define HOST_PROFILE_IDENT_MAX	65	/* hex SHA-256 and a NUL */

/* KVM capabilities that matter to moves, by KVM_CHECK_EXTENSION value. */
enum host_cap {
	HOST_CAP_IRQCHIP, HOST_CAP_PIT2, HOST_CAP_IOEVENTFD, HOST_CAP_IRQFD,
	HOST_CAP_USER_MEMORY, HOST_CAP_EXT_CPUID, HOST_CAP_IMMEDIATE_EXIT,
	HOST_CAP_NR_VCPUS, HOST_CAP_MAX_VCPUS, HOST_CAP_DIRTY_LOG_RING,
	HOST_CAP_DIRTY_LOG_RING_ACQ_REL, HOST_CAP_MANUAL_DIRTY_LOG_PROTECT2,
	HOST_CAP_TSC_CONTROL, HOST_CAP_GET_TSC_KHZ, HOST_CAP_TSC_DEADLINE_TIMER,
	HOST_CAP_KVMCLOCK_CTRL, HOST_CAP_ADJUST_CLOCK, HOST_CAP_XSAVE, HOST_CAP_XSAVE2,
	HOST_CAP_XCRS, HOST_CAP_VCPU_EVENTS, HOST_CAP_DEBUGREGS, HOST_CAP_SREGS2,
	HOST_CAP_COUNT
};
/* "dirty_log_ring", ...: the JSON names. */
const char *host_profile__cap_name(enum host_cap c);

/* What a host sees of one disk of a VM, at the (mapped) path it would open.
 * The destination fills these in; the disk rule compares them with the
 * source's. */
struct compat_disk_view {
	char id[DISK_ID_MAX];
	char path[HOST_PROFILE_PATH_MAX];
	bool exists;		/* opened for reading */
	bool writable;		/* access(W_OK) */
	uint64_t size;
	uint64_t dev, ino;	/* comparable only within one boot_id */
	char head_sha256[HOST_PROFILE_IDENT_MAX];	/* first 64 KiB, "" if unread */
};

struct host_profile {
	char hostname[HOST_PROFILE_NAME_MAX];
	char boot_id[40];	/* /proc/sys/kernel/random/boot_id */
	char vendor[13];	/* "GenuineIntel", "AuthenticAMD", ... */
	uint32_t family, model, stepping;
	bool host_nx;		/* host CPUID 0x80000001 EDX bit 20 */
	bool kvm_nx;		/* the same bit in KVM_GET_SUPPORTED_CPUID */
	int kvm_api_version;
	int64_t caps[HOST_CAP_COUNT];	/* KVM_CHECK_EXTENSION results */
	struct cpuid_leaf cpuid[HOST_PROFILE_MAX_CPUID];	/* supported */
	size_t ncpuid;
	unsigned cores;		/* online CPUs */
	unsigned vcpus_in_use;	/* vCPUs of VMs already there (0: unknown) */
	uint64_t mem_total, mem_available;	/* bytes */
	char release[RELEASE_NAME_MAX];
	unsigned release_ordinal;
	unsigned format_write, format_read_min, format_read_max;
	char models[HOST_PROFILE_MAX_MODELS][CPU_MODEL_NAME_MAX];	/* it can run */
	size_t nmodels;
	char machine[HOST_PROFILE_NAME_MAX];	/* guest layout it builds */
	char devices[HOST_PROFILE_MAX_DEVICES][HOST_PROFILE_NAME_MAX];
	size_t ndevices;
	unsigned max_disks;
	bool have_disks;	/* disks[] below was filled for a VM */
	struct compat_disk_view disks[VM_MAX_DISKS];
	size_t ndisks;
};

/* This build's machine layout name and device set. */
#define HOST_PROFILE_MACHINE "vmhop-x86-pc-1"

/* Collects this host's profile: /dev/kvm (or $VMHOP_KVM_DEVICE), host
 * CPUID, /proc, the release level acting here. */
int host_profile__collect(struct host_profile *p, struct err *e);
/* Fills p->disks with this host's view of vm's disks; map (may be NULL)
 * holds "OLD=NEW" path rewrites, as migrate-recv --disk-map. */
int host_profile__view_disks(struct host_profile *p, const struct vm_config *vm,
			     const char *const *map, size_t nmap, struct err *e);
int host_profile__view_disk(struct compat_disk_view *v, const char *id,
			    const char *path, struct err *e);

int host_profile__to_json(const struct host_profile *p, struct json_object **out);
/* The profile as one line of JSON (malloc'd, for the wire): 0 or -ENOMEM. */
int host_profile__to_text(const struct host_profile *p, char **out);
/* Strict: every member type-checked and ranged, unknown members refused. */
int host_profile__from_json(struct json_object *j, struct host_profile *p,
			    struct err *e);
/* Text (at most HOST_PROFILE_JSON_MAX bytes, nesting bounded) -> profile. */
int host_profile__parse(const char *text, size_t len, struct host_profile *p,
			struct err *e);
/* Reads a file of at most HOST_PROFILE_JSON_MAX bytes and parses it. */
int host_profile__load(const char *path, struct host_profile *p, struct err *e);

/* Is `name` one of p->devices? */
bool host_profile__has_device(const struct host_profile *p, const char *name);

#endif
