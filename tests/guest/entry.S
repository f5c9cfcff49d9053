/*
 * entry.S: boot headers and the ring-0 entry stub of the test guest.
 *
 * On kvm-pvm guest ring-0 code is run by KVM's instruction emulator (about a
 * million instructions a second, and an exception raised in 64-bit ring 0 is
 * not emulated at all), while ring-3 code runs natively.  So this stub does
 * the least it can: everything that can be data (page tables, GDT, TSSes) is
 * prebuilt at assembly time, each CPU patches only its own TSS descriptor
 * (a relocated address cannot be split into descriptor fields by the
 * assembler), and the whole workload, including filling the IDT, runs in
 * ring 3 (see main.c).  A CPU runs about 70 ring-0 instructions in all.
 */
#include "layout.h"

#define MB_MAGIC		0x1BADB002
#define MB_FLAGS		0x00000003	/* page-align, memory info; no a.out kludge */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define CR0_PE			0x00000001
#define CR0_MP			0x00000002
#define CR0_NE			0x00000020
#define CR0_PG			0x80000000
#define CR4_PAE			0x00000020
#define CR4_OSFXSR		0x00000200
#define CR4_OSXMMEXCPT		0x00000400
#define MSR_EFER		0xC0000080
#define EFER_LME		0x00000100

#define PTE_P			0x001
#define PTE_RW			0x002
#define PTE_US			0x004
#define PTE_PS			0x080

.if TSS_STRIDE != 128
	.error "the stub multiplies by TSS_STRIDE with shl $7"
.endif

/* IOPL=3 for hardware KVM and QEMU (kvm-pvm drops it: the TSS bitmap is what counts); IF=0. */
#define USER_RFLAGS		0x3002

	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

	.section .note.Xen, "a", @note
	.balign 4
	.long 4, 4, XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.balign 4
	.long pvh_entry

/* ---------------------------------------------------------------- 32-bit */
	.section .text.entry, "ax"
	.code32
	.globl pvh_entry, mb_entry

/* PVH: EBX = struct hvm_start_info.  Every vCPU of our VMM starts here. */
pvh_entry:
	mov	$BOOT_PVH, %esi
	jmp	1f

/* Multiboot v1: EAX = 0x2BADB002, EBX = multiboot info.  Only the BSP. */
mb_entry:
	mov	%eax, mb_magic
	mov	$BOOT_MULTIBOOT, %esi
	jmp	1f

/* An AP woken by our own INIT/SIPI under multiboot (smp=N), via ap_trampoline. */
ap_entry32:
	mov	$BOOT_MULTIBOOT, %esi
	xor	%ebx, %ebx

