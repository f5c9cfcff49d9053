"""Issue 2, acceptance 4: bad input gets one clear line and a non-zero exit;
a failing guest (triple fault) exits non-zero with the reason and registers."""
import os
import struct

import vmhoptest as t


def expect(ctx, args, rc, needle, env=None, what=None):
    code, out, err = ctx.vmhop(args, env=env)
    lines = [l for l in err.splitlines() if l.strip()]
    t.check(code == rc and lines and needle in lines[0],
            f"{what or ' '.join(args)}: exit {code} (want {rc}), says: {lines[0] if lines else '(nothing)'}")
    return err


def test(ctx):
    g = t.GUEST
    expect(ctx, ["run"], 2, "--kernel is required", what="no --kernel")
    expect(ctx, ["run", "--kernel", ctx.path("missing.elf")], 1, "No such file or directory",
           what="missing kernel file")
    txt = ctx.path("notakernel")
    with open(txt, "w") as f:
        f.write("this is not a kernel\n" * 100)
    expect(ctx, ["run", "--kernel", txt], 1, "unrecognised kernel image", what="unrecognised kernel image")
    elf_no_note = ctx.path("nonote.elf")
    with open(elf_no_note, "wb") as f:
        img = bytearray(t.pvh_elf(b"\xf4" * 16))
        struct.pack_into("<I", img, 52 + 32, 0)  # second program header: PT_NULL instead of PT_NOTE
        f.write(img)
    expect(ctx, ["run", "--kernel", elf_no_note], 1, "without a PVH entry note", what="ELF without PVH note")
    expect(ctx, ["run", "--kernel", g, "--disk", ctx.path("nodir/d.img")], 1, "d.img",
           what="unreadable disk (missing file)")
    expect(ctx, ["run", "--kernel", g, "--disk", ctx.tmp], 1, ctx.tmp, what="unreadable disk (a directory)")
    # A change record beside the image that cannot be read: the VM does not
    # start as if the disk had no history, and the image is left alone.
    img = ctx.path("rec.img")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    os.mkdir(img + ".vmhop-changes")
    expect(ctx, ["run", "--kernel", g, "--disk", img], 1, img + ".vmhop-changes",
           what="unreadable change record")
    t.check(os.path.getsize(img) == 1 << 20 and os.path.isdir(img + ".vmhop-changes"),
            "the image and the unreadable record are untouched")
    for bad in ("12X", "1.5G", "-1G", "", "1M1"):
        expect(ctx, ["run", "--kernel", g, "--memory", bad], 2, "--memory", what=f"--memory '{bad}'")
    expect(ctx, ["run", "--kernel", g, "--cpus", "0"], 2, "--cpus", what="--cpus 0")
    expect(ctx, ["run", "--kernel", g, "--cpus", "many"], 2, "--cpus", what="--cpus many")
    expect(ctx, ["run", "--kernel", g, "--cpus", "4096"], 1, "allows at most", what="more vCPUs than KVM allows")
    expect(ctx, ["run", "--kernel", g, "--disk", "x.img,cache=sometimes"], 2, "unknown option",
           what="bad --disk option")
    expect(ctx, ["run", "--kernel", g, "--serial", "tty"], 2, "--serial", what="bad --serial")
    expect(ctx, ["run", "--kernel", g, "--bogus"], 2, "unknown option", what="unknown option")
    expect(ctx, ["run", "--kernel", g, "--cpu-model", "pentium9"], 1, "unknown model", what="unknown CPU model")
    expect(ctx, ["run", "--kernel", g], 1, "cannot open", env={"VMHOP_KVM_DEVICE": ctx.path("nokvm")},
           what="/dev/kvm not accessible")
    expect(ctx, ["run", "--kernel", g], 1, "not a usable KVM device", env={"VMHOP_KVM_DEVICE": "/dev/null"},
           what="a device that is not KVM")
    expect(ctx, ["frobnicate"], 2, "unknown command", what="unknown subcommand")

    # A control socket in use by a live VM is refused; the live VM is unaffected.
    a = ctx.run_vm(["--kernel", g, "--memory", "128M", "--cmdline", "seconds=0"], name="owner")
    a.wait_line(r"^HB seq=1\b")
    expect(ctx, ["run", "--kernel", g, "--memory", "128M", "--serial", "none", "--control", a.control], 1,
           "in use", what="control socket in use by a live VM")
    st = a.ctl("query-status")
    t.check(st.get("return", {}).get("status") == "running", "the VM owning the socket keeps running")
    a.ctl("quit")
    a.wait_exit()

    # A stale socket (its VM was killed) is replaced.
    b = ctx.run_vm(["--kernel", g, "--memory", "128M", "--cmdline", "seconds=0"], name="stale")
    b.wait_control()
    b.kill()
    t.check(os.path.exists(b.control), "a killed VM leaves its socket behind")
    code, out, err = ctx.vmhop(["run", "--kernel", g, "--memory", "128M", "--serial", "none",
                                "--control", b.control, "--cmdline", "seconds=1"])
    t.check(code == 0, f"a stale control socket is replaced (exit {code}: {err.strip()})")

    # A guest that triple-faults: lidt with a zero limit, then ud2.
    base = 0x100000
    code32 = b"\x0f\x01\x1d" + struct.pack("<I", base + 0x10) + b"\x0f\x0b"
    code32 += bytes(0x10 - len(code32)) + bytes(8)
    crash = ctx.path("crash.elf")
    with open(crash, "wb") as f:
        f.write(t.pvh_elf(code32))
    err = expect(ctx, ["run", "--kernel", crash, "--serial", "none"], 1, "triple fault", what="triple-faulting guest")
    t.check("rip" in err and "cr0" in err, "the vCPU registers are dumped")


t.main(test)
