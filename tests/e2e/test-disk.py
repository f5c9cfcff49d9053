"""Issue 2, acceptance 2: virtio-blk with cache=none (O_DIRECT) carries the
guest's writes to the image file; a readonly disk refuses them."""
import os
import subprocess
import sys
import time

import vmhoptest as t


def o_direct_open(pid, path):
    """True when process pid holds path open with O_DIRECT."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != path:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(next(l for l in f if l.startswith("flags:")).split()[1], 8)
            return bool(flags & os.O_DIRECT)
        except (FileNotFoundError, StopIteration):
            continue
    return None


def test(ctx):
    img = ctx.path("d.img")
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    vm = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--disk", f"{img},id=data,cache=none",
                     "--cmdline", "seconds=0 disk=rw disk_mib=4"])
    vm.wait_line(r"^HB seq=")
    direct = o_direct_open(vm.proc.pid, img)
    t.check(direct is True, "cache=none opens the image with O_DIRECT")
    vm.wait_line(r"^DISK ok")
    r = vm.ctl("shutdown")
    t.check("return" in r, "shutdown request accepted")
    rc = vm.wait_exit()
    t.check(rc == 0, f"vmhop run exits 0 (rc={rc})")
    verdict = vm.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS" and "disk=ok" in verdict.group(2), f"guest verdict {verdict.group(0)}")
    p = subprocess.run([sys.executable, t.CHECK_DISK, img, "--mib", "4"], capture_output=True, text=True)
    t.check(p.returncode == 0, f"the host finds the guest's pattern in the image ({p.stdout.strip()}{p.stderr.strip()})")

    ro = ctx.path("ro.img")
    with open(ro, "wb") as f:
        f.truncate(8 << 20)
    before = os.stat(ro)
    vm2 = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--disk", f"{ro},readonly",
                      "--cmdline", "seconds=1 disk=ro"], control=False)
    rc = vm2.wait_exit()
    t.check(rc == 0, f"readonly run exits 0 (rc={rc})")
    vm2.wait_line(r"^DISK readonly write refused")
    t.check(True, "the guest reports its write to the readonly disk was refused")
    verdict = vm2.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"readonly guest verdict {verdict.group(0)}")
    with open(ro, "rb") as f:
        t.check(f.read() == bytes(8 << 20), "the readonly image is unchanged")
    t.check(os.stat(ro).st_mtime == before.st_mtime, "the readonly image was not written")


t.main(test)
