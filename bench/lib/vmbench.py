"""Shared pieces of the benchmarks under bench/ (python3, standard library only).

Processes whose output is collected in threads and that are stopped by their
pid at the end (Proc, Console), a QMP client (Qmp), one request on a vmhop
control socket (control_request), the test guest's heartbeat and verdict
lines, and the load-average note every benchmark prints first. A script
imports this with

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
import subprocess
import threading
import time

GIB = 1 << 30
MIB = 1 << 20
HB_RE = re.compile(rb"HB seq=(\d+) ")
VERDICT_RE = re.compile(rb"VERDICT (PASS|FAIL)[^\n]*")


class RunFailed(Exception):
    pass


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
# (bench/transport; the other scripts still spell these out)

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
