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
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time

# Processes, QMP, the control socket and the guest's lines: bench/lib/vmbench.py
# (no __pycache__ left in the source tree).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
from vmbench import (GIB, MIB, HB_RE, VERDICT_RE, RunFailed, Proc, Qmp,  # noqa: E402
                     control_request, on_sigterm, print_load, verdict, wait_exit)

QEMU_MAX_BANDWIDTH = 10 * GIB  # bytes/s
LISTEN_RE = re.compile(rb"migrate-recv: listening on tcp:[^\s:]+:(\d+)")


class Scenario:
    def __init__(self, name, memory, cpus, params, warm, what):
        self.name, self.memory, self.cpus = name, memory, cpus
        self.params, self.warm, self.what = params, warm, what


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
    if not src.out.wait_for(HB_RE, args.boot_timeout, pred=lambda m: m.group(1) == b"1"):
        if src.p.poll() is not None:
            raise RunFailed("source exited with status %s before a heartbeat" % src.p.returncode)
        raise RunFailed("source: no heartbeat within %g s" % args.boot_timeout)
    time.sleep(sc.warm)
    if src.p.poll() is not None:
        raise RunFailed("source exited with status %s" % src.p.returncode)
    v = VERDICT_RE.search(src.out.data)
    if v:
        raise RunFailed("source guest ended before the migration: %s" % v.group(0).decode())
    return src.out.last_hb()


def finish_on_destination(dst, seq0, request_shutdown, args):
    """Heartbeats continue past seq0, then a shutdown request ends the guest
    with a verdict; returns the first destination heartbeat seq."""
    m = dst.out.wait_for(HB_RE, args.exit_timeout, pred=lambda m: int(m.group(1)) > seq0)
    if not m:
        v = VERDICT_RE.search(dst.out.data)
        raise RunFailed("destination: no heartbeat after seq=%d%s" % (
            seq0, (": " + v.group(0).decode(errors="replace")) if v else
            "" if dst.p.poll() is None else " (exited with status %s)" % dst.p.returncode))
    first = HB_RE.search(dst.out.data)
    first_seq = int(first.group(1))
    if first_seq <= 1:
        raise RunFailed("destination heartbeats restarted at seq=%d" % first_seq)
    request_shutdown()
    v = dst.out.wait_for(VERDICT_RE, args.exit_timeout)
    if not v:
        raise RunFailed("destination: no verdict within %g s of the shutdown request"
                        % args.exit_timeout)
    if v.group(1) != b"PASS":
        raise RunFailed("destination guest: %s" % v.group(0).decode(errors="replace"))
    rc = wait_exit(dst, args.exit_timeout, "destination")
    if rc != 0:
        raise RunFailed("destination exited with status %d after the verdict" % rc)
    return first_seq


def qemu_cmd(args, sc, qmp, incoming):
    params = ("%s smp=%d" % (sc.params, sc.cpus)).strip()
    cmd = [args.qemu, "-machine", "pc,accel=kvm,mem-merge=off", "-cpu", "qemu64",
           "-m", sc.memory, "-smp", str(sc.cpus), "-nodefaults", "-no-user-config",
           "-display", "none", "-serial", "stdio", "-no-reboot",
           "-qmp", "unix:%s,server=on,wait=off" % qmp,
           "-kernel", args.guest, "-append", params]
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
        qd.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
        addrs = qd.cmd("query-migrate").get("socket-address") or []
        if not addrs:
            raise RunFailed("destination QEMU reports no listening address")
        port = int(addrs[0]["port"])
        qs = Qmp(src_qmp)
        seq0 = ready_to_migrate(src, sc, args)
        qs.cmd("migrate-set-parameters", **{"max-bandwidth": QEMU_MAX_BANDWIDTH,
                                           "downtime-limit": args.max_downtime})
        t0 = time.monotonic()
        qs.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        while True:
            info = qs.cmd("query-migrate")
            status = info.get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled"):
                raise RunFailed("QEMU migration %s: %s" % (status, info.get("error-desc", "")))
            if time.monotonic() - t0 > args.migrate_timeout:
                qs.cmd("migrate_cancel")
                raise RunFailed("QEMU migration not done within %g s (status %s)"
                                % (args.migrate_timeout, status))
            time.sleep(0.02)
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
        qs.cmd("quit")
        qs.close()
        qs = None
        wait_exit(src, 30, "source QEMU")
        res["first_hb"] = finish_on_destination(
            dst, seq0, lambda: qd.cmd("system_powerdown"), args)
        res["seq0"] = seq0
        return res
    except Exception as e:
        e.procs = [src, dst]
        raise
    finally:
        for q in (qs, qd):
            if q:
                q.close()
        src.stop()
        dst.stop()


