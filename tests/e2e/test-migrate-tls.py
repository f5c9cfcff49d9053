"""Live migration over tls: with mutual certificates (made by
contrib/make-test-ca.sh into the test's scratch directory): the guest moves
and verifies PASS on the destination. Then each refusal, with its own message
on the side that refuses, the source guest still running and the destination
exiting non-zero: a client certificate from another CA, an expired one, a
client without a certificate, a subject not in --tls-allow, a plaintext
source on a TLS listener, a TLS source on a plaintext listener. Also: the
usage errors for missing files, a key readable by others, a refusal by the
destination and a cut connection after the handshake, and a move over
unix:."""
import os
import shutil
import socket
import ssl
import subprocess

import vmhoptest as t

HB_MS = 100


def make_pki(ctx):
    pki = ctx.path("pki")
    script = os.path.join(t.SRCDIR, "contrib", "make-test-ca.sh")
    p = subprocess.run(["sh", script, pki], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise t.TestFailure(f"make-test-ca.sh failed: {p.stderr.strip()}")
    return lambda name: os.path.join(pki, name)


def dest_args(f, allow=("vmhop-src",)):
    args = ["--tls-ca", f("ca.pem"), "--tls-cert", f("dest.pem"), "--tls-key", f("dest.key")]
    for a in allow:
        args += ["--tls-allow", a]
    return args


def src_args(f, who="src"):
    return ["--tls-ca", f("ca.pem"), "--tls-cert", f(f"{who}.pem"), "--tls-key", f(f"{who}.key")]


def source_running(src, label):
    status = src.ctl("query-status")["return"]
    t.check(status["status"] == "running", f"{label}: the source guest keeps running")


def dest_fails(dst, words, label):
    rc = dst.wait_exit()
    err = dst.stderr()
    t.check(rc != 0, f"{label}: the destination exits {rc}")
    t.check(all(w in err for w in words),
            f"{label}: the destination says why ({err.strip().splitlines()[-1] if err.strip() else ''})")


def expect_refusal(ctx, src, dst, uri, send_args, src_words, dst_words, label):
    rc, summary, err = ctx.migrate(src, uri, ["--io-timeout", "10"] + list(send_args))
    error = (summary or {}).get("error", "")
    t.check(rc == 1 and summary and summary["status"] == "failed" and
            all(w in error for w in src_words),
            f"{label}: migrate-send fails with a clear message ({error})")
    t.check(summary.get("bytes_sent", 0) < 4096,
            f"{label}: no memory was sent ({summary.get('bytes_sent')} bytes)")
    source_running(src, label)
    dest_fails(dst, dst_words, label)


def test(ctx):
    f = make_pki(ctx)

    # The move itself, a guest dirtying memory and verifying it.
    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "512M", "--cmdline",
                      f"seconds=0 dirty=64M rate=40M verify=1 hb={HB_MS}"], name="tls-src")
    src.wait_line(r"^HB seq=10\b")
    dst = ctx.recv_vm(dest_args(f), name="tls-dst", listen="tls:127.0.0.1:0")
    t.check(dst.uri.startswith("tls:127.0.0.1:"), f"the destination listens on {dst.uri}")
    rc, out, err = ctx.vmhop(["compat-check", "--control", src.control, "--to", dst.uri] + src_args(f))
    t.check(rc == 0 and "verdict: PASS" in out, f"compat-check over tls: passes (exit {rc}, {err.strip()})")
    rc, summary, err = ctx.migrate(src, dst.uri, src_args(f))
    t.check(rc == 0 and summary and summary["status"] == "completed",
            f"tls: migrate-send completes ({summary}, {err.strip()[-300:]})")
    t.check(src.wait_exit() == 0, "tls: the source process exits 0 after the move")
    dst.wait_line(r"^HB seq=", after=5)
    before = len(t.hb_records(src.serial()))
    joined = t.hb_records(t.moved_console([src, dst]))
    t.check(len(joined) > before + 1 and joined[before][0] == joined[before - 1][0] + 1,
            "tls: heartbeats continue on the destination with the next number")
    t.check("received the guest from tls:127.0.0.1:" in dst.stderr(),
            "tls: the destination names the source by its tls: address")
    dst.ctl("shutdown")
    verdict = dst.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS",
            f"tls: the guest verifies PASS on the destination ({verdict.group(0)})")
    t.check(dst.wait_exit() == 0, "tls: the destination exits 0 when the guest shuts down")

    # Refusals, against one running source.
    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "1", "--memory", "256M", "--cmdline",
                      f"seconds=0 dirty=8M rate=10M verify=1 hb={HB_MS}"], name="src",
                     env={"VMHOP_TEST_HOOKS": "1"})
    src.wait_line(r"^HB seq=3\b")

    rc, out, err = ctx.vmhop(["migrate-send", "--control", src.control, "--to",
                              "tls:127.0.0.1:9", "--tls-ca", f("ca.pem")])
    t.check(rc == 2 and "missing: --tls-cert FILE, --tls-key FILE" in err,
            f"migrate-send: tls: without the files is a usage error ({err.strip()})")
    rc, out, err = ctx.vmhop(["migrate-recv", "--listen", "tls:127.0.0.1:0", "--tls-cert",
                              f("dest.pem")])
    t.check(rc == 2 and "missing: --tls-ca FILE, --tls-key FILE" in err,
            f"migrate-recv: tls: without the files is a usage error ({err.strip()})")

    loose = ctx.path("loose.key")
    shutil.copy(f("src.key"), loose)
    os.chmod(loose, 0o644)
    dst = ctx.recv_vm(dest_args(f), name="loose-dst", listen="tls:127.0.0.1:0")
    rc, summary, err = ctx.migrate(src, dst.uri, ["--tls-ca", f("ca.pem"), "--tls-cert",
                                                  f("src.pem"), "--tls-key", loose])
    error = (summary or {}).get("error", "")
    t.check(rc == 1 and "readable by group or others" in error,
            f"a key readable by others is refused ({error})")
    source_running(src, "loose key")
    dst.kill()

    dst = ctx.recv_vm(dest_args(f), name="ca-dst", listen="tls:127.0.0.1:0")
    expect_refusal(ctx, src, dst, dst.uri, src_args(f, "other"),
                   ["does not trust our certificate", "unknown CA"],
                   ["is not signed by the CA in", "unknown CA"], "wrong CA")

    dst = ctx.recv_vm(dest_args(f), name="expired-dst", listen="tls:127.0.0.1:0")
    expect_refusal(ctx, src, dst, dst.uri, src_args(f, "expired"),
                   ["it has expired"], ["expired on"], "expired certificate")

    dst = ctx.recv_vm(dest_args(f), name="allow-dst", listen="tls:127.0.0.1:0")
    expect_refusal(ctx, src, dst, dst.uri, src_args(f, "rogue"),
                   ["--tls-allow"], ["CN=vmhop-rogue", "not in --tls-allow"],
                   "subject not allowed")

    dst = ctx.recv_vm(dest_args(f), name="plain-src-dst", listen="tls:127.0.0.1:0")
    expect_refusal(ctx, src, dst, "tcp:" + dst.uri[4:], (),
                   ["closed the connection"], ["does not speak TLS", "tcp: instead of tls:"],
                   "plaintext source to a TLS listener")

    dst = ctx.recv_vm(name="plain-dst")
    expect_refusal(ctx, src, dst, "tls:" + dst.uri[4:], src_args(f),
                   ["answered in plaintext, not TLS"], ["speaks TLS to a plaintext endpoint"],
                   "TLS source to a plaintext listener")

    # A client without a certificate: vmhop's source always has one, so a
    # bare TLS client stands in for it.
    dst = ctx.recv_vm(dest_args(f), name="nocert-dst", listen="tls:127.0.0.1:0")
    host, port = dst.uri[4:].rsplit(":", 1)
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.minimum_version = ssl.TLSVersion.TLSv1_3
    c.load_verify_locations(f("ca.pem"))
    refused = ""
    with socket.create_connection((host, int(port)), timeout=30) as s:
        try:
            with c.wrap_socket(s, server_hostname=host) as tls:
                tls.sendall(b"VMHOPMIG")
                tls.recv(1)
        except (ssl.SSLError, OSError) as e:
            refused = str(e)
    t.check("CERTIFICATE_REQUIRED" in refused.upper(),
            f"client without a certificate: the client is refused ({refused})")
    source_running(src, "client without a certificate")
    dest_fails(dst, ["presented no certificate"], "client without a certificate")

    # Past the handshake, the migration's own failures work over TLS too:
    # the destination's refusal reaches the source, and a connection cut in
    # the middle of the memory copy fails cleanly.
    older = ctx.recv_vm(dest_args(f), name="sp2-dst", listen="tls:127.0.0.1:0",
                        env={"VMHOP_RELEASE_LEVEL": "SP2"})
    expect_refusal(ctx, src, older, older.uri, src_args(f), ["SP3", "SP2"], ["SP3"],
                   "a destination refusing at hello over TLS")
    dst = ctx.recv_vm(dest_args(f) + ["--io-timeout", "2"], name="cut-dst",
                      listen="tls:127.0.0.1:0")
    rc, summary, err = ctx.migrate(src, dst.uri, src_args(f) + ["--io-timeout", "2",
                                                                "--max-downtime", "1"],
                                   env={"VMHOP_MIGRATE_FAULT": "round1:cut"})
    t.check(rc == 1 and summary and summary["status"] == "failed" and summary.get("error"),
            f"a cut during round 1 over TLS: migrate-send fails ({(summary or {}).get('error')})")
    source_running(src, "cut during round 1")
    t.check(dst.wait_exit() != 0 and not dst.lines(r"^HB"),
            "cut during round 1: the destination exits non-zero without running the guest")

    # unix: on one host.
    sock = ctx.path("mig.sock")
    dst = ctx.recv_vm(name="unix-dst", listen=f"unix:{sock}")
    t.check(dst.uri == f"unix:{sock}", f"the destination listens on {dst.uri}")
    rc, summary, err = ctx.migrate(src, dst.uri)
    t.check(rc == 0 and summary and summary["status"] == "completed",
            f"unix: migrate-send completes ({summary}, {err.strip()[-300:]})")
    t.check(src.wait_exit() == 0, "unix: the source process exits 0 after the move")
    dst.wait_line(r"^HB seq=", after=3)
    dst.ctl("shutdown")
    verdict = dst.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS",
            f"unix: the guest verifies PASS on the destination ({verdict.group(0)})")
    t.check(dst.wait_exit() == 0, "unix: the destination exits 0")
    t.check(not os.path.exists(sock), "unix: the listener's socket file is gone")


t.main(test)
