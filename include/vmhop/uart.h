/* 16550A UART on COM1. Output goes to an fd; input is fed by the main loop.
 * Works polled or interrupt driven (IRQ 4). */
#ifndef VMHOP_UART_H
#define VMHOP_UART_H

#include <stddef.h>
#include <stdint.h>

#include "vmhop/err.h"

struct vm;

/* The device's register state, plain data for save/load. */
struct uart_state {
	uint8_t ier, iir_pending, lcr, mcr, lsr, msr, scr, fcr;
	uint8_t dll, dlm;
	uint8_t rx[64];
	uint8_t rx_head, rx_count;
	uint8_t thr_irq;	/* THR-empty interrupt pending */
};

struct uart;

/* out_fd < 0 discards output. */
int uart__create(struct vm *vm, uint16_t base, unsigned irq, int out_fd, struct uart **out, struct err *e);
void uart__destroy(struct uart *u);
/* Queues input bytes for the guest; returns how many fitted. */
size_t uart__input(struct uart *u, const uint8_t *buf, size_t len);
/* The register state, for save/load while the VM is paused; after a load,
 * uart__post_load re-derives the interrupt line. */
struct uart_state *uart__state(struct uart *u);
void uart__post_load(struct uart *u);
/* Writes any buffered output to the fd. */
void uart__flush(struct uart *u);

#endif
