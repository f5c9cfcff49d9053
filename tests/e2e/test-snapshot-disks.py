"""disks=include: the checkpoint holds the writable disk as it was at that
instant. The guest keeps rewriting its disk region after the checkpoint;
the restored guest, on an image created from the checkpoint, finds exactly
the generation it had written then (its own check passes). Restore never
writes over an existing file, and a failed restore leaves no image. In a
chain (--base), each incremental checkpoint holds only the disk blocks
written since its base, and restoring the last link rebuilds the image from
every link, oldest first; an incremental one on a base without its disks is
refused."""
import hashlib
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


def host_data(path):
    with open(path, "rb") as f:
        f.seek(16 << 20)
        return hashlib.sha256(f.read(32 << 20)).hexdigest()


def chain(ctx):
    img = ctx.path("c.img")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
        f.seek(16 << 20)
        f.write(os.urandom(32 << 20))      # data the guest never touches
    data0 = host_data(img)
    vm = ctx.run_vm(["--kernel", t.GUEST, "--memory", "128M", "--disk", f"{img},id=vda,cache=none",
                     "--cmdline", f"seconds=0 dirty=2M rate=1M verify=1 disk=rw disk_mib={MIB} "
                     "disk_loop=1 disk_rate=1M hb=100"], name="chain-src")
    vm.wait_line(r"^DISK ok")
    files = []
    for k in range(4):
        path = ctx.path(f"link{k}.vmhop")
        args = ["snapshot", "create", "--control", vm.control, "--output", path, "--disks", "include"]
        if files:
            args += ["--base", files[-1]]
        code, out, err = ctx.vmhop(args)
        t.check(code == 0, f"link {k} written ({err.strip()[-200:]})")
        files.append(path)
        seq = max(vm.heartbeats())
        vm.wait_line(r"^HB seq=", after=seq + 8)
    sizes = [os.path.getsize(f) for f in files]
    t.check(sizes[0] > (32 << 20) and all(x * 4 < sizes[0] for x in sizes[1:]),
            f"each incremental holds only what changed, disks included (sizes {sizes})")
    vm.ctl("quit")
    vm.wait_exit()

    restored = ctx.path("chain-restored.img")
    r = t.Vmhop(ctx, "chain-restored", ["snapshot", "restore", files[-1], "--disk-map", f"{img}={restored}"],
                serial=True, control=True)
    ctx.procs.append(r)
    r.wait_line(r"^HB seq=", after=10)
    t.check(host_data(restored) == data0, "the image rebuilt from the chain keeps the base's data")
    r.ctl("shutdown")
    verdict = r.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS" and "disk=ok" in verdict.group(2),
            f"restored from the last link, the guest finds its disk as at that instant ({verdict.group(0)})")
    r.wait_exit()
    p = subprocess.run([sys.executable, t.CHECK_DISK, restored, "--mib", str(MIB)],
                       capture_output=True, text=True)
    t.check(p.returncode == 0, f"the host sees a valid pattern ({p.stdout.strip()}{p.stderr.strip()})")

    # A base without its disks cannot take an incremental one with them.
    vm = ctx.run_vm(["--kernel", t.GUEST, "--memory", "128M", "--disk", f"{img},id=vda,cache=none",
                     "--cmdline", f"seconds=0 verify=1 disk=rw disk_mib={MIB} disk_loop=1 disk_rate=1M hb=100"],
                    name="chain-ext")
    vm.wait_line(r"^DISK ok")
    ext = ctx.path("ext.vmhop")
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output", ext,
                                "--disks", "external"])
    t.check(code == 0, f"a checkpoint with --disks external ({err.strip()})")
    inc = ctx.path("inc-on-ext.vmhop")
    code, out, err = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output", inc,
                                "--disks", "include", "--base", ext])
    t.check(code != 0 and err.startswith("vmhop snapshot create: ") and "holds no disks" in err
            and not os.path.exists(inc),
            f"an incremental with disks on a base without them is refused ({err.strip()})")
    t.check(vm.ctl("query-status")["return"]["status"] == "running", "the VM keeps running")
    vm.ctl("quit")
    vm.wait_exit()


def both(ctx):
    test(ctx)
    chain(ctx)


t.main(both)
