"""Shared pieces of the benchmarks under bench/ (python3, standard library only).

Processes whose output is collected in threads and that are stopped by their
pid at the end (Proc, Console), a QMP client (Qmp), one request on a vmhop
control socket (control_request), the test guest's heartbeat and verdict
lines, and the load-average note every benchmark prints first; the steps the
VM benchmarks (migrate, snapshot, diskcopy, transport) all take: the VMMs'
command lines, waiting for a guest to be ready and for it to end with PASS,
QEMU's migration polling, vmhop's --json summaries, a series of runs with
its failures printed the same way, the medians table and the command line's
binary options. A script imports this with

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    os.pardir, "lib"))
    import vmbench
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

GIB = 1 << 30
MIB = 1 << 20
HB_RE = re.compile(rb"HB seq=(\d+) ")
VERDICT_RE = re.compile(rb"VERDICT (PASS|FAIL)[^\n]*")


class RunFailed(Exception):
    pass


# What a run may raise that fails only that run (the series goes on to its
# summary); anything else is a bug in the script and ends it with a traceback.
RUN_ERRORS = (RunFailed, OSError, ValueError, KeyError)


class Scenario:
    """A guest set-up: memory, vCPUs, its command line (params) and the
    seconds to let it run after its first heartbeat (warm)."""

    def __init__(self, name, memory, cpus, params, warm, what):
        self.name, self.memory, self.cpus = name, memory, cpus
        self.params, self.warm, self.what = params, warm, what


# ---------------------------------------------------------------- processes

class Console:
    """Collects a pipe's output (a serial console, stderr) in a thread."""

    def __init__(self, stream, name):
        self.name = name
        self.data = b""
        self.stamps = []  # (len(data) after a read, time.monotonic() of that read)
        self.eof = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream):
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.data += chunk
                self.stamps.append((len(self.data), time.monotonic()))
                self.cond.notify_all()

    def wait_for(self, regex, timeout, start=0, pred=None):
        """First match of regex (bytes) in a complete line from offset start
        on, for which pred(match) holds; None on timeout or EOF."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                pos = start
                for m in regex.finditer(self.data, start):
                    if self.data.find(b"\n", m.end()) < 0 and not self.eof:
                        break  # the line is not complete yet
                    if pred is None or pred(m):
                        return m
                    pos = m.end()
                if self.eof:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))

    def arrival(self, m):
        """time.monotonic() when the line holding match m was complete."""
        end = self.data.find(b"\n", m.end())
        end = len(self.data) if end < 0 else end + 1
        with self.cond:
            for n, t in self.stamps:
                if n >= end:
                    return t
        return time.monotonic()

    def last_hb(self):
        with self.cond:
            seqs = HB_RE.findall(self.data)
        return int(seqs[-1]) if seqs else 0

    def tail(self, n=8):
        with self.cond:
            lines = self.data.decode(errors="replace").splitlines()
        return ["    %s| %s" % (self.name, l) for l in lines[-n:]]


class Proc:
    """A process we started: stdout and stderr collected, killed at the end."""

    def __init__(self, registry, name, cmd):
        self.name = name
        self.cmd = cmd
        self.stopped = False
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, bufsize=0)
        registry.append(self)
        self.out = Console(self.p.stdout, name + " out")
        self.err = Console(self.p.stderr, name + " err")

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """Ends the process (by its pid), politely first."""
        if self.p.poll() is None:
            self.stopped = True
            self.p.send_signal(signal.SIGTERM)
            if self.wait(5) is None:
                self.p.kill()
                self.p.wait()
        for c in (self.out, self.err):
            c.thread.join(timeout=2)
        for s in (self.p.stdout, self.p.stderr):
            try:
                s.close()
            except OSError:
                pass

    def dump(self):
        rc = self.p.poll()
        if self.stopped:
            state = "was still running: stopped by the script"
        elif rc is None:
            state = "running"
        else:
            state = ("exit status %d" % rc if rc >= 0 else
                     "killed by signal %d, not sent by this script" % -rc)
        return self.out.tail() + self.err.tail(4) + ["    %s: %s" % (self.name, state)]


def close_all(qmps, procs):
    """The end of every run, whatever happened: closes the QMP connections,
    then stops the processes, in the order given (None: never started)."""
    for q in qmps:
        if q:
            q.close()
    for p in procs:
        if p:
            p.stop()


def quit_qemu(q, proc, what):
    """Ends a QEMU by QMP `quit` (a migration's source stays paused for good,
    in postmigrate) and closes q; proc must exit within 30 s."""
    q.cmd("quit")
    q.close()
    wait_exit(proc, 30, what)


def wait_exit(proc, timeout, what):
    rc = proc.wait(timeout)
    if rc is None:
        raise RunFailed("%s did not exit within %g s" % (what, timeout))
    return rc


# ---------------------------------------------------------------- QMP

class Qmp:
    def __init__(self, path, timeout=30.0, poll=0.05):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise RunFailed("QMP socket %s did not appear" % path)
                time.sleep(poll)
        self.sock.settimeout(timeout)
        self.f = self.sock.makefile("rwb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise RunFailed("no QMP greeting on %s" % path)
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise RunFailed("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        while True:
            r = self._read()
            if "event" in r:
                continue
            if "error" in r:
                raise RunFailed("QMP %s: %s" % (name, r["error"].get("desc", r["error"])))
            return r.get("return")

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


def control_request(path, name, timeout=10.0, **args):
    """One request on a vmhop control socket (JSON lines)."""
    msg = {"execute": name}
    if args:
        msg["arguments"] = args
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(msg).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    r = json.loads(buf.split(b"\n")[0] or b"{}")
    if "error" in r:
        raise RunFailed("control %s: %s" % (name, r["error"]))
    return r.get("return")


# ---------------------------------------------------------------- the guest

def wait_first_hb(vm, timeout, what):
    """The guest's first heartbeat (seq=1), else RunFailed naming what."""
    if not vm.out.wait_for(HB_RE, timeout, pred=lambda m: m.group(1) == b"1"):
        if vm.p.poll() is not None:
            raise RunFailed("%s exited with status %s before a heartbeat"
                            % (what, vm.p.returncode))
        raise RunFailed("%s: no heartbeat within %g s" % (what, timeout))


