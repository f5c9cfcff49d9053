#!/usr/bin/env python3
"""Live migration with a disk copy: vmhop --copy-disk beside QEMU's drive-mirror to NBD.

One 1 GiB raw image holding 256 MiB of data (four 64 MiB extents at 0,
256, 512 and 768 MiB; holes elsewhere) is the guest's only disk, opened with
cache=none. The test guest (tests/guest/guest.elf, 512 MiB, 1 vCPU) keeps
verifying and rewriting the first 64 MiB of it at 10 MiB/s (disk=rw
disk_mib=64 disk_loop=1 disk_rate=10M), and the VM is live-migrated over
loopback TCP to a second VMM process that gets its own copy of the disk:

  vmhop  destination `vmhop migrate-recv --listen tcp:127.0.0.1:0 --disk-dir D`
         (it creates D/d0.img); `vmhop migrate-send --copy-disk d0 --json`.
         Numbers: the summary's total_ms, downtime_ms, disk_bytes_sent, and
         the bulk copy throughput: disk bytes over the bulk pass's time when
         the summary has one (a *bulk_ms field), else over total_ms.
  QEMU   as libvirt does it: the destination starts with -incoming defer
         and -S on a pre-created empty sparse image of the same size;
         `nbd-server-start` and `nbd-server-add` (writable) there; on the
         source `drive-mirror` (sync=full, mode=existing, format=raw) to that
         NBD export, wait until query-block-jobs says ready, `migrate` with
         the pause-before-switchover capability; in pre-switchover (guest
         stopped) `block-job-cancel` (a ready mirror finishes its sync and
         leaves the source disk as it is) and `migrate-continue`; once
         completed `nbd-server-stop` and `cont` on the destination. Total
         time runs from drive-mirror to the destination's `cont`; downtime
         is QEMU's (guest stopped to migration completed, the end of the
         mirror included) and the pause until `cont`.

For both, `wall` is the script's clock from the migration request until the
destination runs the guest, and `hb gap` the longest step of the guest's own
clock between consecutive heartbeats around the move (hb=50 ms: 50 when
nothing stopped it; on kvm-pvm the guest's TSC is the host's, so a pause
shows as the step, up to one period more). After the move the guest must keep
beating on the destination and end, after a shutdown request, with
`VERDICT PASS ... disk=ok` (it re-reads its 64 MiB region there); the script
then checks the destination's image: check-disk.py over the region, the
other 192 MiB of data byte for byte against the source image, holes read as
zeros, and reports how much of it is allocated (sparse copy: ~256 MiB).

The reference for throughput: an O_DIRECT sequential read (1 MiB requests)
of the source image's allocated extents on this machine, three times before
and three times after the runs (--odirect-runs), the median of all; every
value is printed (on a virtual disk it swings with the host's cache). The
load average is printed before and after: the test guest's vCPU polls, and
on a 2-CPU machine other work makes every number noisy.

Each VMM migrates --runs times (default 3), the two taking turns (vmhop 1,
qemu 1, vmhop 2, ...) so that load coming and going on a shared machine hits
both alike; the script prints every run, the medians and the ratios.

Targets of issue 9 (printed, not asserted): total time <= 0.5x QEMU's;
vmhop's bulk copy throughput >= 80% of the O_DIRECT read. The exit status
is 1 only when a run fails.

Where the destination's image lives matters on one machine: beside the
source image (the default), the copy's writes share the one device with its
reads, and that device does not read and write at once at the rate it reads
alone (on these virtual disks about 790 MiB/s each way against 1200-2000
MiB/s reading only). --dest-dir /dev/shm puts it on another device, as a
second host's disk would be, for both VMMs alike.

Run through `make bench-diskcopy`, or directly:
  bench/diskcopy/run.py [--runs N] [--vmhop PATH] [--qemu PATH] [--guest PATH]
                        [--dir DIR] [--dest-dir DIR] [--skip-qemu] [--skip-vmhop]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# Processes, QMP, the control socket, the guest's lines, the disk helpers and
# the steps every VM benchmark takes: bench/lib/vmbench.py (no __pycache__ left
# in the source tree).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "lib"))
import vmbench  # noqa: E402
from vmbench import (GIB, MIB, VERDICT_RE, RunFailed, Proc, Qmp,  # noqa: E402
                     allocated_bytes, control_request, data_extents, free_tcp_port,
                     o_direct_read, print_load_when, ratio, verdict, wait_exit)

QEMU_MAX_BANDWIDTH = 10 * GIB  # bytes/s
LISTEN_RE = re.compile(rb"migrate-recv: listening on tcp:[^\s:]+:(\d+)")
DISK_OK_RE = re.compile(rb"^DISK ok ", re.M)
PROGRESS_RE = re.compile(rb"^migrate: [^\n]*\n", re.M)
HB_TMS_RE = re.compile(rb"^HB seq=(\d+) tsc=\d+ t_ms=(\d+)\n", re.M)
DISK_ID = "d0"
POLL = 0.01  # s between query-block-jobs / query-migrate polls
COLUMNS = """columns:
  wall      migration request -> the destination runs the guest (the script's clock;
            QEMU: drive-mirror -> cont)
  total     vmhop: the summary's total_ms; QEMU: = wall
  down      vmhop: downtime_ms; QEMU: its downtime (guest stopped -> completed)
  pause     vmhop: = down; QEMU: its downtime + migration completed -> cont
  hb gap    the largest step of the guest's own clock between heartbeats across the
            move (one period, hb ms, when nothing stopped it)
  disk      vmhop: disk_bytes_sent; QEMU: the mirror job's length (holes included)
  bulk      vmhop: disk bytes / bulk time; QEMU: the image's data / drive-mirror -> ready
  dst       the destination image's allocated MiB"""


