/* bench-compat: how long an offline compat-check of a typical VM takes,
 * against the 50 ms target of issue 6. Two measurements:
 *   in-process: load the VM config and both profiles from files, parse the
 *     built-in data, run every rule (what `vmhop compat-check` does after
 *     exec), many iterations;
 *   command: the whole `vmhop compat-check` process, a few runs.
 * usage: bench-compat FIXTURE_DIR [VMHOP] [ITERATIONS] */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "vmhop/compat.h"
#include "vmhop/util.h"

#define TARGET_MS 50.0

extern char **environ;

static int one_check(const char *vmf, const char *srcf, const char *dstf, struct host_profile *s,
		     struct host_profile *d, struct compat_report *r)
{
	struct vm_config vm;
	struct compat_vm_ext ext;
	struct err e = { 0 };
	if (compat__load_vm(vmf, &vm, &ext, &e) || host_profile__load(srcf, s, &e) ||
	    host_profile__load(dstf, d, &e)) {
		fprintf(stderr, "bench-compat: %s\n", e.msg);
		vm_config__free(&vm);
		return -1;
	}
	struct compat_opts o = { .ext = &ext };
	int rc = compat__check(&vm, s, d, &o, r);
	vm_config__free(&vm);
	return rc;
}

static double run_command(const char *vmhop, char *const argv[])
{
	posix_spawn_file_actions_t fa;
	if (posix_spawn_file_actions_init(&fa) ||
	    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0))
		return -1;
	uint64_t t0 = util__now_ns();
	pid_t pid;
	int st;
	int r = posix_spawn(&pid, vmhop, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) > 2)
		return -1;
	return (double)(util__now_ns() - t0) / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench-compat FIXTURE_DIR [VMHOP] [ITERATIONS]\n");
		return 2;
	}
	char vmf[4096], srcf[4096], dstf[4096];
	snprintf(vmf, sizeof(vmf), "%s/vm-typical.json", argv[1]);
	snprintf(srcf, sizeof(srcf), "%s/amd-host.json", argv[1]);
	snprintf(dstf, sizeof(dstf), "%s/sp3-host.json", argv[1]);
	long iters = argc > 3 ? atol(argv[3]) : 2000;
	if (iters <= 0)
		iters = 2000;
	struct host_profile *s = malloc(sizeof(*s)), *d = malloc(sizeof(*d));
	struct compat_report *r = malloc(sizeof(*r));
	if (!s || !d || !r) {
		fprintf(stderr, "bench-compat: out of memory\n");
		return 1;
	}
	uint64_t t0 = util__now_ns(), worst = 0;
	for (long i = 0; i < iters; i++) {
		uint64_t a = util__now_ns();
		if (one_check(vmf, srcf, dstf, s, d, r))
			return 1;
		worst = MAX(worst, util__now_ns() - a);
	}
	double per = (double)(util__now_ns() - t0) / 1e6 / (double)iters;
	printf("compat-check in-process (load 3 files, %zu rows): %.3f ms per check over %ld, worst %.3f ms; target %.0f ms: %s\n",
	       r->n, per, iters, (double)worst / 1e6, TARGET_MS, per < TARGET_MS ? "met" : "MISSED");
	free(s);
	free(d);
	free(r);
	if (argc > 2) {
		char *args[] = { argv[2], "compat-check", "--vm-config", vmf, "--source-profile", srcf,
				 "--dest-profile", dstf, NULL };
		double sum = 0, max = 0;
		int runs = 20;
		for (int i = 0; i < runs; i++) {
			double ms = run_command(argv[2], args);
			if (ms < 0) {
				fprintf(stderr, "bench-compat: running %s failed\n", argv[2]);
				return 1;
			}
			sum += ms;
			max = MAX(max, ms);
		}
		printf("vmhop compat-check command: %.3f ms per run over %d, worst %.3f ms; target %.0f ms: %s\n",
		       sum / runs, runs, max, TARGET_MS, sum / runs < TARGET_MS ? "met" : "MISSED");
	}
	return 0;
}
