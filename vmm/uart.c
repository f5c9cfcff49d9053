#define LOG_TAG "uart"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/io-bus.h"
#include "vmhop/log.h"
#include "vmhop/uart.h"
#include "vmhop/util.h"
#include "vmhop/vm.h"

enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };
#define LCR_DLAB 0x80
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define MCR_LOOP 0x10
#define MCR_OUT2 0x08

struct uart {
	struct uart_state st;
	struct vm *vm;
	struct io_dev dev;
	unsigned irq;
	int out_fd;
	pthread_mutex_t lock;
	char out[4096];
	size_t out_len;
	int irq_level;
};

/* Caller holds the lock. The 8250 drives its line only while OUT2 is set,
 * which is how PC guests gate COM interrupts. */
static void update_irq(struct uart *u)
{
	struct uart_state *s = &u->st;
	uint8_t iir = IIR_NONE;
	if ((s->ier & IER_RDI) && s->rx_count)
		iir = IIR_RDI;
	else if ((s->ier & IER_THRI) && s->thr_irq)
		iir = IIR_THRI;
	s->iir_pending = iir;
	int level = iir != IIR_NONE && (s->mcr & MCR_OUT2);
	if (level != u->irq_level && u->vm) {
		u->irq_level = level;
		vm__irq_line(u->vm, u->irq, level);
	}
}

static void flush_locked(struct uart *u)
{
	if (u->out_len && u->out_fd >= 0) {
		int r = util__write_all(u->out_fd, u->out, u->out_len);
		if (r < 0 && r != -EPIPE)
			pr_warn("console output lost: %s", strerror(-r));
	}
	u->out_len = 0;
}

void uart__flush(struct uart *u)
{
	pthread_mutex_lock(&u->lock);
	flush_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static void put_char(struct uart *u, uint8_t c)
{
	if (u->st.mcr & MCR_LOOP) {
		if (u->st.rx_count < sizeof(u->st.rx)) {
			u->st.rx[(u->st.rx_head + u->st.rx_count) % sizeof(u->st.rx)] = c;
			u->st.rx_count++;
		}
		return;
	}
	u->out[u->out_len++] = (char)c;
	/* Whole lines keep concurrent log readers (tests) from seeing halves. */
	if (c == '\n' || u->out_len == sizeof(u->out))
		flush_locked(u);
}

static void uart_write(struct io_dev *dev, uint64_t off, const void *data, unsigned size)
{
	struct uart *u = dev->opaque;
	struct uart_state *s = &u->st;
	uint8_t v = *(const uint8_t *)data;
	(void)size;
	pthread_mutex_lock(&u->lock);
	switch (off) {
	case RBR_THR:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
		} else {
			put_char(u, v);
			/* Transmission is instant: the holding register is empty again. */
			s->thr_irq = 1;
		}
		break;
	case IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
		} else {
			/* Enabling THRI with an empty THR raises it at once (8250 behaviour). */
			if ((v & IER_THRI) && !(s->ier & IER_THRI))
				s->thr_irq = 1;
			s->ier = v & 0x0f;
		}
		break;
	case IIR_FCR:
		s->fcr = v;
		if (v & 0x02) {
			s->rx_count = 0;
			s->rx_head = 0;
		}
		break;
	case LCR: s->lcr = v; break;
	case MCR: s->mcr = v & 0x1f; break;
	case SCR: s->scr = v; break;
	default: break;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

static void uart_read(struct io_dev *dev, uint64_t off, void *data, unsigned size)
{
	struct uart *u = dev->opaque;
	struct uart_state *s = &u->st;
	uint8_t v = 0;
	pthread_mutex_lock(&u->lock);
	switch (off) {
	case RBR_THR:
		if (s->lcr & LCR_DLAB) {
			v = s->dll;
		} else if (s->rx_count) {
			v = s->rx[s->rx_head];
			s->rx_head = (uint8_t)((s->rx_head + 1) % sizeof(s->rx));
			s->rx_count--;
		}
		break;
	case IER: v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier; break;
	case IIR_FCR:
		v = s->iir_pending | ((s->fcr & 1) ? 0xc0 : 0);
		/* Reading IIR acknowledges a THR-empty interrupt. */
		if (s->iir_pending == IIR_THRI)
			s->thr_irq = 0;
		break;
	case LCR: v = s->lcr; break;
	case MCR: v = s->mcr; break;
	case LSR: v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0); break;
	case MSR:
		/* Loopback reflects MCR; otherwise report CTS/DSR/DCD asserted. */
		v = (s->mcr & MCR_LOOP) ? (uint8_t)((s->mcr & 0x0f) << 4) : 0xb0;
		break;
	case SCR: v = s->scr; break;
	default: break;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	memset(data, 0, size);
	*(uint8_t *)data = v;
}

size_t uart__input(struct uart *u, const uint8_t *buf, size_t len)
{
	size_t n = 0;
	pthread_mutex_lock(&u->lock);
	while (n < len && u->st.rx_count < sizeof(u->st.rx)) {
		u->st.rx[(u->st.rx_head + u->st.rx_count) % sizeof(u->st.rx)] = buf[n++];
		u->st.rx_count++;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}

int uart__create(struct vm *vm, uint16_t base, unsigned irq, int out_fd, struct uart **out, struct err *e)
{
	struct uart *u = calloc(1, sizeof(*u));
	if (!u)
		return err__set(e, ENOMEM, "out of memory");
	u->vm = vm;
	u->irq = irq;
	u->out_fd = out_fd;
	u->st.iir_pending = IIR_NONE;
	pthread_mutex_init(&u->lock, NULL);
	u->dev = (struct io_dev){ .name = "uart", .base = base, .len = 8, .opaque = u,
				  .read = uart_read, .write = uart_write };
	int r = vm ? io_bus__add(&vm->pio, &u->dev, e) : 0;
	if (r < 0) {
		pthread_mutex_destroy(&u->lock);
		free(u);
		return r;
	}
	*out = u;
	return 0;
}

void uart__destroy(struct uart *u)
{
	if (!u)
		return;
	uart__flush(u);
	if (u->vm)
		io_bus__remove(&u->vm->pio, &u->dev);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

struct uart_state *uart__state(struct uart *u)
{
	return &u->st;
}

void uart__post_load(struct uart *u)
{
	pthread_mutex_lock(&u->lock);
	u->irq_level = -1;	/* force the line to the loaded state */
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
}
