#!/usr/bin/env python3
"""RDMA for real: vmhop's rdma: channels inside a guest with soft-RoCE.

This machine's kernel has no RDMA. Debian's generic kernel has the soft-RoCE
driver rdma_rxe: this boots it under QEMU's TCG emulator (the kernel package
and the initramfs technique of tests/nested/nested.py, whose helpers it
imports), loads rdma_rxe on a `dummy` netdev (`rdma link add rxe0 type rxe
netdev dummy0`) and runs there:

  - tests/rdma/rdma-chantest ADDR MIB: every channel case over rdma: on one
    rxe device (bulk data with CRC32C at both ends, zero-copy region sends,
    either peer closing mid-transfer, a refused connection, a stalled peer
    ending in the timeout, shutdown from another thread);
  - a stream replay: a live migration of the test guest recorded on this
    host (the source-to-destination bytes of a real `migrate-send`, through a
    recording TCP proxy, cut to the stream from its header to its END record)
    is read through a file: channel, sent over rdma:, written through a file:
    channel, compared byte for byte and checked by `vmhop stream-info`; its
    throughput is printed.

Prints the guest console with seconds since QEMU started, `ok - ...` per
check, then PASS (0), FAIL (1) or SKIP (77: VMHOP_RDMA_SKIP set, no QEMU, or
no kernel package and no mirror). Environment: VMHOP_RDMA_MIB (bulk size,
default 1024), VMHOP_RDMA_SKIP=1, VMHOP_RDMA_KEEP=1 (keep the work
directory), and nested.py's VMHOP_BUILDDIR, VMHOP, VMHOP_CACHE.
"""
import fcntl
import glob
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nested"))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import nested  # noqa: E402

CHANTEST = os.path.join(nested.BUILDDIR, "tests", "rdma", "rdma-chantest")
ADDR = "192.168.77.1"
# rdma_rxe and what it needs (crc32 is asked for by name when a link is
# added, and modinfo does not list it), the connection manager's userspace
# interface, and the netdev rxe sits on.
MODULES = ["crc32_generic", "rdma_rxe", "rdma_ucm", "dummy"]
PROVIDER_DIR = "/usr/lib/x86_64-linux-gnu/libibverbs"
PROVIDER = "librxe-rdmav34.so"
DRIVER_FILE = "/etc/libibverbs.d/rxe.driver"
GUEST_TIMEOUT = 600
log = nested.log


# ------------------------------------------------------------ rxe userspace

def rxe_provider():
    """(provider .so, rxe.driver) from this host's ibverbs-providers, or
    from the package fetched into the cache (never installed)."""
    so = os.path.join(PROVIDER_DIR, PROVIDER)
    if os.path.exists(so) and os.path.exists(DRIVER_FILE):
        return so, DRIVER_FILE
    root = os.path.join(nested.CACHE, "ibverbs-providers")
    so_c = root + so
    if not os.path.exists(so_c):
        debs = os.path.join(nested.CACHE, "deb")
        os.makedirs(debs, exist_ok=True)
        p = subprocess.run(["apt-get", "download", "ibverbs-providers"], cwd=debs,
                           capture_output=True, text=True)
        if p.returncode != 0:
            nested.skip("cannot fetch ibverbs-providers (the rxe provider) with apt-get download")
        deb = sorted(glob.glob(os.path.join(debs, "ibverbs-providers_*.deb")))[-1]
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    return so_c, root + DRIVER_FILE


# ------------------------------------------- a real migration stream, recorded

class Recorder:
    """A TCP proxy in front of migrate-recv keeping what the source sends."""

    def __init__(self, dst_host, dst_port):
        self.dst = (dst_host, dst_port)
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        self.data = bytearray()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        a, _ = self.ls.accept()
        b = socket.create_connection(self.dst)

        def pump(src, dst, keep):
            try:
                while True:
                    chunk = src.recv(1 << 20)
                    if not chunk:
                        break
                    if keep:
                        self.data += chunk
                    dst.sendall(chunk)
            except OSError:
                pass
            for s in (dst,):
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        back = threading.Thread(target=pump, args=(b, a, False), daemon=True)
        back.start()
        pump(a, b, True)
        back.join(30)
        a.close()
        b.close()


