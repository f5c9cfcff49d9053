"""vmhop snapshot schedule: a daemon checkpointing a dirtying guest every 2 s,
a full checkpoint every 2, pruned to the newest 3 chains. After ~13 s at
most 3 chains remain, every file verifies, the newest file of each chain
restores (the guest continues and verifies PASS), and files that are not the
scheduler's are untouched. --once continues the chain, and falls back to a
full checkpoint when the VM refuses the incremental. Killing the daemon
while a checkpoint is being written leaves no partial file under a final
name (the VM finishes its write); killing the VM mid-write leaves only a
temporary file, and the daemon exits 1."""
import json
import os
import re
import signal
import subprocess
import time

import vmhoptest as t

NAME_RX = re.compile(r"^(.+)-(\d{8}T\d{6}\.\d{3}Z)-(full|incr)\.vmhop$")


def ours(d, name):
    """The scheduler's files of VM `name` in d, oldest first: [(file, kind)]."""
    out = []
    for f in sorted(os.listdir(d)):
        m = NAME_RX.match(f)
        if m and m.group(1) == name:
            out.append((f, m.group(3)))
    return out


def chains(files):
    """[[file, ...]] : a full checkpoint and the incrementals after it."""
    cs = []
    for f, kind in files:
        if kind == "full":
            cs.append([f])
        elif cs:
            cs[-1].append(f)
        else:
            raise t.TestFailure(f"{f}: an incremental without its full checkpoint was kept")
    return cs


def start_daemon(ctx, tag, args):
    out = open(ctx.path(f"{tag}.out"), "w")
    err = open(ctx.path(f"{tag}.err"), "w")
    p = subprocess.Popen([t.VMHOP, "snapshot", "schedule"] + args, stdout=out, stderr=err,
                         stdin=subprocess.DEVNULL)
    return p, out, err


def daemon_log(ctx, tag):
    with open(ctx.path(f"{tag}.err"), errors="replace") as f:
        return f.read()


def verify(ctx, path):
    code, out, err = ctx.vmhop(["snapshot", "verify", path])
    return code == 0 and "verified" in out, ((out + err).strip().splitlines() or [""])[-1]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise t.TestFailure(f"no {what} within {timeout}s")
        time.sleep(0.01)


def restore_and_check(ctx, path, tag):
    r = t.Vmhop(ctx, tag, ["snapshot", "restore", path], serial=True, control=True)
    ctx.procs.append(r)
    first = int(r.wait_line(r"^HB seq=(\d+)").group(1))
    r.wait_line(r"^HB seq=", after=3)
    r.ctl("shutdown")
    verdict = r.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    rc = r.wait_exit()
    t.check(verdict.group(1) == "PASS" and rc == 0,
            f"{os.path.basename(path)} restores: heartbeats from {first}, {verdict.group(0)}, rc={rc}")


