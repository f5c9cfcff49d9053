/* serial.c: polled 8250 at 0x3F8; a spinlock keeps lines from different CPUs whole. */
#include <stdarg.h>

#include "arch.h"
#include "lib.h"
#include "serial.h"

#define COM1		0x3F8
#define UART_THR	0
#define UART_IER	1
#define UART_FCR	2
#define UART_LCR	3
#define UART_MCR	4
#define UART_LSR	5
#define LSR_THRE	0x20
#define LSR_TEMT	0x40

static int serial_lock;

void serial__init(void)
{
	outb(COM1 + UART_IER, 0x00);	/* polled: no interrupts */
	outb(COM1 + UART_LCR, 0x80);	/* DLAB: divisor 1 = 115200 baud */
	outb(COM1 + UART_THR, 0x01);
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x03);	/* 8N1 */
	outb(COM1 + UART_FCR, 0x07);	/* FIFO on, cleared */
	outb(COM1 + UART_MCR, 0x03);	/* DTR, RTS */
}

static void put_char(char c)
{
	while (!(inb(COM1 + UART_LSR) & LSR_THRE))
		cpu_relax();
	outb(COM1 + UART_THR, (uint8_t)c);
}

static void lock(void)
{
	while (__atomic_exchange_n(&serial_lock, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&serial_lock, __ATOMIC_RELAXED))
			cpu_relax();
}

static void unlock(void)
{
	__atomic_store_n(&serial_lock, 0, __ATOMIC_RELEASE);
}

void serial__printf(const char *f, ...)
{
	char line[256];
	va_list ap;
	size_t n;

	va_start(ap, f);
	fmt__vsnprintf(line, sizeof(line) - 1, f, ap);
	va_end(ap);
	n = strlen(line);
	line[n++] = '\n';

	lock();
	for (size_t i = 0; i < n; i++)
		put_char(line[i]);
	unlock();
}

void serial__drain(void)
{
	for (int i = 0; i < 1000000 && !(inb(COM1 + UART_LSR) & LSR_TEMT); i++)
		cpu_relax();
}
