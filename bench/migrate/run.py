#!/usr/bin/env python3
"""Live migration over loopback TCP: vmhop migrate-send/recv beside QEMU's migrate.

Boots the same guest (tests/guest/guest.elf) with the same memory, vCPU
count and workload under `vmhop run` and under QEMU (-kernel, multiboot,
-enable-kvm), waits for its first heartbeat (and, when it dirties memory,
until its working set is hot), live-migrates it to a second VMM process on
127.0.0.1 and then checks the move: heartbeats continue on the destination
with higher sequence numbers, and after a shutdown request the guest's own
memory check ends with `VERDICT PASS`. Each VMM is migrated N times (default
3) per scenario; the script prints every run, the medians of total time,
downtime and bytes sent as each VMM reports them (vmhop: the --json summary
of migrate-send; QEMU: query-migrate's total-time, downtime and
ram.transferred), the ratios vmhop/QEMU and whether the targets of issue 5
hold:

  idle    1 GiB, 2 vCPUs, no workload            total <= 0.3x QEMU's
  dirty   1 GiB, 2 vCPUs, dirty=256M rate=200M   total <= 0.5x QEMU's,
                                                 downtime <= QEMU's
  sparse  16 GiB, 2 vCPUs, dirty=512M passes=1  total <= 2 s
          (touches 512 MiB once, then keeps it: cost must follow touched
          memory, not the guest's size)

Both sides use the same downtime limit (--max-downtime, default 300 ms);
QEMU's max-bandwidth is raised to 10 GiB/s. A benchmark: targets are
printed, not asserted; the exit status is 1 only when a run fails (no
heartbeat, the migration fails, the guest does not verify PASS, ...).

Run through `make bench-migrate`, or directly:
  bench/migrate/run.py [--runs N] [--scenario idle|dirty|sparse|all]
                       [--vmhop PATH] [--qemu PATH] [--guest PATH]
"""
import argparse
import os
import re
import sys
import time

# Processes, QMP, the control socket, the guest's lines and the steps every VM
# benchmark takes: bench/lib/vmbench.py (no __pycache__ left in the source tree).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
import vmbench  # noqa: E402
# run_vmhop and run_qemu use this module's Proc, Qmp, LISTEN_RE and qemu_cmd
# (not vmbench.Proc, ...): bench/transport replaces them here to change the
# transport.
from vmbench import (GIB, MIB, RunFailed, Proc, Qmp, Scenario,  # noqa: E402,F401
                     control_request, print_load, verdict, wait_exit)

QEMU_MAX_BANDWIDTH = 10 * GIB  # bytes/s
LISTEN_RE = re.compile(rb"migrate-recv: listening on tcp:[^\s:]+:(\d+)")


SCENARIOS = [
    # hb=100 is the default; stated so the command line is never empty.
    Scenario("idle", "1G", 2, "hb=100", 0.5,
             "idle guest, 1 GiB, 2 vCPUs"),
    # 2.5 s of dirtying: about four passes over the 256 MiB set.
    Scenario("dirty", "1G", 2, "dirty=256M rate=200M verify=1", 3.0,
             "256 MiB dirtied at 200 MiB/s, 1 GiB, 2 vCPUs"),
    # passes=1: one full pass over 512 MiB (about a second), then the guest
    # only keeps it; wait 4 s so the pass is surely done.
    Scenario("sparse", "16G", 2, "dirty=512M passes=1 verify=1", 4.0,
             "16 GiB guest that touched 512 MiB once, 2 vCPUs"),
]


# ---------------------------------------------------------------- runs

def ready_to_migrate(src, sc, args):
    """Waits for the first heartbeat and the warm-up; returns the last seq."""
    vmbench.wait_first_hb(src, args.boot_timeout, "source")
    return vmbench.after_warm_up(src, sc.warm, "source",
                                 "source guest ended before the migration")


def finish_on_destination(dst, seq0, request_shutdown, args):
    """Heartbeats continue past seq0, then a shutdown request ends the guest
    with a verdict; returns the first destination heartbeat seq."""
    return vmbench.finish(dst, seq0, request_shutdown, "destination", args.exit_timeout,
                          continued=True)


def qemu_cmd(args, sc, qmp, incoming):
    cmd = vmbench.qemu_cmd(args.qemu, "pc,accel=kvm,mem-merge=off", sc.memory, sc.cpus, qmp,
                           args.guest, ("%s smp=%d" % (sc.params, sc.cpus)).strip())
    if incoming:
        cmd += ["-incoming", "defer"]
    return cmd


