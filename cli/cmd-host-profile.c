/* vmhop host-profile: this host's profile (CPU, NX, KVM and its supported
 * CPUID, cores and memory, release level, CPU models it can run, machine),
 * as a table or JSON; --output writes the JSON to a new file, never over an
 * existing one; --vm-config adds this host's view of a VM's disks. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/commands.h"
#include "vmhop/compat.h"
#include "vmhop/host-profile.h"
#include "vmhop/util.h"

#define NAME "vmhop host-profile"
#define MAX_MAPS 16

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmhop host-profile [--json] [--output FILE] [--vm-config FILE [--disk-map OLD=NEW]...]\n"
		"Describe this host for migration planning: CPU vendor and identity, NX, KVM's\n"
		"API version, capabilities and supported CPUID, cores and memory, the release\n"
		"level and stream formats, the CPU models it can run, the machine it builds.\n"
		"Feed two of these to 'vmhop compat-check'. See vmhop-host-profile(1).\n"
		"\n"
		"  --json              print JSON instead of a table\n"
		"  --output FILE       write the JSON profile to FILE (a new file: an existing\n"
		"                      one is never replaced); prints nothing else\n"
		"  --vm-config FILE    also record this host's view of that VM's disks (the\n"
		"                      JSON 'vmhop ctl --json query-config' prints)\n"
		"  --disk-map OLD=NEW  look at NEW for the VM's disk OLD (repeatable)\n"
		"  --help              this text\n");
}

static int fail(const char *msg)
{
	fprintf(stderr, NAME ": %s\n", msg);
	return 1;
}

static void yesno_cap(const struct host_profile *p, enum host_cap c, char *buf, size_t size)
{
	if (p->caps[c] > 1)
		snprintf(buf, size, "%lld", (long long)p->caps[c]);
	else
		snprintf(buf, size, "%s", p->caps[c] ? "yes" : "no");
}

static void print_table(const struct host_profile *p)
{
	char ring[24], man[24], tsc[24], dl[24];
	yesno_cap(p, HOST_CAP_DIRTY_LOG_RING, ring, sizeof(ring));
	snprintf(man, sizeof(man), "%s", p->caps[HOST_CAP_MANUAL_DIRTY_LOG_PROTECT2] ? "yes" : "no");
	yesno_cap(p, HOST_CAP_TSC_CONTROL, tsc, sizeof(tsc));
	yesno_cap(p, HOST_CAP_TSC_DEADLINE_TIMER, dl, sizeof(dl));
	printf("%-12s %s (boot %s)\n", "host", p->hostname, p->boot_id);
	printf("%-12s %s family %u model %u stepping %u\n", "cpu", p->vendor, p->family, p->model,
	       p->stepping);
	printf("%-12s %s on the host, %s to guests by KVM\n", "nx", p->host_nx ? "enabled" : "disabled",
	       p->kvm_nx ? "offered" : "not offered");
	printf("%-12s API %d, max vCPUs %lld, dirty ring %s, manual dirty-log protect %s, TSC scaling %s, TSC deadline %s\n",
	       "kvm", p->kvm_api_version,
	       (long long)(p->caps[HOST_CAP_MAX_VCPUS] ? p->caps[HOST_CAP_MAX_VCPUS] : p->caps[HOST_CAP_NR_VCPUS]),
	       ring, man, tsc, dl);
	printf("%-12s %zu entries from KVM_GET_SUPPORTED_CPUID\n", "cpuid", p->ncpuid);
	printf("%-12s %u cores, %llu MiB memory, %llu MiB available\n", "resources", p->cores,
	       (unsigned long long)(p->mem_total / MiB), (unsigned long long)(p->mem_available / MiB));
	printf("%-12s %s (level %u), writes stream format %u, reads %u..%u\n", "release", p->release,
	       p->release_ordinal, p->format_write, p->format_read_min, p->format_read_max);
	printf("%-12s", "cpu models");
	for (size_t i = 0; i < p->nmodels; i++)
		printf(" %s", p->models[i]);
	printf("%s\n", p->nmodels ? "" : " (none)");
	printf("%-12s %s, at most %u disks, devices:", "machine", p->machine, p->max_disks);
	for (size_t i = 0; i < p->ndevices; i++)
		printf(" %s", p->devices[i]);
	printf("\n");
	for (size_t i = 0; p->have_disks && i < p->ndisks; i++) {
		const struct compat_disk_view *v = &p->disks[i];
		char label[40];
		snprintf(label, sizeof(label), "disk %s", v->id);
		if (!v->exists)
			printf("%-12s %s: cannot be opened here\n", label, v->path);
		else
			printf("%-12s %s: %llu bytes, %s, first 64 KiB sha256 %.16s...\n", label, v->path,
			       (unsigned long long)v->size, v->writable ? "writable" : "read-only",
			       v->head_sha256);
	}
}

static int write_new(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, NAME ": %s: %s%s\n", path, strerror(errno),
			errno == EEXIST ? " (it is never replaced: remove it or choose another name)" : "");
		return 1;
	}
	int r = util__write_all(fd, text, strlen(text));
	if (!r)
		r = util__write_all(fd, "\n", 1);
	if (!r && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && !r)
		r = -errno;
	if (r) {
		fprintf(stderr, NAME ": writing %s: %s\n", path, strerror(-r));
		if (unlink(path) < 0)
			fprintf(stderr, NAME ": removing the partial %s: %s\n", path, strerror(errno));
		return 1;
	}
	return 0;
}

int cmd_host_profile(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "output", required_argument, NULL, 'o' },
		{ "vm-config", required_argument, NULL, 'v' },
		{ "disk-map", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	bool json = false;
	const char *output = NULL, *vmfile = NULL;
	const char *maps[MAX_MAPS];
	size_t nmaps = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "jo:v:m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'o': output = optarg; break;
		case 'v': vmfile = optarg; break;
		case 'm':
			if (!strchr(optarg, '=') || optarg[0] == '=' || nmaps == MAX_MAPS) {
				fprintf(stderr, NAME ": --disk-map %s: expected OLD=NEW (at most %d)\n",
					optarg, MAX_MAPS);
				return 2;
			}
			maps[nmaps++] = optarg;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, NAME ": unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (nmaps && !vmfile) {
		fprintf(stderr, NAME ": --disk-map needs --vm-config\n");
		return 2;
	}
	struct host_profile *p = malloc(sizeof(*p));
	if (!p)
		return fail("out of memory");
	struct err e = { 0 };
	int rc = 0;
	if (host_profile__collect(p, &e))
		rc = fail(e.msg);
	if (!rc && vmfile) {
		struct vm_config vm;
		struct compat_vm_ext ext;
		if (compat__load_vm(vmfile, &vm, &ext, &e) ||
		    host_profile__view_disks(p, &vm, maps, nmaps, &e))
			rc = fail(e.msg);
		vm_config__free(&vm);
	}
	if (!rc && (json || output)) {
		struct json_object *j;
		if (host_profile__to_json(p, &j)) {
			rc = fail("out of memory");
		} else {
			const char *text = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
									  JSON_C_TO_STRING_NOSLASHESCAPE);
			if (!text)
				rc = fail("out of memory");
			else if (output)
				rc = write_new(output, text);
			else
				printf("%s\n", text);
			json_object_put(j);
		}
	} else if (!rc) {
		print_table(p);
	}
	free(p);
	if (!rc && fflush(stdout) == EOF)
		rc = fail("writing standard output failed");
	return rc;
}
