#!/usr/bin/env python3
"""Where a migration's CPU goes: each thread's CPU time over one move.

Boots the bulk scenario of bench/transport (tests/guest/guest.elf, 1 GiB,
2 vCPUs, 512 MiB written once with dirty=512M passes=1, then kept), starts
`vmhop migrate-recv`, and migrates over tcp: or tls: (mutual, the
certificates of contrib/make-test-ca.sh in --pki DIR) with `migrate-send
--json`, sampling /proc/PID/task/*/stat of both processes every 20 ms; it
prints the throughput (bytes_sent over total_ms - setup_ms) and the CPU
seconds each thread of either side used during the move. With the guest's
vCPUs polling on a 2-CPU machine, the side whose thread needs the most CPU
sets the pace: this is how the transport's cost per byte shows.

  bench/transport/threads.py --pki DIR [--transport tcp|tls|both] [--runs N]
                             [--vmhop PATH] [--guest PATH]

Not a test and not part of `make bench-transport`; the exit status is 1 when
a migration fails or the binaries are missing."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "lib"))
import vmbench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
WARM = 5.0          # s: the guest writes its 512 MiB
SAMPLE = 0.02       # s between samples


def thread_cpu(pid):
    """{tid: (name, CPU seconds)} of a live process; {} once it is gone."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def tls_args(pki, side):
    if side == "dst":
        return ["--tls-ca", pki + "/ca.pem", "--tls-cert", pki + "/dest.pem",
                "--tls-key", pki + "/dest.key", "--tls-allow", "vmhop-src"]
    return ["--tls-ca", pki + "/ca.pem", "--tls-cert", pki + "/src.pem",
            "--tls-key", pki + "/src.key", "--tls-name", "localhost"]


def one_move(args, scheme, tmp):
    """One migration; returns (MiB/s, {side: {tid: (name, seconds)}})."""
    tls = scheme == "tls"
    src = subprocess.Popen([args.vmhop, "run", "--kernel", args.guest, "--memory", "1G",
                            "--cpus", "2", "--control", tmp + "/src.sock",
                            "--serial", "file:" + tmp + "/src.serial",
                            "--cmdline", "dirty=512M passes=1 verify=1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dst = subprocess.Popen([args.vmhop, "migrate-recv", "--listen", scheme + ":127.0.0.1:0",
                            "--serial", "file:" + tmp + "/dst.serial",
                            "--control", tmp + "/dst.sock"] + (tls_args(args.pki, "dst") if tls else []),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port = None
        while port is None:
            line = dst.stderr.readline()
            if not line:
                raise vmbench.RunFailed("migrate-recv ended before listening")
            m = re.search(rb"listening on \w+:[^\s:]+:(\d+)", line)
            port = m and m.group(1).decode()
        time.sleep(WARM)
        before = {"src": thread_cpu(src.pid), "dst": thread_cpu(dst.pid)}
        last = {k: dict(v) for k, v in before.items()}
        done = threading.Event()

        def sample():
            # The source process exits when the move completes: keep the
            # last sample of every thread.
            while not done.is_set():
                last["src"].update(thread_cpu(src.pid))
                last["dst"].update(thread_cpu(dst.pid))
                time.sleep(SAMPLE)

        sampler = threading.Thread(target=sample)
        sampler.start()
        r = subprocess.run([args.vmhop, "migrate-send", "--control", tmp + "/src.sock", "--to",
                            "%s:127.0.0.1:%s" % (scheme, port), "--json"]
                           + (tls_args(args.pki, "src") if tls else []),
                           capture_output=True, text=True)
        done.set()
        sampler.join()
        lines = r.stdout.strip().splitlines()
        s = json.loads(lines[-1]) if lines else {}
        if s.get("status") != "completed":
            raise vmbench.RunFailed("migration %s: %s" % (s.get("status"), s.get("error") or
                                                          r.stderr.strip()[-300:]))
        secs = (s["total_ms"] - s.get("setup_ms", 0)) / 1000.0
        used = {side: {tid: (name, cpu - before[side].get(tid, (name, 0.0))[1])
                       for tid, (name, cpu) in last[side].items()} for side in last}
        return s["bytes_sent"] / vmbench.MIB / secs, used
    finally:
        subprocess.run([args.vmhop, "ctl", "-c", tmp + "/dst.sock", "quit"],
                       capture_output=True, timeout=30)
        for p in (src, dst):
            if p.poll() is None:
                p.kill()
            p.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pki", metavar="DIR", required=True,
                   help="contrib/make-test-ca.sh's output (needed for tls:)")
    p.add_argument("--transport", choices=["tcp", "tls", "both"], default="both")
    p.add_argument("--runs", type=int, default=2, metavar="N", help="moves per transport (2)")
    vmbench.add_binary_args(p)
    args = p.parse_args()
    for what, path in (("vmhop", args.vmhop), ("the test guest", args.guest)):
        if not os.path.exists(path):
            print("threads.py: %s: %s not found (run make first)" % (what, path))
            return 1
    schemes = ["tcp", "tls"] if args.transport == "both" else [args.transport]
    vmbench.print_load_when("before the runs")
    for i in range(args.runs):
        for scheme in schemes:
            tmp = tempfile.mkdtemp(prefix="bench-threads-")
            try:
                rate, used = one_move(args, scheme, tmp)
            except (vmbench.RunFailed, OSError, ValueError, KeyError) as e:
                print("%s run %d: FAILED: %s" % (scheme, i + 1, e))
                return 1
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            print("%s run %d: %.0f MiB/s" % (scheme, i + 1, rate))
            for side in ("src", "dst"):
                for tid, (name, sec) in sorted(used[side].items(), key=lambda x: -x[1][1]):
                    if sec >= 0.02:
                        print("  %-3s %-12s %5.2f s" % (side, name, sec))
    vmbench.print_load_when("after the runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
