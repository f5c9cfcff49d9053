"""disks=include: the checkpoint holds the writable disk as it was at that
instant. The guest keeps rewriting its disk region after the checkpoint;
the restored guest, on an image created from the checkpoint, finds exactly
the generation it had written then (its own check passes). Restore never
writes over an existing file, and a failed restore leaves no image."""
import os
import subprocess
import sys

import vmhoptest as t

MIB = 4


def test(ctx):
    img = ctx.path("d.img")
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    vm = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "256M", "--disk",
                     f"{img},id=vda,cache=none", "--cmdline",
                     f"seconds=0 dirty=16M rate=8M verify=1 disk=rw disk_mib={MIB} disk_loop=1 hb=100"],
                    name="src")
    vm.wait_line(r"^DISK ok")
    vm.wait_line(r"^HB seq=10\b")
    cp = ctx.path("cp.vmhop")
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output", cp,
                                "--disks", "include", "--json"])
    t.check(code == 0 and '"disks":"include"' in out.replace(" ", ""),
            f"a checkpoint with its disk is written ({err.strip()})")
    seq = max(vm.heartbeats())
    vm.wait_line(r"^HB seq=", after=seq + 10)   # later disk generations
    vm.ctl("quit")
    vm.wait_exit()
    before = open(img, "rb").read()

    code, out, err = ctx.vmhop(["snapshot", "restore", cp, "--serial", "none"])
    t.check(code == 1 and "never writes over" in err, f"restore will not overwrite the disk: {err.strip()}")
    t.check(open(img, "rb").read() == before, "the existing image is untouched")

    restored_img = ctx.path("restored.img")
    r = t.Vmhop(ctx, "restored", ["snapshot", "restore", cp, "--disk-map", f"{img}={restored_img}"],
                serial=True, control=True)
    ctx.procs.append(r)
    r.wait_line(r"^HB seq=", after=10)
    t.check(os.path.getsize(restored_img) == 16 << 20, "the image is created at its size")
    r.ctl("shutdown")
    verdict = r.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    final = r.wait_line(r"^DISK final (.*)")
    t.check(verdict.group(1) == "PASS" and "disk=ok" in verdict.group(2),
            f"the guest finds its disk as at the checkpoint ({final.group(0)}; {verdict.group(0)})")
    r.wait_exit()
    p = subprocess.run([sys.executable, t.CHECK_DISK, restored_img, "--mib", str(MIB)],
                       capture_output=True, text=True)
    t.check(p.returncode == 0, f"the host sees a valid pattern ({p.stdout.strip()}{p.stderr.strip()})")

    # A restore that fails after creating the image removes it again.
    data = bytearray(open(cp, "rb").read())
    data[-200] ^= 0x01
    bad = ctx.path("bad.vmhop")
    open(bad, "wb").write(data)
    other = ctx.path("other.img")
    code, out, err = ctx.vmhop(["snapshot", "restore", bad, "--serial", "none", "--disk-map",
                                f"{img}={other}"])
    t.check(code == 1 and not os.path.exists(other),
            f"a failed restore leaves no image behind ({err.strip()})")


t.main(test)