1:	cli
	cld
	mov	%ebx, %edi			/* boot info, survives CPUID */
	mov	$1, %eax
	cpuid
	shr	$24, %ebx			/* initial APIC ID = CPU index */
	mov	%ebx, %ebp
	cmp	$MAX_CPUS, %ebp
	jae	park32

	lgdt	gdt_ptr

	/* This CPU's 64-bit TSS descriptor: base = tss_area + i * TSS_STRIDE. */
	mov	%ebp, %ecx
	shl	$7, %ecx			/* TSS_STRIDE == 128 */
	lea	tss_area(%ecx), %eax
	mov	$(TSS_AREA_SIZE + IO_BITMAP_SIZE), %edx
	sub	%ecx, %edx			/* limit: up to the bitmap's 0xFF */
	mov	%ebp, %ebx
	shl	$4, %ebx
	add	$(gdt + TSS_SEL0), %ebx
	mov	%eax, %ecx
	shl	$16, %ecx
	or	%edx, %ecx
	mov	%ecx, (%ebx)			/* limit 15:0, base 15:0 */
	mov	%eax, %ecx
	shr	$16, %ecx
	and	$0xff, %ecx
	or	$0x8900, %ecx			/* present, 64-bit available TSS */
	and	$0xff000000, %eax
	or	%eax, %ecx
	mov	%ecx, 4(%ebx)			/* base 23:16, type, base 31:24 */

	mov	$(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
	mov	%eax, %cr4
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	$MSR_EFER, %ecx
	rdmsr
	or	$EFER_LME, %eax
	wrmsr
	/* Written whole: clears EM, TS, CD, NW whatever the loader left. */
	mov	$(CR0_PG | CR0_NE | CR0_MP | CR0_PE), %eax
	mov	%eax, %cr0
	ljmp	$KERNEL_CS, $long_mode

park32:
	cli
	hlt
	jmp	park32

/* ---------------------------------------------------------------- 64-bit */
	.code64
long_mode:
	mov	$KERNEL_DS, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	xor	%eax, %eax
	mov	%eax, %fs
	mov	%eax, %gs

	/* The TSS gives ring 3 its I/O bitmap and exceptions their stack. */
	mov	%ebp, %eax
	shl	$4, %eax
	add	$TSS_SEL0, %eax
	ltr	%ax
	lidt	idt_ptr

	lea	1(%rbp), %rax
	shl	$R0_STACK_SHIFT, %rax
	add	$ring0_stacks, %rax
	mov	%rax, %rsp

	lea	1(%rbp), %rax
	shl	$USER_STACK_SHIFT, %rax
	add	$(user_stacks - 8), %rax	/* as if guest_main had been called */

	pushq	$USER_DS
	push	%rax
	pushq	$USER_RFLAGS
	pushq	$USER_CS
	pushq	$guest_main
	mov	%esi, %edx			/* boot kind */
	mov	%edi, %esi			/* boot info address */
	mov	%ebp, %edi			/* CPU index */
	iretq

/*
 * Exception entry.  Only reached on a bug (a fault in ring 3): report it on
 * COM1 and power off.  The report is C (trap.c) built for general registers
 * only, since it runs emulated.
 */
	.section .text.isr, "ax"
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
isr\n:
	.if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
	.else
	pushq	$0				/* no error code: keep one frame layout */
	.endif
	pushq	$\n
	jmp	isr_common
	.endr

isr_common:
	mov	(%rsp), %rdi			/* vector */
	mov	8(%rsp), %rsi			/* error code */
	mov	16(%rsp), %rdx			/* rip */
	mov	%cr2, %rcx
	mov	24(%rsp), %r8			/* cs */
	and	$-16, %rsp
	call	trap__report
2:	cli
	hlt
	jmp	2b

	.section .rodata
	.balign 8
	.globl isr_table
isr_table:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad	isr\n
	.endr

/*
 * Under multiboot SeaBIOS leaves the APs parked; with smp=N the BSP copies
 * this to AP_TRAMPOLINE (below 1 MiB, where a SIPI can start a CPU) and sends
 * INIT/SIPI (smp.c).  Real mode -> flat 32-bit protected mode -> the common
 * entry above.
 */
	.section .rodata
	.globl ap_trampoline, ap_trampoline_end
	.code16
ap_trampoline:
	cli
	xor	%ax, %ax
	mov	%ax, %ds
	lgdtl	AP_TRAMPOLINE + (tramp_gdt_ptr - ap_trampoline)
	mov	%cr0, %eax
	or	$CR0_PE, %eax
	mov	%eax, %cr0
	ljmpl	$0x08, $(AP_TRAMPOLINE + (tramp32 - ap_trampoline))
	.code32
tramp32:
	mov	$0x10, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	$ap_entry32, %eax
	jmp	*%eax
	.balign 8
tramp_gdt:
	.quad	0
	.quad	0x00CF9A000000FFFF		/* flat 32-bit code */
	.quad	0x00CF92000000FFFF		/* flat data */
tramp_gdt_ptr:
	.word	tramp_gdt_ptr - tramp_gdt - 1
	.long	AP_TRAMPOLINE + (tramp_gdt - ap_trampoline)
ap_trampoline_end:
	.code64

/* ---------------------------------------------------------------- data */
	.section .data.boot, "aw"
	.balign 4096
/* Identity map of 0..4 GiB with 2 MiB user pages: built here, not by a loop. */
pml4:
	.quad	pdpt + PTE_P + PTE_RW + PTE_US
	.fill	511, 8, 0
pdpt:
	.quad	pd + 0x0000 + PTE_P + PTE_RW + PTE_US
	.quad	pd + 0x1000 + PTE_P + PTE_RW + PTE_US
	.quad	pd + 0x2000 + PTE_P + PTE_RW + PTE_US
	.quad	pd + 0x3000 + PTE_P + PTE_RW + PTE_US
	.fill	508, 8, 0
pd:
	.set	addr, 0
	.rept	2048
	.quad	addr + PTE_P + PTE_RW + PTE_US + PTE_PS
	.set	addr, addr + 0x200000
	.endr

	.balign 16
	.globl gdt
gdt:
	.quad	0
	.quad	0x00AF9A000000FFFF		/* KERNEL_CS: 64-bit code, DPL 0 */
	.quad	0x00CF92000000FFFF		/* KERNEL_DS */
	.quad	0x00CFF2000000FFFF		/* USER_DS: DPL 3 */
	.quad	0x00AFFA000000FFFF		/* USER_CS: 64-bit code, DPL 3 */
	.fill	MAX_CPUS * 2, 8, 0		/* TSS descriptors, one per CPU */
gdt_end:
gdt_ptr:
	.word	gdt_end - gdt - 1
	.quad	gdt

	.balign 16
idt_ptr:
	.word	IDT_VECTORS * 16 - 1
	.quad	idt				/* filled by trap__init in ring 3 */

	.globl mb_magic
	.balign 4
mb_magic:
	.long	0

/*
 * One TSS per CPU: RSP0 = top of its ring-0 stack, iomap_base = offset of the
 * shared bitmap.  Each TSS limit (set in the descriptor above) covers the
 * bitmap and its terminating 0xFF byte.
 */
	.balign TSS_STRIDE
	.globl tss_area
tss_area:
	.set	i, 0
	.rept	MAX_CPUS
	.long	0
	.quad	ring0_stacks + (i + 1) * R0_STACK_SIZE
	.fill	11, 8, 0			/* RSP1, RSP2, reserved, IST1-7, reserved */
	.word	0
	.word	TSS_AREA_SIZE - i * TSS_STRIDE	/* iomap_base */
	.fill	TSS_STRIDE - 104, 1, 0
	.set	i, i + 1
	.endr
io_bitmap:
	.fill	IO_BITMAP_SIZE, 1, 0		/* every port allowed to ring 3 */
	.byte	0xff

	.section .bss.boot, "aw", @nobits
	.balign 4096
	.globl idt
idt:
	.skip	IDT_VECTORS * 16
	.balign 4096
ring0_stacks:
	.skip	MAX_CPUS * R0_STACK_SIZE
	.globl user_stacks
user_stacks:
	.skip	MAX_CPUS * USER_STACK_SIZE

	.section .note.GNU-stack, "", @progbits
