#!/usr/bin/env python3
"""Migration transports: vmhop over tcp:, tls: and parallel channels beside QEMU's TLS and multifd.

The idle and dirty scenarios of bench/migrate (tests/guest/guest.elf, 1 GiB,
2 vCPUs; idle: heartbeats only; dirty: dirty=256M rate=200M verify=1 after a
3 s warm-up) and a bulk one (the same VM after writing 512 MiB once with
dirty=512M passes=1, then only keeping it: one pass of real pages, nothing
redirtied) are live-migrated over loopback with each of these transports:

  vmhop tcp, tls                 migrate-send --to tcp:|tls:127.0.0.1:PORT
  vmhop tcp x2, x4, tls x2, x4   the same with --channels 2 or 4
  qemu tcp, tls                  migrate tcp:127.0.0.1:PORT, with tls-creds
  qemu tcp/tls multifd 2, 4      the multifd capability and multifd-channels
                                 on both sides

TLS is mutual on both VMMs, with the certificates of contrib/make-test-ca.sh
(made in a scratch directory, or --pki DIR): vmhop's destination gets
dest.pem/dest.key and --tls-allow vmhop-src, its source src.pem/src.key and
--tls-name localhost; QEMU gets the same files renamed as tls-creds-x509
wants them (ca-cert.pem, server-*.pem, client-*.pem) with verify-peer=on,
tls-hostname=localhost, and on the destination an authz-simple for the
source's subject as tls-authz (QEMU's --tls-allow).

Each run is bench/migrate's own (its run_vmhop and run_qemu, imported: the
same boot, warm-up, downtime limit, max-bandwidth and checks that the guest
beats on at the destination and ends with VERDICT PASS); this script only
changes the transport of the commands they send. The runs go round-robin
over the transports (run 1 of each, then run 2, ...) so that a change of
the machine's load hits all of them alike; the 1-minute load average is
printed with every run.

Throughput, the same for both VMMs, from each one's own numbers:
  bytes moved / (total time - setup time)
vmhop: the --json summary's bytes_sent (all channels), total_ms, setup_ms
(setup: connections, TLS handshakes, the hello and dirty logging on);
QEMU: query-migrate's ram.transferred, total-time and setup-time (QEMU
counts its connection and TLS handshake in total-time, not in setup-time).
The idle guest moves little (vmhop skips never-touched memory, QEMU sends
zero-page markers: 0.2 and 2.8 MiB), so its throughput is fixed cost and
says nothing about the transport; in dirty, the rounds depend on how the
guest's 200 MiB/s race the copy (a transport slower than that redoes the
working set until the downtime limit is met); bulk is the plain transfer.

Targets of issue 8 (printed, not asserted), on the medians:
  vmhop tls throughput >= 0.8x vmhop tcp's
  vmhop tls throughput >= 1.5x QEMU tls's
The exit status is 1 only when a run fails, or 1 with one line when QEMU,
the certificates or the binaries are missing.

Run through `make bench-transport`, or directly:
  bench/transport/run.py [--runs N] [--scenario idle|dirty|bulk|all]
                         [--configs NAME,...] [--pki DIR] [--skip-qemu]
                         [--vmhop PATH] [--qemu PATH] [--guest PATH]
"""
import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "lib"))
import vmbench  # noqa: E402
from vmbench import MIB, RunFailed, print_load_when, verdict  # noqa: E402


