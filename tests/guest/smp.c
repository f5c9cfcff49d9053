/*
 * smp.c: INIT/SIPI from ring 3 through the local APIC's MMIO page (identity
 * mapped).  Only used under multiboot with smp=N: our VMM starts every vCPU
 * at the PVH entry itself.
 */
#include "arch.h"
#include "clock.h"
#include "layout.h"
#include "lib.h"
#include "smp.h"

#define LAPIC_BASE	0xFEE00000ULL
#define LAPIC_ICR_LO	0x300
#define LAPIC_ICR_HI	0x310
#define ICR_BUSY	(1u << 12)
#define ICR_INIT	0x00004500u	/* INIT, level assert */
#define ICR_STARTUP	0x00004600u	/* start-up IPI | vector */

extern const uint8_t ap_trampoline[], ap_trampoline_end[];

static void delay_us(uint64_t us)
{
	uint64_t end = rdtsc() + clock__us_to_ticks(us);

	while (rdtsc() < end)
		cpu_relax();
}

static void send_ipi(unsigned apic_id, uint32_t icr)
{
	mmio_write32(LAPIC_BASE + LAPIC_ICR_HI, apic_id << 24);
	mmio_write32(LAPIC_BASE + LAPIC_ICR_LO, icr);
	for (int i = 0; i < 100000 && (mmio_read32(LAPIC_BASE + LAPIC_ICR_LO) & ICR_BUSY); i++)
		cpu_relax();
}

void smp__start_aps(unsigned ncpus)
{
	memcpy((void *)(uintptr_t)AP_TRAMPOLINE, ap_trampoline,
	       (size_t)(ap_trampoline_end - ap_trampoline));
	for (unsigned id = 1; id < ncpus; id++) {
		send_ipi(id, ICR_INIT);
		delay_us(10000);
		send_ipi(id, ICR_STARTUP | (AP_TRAMPOLINE >> 12));
		delay_us(200);
		send_ipi(id, ICR_STARTUP | (AP_TRAMPOLINE >> 12));
	}
}