def after_warm_up(vm, warm, what, ended):
    """Lets the guest run warm seconds more; it must still be running, with
    no verdict yet (ended: what to say if it has one). Returns the last
    heartbeat seq read."""
    time.sleep(warm)
    if vm.p.poll() is not None:
        raise RunFailed("%s exited with status %s" % (what, vm.p.returncode))
    v = VERDICT_RE.search(vm.out.data)
    if v:
        raise RunFailed("%s: %s" % (ended, v.group(0).decode(errors="replace")))
    return vm.out.last_hb()


def finish(vm, after_seq, request_shutdown, what, timeout, verdict_timeout=None,
           verdict_needs=None, continued=False):
    """Heartbeats go on past after_seq; then request_shutdown() must end the
    guest with VERDICT PASS (holding verdict_needs, if given) within
    verdict_timeout (default: timeout) and the process with status 0 within
    timeout. continued: the process's first heartbeat must not be seq=1 (a
    migrated guest goes on counting; a restart would begin again); returns
    that first seq."""
    m = vm.out.wait_for(HB_RE, timeout, pred=lambda m: int(m.group(1)) > after_seq)
    if not m:
        v = VERDICT_RE.search(vm.out.data)
        raise RunFailed("%s: no heartbeat after seq=%d%s" % (
            what, after_seq, (": " + v.group(0).decode(errors="replace")) if v else
            "" if vm.p.poll() is None else " (exited with status %s)" % vm.p.returncode))
    first_seq = int(HB_RE.search(vm.out.data).group(1))
    if continued and first_seq <= 1:
        raise RunFailed("%s heartbeats restarted at seq=%d" % (what, first_seq))
    request_shutdown()
    if verdict_timeout is None:
        verdict_timeout = timeout
    v = vm.out.wait_for(VERDICT_RE, verdict_timeout)
    if not v:
        raise RunFailed("%s: no verdict within %g s of the shutdown request"
                        % (what, verdict_timeout))
    if v.group(1) != b"PASS" or (verdict_needs and verdict_needs not in v.group(0)):
        raise RunFailed("%s guest: %s" % (what, v.group(0).decode(errors="replace")))
    rc = wait_exit(vm, timeout, what)
    if rc != 0:
        raise RunFailed("%s exited with status %d after the verdict" % (what, rc))
    return first_seq


