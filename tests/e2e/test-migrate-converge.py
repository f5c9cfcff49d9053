"""A guest that dirties memory faster than the link carries it: without
--auto-converge the migration fails at --timeout with the reason and the
guest keeps running on the source (verifying PASS later); with it the vCPUs
are throttled until the rest fits the downtime budget, and it completes.
While a migration runs, pause and checkpoints wait, and migrate-cancel
stops it with the guest running on."""
import json
import subprocess
import time

import vmhoptest as t

GUEST = "seconds=0 dirty=32M rate=200M verify=1 hb=100"
LINK = ["--max-bandwidth", "32M"]


def test(ctx):
    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M", "--cmdline", GUEST],
                     name="src")
    src.wait_line(r"^HB seq=10\b")

    dst = ctx.recv_vm(name="dst0")
    send = subprocess.Popen([t.VMHOP, "migrate-send", "--control", src.control, "--to", dst.uri,
                             "--json", "--timeout", "60"] + LINK, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while src.ctl("query-migrate")["return"]["status"] != "active":
        time.sleep(0.05)
    reply = src.ctl("pause")
    t.check("error" in reply and "migration is running" in reply["error"]["desc"],
            "pause is refused while a migration runs")
    reply = src.ctl("snapshot-create", path=ctx.path("cp.vmhop"))
    t.check("error" in reply and "migration is running" in reply["error"]["desc"],
            "a checkpoint is refused while a migration runs")
    t.check("return" in src.ctl("migrate-cancel"), "migrate-cancel is accepted")
    out, err = send.communicate(timeout=60)
    summary = json.loads(out.strip().splitlines()[-1])
    t.check(send.returncode == 1 and "cancelled" in summary.get("error", ""),
            f"migrate-send reports the cancel ({summary.get('error')})")
    t.check(dst.wait_exit() != 0 and not dst.lines(r"^HB"), "the destination gives up and runs nothing")
    t.check(src.ctl("query-status")["return"]["status"] == "running", "the guest runs on the source")
    reply = src.ctl("migrate-cancel")
    t.check("error" in reply, "migrate-cancel without a migration is an error")

    dst = ctx.recv_vm(name="dst1")
    rc, summary, err = ctx.migrate(src, dst.uri, LINK + ["--timeout", "3"])
    t.check(rc == 1 and summary and summary["status"] == "failed",
            f"without --auto-converge the migration fails ({summary})")
    t.check("did not converge within 3 s" in summary.get("error", "") and "MiB/s" in summary["error"],
            f"the reason names the timeout and the rates: {summary.get('error')}")
    t.check(dst.wait_exit() != 0, "the destination exits non-zero and runs nothing")
    t.check(not dst.lines(r"^HB"), "the destination never ran the guest")
    seq = max(src.heartbeats())
    src.wait_line(r"^HB seq=", after=seq + 5)
    t.check(src.running(), "the guest keeps running on the source")

    dst = ctx.recv_vm(name="dst2")
    rc, summary, err = ctx.migrate(src, dst.uri, LINK + ["--auto-converge", "--timeout", "120"])
    t.check(rc == 0 and summary and summary["status"] == "completed",
            f"with --auto-converge it completes ({summary}, {err.strip()[-200:]})")
    t.check(src.wait_exit() == 0, "the source exits 0 after the move")
    dst.wait_line(r"^HB seq=", after=3)
    dst.ctl("shutdown")
    verdict = dst.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"the guest verifies PASS on the destination ({verdict.group(0)})")
    t.check(dst.wait_exit() == 0, "the destination exits 0")


t.main(test)
