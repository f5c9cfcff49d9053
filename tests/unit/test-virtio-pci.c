/* The virtio-pci transport as a guest driver sees it: capabilities, common
 * configuration, feature negotiation, reset, MSI-X and the config window. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check-run.h"
#include "vmhop/pci.h"
#include "test-virtio-util.h"

static struct tg T;
static char *disk_path;
static unsigned slot;

static void setup(void)
{
	tg_init(&T);
	disk_path = tg_make_disk(&T, "d.img", 16 * 1024);
	struct err e = { 0 };
	ck_assert_msg(tg_add_blk(&T, disk_path, "vdb", false, false, &e) == 0, "%s", e.msg);
	slot = T.blk->vp.pci.slot;
}

static void teardown(void)
{
	tg_fini(&T);
	free(disk_path);
}

static uint32_t cfg(unsigned off, unsigned size)
{
	return pci__config_read(T.vm.pci, slot, 0, off, size);
}

static void cfg_w(unsigned off, unsigned size, uint32_t v)
{
	pci__config_write(T.vm.pci, slot, 0, off, size, v);
}

/* Offset of the vendor capability of cfg_type `type`, or 0. */
static unsigned find_vcap(uint8_t type)
{
	unsigned n = 0;
	for (unsigned p = cfg(PCI_REG_CAP_PTR, 1); p; p = cfg(p + 1, 1)) {
		ck_assert_uint_lt(++n, 48);
		if (cfg(p, 1) == PCI_CAP_ID_VNDR && cfg(p + VIRTIO_PCI_CAP_CFG_TYPE, 1) == type)
			return p;
	}
	return 0;
}

static unsigned find_cap(uint8_t id)
{
	for (unsigned p = cfg(PCI_REG_CAP_PTR, 1); p; p = cfg(p + 1, 1))
		if (cfg(p, 1) == id)
			return p;
	return 0;
}

START_TEST(identity_and_caps)
{
	ck_assert_uint_eq(cfg(PCI_REG_VENDOR_ID, 2), 0x1AF4);
	ck_assert_uint_eq(cfg(PCI_REG_DEVICE_ID, 2), 0x1042);
	ck_assert_uint_eq(cfg(PCI_REG_REVISION, 1), 1);
	ck_assert_uint_eq(cfg(PCI_REG_SUBSYS_VENDOR, 2), 0x1AF4);
	ck_assert_uint_ge(cfg(PCI_REG_SUBSYS_ID, 2), 0x40);
	ck_assert(cfg(PCI_REG_STATUS, 2) & PCI_STATUS_CAP_LIST);
	struct { uint8_t type; uint32_t off, minlen; } want[] = {
		{ VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN },
		{ VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF, 2 },
		{ VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, 1 },
		{ VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVCFG_OFF, 24 },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		unsigned c = find_vcap(want[i].type);
		ck_assert_msg(c, "no capability of type %u", want[i].type);
		ck_assert_uint_eq(cfg(c + VIRTIO_PCI_CAP_BAR, 1), 0);
		ck_assert_uint_eq(cfg(c + VIRTIO_PCI_CAP_OFFSET, 4), want[i].off);
		ck_assert_uint_ge(cfg(c + VIRTIO_PCI_CAP_LENGTH, 4), want[i].minlen);
	}
	unsigned n = find_vcap(VIRTIO_PCI_CAP_NOTIFY_CFG);
	ck_assert_uint_eq(cfg(n + VIRTIO_PCI_CAP_LEN, 1), 20);
	ck_assert_uint_eq(cfg(n + 16, 4), VIRTIO_PCI_NOTIFY_MULT);
	ck_assert_uint_ne(find_vcap(VIRTIO_PCI_CAP_PCI_CFG), 0);
	unsigned m = find_cap(PCI_CAP_ID_MSIX);
	ck_assert_uint_ne(m, 0);
	ck_assert_uint_eq(cfg(m + 2, 2) & 0x7ff, 1);	/* 2 vectors: config + 1 queue */
	ck_assert_uint_eq(cfg(m + 4, 4), VIRTIO_PCI_MSIX_TABLE_OFF | 0);
	ck_assert_uint_eq(cfg(m + 8, 4), VIRTIO_PCI_MSIX_PBA_OFF | 0);
	/* BAR0: 32-bit memory, decoding on, naturally aligned */
	uint32_t bar = cfg(PCI_REG_BAR0, 4);
	ck_assert_uint_eq(bar & 0xF, 0);
	ck_assert_uint_eq((bar & ~0xFu) % VIRTIO_PCI_BAR_SIZE, 0);
	ck_assert_uint_eq(bar & ~0xFu, T.bar);
	ck_assert(cfg(PCI_REG_COMMAND, 2) & PCI_CMD_MEM);
	ck_assert_uint_eq(cfg(PCI_REG_INT_PIN, 1), 1);
}
END_TEST

