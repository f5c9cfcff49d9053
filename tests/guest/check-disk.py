#!/usr/bin/env python3
"""check-disk.py: check a disk image written by the test guest (disk=rw).

Every 512-byte sector of the first N MiB must hold the guest's pattern:
bytes 0-7 "VMHOPBLK", u64 LE sector number (the disk's index in bits 48-63:
0 for the guest's first virtio-blk disk, 1 for the second, ...), u64 LE
generation (>= 1), then byte i (24..511) = (sector*31 + gen*17 + i) & 0xFF.
Any generation is accepted (a disk_loop run leaves several).  The index must
be the same in every sector: --disk N requires it, else the first sector's is
taken.  Prints one result line; exit 0 if every sector is valid, 1
otherwise, 2 on usage or I/O errors.
"""
import argparse
import collections
import struct
import sys

SECTOR = 512
MAGIC = b"VMHOPBLK"
INDEX_SHIFT = 48


def expected_tail(sector, gen):
    b = (sector * 31 + gen * 17) & 0xFF
    return bytes((b + i) & 0xFF for i in range(24, SECTOR))


def disk_index(data):
    """The disk index a sector of the pattern carries, or None."""
    if data[:8] != MAGIC:
        return None
    return struct.unpack_from("<Q", data, 8)[0] >> INDEX_SHIFT


def check_sector(data, sector, index=0):
    """Return (generation, None) if valid, else (None, reason)."""
    if data[:8] != MAGIC:
        return None, "no VMHOPBLK magic"
    field, gen = struct.unpack_from("<QQ", data, 8)
    num, got_index = field & ((1 << INDEX_SHIFT) - 1), field >> INDEX_SHIFT
    if got_index != index:
        return None, "holds disk %d's pattern, expected disk %d" % (got_index, index)
    if num != sector:
        return None, "holds sector number %d" % num
    if gen < 1:
        return None, "generation 0"
    tail = expected_tail(sector, gen)
    if data[24:] != tail:
        i = next(k for k in range(len(tail)) if data[24 + k] != tail[k])
        return None, "byte %d is 0x%02x, expected 0x%02x (gen %d)" % (
            24 + i, data[24 + i], tail[i], gen)
    return gen, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image")
    ap.add_argument("--mib", type=int, default=4, help="region size in MiB (default 4)")
    ap.add_argument("--gen", type=int, help="require this generation in every sector")
    ap.add_argument("--disk", type=int, metavar="N",
                    help="require the pattern of the guest's disk N (0: the first; "
                         "default: the index in the first sector)")
    args = ap.parse_args()
    if args.mib <= 0:
        ap.error("--mib must be positive")
    if args.disk is not None and not 0 <= args.disk < 1 << 16:
        ap.error("--disk must be between 0 and 65535")

    sectors = args.mib * 1024 * 1024 // SECTOR
    gens = collections.Counter()
    bad = 0
    first = None
    index = args.disk
    try:
        with open(args.image, "rb") as f:
            for s in range(sectors):
                data = f.read(SECTOR)
                if len(data) < SECTOR:
                    print("check-disk: FAIL %s: image ends at sector %d, need %d MiB"
                          % (args.image, s, args.mib))
                    return 1
                if index is None:
                    index = disk_index(data) or 0
                gen, why = check_sector(data, s, index)
                if gen is not None and args.gen is not None and gen != args.gen:
                    gen, why = None, "generation %d, expected %d" % (gen, args.gen)
                if gen is None:
                    bad += 1
                    if first is None:
                        first = "sector %d: %s" % (s, why)
                else:
                    gens[gen] += 1
    except OSError as e:
        print("check-disk: ERROR %s" % e, file=sys.stderr)
        return 2

    summary = " ".join("%d:%d" % (g, n) for g, n in sorted(gens.items()))
    # disk=N only for the second disk and later: the line for disk 0 is as it always was.
    disk = " disk=%d" % index if index else ""
    if bad:
        print("check-disk: FAIL %s%s mib=%d bad_sectors=%d first=%s"
              % (args.image, disk, args.mib, bad, first))
        return 1
    print("check-disk: OK %s%s mib=%d sectors=%d generations=%s"
          % (args.image, disk, args.mib, sectors, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
