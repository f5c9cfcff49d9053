"""Restore with memory filled lazily (userfaultfd on the guest's memfd): the
guest runs while its pages are still in the checkpoint file. A checkpoint
or a migration of the restored VM taken at once must still hold every page
(the guest verifies its memory after each move); a corrupt memory page is
refused before any guest starts; a chain restores lazily; --fill eager
gives the same guest. A file cut short while the guest runs with pages
still in it stops the VM as crashed, naming the page (no SIGBUS, no hang)."""
import os
import re
import shutil
import struct
import time

import vmhoptest as t

GUEST_ARGS = ["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M"]
# 96 MiB written once and kept: most of the checkpoint is page data, and
# the guest checks all of it when it shuts down.
CMDLINE = "seconds=0 dirty=96M passes=1 verify=1 hb=100"


def create(ctx, control, path, *extra):
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", control, "--output", path]
                               + list(extra))
    t.check(code == 0 and os.path.exists(path),
            f"checkpoint {os.path.basename(path)} {' '.join(extra)} ({err.strip()})")


def restore(ctx, tag, path, fill="lazy", defer=False):
    """--fill lazy, not auto: lazy whatever the machine's speed. defer: the
    populator waits until a checkpoint or migration needs all of memory, so
    every page the guest touches first is filled on demand."""
    vm = t.Vmhop(ctx, tag, ["snapshot", "restore", path, "-v", "--fill", fill], serial=True,
                 control=True, env={"VMHOP_TEST_LAZY_DEFER": "1"} if defer else None)
    ctx.procs.append(vm)
    return vm


def finish(vm, what):
    """Heartbeats go on; a shutdown request ends the guest with PASS."""
    vm.wait_line(r"^HB seq=", after=len(vm.heartbeats()) + 1)
    vm.ctl("shutdown")
    verdict = vm.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"{what}: the guest verifies its memory "
            f"({verdict.group(0)})")
    t.check(vm.wait_exit() == 0, f"{what}: exits 0")