def run_vmhop(args, sc, tmp, procs):
    """One vmhop migration; returns the result dict."""
    src_ctl, dst_ctl = os.path.join(tmp, "src.sock"), os.path.join(tmp, "dst.sock")
    dst = Proc(procs, "vmhop-dst", [args.vmhop, "migrate-recv", "--listen", "tcp:127.0.0.1:0",
                                     "--serial", "stdio", "--control", dst_ctl])
    src = Proc(procs, "vmhop-src", [args.vmhop, "run", "--kernel", args.guest,
                                     "--memory", sc.memory, "--cpus", str(sc.cpus),
                                     "--serial", "stdio", "--control", src_ctl,
                                     "--cmdline", sc.params])
    send = None
    try:
        m = dst.err.wait_for(LISTEN_RE, 30)
        if not m:
            raise RunFailed("migrate-recv printed no 'listening on' line (status %s)"
                            % dst.p.poll())
        port = int(m.group(1))
        seq0 = ready_to_migrate(src, sc, args)
        t0 = time.monotonic()
        send = Proc(procs, "migrate-send", [args.vmhop, "migrate-send", "--control", src_ctl,
                                            "--to", "tcp:127.0.0.1:%d" % port,
                                            "--max-downtime", str(args.max_downtime),
                                            "--json"])
        rc = send.wait(args.migrate_timeout)
        wall = (time.monotonic() - t0) * 1000.0
        if rc is None:
            raise RunFailed("migrate-send not done within %g s" % args.migrate_timeout)
        send.out.thread.join(timeout=5)
        lines = [l for l in send.out.data.decode(errors="replace").splitlines() if l.strip()]
        try:
            r = json.loads(lines[-1])
        except (IndexError, ValueError):
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
        for p in (send, src, dst):
            if p:
                p.stop()


# ---------------------------------------------------------------- report

def fmt_row(label, r):
    return "  %-7s %9.1f %9.1f %8.1f %9.1f %6d %8.1f   hb %d->%d  %s" % (
        label, r["total_ms"], r["downtime_ms"], r["setup_ms"], r["bytes_sent"] / MIB,
        r["rounds"], r["wall_ms"], r["seq0"], r["first_hb"], r["extra"])


HEADER = "  %-7s %9s %9s %8s %9s %6s %8s" % ("run", "total ms", "down ms", "setup ms",
                                          "sent MiB", "rounds", "wall ms")


def series(name, fn, args, sc, procs):
    """N runs of one VMM; returns (medians dict or None, failed?)."""
    print("%s:" % name, flush=True)
    print(HEADER, flush=True)
    results = []
    for i in range(args.runs):
        tmp = tempfile.mkdtemp(prefix="bench-migrate-")
        try:
            results.append(fn(args, sc, tmp, procs))
            print(fmt_row("run %d" % (i + 1), results[-1]), flush=True)
        except (RunFailed, OSError, ValueError, KeyError) as e:
            why = e if isinstance(e, RunFailed) else "%s: %s" % (type(e).__name__, e)
            print("  run %d: FAILED: %s" % (i + 1, why), flush=True)
            for p in getattr(e, "procs", []):
                for line in p.dump():
                    print(line)
            return None, True
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in results)
           for k in ("total_ms", "downtime_ms", "bytes_sent")}
    print("  median  %9.1f %9.1f %8s %9.1f" % (med["total_ms"], med["downtime_ms"], "",
                                              med["bytes_sent"] / MIB), flush=True)
    return med, False


