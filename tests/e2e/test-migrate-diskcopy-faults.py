"""Disk copy under faults: the connection cut during the bulk pass, during a
round of rewritten blocks, during stop-and-copy, and after `ready` before
`go`. Every time migrate-send fails with a reason, the destination removes
the image it created for this migration and nothing else (a file that was
already in --disk-dir is untouched), the source's image is left alone, and
the guest keeps running on the source, verifying PASS at the end."""
import hashlib
import os

import vmhoptest as t

HOOKS = {"VMHOP_TEST_HOOKS": "1"}
IO = ["--io-timeout", "3"]
MIB = 8
# Rounds of rewritten blocks need a migration that has not converged: a
# 1 ms budget on a limited link while the guest keeps writing.
NO_CONVERGE = ["--max-downtime", "1", "--max-bandwidth", "64M"]


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test(ctx):
    img = ctx.path("src.img")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(os.urandom(16 << 20))	# data the guest never touches
    ddir = ctx.path("dst")
    os.mkdir(ddir)
    other = os.path.join(ddir, "unrelated.img")
    with open(other, "wb") as f:
        f.write(b"not ours" * 4096)
    other_before = (sha(other), os.stat(other).st_mtime_ns)
    src = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--disk", f"{img},id=data,cache=none",
                      "--cmdline", f"seconds=0 dirty=16M rate=20M verify=1 disk=rw disk_mib={MIB} "
                      "disk_loop=1 hb=100"], name="src", env=HOOKS)
    src.wait_line(r"^DISK ok")
    for phase in ("disk", "diskround", "stopcopy", "ready"):
        dst = ctx.recv_vm(IO + ["--disk-dir", ddir], name=f"dst-{phase}", env=HOOKS)
        args = IO + ["--copy-disk", "data"] + (NO_CONVERGE if phase == "diskround" else [])
        rc, s, err = ctx.migrate(src, dst.uri, args, env={"VMHOP_MIGRATE_FAULT": f"{phase}:cut"})
        t.check(rc == 1 and s and s["status"] == "failed" and s.get("error"),
                f"cut at {phase}: migrate-send fails with a reason ({s and s.get('error')})")
        if phase == "diskround":
            d = (s.get("disks") or [{}])[0]
            t.check(d.get("blocks_resent", 0) == 0 and s.get("rounds", 0) >= 1,
                    f"cut at {phase}: the cut came with the first round of rewritten blocks "
                    f"({s.get('rounds')} rounds, {d.get('bytes_sent')} disk bytes sent)")
        t.check(dst.wait_exit() != 0 and not dst.lines(r"^HB"),
                f"cut at {phase}: the destination exits non-zero without running the guest")
        t.check(sorted(os.listdir(ddir)) == ["unrelated.img"],
                f"cut at {phase}: the destination removed its copy and only it ({os.listdir(ddir)})")
        t.check((sha(other), os.stat(other).st_mtime_ns) == other_before,
                f"cut at {phase}: the file that was there is untouched")
        t.check(not os.path.exists(img + ".vmhop-gen"),
                f"cut at {phase}: the source recorded no generation")
        st = src.ctl("query-status")["return"]
        t.check(st["status"] == "running" and not st.get("handed_off"),
                f"cut at {phase}: the source guest runs")
        seq = max(src.heartbeats())
        src.wait_line(r"^HB seq=", after=seq + 2)
    src.ctl("shutdown")
    verdict = src.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS" and "disk=ok" in verdict.group(2),
            f"the source guest verifies memory and disk PASS ({verdict.group(0)})")
    t.check(src.wait_exit() == 0, "the source exits 0")


t.main(test)
