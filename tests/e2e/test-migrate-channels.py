"""Parallel channels (migrate-send --channels N): the guest moves over 4 TCP
connections and over 2 TLS ones, verifying PASS on the destination with
consecutive heartbeats; every channel carried pages and the per-channel
statistics add up. A cut of any one channel, the first or a further one, on
either side, fails the whole migration cleanly: migrate-send names the
channel, the destination runs nothing and exits non-zero, and the guest keeps
running on the source, verifying PASS at the end."""
import os
import subprocess

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
    cases = [("source", "round1", "cut at round1"), ("source", "channel1", "cut at channel1"),
             ("source", "channel2", "cut at channel2"), ("source", "channel3", "cut at channel3"),
             ("destination", "channel2", "channel")]
    for side, phase, words in cases:
        label = f"{phase} cut on the {side}"
        env = dict(HOOKS, VMHOP_MIGRATE_FAULT=f"{phase}:cut")
        dst = ctx.recv_vm(IO, name=f"dst-{side}-{phase}", env=env if side == "destination" else HOOKS)
        rc, s, err = ctx.migrate(src, dst.uri, IO + ["--channels", "4"],
                                 env={"VMHOP_MIGRATE_FAULT": f"{phase}:cut"} if side == "source" else None)
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
    src.ctl("shutdown")
    v = src.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(v.group(1) == "PASS", f"the source guest verifies PASS after every failed move ({v.group(0)})")
    t.check(src.wait_exit() == 0, "the source exits 0")


t.main(test)
