/* power.c: shutdown request and power off through the PIIX4 PM I/O block. */
#include "arch.h"
#include "power.h"
#include "serial.h"

#define PM1A_STS	0x600
#define PM1A_EN		0x602
#define PM1A_CNT	0x604
#define PWRBTN_STS	0x0100
#define PWRBTN_EN	0x0100
#define SLP_EN		0x2000	/* with SLP_TYP 0: soft off (S5) */
#define RESET_CTRL	0xCF9

/* QEMU latches a power-button press into PM1a_STS only while PWRBTN_EN is set. */
void power__init(void)
{
	outw(PM1A_EN, (uint16_t)(inw(PM1A_EN) | PWRBTN_EN));
}

bool power__shutdown_requested(void)
{
	if (!(inw(PM1A_STS) & PWRBTN_STS))
		return false;
	outw(PM1A_STS, PWRBTN_STS);	/* write 1 to clear */
	return true;
}

void power__off(void)
{
	serial__drain();
	outw(PM1A_CNT, SLP_EN);
	outb(RESET_CTRL, 0x06);		/* no PM block: hard reset (QEMU -no-reboot exits) */
	for (;;)
		cpu_relax();
}
