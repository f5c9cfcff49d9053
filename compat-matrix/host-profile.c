/* Collecting this host's profile: host CPUID, /dev/kvm (API version,
 * capabilities, supported CPUID), /proc (cores, memory, boot id), the
 * release level acting here, and the CPU models KVM can supply. */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "vmhop/cpuid.h"
#include "vmhop/host-profile.h"
#include "vmhop/util.h"

static const struct {
	int cap;
	const char *name;
} caps[HOST_CAP_COUNT] = {
	[HOST_CAP_IRQCHIP] = { KVM_CAP_IRQCHIP, "irqchip" },
	[HOST_CAP_PIT2] = { KVM_CAP_PIT2, "pit2" },
	[HOST_CAP_IOEVENTFD] = { KVM_CAP_IOEVENTFD, "ioeventfd" },
	[HOST_CAP_IRQFD] = { KVM_CAP_IRQFD, "irqfd" },
	[HOST_CAP_USER_MEMORY] = { KVM_CAP_USER_MEMORY, "user_memory" },
	[HOST_CAP_EXT_CPUID] = { KVM_CAP_EXT_CPUID, "ext_cpuid" },
	[HOST_CAP_IMMEDIATE_EXIT] = { KVM_CAP_IMMEDIATE_EXIT, "immediate_exit" },
	[HOST_CAP_NR_VCPUS] = { KVM_CAP_NR_VCPUS, "nr_vcpus" },
	[HOST_CAP_MAX_VCPUS] = { KVM_CAP_MAX_VCPUS, "max_vcpus" },
	[HOST_CAP_DIRTY_LOG_RING] = { KVM_CAP_DIRTY_LOG_RING, "dirty_log_ring" },
	[HOST_CAP_DIRTY_LOG_RING_ACQ_REL] = { KVM_CAP_DIRTY_LOG_RING_ACQ_REL, "dirty_log_ring_acq_rel" },
	[HOST_CAP_MANUAL_DIRTY_LOG_PROTECT2] = { KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
						 "manual_dirty_log_protect2" },
	[HOST_CAP_TSC_CONTROL] = { KVM_CAP_TSC_CONTROL, "tsc_control" },
	[HOST_CAP_GET_TSC_KHZ] = { KVM_CAP_GET_TSC_KHZ, "get_tsc_khz" },
	[HOST_CAP_TSC_DEADLINE_TIMER] = { KVM_CAP_TSC_DEADLINE_TIMER, "tsc_deadline_timer" },
	[HOST_CAP_KVMCLOCK_CTRL] = { KVM_CAP_KVMCLOCK_CTRL, "kvmclock_ctrl" },
	[HOST_CAP_ADJUST_CLOCK] = { KVM_CAP_ADJUST_CLOCK, "adjust_clock" },
	[HOST_CAP_XSAVE] = { KVM_CAP_XSAVE, "xsave" },
	[HOST_CAP_XSAVE2] = { KVM_CAP_XSAVE2, "xsave2" },
	[HOST_CAP_XCRS] = { KVM_CAP_XCRS, "xcrs" },
	[HOST_CAP_VCPU_EVENTS] = { KVM_CAP_VCPU_EVENTS, "vcpu_events" },
	[HOST_CAP_DEBUGREGS] = { KVM_CAP_DEBUGREGS, "debugregs" },
	[HOST_CAP_SREGS2] = { KVM_CAP_SREGS2, "sregs2" },
};

/* The devices this build's VMM builds for a guest (the guest-definition rule
 * compares a VM's needs against a destination's list). */
static const char *const build_devices[] = {
	"lapic", "ioapic", "pic", "pit", "pci-host", "virtio-blk-pci", "uart-16550a",
	"pm-ports", "kvmclock",
};

const char *host_profile__cap_name(enum host_cap c)
{
	return (unsigned)c < HOST_CAP_COUNT ? caps[c].name : "?";
}

bool host_profile__has_device(const struct host_profile *p, const char *name)
{
	for (size_t i = 0; i < p->ndevices; i++)
		if (!strcmp(p->devices[i], name))
			return true;
	return false;
}