def fill_report(vm, what, pattern):
    """Waits for the fill's own report (-v) and returns its match."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + t.BOOT_TIMEOUT
    while not rx.search(vm.stderr()) and vm.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    m = rx.search(vm.stderr())
    if not m:
        raise t.TestFailure(f"{what}: no /{pattern}/ on stderr: {vm.stderr().strip()[-300:]}")
    return m


COMPLETE = (r"guest memory complete after [\d.]+ ms: (\d+) pages from the checkpoint, "
            r"(\d+) filled on first touch \((\d+) faults\)")
INCOMPLETE = (r"ended before its memory was complete: (\d+) of (\d+) pages from the "
              r"checkpoint filled on first touch \((\d+) faults\)")


def filled_lazily(vm, what, faults=False):
    """The populator finished; with faults, first touches were served too."""
    m = fill_report(vm, what, COMPLETE)
    t.check(int(m.group(1)) > 0 and (not faults or int(m.group(3)) > 0),
            f"{what}: memory was filled lazily ({m.group(0)})")


def mem_record_page(data):
    """Offset of a byte inside the first raw page of the largest MEM record
    (walking the records: header 40 bytes, then type u16, flags u16, len u32,
    payload, crc u32)."""
    off, best = 40, None
    while off + 8 <= len(data):
        typ, _flags, ln = struct.unpack_from("<HHI", data, off)
        if typ == 1:
            break
        if typ == 3 and (best is None or ln > best[1]):
            best = (off, ln)
        off += 8 + ln + 4
    t.check(best is not None, "the checkpoint has MEM records")
    rec, _ln = best
    count = struct.unpack_from("<I", data, rec + 8 + 8)[0]
    kinds = data[rec + 8 + 16: rec + 8 + 16 + count]
    pos = rec + 8 + 16 + count
    for k in kinds:
        if k == 1:
            return pos + 2049
        t.check(k == 0, "the largest MEM record is raw (no --compress)")
    raise t.TestFailure("no raw page in the largest MEM record")


def test(ctx):
    src = ctx.run_vm(GUEST_ARGS + ["--cmdline", CMDLINE], name="src")
    src.wait_line(r"^HB seq=10\b")
    cp = ctx.path("cp.vmhop")
    create(ctx, src.control, cp)
    cpz = ctx.path("cpz.vmhop")
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", src.control, "--output", cpz,
                                "--compress", "zstd", "--json"])
    m = re.search(r'"pages_compressed":\s*(\d+)', out)
    t.check(code == 0 and m and int(m.group(1)) > 0,
            f"a compressed checkpoint holds zstd pages ({out.strip()[-200:]}{err.strip()})")
    src.ctl("quit")
    src.wait_exit()

    # Restore, and checkpoint the restored VM as soon as it answers: the
    # checkpoint waits for the fill, so it holds every page.
    r1 = restore(ctx, "r1", cp)
    r1.wait_control()
    again = ctx.path("again.vmhop")
    create(ctx, r1.control, again)
    filled_lazily(r1, "restore")
    finish(r1, "restored VM, checkpointed at once")
    code, out, err = ctx.vmhop(["snapshot", "verify", again])
    t.check(code == 0, f"the checkpoint of the restored VM verifies ({err.strip()})")
    r2 = restore(ctx, "r2", again)
    finish(r2, "restore of that checkpoint")

    # Only first touches fill memory: the guest runs, then checks all of its
    # 96 MiB when it shuts down, every page through the fault thread.
    r3 = restore(ctx, "r3", cp, defer=True)
    r3.wait_line(r"^HB seq=", after=2)
    finish(r3, "restore filled on demand only")
    m = fill_report(r3, "restore filled on demand only", INCOMPLETE)
    t.check(int(m.group(1)) >= 96 * 256 and int(m.group(3)) > 0,
            f"every page the guest checked came through the fault thread ({m.group(0)})")

    # Compressed pages: decompressed by the populator, and by the fault
    # thread when the guest touches them first.
    r7 = restore(ctx, "r7", cpz)
    filled_lazily(r7, "compressed checkpoint")
    finish(r7, "compressed checkpoint restored lazily")
    r8 = restore(ctx, "r8", cpz, defer=True)
    finish(r8, "compressed checkpoint, pages on first touch only")

    # Migrate a VM whose memory is still mostly in the file: the migration
    # waits for (and here sets off) the fill.
    r4 = restore(ctx, "r4", cp, defer=True)
    r4.wait_line(r"^HB seq=", after=2)
    dst = ctx.recv_vm(name="dst")
    rc, summary, err = ctx.migrate(r4, dst.uri)
    t.check(rc == 0 and summary and summary["status"] == "completed",
            f"a VM migrates right after its restore ({summary}, {err.strip()[-300:]})")
    t.check(r4.wait_exit() == 0, "the restored source exits 0 after the move")
    filled_lazily(r4, "restore, then migrate", faults=True)
    finish(dst, "migrated after a lazy restore")

    # A flipped byte in a memory page: refused before any guest runs, with
    # the fill lazy or eager.
    data = open(cp, "rb").read()
    at = mem_record_page(data)
    bad = ctx.path("bad.vmhop")
    with open(bad, "wb") as f:
        f.write(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:])
    for fill in ("lazy", "eager"):
        serial = ctx.path(f"bad-{fill}.serial")
        code, out, err = ctx.vmhop(["snapshot", "restore", bad, "--fill", fill, "--serial",
                                    f"file:{serial}"])
        t.check(code == 1 and "checksum mismatch in record MEM" in err,
                f"--fill {fill}: a corrupt memory page is refused ({err.strip()})")
        started = os.path.exists(serial) and os.path.getsize(serial) > 0
        t.check(not started, f"--fill {fill}: no guest ran (its console is empty)")

    # The eager fill gives the same guest.
    r5 = restore(ctx, "r5", cp, fill="eager")
    finish(r5, "eager restore")
    t.check("guest memory complete" not in r5.stderr(), "--fill eager uses no fault thread")
    r9 = restore(ctx, "r9", cpz, fill="eager")
    finish(r9, "eager restore of the compressed checkpoint")

    # A chain (full + 2 incrementals of a guest that keeps rewriting 16 MiB)
    # restored lazily from its last link: a page from the wrong link would
    # fail the guest's verification.
    busy = ctx.run_vm(GUEST_ARGS + ["--cmdline", "seconds=0 dirty=16M rate=4M verify=1 hb=100"],
                      name="busy")
    busy.wait_line(r"^HB seq=5\b")
    d = ctx.path("chain")
    os.mkdir(d)
    names = [os.path.join(d, f"cp{i}.vmhop") for i in range(3)]
    create(ctx, busy.control, names[0])
    for i in (1, 2):
        busy.wait_line(r"^HB seq=", after=max(busy.heartbeats()) + 2)
        create(ctx, busy.control, names[i], "--base", names[i - 1])
    busy.ctl("quit")
    busy.wait_exit()
    r6 = restore(ctx, "r6", names[2])
    r6.wait_line(r"^HB seq=")
    filled_lazily(r6, "chain restore")
    finish(r6, "chain restored lazily")

    # The file cut short under a running guest whose pages are still in it
    # (filled on first touch only): the shutdown makes the guest check all
    # of its memory, the first page past the cut cannot be filled, and the
    # VM stops as crashed with the reason instead of dying of SIGBUS.
    cut = ctx.path("cut.vmhop")
    shutil.copy(cp, cut)
    r10 = restore(ctx, "r10", cut, defer=True)
    r10.wait_line(r"^HB seq=", after=1)
    os.truncate(cut, 1 << 20)
    r10.ctl("shutdown")
    rc = r10.wait_exit()
    err = r10.stderr()
    t.check(rc not in (0, None) and rc > 0 and "filling guest page" in err and
            "did the file change during the restore" in err,
            f"a file cut short under the running guest stops it, naming the page (exit {rc}: "
            f"{err.strip().splitlines()[-1] if err.strip() else ''})")
    t.check(not r10.lines(r"^VERDICT PASS"), "the guest does not get to verify PASS")


t.main(test)
