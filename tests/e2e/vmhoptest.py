"""Helpers for vmhop's end-to-end tests: start real `vmhop` processes on
/dev/kvm, read the guest's serial log, talk to the control socket.

Tests print one `ok - ...` line per check and exit 0 (pass), 77 (skip, only
when /dev/kvm is absent) or 1 (fail, with the reason on the last line)."""
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

BUILDDIR = os.environ.get("VMHOP_BUILDDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
SRCDIR = os.environ.get("VMHOP_SRCDIR", BUILDDIR)
VMHOP = os.environ.get("VMHOP", os.path.join(BUILDDIR, "vmhop"))
GUEST = os.path.join(BUILDDIR, "tests", "guest", "guest.elf")
CHECK_DISK = os.path.join(SRCDIR, "tests", "guest", "check-disk.py")

# Generous limits: they bound a hung test, they never judge speed.
BOOT_TIMEOUT = 60
EXIT_TIMEOUT = 60


class TestFailure(Exception):
    pass


def need_kvm():
    if not os.path.exists("/dev/kvm"):
        print("SKIP: /dev/kvm is absent on this machine: this test needs KVM", flush=True)
        print("!" * 72, flush=True)
        sys.exit(77)


def ok(msg):
    print(f"ok - {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)
    ok(msg)


def main(fn):
    """Runs a test function with a scratch directory; maps failures to exit 1."""
    need_kvm()
    tmp = tempfile.mkdtemp(prefix="vmhop-e2e-")
    procs = []
    try:
        fn(Ctx(tmp, procs))
    except TestFailure as e:
        print(f"FAIL: {e}", flush=True)
        for p in procs:
            p.dump_tail()
        sys.exit(1)
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS", flush=True)
    sys.exit(0)


class Ctx:
    def __init__(self, tmp, procs):
        self.tmp = tmp
        self.procs = procs
        self._n = 0

    def path(self, name):
        return os.path.join(self.tmp, name)

    @contextlib.contextmanager
    def small_tmpfs(self, name, size):
        """A tmpfs of `size` (mount's size=, e.g. "2m") at path(name), to
        fill up; yields its path, or None after a SKIP line where no tmpfs
        can be mounted. Unmounted when the block ends."""
        mnt = self.path(name)
        os.mkdir(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mnt]).returncode:
            print("SKIP (this part): cannot mount a tmpfs here", flush=True)
            yield None
            return
        try:
            yield mnt
        finally:
            subprocess.run(["umount", "-l", mnt])

    def run_vm(self, args, serial=True, control=True, name=None, env=None):
        """Starts `vmhop run ARGS` with a serial log and a control socket."""
        self._n += 1
        tag = name or f"vm{self._n}"
        vm = Vmhop(self, tag, ["run"] + list(args), serial=serial, control=control, env=env)
        self.procs.append(vm)
        return vm

    def recv_vm(self, args=(), name=None, env=None, control=True, listen="tcp:127.0.0.1:0"):
        """Starts `vmhop migrate-recv` on a free loopback port (or listen);
        .uri is where it listens."""
        self._n += 1
        tag = name or f"dst{self._n}"
        vm = Vmhop(self, tag, ["migrate-recv", "--listen", listen] + list(args),
                   serial=True, control=control, env=env)
        self.procs.append(vm)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            m = re.search(r"listening on ((?:tcp|tls|unix):\S+)", vm.stderr())
            if m:
                vm.uri = m.group(1)
                return vm
            if vm.proc.poll() is not None or time.monotonic() > deadline:
                raise TestFailure(f"{tag}: migrate-recv did not start listening: {vm.stderr().strip()}")
            time.sleep(0.02)

    def migrate(self, src, dst_uri, args=(), env=None, timeout=EXIT_TIMEOUT):
        """Runs migrate-send --json; returns (rc, summary dict or None, stderr)."""
        rc, out, err = self.vmhop(["migrate-send", "--control", src.control, "--to", dst_uri,
                                   "--json"] + list(args), timeout=timeout, env=env)
        lines = out.strip().splitlines()
        try:
            summary = json.loads(lines[-1]) if lines else None
        except ValueError:
            summary = None
        return rc, summary, err

    def vmhop(self, args, timeout=EXIT_TIMEOUT, env=None):
        """Runs a vmhop command to completion; returns (rc, stdout, stderr)."""
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.run([VMHOP] + list(args), capture_output=True, text=True,
                           timeout=timeout, env=e, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr


class Vmhop:
    def __init__(self, ctx, tag, argv, serial, control, env=None):
        self.tag = tag
        self.serial_path = ctx.path(f"{tag}.serial") if serial else None
        self.control = ctx.path(f"{tag}.sock") if control else None
        self.stderr_path = ctx.path(f"{tag}.stderr")
        full = [VMHOP] + argv
        if serial:
            full += ["--serial", f"file:{self.serial_path}"]
        if control:
            full += ["--control", self.control]
        self.argv = full
        self.err = open(self.stderr_path, "w")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=self.err,
                                     stdin=subprocess.DEVNULL, env=e)
        self.rc = None

    def serial(self):
        try:
            with open(self.serial_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def lines(self, pattern):
        rx = re.compile(pattern)
        return [m for m in (rx.search(l) for l in self.serial().splitlines()) if m]

    def wait_line(self, pattern, timeout=BOOT_TIMEOUT, after=0):
        """Waits for the (after+1)-th serial line matching pattern."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.lines(pattern)
            if len(found) > after:
                return found[after]
            if self.proc.poll() is not None:
                found = self.lines(pattern)
                if len(found) > after:
                    return found[after]
                raise TestFailure(f"{self.tag}: exited with {self.proc.returncode} before printing /{pattern}/")
            if time.monotonic() > deadline:
                raise TestFailure(f"{self.tag}: no /{pattern}/ within {timeout}s")
            time.sleep(0.05)

    def heartbeats(self):
        return [int(m.group(1)) for m in self.lines(r"^HB seq=(\d+)")]

    def hb_records(self):
        """[(seq, tsc, t_ms)] of every heartbeat so far."""
        return hb_records(self.serial())

    def running(self):
        return self.proc.poll() is None

    def wait_control(self, timeout=BOOT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.control):
            if self.proc.poll() is not None:
                raise TestFailure(f"{self.tag}: exited with {self.proc.returncode} before its control socket appeared")
            if time.monotonic() > deadline:
                raise TestFailure(f"{self.tag}: control socket did not appear")
            time.sleep(0.02)

    def ctl_raw(self, line, timeout=10):
        """Sends one raw line and returns the parsed reply."""
        self.wait_control()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.control)
            s.sendall(line if isinstance(line, bytes) else line.encode())
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        finally:
            s.close()
        return json.loads(buf.split(b"\n", 1)[0])

    def ctl(self, cmd, **args):
        req = {"execute": cmd}
        if args:
            req["arguments"] = args
        return self.ctl_raw(json.dumps(req) + "\n")

    def wait_exit(self, timeout=EXIT_TIMEOUT):
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{self.tag}: still running after {timeout}s")
        return self.rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.err.close()

    def dump_tail(self, n=25):
        print(f"--- {self.tag}: {' '.join(self.argv)}", flush=True)
        if self.serial_path:
            print("\n".join(self.serial().splitlines()[-n:]), flush=True)
        print(f"--- {self.tag} stderr:", flush=True)
        print("\n".join(self.stderr().splitlines()[-n:]), flush=True)


HB_RX = re.compile(r"^HB seq=(\d+) tsc=(\d+) t_ms=(\d+)$")


def hb_records(text):
    """[(seq, tsc, t_ms)] of the complete heartbeat lines in text."""
    return [tuple(int(x) for x in m.groups())
            for m in (HB_RX.match(l) for l in text.splitlines()) if m]


def moved_console(vms):
    """The console of a guest that moved between processes, in order. A line
    the guest was printing when it stopped is finished by the next process,
    so the logs are joined as they are, not line by line."""
    return "".join(vm.serial() for vm in vms)


def pvh_elf(code32, entry_offset=0):
    """Builds a minimal 32-bit PVH ELF around raw 32-bit code loaded at
    1 MiB: for tests that need a guest doing one precise (often wrong) thing."""
    base = 0x100000
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", base + entry_offset)
    ehdr_size, phdr_size = 52, 32
    code_off = 0x1000
    note_off = ehdr_size + 2 * phdr_size
    ehdr = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    ehdr += struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, base + entry_offset, ehdr_size, 0, 0,
                        ehdr_size, phdr_size, 2, 0, 0, 0)
    load = struct.pack("<IIIIIIII", 1, code_off, base, base, len(code32), len(code32), 5, 0x1000)
    pnote = struct.pack("<IIIIIIII", 4, note_off, 0, 0, len(note), len(note), 4, 4)
    img = ehdr + load + pnote + note
    img += bytes(code_off - len(img)) + code32
    return img