START_TEST(common_cfg_registers)
{
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_NUMQ, 2), 1);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_BLK_QUEUE_SIZE);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_NOFF, 2), 0);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_NO_VECTOR);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);	/* no such vector */
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_NO_VECTOR);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x12345000);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0x1);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0x112345000ULL);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);	/* no queue 1 */
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);			/* ignored */
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	tg_wr(&T, VIRTIO_PCI_COMMON_DFSELECT, 4, 7);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_DF, 4), 0);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_CFGGENERATION, 1), 0);
}
END_TEST

START_TEST(feature_negotiation)
{
	uint64_t offered = tg_device_features(&T);
	ck_assert(offered & (1ULL << VIRTIO_F_VERSION_1));
	/* without VERSION_1: refused */
	uint8_t s = tg_driver_init(&T, offered & ~(1ULL << VIRTIO_F_VERSION_1), 16);
	ck_assert(!(s & VIRTIO_CONFIG_S_FEATURES_OK));
	/* a feature not offered: refused */
	s = tg_driver_init(&T, offered | (1ULL << VIRTIO_RING_F_EVENT_IDX), 16);
	ck_assert(!(s & VIRTIO_CONFIG_S_FEATURES_OK));
	/* VERSION_1 alone is enough */
	s = tg_driver_init(&T, 1ULL << VIRTIO_F_VERSION_1, 16);
	ck_assert_uint_eq(s, 0x0f);
	/* features are frozen after FEATURES_OK */
	tg_wr(&T, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	tg_wr(&T, VIRTIO_PCI_COMMON_GF, 4, 0xffffffff);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_GF, 4), 0);
	ck_assert_uint_eq(T.blk->vp.st.driver_features, 1ULL << VIRTIO_F_VERSION_1);
}
END_TEST