def summary(sc, v, q, qnote):
    print("  %s (%s):" % (sc.name, sc.what))
    print("    %-6s %10s %10s %10s" % ("", "total ms", "down ms", "sent MiB"))
    for name, m in (("vmhop", v), ("qemu", q)):
        if m:
            print("    %-6s %10.1f %10.1f %10.1f" % (name, m["total_ms"], m["downtime_ms"],
                                                    m["bytes_sent"] / MIB))
        else:
            print("    %-6s %10s" % (name, "-"))
    if qnote:
        print("    qemu: %s" % qnote)
    if v and q:
        rt = v["total_ms"] / q["total_ms"] if q["total_ms"] else float("inf")
        rd = v["downtime_ms"] / q["downtime_ms"] if q["downtime_ms"] else float("inf")
        rb = v["bytes_sent"] / q["bytes_sent"] if q["bytes_sent"] else float("inf")
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
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.environ.get("VMHOP_BUILDDIR") or os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, metavar="N",
                   help="migrations per VMM and scenario (default 3)")
    p.add_argument("--scenario", choices=["idle", "dirty", "sparse", "all"], default="all",
                   help="which scenario to run (default all)")
    p.add_argument("--vmhop", metavar="PATH",
                   default=os.environ.get("VMHOP") or os.path.join(top, "vmhop"),
                   help="the vmhop binary (default: $VMHOP, else the build tree's)")
    p.add_argument("--qemu", metavar="PATH",
                   default=shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
                   help="QEMU binary (default qemu-system-x86_64 on PATH)")
    p.add_argument("--guest", metavar="PATH",
                   default=os.path.join(top, "tests", "guest", "guest.elf"),
                   help="the test guest ELF (default: the build tree's)")
    p.add_argument("--max-downtime", type=int, default=300, metavar="MS",
                   help="downtime limit in ms, for both VMMs (default 300)")
    p.add_argument("--skip-qemu", action="store_true", help="measure vmhop only")
    p.add_argument("--skip-vmhop", action="store_true", help="measure QEMU only")
    p.add_argument("--boot-timeout", type=float, default=60.0, metavar="S",
                   help="seconds to the first heartbeat (default 60)")
    p.add_argument("--migrate-timeout", type=float, default=300.0, metavar="S",
                   help="seconds for one migration (default 300)")
    p.add_argument("--exit-timeout", type=float, default=60.0, metavar="S",
                   help="seconds for the destination's heartbeat, verdict and exit (default 60)")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if not os.path.exists(args.guest):
        sys.exit("bench-migrate: %s not found (run make first)" % args.guest)
    if not args.skip_vmhop and not os.path.exists(args.vmhop):
        sys.exit("bench-migrate: %s not found (run make first)" % args.vmhop)
    run_qemu_too = not args.skip_qemu and shutil.which(args.qemu) is not None
    scenarios = [s for s in SCENARIOS if args.scenario in ("all", s.name)]

    # SIGTERM ends the script like Ctrl-C: the finally below stops every VMM.
    signal.signal(signal.SIGTERM, on_sigterm)
    procs = []
    failed = False
    results = []
    print("live migration over loopback TCP: %s, %d runs each, downtime limit %d ms"
          % (os.path.basename(args.guest), args.runs, args.max_downtime), flush=True)
    print("columns: total, downtime, setup and bytes sent as each VMM reports them; rounds: "
          "vmhop's rounds, QEMU's dirty-sync-count;\n  wall: the script's clock from the "
          "migrate request to completion; hb A->B: last heartbeat read on the source\n"
          "  before the request -> first one on the destination", flush=True)
    print_load()
    try:
        for sc in scenarios:
            print("\n== %s: %s\n   guest: %s" % (sc.name, sc.what, sc.params or "(no workload)"),
                  flush=True)
            v = q = None
            qnote = None
            if not args.skip_vmhop:
                v, f = series("vmhop", run_vmhop, args, sc, procs)
                failed |= f
            if run_qemu_too:
                qnote = qemu_sparse_problem(sc) if sc.name == "sparse" else None
                if qnote:
                    print("qemu: SKIP: %s" % qnote, flush=True)
                else:
                    q, f = series("qemu", run_qemu, args, sc, procs)
                    failed |= f
            elif not args.skip_qemu:
                qnote = "SKIP: %s not found" % args.qemu
            results.append((sc, v, q, qnote))
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        failed = True
    finally:
        for pr in procs:
            pr.stop()

    print("\nresult (medians of %d runs; vmhop: migrate-send --json, qemu: query-migrate):"
          % args.runs)
    for sc, v, q, qnote in results:
        summary(sc, v, q, qnote)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
