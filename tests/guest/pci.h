/* pci.h: PCI configuration mechanism 1 (0xCF8/0xCFC), bus 0 only. */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdint.h>

#define PCI_BDF(bus, dev, fn) (((bus) << 8) | ((dev) << 3) | (fn))

uint32_t pci__read32(unsigned bdf, unsigned off);
uint16_t pci__read16(unsigned bdf, unsigned off);
uint8_t pci__read8(unsigned bdf, unsigned off);
void pci__write16(unsigned bdf, unsigned off, uint16_t v);

/* The nth function (from 0, in bus order) on bus 0 with this vendor/device; its bdf or -1. */
int pci__find(uint16_t vendor, uint16_t device, unsigned nth);
/* Address of memory BAR `bar` (64-bit BARs combined); 0 if unassigned or an I/O BAR. */
uint64_t pci__bar_addr(unsigned bdf, unsigned bar);
/* Turn on memory decoding and bus mastering. */
void pci__enable(unsigned bdf);

#endif
