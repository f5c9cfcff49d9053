/*
 * trap.c: exception gates and the report.  trap__report runs in ring 0,
 * which kvm-pvm emulates instruction by instruction, so it is short, uses
 * general registers only (this file is built with -mgeneral-regs-only) and
 * shares nothing with the ring-3 code (a fault may hit while another CPU
 * holds the serial lock: the report does not take it).
 */
#include "arch.h"
#include "layout.h"
#include "trap.h"

#define COM1		0x3F8
#define LSR_THRE	0x20
#define GATE_INTR	0x8E	/* present, DPL 0, 64-bit interrupt gate */

struct idt_gate {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t reserved;
} __attribute__((packed));

extern struct idt_gate idt[IDT_VECTORS];
extern const uint64_t isr_table[IDT_VECTORS];

void trap__init(void)
{
	for (int v = 0; v < IDT_VECTORS; v++) {
		uint64_t a = isr_table[v];

		idt[v] = (struct idt_gate){
			.off_lo = (uint16_t)a,
			.sel = KERNEL_CS,
			.type = GATE_INTR,
			.off_mid = (uint16_t)(a >> 16),
			.off_hi = (uint32_t)(a >> 32),
		};
	}
}

static void put(const char *s)
{
	for (; *s; s++) {
		while (!(inb(COM1 + 5) & LSR_THRE))
			;
		outb(COM1, (uint8_t)*s);
	}
}

static void put_num(uint64_t v, unsigned base)
{
	char tmp[24];
	int i = sizeof(tmp) - 1;

	tmp[i] = '\0';
	do {
		unsigned d = (unsigned)(v % base);

		tmp[--i] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v /= base;
	} while (v);
	put(tmp + i);
}

void trap__report(uint64_t vec, uint64_t err, uint64_t rip, uint64_t cr2, uint64_t cs)
{
	uint32_t r[4];

	cpuid(1, 0, r);
	put("\nVERDICT FAIL exception ");
	put_num(vec, 10);
	put(" rip=0x");
	put_num(rip, 16);
	put(" cr2=0x");
	put_num(cr2, 16);
	put(" err=0x");
	put_num(err, 16);
	put(" cs=0x");
	put_num(cs, 16);
	put(" cpu=");
	put_num(r[1] >> 24, 10);
	put("\n");
	outw(0x604, 0x2000);
	outb(0xCF9, 0x06);
	for (;;)
		__asm__ volatile("cli; hlt");
}
