"""Parallel channels (migrate-send --channels N): the guest moves over 4 TCP
connections and over 2 TLS ones, verifying PASS on the destination with
consecutive heartbeats; every channel carried pages and the per-channel
statistics add up. A cut of any one channel, the first or a further one, on
either side, fails the whole migration cleanly, as does a source that sends
pages on a channel that does not own them: migrate-send names the
channel, the destination runs nothing and exits non-zero, and the guest keeps
running on the source, verifying PASS at the end. So does a connection that
claims to be a further channel without the migration's token."""
import json
import os
import socket
import struct
import subprocess
import threading
import time

import vmhoptest as t

HOOKS = {"VMHOP_TEST_HOOKS": "1"}
IO = ["--io-timeout", "3"]
GUEST = "seconds=0 dirty=64M rate=50M verify=1 hb=100"


def moved(ctx, src, dst, args, label):
    rc, s, err = ctx.migrate(src, dst.uri, args)
    t.check(rc == 0 and s["status"] == "completed", f"{label}: the migration completes ({s and s.get('error')})")
    ch = s.get("channels", [])
    n = int(args[args.index("--channels") + 1])
    t.check(len(ch) == n and all(c["bytes_sent"] > 0 for c in ch),
            f"{label}: {n} channels, each carried data ({[c['bytes_sent'] for c in ch]})")
    t.check(sum(c["bytes_sent"] for c in ch) == s["bytes_sent"],
            f"{label}: the channels' bytes add up to bytes_sent ({s['bytes_sent']})")
    t.check(src.wait_exit() == 0, f"{label}: the source exits 0")
    if "tls" in label:
        t.check("CN=vmhop-dest" in s.get("peer", "") and "CN=vmhop-src" in dst.stderr(),
                f"{label}: each side names the other by its verified certificate ({s.get('peer')}; "
                f"{dst.stderr().strip().splitlines()[-1]})")
    dst.wait_line(r"^HB seq=")
    seq = max(dst.heartbeats())
    dst.wait_line(r"^HB seq=", after=seq + 3)
    text = open(src.serial_path).read() + open(dst.serial_path).read()
    seqs = [h[0] for h in t.hb_records(text)]
    t.check(seqs == list(range(1, len(seqs) + 1)), f"{label}: heartbeats consecutive across the move")
    dst.ctl("shutdown")
    v = dst.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(v.group(1) == "PASS", f"{label}: the guest verifies PASS on the destination ({v.group(0)})")
    dst.wait_exit()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame(msg):
    """A migration message as mig__send frames it: magic, length, JSON, CRC32C."""
    body = json.dumps(msg, separators=(",", ":")).encode()
    return b"VMHOPMIG" + struct.pack("<I", len(body)) + body + struct.pack("<I", crc32c(body))


def stranger(ctx, src):
    """A connection that claims to be a further channel with a token that is
    not the migration's: it sits first in the listener's queue (made while
    the source stalls after the hellos), the destination refuses it and the
    migration fails; the guest stays on the source."""
    label = "a stranger joining as channel 1"
    dst = ctx.recv_vm(["--io-timeout", "15"], name="dst-stranger", env=HOOKS)
    result = {}
    mig = threading.Thread(target=lambda: result.update(r=ctx.migrate(
        src, dst.uri, IO + ["--channels", "2"], env={"VMHOP_MIGRATE_FAULT": "hello:stall"})))
    mig.start()
    # The source stalls for its I/O timeout and a second (4 s) once the hellos
    # are done; the first connection (the source's) was accepted long before.
    time.sleep(1.5)
    host, port = dst.uri.split(":")[1:3]
    with socket.create_connection((host, int(port)), timeout=30) as sk:
        sk.sendall(frame({"type": "join", "token": "0" * 32, "index": 1}))
        reply = b""
        try:
            while True:
                d = sk.recv(4096)
                if not d:
                    break
                reply += d
        except OSError:
            pass
    mig.join()
    rc, s, err = result["r"]
    t.check(b"not one of this migration's channels" in reply,
            f"{label}: the destination tells it why it is refused ({reply[:160]!r})")
    why = (s or {}).get("error", "")
    t.check(rc == 1 and s and s["status"] == "failed" and "not one of this migration's channels" in why,
            f"{label}: the migration fails with the destination's reason ({why})")
    drc = dst.wait_exit()
    t.check(drc != 0 and not dst.lines(r"^HB") and "not one of this migration's channels" in dst.stderr(),
            f"{label}: the destination exits non-zero ({drc}), naming the stranger, without running the guest")
    st = src.ctl("query-status")["return"]
    t.check(st["status"] == "running" and not st.get("handed_off"), f"{label}: the source guest runs")
    seq = max(src.heartbeats())
    src.wait_line(r"^HB seq=", after=seq + 2)