# ---------------------------------------------------------------- the VMMs

def vmhop_run_cmd(vmhop, guest, memory, cpus, control, params, extra=()):
    """`vmhop run` of the test guest with its serial console on stdout and a
    control socket; extra goes after --cpus (disks)."""
    return ([vmhop, "run", "--kernel", guest, "--memory", memory, "--cpus", str(cpus)]
            + list(extra) + ["--serial", "stdio", "--control", control, "--cmdline", params])


def qemu_cmd(qemu, machine, memory, cpus, qmp, guest, params):
    """QEMU booting the test guest (-kernel, multiboot) with nothing but its
    serial console on stdout and a QMP socket; the caller adds disks and
    -incoming."""
    return [qemu, "-machine", machine, "-cpu", "qemu64",
            "-m", memory, "-smp", str(cpus), "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-no-reboot",
            "-qmp", "unix:%s,server=on,wait=off" % qmp,
            "-kernel", guest, "-append", params]


def listen_port(dst, regex):
    """The port `vmhop migrate-recv --listen ...:0` reports on stderr."""
    m = dst.err.wait_for(regex, 30)
    if not m:
        raise RunFailed("migrate-recv printed no 'listening on' line (status %s)"
                        % dst.p.poll())
    return int(m.group(1))


def incoming_port(qd, uri="tcp:127.0.0.1:0"):
    """migrate-incoming on a QEMU started with -incoming defer; the port it
    listens on."""
    qd.cmd("migrate-incoming", uri=uri)
    addrs = qd.cmd("query-migrate").get("socket-address") or []
    if not addrs:
        raise RunFailed("destination QEMU reports no listening address")
    return int(addrs[0]["port"])


def wait_migration(q, want, t0, timeout, poll, what="QEMU migration", not_yet=None):
    """Polls query-migrate every poll seconds until its status is `want`;
    returns the reply. Cancels the migration when timeout seconds from t0
    have gone by ("<what> not <not_yet, default want> within ...")."""
    while True:
        info = q.cmd("query-migrate")
        status = info.get("status")
        if status == want:
            return info
        if status in ("failed", "cancelled"):
            raise RunFailed("%s %s: %s" % (what, status, info.get("error-desc", "")))
        if time.monotonic() - t0 > timeout:
            q.cmd("migrate_cancel")
            raise RunFailed("%s not %s within %g s (status %s)"
                            % (what, not_yet or want, timeout, status))
        time.sleep(poll)


def json_result(proc, t0, timeout, what):
    """Waits for a vmhop command run with --json (started at t0); returns
    (exit status, ms since t0, the last non-empty line of its stdout as an
    object or None, that line). Its output threads are joined first, so that
    the line and stderr are complete."""
    rc = proc.wait(timeout)
    wall = (time.monotonic() - t0) * 1000.0
    if rc is None:
        raise RunFailed("%s not done within %g s" % (what, timeout))
    for c in (proc.out, proc.err):
        c.thread.join(timeout=5)
    lines = [l for l in proc.out.data.decode(errors="replace").splitlines() if l.strip()]
    if not lines:
        return rc, wall, None, ""
    try:
        return rc, wall, json.loads(lines[-1]), lines[-1]
    except ValueError:
        return rc, wall, None, lines[-1]