def run_qemu(args, sc, tmp, procs):
    """One QEMU migration; returns the result dict."""
    src_qmp, dst_qmp = os.path.join(tmp, "src.qmp"), os.path.join(tmp, "dst.qmp")
    src = Proc(procs, "qemu-src", qemu_cmd(args, sc, src_qmp, False))
    dst = Proc(procs, "qemu-dst", qemu_cmd(args, sc, dst_qmp, True))
    qs = qd = None
    try:
        qd = Qmp(dst_qmp)
        port = vmbench.incoming_port(qd)
        qs = Qmp(src_qmp)
        seq0 = ready_to_migrate(src, sc, args)
        qs.cmd("migrate-set-parameters", **{"max-bandwidth": QEMU_MAX_BANDWIDTH,
                                           "downtime-limit": args.max_downtime})
        t0 = time.monotonic()
        qs.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        info = vmbench.wait_migration(qs, "completed", t0, args.migrate_timeout, 0.02,
                                      not_yet="done")
        wall = (time.monotonic() - t0) * 1000.0
        ram = info.get("ram", {})
        disk = info.get("disk", {})
        res = {
            "total_ms": float(info["total-time"]),
            "downtime_ms": float(info["downtime"]),
            "setup_ms": float(info.get("setup-time", 0)),
            "bytes_sent": int(ram.get("transferred", 0)) + int(disk.get("transferred", 0)),
            "rounds": int(ram.get("dirty-sync-count", 0)),
            "wall_ms": wall,
            "extra": "zero=%d normal=%d MiB/s=%.0f" % (
                ram.get("duplicate", 0), ram.get("normal", 0),
                float(ram.get("mbps", 0)) * 1e6 / 8 / MIB),
        }
        # The source is paused for good (postmigrate): end it.
        vmbench.quit_qemu(qs, src, "source QEMU")
        qs = None
        res["first_hb"] = finish_on_destination(
            dst, seq0, lambda: qd.cmd("system_powerdown"), args)
        res["seq0"] = seq0
        return res
    except Exception as e:
        e.procs = [src, dst]
        raise
    finally:
        vmbench.close_all((qs, qd), (src, dst))


def run_vmhop(args, sc, tmp, procs):
    """One vmhop migration; returns the result dict."""
    src_ctl, dst_ctl = os.path.join(tmp, "src.sock"), os.path.join(tmp, "dst.sock")
    dst = Proc(procs, "vmhop-dst", [args.vmhop, "migrate-recv", "--listen", "tcp:127.0.0.1:0",
                                     "--serial", "stdio", "--control", dst_ctl])
    src = Proc(procs, "vmhop-src", vmbench.vmhop_run_cmd(args.vmhop, args.guest, sc.memory,
                                                         sc.cpus, src_ctl, sc.params))
    send = None
    try:
        port = vmbench.listen_port(dst, LISTEN_RE)
        seq0 = ready_to_migrate(src, sc, args)
        t0 = time.monotonic()
        send = Proc(procs, "migrate-send", [args.vmhop, "migrate-send", "--control", src_ctl,
                                            "--to", "tcp:127.0.0.1:%d" % port,
                                            "--max-downtime", str(args.max_downtime),
                                            "--json"])
        rc, wall, r, _ = vmbench.json_result(send, t0, args.migrate_timeout, "migrate-send")
        if r is None:
            raise RunFailed("migrate-send (status %d) printed no JSON summary" % rc)
        if r.get("status") != "completed" or rc != 0:
            raise RunFailed("migrate-send status %d: %s: %s" % (
                rc, r.get("status"), r.get("error", "")))
        res = {
            "total_ms": float(r["total_ms"]),
            "downtime_ms": float(r["downtime_ms"]),
            "setup_ms": float(r.get("setup_ms", 0)),
            "bytes_sent": int(r["bytes_sent"]),
            "rounds": int(r.get("rounds", 0)),
            "wall_ms": wall,
            "extra": "zero=%s raw=%s MiB/s=%.0f dirty MiB/s=%.0f" % (
                r.get("pages_skipped_zero"), r.get("pages_sent_raw"),
                float(r.get("throughput_mib_s") or 0), float(r.get("dirty_rate_mib_s") or 0)),
        }
        rc = wait_exit(src, 30, "source vmhop")
        if rc != 0:
            raise RunFailed("source vmhop exited with status %d after the move" % rc)
        res["first_hb"] = finish_on_destination(
            dst, seq0, lambda: control_request(dst_ctl, "shutdown"), args)
        res["seq0"] = seq0
        return res
    except Exception as e:
        e.procs = [p for p in (src, send, dst) if p]
        raise
    finally:
        vmbench.close_all((), (send, src, dst))


# ---------------------------------------------------------------- report

def fmt_row(label, r):
    return "  %-7s %9.1f %9.1f %8.1f %9.1f %6d %8.1f   hb %d->%d  %s" % (
        label, r["total_ms"], r["downtime_ms"], r["setup_ms"], r["bytes_sent"] / MIB,
        r["rounds"], r["wall_ms"], r["seq0"], r["first_hb"], r["extra"])


HEADER = "  %-7s %9s %9s %8s %9s %6s %8s" % ("run", "total ms", "down ms", "setup ms",
                                          "sent MiB", "rounds", "wall ms")