def cut_stream(data):
    """The stream inside the source's bytes: from its header (after the
    handshake frames) through its END record (before the commit frames)."""
    start = data.find(b"VMHOPSTR")
    if start < 0:
        raise nested.Failure("no stream header (VMHOPSTR) among the recorded bytes")
    off = start + 40
    while off + 8 <= len(data):
        rtype, _flags, length = struct.unpack_from("<HHI", data, off)
        off += 8 + length + 4
        if rtype == 1:		# END
            return bytes(data[start:off])
    raise nested.Failure("the recorded stream has no END record")


def record_stream(work):
    """Migrates the test guest over loopback TCP through a Recorder; returns
    the path of the stream, or None with the reason when this host cannot
    run the test guest."""
    import vmhoptest as t
    if not os.path.exists("/dev/kvm"):
        return None, "/dev/kvm is absent: no migration stream can be recorded here"
    if not os.path.exists(t.GUEST):
        return None, f"no test guest at {t.GUEST}"
    procs = []
    ctx = t.Ctx(work, procs)
    try:
        src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "256M",
                          "--cmdline", "seconds=0 dirty=32M rate=20M hb=100"], name="rec-src")
        src.wait_line(r"^HB seq=5\b")
        dst = ctx.recv_vm(name="rec-dst")
        host, port = dst.uri[len("tcp:"):].rsplit(":", 1)
        rec = Recorder(host, int(port))
        rc, summary, err = ctx.migrate(src, f"tcp:127.0.0.1:{rec.port}")
        if rc != 0 or not summary or summary.get("status") != "completed":
            raise nested.Failure(f"recording: migrate-send failed ({summary}, {err.strip()[-300:]})")
        dst.wait_line(r"^HB seq=", after=max(src.heartbeats()))
        dst.ctl("quit")
        dst.wait_exit()
        rec.t.join(30)
        stream = cut_stream(rec.data)
    except t.TestFailure as e:
        raise nested.Failure(f"recording the migration stream: {e}")
    finally:
        for p in procs:
            p.kill()
    path = os.path.join(work, "recorded.stream")
    with open(path, "wb") as f:
        f.write(stream)
    log(f"L0: recorded a live migration of the test guest: {len(rec.data)} bytes from the "
        f"source, stream {len(stream)} bytes ({summary.get('rounds')} rounds)")
    return path, None


# ------------------------------------------------------------------ the guest

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
say() { echo "G: $*"; }
say "init uptime=$(cut -d' ' -f1 /proc/uptime)"
for m in $MODULES; do
	insmod /lib/modules/$m.ko || say "insmod $m failed"
done
ip link set lo up
# loading dummy made dummy0
ip addr add $ADDR/24 dev dummy0
ip link set dummy0 up
# iproute2's rdma by its full path (busybox has applets of the same names)
/usr/bin/rdma link add rxe0 type rxe netdev dummy0 || say "rdma link add failed"
say "link: $(/usr/bin/rdma link show 2>&1)"
say "devices: $(ls /dev/infiniband 2>&1 | tr '\n' ' ')"
say "rxe up uptime=$(cut -d' ' -f1 /proc/uptime)"
ulimit -l unlimited
# an ASan build reports leaks too: every channel torn down in full
export ASAN_OPTIONS=detect_leaks=1
/t/rdma-chantest $ADDR $MIB 2>&1
say "chantest exit $?"
if [ -e /t/recorded.stream ]; then
	/t/rdma-chantest replay $ADDR /t/recorded.stream /tmp/replayed.stream 2>&1
	say "replay exit $?"
	cmp /t/recorded.stream /tmp/replayed.stream && say "CMP identical"
	/vmhop/vmhop stream-info /tmp/replayed.stream > /tmp/info 2>&1
	rc=$?
	sed 's/^/INFO: /' /tmp/info | head -40
	say "stream-info exit $rc"
