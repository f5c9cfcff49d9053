/* smp.h: start APs ourselves (multiboot under QEMU, where SeaBIOS parks them). */
#ifndef GUEST_SMP_H
#define GUEST_SMP_H

/* Send INIT/SIPI to APIC IDs 1..ncpus-1; they enter through ap_trampoline. */
void smp__start_aps(unsigned ncpus);

#endif