static void host_cpu(struct host_profile *p)
{
	unsigned a, b, c, d;
	if (__get_cpuid(0, &a, &b, &c, &d)) {
		memcpy(p->vendor, &b, 4);
		memcpy(p->vendor + 4, &d, 4);
		memcpy(p->vendor + 8, &c, 4);
		p->vendor[12] = '\0';
	}
	if (__get_cpuid(1, &a, &b, &c, &d)) {
		unsigned fam = a >> 8 & 0xf, mod = a >> 4 & 0xf;
		if (fam == 0xf)
			fam += a >> 20 & 0xff;
		if (fam >= 6)
			mod |= (a >> 16 & 0xf) << 4;
		p->family = fam;
		p->model = mod;
		p->stepping = a & 0xf;
	}
	if (__get_cpuid(0x80000001, &a, &b, &c, &d))
		p->host_nx = d >> 20 & 1;
}

static int read_small(const char *path, char *buf, size_t size, struct err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err__setsys(e, errno, "cannot open %s", path);
	ssize_t n;
	size_t off = 0;
	while (off + 1 < size && (n = read(fd, buf + off, size - 1 - off)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int r = err__setsys(e, errno, "reading %s", path);
			close(fd);
			return r;
		}
		off += (size_t)n;
	}
	buf[off] = '\0';
	if (close(fd) < 0)
		return err__setsys(e, errno, "closing %s", path);
	return 0;
}

static int host_memory(struct host_profile *p, struct err *e)
{
	char buf[8192];
	int r = read_small("/proc/meminfo", buf, sizeof(buf), e);
	if (r)
		return r;
	const char *t = strstr(buf, "MemTotal:"), *a = strstr(buf, "MemAvailable:");
	unsigned long long kt, ka;
	if (!t || !a || sscanf(t, "MemTotal: %llu kB", &kt) != 1 ||
	    sscanf(a, "MemAvailable: %llu kB", &ka) != 1)
		return err__set(e, EINVAL, "/proc/meminfo has no MemTotal/MemAvailable in kB");
	p->mem_total = kt * KiB;
	p->mem_available = ka * KiB;
	if ((r = read_small("/proc/sys/kernel/random/boot_id", buf, sizeof(buf), e)))
		return r;
	buf[strcspn(buf, "\n")] = '\0';
	snprintf(p->boot_id, sizeof(p->boot_id), "%.39s", buf);
	return 0;
}

static int host_kvm(struct host_profile *p, struct err *e)
{
	const char *path = getenv("VMHOP_KVM_DEVICE");
	if (!path || !*path)
		path = "/dev/kvm";
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return err__setsys(e, errno, "cannot open %s (is KVM available and accessible to this user?)",
				   path);
	int r = 0;
	p->kvm_api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (p->kvm_api_version != KVM_API_VERSION) {
		r = err__set(e, ENOTTY, "%s is not a usable KVM device (API version %d, need %d)",
			     path, p->kvm_api_version, KVM_API_VERSION);
		goto out;
	}
	for (int i = 0; i < HOST_CAP_COUNT; i++) {
		int v = ioctl(fd, KVM_CHECK_EXTENSION, caps[i].cap);
		p->caps[i] = v < 0 ? 0 : v;
	}
	struct kvm_cpuid2 *sup;
	if ((r = cpuid__get_supported(fd, &sup, e)))
		goto out;
	p->ncpuid = cpu_models__from_kvm(sup->entries, sup->nent, p->cpuid, HOST_PROFILE_MAX_CPUID);
	free(sup);
	const struct cpuid_leaf *x1 = cpu_models__leaf(p->cpuid, p->ncpuid, 0x80000001, 0);
	p->kvm_nx = x1 && (x1->edx >> 20 & 1);
out:
	if (close(fd) < 0 && !r)
		r = err__setsys(e, errno, "closing %s", path);
	return r;
}

static int host_models(struct host_profile *p, struct err *e)
{
	struct cpu_model_set *s = malloc(sizeof(*s));
	if (!s)
		return err__set(e, ENOMEM, "out of memory");
	int r = cpu_models__builtin(s, e);
	for (size_t i = 0; !r && i < s->nmodels && p->nmodels < HOST_PROFILE_MAX_MODELS; i++) {
		const struct cpu_model *m = &s->models[i];
		char miss[8];
		if (m->host ? p->ncpuid > 0 :
		    !cpu_models__missing(s, m, p->cpuid, p->ncpuid, miss, sizeof(miss)))
			snprintf(p->models[p->nmodels++], CPU_MODEL_NAME_MAX, "%s", m->name);
	}
	free(s);
	return r;
}