fi
dmesg | grep -i -E 'rxe|rdma|infiniband|BUG|WARNING' | sed 's/^/KMSG: /' | tail -20
say "END"
poweroff -f
"""


def add_rxe(c, moddir, binaries):
    """The rxe modules (returns them in load order), iproute2's rdma tool,
    the rxe provider, and binaries ((source, destination) pairs) with every
    library they all need."""
    mods = nested.load_order(moddir, MODULES)
    for m in mods:
        c.copy(f"/lib/modules/{m}.ko", nested.module_path(moddir, m), 0o644)
    libs = set()
    for binary, dest in list(binaries) + [(shutil.which("rdma") or "/usr/bin/rdma", "/usr/bin/rdma")]:
        c.copy(dest, binary, 0o755)
        libs.update(nested.shared_libs(binary))
    so, driver = rxe_provider()
    libs.update(l for l in nested.shared_libs(so) if l != so)
    for lib in sorted(libs):
        c.copy(lib, os.path.realpath(lib), 0o755)
    # libibverbs finds the provider through the driver file, in its own
    # directory: neither shows in ldd.
    c.copy(os.path.join(PROVIDER_DIR, PROVIDER), so, 0o755)
    c.copy(DRIVER_FILE, driver, 0o644)
    return mods


def initramfs(work, moddir, stream):
    c = nested.Cpio()
    nested.base_tree(c)
    mods = add_rxe(c, moddir, ((nested.VMHOP, "/vmhop/vmhop"), (CHANTEST, "/t/rdma-chantest")))
    if stream:
        c.copy("/t/recorded.stream", stream, 0o644)
    mib = os.environ.get("VMHOP_RDMA_MIB", "1024")
    init = (INIT.replace("$MODULES", " ".join(mods)).replace("$ADDR", ADDR)
            .replace("$MIB", mib))
    c.file("/init", init.encode(), 0o755)
    path = os.path.join(work, "guest.cpio")
    with open(path, "wb") as f:
        f.write(c.finish())
    return path


def run_guest(vmlinuz, initrd):
    argv = [nested.QEMU, "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "2048",
            "-nographic", "-nic", "none", "-no-reboot", "-monitor", "none", "-serial", "stdio",
            "-kernel", vmlinuz, "-initrd", initrd,
            "-append", "console=ttyS0 quiet panic=-1 rdinit=/init"]
    log("L0: " + " ".join(argv))
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    lines, buf = [], b""
    try:
        while True:
            if time.monotonic() - t0 > GUEST_TIMEOUT:
                log(f"L0: the guest still runs after {GUEST_TIMEOUT}s: killing it")
                break
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.decode(errors="replace").rstrip("\r"))
                t = time.monotonic() - t0
                lines.append((t, line))
                print(f"[{t:7.2f}] {line}", flush=True)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
    log(f"L0: QEMU exited with {p.returncode} after {time.monotonic() - t0:.1f}s")
    return nested.Result(lines)


def verify(res, stream):
    check = nested.check
    check(res.first(r"^G: rxe up") and res.first(r"^G: link: .*rxe0.*ACTIVE"),
          "rdma_rxe loaded, rxe0 on dummy0 active")
    failed = [m.group(0) for m in res.find(r"^not ok - .*")]
    for m in res.find(r"^ok - .*"):
        log(f"guest: {m.group(0)}")
    check(not failed, "every channel case passes" + (f": {failed}" if failed else ""))
    check(res.first(r"^RDMA-TEST PASS"), "the channel tests ran to their end")
    check(res.first(r"^G: chantest exit 0"), "rdma-chantest exited 0 (with an ASan build: "
          "no leak, no memory error)")
    bulk = res.first(r"^BULK mib=(\d+) seconds=([\d.]+) mib_s=([\d.]+)")
    if bulk:
        log(f"BULK: {bulk.group(1)} MiB with CRC32C at both ends in {bulk.group(2)} s: "
            f"{bulk.group(3)} MiB/s (soft-RoCE under TCG: correctness, not speed)")
    if not stream:
        return
    check(res.first(r"^G: replay exit 0"), "the recorded stream went over rdma: and came back")
    check(res.first(r"^G: CMP identical"), "the replayed stream is identical, byte for byte")
    check(res.first(r"^G: stream-info exit 0"), "vmhop stream-info reads the replayed stream "
          "and verifies every record's checksum")
    m = res.first(r"^REPLAY bytes=(\d+) seconds=([\d.]+) mib_s=([\d.]+)")
    check(m and os.path.getsize(stream) == int(m.group(1)),
          f"the replay moved the whole stream ({os.path.getsize(stream)} bytes)")
    log(f"REPLAY: {int(m.group(1)) / 1048576:.1f} MiB over rdma: in {m.group(2)} s: "
        f"{m.group(3)} MiB/s")


# ------------------------------------ a live migration over rdma:, nested

RXE_L1 = r"""
for m in RXE_MODULES; do
	insmod /lib/modules/$m.ko || say "insmod $m failed"
