/* vCPU throttling for migrations that do not converge (auto-converge): a
 * thread kicks every vCPU out of KVM_RUN once per period, and each kicked
 * vCPU sleeps a share of the period before it runs again. With a run slice
 * of 10 ms the period is 10 ms / (1 - pct) and the sleep the rest of it,
 * so a guest at 90% runs 10 ms in every 100 ms. The sleep is shorter than
 * the period, so kicks never pile up into a permanent stop. */
#include <time.h>

#include "vmhop/vcpu.h"
#include "vmhop/vm.h"

#define RUN_SLICE_NS 10000000ULL

static void deadline_in(struct timespec *ts, uint64_t ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ns / 1000000000ULL);
	ts->tv_nsec += (long)(ns % 1000000000ULL);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void vcpu__throttle_sleep(struct vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->lock);
	if (v->throttle_pending && vm->throttle_sleep_ns) {
		struct timespec until;
		deadline_in(&until, vm->throttle_sleep_ns);
		/* A pause, the VM's end, or the throttle going off ends it early. */
		while (!vm->pause_req && !vm__state_ended(vm->state) && vm->throttle_pct &&
		       pthread_cond_timedwait(&vm->cond, &vm->lock, &until) == 0)
			;
	}
	v->throttle_pending = false;
	pthread_mutex_unlock(&vm->lock);
}

static void *throttle_thread(void *arg)
{
	struct vm *vm = arg;
	pthread_mutex_lock(&vm->lock);
	while (vm->throttle_pct && !vm__state_ended(vm->state)) {
		uint64_t period = RUN_SLICE_NS * 100 / (100 - vm->throttle_pct);
		vm->throttle_sleep_ns = period - RUN_SLICE_NS;
		if (vm->state == VM_RUNNING && !vm->pause_req)
			for (unsigned i = 0; i < vm->nr_vcpus; i++) {
				vm->vcpus[i]->throttle_pending = true;
				vcpu__kick(vm->vcpus[i]);
			}
		struct timespec until;
		deadline_in(&until, period);
		while (vm->throttle_pct && !vm__state_ended(vm->state) &&
		       pthread_cond_timedwait(&vm->throttle_cond, &vm->lock, &until) == 0)
			;
	}
	vm->throttle_sleep_ns = 0;
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vm__set_throttle(struct vm *vm, unsigned pct, struct err *e)
{
	if (pct > 99)
		pct = 99;
	pthread_mutex_lock(&vm->lock);
	vm->throttle_pct = pct;
	pthread_cond_broadcast(&vm->throttle_cond);
	pthread_cond_broadcast(&vm->cond);	/* sleeping vCPUs re-check */
	bool running = vm->throttle_running;
	if (pct && !running) {
		int r = pthread_create(&vm->throttle_thread, NULL, throttle_thread, vm);
		if (r) {
			vm->throttle_pct = 0;
			pthread_mutex_unlock(&vm->lock);
			return err__setsys(e, r, "starting the vCPU throttle");
		}
		vm->throttle_running = true;
	}
	pthread_mutex_unlock(&vm->lock);
	if (!pct && running) {
		pthread_join(vm->throttle_thread, NULL);
		pthread_mutex_lock(&vm->lock);
		vm->throttle_running = false;
		pthread_mutex_unlock(&vm->lock);
	}
	return 0;
}
