"""Live migration between two vmhop processes over loopback TCP: an idle
guest (1 GiB, 2 vCPUs) and one dirtying 256 MiB at 100 MiB/s with its own
memory verification. Heartbeats continue on the destination with the next
sequence number, the guest's TSC keeps counting forward and jumps by no more
than the reported downtime plus 100 ms, the source exits 0 and the guest's
verdict on the destination is PASS."""
import vmhoptest as t

HB_MS = 100


def check_continuity(src, dst, summary, label):
    """Heartbeats across the move, from the joined consoles: the last one
    completed before the destination's first output, and the next."""
    joined = t.hb_records(t.moved_console([src, dst]))
    n_src = len(t.hb_records(src.serial()))
    t.check(n_src and len(joined) > n_src + 1, f"{label}: heartbeats on both sides")
    before, after = joined[:n_src], joined[n_src:]
    last, first = before[-1], after[0]
    t.check(first[0] == last[0] + 1,
            f"{label}: heartbeats continue on the destination with consecutive numbers "
            f"({last[0]} -> {first[0]})")
    seqs = [r[0] for r in after]
    t.check(seqs == list(range(first[0], first[0] + len(seqs))),
            f"{label}: no gap or repeat among the destination's heartbeats")
    t.check(first[1] > last[1], f"{label}: the guest TSC counts forward across the move")
    jump = (first[2] - last[2]) - HB_MS
    limit = summary["downtime_ms"] + 100
    t.check(jump <= limit, f"{label}: guest time jumps {jump} ms across the move "
            f"(downtime {summary['downtime_ms']:.1f} ms + 100 ms allowed)")


def migrate_and_finish(ctx, src_args, cmdline, label, send_args=()):
    src = ctx.run_vm(src_args + ["--cmdline", cmdline], name=f"{label}-src")
    src.wait_line(r"^HB seq=10\b")
    dst = ctx.recv_vm(name=f"{label}-dst")
    rc, summary, err = ctx.migrate(src, dst.uri, send_args)
    t.check(rc == 0 and summary and summary["status"] == "completed",
            f"{label}: migrate-send completes ({summary}, {err.strip()[-300:]})")
    for key in ("total_ms", "downtime_ms", "setup_ms", "rounds", "bytes_sent", "pages_total",
                "pages_skipped_zero", "pages_sent_raw", "pages_sent_compressed",
                "throughput_mib_s", "dirty_rate_mib_s"):
        if key not in summary:
            raise t.TestFailure(f"{label}: the JSON summary lacks {key}: {summary}")
    src_rc = src.wait_exit()
    t.check(src_rc == 0, f"{label}: the source process exits 0 after the move")
    dst.wait_line(r"^HB seq=", after=5)
    check_continuity(src, dst, summary, label)
    dst.ctl("shutdown")
    verdict = dst.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"{label}: the guest verifies PASS on the destination "
            f"({verdict.group(0)})")
    t.check(dst.wait_exit() == 0, f"{label}: the destination exits 0 when the guest shuts down")
    return summary


def test(ctx):
    idle = migrate_and_finish(ctx, ["--kernel", t.GUEST, "--cpus", "2", "--memory", "1G"],
                              f"seconds=0 hb={HB_MS}", "idle")
    t.check(idle["pages_skipped_zero"] > idle["pages_total"] * 9 // 10,
            f"idle: never-used pages are skipped ({idle['pages_skipped_zero']} of {idle['pages_total']})")
    busy = migrate_and_finish(ctx, ["--kernel", t.GUEST, "--cpus", "2", "--memory", "1G"],
                              f"seconds=0 dirty=256M rate=100M verify=1 hb={HB_MS}", "dirty")
    t.check(busy["rounds"] >= 2 and busy["dirty_rate_mib_s"] > 0,
            f"dirty: pre-copy ran {busy['rounds']} rounds, last dirty rate "
            f"{busy['dirty_rate_mib_s']:.1f} MiB/s")


t.main(test)
