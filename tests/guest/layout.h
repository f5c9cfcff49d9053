/* layout.h: constants shared by the ring-0 entry stub (entry.S) and the C code. */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define MAX_CPUS		64

/* Per-CPU stacks: ring 0 only runs the entry stub and the exception report. */
#define R0_STACK_SHIFT		13
#define R0_STACK_SIZE		(1 << R0_STACK_SHIFT)
#define USER_STACK_SHIFT	16
#define USER_STACK_SIZE		(1 << USER_STACK_SHIFT)

/* GDT selectors. */
#define KERNEL_CS		0x08
#define KERNEL_DS		0x10
#define USER_DS			(0x18 | 3)
#define USER_CS			(0x20 | 3)
#define TSS_SEL0		0x28	/* CPU i uses TSS_SEL0 + 16 * i */

/*
 * The TSSes sit back to back, TSS_STRIDE bytes apart, followed by one shared
 * all-zero I/O permission bitmap: every TSS's iomap_base points at it.
 */
#define TSS_STRIDE		128
#define TSS_AREA_SIZE		(MAX_CPUS * TSS_STRIDE)
#define IO_BITMAP_SIZE		8192

/* How the guest was entered (third argument of guest_main). */
#define BOOT_PVH		1
#define BOOT_MULTIBOOT		2

#define IDT_VECTORS		32

/* Where the BSP copies the AP start-up code under multiboot (SIPI vector 0x08). */
#define AP_TRAMPOLINE		0x8000

#endif