# ---------------------------------------------------------------- the image

def make_source_image(path, size, data):
    """size bytes, sparse, with `data` bytes of random data in four equal
    extents spread over it, the first at offset 0 (the guest's region)."""
    n = 4
    part = data // n
    starts = [0] + [((size * i // n) // MIB) * MIB for i in range(1, n)]
    starts[-1] = min(starts[-1], size - part)
    starts[-1] -= starts[-1] % MIB
    chunk = 4 * MIB
    with open(path, "wb") as f:
        f.truncate(size)
        for s in starts:
            f.seek(s)
            left = part
            while left:
                k = min(chunk, left)
                f.write(os.urandom(k))
                left -= k
        f.flush()
        os.fsync(f.fileno())
    return [(s, s + part) for s in starts]


def compare_images(src, dst, skip_below, size):
    """None if dst equals src from skip_below on (data and holes alike),
    else the first difference."""
    ext = []
    for s, e in sorted(data_extents(src) + data_extents(dst)):
        if ext and s <= ext[-1][1]:
            ext[-1] = (ext[-1][0], max(ext[-1][1], e))
        else:
            ext.append((s, e))
    block = 4 * MIB
    with open(src, "rb") as a, open(dst, "rb") as b:
        for s, e in ext:
            off = max(s, skip_below)
            while off < e:
                k = min(block, e - off)
                a.seek(off)
                b.seek(off)
                x, y = a.read(k), b.read(k)
                if x != y:
                    i = next(j for j in range(min(len(x), len(y))) if x[j] != y[j]) \
                        if len(x) == len(y) else min(len(x), len(y))
                    return "differs at byte %d (%d MiB)" % (off + i, (off + i) // MIB)
                off += k
    if os.path.getsize(dst) != size:
        return "size %d, the source's is %d" % (os.path.getsize(dst), size)
    return None


def check_destination_image(args, img, region_mib):
    """The destination's copy: the guest's region valid, the rest identical
    to the source; returns its allocated MiB."""
    p = subprocess.run([sys.executable, args.check_disk, img, "--mib", str(region_mib)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RunFailed("destination image: %s%s" % (p.stdout.strip(), p.stderr.strip()))
    why = compare_images(args.src_img, img, region_mib * MIB, args.disk_size)
    if why:
        raise RunFailed("destination image %s beyond the guest's region: %s" % (img, why))
    return allocated_bytes(img) / MIB


# ---------------------------------------------------------------- runs

def guest_params(args):
    return "disk=rw disk_mib=%d disk_loop=1 disk_rate=%s verify=1 hb=%d" % (
        args.region_mib, args.rate, args.hb)


def ready_to_migrate(src, args):
    """The guest's first pass over its region is done (DISK ok) plus a warm-up."""
    if not src.out.wait_for(DISK_OK_RE, args.boot_timeout + args.region_mib * 2):
        if src.p.poll() is not None:
            raise RunFailed("source exited with status %s before DISK ok" % src.p.returncode)
        v = VERDICT_RE.search(src.out.data)
        raise RunFailed("source: no DISK ok line%s" % (
            (": " + v.group(0).decode(errors="replace")) if v else " in time"))
    return vmbench.after_warm_up(src, args.warm, "source",
                                 "source guest ended before the migration")


def hb_gap(src, dst, seq0):
    """The largest step of the guest's own clock (t_ms, from its TSC) between
    consecutive heartbeats from seq0 on, across the move. The serial stream
    continues where the source left it (a line can start there and end on
    the destination), so the two outputs are read as one. On kvm-pvm the
    guest's TSC is the host's and runs on while the guest is paused: the
    step is the pause plus the part of the period already gone."""
    beats = [(int(m.group(1)), int(m.group(2)))
             for m in HB_TMS_RE.finditer(src.out.data + dst.out.data)]
    steps = [t2 - t1 for (s1, t1), (s2, t2) in zip(beats, beats[1:]) if s1 >= seq0 and s2 > s1]
    return float(max(steps)) if steps else float("nan")


def finish_on_destination(dst, seq0, request_shutdown, args):
    """Heartbeats continue past seq0, then a shutdown request ends the guest
    with a verdict that covers its disk (it re-reads its region first: a
    second per MiB on top of the usual wait)."""
    return vmbench.finish(dst, seq0, request_shutdown, "destination", args.exit_timeout,
                          verdict_timeout=args.exit_timeout + args.region_mib,
                          verdict_needs=b"disk=ok", continued=True)


def qemu_cmd(args, qmp, img, incoming):
    cmd = vmbench.qemu_cmd(args.qemu, "pc,accel=kvm,mem-merge=off", args.memory, 1, qmp,
                           args.guest, guest_params(args))
    cmd += ["-drive", "file=%s,if=none,id=%s,format=raw,cache=none" % (img, DISK_ID),
            "-device", "virtio-blk-pci,drive=%s,disable-legacy=on" % DISK_ID]
    if incoming:
        # -S: the guest may run only once the mirror has finished (libvirt's way).
        cmd += ["-incoming", "defer", "-S"]
    return cmd


def wait_jobs_gone(q, timeout):
    deadline = time.monotonic() + timeout
    while q.cmd("query-block-jobs"):
        if time.monotonic() > deadline:
            raise RunFailed("the mirror job did not end within %g s of block-job-cancel" % timeout)
        time.sleep(POLL)


def run_qemu(args, tmp, procs):
    """One QEMU migration with drive-mirror; returns the result dict."""
    src_qmp, dst_qmp = os.path.join(tmp, "src.qmp"), os.path.join(tmp, "dst.qmp")
    dst_img = os.path.join(dest_dir(args, tmp), "dst.img")
    with open(dst_img, "wb") as f:
        f.truncate(args.disk_size)
    src = Proc(procs, "qemu-src", qemu_cmd(args, src_qmp, args.src_img, False))
    dst = Proc(procs, "qemu-dst", qemu_cmd(args, dst_qmp, dst_img, True))
    qs = qd = None
    try:
        qd = Qmp(dst_qmp)
        mig_port = vmbench.incoming_port(qd)
        nbd_port = free_tcp_port()
        qd.cmd("nbd-server-start", addr={"type": "inet", "data": {
            "host": "127.0.0.1", "port": str(nbd_port)}})
        qd.cmd("nbd-server-add", device=DISK_ID, writable=True)
        qs = Qmp(src_qmp)
        seq0 = ready_to_migrate(src, args)
        qs.cmd("migrate-set-parameters", **{"max-bandwidth": QEMU_MAX_BANDWIDTH,
                                           "downtime-limit": args.max_downtime})
        # Stop before the switchover so the mirror can finish while the guest
        # is paused and the source's disks are still active: without it the
        # source inactivates its block nodes under a running mirror (QEMU 7.2
        # then aborts in bdrv_co_write_req_prepare). libvirt does the same.
        qs.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "pause-before-switchover", "state": True}])
        t0 = time.monotonic()
        qs.cmd("drive-mirror", device=DISK_ID, **{
            "job-id": "mirror-" + DISK_ID,
            "target": "nbd://127.0.0.1:%d/%s" % (nbd_port, DISK_ID),
            "format": "raw", "sync": "full", "mode": "existing"})
        while True:
            jobs = qs.cmd("query-block-jobs")
            if not jobs:
                raise RunFailed("the mirror job ended before it was ready")
            j = jobs[0]
            if j.get("ready"):
                break
            if time.monotonic() - t0 > args.migrate_timeout:
                raise RunFailed("the mirror was not ready within %g s (%d of %d bytes)"
                                % (args.migrate_timeout, j.get("offset", 0), j.get("len", 0)))
            time.sleep(POLL)
        t_ready = time.monotonic()
        mirror_len = int(j.get("len", 0))
        qs.cmd("migrate", uri="tcp:127.0.0.1:%d" % mig_port)
        vmbench.wait_migration(qs, "pre-switchover", t0, args.migrate_timeout, POLL)
        # The guest is stopped: cancelling a ready mirror copies what is still
        # dirty, then ends the job and leaves the source disk in use.
        t_pre = time.monotonic()
        qs.cmd("block-job-cancel", device="mirror-" + DISK_ID)
        wait_jobs_gone(qs, args.migrate_timeout)
        t_cancelled = time.monotonic()
        qs.cmd("migrate-continue", state="pre-switchover")
        info = vmbench.wait_migration(qs, "completed", t0, args.migrate_timeout, POLL)
        t_done = time.monotonic()
        qd.cmd("nbd-server-stop")
        qd.cmd("cont")
        t_cont = time.monotonic()
        wall = (t_cont - t0) * 1000.0
        ram = info.get("ram", {})
        res = {
            "wall_ms": wall,
            "total_ms": wall,  # no single QEMU number spans mirror and migrate
            "downtime_ms": float(info["downtime"]),
            "pause_ms": float(info["downtime"]) + (t_cont - t_done) * 1000.0,
            "disk_mib": mirror_len / MIB,
            "bulk_mib_s": args.src_alloc / MIB / (t_ready - t0),
            "extra": "mirror ready %.0f ms, migrate %.0f ms (QEMU total-time %.0f; job cancel "
                     "%.0f ms in it), stop nbd+cont %.0f ms, ram %.1f MiB" % (
                         (t_ready - t0) * 1000.0, (t_done - t_ready) * 1000.0,
                         float(info.get("total-time", 0)), (t_cancelled - t_pre) * 1000.0,
                         (t_cont - t_done) * 1000.0, int(ram.get("transferred", 0)) / MIB),
        }
        # The source stays paused for good (postmigrate): end it.
        vmbench.quit_qemu(qs, src, "source QEMU")
        qs = None
        res["first_hb"] = finish_on_destination(
            dst, seq0, lambda: qd.cmd("system_powerdown"), args)
        res["hb_gap_ms"] = hb_gap(src, dst, seq0)
        res["seq0"] = seq0
        res["dst_alloc_mib"] = check_destination_image(args, dst_img, args.region_mib)
        return res
    except Exception as e:
        e.procs = [src, dst]
        raise
    finally:
        vmbench.close_all((qs, qd), (src, dst))


def bulk_ms_of(r):
    """The bulk pass's duration from the summary, if it reports one."""
    for k in ("disk_bulk_ms", "bulk_ms"):
        if r.get(k):
            return float(r[k]), k
    for d in r.get("disks") or []:
        for k in ("bulk_ms", "disk_bulk_ms"):
            if d.get(k):
                return float(d[k]), "disks[]." + k
    return None, None


def dest_dir(args, tmp):
    """Where this run's destination image goes: tmp (the source's device), or
    a directory of its own under --dest-dir (another device, as the
    destination host's disk would be), removed with tmp."""
    if not args.dest_dir:
        return tmp
    d = tempfile.mkdtemp(prefix="bench-diskcopy-dst-", dir=args.dest_dir)
    os.symlink(d, os.path.join(tmp, "dest-dir"))
    return d


def run_vmhop(args, tmp, procs):
    """One vmhop migration with --copy-disk; returns the result dict."""
    src_ctl, dst_ctl = os.path.join(tmp, "src.sock"), os.path.join(tmp, "dst.sock")
    disk_dir = os.path.join(dest_dir(args, tmp), "disks")
    os.mkdir(disk_dir)
    dst = Proc(procs, "vmhop-dst", [args.vmhop, "migrate-recv", "--listen", "tcp:127.0.0.1:0",
                                     "--disk-dir", disk_dir, "--serial", "stdio",
                                     "--control", dst_ctl])
    src = Proc(procs, "vmhop-src", vmbench.vmhop_run_cmd(
        args.vmhop, args.guest, args.memory, 1, src_ctl, guest_params(args),
        ["--disk", "%s,id=%s,cache=none" % (args.src_img, DISK_ID)]))
    send = None
    try:
        port = vmbench.listen_port(dst, LISTEN_RE)
        seq0 = ready_to_migrate(src, args)
        cmd = [args.vmhop, "migrate-send", "--control", src_ctl,
               "--to", "tcp:127.0.0.1:%d" % port, "--max-downtime", str(args.max_downtime),
               "--copy-disk", DISK_ID, "--json"]
        if args.verify_disks:
            cmd.append("--verify-disks")
        t0 = time.monotonic()
        send = Proc(procs, "migrate-send", cmd)
        rc, wall, r, line = vmbench.json_result(send, t0, args.migrate_timeout, "migrate-send")
        if r is None:
            raise RunFailed("migrate-send (status %d) printed no JSON summary%s" % (
                rc, ": " + send.err.data.decode(errors="replace").strip()[-300:]))
        if r.get("status") != "completed" or rc != 0:
            raise RunFailed("migrate-send status %d: %s: %s" % (
                rc, r.get("status"), r.get("error", "")))
        if "disk_bytes_sent" not in r:
            raise RunFailed("the summary has no disk_bytes_sent: %s" % line[:300])
        disk_bytes = int(r["disk_bytes_sent"])
        bulk_ms, bulk_key = bulk_ms_of(r)
        disks = r.get("disks") or [{}]
        d0 = next((d for d in disks if d.get("id") == DISK_ID), disks[0])
        res = {
            "wall_ms": wall,
            "total_ms": float(r["total_ms"]),
            "downtime_ms": float(r["downtime_ms"]),
            "pause_ms": float(r["downtime_ms"]),
            "disk_mib": disk_bytes / MIB,
            "bulk_mib_s": disk_bytes / MIB / ((bulk_ms or float(r["total_ms"])) / 1000.0),
            "bulk_from": bulk_key or "total_ms",
            "extra": "mode=%s rounds=%s resent=%s ram %.1f MiB%s" % (
                d0.get("mode"), d0.get("rounds"), d0.get("blocks_resent"),
                (int(r.get("bytes_sent", 0)) - disk_bytes) / MIB,
                "" if bulk_ms is None else ", bulk %.0f ms" % bulk_ms),
        }
        if args.progress:
            res["progress"] = ["%7.1f ms  %s" % ((send.err.arrival(m) - t0) * 1000.0,
                                                 m.group(0).decode(errors="replace").strip())
                               for m in PROGRESS_RE.finditer(send.err.data)]
        rc = wait_exit(src, 30, "source vmhop")
        if rc != 0:
            raise RunFailed("source vmhop exited with status %d after the move" % rc)
        res["first_hb"] = finish_on_destination(
            dst, seq0, lambda: control_request(dst_ctl, "shutdown"), args)
        res["hb_gap_ms"] = hb_gap(src, dst, seq0)
        res["seq0"] = seq0
        res["dst_alloc_mib"] = check_destination_image(
            args, os.path.join(disk_dir, DISK_ID + ".img"), args.region_mib)
        return res
    except Exception as e:
        e.procs = [p for p in (src, send, dst) if p]
        raise
    finally:
        vmbench.close_all((), (send, src, dst))


# ---------------------------------------------------------------- report

HEADER = "  %-8s %9s %9s %9s %9s %8s %9s %9s %9s" % (
    "run", "wall ms", "total ms", "down ms", "pause ms", "hb gap", "disk MiB", "bulk MiB/s",
    "dst MiB")


def fmt_row(label, r):
    return "  %-8s %9.1f %9.1f %9.1f %9.1f %8.1f %9.1f %10.1f %9.1f  hb %d->%d  %s" % (
        label, r["wall_ms"], r["total_ms"], r["downtime_ms"], r["pause_ms"], r["hb_gap_ms"],
        r["disk_mib"], r["bulk_mib_s"], r["dst_alloc_mib"], r["seq0"], r["first_hb"], r["extra"])


KEYS = ("wall_ms", "total_ms", "downtime_ms", "pause_ms", "hb_gap_ms", "disk_mib",
        "bulk_mib_s", "dst_alloc_mib")


def remove_dest_dir(tmp):
    """The run's directory under --dest-dir, if dest_dir made one."""
    link = os.path.join(tmp, "dest-dir")
    if os.path.islink(link):
        shutil.rmtree(os.readlink(link), ignore_errors=True)


def one_run(name, fn, args, procs, i):
    """Run i of one VMM: its result dict, or None after printing why it failed
    (with the file and line of an error other than RunFailed)."""
    label = "%s %d" % (name, i + 1)

    def run(tmp):
        r = fn(args, tmp, procs)
        print(fmt_row(label, r), flush=True)
        for line in r.get("progress", []):
            print("          %s" % line, flush=True)
        return r
    return vmbench.attempt("  %s:" % label, run, "bench-diskcopy-", args.dir, where=True,
                           cleanup=remove_dest_dir)


def medians(name, results):
    if not results:
        return None
    med = vmbench.medians(results, KEYS)
    med["bulk_from"] = results[-1].get("bulk_from")
    print(("  %-8s %9.1f %9.1f %9.1f %9.1f %8.1f %9.1f %10.1f %9.1f" % (
        (name,) + tuple(med[k] for k in KEYS))), flush=True)
    return med


def alternate(vmms, args, procs):
    """Run i of every VMM, then run i + 1: load that comes and goes on a
    shared machine then hits both alike. A VMM whose run fails stops there.
    Returns ({name: medians or None}, failed?)."""
    print(HEADER, flush=True)
    results = {name: [] for name, _ in vmms}
    live = list(vmms)
    failed = False
    for i in range(args.runs):
        for name, fn in list(live):
            r = one_run(name, fn, args, procs, i)
            if r is None:
                failed = True
                live.remove((name, fn))
                results[name] = None
            else:
                results[name].append(r)
    print("  median:", flush=True)
    return {name: medians(name, results[name]) for name, _ in vmms}, failed


def summary(args, v, q, qnote, rates):
    odirect = statistics.median(rates) if rates else 0.0
    vmbench.print_medians("  ", [(title, "%10.1f", lambda m, k=k: m[k]) for title, k in (
        ("wall ms", "wall_ms"), ("total ms", "total_ms"), ("down ms", "downtime_ms"),
        ("hb gap ms", "hb_gap_ms"), ("disk MiB", "disk_mib"), ("bulk MiB/s", "bulk_mib_s"))],
        v, q, qnote)
    print("  O_DIRECT sequential read of the source image: %.1f MiB/s (median of %d reads, "
          "%.1f-%.1f)" % (odirect, len(rates), min(rates or [0]), max(rates or [0])))
    if v and q:
        rt = ratio(v["wall_ms"], q["wall_ms"])
        rd = ratio(v["downtime_ms"], q["downtime_ms"])
        rg = ratio(v["hb_gap_ms"], q["hb_gap_ms"])
        print("  ratio vmhop/qemu: total (wall) %.3f, downtime %.3f, hb gap %.3f" % (rt, rd, rg))
        print("  target total <= 0.5x qemu: %s" % verdict(rt <= 0.5))
    else:
        print("  target total <= 0.5x qemu: not computed (needs both)")
    if v and odirect:
        frac = v["bulk_mib_s"] / odirect
        print("  vmhop bulk throughput / O_DIRECT read: %.3f (bulk time from the summary's %s)"
              % (frac, v.get("bulk_from")))
        print("  target bulk >= 0.8x O_DIRECT read: %s" % verdict(frac >= 0.8))
    else:
        print("  target bulk >= 0.8x O_DIRECT read: not computed")


def odirect_reference(args, when, rates):
    """args.odirect_runs O_DIRECT reads of the image, added to rates."""
    got = []
    for _ in range(args.odirect_runs):
        n, secs = o_direct_read(args.src_img)
        got.append(n / MIB / secs if secs > 0 else float("inf"))
    rates += got
    print("O_DIRECT read of the source image's %d MiB of data, 1 MiB requests, %s: %s MiB/s"
          % (n // MIB, when, ", ".join("%.1f" % r for r in got)), flush=True)


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMG]?)", s.upper())
    if not m:
        raise argparse.ArgumentTypeError("size like 256M or 1G expected: %s" % s)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def main():
    srcdir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, metavar="N",
                   help="migrations per VMM (default 3)")
    vmbench.add_binary_args(p)
    p.add_argument("--dir", metavar="DIR", default=None,
                   help="where the images go, on a filesystem with O_DIRECT (default: "
                   "$TMPDIR or /tmp); everything is deleted at the end")
    p.add_argument("--dest-dir", metavar="DIR", default=None,
                   help="the destination's image on another filesystem, e.g. /dev/shm, as "
                   "on a second host whose disk is not the source's (default: beside the "
                   "source image, so that the copy's writes share the device its reads "
                   "and the O_DIRECT reference use)")
    p.add_argument("--disk-size", type=parse_size, default=GIB, metavar="SIZE",
                   help="the disk image's size (default 1G)")
    p.add_argument("--data", type=parse_size, default=256 * MIB, metavar="SIZE",
                   help="data in it, in four extents (default 256M)")
    p.add_argument("--region-mib", type=int, default=64, metavar="N",
                   help="the guest's region at the start of the disk (disk_mib; default 64)")
    p.add_argument("--rate", default="10M", metavar="SIZE",
                   help="bytes per second the guest writes (disk_rate; default 10M)")
    p.add_argument("--memory", default="512M", help="guest RAM (default 512M)")
    p.add_argument("--hb", type=int, default=50, metavar="MS",
                   help="the guest's heartbeat period (default 50)")
    p.add_argument("--warm", type=float, default=1.0, metavar="S",
                   help="seconds of rewriting after the first pass, before the move (default 1)")
    p.add_argument("--max-downtime", type=int, default=300, metavar="MS",
                   help="downtime limit in ms, for both VMMs (default 300)")
    p.add_argument("--progress", action="store_true",
                   help="vmhop: print migrate-send's progress lines with their time")
    p.add_argument("--verify-disks", action="store_true",
                   help="vmhop: also --verify-disks (SHA-256 on both sides)")
    p.add_argument("--odirect-runs", type=int, default=3, metavar="N",
                   help="O_DIRECT reads of the image for the reference, before and again "
                   "after the runs; the median of all counts (default 3)")
    vmbench.add_skip_args(p)
    p.add_argument("--boot-timeout", type=float, default=60.0, metavar="S",
                   help="seconds to the guest's first pass over its region, beyond "
                   "2 s per MiB of it (default 60)")
    p.add_argument("--migrate-timeout", type=float, default=300.0, metavar="S",
                   help="seconds for one migration (default 300)")
    p.add_argument("--exit-timeout", type=float, default=60.0, metavar="S",
                   help="seconds for the destination's heartbeat, verdict and exit (default 60)")
    args = p.parse_args()
    if args.runs < 1 or args.odirect_runs < 1:
        p.error("--runs and --odirect-runs must be at least 1")
    if (args.data % (4 * MIB) or args.data > args.disk_size
            or args.region_mib * MIB > args.data // 4):
        p.error("--data must be a multiple of 4 MiB, fit the disk, and its first quarter "
                "must hold the guest's region")
    run_qemu_too = vmbench.check_binaries(args, "bench-diskcopy")
    args.check_disk = os.path.join(srcdir, "tests", "guest", "check-disk.py")

    procs = []
    meds = {}
    rates = []
    qnote = None if run_qemu_too or args.skip_qemu else "SKIP: %s not found" % args.qemu
    work = tempfile.mkdtemp(prefix="bench-diskcopy-", dir=args.dir)
    args.dir = work

    def measure():
        """The image, the reference reads and the runs; whether a run failed,
        or None when the image cannot be opened with O_DIRECT (said so:
        nothing is measured and the script ends with status 1)."""
        args.src_img = os.path.join(work, "src.img")
        print("live migration with a disk copy over loopback TCP: %s, %s RAM, 1 vCPU, %d runs "
              "each, images in %s" % (os.path.basename(args.guest), args.memory, args.runs, work),
              flush=True)
        extents = make_source_image(args.src_img, args.disk_size, args.data)
        try:
            os.close(os.open(args.src_img, os.O_RDONLY | os.O_DIRECT))
        except OSError as e:
            print("bench-diskcopy: %s cannot be opened with O_DIRECT (%s): cache=none needs "
                  "a --dir on a filesystem with O_DIRECT" % (args.src_img, e.strerror), flush=True)
            return None
        args.src_alloc = allocated_bytes(args.src_img)
        print("disk: %d MiB raw image, %d MiB of data at %s MiB (allocated %.1f MiB), cache=none"
              % (args.disk_size // MIB, args.data // MIB,
                 ", ".join("%d" % (s // MIB) for s, _ in extents),
                 args.src_alloc / MIB), flush=True)
        print("guest: %s" % guest_params(args), flush=True)
        print("destination images: %s" % (
            "in %s (another device than the source's)" % args.dest_dir if args.dest_dir
            else "beside the source image (one device for the copy's reads and writes)"),
            flush=True)
        print(COLUMNS, flush=True)
        print_load_when("before the runs")
        odirect_reference(args, "before the runs", rates)
        vmms = ([] if args.skip_vmhop else [("vmhop", run_vmhop)]) + \
            ([("qemu", run_qemu)] if run_qemu_too else [])
        got, failed = alternate(vmms, args, procs)
        meds.update(got)
        odirect_reference(args, "after the runs", rates)
        return failed

    # SIGTERM ends the script like Ctrl-C; every process is stopped either way.
    try:
        failed, interrupted = vmbench.run_then_stop(procs, measure)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failed is None and not interrupted:
        return 1  # no O_DIRECT: said so, nothing measured
    print("\nresult (medians of %d runs):" % args.runs)
    summary(args, meds.get("vmhop"), meds.get("qemu"), qnote, rates)
    print_load_when("after the runs")
    return 1 if failed or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
