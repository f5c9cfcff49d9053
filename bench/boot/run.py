#!/usr/bin/env python3
"""Boot time: process start to the test guest's first heartbeat, vmhop beside QEMU.

Starts the same guest (tests/guest/guest.elf) with the same memory and vCPU
count under `vmhop run` and under QEMU (-kernel, multiboot) N times each,
reads the serial console on stdout as it comes, and takes the time from just
before the process is spawned to the line `HB seq=1`. Prints every run, the
medians, the ratio vmhop/QEMU and whether the targets hold (vmhop at most
100 ms and at most 0.1x QEMU). A benchmark: targets are printed, not
asserted; the exit status is 1 only when a run fails to produce a heartbeat.

Run through `make bench-boot`, or directly:
  bench/boot/run.py [--runs N] [--vmhop PATH] [--qemu PATH] [--guest PATH]
"""
import argparse
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import time

HEARTBEAT = b"HB seq=1 "
TARGET_MS = 100.0
TARGET_RATIO = 0.1


def vmhop_cmd(args):
    return [args.vmhop, "run", "--kernel", args.guest, "--memory", args.memory,
            "--cpus", str(args.cpus), "--serial", "stdio", "--cmdline", args.cmdline]


def qemu_cmd(args):
    # -cpu qemu64: `host` aborts on MSR 0x10a under kvm-pvm (notes/pvm-guests.md).
    return [args.qemu, "-machine", "pc,accel=kvm", "-cpu", "qemu64", "-m", args.memory,
            "-smp", str(args.cpus), "-nographic", "-no-reboot", "-nodefaults",
            "-serial", "stdio", "-kernel", args.guest, "-append", args.cmdline]


def stop(proc):
    """Ends the VM we started (by its pid), politely first."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def one_run(cmd, timeout):
    """Seconds from spawn to the first heartbeat, or (None, why)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = b""
    try:
        while True:
            left = t0 + timeout - time.monotonic()
            if left <= 0:
                return None, "no heartbeat within %.0f s" % timeout
            if not sel.select(left):
                continue
            # Raw reads, no line buffering: the line is timed when it arrives.
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                err = proc.stderr.read().decode(errors="replace").strip()
                proc.wait()
                return None, "exited with status %s before a heartbeat%s" % (
                    proc.returncode, (": " + err.splitlines()[-1]) if err else "")
            out += chunk
            i = out.find(HEARTBEAT)
            if i >= 0 and out.find(b"\n", i) >= 0:
                return time.monotonic() - t0, None
    finally:
        sel.close()
        stop(proc)
        proc.stdout.close()
        proc.stderr.close()


def bench(name, cmd, runs, timeout):
    print("%s: %s" % (name, " ".join(cmd)), flush=True)
    times = []
    for i in range(runs):
        secs, why = one_run(cmd, timeout)
        if secs is None:
            print("  run %d: FAILED: %s" % (i + 1, why), flush=True)
            return None
        times.append(secs * 1000.0)
        print("  run %d: %8.1f ms" % (i + 1, times[-1]), flush=True)
    med = statistics.median(times)
    print("  median %.1f ms (min %.1f, max %.1f)" % (med, min(times), max(times)), flush=True)
    return med


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.environ.get("VMHOP_BUILDDIR") or os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="runs per VMM (default 5)")
    p.add_argument("--vmhop", default=os.environ.get("VMHOP") or os.path.join(top, "vmhop"))
    p.add_argument("--qemu", default=shutil.which("qemu-system-x86_64") or "qemu-system-x86_64")
    p.add_argument("--guest", default=os.path.join(top, "tests", "guest", "guest.elf"))
    p.add_argument("--memory", default="512M")
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--cmdline", default="seconds=1", help="guest command line")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    p.add_argument("--skip-qemu", action="store_true", help="measure vmhop only")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    for path in (args.vmhop, args.guest):
        if not os.path.exists(path):
            sys.exit("bench-boot: %s not found (run make first)" % path)

    print("boot to first heartbeat: %s, %s, %d vCPU, %d runs each\n" % (
        os.path.basename(args.guest), args.memory, args.cpus, args.runs))
    v = bench("vmhop", vmhop_cmd(args), args.runs, args.timeout)
    q = None
    run_qemu = not args.skip_qemu and shutil.which(args.qemu) is not None
    if run_qemu:
        print()
        q = bench("qemu", qemu_cmd(args), args.runs, args.timeout)
    elif not args.skip_qemu:
        print("\nqemu: SKIP: %s not found" % args.qemu)

    print("\nresult:")
    if v is not None:
        print("  vmhop median %.1f ms: target <= %.0f ms %s" % (
            v, TARGET_MS, "met" if v <= TARGET_MS else "NOT met"))
    if v is not None and q is not None:
        ratio = v / q
        print("  qemu median %.1f ms" % q)
        print("  ratio vmhop/qemu %.3f: target <= %.1f %s" % (
            ratio, TARGET_RATIO, "met" if ratio <= TARGET_RATIO else "NOT met"))
    return 1 if v is None or (run_qemu and q is None) else 0


if __name__ == "__main__":
    sys.exit(main())
