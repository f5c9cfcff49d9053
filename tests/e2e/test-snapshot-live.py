"""Live checkpoints: a guest dirtying 128 MiB at 50 MiB/s keeps running
while its memory is written; it is paused only for the last pages and the
device state (under 10% of the whole write), the file verifies, and the
restored guest continues from the checkpoint and verifies PASS. A full
filesystem fails the checkpoint cleanly: the VM keeps running, no file is
left under the final name, and earlier checkpoints stay valid."""
import os
import re

import vmhoptest as t


def create(ctx, vm, path, *extra):
    return ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output", path,
                      "--json"] + list(extra))


def test(ctx):
    vm = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M", "--cmdline",
                     "seconds=0 dirty=128M rate=50M verify=1 hb=100"], name="src")
    vm.wait_line(r"^HB seq=30\b")   # the working set is hot
    cp = ctx.path("live.vmhop")
    code, out, err = create(ctx, vm, cp, "--live")
    t.check(code == 0 and os.path.exists(cp), f"a live checkpoint is written ({err.strip()})")
    m = re.search(r'"pause_ms":\s*([\d.]+).*"total_ms":\s*([\d.]+)', out)
    pause, total = float(m.group(1)), float(m.group(2))
    t.check(pause < 0.1 * total, f"the pause ({pause:.1f} ms) is under 10% of the write ({total:.1f} ms)")
    cp_seq = max(vm.heartbeats())
    code, out, err = ctx.vmhop(["snapshot", "verify", cp])
    t.check(code == 0, f"the live checkpoint verifies ({out.strip()}{err.strip()})")
    vm.ctl("quit")
    vm.wait_exit()

    restored = t.Vmhop(ctx, "restored", ["snapshot", "restore", cp], serial=True, control=True)
    ctx.procs.append(restored)
    first = int(restored.wait_line(r"^HB seq=(\d+)").group(1))
    t.check(cp_seq - 3 <= first <= cp_seq + 2,
            f"the restored guest continues from the checkpoint ({cp_seq} -> {first})")
    restored.wait_line(r"^HB seq=", after=5)
    restored.ctl("shutdown")
    verdict = restored.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"memory verification passes after restore ({verdict.group(0)})")
    restored.wait_exit()

    # A full filesystem: a small tmpfs that holds one checkpoint, not two.
    with ctx.small_tmpfs("small", "24m") as mnt:
        if mnt is None:
            return
        small = ctx.run_vm(["--kernel", t.GUEST, "--memory", "128M", "--cmdline",
                            "seconds=0 dirty=16M rate=10M verify=1 hb=100"], name="small")
        small.wait_line(r"^HB seq=20\b")
        first_cp = os.path.join(mnt, "one.vmhop")
        code, out, err = create(ctx, small, first_cp)
        t.check(code == 0, f"a first checkpoint fits ({err.strip()})")
        code, out, err = create(ctx, small, os.path.join(mnt, "two.vmhop"), "--live")
        t.check(code != 0 and "No space left" in err + out,
                f"a checkpoint that does not fit fails cleanly: {(err + out).strip()[-200:]}")
        t.check(sorted(os.listdir(mnt)) == ["one.vmhop"],
                f"no partial file is left ({sorted(os.listdir(mnt))})")
        t.check(small.ctl("query-status")["return"]["status"] == "running", "the VM keeps running")
        code, out, err = ctx.vmhop(["snapshot", "verify", first_cp])
        t.check(code == 0, "the earlier checkpoint is still valid")
        small.ctl("shutdown")
        verdict = small.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
        t.check(verdict.group(1) == "PASS", f"the guest verifies PASS ({verdict.group(0)})")
        small.wait_exit()


t.main(test)
