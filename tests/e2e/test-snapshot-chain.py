"""Incremental checkpoints: a full one and three incrementals (each holding
only what changed since the previous one, so much smaller for a guest that
dirties 4 MiB/s of its 64 MiB; its own verification catches a page from
the wrong link) restore from the last link, the guest continuing from that
checkpoint and verifying PASS. A base that is not the VM's last checkpoint
is refused at create; at restore, a missing base or one from another VM
fails with the reason and starts no guest. A first checkpoint that fails (a
full filesystem) leaves nothing to build on, and tracking from the next one
works: its incremental restores with PASS."""
import os
import re
import shutil

import vmhoptest as t


def create(ctx, vm, path, *extra):
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output", path,
                                "--json"] + list(extra))
    t.check(code == 0, f"checkpoint {os.path.basename(path)} {' '.join(extra)} ({err.strip()})")
    return int(re.search(r'"bytes":\s*(\d+)', out).group(1))


def restore_fails(ctx, path, needle, what):
    code, out, err = ctx.vmhop(["snapshot", "restore", path, "--serial", "none"])
    t.check(code == 1 and needle in err, f"{what}: restore fails ({err.strip()})")


def chain(ctx, vm, d):
    """A full checkpoint and three incrementals; returns paths and sizes."""
    os.mkdir(d)
    names = [os.path.join(d, f"cp{i}.vmhop") for i in range(4)]
    sizes = [create(ctx, vm, names[0])]
    for i in range(1, 4):
        vm.wait_line(r"^HB seq=", after=max(vm.heartbeats()) + 3)
        sizes.append(create(ctx, vm, names[i], "--base", names[i - 1]))
    return names, sizes


def test(ctx):
    # A guest that touched 64 MiB once and changes little since.
    quiet = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--cmdline",
                        "seconds=0 dirty=64M passes=1 verify=1 hb=100"], name="quiet")
    quiet.wait_line(r"^HB seq=10\b")
    _, sizes = chain(ctx, quiet, ctx.path("quiet"))
    t.check(all(s * 10 < sizes[0] for s in sizes[1:]),
            f"each incremental is under a tenth of the full one ({sizes[1:]} vs {sizes[0]} bytes)")
    quiet.ctl("quit")

    # A guest rewriting its memory all along: a page taken from the wrong
    # link fails its own verification after the restore.
    vm = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "256M", "--cmdline",
                     "seconds=0 dirty=16M rate=4M verify=1 hb=100"], name="src")
    vm.wait_line(r"^HB seq=10\b")
    names, sizes = chain(ctx, vm, ctx.path("chain"))
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output",
                                ctx.path("wrong.vmhop"), "--base", names[1]])
    t.check(code != 0 and "not this VM's last checkpoint" in err + out,
            "a base that is not the VM's last checkpoint is refused")
    last_seq = max(vm.heartbeats())
    for path in names:
        code, out, err = ctx.vmhop(["snapshot", "verify", path])
        t.check(code == 0, f"{os.path.basename(path)} verifies")
    vm.ctl("quit")
    vm.wait_exit()

    restored = t.Vmhop(ctx, "restored", ["snapshot", "restore", names[3]], serial=True, control=True)
    ctx.procs.append(restored)
    first = int(restored.wait_line(r"^HB seq=(\d+)").group(1))
    t.check(first <= last_seq + 1, f"the chain restores from its last link (heartbeat {first})")
    restored.wait_line(r"^HB seq=", after=3)
    restored.ctl("shutdown")
    verdict = restored.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"memory verification passes ({verdict.group(0)})")
    restored.wait_exit()

    # Another VM's full checkpoint in the place of a link.
    other = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--cmdline", "seconds=0 hb=100"],
                       name="other")
    other.wait_line(r"^HB seq=3\b")
    foreign = ctx.path("foreign.vmhop")
    create(ctx, other, foreign)
    other.ctl("quit")
    saved = ctx.path("cp2.saved")
    shutil.move(names[2], saved)
    shutil.copy(foreign, names[2])
    restore_fails(ctx, names[3], "not the checkpoint this one was taken on", "another VM's base")
    os.unlink(names[2])
    restore_fails(ctx, names[3], "missing", "a missing base")
    shutil.move(saved, names[2])
    with open(names[1], "r+b") as f:
        f.seek(os.path.getsize(names[1]) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x20]))
    restore_fails(ctx, names[3], "cp1.vmhop", "a corrupt link")
    failed_first(ctx, foreign)


def failed_first(ctx, foreign):
    """The tracker is armed before a first checkpoint's pause: when that
    checkpoint fails it must leave no base behind, and the next one starts
    tracking afresh."""
    with ctx.small_tmpfs("tiny", "2m") as mnt:
        if mnt is None:
            return
        vm = ctx.run_vm(["--kernel", t.GUEST, "--memory", "128M", "--cmdline",
                         "seconds=0 dirty=16M rate=4M verify=1 hb=100"], name="first")
        vm.wait_line(r"^HB seq=10\b")
        code, out, err = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output",
                                    os.path.join(mnt, "cp.vmhop")])
        t.check(code != 0 and "No space left" in err + out and not os.listdir(mnt),
                f"a first checkpoint that does not fit fails, leaving no file ({(err + out).strip()[-160:]})")
        code, out, err = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output",
                                    ctx.path("after.vmhop"), "--base", foreign])
        t.check(code != 0 and "no checkpoint to build on" in err + out,
                f"after it, nothing is a base ({(err + out).strip()})")
        full, inc = ctx.path("first-full.vmhop"), ctx.path("first-inc.vmhop")
        create(ctx, vm, full)
        vm.wait_line(r"^HB seq=", after=max(vm.heartbeats()) + 3)
        create(ctx, vm, inc, "--base", full)
        vm.ctl("quit")
        vm.wait_exit()
        restored = t.Vmhop(ctx, "restored-first", ["snapshot", "restore", inc], serial=True,
                           control=True)
        ctx.procs.append(restored)
        restored.wait_line(r"^HB seq=", after=3)
        restored.ctl("shutdown")
        verdict = restored.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
        t.check(verdict.group(1) == "PASS",
                f"the incremental on the next full one restores with PASS ({verdict.group(0)})")
        restored.wait_exit()


t.main(test)
