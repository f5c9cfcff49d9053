# tests/guest: the test guest (tests/guest/README.md), a freestanding
# program booted by `vmhop run` (PVH note) and by QEMU -kernel (multiboot).
#
# Explicit rules, not an automake _PROGRAMS target: the guest has no libc and
# must never get AM_CFLAGS / SAN_CFLAGS (sanitizers) or the user's CFLAGS.
# Extra guest-only flags can be given as GUEST_EXTRA_FLAGS.

GUEST_DIR = tests/guest
GUEST_SRC = $(srcdir)/tests/guest

# Relative names: found through VPATH as prerequisites, and listed for dist.
GUEST_HDRS = \
	tests/guest/arch.h \
	tests/guest/boot.h \
	tests/guest/clock.h \
	tests/guest/cmdline.h \
	tests/guest/disk_work.h \
	tests/guest/layout.h \
	tests/guest/lib.h \
	tests/guest/mem_work.h \
	tests/guest/pci.h \
	tests/guest/power.h \
	tests/guest/serial.h \
	tests/guest/smp.h \
	tests/guest/trap.h \
	tests/guest/virtio_blk.h

GUEST_OBJS = \
	$(GUEST_DIR)/entry.o \
	$(GUEST_DIR)/main.o \
	$(GUEST_DIR)/boot.o \
	$(GUEST_DIR)/cmdline.o \
	$(GUEST_DIR)/clock.o \
	$(GUEST_DIR)/serial.o \
	$(GUEST_DIR)/power.o \
	$(GUEST_DIR)/smp.o \
	$(GUEST_DIR)/trap.o \
	$(GUEST_DIR)/lib.o \
	$(GUEST_DIR)/fmt.o \
	$(GUEST_DIR)/pci.o \
	$(GUEST_DIR)/virtio_blk.o \
	$(GUEST_DIR)/mem_work.o \
	$(GUEST_DIR)/disk_work.o

# GCC or clang (with --enable-fuzzers CC is clang): common flags only.
GUEST_COMPILE_FLAGS = -std=c11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-ffreestanding -fno-builtin -nostdlib -fno-pic -fno-pie -mcmodel=small \
	-mno-red-zone -mno-avx -mno-avx2 -fno-stack-protector -fcf-protection=none \
	-fno-asynchronous-unwind-tables -fno-unwind-tables \
	-I$(GUEST_SRC) $(GUEST_EXTRA_FLAGS)
# trap.c runs in ring 0, which kvm-pvm emulates: integer instructions only.
GUEST_RING0_FLAGS = -mgeneral-regs-only
GUEST_LINK_FLAGS = -m elf_x86_64 -nostdlib -static -z max-page-size=0x1000 \
	-z noexecstack --build-id=none -T $(GUEST_SRC)/guest.ld

GUEST_CC = $(AM_V_CC)$(MKDIR_P) $(@D) && $(CC) $(GUEST_COMPILE_FLAGS)

$(GUEST_DIR)/entry.o: $(GUEST_SRC)/entry.S tests/guest/layout.h
	$(AM_V_GEN)$(MKDIR_P) $(@D) && $(CC) $(GUEST_COMPILE_FLAGS) -c -o $@ $(GUEST_SRC)/entry.S
$(GUEST_DIR)/main.o: $(GUEST_SRC)/main.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/main.c
$(GUEST_DIR)/boot.o: $(GUEST_SRC)/boot.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/boot.c
$(GUEST_DIR)/cmdline.o: $(GUEST_SRC)/cmdline.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/cmdline.c
$(GUEST_DIR)/clock.o: $(GUEST_SRC)/clock.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/clock.c
$(GUEST_DIR)/serial.o: $(GUEST_SRC)/serial.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/serial.c
$(GUEST_DIR)/power.o: $(GUEST_SRC)/power.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/power.c
$(GUEST_DIR)/smp.o: $(GUEST_SRC)/smp.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/smp.c
$(GUEST_DIR)/trap.o: $(GUEST_SRC)/trap.c $(GUEST_HDRS)
	$(GUEST_CC) $(GUEST_RING0_FLAGS) -c -o $@ $(GUEST_SRC)/trap.c
$(GUEST_DIR)/lib.o: $(GUEST_SRC)/lib.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/lib.c
$(GUEST_DIR)/fmt.o: $(GUEST_SRC)/fmt.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/fmt.c
$(GUEST_DIR)/pci.o: $(GUEST_SRC)/pci.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/pci.c
$(GUEST_DIR)/virtio_blk.o: $(GUEST_SRC)/virtio_blk.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/virtio_blk.c
$(GUEST_DIR)/mem_work.o: $(GUEST_SRC)/mem_work.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/mem_work.c
$(GUEST_DIR)/disk_work.o: $(GUEST_SRC)/disk_work.c $(GUEST_HDRS)
	$(GUEST_CC) -c -o $@ $(GUEST_SRC)/disk_work.c

# Linked as x86-64 (the code is 64-bit after the entry stub), then rewrapped
# as ELF32: QEMU's multiboot loader refuses ELF64.  guest.elf64 keeps the
# symbols and debug info for addr2line on a reported rip.
$(GUEST_DIR)/guest.elf64: $(GUEST_OBJS) $(GUEST_SRC)/guest.ld
	$(AM_V_CCLD)$(LD) $(GUEST_LINK_FLAGS) -o $@ $(GUEST_OBJS)
$(GUEST_DIR)/guest.elf: $(GUEST_DIR)/guest.elf64
	$(AM_V_GEN)$(OBJCOPY) -O elf32-i386 --strip-debug $(GUEST_DIR)/guest.elf64 $@

noinst_DATA += $(GUEST_DIR)/guest.elf
CLEANFILES += $(GUEST_OBJS) $(GUEST_DIR)/guest.elf64 $(GUEST_DIR)/guest.elf

# Structure of the ELF (fast), then boots under QEMU when /dev/kvm and
# qemu-system-x86_64 are there (skipped otherwise).
TESTS += tests/guest/check-elf.py tests/guest/qemu-boot.sh

EXTRA_DIST += \
	$(GUEST_HDRS) \
	tests/guest/entry.S \
	tests/guest/guest.ld \
	tests/guest/main.c \
	tests/guest/boot.c \
	tests/guest/cmdline.c \
	tests/guest/clock.c \
	tests/guest/serial.c \
	tests/guest/power.c \
	tests/guest/smp.c \
	tests/guest/trap.c \
	tests/guest/lib.c \
	tests/guest/fmt.c \
	tests/guest/pci.c \
	tests/guest/virtio_blk.c \
	tests/guest/mem_work.c \
	tests/guest/disk_work.c \
	tests/guest/README.md \
	tests/guest/check-disk.py \
	tests/guest/check-elf.py \
	tests/guest/qemu-boot.sh \
	tests/guest/run-qemu.sh
