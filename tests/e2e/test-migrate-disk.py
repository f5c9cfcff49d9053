"""Live migration of a guest that keeps rewriting and re-verifying a
virtio-blk disk on shared storage (cache=none, the same image opened by both
processes; the destination reaches it through --disk-map under another
path), with zstd-compressed pages: the guest's disk and memory checks pass
on the destination, the image holds a valid pattern, and a destination that
cannot open the disk refuses the move before the source stops."""
import os
import subprocess
import sys

import vmhoptest as t

MIB = 4


def test(ctx):
    img = ctx.path("shared.img")
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    alias = ctx.path("mounted-elsewhere.img")
    os.symlink(img, alias)
    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M",
                      "--disk", f"{img},id=data,cache=none", "--cmdline",
                      f"seconds=0 dirty=32M rate=50M verify=1 disk=rw disk_mib={MIB} disk_loop=1 hb=100"],
                     name="src")
    src.wait_line(r"^DISK ok")
    src.wait_line(r"^HB seq=10\b")

    missing = ctx.recv_vm(["--disk-map", f"{img}={ctx.path('nowhere.img')}"], name="dst-nodisk")
    rc, summary, err = ctx.migrate(src, missing.uri)
    t.check(rc == 1 and "nowhere.img" in (summary or {}).get("error", ""),
            f"a destination without the disk refuses the move ({(summary or {}).get('error')})")
    t.check(missing.wait_exit() != 0, "that destination exits non-zero")
    t.check(src.ctl("query-status")["return"]["status"] == "running", "the source guest keeps running")

    dst = ctx.recv_vm(["--disk-map", f"{img}={alias}"], name="dst")
    rc, summary, err = ctx.migrate(src, dst.uri, ["--compress", "zstd"])
    t.check(rc == 0 and summary["status"] == "completed",
            f"the migration completes ({summary}, {err.strip()[-200:]})")
    t.check(summary["pages_sent_compressed"] > 0,
            f"pages went compressed ({summary['pages_sent_compressed']} zstd, "
            f"{summary['pages_sent_raw']} raw)")
    t.check(src.wait_exit() == 0, "the source exits 0")
    cfg = dst.ctl("query-config")["return"]
    t.check(any(d.get("path") == alias for d in cfg.get("disks", [])),
            "the destination opened the disk through the mapped path")
    dst.wait_line(r"^HB seq=", after=10)
    dst.ctl("shutdown")
    verdict = dst.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS" and "disk=ok" in verdict.group(2),
            f"memory and disk verify PASS on the destination ({verdict.group(0)})")
    final = dst.wait_line(r"^DISK final ok (.*)")
    t.check(True, f"the guest re-read its whole disk region after the move ({final.group(0)})")
    t.check(dst.wait_exit() == 0, "the destination exits 0")
    p = subprocess.run([sys.executable, t.CHECK_DISK, img, "--mib", str(MIB)], capture_output=True,
                       text=True)
    t.check(p.returncode == 0, f"the host sees a valid pattern in the image ({p.stdout.strip()}{p.stderr.strip()})")


t.main(test)
