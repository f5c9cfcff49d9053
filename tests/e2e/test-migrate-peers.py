"""Peers that are not a vmhop destination, or one that may not receive this
guest: a web server, a peer sending garbage, one that hangs up, one that
says nothing, and a destination at an older release level (SP3 -> SP2 is
refused at hello, before any memory moves; SP2 -> SP3 works). Each failure
has a clear message and leaves the source guest running; bad options are
refused before anything starts."""
import socket
import threading

import vmhoptest as t


class FakePeer:
    """A TCP server on a free loopback port that answers every connection
    with `reply` (bytes; None: say nothing) and then closes."""

    def __init__(self, reply, linger=0.0):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.uri = f"tcp:127.0.0.1:{self.sock.getsockname()[1]}"
        self.reply, self.linger = reply, linger
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.recv(65536)
                if self.reply:
                    c.sendall(self.reply)
                if self.linger:
                    threading.Event().wait(self.linger)
            except OSError:
                pass
            c.close()


def expect_refusal(ctx, src, uri, words, label, args=()):
    rc, summary, err = ctx.migrate(src, uri, ["--io-timeout", "2"] + list(args))
    error = (summary or {}).get("error", "")
    t.check(rc == 1 and summary and summary["status"] == "failed" and all(w in error for w in words),
            f"{label}: fails with a clear message ({error})")
    t.check(summary.get("bytes_sent", 0) < 4096, f"{label}: no memory was sent "
            f"({summary.get('bytes_sent')} bytes)")
    status = src.ctl("query-status")["return"]
    t.check(status["status"] == "running", f"{label}: the source guest keeps running")


def test(ctx):
    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "1", "--memory", "256M", "--cmdline",
                      "seconds=0 dirty=8M rate=10M verify=1 hb=100"], name="src")
    src.wait_line(r"^HB seq=3\b")

    web = FakePeer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    expect_refusal(ctx, src, web.uri, ["not a vmhop migration peer", "HTTP/1.1"], "a web server")
    junk = FakePeer(b"VMHOPMIG\xff\xff\xff\xff" + b"x" * 64)
    expect_refusal(ctx, src, junk.uri, ["message"], "a peer sending a bogus frame")
    hangup = FakePeer(None)
    expect_refusal(ctx, src, hangup.uri, ["closed the connection"], "a peer that hangs up")
    silent = FakePeer(None, linger=10)
    expect_refusal(ctx, src, silent.uri, ["no answer", "2000 ms"], "a silent peer")
    # A port nobody listens on.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"tcp:127.0.0.1:{s.getsockname()[1]}"
    s.close()
    expect_refusal(ctx, src, dead, ["cannot connect", "refused"], "a closed port")

    older = ctx.recv_vm(name="dst-sp2", env={"VMHOP_RELEASE_LEVEL": "SP2"})
    expect_refusal(ctx, src, older.uri, ["SP3", "SP2"], "an SP2 destination for an SP3 source")
    t.check(older.wait_exit() != 0, "the older destination exits non-zero")
    t.check("SP3" in older.stderr(), "and says why on its side too")

    for bad, words in ((["--max-downtime", "0"], "--max-downtime"),
                       (["--compress", "lz4"], "--compress"),
                       (["--max-bandwidth", "fast"], "--max-bandwidth")):
        rc, out, err = ctx.vmhop(["migrate-send", "--control", src.control, "--to",
                                  "tcp:127.0.0.1:1"] + bad)
        t.check(rc == 2 and words in err, f"migrate-send {' '.join(bad)} is refused: {err.strip()}")
    rc, out, err = ctx.vmhop(["migrate-send", "--control", src.control, "--to", "file:" + ctx.path("x.stream")])
    t.check(rc == 2 and "file:" in err, f"a file: destination is refused: {err.strip()}")
    rc, out, err = ctx.vmhop(["migrate-recv", "--listen", "file:" + ctx.path("y.stream")])
    t.check(rc == 2 and "file:" in err, f"a file: listener is refused: {err.strip()}")
    rc, out, err = ctx.vmhop(["migrate-send", "--control", src.control, "--to", "udp:1.2.3.4:5"])
    t.check(rc == 2 and "unknown transport" in err, f"an unknown transport is refused: {err.strip()}")
    rc, out, err = ctx.vmhop(["migrate-recv", "--listen", "tcp:127.0.0.1:99999"])
    t.check(rc == 2 and "port" in err, f"migrate-recv refuses a bad port: {err.strip()}")
    src.ctl("pause")
    rc, out, err = ctx.vmhop(["migrate-send", "--control", src.control, "--to", dead, "--json"])
    t.check(rc == 1 and "resume it first" in err and '"status":"failed"' in out,
            f"a paused VM is not migrated live: {err.strip()}")
    src.ctl("resume")

    sp2 = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "1", "--memory", "128M", "--cmdline",
                      "seconds=0 hb=100"], name="src-sp2", env={"VMHOP_RELEASE_LEVEL": "SP2"})
    sp2.wait_line(r"^HB seq=3\b")
    newer = ctx.recv_vm(name="dst-sp3")
    rc, summary, err = ctx.migrate(sp2, newer.uri)
    t.check(rc == 0 and summary["status"] == "completed", "an SP2 source migrates to SP3")
    newer.wait_line(r"^HB seq=", after=2)
    newer.ctl("quit")
    newer.wait_exit()

    src.ctl("shutdown")
    verdict = src.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"the source guest verifies PASS ({verdict.group(0)})")


t.main(test)
