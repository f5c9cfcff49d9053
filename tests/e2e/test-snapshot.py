"""Checkpoint a running test guest, restore it in a new process: the guest
continues from the checkpointed heartbeat with its memory verified; bad or
missing files and writable disks without a disk policy are refused."""
import os
import re

import vmhoptest as t


def test(ctx):
    vm = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M",
                     "--cmdline", "seconds=0 dirty=64M rate=50M hb=100"], name="src")
    vm.wait_line(r"^HB seq=5\b")
    cp = ctx.path("cp.vmhop")
    # The checkpoint's instant lies between these two heartbeats (the guest
    # resumes before the file is synced and named).
    seq_before = max(vm.heartbeats())
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output", cp])
    t.check(code == 0 and os.path.exists(cp), f"snapshot create succeeds ({out.strip()}{err.strip()})")
    t.check(re.search(r"pause_ms: [\d.]+", out) is not None, "the pause is reported")
    cp_seq = max(vm.heartbeats())
    vm.wait_line(r"^HB seq=", after=cp_seq)
    t.check(True, "the source guest keeps running after the checkpoint")
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output", cp])
    t.check(code != 0 and "already exists" in err + out, "an existing checkpoint is never overwritten")
    vm.ctl("quit")
    vm.wait_exit()

    code, out, err = ctx.vmhop(["snapshot", "verify", cp])
    t.check(code == 0 and "verified" in out, "snapshot verify accepts the file")

    restored = t.Vmhop(ctx, "restored", ["snapshot", "restore", cp], serial=True, control=True)
    ctx.procs.append(restored)
    first = int(restored.wait_line(r"^HB seq=(\d+)").group(1))
    t.check(seq_before <= first <= cp_seq + 1,
            f"the restored guest continues from the checkpointed heartbeat "
            f"({seq_before}..{cp_seq} -> {first})")
    restored.wait_line(r"^HB seq=", after=5)
    restored.ctl("shutdown")
    rc = restored.wait_exit()
    verdict = restored.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS" and "cpus=2" in verdict.group(2),
            f"memory verification passes after restore ({verdict.group(0)})")
    t.check(rc == 0, f"the restored VM exits 0 on guest shutdown (rc={rc})")

    # Corrupt and truncated checkpoints start no guest.
    data = open(cp, "rb").read()
    bad = ctx.path("flipped.vmhop")
    with open(bad, "wb") as f:
        f.write(data[:400] + bytes([data[400] ^ 0x40]) + data[401:])
    for path, what in ((bad, "a flipped byte"), (ctx.path("missing.vmhop"), "a missing file")):
        code, out, err = ctx.vmhop(["snapshot", "restore", path, "--serial", "none"])
        t.check(code == 1 and err.strip(), f"restore refuses {what}: {err.strip()}")
    short = ctx.path("short.vmhop")
    with open(short, "wb") as f:
        f.write(data[: len(data) // 2])
    code, out, err = ctx.vmhop(["snapshot", "restore", short, "--serial", "none"])
    t.check(code == 1 and "offset" in err, f"restore refuses a truncated file: {err.strip()}")
    code, out, err = ctx.vmhop(["snapshot", "verify", short])
    t.check(code != 0, "verify refuses a truncated file")

    # A newer release's checkpoint is refused by an older one, at the header.
    code, out, err = ctx.vmhop(["snapshot", "restore", cp, "--serial", "none"],
                               env={"VMHOP_RELEASE_LEVEL": "SP2"})
    t.check(code == 1 and "refusing stream from release SP3" in err, f"SP2 refuses an SP3 checkpoint: {err.strip()}")

    # Writable disks need a decision about their contents.
    img = ctx.path("d.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    d = ctx.run_vm(["--kernel", t.GUEST, "--memory", "128M", "--disk", img,
                    "--cmdline", "seconds=0"], name="disk")
    d.wait_line(r"^HB seq=2\b")
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", d.control, "--output", ctx.path("d.vmhop")])
    t.check(code != 0 and "writable disks" in err + out, "a VM with writable disks needs --disks")
    t.check(not os.path.exists(ctx.path("d.vmhop")), "no file is left behind")
    st = d.ctl("query-status")
    t.check(st["return"]["status"] == "running", "the VM keeps running after a refused checkpoint")
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", d.control, "--output", ctx.path("d.vmhop"),
                                "--disks", "external"])
    t.check(code == 0, f"--disks external checkpoints it ({err.strip()})")
    d.ctl("quit")
    d.wait_exit()

    # The disk somewhere else on the restoring host.
    moved = ctx.path("moved.img")
    os.rename(img, moved)
    code, out, err = ctx.vmhop(["snapshot", "restore", ctx.path("d.vmhop"), "--serial", "none"])
    t.check(code == 1 and "d.img" in err, f"without the disk the restore fails naming it: {err.strip()}")
    r2 = t.Vmhop(ctx, "mapped", ["snapshot", "restore", ctx.path("d.vmhop"), "--disk-map",
                                 f"{img}={moved}"], serial=True, control=True)
    ctx.procs.append(r2)
    r2.wait_line(r"^HB seq=")
    cfg = r2.ctl("query-config")["return"]
    t.check([x["path"] for x in cfg["disks"]] == [moved], "--disk-map opens the disk at its new path")
    r2.ctl("quit")
    r2.wait_exit()


t.main(test)
