#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/layout.h"
#include "vmhop/pm.h"
#include "vmhop/vm.h"

struct pm_dev {
	struct pm_state st;
	struct vm *vm;
	pthread_mutex_t lock;
	struct io_dev pm1, cf9, i8042;
};

/* The SCI is a level-triggered line (IRQ 9 in the ACPI tables): up while an
 * enabled event's status bit is set, so an ACPI guest hears the power
 * button and clears the line by clearing the status bit. Called without
 * pm->lock held, with the levels computed under it. */
static void set_sci(struct pm_dev *pm, bool level)
{
	/* A failing KVM_IRQ_LINE leaves a guest that polls (ours) unaffected;
	 * there is no one to report it to from a port write. */
	(void)vm__irq_line(pm->vm, PM_SCI_IRQ, level);
}

static bool sci_level(const struct pm_state *st)
{
	return st->pm1_sts & st->pm1_en & PM1_PWRBTN_STS;
}

static void pm1_read(struct io_dev *dev, uint64_t off, void *data, unsigned size)
{
	struct pm_dev *pm = dev->opaque;
	uint8_t regs[6];
	pthread_mutex_lock(&pm->lock);
	memcpy(regs, &pm->st.pm1_sts, 2);
	memcpy(regs + 2, &pm->st.pm1_en, 2);
	memcpy(regs + 4, &pm->st.pm1_cnt, 2);
	pthread_mutex_unlock(&pm->lock);
	memset(data, 0, size);
	for (unsigned i = 0; i < size && off + i < sizeof(regs); i++)
		((uint8_t *)data)[i] = regs[off + i];
}

static void pm1_write(struct io_dev *dev, uint64_t off, const void *data, unsigned size)
{
	struct pm_dev *pm = dev->opaque;
	uint32_t v = 0;
	memcpy(&v, data, size > 4 ? 4 : size);
	bool off_now = false, sci;
	pthread_mutex_lock(&pm->lock);
	if (off == 0) {
		pm->st.pm1_sts &= (uint16_t)~v;		/* write 1 to clear */
	} else if (off == 2 && size <= 2) {
		pm->st.pm1_en = (uint16_t)v;
	} else if (off == 4 && size <= 2) {
		pm->st.pm1_cnt = (uint16_t)(v & ~PM1_SLP_EN);
		/* SLP_TYP is ignored: every sleep state is treated as soft-off. */
		off_now = v & PM1_SLP_EN;
	}
	sci = sci_level(&pm->st);
	pthread_mutex_unlock(&pm->lock);
	if (off < 4)
		set_sci(pm, sci);
	if (off_now)
		vm__stop(pm->vm, VM_SHUTDOWN, "guest powered off");
}

static void cf9_read(struct io_dev *dev, uint64_t off, void *data, unsigned size)
{
	struct pm_dev *pm = dev->opaque;
	memset(data, 0, size);
	pthread_mutex_lock(&pm->lock);
	*(uint8_t *)data = pm->st.reset_cf9;
	pthread_mutex_unlock(&pm->lock);
}

static void cf9_write(struct io_dev *dev, uint64_t off, const void *data, unsigned size)
{
	struct pm_dev *pm = dev->opaque;
	uint8_t v = *(const uint8_t *)data;
	pthread_mutex_lock(&pm->lock);
	pm->st.reset_cf9 = v & 0x0e;
	pthread_mutex_unlock(&pm->lock);
	/* Bit 2 starts the reset; a reset ends this VM process. */
	if (v & 0x04)
		vm__stop(pm->vm, VM_SHUTDOWN, "guest reset");
}

static void i8042_read(struct io_dev *dev, uint64_t off, void *data, unsigned size)
{
	/* Status: input and output buffers empty, so reset commands are accepted. */
	memset(data, 0, size);
}

static void i8042_write(struct io_dev *dev, uint64_t off, const void *data, unsigned size)
{
	struct pm_dev *pm = dev->opaque;
	if (*(const uint8_t *)data == 0xfe)
		vm__stop(pm->vm, VM_SHUTDOWN, "guest reset");
}

int pm__create(struct vm *vm, struct pm_dev **out, struct err *e)
{
	struct pm_dev *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return err__set(e, ENOMEM, "out of memory");
	pm->vm = vm;
	pthread_mutex_init(&pm->lock, NULL);
	pm->pm1 = (struct io_dev){ .name = "pm1a", .base = PORT_PM1A_STS, .len = 6, .opaque = pm,
				   .read = pm1_read, .write = pm1_write };
	pm->cf9 = (struct io_dev){ .name = "reset", .base = PORT_RESET, .len = 1, .opaque = pm,
				   .read = cf9_read, .write = cf9_write };
	pm->i8042 = (struct io_dev){ .name = "i8042", .base = PORT_I8042_CMD, .len = 1, .opaque = pm,
				     .read = i8042_read, .write = i8042_write };
	int r = io_bus__add(&vm->pio, &pm->pm1, e);
	if (!r && (r = io_bus__add(&vm->pio, &pm->cf9, e)) < 0)
		io_bus__remove(&vm->pio, &pm->pm1);
	if (!r && (r = io_bus__add(&vm->pio, &pm->i8042, e)) < 0) {
		io_bus__remove(&vm->pio, &pm->pm1);
		io_bus__remove(&vm->pio, &pm->cf9);
	}
	if (r < 0) {
		pthread_mutex_destroy(&pm->lock);
		free(pm);
		return r;
	}
	*out = pm;
	return 0;
}

void pm__destroy(struct pm_dev *pm)
{
	if (!pm)
		return;
	io_bus__remove(&pm->vm->pio, &pm->pm1);
	io_bus__remove(&pm->vm->pio, &pm->cf9);
	io_bus__remove(&pm->vm->pio, &pm->i8042);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

void pm__power_button(struct pm_dev *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->st.pm1_sts |= PM1_PWRBTN_STS;
	bool sci = sci_level(&pm->st);
	pthread_mutex_unlock(&pm->lock);
	set_sci(pm, sci);
}

struct pm_state *pm__state(struct pm_dev *pm)
{
	return &pm->st;
}
