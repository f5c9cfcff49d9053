#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "cli/vm-loop.h"
#include "vmhop/control.h"
#include "vmhop/control-vm.h"
#include "vmhop/log.h"
#include "vmhop/migrate.h"
#include "vmhop/snapshot.h"
#include "vmhop/vm.h"

struct vm_loop {
	uv_loop_t loop;
	uv_async_t stopped;
	uv_signal_t sigint, sigterm, sighup;
	struct control_server *control;
	struct vm *vm;
};

static void on_vm_stop(struct vm *vm, void *opaque)
{
	struct vm_loop *l = opaque;
	(void)vm;
	/* Called from a vCPU thread: hand over to the loop's thread. */
	uv_async_send(&l->stopped);
}

static void close_own_handles(struct vm_loop *l)
{
	uv_handle_t *hs[] = { (uv_handle_t *)&l->stopped, (uv_handle_t *)&l->sigint,
			      (uv_handle_t *)&l->sigterm, (uv_handle_t *)&l->sighup };
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		if (hs[i]->loop && !uv_is_closing(hs[i]))
			uv_close(hs[i], NULL);
}

static void on_stopped(uv_async_t *a)
{
	struct vm_loop *l = a->data;
	/* The control server owns and closes its own handles; close ours. */
	control__stop(l->control);
	l->control = NULL;
	/* An outgoing migration still running cannot succeed any more. */
	migrate__vm_ended(l->vm);
	close_own_handles(l);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct vm_loop *l = s->data;
	char why[64];
	snprintf(why, sizeof(why), "stopped by signal %s", strsignal(signum));
	vm__stop(l->vm, VM_QUIT, why);
}

static int watch_signal(struct vm_loop *l, uv_signal_t *s, int signum)
{
	int r = uv_signal_init(&l->loop, s);
	if (!r) {
		s->data = l;
		r = uv_signal_start(s, on_signal, signum);
	}
	return r;
}

int vm_loop__run(struct vm *vm, const char *who)
{
	return vm_loop__run_hooked(vm, who, NULL, NULL);
}

int vm_loop__run_hooked(struct vm *vm, const char *who, vm_loop_started_fn started,
			void *opaque)
{
	struct vm_loop l = { .vm = vm };
	struct err e = { 0 };
	int r = uv_loop_init(&l.loop);
	if (r) {
		fprintf(stderr, "%s: event loop: %s\n", who, uv_strerror(r));
		return 1;
	}
	r = uv_async_init(&l.loop, &l.stopped, on_stopped);
	l.stopped.data = &l;
	if (!r)
		r = watch_signal(&l, &l.sigint, SIGINT);
	if (!r)
		r = watch_signal(&l, &l.sigterm, SIGTERM);
	if (!r)
		r = watch_signal(&l, &l.sighup, SIGHUP);
	if (r) {
		fprintf(stderr, "%s: event loop: %s\n", who, uv_strerror(r));
		close_own_handles(&l);
		uv_run(&l.loop, UV_RUN_DEFAULT);
		uv_loop_close(&l.loop);
		return 1;
	}
	/* A pipe reader that went away must not kill the VM. */
	signal(SIGPIPE, SIG_IGN);

	int rc = 0;
	size_t ncmds;
	const struct control_cmd *cmds = control_vm__commands(&ncmds);
	if (vm->cfg->control_path &&
	    control__start(&l.control, &l.loop, vm->cfg->control_path, cmds, ncmds, vm, &e) < 0) {
		fprintf(stderr, "%s: %s\n", who, e.msg);
		rc = 1;
	}
	pthread_mutex_lock(&vm->lock);
	vm->on_stop = on_vm_stop;
	vm->on_stop_opaque = &l;
	pthread_mutex_unlock(&vm->lock);
	if (!rc && vm__start(vm, &e) < 0) {
		fprintf(stderr, "%s: %s\n", who, e.msg);
		rc = 1;
	}
	if (!rc && started && started(vm, opaque) < 0)
		rc = 1;
	if (rc)
		vm__stop(vm, VM_QUIT, "setup failed");
	uv_run(&l.loop, UV_RUN_DEFAULT);
	vm__join(vm);
	migrate__destroy(vm);
	snapshot__track_drop(vm);
	uv_loop_close(&l.loop);

	pthread_mutex_lock(&vm->lock);
	vm->on_stop = NULL;
	pthread_mutex_unlock(&vm->lock);
	if (rc)
		return rc;
	switch (vm__state(vm)) {
	case VM_SHUTDOWN:
		pr_info("%s", vm->crash_reason);
		return 0;
	case VM_QUIT:
	case VM_MIGRATED:
		pr_info("%s", vm->crash_reason);
		return 0;
	case VM_CRASHED:
		fprintf(stderr, "%s: guest failed: %s\n", who, vm->crash_reason);
		if (vm->crash_regs)
			fputs(vm->crash_regs, stderr);
		return 1;
	default:
		fprintf(stderr, "%s: VM ended in state %s\n", who, vm__state_name(vm__state(vm)));
		return 1;
	}
}
