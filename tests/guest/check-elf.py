#!/usr/bin/env python3
"""check-elf.py: check the boot contract of tests/guest/guest.elf.

ELF32 i386 executable; PT_LOAD segments at physical addresses >= 1 MiB and
below 32 MiB; a PT_NOTE with the Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY,
type 18, 4-byte entry inside an executable segment); a multiboot v1 header
in the first 8 KiB (valid checksum, no a.out kludge).  Path from argv[1],
else $VMHOP_BUILDDIR/tests/guest/guest.elf.  An automake test: exit 0 or 1.
"""
import os
import struct
import sys

PT_LOAD, PT_NOTE = 1, 4
PF_X = 1
XEN_ELFNOTE_PHYS32_ENTRY = 18
MB_MAGIC = 0x1BADB002
MB_AOUT_KLUDGE = 1 << 16


def check(path):
    errors = []
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        return ["not a little-endian ELF32 file"]
    (e_type, e_machine, _, e_entry, e_phoff, _, _, _, e_phentsize,
     e_phnum) = struct.unpack_from("<HHIIIIIHHH", data, 16)
    if e_type != 2 or e_machine != 3:
        errors.append("e_type %d e_machine %d, expected EXEC (2) / i386 (3)"
                      % (e_type, e_machine))

    loads, pvh_entry = [], None
    for i in range(e_phnum):
        (p_type, p_offset, _, p_paddr, p_filesz, p_memsz, p_flags,
         _) = struct.unpack_from("<8I", data, e_phoff + i * e_phentsize)
        if p_type == PT_LOAD:
            loads.append((p_paddr, p_memsz, p_flags))
            if p_paddr < 0x100000 or p_paddr + p_memsz > 32 << 20:
                errors.append("PT_LOAD at 0x%x+0x%x outside [1 MiB, 32 MiB)"
                              % (p_paddr, p_memsz))
        elif p_type == PT_NOTE:
            off = p_offset
            while off + 12 <= p_offset + p_filesz:
                namesz, descsz, ntype = struct.unpack_from("<III", data, off)
                name = data[off + 12:off + 12 + namesz].rstrip(b"\0")
                desc = off + 12 + ((namesz + 3) & ~3)
                if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                    if descsz != 4:
                        errors.append("PVH note desc is %d bytes, expected 4" % descsz)
                    pvh_entry = struct.unpack_from("<I", data, desc)[0]
                off = desc + ((descsz + 3) & ~3)

    def executable(addr):
        return any(p <= addr < p + n and f & PF_X for p, n, f in loads)

    if pvh_entry is None:
        errors.append("no Xen PHYS32_ENTRY note in a PT_NOTE segment")
    elif not executable(pvh_entry):
        errors.append("PVH entry 0x%x is not in an executable PT_LOAD" % pvh_entry)
    if not executable(e_entry):
        errors.append("e_entry 0x%x is not in an executable PT_LOAD" % e_entry)

    mb = None
    for off in range(0, min(len(data), 8192) - 12 + 1, 4):
        magic, flags, csum = struct.unpack_from("<III", data, off)
        if magic == MB_MAGIC:
            mb = (off, flags, csum)
            break
    if mb is None:
        errors.append("no multiboot header in the first 8 KiB")
    else:
        off, flags, csum = mb
        if (magic + flags + csum) & 0xFFFFFFFF:
            errors.append("multiboot checksum wrong")
        if flags & MB_AOUT_KLUDGE:
            errors.append("multiboot a.out kludge flag set")
        if flags & 3 != 3:
            errors.append("multiboot flags 0x%x lack page-align/memory-info" % flags)

    if not errors:
        print("check-elf: OK %s entry=0x%x pvh_entry=0x%x multiboot@0x%x loads=%s"
              % (path, e_entry, pvh_entry, mb[0],
                 ",".join("0x%x+0x%x" % (p, n) for p, n, _ in loads)))
    return errors


def main():
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        path = os.path.join(os.environ.get("VMHOP_BUILDDIR", "."), "tests/guest/guest.elf")
    try:
        errors = check(path)
    except (OSError, struct.error) as e:
        errors = [str(e)]
    for e in errors:
        print("check-elf: FAIL %s: %s" % (path, e))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