START_TEST(queue_enable_validation)
{
	tg_wr(&T, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_SIZE, 2, 12);	/* not a power of two */
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_DESCLO, 8, TG_RING);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_AVAILLO, 8, TG_RING + 0x1000);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_USEDLO, 8, TG_RING + 0x2000);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	ck_assert(tg_status(&T) & VIRTIO_CONFIG_S_NEEDS_RESET);

	tg_wr(&T, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	ck_assert_uint_eq(tg_status(&T), 0);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_DESCLO, 8, TG_MEM - 64);	/* runs off the end of RAM */
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_AVAILLO, 8, TG_RING + 0x1000);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_USEDLO, 8, TG_RING + 0x2000);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	ck_assert(tg_status(&T) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* the driver cannot clear NEEDS_RESET except by reset */
	tg_wr(&T, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	ck_assert(tg_status(&T) & VIRTIO_CONFIG_S_NEEDS_RESET);
}
END_TEST

START_TEST(reset_restores_initial_state)
{
	struct virtio_pci_state initial = T.blk->vp.st;
	ck_assert_uint_eq(tg_driver_init(&T, 0, 32), 0x0f);
	uint8_t buf[512];
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	tg_wr(&T, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_SELECT, 2, 3);
	ck_assert(T.blk->vp.st.isr);
	ck_assert(T.blk->vp.pci.st.intx_level);

	tg_wr(&T, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	ck_assert_uint_eq(tg_status(&T), 0);
	ck_assert(!T.blk->vp.pci.st.intx_level);
	ck_assert_mem_eq(&T.blk->vp.st, &initial, sizeof(initial));
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_BLK_QUEUE_SIZE);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
	/* and works again from scratch */
	ck_assert_uint_eq(tg_driver_init(&T, 0, 16), 0x0f);
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 1, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(tg_used(&T, 0).id, 0);
}
END_TEST

static void msix_entry(unsigned v, uint64_t addr, uint32_t data, bool masked)
{
	uint64_t e = VIRTIO_PCI_MSIX_TABLE_OFF + 16ULL * v;
	tg_wr(&T, e + 0, 4, (uint32_t)addr);
	tg_wr(&T, e + 4, 4, addr >> 32);
	tg_wr(&T, e + 8, 4, data);
	tg_wr(&T, e + 12, 4, masked);
}

START_TEST(msix_delivery_and_masking)
{
	unsigned m = find_cap(PCI_CAP_ID_MSIX);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_MSIX_TABLE_OFF + 12, 4), 1);	/* masked at reset */
	cfg_w(m + 2, 2, 0x8000);	/* enable */
	ck_assert_uint_eq(cfg(m + 2, 2) & 0xC000, 0x8000);
	ck_assert_uint_eq(tg_driver_init(&T, 0, 16), 0x0f);
	tg_wr(&T, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	msix_entry(1, 0xFEE00000, 0x4041, true);

	uint8_t buf[512];
	unsigned before = T.irqs;
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(T.irqs, before);			/* masked: pending */
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_MSIX_PBA_OFF, 8), 2);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_ISR_OFF, 1), 0);	/* no ISR with MSI-X */
	msix_entry(1, 0xFEE00000, 0x4041, false);		/* unmask: fires */
	ck_assert_uint_eq(T.irqs, before + 1);
	ck_assert_uint_eq(T.last_vector, 1);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_MSIX_PBA_OFF, 8), 0);

	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(T.irqs, before + 2);

	/* function mask holds everything */
	cfg_w(m + 2, 2, 0xC000);
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(T.irqs, before + 2);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_MSIX_PBA_OFF, 8), 2);
	cfg_w(m + 2, 2, 0x8000);
	ck_assert_uint_eq(T.irqs, before + 3);

	/* NO_VECTOR: no interrupt at all */
	tg_wr(&T, VIRTIO_PCI_COMMON_Q_MSIX, 2, VIRTIO_NO_VECTOR);
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(T.irqs, before + 3);

	/* a broken ring raises the config vector */
	msix_entry(0, 0xFEE00000, 0x4042, false);
	tg_publish(&T, 200);
	virtio_pci__process_queue(&T.blk->vp, 0);
	ck_assert(tg_status(&T) & VIRTIO_CONFIG_S_NEEDS_RESET);
	ck_assert_uint_eq(T.irqs, before + 4);
	ck_assert_uint_eq(T.last_vector, 0);

	/* a virtio reset leaves the MSI-X table (a PCI function resource) alone */
	tg_wr(&T, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_MSIX_TABLE_OFF + 16 + 8, 4), 0x4041);
}
END_TEST

START_TEST(config_change_intx)
{
	ck_assert_uint_eq(tg_driver_init(&T, 0, 16), 0x0f);
	tg_publish(&T, 300);
	virtio_pci__process_queue(&T.blk->vp, 0);
	ck_assert_uint_eq(T.last_vector, VIRTIO_NO_VECTOR);
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_PCI_ISR_CONFIG);
	/* INTx disable in the command register keeps the line low */
	tg_wr(&T, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	ck_assert_uint_eq(tg_driver_init(&T, 0, 16), 0x0f);
	cfg_w(PCI_REG_COMMAND, 2, cfg(PCI_REG_COMMAND, 2) | PCI_CMD_INTX_DISABLE);
	uint8_t buf[512];
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), VIRTIO_BLK_S_OK);
	ck_assert(T.blk->vp.pci.st.intx_level);
	ck_assert(!T.blk->vp.pci.intx_asserted);
	ck_assert(cfg(PCI_REG_STATUS, 2) & PCI_STATUS_INTX);	/* status still shows it */
	cfg_w(PCI_REG_COMMAND, 2, cfg(PCI_REG_COMMAND, 2) & ~PCI_CMD_INTX_DISABLE);
	ck_assert(T.blk->vp.pci.intx_asserted);
	ck_assert_uint_eq(T.vm.pci->gsi_count[T.blk->vp.pci.gsi], 1);
	tg_rd(&T, VIRTIO_PCI_ISR_OFF, 1);
	ck_assert(!T.blk->vp.pci.intx_asserted);
	ck_assert_uint_eq(T.vm.pci->gsi_count[T.blk->vp.pci.gsi], 0);
}
END_TEST

