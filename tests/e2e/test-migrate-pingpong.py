"""Ping-pong: one guest, memory verification on, migrated back and forth ten
times between fresh vmhop processes; its heartbeats never skip and its
verdict at the end is PASS."""
import vmhoptest as t

HOPS = 10


def test(ctx):
    cur = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M", "--cmdline",
                      "seconds=0 dirty=64M rate=50M verify=1 hb=50"], name="hop0")
    cur.wait_line(r"^HB seq=5\b")
    chain = [cur]
    for hop in range(1, HOPS + 1):
        dst = ctx.recv_vm(name=f"hop{hop}")
        rc, summary, err = ctx.migrate(cur, dst.uri)
        t.check(rc == 0 and summary and summary["status"] == "completed",
                f"hop {hop}: completed in {summary and summary.get('total_ms', 0):.0f} ms, "
                f"downtime {summary and summary.get('downtime_ms', 0):.1f} ms")
        t.check(cur.wait_exit() == 0, f"hop {hop}: the old process exits 0")
        dst.wait_line(r"^HB seq=", after=2)
        chain.append(dst)
        cur = dst
    seqs = [r[0] for r in t.hb_records(t.moved_console(chain))]
    t.check(seqs == list(range(seqs[0], seqs[0] + len(seqs))),
            f"heartbeats {seqs[0]}..{seqs[-1]} across {HOPS} moves, none missing or repeated")
    cur.ctl("shutdown")
    verdict = cur.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"the guest verifies PASS after {HOPS} moves ({verdict.group(0)})")
    t.check(cur.wait_exit() == 0, "the last process exits 0")


t.main(test)