def load_migrate_bench():
    """bench/migrate/run.py as a module: its scenarios and its runs are the
    ones measured here, so the two benchmarks cannot drift apart."""
    spec = importlib.util.spec_from_file_location(
        "bench_migrate", os.path.join(HERE, os.pardir, "migrate", "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mig = load_migrate_bench()
# migrate-recv names the listener by its scheme: accept tls: too.
mig.LISTEN_RE = re.compile(rb"migrate-recv: listening on (?:tcp|tls):[^\s:]+:(\d+)")

# Beyond bench/migrate's scenarios: memory that is written once and then only
# kept, so the move is one pass of real pages with nothing to redo and the
# transport alone sets the pace (idle moves almost nothing, dirty's rounds
# depend on how the guest's writes race the copy). Same guest settings as
# bench/migrate's sparse scenario in a 1 GiB VM.
BULK = mig.Scenario("bulk", "1G", 2, "dirty=512M passes=1 verify=1", 4.0,
                    "512 MiB written once, then kept, 1 GiB, 2 vCPUs")

PKI_FILES = ("ca.pem", "dest.pem", "dest.key", "src.pem", "src.key")
# QEMU's tls-creds-x509 reads fixed names from its dir.
QEMU_PKI_NAMES = {"ca-cert.pem": "ca.pem", "server-cert.pem": "dest.pem",
                  "server-key.pem": "dest.key", "client-cert.pem": "src.pem",
                  "client-key.pem": "src.key"}
# src.pem's subject as QEMU's authz-simple compares it (GnuTLS's DN string).
QEMU_SRC_IDENTITY = "O=vmhop test,CN=vmhop-src"


class Transport:
    def __init__(self, vmm, tls, channels):
        self.vmm, self.tls, self.channels = vmm, tls, channels
        scheme = "tls" if tls else "tcp"
        if vmm == "vmhop":
            self.name = "vmhop-%s%s" % (scheme, "-x%d" % channels if channels > 1 else "")
        else:
            self.name = "qemu-%s%s" % (scheme, "-multifd%d" % channels if channels > 1 else "")
        self.label = self.name.replace("-", " ")


def all_transports(channel_counts):
    out = []
    for vmm in ("vmhop", "qemu"):
        for tls in (False, True):
            for n in [1] + channel_counts:
                out.append(Transport(vmm, tls, n))
    return out


# ---------------------------------------------------------------- the seams
# bench/migrate's run_vmhop and run_qemu build their commands with the
# module's Proc, Qmp and qemu_cmd; these wrappers change only the transport.

class Hooks:
    """What the current run's transport adds; set before each run."""
    tr = None
    pki = None       # make-test-ca.sh output
    qemu_pki = None  # the same files under QEMU's names
    summary = None   # the last migrate-send's --json line


def replace_after(cmd, opt, fn):
    if opt not in cmd:
        raise RunFailed("bench/migrate/run.py no longer passes %s: update bench/transport" % opt)
    i = cmd.index(opt) + 1
    cmd[i] = fn(cmd[i])


def to_tls(uri):
    if not uri.startswith("tcp:"):
        raise RunFailed("unexpected URI %s from bench/migrate/run.py" % uri)
    return "tls:" + uri[4:]


def vmhop_transport_cmd(cmd):
    tr, f = Hooks.tr, lambda n: os.path.join(Hooks.pki, n)
    cmd = list(cmd)
    verb = cmd[1] if len(cmd) > 1 else ""
    if verb == "migrate-recv" and tr.tls:
        replace_after(cmd, "--listen", to_tls)
        cmd += ["--tls-ca", f("ca.pem"), "--tls-cert", f("dest.pem"), "--tls-key", f("dest.key"),
                "--tls-allow", "vmhop-src"]
    elif verb == "migrate-send":
        if tr.tls:
            replace_after(cmd, "--to", to_tls)
            cmd += ["--tls-ca", f("ca.pem"), "--tls-cert", f("src.pem"), "--tls-key", f("src.key"),
                    "--tls-name", "localhost"]
        if tr.channels > 1:
            cmd += ["--channels", str(tr.channels)]
    return cmd


def transport_proc(registry, name, cmd):
    p = vmbench.Proc(registry, name, vmhop_transport_cmd(cmd))
    if name == "migrate-send":
        Hooks.summary = p
    return p


def qemu_transport_cmd(args, sc, qmp, incoming):
    cmd = ORIG_QEMU_CMD(args, sc, qmp, incoming)
    if Hooks.tr.tls:
        cmd += ["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=%s,verify-peer=on"
                % (Hooks.qemu_pki, "server" if incoming else "client")]
        if incoming:
            cmd += ["-object", "authz-simple,id=auth0,identity=%s"
                    % QEMU_SRC_IDENTITY.replace(",", ",,")]
    return cmd


class TransportQmp(vmbench.Qmp):
    """run_qemu's QMP: the destination is set up just before
    migrate-incoming, the source along with its migrate-set-parameters."""

    def cmd(self, name, **kw):
        tr = Hooks.tr
        if name in ("migrate-incoming", "migrate-set-parameters"):
            if tr.channels > 1:
                super().cmd("migrate-set-capabilities",
                            capabilities=[{"capability": "multifd", "state": True}])
                kw["multifd-channels"] = tr.channels
            if tr.tls:
                kw["tls-creds"] = "tls0"
                if name == "migrate-incoming":
                    kw["tls-authz"] = "auth0"
                else:
                    kw["tls-hostname"] = "localhost"
            if name == "migrate-incoming":
                if kw.keys() - {"uri"}:
                    super().cmd("migrate-set-parameters",
                                **{k: v for k, v in kw.items() if k != "uri"})
                kw = {"uri": kw["uri"]}
        return super().cmd(name, **kw)


ORIG_QEMU_CMD = mig.qemu_cmd
mig.Proc = transport_proc
mig.Qmp = TransportQmp
mig.qemu_cmd = qemu_transport_cmd


# ---------------------------------------------------------------- runs

def throughput(r):
    """MiB/s: bytes moved over the time memory was moving (total - setup)."""
    ms = r["total_ms"] - r["setup_ms"]
    return r["bytes_sent"] / MIB / (ms / 1000.0) if ms > 0 else float("nan")


def one_run(args, sc, tr, procs):
    Hooks.tr, Hooks.summary = tr, None
    tmp = tempfile.mkdtemp(prefix="bench-transport-")
    try:
        fn = mig.run_vmhop if tr.vmm == "vmhop" else mig.run_qemu
        r = fn(args, sc, tmp, procs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r["mib_s"] = throughput(r)
    r["load"] = os.getloadavg()[0]
    r["split"] = ""
    if Hooks.summary is not None:
        # run_vmhop keeps only totals: the per-channel bytes come from the
        # same --json line it parsed.
        try:
            ch = json.loads(Hooks.summary.out.data.decode(errors="replace")
                            .strip().splitlines()[-1]).get("channels") or []
        except (ValueError, IndexError, AttributeError):
            ch = []
        if len(ch) > 1:
            r["split"] = "channels MiB " + "/".join(
                "%.0f" % (c.get("bytes_sent", 0) / MIB) for c in ch)
    return r


COLS = "  %-22s %9s %8s %8s %9s %8s %8s %5s" % (
    "", "total ms", "down ms", "setup ms", "sent MiB", "MiB/s", "wall ms", "load")


def fmt(label, r):
    return "  %-22s %9.1f %8.1f %8.1f %9.1f %8.1f %8.1f %5.2f  hb %d->%d %s" % (
        label, r["total_ms"], r["downtime_ms"], r["setup_ms"], r["bytes_sent"] / MIB,
        r["mib_s"], r["wall_ms"], r["load"], r["seq0"], r["first_hb"], r["split"])


def run_scenario(args, sc, transports, procs):
    """Round-robin runs; returns ({name: medians}, failed?). A failed run
    leaves the transport's other runs in: QEMU over one TLS connection may
    not converge in dirty within --migrate-timeout on a busy machine, and
    its completed runs still count (the table says how many)."""
    results = {t.name: [] for t in transports}
    fails = {t.name: 0 for t in transports}
    for i in range(args.runs):
        print("run %d:" % (i + 1), flush=True)
        print(COLS, flush=True)
        for tr in transports:
            try:
                r = one_run(args, sc, tr, procs)
            except vmbench.RUN_ERRORS as e:
                vmbench.print_failed("  %-22s" % tr.label, e)
                fails[tr.name] += 1
                continue
            r["round"] = i
            results[tr.name].append(r)
            print(fmt(tr.label, r), flush=True)
    meds = {}
    for tr in transports:
        rs = results[tr.name]
        if rs:
            meds[tr.name] = vmbench.medians(rs, ("total_ms", "downtime_ms", "setup_ms",
                                                 "bytes_sent", "mib_s", "wall_ms"))
            meds[tr.name]["by_round"] = {r["round"]: r["mib_s"] for r in rs}
            meds[tr.name]["note"] = ("  (%d of %d runs; %d failed)" % (
                len(rs), args.runs, fails[tr.name]) if fails[tr.name] else "")
    return meds, any(fails.values())


def ratio(meds, a, b):
    """(median a / median b, median of a/b within each round) or None. The
    second pairs runs made seconds apart, under about the same load."""
    if a not in meds or b not in meds or not meds[b]["mib_s"] > 0:
        return None
    ra, rb = meds[a]["by_round"], meds[b]["by_round"]
    paired = [ra[i] / rb[i] for i in ra if i in rb and rb[i] > 0]
    return (meds[a]["mib_s"] / meds[b]["mib_s"],
            statistics.median(paired) if paired else float("nan"))


def report(sc, transports, meds, channel_counts):
    print("\n  %s (%s): medians" % (sc.name, sc.what))
    print("  %-22s %9s %8s %8s %9s %8s %8s" % ("", "total ms", "down ms", "setup ms",
                                              "sent MiB", "MiB/s", "wall ms"))
    for tr in transports:
        m = meds.get(tr.name)
        if m:
            print("  %-22s %9.1f %8.1f %8.1f %9.1f %8.1f %8.1f%s" % (
                tr.label, m["total_ms"], m["downtime_ms"], m["setup_ms"],
                m["bytes_sent"] / MIB, m["mib_s"], m["wall_ms"], m["note"]))
        else:
            print("  %-22s %9s  (no run completed)" % (tr.label, "-"))
    print("  throughput ratios (of the medians; median of the ratios within a round):")
    pairs = [("vmhop-tls", "vmhop-tcp", "vmhop tls / vmhop tcp")]
    pairs += [("vmhop-tls-x%d" % n, "vmhop-tcp-x%d" % n, "vmhop tls x%d / vmhop tcp x%d" % (n, n))
              for n in channel_counts]
    pairs += [("vmhop-tcp-x%d" % n, "vmhop-tcp", "vmhop tcp x%d / vmhop tcp" % n)
              for n in channel_counts]
    pairs += [("vmhop-tcp", "qemu-tcp", "vmhop tcp / qemu tcp"),
              ("vmhop-tls", "qemu-tls", "vmhop tls / qemu tls")]
    pairs += [("vmhop-tls-x%d" % n, "qemu-tls-multifd%d" % n,
               "vmhop tls x%d / qemu tls multifd %d" % (n, n)) for n in channel_counts]
    pairs += [("vmhop-tcp-x%d" % n, "qemu-tcp-multifd%d" % n,
               "vmhop tcp x%d / qemu tcp multifd %d" % (n, n)) for n in channel_counts]
    for a, b, what in pairs:
        r = ratio(meds, a, b)
        if r is not None:
            print("    %-36s %6.2f  (%.2f)" % (what, r[0], r[1]))
    if sc.name == "idle":
        print("  (idle: each VMM moves under 4 MiB, so these rates are fixed costs, "
              "not transport\n   throughput; dirty and bulk measure that)")
    for a, b, want, what in (("vmhop-tls", "vmhop-tcp", 0.8, "vmhop tls >= 0.8x vmhop tcp"),
                             ("vmhop-tls", "qemu-tls", 1.5, "vmhop tls >= 1.5x qemu tls")):
        r = ratio(meds, a, b)
        print("  target %s: %s" % (what, "not computed (needs both)" if r is None else
                                   "%s (%.2fx; within rounds %.2fx)"
                                   % (verdict(r[0] >= want), r[0], r[1])))


# ---------------------------------------------------------------- setup

def die(msg):
    print("bench-transport: %s" % msg, file=sys.stderr)
    sys.exit(1)


def prepare_pki(args, scratch):
    """Directory with make-test-ca.sh's files, and one with QEMU's names."""
    pki = args.pki
    if pki is None:
        script = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir, "contrib",
                                               "make-test-ca.sh"))
        pki = os.path.join(scratch, "pki")
        try:
            p = subprocess.run(["sh", script, pki], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            die("cannot make the test certificates: %s" % e)
        if p.returncode != 0:
            last = (p.stderr.strip().splitlines() or ["exit status %d" % p.returncode])[-1]
            die("contrib/make-test-ca.sh failed: %s" % last)
    missing = [n for n in PKI_FILES if not os.path.isfile(os.path.join(pki, n))]
    if missing:
        die("certificates missing in %s: %s (make them with contrib/make-test-ca.sh %s)"
            % (pki, " ".join(missing), pki))
    qdir = os.path.join(scratch, "qemu-pki")
    os.makedirs(qdir, mode=0o700, exist_ok=True)
    for qname, name in QEMU_PKI_NAMES.items():
        dst = os.path.join(qdir, qname)
        shutil.copyfile(os.path.join(pki, name), dst)
        os.chmod(dst, 0o600 if qname.endswith("key.pem") else 0o644)
    return pki, qdir


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, metavar="N",
                   help="migrations per transport and scenario (default 3)")
    p.add_argument("--scenario", choices=["idle", "dirty", "bulk", "all"], default="all",
                   help="bench/migrate's idle or dirty scenario, or bulk (default all)")
    p.add_argument("--channels", default="2,4", metavar="N,...",
                   help="channel counts beside 1: vmhop --channels, QEMU multifd-channels "
                   "(default 2,4)")
    p.add_argument("--configs", metavar="NAME,...",
                   help="only these transports, e.g. vmhop-tcp,vmhop-tls,qemu-tls "
                   "(names: vmhop|qemu-tcp|tls[-xN|-multifdN]; default all)")
    p.add_argument("--skip-qemu", action="store_true", help="measure vmhop only")
    p.add_argument("--pki", metavar="DIR",
                   help="contrib/make-test-ca.sh's output to use (default: made afresh in a "
                   "scratch directory)")
    vmbench.add_binary_args(p)
    p.add_argument("--max-downtime", type=int, default=300, metavar="MS",
                   help="downtime limit in ms, for both VMMs (default 300)")
    p.add_argument("--migrate-timeout", type=float, default=300.0, metavar="S",
                   help="seconds for one migration (default 300; QEMU over one TLS "
                   "connection needs about 100 s in dirty here)")
    args = p.parse_args()
    # What bench/migrate's runs read besides; its defaults.
    args.boot_timeout = args.exit_timeout = 60.0
    if args.runs < 1:
        p.error("--runs must be at least 1")
    try:
        args.channel_counts = sorted({int(n) for n in args.channels.split(",") if n} - {1})
    except ValueError:
        p.error("--channels wants numbers, e.g. 2,4")
    if any(n < 1 or n > 16 for n in args.channel_counts):
        p.error("--channels: 2 to 16")
    transports = all_transports(args.channel_counts)
    if args.configs:
        want = set(args.configs.split(","))
        unknown = want - {t.name for t in transports}
        if unknown:
            p.error("--configs: unknown %s (known: %s)" % (
                ",".join(sorted(unknown)), ",".join(t.name for t in transports)))
        transports = [t for t in transports if t.name in want]
    if args.skip_qemu:
        transports = [t for t in transports if t.vmm != "qemu"]
    return args, transports


def main():
    args, transports = parse_args()
    for what, path in (("the test guest", args.guest), ("vmhop", args.vmhop)):
        if not os.path.exists(path):
            die("%s: %s not found (run make first)" % (what, path))
    if any(t.vmm == "qemu" for t in transports) and shutil.which(args.qemu) is None:
        die("QEMU not found (%s); --skip-qemu measures vmhop alone" % args.qemu)
    scenarios = [s for s in mig.SCENARIOS + [BULK]
                 if s.name in ("idle", "dirty", "bulk") and args.scenario in ("all", s.name)]

    scratch = tempfile.mkdtemp(prefix="bench-transport-pki-")
    procs = []
    done = []  # (scenario, medians), kept when a later scenario is interrupted

    def measure():
        Hooks.pki, Hooks.qemu_pki = prepare_pki(args, scratch)
        print("migration transports over loopback: %s, %d runs each (round-robin), downtime "
              "limit %d ms" % (os.path.basename(args.guest), args.runs, args.max_downtime))
        print("MiB/s: bytes moved / (total - setup), each VMM's own numbers (vmhop "
              "migrate-send --json;\n  QEMU query-migrate ram.transferred, total-time, "
              "setup-time); wall: the script's clock from the\n  migrate request to "
              "completion; load: 1-minute load average after the run", flush=True)
        print_load_when("before the runs")
        failed = False
        for sc in scenarios:
            print("\n== %s: %s\n   guest: %s" % (sc.name, sc.what, sc.params), flush=True)
            meds, f = run_scenario(args, sc, transports, procs)
            failed |= f
            done.append((sc, meds))
        return failed

    try:
        failed, interrupted = vmbench.run_then_stop(procs, measure)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_load_when("after the runs")
    print("\nresult (medians of %d runs):" % args.runs)
    for sc, meds in done:
        report(sc, transports, meds, args.channel_counts)
    return 1 if failed or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