# ---------------------------------------------------------------- runs and report

def both_series(args, run_qemu_too, vmhop_series, qemu_series, qemu_skip=None):
    """One scenario: vmhop's series (unless --skip-vmhop), then QEMU's when
    it runs here (run_qemu_too); qemu_skip: why QEMU cannot run this
    scenario, printed instead. The series are called without arguments and
    return (medians or None, failed?). Returns (vmhop's medians, QEMU's, the
    summary's note on QEMU, failed?)."""
    v = q = None
    qnote = None
    failed = False
    if not args.skip_vmhop:
        v, failed = vmhop_series()
    if run_qemu_too:
        qnote = qemu_skip
        if qnote:
            print("qemu: SKIP: %s" % qnote, flush=True)
        else:
            q, f = qemu_series()
            failed |= f
    elif not args.skip_qemu:
        qnote = "SKIP: %s not found" % args.qemu
    return v, q, qnote, failed


def why_failed(e, where=False):
    """A failed run's reason: a RunFailed's message; another error's type and
    message, with where the file and line it came from."""
    if isinstance(e, RunFailed):
        return e
    if not where:
        return "%s: %s" % (type(e).__name__, e)
    tb = traceback.extract_tb(e.__traceback__)[-1]
    return "%s: %s (%s line %d)" % (type(e).__name__, e, os.path.basename(tb.filename), tb.lineno)


def print_failed(head, e, where=False):
    """`<head> FAILED: <why>`, then the last lines of the processes the run
    attached to e (e.procs)."""
    print("%s FAILED: %s" % (head, why_failed(e, where)), flush=True)
    for p in getattr(e, "procs", []):
        for line in p.dump():
            print(line)


def attempt(head, fn, prefix, tmpdir=None, where=False, cleanup=None):
    """fn(tmp) in a fresh temporary directory (under tmpdir), removed after
    it (cleanup(tmp) first); fn's result, or None once a RUN_ERRORS failure
    is printed (print_failed)."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir=tmpdir)
    try:
        return fn(tmp)
    except RUN_ERRORS as e:
        print_failed(head, e, where)
        return None
    finally:
        if cleanup:
            cleanup(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def series(name, header, runs, fn, fmt_row, prefix, tmpdir=None):
    """`runs` runs of one VMM, fn(tmp) each (see attempt), printed under
    `name:` and header with fmt_row(label, result); the results, or None
    after the first failed run (the series stops there)."""
    print("%s:" % name, flush=True)
    print(header, flush=True)
    results = []
    for i in range(runs):
        def one(tmp, label="run %d" % (i + 1)):
            r = fn(tmp)
            print(fmt_row(label, r), flush=True)
            return r
        r = attempt("  run %d:" % (i + 1), one, prefix, tmpdir)
        if r is None:
            return None
        results.append(r)
    return results


def medians(results, keys):
    return {k: statistics.median(r[k] for r in results) for k in keys}


def ratio(a, b):
    return a / b if b else float("inf")


def print_medians(indent, columns, v, q, qnote):
    """The summary's table: a row for vmhop's medians and one for QEMU's ("-"
    when a VMM has none), then QEMU's note. columns: (title, format of
    width 10, function of the medians dict)."""
    print(indent + "%-6s" % "" + "".join(" %10s" % title for title, _, _ in columns))
    for name, m in (("vmhop", v), ("qemu", q)):
        if m:
            print(indent + "%-6s" % name + "".join(" " + f % get(m) for _, f, get in columns))
        else:
            print(indent + "%-6s %10s" % (name, "-"))
    if qnote:
        print(indent + "qemu: %s" % qnote)


def verdict(ok):
    return "met" if ok else "NOT met"


def print_load():
    """The guests' vCPUs poll: other work on the machine skews every number."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    ncpu = os.cpu_count() or 1
    print("load average before the runs: %.2f on %d CPUs%s" % (
        load, ncpu, " (busy: the numbers will be unreliable)" if load > 0.5 * ncpu else ""),
        flush=True)