START_TEST(bus_master_off_holds_requests)
{
	ck_assert_uint_eq(tg_driver_init(&T, 0, 16), 0x0f);
	cfg_w(PCI_REG_COMMAND, 2, cfg(PCI_REG_COMMAND, 2) & ~PCI_CMD_MASTER);
	uint8_t buf[512];
	ck_assert_int_eq(tg_blk_req(&T, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf)), -1);
	cfg_w(PCI_REG_COMMAND, 2, cfg(PCI_REG_COMMAND, 2) | PCI_CMD_MASTER);
	ck_assert(tg_wait_used(&T, 1, 3000));
}
END_TEST

START_TEST(pci_cfg_window)
{
	unsigned c = find_vcap(VIRTIO_PCI_CAP_PCI_CFG);
	ck_assert_uint_ne(c, 0);
	ck_assert_uint_eq(tg_driver_init(&T, 0, 16), 0x0f);
	/* read device_status (1 byte at common + 0x14) through config space */
	cfg_w(c + VIRTIO_PCI_CAP_BAR, 1, 0);
	cfg_w(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_STATUS);
	cfg_w(c + VIRTIO_PCI_CAP_LENGTH, 4, 1);
	ck_assert_uint_eq(cfg(c + 16, 1), 0x0f);
	/* 4-byte read of the capacity */
	cfg_w(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_DEVCFG_OFF);
	cfg_w(c + VIRTIO_PCI_CAP_LENGTH, 4, 4);
	ck_assert_uint_eq(cfg(c + 16, 4), 16 * 1024 / 512);
	/* write: reset the device through the window */
	cfg_w(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_STATUS);
	cfg_w(c + VIRTIO_PCI_CAP_LENGTH, 4, 1);
	cfg_w(c + 16, 1, 0);
	ck_assert_uint_eq(tg_status(&T), 0);
	/* misaligned window: no access */
	cfg_w(c + VIRTIO_PCI_CAP_OFFSET, 4, 1);
	cfg_w(c + VIRTIO_PCI_CAP_LENGTH, 4, 2);
	ck_assert_uint_eq(cfg(c + 16, 2), 0);
}
END_TEST

START_TEST(bar_moves_with_guest)
{
	uint64_t old = T.bar, nbar = 0xD0000000;
	cfg_w(PCI_REG_COMMAND, 2, cfg(PCI_REG_COMMAND, 2) & ~PCI_CMD_MEM);
	uint64_t v;
	ck_assert_int_eq(io_bus__read(&T.vm.mmio, old + VIRTIO_PCI_COMMON_NUMQ, &v, 2), -ENOENT);
	cfg_w(PCI_REG_BAR0, 4, 0xFFFFFFFF);
	ck_assert_uint_eq(cfg(PCI_REG_BAR0, 4), (uint32_t)~(VIRTIO_PCI_BAR_SIZE - 1));
	cfg_w(PCI_REG_BAR0, 4, (uint32_t)nbar);
	cfg_w(PCI_REG_COMMAND, 2, cfg(PCI_REG_COMMAND, 2) | PCI_CMD_MEM);
	ck_assert_uint_eq(virtio_pci__bar_base(&T.blk->vp), nbar);
	T.bar = nbar;
	ck_assert_uint_eq(tg_rd(&T, VIRTIO_PCI_COMMON_NUMQ, 2), 1);
	ck_assert_int_eq(io_bus__read(&T.vm.mmio, old + VIRTIO_PCI_COMMON_NUMQ, &v, 2), -ENOENT);
	/* the device still works at the new place, notifies included */
	ck_assert_uint_eq(tg_driver_init(&T, 0, 16), 0x0f);
	tg_set_avail_flags(&T, VRING_AVAIL_F_NO_INTERRUPT);
	uint64_t b = tg_alloc(&T, 512);
	tg_blk_submit(&T, VIRTIO_BLK_T_IN, 0, b, 512);
	tg_notify(&T, 0);
	ck_assert(tg_wait_used(&T, 1, 3000));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("virtio-pci");
	TCase *tc = tcase_create("transport");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, identity_and_caps);
	tcase_add_test(tc, common_cfg_registers);
	tcase_add_test(tc, feature_negotiation);
	tcase_add_test(tc, queue_enable_validation);
	tcase_add_test(tc, reset_restores_initial_state);
	tcase_add_test(tc, msix_delivery_and_masking);
	tcase_add_test(tc, config_change_intx);
	tcase_add_test(tc, bus_master_off_holds_requests);
	tcase_add_test(tc, pci_cfg_window);
	tcase_add_test(tc, bar_moves_with_guest);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(suite());
}
