/* Guest-physical memory map shared by the VMM, the boot loaders and the test
 * guests. RAM sits below the 32-bit MMIO hole and continues above 4 GiB. */
#ifndef VMHOP_LAYOUT_H
#define VMHOP_LAYOUT_H

#define LAYOUT_LOW_RAM_END	0xC0000000ULL	/* RAM below 4 GiB ends here */
#define LAYOUT_PCI_MMIO_BASE	0xC0000000ULL	/* BARs are assigned from here */
#define LAYOUT_PCI_MMIO_END	0xFEC00000ULL
#define LAYOUT_IOAPIC_BASE	0xFEC00000ULL
#define LAYOUT_LAPIC_BASE	0xFEE00000ULL
#define LAYOUT_HIGH_RAM_BASE	0x100000000ULL

/* Low-memory boot structures (below 1 MiB, above the real-mode IVT/BDA). */
#define LAYOUT_BOOT_INFO	0x7000ULL	/* PVH start_info or Linux boot_params */
#define LAYOUT_BOOT_MEMMAP	0x8000ULL	/* PVH memmap / spare page */
#define LAYOUT_MPTABLE		0x9000ULL	/* MP table (Linux guests) */
#define LAYOUT_CMDLINE		0x20000ULL	/* kernel command line */
#define LAYOUT_CMDLINE_MAX	0x10000ULL
#define LAYOUT_EBDA		0x9FC00ULL	/* top of conventional memory */
#define LAYOUT_KERNEL_BASE	0x100000ULL	/* 1 MiB: where kernels load */

/* I/O ports. 0x600/0x604 mirror the PIIX4 PM block SeaBIOS programs on QEMU's
 * pc machine, so the same guest powers off the same way on both VMMs. */
#define PORT_COM1		0x3F8
#define PORT_PM1A_STS		0x600	/* 16 bit: bit 8 PWRBTN_STS, write 1 to clear */
#define PORT_PM1A_CNT		0x604	/* 16 bit: bit 13 SLP_EN powers off */
#define PORT_RESET		0xCF9	/* write 0x06 (or 0x0E): reset */
#define PORT_I8042_CMD		0x64	/* write 0xFE: reset line */
#define PORT_PCI_CONF_ADDR	0xCF8
#define PORT_PCI_CONF_DATA	0xCFC

#define PM1_PWRBTN_STS		(1u << 8)
#define PM1_SLP_EN		(1u << 13)

#endif