def on_sigterm(signum, frame):
    raise KeyboardInterrupt()



# ---------------------------------------------------------------- disks and more
# (bench/diskcopy; usable by any benchmark)

def print_load_when(when):
    """print_load with all three averages and a label (before/after the runs)."""
    try:
        l1, l5, l15 = os.getloadavg()
    except OSError:
        return
    ncpu = os.cpu_count() or 1
    print("load average %s: %.2f %.2f %.2f on %d CPUs%s" % (
        when, l1, l5, l15, ncpu,
        " (busy: other work shares the CPUs, the numbers are noisy)" if l1 > 0.5 * ncpu else ""),
        flush=True)


def free_tcp_port(host="127.0.0.1"):
    """A port free right now, for a server that cannot report the one it got
    (QEMU's nbd-server-start); another process may take it in between."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def data_extents(path):
    """[(start, end)] of the allocated parts of a file (SEEK_DATA/SEEK_HOLE)."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break  # ENXIO: only a hole is left
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            off = end
    finally:
        os.close(fd)
    return out


def allocated_bytes(path):
    return os.stat(path).st_blocks * 512


def o_direct_read(path, bufsize=MIB):
    """Reads the allocated parts of path with O_DIRECT, bufsize at a time;
    returns (bytes, seconds). The page cache plays no part."""
    import mmap
    extents = data_extents(path)
    buf = mmap.mmap(-1, bufsize)  # page-aligned, as O_DIRECT needs
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    total = 0
    try:
        t0 = time.monotonic()
        for start, end in extents:
            off = start
            while off < end:
                want = min(bufsize, end - off)
                want = (want + 4095) & ~4095
                n = os.preadv(fd, [view[:want]], off)
                if n <= 0:
                    break
                total += min(n, end - off)
                off += n
        secs = time.monotonic() - t0
    finally:
        os.close(fd)
        view.release()
        buf.close()
    return total, secs


# ---------------------------------------------------------------- command line

def add_binary_args(p):
    """--vmhop, --qemu and --guest with the usual defaults: $VMHOP, else the
    build tree's ($VMHOP_BUILDDIR, else the source tree); QEMU on PATH."""
    top = os.environ.get("VMHOP_BUILDDIR") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--vmhop", metavar="PATH",
                   default=os.environ.get("VMHOP") or os.path.join(top, "vmhop"),
                   help="the vmhop binary (default: $VMHOP, else the build tree's)")
    p.add_argument("--qemu", metavar="PATH",
                   default=shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
                   help="QEMU binary (default qemu-system-x86_64 on PATH)")
    p.add_argument("--guest", metavar="PATH",
                   default=os.path.join(top, "tests", "guest", "guest.elf"),
                   help="the test guest ELF (default: the build tree's)")


def add_skip_args(p):
    """--skip-qemu and --skip-vmhop: measure one VMM alone."""
    p.add_argument("--skip-qemu", action="store_true", help="measure vmhop only")
    p.add_argument("--skip-vmhop", action="store_true", help="measure QEMU only")


def check_binaries(args, prog):
    """Ends the script (prog: its name in the message) when the guest or,
    unless --skip-vmhop, vmhop is missing; whether QEMU runs too (not
    --skip-qemu and found)."""
    if not os.path.exists(args.guest):
        sys.exit("%s: %s not found (run make first)" % (prog, args.guest))
    if not args.skip_vmhop and not os.path.exists(args.vmhop):
        sys.exit("%s: %s not found (run make first)" % (prog, args.vmhop))
    return not args.skip_qemu and shutil.which(args.qemu) is not None


def run_then_stop(procs, fn):
    """fn() with SIGTERM taken as Ctrl-C and every process in procs stopped
    however it ends; returns (fn's result, interrupted?)."""
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return fn(), False
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        return None, True
    finally:
        for pr in procs:
            pr.stop()
