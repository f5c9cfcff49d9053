/* pci.c: configuration space access and a bus-0 scan (the firmware or VMM assigned the BARs). */
#include "arch.h"
#include "pci.h"

#define CONF_ADDR	0xCF8
#define CONF_DATA	0xCFC
#define PCI_COMMAND	0x04
#define CMD_MEMORY	0x0002
#define CMD_MASTER	0x0004
#define PCI_HEADER	0x0E
#define PCI_BAR0	0x10

static void select_reg(unsigned bdf, unsigned off)
{
	outl(CONF_ADDR, 0x80000000u | (bdf << 8) | (off & 0xFC));
}

uint32_t pci__read32(unsigned bdf, unsigned off)
{
	select_reg(bdf, off);
	return inl(CONF_DATA);
}

uint16_t pci__read16(unsigned bdf, unsigned off)
{
	select_reg(bdf, off);
	return inw((uint16_t)(CONF_DATA + (off & 2)));
}

uint8_t pci__read8(unsigned bdf, unsigned off)
{
	select_reg(bdf, off);
	return inb((uint16_t)(CONF_DATA + (off & 3)));
}

void pci__write16(unsigned bdf, unsigned off, uint16_t v)
{
	select_reg(bdf, off);
	outw((uint16_t)(CONF_DATA + (off & 2)), v);
}

int pci__find(uint16_t vendor, uint16_t device, unsigned nth)
{
	for (unsigned dev = 0; dev < 32; dev++) {
		for (unsigned fn = 0; fn < 8; fn++) {
			unsigned bdf = PCI_BDF(0, dev, fn);
			uint32_t id = pci__read32(bdf, 0);

			if ((id & 0xFFFF) == 0xFFFF) {
				if (fn == 0)
					break;
				continue;
			}
			if ((id & 0xFFFF) == vendor && (id >> 16) == device && !nth--)
				return (int)bdf;
			if (fn == 0 && !(pci__read8(bdf, PCI_HEADER) & 0x80))
				break;	/* single-function device */
		}
	}
	return -1;
}

uint64_t pci__bar_addr(unsigned bdf, unsigned bar)
{
	uint32_t lo, hi = 0;

	if (bar > 5)
		return 0;
	lo = pci__read32(bdf, PCI_BAR0 + 4 * bar);
	if (lo & 1)
		return 0;			/* I/O BAR */
	if (((lo >> 1) & 3) == 2 && bar < 5)	/* 64-bit memory BAR */
		hi = pci__read32(bdf, PCI_BAR0 + 4 * (bar + 1));
	return ((uint64_t)hi << 32) | (lo & ~0xFu);
}

void pci__enable(unsigned bdf)
{
	pci__write16(bdf, PCI_COMMAND,
		     (uint16_t)(pci__read16(bdf, PCI_COMMAND) | CMD_MEMORY | CMD_MASTER));
}