def make_pki(ctx):
    pki = ctx.path("pki")
    p = subprocess.run(["sh", os.path.join(t.SRCDIR, "contrib", "make-test-ca.sh"), pki],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise t.TestFailure(f"make-test-ca.sh failed: {p.stderr.strip()}")
    return lambda name: os.path.join(pki, name)


def test(ctx):
    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M", "--cmdline", GUEST],
                     name="src")
    src.wait_line(r"^HB seq=5\b")
    moved(ctx, src, ctx.recv_vm(name="dst"), ["--channels", "4"], "tcp x4")

    f = make_pki(ctx)
    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M", "--cmdline", GUEST],
                     name="src-tls")
    src.wait_line(r"^HB seq=5\b")
    dst = ctx.recv_vm(["--tls-ca", f("ca.pem"), "--tls-cert", f("dest.pem"), "--tls-key", f("dest.key"),
                       "--tls-allow", "vmhop-src"], name="dst-tls", listen="tls:127.0.0.1:0")
    moved(ctx, src, dst, ["--channels", "2", "--tls-ca", f("ca.pem"), "--tls-cert", f("src.pem"),
                          "--tls-key", f("src.key"), "--tls-name", "localhost"], "tls x2")

    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M", "--cmdline", GUEST],
                     name="src-cut", env=HOOKS)
    src.wait_line(r"^HB seq=5\b")
    cases = [("source", "round1", "cut", "cut at round1"), ("source", "channel1", "cut", "cut at channel1"),
             ("source", "channel2", "cut", "cut at channel2"), ("source", "channel3", "cut", "cut at channel3"),
             ("destination", "channel2", "cut", "channel"),
             # a source that sends a page group on a channel that does not own it
             ("source", "channel2", "stray", "belong to another channel")]
    for side, phase, action, words in cases:
        label = f"{phase} {action} on the {side}"
        env = dict(HOOKS, VMHOP_MIGRATE_FAULT=f"{phase}:{action}")
        dst = ctx.recv_vm(IO, name=f"dst-{side}-{phase}-{action}",
                          env=env if side == "destination" else HOOKS)
        rc, s, err = ctx.migrate(src, dst.uri, IO + ["--channels", "4"],
                                 env={"VMHOP_MIGRATE_FAULT": f"{phase}:{action}"} if side == "source" else None)
        why = (s or {}).get("error", "")
        t.check(rc == 1 and s["status"] == "failed" and words in why,
                f"{label}: the whole migration fails, naming it ({why})")
        drc = dst.wait_exit()
        t.check(drc != 0 and not dst.lines(r"^HB"),
                f"{label}: the destination exits non-zero ({drc}) without running the guest")
        st = src.ctl("query-status")["return"]
        t.check(st["status"] == "running" and not st.get("handed_off"), f"{label}: the source guest runs")
        seq = max(src.heartbeats())
        src.wait_line(r"^HB seq=", after=seq + 2)
    stranger(ctx, src)
    src.ctl("shutdown")
    v = src.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(v.group(1) == "PASS", f"the source guest verifies PASS after every failed move ({v.group(0)})")
    t.check(src.wait_exit() == 0, "the source exits 0")


t.main(test)