def series(name, fn, args, sc, procs):
    """N runs of one VMM; returns (medians dict or None, failed?)."""
    results = vmbench.series(name, HEADER, args.runs, lambda tmp: fn(args, sc, tmp, procs),
                             fmt_row, "bench-migrate-")
    if results is None:
        return None, True
    med = vmbench.medians(results, ("total_ms", "downtime_ms", "bytes_sent"))
    print("  median  %9.1f %9.1f %8s %9.1f" % (med["total_ms"], med["downtime_ms"], "",
                                              med["bytes_sent"] / MIB), flush=True)
    return med, False


def summary(sc, v, q, qnote):
    print("  %s (%s):" % (sc.name, sc.what))
    vmbench.print_medians("    ", [("total ms", "%10.1f", lambda m: m["total_ms"]),
                                   ("down ms", "%10.1f", lambda m: m["downtime_ms"]),
                                   ("sent MiB", "%10.1f", lambda m: m["bytes_sent"] / MIB)],
                          v, q, qnote)
    if v and q:
        rt = vmbench.ratio(v["total_ms"], q["total_ms"])
        rd = vmbench.ratio(v["downtime_ms"], q["downtime_ms"])
        rb = vmbench.ratio(v["bytes_sent"], q["bytes_sent"])
        print("    ratio vmhop/qemu: total %.3f, downtime %.3f, bytes %.3f" % (rt, rd, rb))
        if sc.name == "idle":
            print("    target total <= 0.3x qemu: %s" % verdict(rt <= 0.3))
        elif sc.name == "dirty":
            print("    target total <= 0.5x qemu: %s" % verdict(rt <= 0.5))
            print("    target downtime <= qemu's: %s" % verdict(v["downtime_ms"] <= q["downtime_ms"]))
    elif sc.name == "idle":
        print("    target total <= 0.3x qemu: not computed (needs both)")
    elif sc.name == "dirty":
        print("    target total <= 0.5x qemu: not computed (needs both)")
        print("    target downtime <= qemu's: not computed (needs both)")
    if sc.name == "sparse":
        if v:
            print("    target vmhop total <= 2000 ms: %s" % verdict(v["total_ms"] <= 2000))
        else:
            print("    target vmhop total <= 2000 ms: not computed")


def qemu_sparse_problem(sc):
    """Why QEMU cannot run the sparse scenario here, or None."""
    need = 2 * 1024 * MIB  # two QEMUs' real footprint: the touched 512 MiB each, plus slack
    try:
        with open("/proc/meminfo") as f:
            info = dict(l.split(":", 1) for l in f)
        avail = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    if avail < need:
        return "only %d MiB available, two QEMUs need about %d MiB" % (avail // MIB, need // MIB)
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, metavar="N",
                   help="migrations per VMM and scenario (default 3)")
    p.add_argument("--scenario", choices=["idle", "dirty", "sparse", "all"], default="all",
                   help="which scenario to run (default all)")
    vmbench.add_binary_args(p)
    p.add_argument("--max-downtime", type=int, default=300, metavar="MS",
                   help="downtime limit in ms, for both VMMs (default 300)")
    vmbench.add_skip_args(p)
    p.add_argument("--boot-timeout", type=float, default=60.0, metavar="S",
                   help="seconds to the first heartbeat (default 60)")
    p.add_argument("--migrate-timeout", type=float, default=300.0, metavar="S",
                   help="seconds for one migration (default 300)")
    p.add_argument("--exit-timeout", type=float, default=60.0, metavar="S",
                   help="seconds for the destination's heartbeat, verdict and exit (default 60)")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    run_qemu_too = vmbench.check_binaries(args, "bench-migrate")
    scenarios = [s for s in SCENARIOS if args.scenario in ("all", s.name)]

    procs = []
    results = []  # (scenario, vmhop's medians, QEMU's, note), kept when interrupted
    print("live migration over loopback TCP: %s, %d runs each, downtime limit %d ms"
          % (os.path.basename(args.guest), args.runs, args.max_downtime), flush=True)
    print("columns: total, downtime, setup and bytes sent as each VMM reports them; rounds: "
          "vmhop's rounds, QEMU's dirty-sync-count;\n  wall: the script's clock from the "
          "migrate request to completion; hb A->B: last heartbeat read on the source\n"
          "  before the request -> first one on the destination", flush=True)
    print_load()

    def measure():
        failed = False
        for sc in scenarios:
            print("\n== %s: %s\n   guest: %s" % (sc.name, sc.what, sc.params or "(no workload)"),
                  flush=True)
            v, q, qnote, f = vmbench.both_series(
                args, run_qemu_too, lambda: series("vmhop", run_vmhop, args, sc, procs),
                lambda: series("qemu", run_qemu, args, sc, procs),
                qemu_sparse_problem(sc) if sc.name == "sparse" else None)
            failed |= f
            results.append((sc, v, q, qnote))
        return failed

    # SIGTERM ends the script like Ctrl-C; every VMM is stopped either way.
    failed, interrupted = vmbench.run_then_stop(procs, measure)
    failed = failed or interrupted

    print("\nresult (medians of %d runs; vmhop: migrate-send --json, qemu: query-migrate):"
          % args.runs)
    for sc, v, q, qnote in results:
        summary(sc, v, q, qnote)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
