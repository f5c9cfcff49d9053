/* A pause that lands while a vCPU thread is handling a port I/O exit: KVM
 * finishes such an exit (an IN's value into RAX, RIP past the instruction)
 * only in the next KVM_RUN, so the paused state must be read after that run.
 * Else a checkpoint or migration restarts the guest on the IN (a second
 * device read, RAX lost). A real VM from vmm/ (vm.c, vcpu.c) runs eleven
 * bytes of 32-bit code. Skipped (77) without /dev/kvm. */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <linux/kvm.h>

#include "tests/unit/check-run.h"
#include "tests/unit/kvm-harness.h"
#include "vmhop/io-bus.h"
#include "vmhop/vcpu.h"
#include "vmhop/vm-config.h"
#include "vmhop/vm.h"

#define CODE_GPA	0x1000
#define RESULT_GPA	0x2000
#define PORT		0x510
#define VALUE		0x12345678u
#define RIP_AFTER_IN	(CODE_GPA + 5)

/* mov dx, 0x510; in eax, dx; mov [0x2000], eax; 1: hlt; jmp 1b */
static const uint8_t code[] = {
	0x66, 0xba, 0x10, 0x05,
	0xed,
	0xa3, 0x00, 0x20, 0x00, 0x00,
	0xf4,
	0xeb, 0xfd,
};

struct port {
	struct io_dev dev;
	struct vm *vm;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned reads;
};

/* Holds the vCPU thread in its exit handler until the pause is requested,
 * so the pause surely finds the IN unfinished. */
static void port_read(struct io_dev *dev, uint64_t off, void *data, unsigned size)
{
	(void)off;
	struct port *p = dev->opaque;
	pthread_mutex_lock(&p->lock);
	p->reads++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (bool asked = false; !asked;) {
		pthread_mutex_lock(&p->vm->lock);
		asked = p->vm->pause_req;
		pthread_mutex_unlock(&p->vm->lock);
		if (!asked)
			nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	uint32_t v = VALUE;
	memcpy(data, &v, size < 4 ? size : 4);
}

START_TEST(pause_finishes_an_in)
{
	struct vm_config cfg;
	vm_config__init(&cfg);
	cfg.mem_size = 4 << 20;
	cfg.nr_cpus = 1;
	struct err e = { 0 };
	ck_assert_msg(vm_config__set_serial(&cfg, "none", &e) == 0, "%s", e.msg);
	struct vm *vm = NULL;
	ck_assert_msg(vm__create_incoming(&vm, &cfg, &e) == 0, "%s", e.msg);

	struct port p = { .dev = { .name = "test port", .base = PORT, .len = 4, .read = port_read },
			  .vm = vm, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	p.dev.opaque = &p;
	ck_assert_msg(io_bus__add(&vm->pio, &p.dev, &e) == 0, "%s", e.msg);
	memcpy(guest_mem__ptr(&vm->mem, CODE_GPA, sizeof(code)), code, sizeof(code));
	volatile uint32_t *result = guest_mem__ptr(&vm->mem, RESULT_GPA, 4);
	ck_assert_msg(vcpu__setup_pvh(vm->vcpus[0], CODE_GPA, 0, &e) == 0, "%s", e.msg);
	ck_assert_msg(vm__start(vm, &e) == 0, "%s", e.msg);

	pthread_mutex_lock(&p.lock);
	while (!p.reads)
		pthread_cond_wait(&p.cond, &p.lock);
	pthread_mutex_unlock(&p.lock);
	ck_assert_msg(vm__pause(vm, &e) == 0, "%s", e.msg);

	struct kvm_regs regs;
	ck_assert_int_eq(ioctl(vm->vcpus[0]->fd, KVM_GET_REGS, &regs), 0);
	ck_assert_msg(regs.rip == RIP_AFTER_IN && (uint32_t)regs.rax == VALUE,
		      "paused on an IN: rip 0x%llx rax 0x%llx, expected the IN finished "
		      "(rip 0x%x, rax 0x%x)", (unsigned long long)regs.rip,
		      (unsigned long long)regs.rax, RIP_AFTER_IN, VALUE);
	ck_assert_msg(*result == 0, "the guest ran past the IN while paused");

	/* Resumed, the guest goes on from there: no second read. */
	ck_assert_msg(vm__resume(vm, &e) == 0, "%s", e.msg);
	for (int i = 0; i < 5000 && *result != VALUE; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	ck_assert_msg(*result == VALUE, "the guest stored 0x%x after resuming, expected 0x%x",
		      *result, VALUE);
	pthread_mutex_lock(&p.lock);
	unsigned reads = p.reads;
	pthread_mutex_unlock(&p.lock);
	ck_assert_msg(reads == 1, "the port was read %u times, expected once", reads);

	vm__destroy(vm);
	vm_config__free(&cfg);
}
END_TEST

int main(void)
{
	kvm_harness__require_kvm();
	Suite *s = suite_create("vcpu-pause");
	TCase *tc = tcase_create("io-exit");
	tcase_add_test(tc, pause_finishes_an_in);
	suite_add_tcase(s, tc);
	return check_run(s);
}
