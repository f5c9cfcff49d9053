"""Fault injection at every phase of a live migration. Before `go`: the
connection cut, the destination killed, the source's sender stalled past the
I/O timeout -- in every case migrate-send fails, the destination exits
non-zero having run nothing, and the guest keeps running on the source (which
verifies PASS at the end). After `go` with no `running`: the source keeps the
guest paused, says so, and resumes only when forced."""
import vmhoptest as t

HOOKS = {"VMHOP_TEST_HOOKS": "1"}
IO = ["--io-timeout", "2"]
PRE_GO = ["hello", "round1", "precopy", "stopcopy", "ready"]
# Phases before stop-and-copy need a migration that has not converged yet:
# a 1 ms budget, and a link slow enough that the guest always dirties more
# than that during a round (on a busy machine a fast round 1 could
# otherwise leave next to nothing to send).
NO_CONVERGE = ["--max-downtime", "1", "--max-bandwidth", "64M"]
GUEST = "seconds=0 dirty=16M rate=20M verify=1 hb=100"


def source(ctx, name):
    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "256M", "--cmdline", GUEST],
                     name=name, env=HOOKS)
    src.wait_line(r"^HB seq=5\b")
    return src


def one_case(ctx, src, phase, how):
    label = f"{how} at {phase}"
    dst_env = dict(HOOKS)
    send_env = {}
    if how == "destination killed":
        dst_env["VMHOP_MIGRATE_FAULT"] = f"{phase}:kill"
        if phase == "ready":
            # The source answers ready at once: hold its go back long
            # enough for the kill to land first, as "before go" means.
            send_env["VMHOP_MIGRATE_FAULT"] = "ready:delay"
    else:
        send_env["VMHOP_MIGRATE_FAULT"] = f"{phase}:{'cut' if how == 'connection cut' else 'stall'}"
    dst = ctx.recv_vm(IO, name=f"dst-{phase}-{how.split()[1]}", env=dst_env)
    args = IO + (NO_CONVERGE if phase in ("hello", "round1", "precopy") else [])
    rc, summary, err = ctx.migrate(src, dst.uri, args, env=send_env)
    t.check(rc == 1 and summary and summary["status"] == "failed" and summary.get("error"),
            f"{label}: migrate-send fails with a reason "
            f"({summary and summary.get('error')}; rc {rc}; {err.strip()[-400:]})")
    drc = dst.wait_exit()
    t.check(drc != 0 and not dst.lines(r"^HB"),
            f"{label}: the destination exits non-zero ({drc}) without running the guest")
    status = src.ctl("query-status")["return"]
    t.check(status["status"] == "running" and not status.get("handed_off"),
            f"{label}: the source guest is running")
    seq = max(src.heartbeats())
    src.wait_line(r"^HB seq=", after=seq + 2)
    t.check(True, f"{label}: its heartbeats continue")


def after_go(ctx):
    # The destination dies after go, before it runs the guest.
    src = source(ctx, "src-go")
    dst = ctx.recv_vm(IO, name="dst-go-kill", env=dict(HOOKS, VMHOP_MIGRATE_FAULT="go:kill"))
    rc, summary, err = ctx.migrate(src, dst.uri, IO)
    t.check(rc == 1 and summary and summary["status"] == "unconfirmed",
            f"after go, destination killed: migrate-send reports unconfirmed ({summary})")
    t.check("stays paused" in summary.get("error", ""), "the report says the guest stays paused")
    dst.wait_exit()
    status = src.ctl("query-status")["return"]
    t.check(src.running() and status["status"] == "paused" and status.get("handed_off") is True,
            f"the source process stays, paused and marked handed off ({status})")
    seq = max(src.heartbeats())
    reply = src.ctl("resume")
    t.check("error" in reply and "two copies" in reply["error"]["desc"],
            "a plain resume is refused: it could run two copies")
    reply = src.ctl("resume", force=True)
    t.check("return" in reply, "the operator can resume it with force=true")
    src.wait_line(r"^HB seq=", after=seq + 2)
    src.ctl("shutdown")
    verdict = src.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"the resumed guest verifies PASS ({verdict.group(0)})")
    src.wait_exit()

    # The connection drops right after go: the destination owns the guest
    # now and runs it; the source never resumes on its own.
    src = source(ctx, "src-go-cut")
    dst = ctx.recv_vm(IO, name="dst-go-cut", env=HOOKS)
    rc, summary, err = ctx.migrate(src, dst.uri, IO, env={"VMHOP_MIGRATE_FAULT": "go:cut"})
    t.check(rc == 1 and summary and summary["status"] == "unconfirmed",
            f"after go, connection cut: migrate-send reports unconfirmed ({summary and summary['status']})")
    dst.wait_line(r"^HB seq=", after=2)
    status = src.ctl("query-status")["return"]
    t.check(status["status"] == "paused" and status.get("handed_off") is True,
            "the destination runs the guest while the source keeps its copy paused")
    src.ctl("quit")
    src.wait_exit()
    dst.ctl("shutdown")
    verdict = dst.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"the guest verifies PASS on the destination ({verdict.group(0)})")
    t.check(dst.wait_exit() == 0, "the destination exits 0")


def test(ctx):
    src = source(ctx, "src")
    for how in ("connection cut", "destination killed", "source stalled"):
        for phase in PRE_GO:
            one_case(ctx, src, phase, how)
    src.ctl("shutdown")
    verdict = src.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS",
            f"after 15 failed migrations the source guest verifies PASS ({verdict.group(0)})")
    t.check(src.wait_exit() == 0, "the source exits 0")
    after_go(ctx)


t.main(test)