done
ip addr add ADDR/24 dev dummy0
ip link set dummy0 up
/usr/bin/rdma link add rxe0 type rxe netdev dummy0 || say "rdma link add failed"
say "rxe: $(/usr/bin/rdma link show 2>&1)"
ulimit -l unlimited
"""


class RdmaMigrate(nested.Migrate):
    """nested.py's `migrate` scenario (L2 moved live inside L1, memory
    dirtied, a shared disk written, clocks checked) with soft-RoCE in L1 and
    the migration over rdma: instead of loopback TCP."""
    name = "rdma-migrate"
    doc = "nested.py's migrate scenario over rdma: (soft-RoCE in L1)"

    def __init__(self, moddir):
        self.moddir = moddir
        self.mods = nested.load_order(moddir, MODULES)
        uri = f"rdma:{ADDR}:4444"
        body = nested.Migrate.l1_body.replace("tcp:127.0.0.1:4444", uri)
        assert uri in body
        self.l1_body = (RXE_L1.replace("RXE_MODULES", " ".join(self.mods)).replace("ADDR", ADDR)
                        + body)

    def l1_extra(self, c):
        add_rxe(c, self.moddir, ())

    def verify(self, res):
        nested.check(res.first(r"^L1: rxe: .*rxe0.*ACTIVE"), "L1: rxe0 on dummy0 active")
        super().verify(res)
        nested.check(res.first(rf"^L1: recv: .*rdma:{re.escape(ADDR)}") is not None or
                     res.first(rf"rdma:{re.escape(ADDR)}:4444") is not None,
                     "the migration ran over rdma:")


def migrate_main():
    """Runs RdmaMigrate the way nested.py runs its scenarios."""
    os.makedirs(nested.CACHE, exist_ok=True)
    lock = open(os.path.join(nested.CACHE, "lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    work = tempfile.mkdtemp(prefix="vmhop-rdma-migrate-")
    try:
        vmlinuz, moddir = nested.fetch_kernel()
        scenario = RdmaMigrate(moddir)
        scenario.prepare(work)
        initrd = nested.l1_initramfs(work, vmlinuz, moddir, scenario)
        log(f"L0: L1 initramfs {os.path.getsize(initrd) >> 20} MiB")
        lines, frozen = nested.run_l1(work, vmlinuz, initrd, scenario)
        if frozen:
            raise nested.Failure("the L1 VM froze (an emulator problem, not a verdict on vmhop)")
        scenario.verify(nested.Result(lines))
    except nested.Failure as e:
        log(f"FAIL: {e}")
        return 1
    finally:
        if os.environ.get("VMHOP_RDMA_KEEP"):
            log(f"L0: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        lock.close()
    log("PASS")
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        log(__doc__.strip())
        return 0
    if os.environ.get("VMHOP_RDMA_SKIP"):
        nested.skip("VMHOP_RDMA_SKIP is set: the soft-RoCE guest tests are not run")
    if not shutil.which(nested.QEMU):
        nested.skip(f"{nested.QEMU} is not installed: the RDMA tests need it (qemu-system-x86)")
    for path in (nested.VMHOP, CHANTEST):
        if not os.access(path, os.X_OK):
            log(f"FAIL: no {path} (build it first)")
            return 1
    if not os.access(nested.BUSYBOX, os.X_OK):
        nested.skip(f"{nested.BUSYBOX} missing: install busybox-static")
    if not shutil.which("rdma"):
        nested.skip("iproute2's rdma tool is missing: install iproute2")
    if len(sys.argv) > 1 and sys.argv[1] == "migrate":
        return migrate_main()
    os.makedirs(nested.CACHE, exist_ok=True)
    # One TCG guest at a time per cache, like the nested scenarios.
    lock = open(os.path.join(nested.CACHE, "lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    work = tempfile.mkdtemp(prefix="vmhop-rdma-")
    try:
        vmlinuz, moddir = nested.fetch_kernel()
        stream, why = record_stream(work)
        if not stream:
            log("L0: " + "!" * 60)
            log(f"L0: no stream replay: {why}")
            log("L0: " + "!" * 60)
        initrd = initramfs(work, moddir, stream)
        log(f"L0: kernel {vmlinuz}, guest initramfs {os.path.getsize(initrd) >> 20} MiB")
        verify(run_guest(vmlinuz, initrd), stream)
    except nested.Failure as e:
        log(f"FAIL: {e}")
        return 1
    finally:
        if os.environ.get("VMHOP_RDMA_KEEP"):
            log(f"L0: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        lock.close()
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