int host_profile__collect(struct host_profile *p, struct err *e)
{
	memset(p, 0, sizeof(*p));
	if (gethostname(p->hostname, sizeof(p->hostname) - 1) < 0)
		return err__setsys(e, errno, "gethostname");
	host_cpu(p);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 0)
		return err__setsys(e, errno, "sysconf(_SC_NPROCESSORS_ONLN)");
	p->cores = (unsigned)n;
	int r = host_memory(p, e);
	if (!r)
		r = host_kvm(p, e);
	if (!r)
		r = host_models(p, e);
	if (r)
		return r;
	struct release_matrix m;
	const struct release_level *self;
	if ((r = release__builtin(&m, e)) || (r = release__self(&m, &self, e)))
		return r;
	snprintf(p->release, sizeof(p->release), "%s", self->name);
	p->release_ordinal = self->ordinal;
	p->format_write = self->write_format;
	p->format_read_min = self->read_min;
	p->format_read_max = self->read_max;
	snprintf(p->machine, sizeof(p->machine), "%s", HOST_PROFILE_MACHINE);
	for (size_t i = 0; i < ARRAY_SIZE(build_devices); i++)
		snprintf(p->devices[p->ndevices++], HOST_PROFILE_NAME_MAX, "%s", build_devices[i]);
	p->max_disks = VM_MAX_DISKS;
	return 0;
}

#define HEAD_BYTES (64 * 1024)

int host_profile__view_disk(struct compat_disk_view *v, const char *id, const char *path,
			    struct err *e)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->id, sizeof(v->id), "%s", id);
	if (strlen(path) >= sizeof(v->path))
		return err__set(e, ENAMETOOLONG, "disk %s: path too long", id);
	snprintf(v->path, sizeof(v->path), "%s", path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;	/* exists = false: the rule reports it */
	struct stat st;
	int r = 0;
	unsigned char *buf = NULL;
	if (fstat(fd, &st) < 0) {
		r = err__setsys(e, errno, "disk %s: stat %s", id, path);
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		goto out;	/* a directory or a device that is no disk: exists = false */
	v->exists = true;
	v->writable = access(path, W_OK) == 0;
	v->dev = st.st_dev;
	v->ino = st.st_ino;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		if (end < 0) {
			r = err__setsys(e, errno, "disk %s: size of %s", id, path);
			goto out;
		}
		v->size = (uint64_t)end;
	} else {
		v->size = (uint64_t)st.st_size;
	}
	size_t want = (size_t)MIN(v->size, (uint64_t)HEAD_BYTES);
	buf = malloc(want ? want : 1);
	if (!buf) {
		r = err__set(e, ENOMEM, "out of memory");
		goto out;
	}
	if (want && util__pread_all(fd, buf, want, 0)) {
		r = err__setsys(e, errno ? errno : EIO, "disk %s: reading %s", id, path);
		goto out;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	if (!EVP_Digest(buf, want, md, &mdlen, EVP_sha256(), NULL)) {
		r = err__set(e, EIO, "disk %s: SHA-256 failed", id);
		goto out;
	}
	for (unsigned i = 0; i < mdlen && 2 * i + 2 < sizeof(v->head_sha256); i++)
		snprintf(v->head_sha256 + 2 * i, 3, "%02x", md[i]);
out:
	free(buf);
	if (close(fd) < 0 && !r)
		r = err__setsys(e, errno, "disk %s: closing %s", id, path);
	return r;
}

static const char *mapped(const char *path, const char *const *map, size_t nmap,
			  char *buf, size_t size)
{
	for (size_t i = 0; i < nmap; i++) {
		const char *eq = strchr(map[i], '=');
		if (eq && (size_t)(eq - map[i]) == strlen(path) && !strncmp(map[i], path, strlen(path))) {
			snprintf(buf, size, "%s", eq + 1);
			return buf;
		}
	}
	return path;
}

int host_profile__view_disks(struct host_profile *p, const struct vm_config *vm,
			     const char *const *map, size_t nmap, struct err *e)
{
	char buf[HOST_PROFILE_PATH_MAX];
	p->ndisks = 0;
	p->have_disks = true;
	for (unsigned i = 0; i < vm->nr_disks && i < VM_MAX_DISKS; i++) {
		const struct disk_config *d = &vm->disks[i];
		int r = host_profile__view_disk(&p->disks[i], d->id,
						mapped(d->path, map, nmap, buf, sizeof(buf)), e);
		if (r)
			return r;
		p->ndisks = i + 1;
	}
	return 0;
}