def test(ctx):
    vm = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--name", "sched", "--cmdline",
                     "seconds=0 dirty=64M rate=16M verify=1 hb=100"], name="src")
    vm.wait_line(r"^HB seq=5\b")
    d = ctx.path("cps")
    os.mkdir(d)
    # Files that are not this scheduler's: another VM's checkpoint, a write
    # in progress, the operator's own file.
    foreign = ["other-20200101T000000.000Z-full.vmhop",
               "sched-20200101T000000.000Z-full.vmhop.tmp.AbC123",
               "sched-notes.vmhop", "sched-2020-full.vmhop"]
    for f in foreign:
        with open(os.path.join(d, f), "w") as fh:
            fh.write("not a checkpoint\n")

    p, out, err = start_daemon(ctx, "daemon", ["--control", vm.control, "--dir", d, "--every", "2s",
                                               "--keep", "3", "--full-every", "2", "--json"])
    try:
        time.sleep(13)
        t.check(p.poll() is None, "the daemon keeps running")
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        out.close()
        err.close()
    log = daemon_log(ctx, "daemon")
    t.check(rc == 0, f"SIGTERM: the daemon exits 0 (rc={rc}; {log.strip()[-300:]})")
    with open(ctx.path("daemon.out")) as f:
        results = [json.loads(line) for line in f if line.strip()]
    t.check(len(results) >= 6 and all(r["ok"] for r in results),
            f"{len(results)} checkpoints in ~13 s, all succeeded")
    t.check([r["kind"] for r in results[:4]] == ["full", "incr", "full", "incr"],
            f"a full checkpoint every 2 ({[r['kind'] for r in results]})")
    t.check(all(r["base"] == results[i - 1]["file"] for i, r in enumerate(results) if r["kind"] == "incr"),
            "each incremental is based on the checkpoint before it")
    lines = [l for l in log.splitlines() if re.search(r" checkpoint \S+ kind=", l)]
    t.check(len(lines) == len(results) and all(re.search(r"bytes=\d+ pause_ms=[\d.]+ .*chains=\d", l)
                                               for l in lines),
            "one log line per checkpoint with its file, bytes, pause and chains kept")
    pruned = sum(len(r["pruned"]) for r in results)
    t.check(pruned > 0, f"older chains were pruned ({pruned} files)")
    files = ours(d, "sched")
    cs = chains(files)
    t.check(1 <= len(cs) <= 3 and results[-1]["chains"] == len(cs),
            f"at most 3 chains remain ({[[f[len('sched-'):] for f in c] for c in cs]})")
    t.check(os.path.basename(results[-1]["file"]) == files[-1][0], "the newest checkpoint is kept")
    t.check(all(os.path.exists(os.path.join(d, f)) for f in foreign),
            "files that are not the scheduler's are untouched")
    for f, _ in files:
        good, why = verify(ctx, os.path.join(d, f))
        t.check(good, f"{f} verifies ({why})")

    # --once continues the newest chain (or starts one), then exits 0.
    code, o, e = ctx.vmhop(["snapshot", "schedule", "--control", vm.control, "--dir", d,
                            "--keep", "3", "--full-every", "2", "--once", "--json"])
    r = json.loads(o.strip().splitlines()[-1]) if o.strip() else {}
    newest_chain = cs[-1]
    want = "incr" if len(newest_chain) < 2 else "full"
    t.check(code == 0 and r.get("ok") and r.get("kind") == want,
            f"--once takes one checkpoint ({want}) and exits 0 ({e.strip()[-200:]})")
    # A checkpoint taken behind the scheduler's back: the VM refuses an
    # incremental on the chain's last file; --once falls back to a full one.
    code, o, e = ctx.vmhop(["snapshot", "create", "--control", vm.control, "--output",
                            ctx.path("manual.vmhop")])
    t.check(code == 0, "a manual checkpoint in between")
    files = ours(d, "sched")
    code, o, e = ctx.vmhop(["snapshot", "schedule", "--control", vm.control, "--dir", d,
                            "--keep", "3", "--full-every", "6", "--once", "--json"])
    rs = [json.loads(x) for x in o.strip().splitlines()]
    t.check(code == 0 and rs[-1]["ok"] and rs[-1]["kind"] == "full" and
            (len(rs) == 1 or not rs[0]["ok"]),
            f"--once: a refused incremental falls back to a full checkpoint "
            f"({[(x['kind'], x['ok'], x.get('error', '')) for x in rs]})")
    files = ours(d, "sched")
    cs = chains(files)
    t.check(len(cs) <= 3, f"still at most 3 chains ({len(cs)})")

    # The newest checkpoint of each chain restores (incrementals through
    # their chain). The source goes first: one guest at a time.
    vm.ctl("quit")
    vm.wait_exit()
    for i, c in enumerate(cs):
        restore_and_check(ctx, os.path.join(d, c[-1]), f"restored{i}")

    # A bigger guest, so that a checkpoint takes a while to write.
    big = ctx.run_vm(["--kernel", t.GUEST, "--memory", "1G", "--name", "big", "--cmdline",
                      "seconds=0 dirty=768M rate=0 passes=1 verify=1 hb=100"], name="big")
    big.wait_line(r"^HB seq=20\b")
    d2 = ctx.path("cps2")
    os.mkdir(d2)

    def tmp_files():
        return [f for f in os.listdir(d2) if ".vmhop.tmp." in f]

    # 1. SIGKILL the daemon while the VM writes: the VM finishes its write;
    #    a file appears under its final name only whole.
    p, out, err = start_daemon(ctx, "killed", ["--control", big.control, "--dir", d2, "--every", "30s",
                                               "--keep", "2"])
    try:
        wait_for(tmp_files, 60, "checkpoint being written")
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        out.close()
        err.close()
    at_kill = ours(d2, "big")
    for f, _ in at_kill:   # only if the write ended just then
        good, why = verify(ctx, os.path.join(d2, f))
        t.check(good, f"SIGKILL mid-write: {f} under its final name is whole ({why})")
    t.check(True, f"SIGKILL mid-write: no partial file under a final name ({at_kill}, {tmp_files()})")
    wait_for(lambda: not tmp_files(), 60, "end of the VM's write")
    done = ours(d2, "big")
    t.check(len(done) == 1, f"the VM finished the write it was asked for ({done})")
    good, why = verify(ctx, os.path.join(d2, done[0][0]))
    t.check(good, f"the file under the final name is whole: it verifies ({why})")
    t.check(big.ctl("query-status")["return"]["status"] == "running", "the VM keeps running")

    # 2. The VM itself dies mid-write: only a temporary file remains, and
    #    the daemon exits 1 (the VM went away).
    p, out, err = start_daemon(ctx, "orphaned", ["--control", big.control, "--dir", d2, "--every", "30s",
                                                 "--keep", "2", "--full-every", "1"])
    try:
        wait_for(tmp_files, 60, "second checkpoint being written")
        big.proc.send_signal(signal.SIGKILL)
        big.proc.wait()
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        out.close()
        err.close()
    log = daemon_log(ctx, "orphaned")
    t.check(rc == 1 and "went away" in log, f"the VM killed mid-write: the daemon exits 1 ({log.strip()[-200:]})")
    after = ours(d2, "big")
    t.check(after == done and tmp_files(),
            f"only a temporary file is left of the interrupted write ({os.listdir(d2)})")
    good, why = verify(ctx, os.path.join(d2, done[0][0]))
    t.check(good, f"the earlier checkpoint still verifies ({why})")


t.main(test)
