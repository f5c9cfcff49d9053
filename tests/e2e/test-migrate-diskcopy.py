"""Selective disk copy during a live migration (vmhop-migrate-send(1)
--copy-disk). A guest with two disks, one on shared storage (the same image
opened by both processes) and one copied, keeps writing both while it also
dirties memory: after the move both disks and its memory verify PASS, the
copy holds the guest's pattern, and --verify-disks digests agree. A 4 GiB
sparse disk holding 64 MiB moves as about 64 MiB and stays sparse. A target
that already exists is refused at pre-flight with nothing changed; bad
options get one-line errors."""
import hashlib
import os
import subprocess
import sys

import vmhoptest as t

MIB = 4
GUEST = f"seconds=0 dirty=32M rate=20M verify=1 disk=rw disk_mib={MIB} disk_loop=1 hb=100"


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def check_disk(img, index):
    p = subprocess.run([sys.executable, t.CHECK_DISK, img, "--mib", str(MIB), "--disk", str(index)],
                       capture_output=True, text=True)
    return p.returncode == 0, (p.stdout + p.stderr).strip()


def two_disks(ctx):
    shared, copied = ctx.path("shared.img"), ctx.path("copied.img")
    for img in (shared, copied):
        with open(img, "wb") as f:
            f.truncate(64 << 20)
    alias = ctx.path("shared-seen-elsewhere.img")
    os.symlink(shared, alias)
    ddir = ctx.path("dst-disks")
    os.mkdir(ddir)
    src = ctx.run_vm(["--kernel", t.GUEST, "--cpus", "2", "--memory", "256M",
                      "--disk", f"{shared},id=shared,cache=none",
                      "--disk", f"{copied},id=copied,cache=none", "--cmdline", GUEST], name="src")
    src.wait_line(r"^DISK ok")
    src.wait_line(r"^DISK1 ok")
    src.wait_line(r"^HB seq=10\b")

    dst = ctx.recv_vm(["--disk-map", f"{shared}={alias}", "--disk-dir", ddir], name="dst")
    rc, s, err = ctx.migrate(src, dst.uri, ["--copy-disk", "copied", "--verify-disks"])
    t.check(rc == 0 and s["status"] == "completed", f"the migration completes ({s}, {err.strip()[-300:]})")
    disks = {d["id"]: d for d in s.get("disks", [])}
    d = disks.get("copied", {})
    t.check(list(disks) == ["copied"] and d.get("mode") == "copied",
            f"only the chosen disk is copied ({s.get('disks')})")
    t.check(s["disk_bytes_sent"] >= (MIB << 20) and s["disk_bytes_sent"] == d["bytes_sent"],
            f"disk_bytes_sent counts the copy ({s['disk_bytes_sent']} bytes, "
            f"{d.get('rounds')} rounds, {d.get('blocks_resent')} blocks resent)")
    t.check(d.get("verified") is True and d.get("sha256_source") == d.get("sha256_destination"),
            f"--verify-disks: both sides computed the same SHA-256 ({d.get('sha256_source')})")
    rows = {r["rule"]: r for r in s["preflight"]["rows"] if r["rule"] == "disk-reach"}
    t.check(True, f"pre-flight: {[r['reason'] for r in s['preflight']['rows'] if r['rule'] == 'disk-reach']}")
    t.check(src.wait_exit() == 0, "the source exits 0")
    t.check(os.path.exists(copied + ".vmhop-gen"),
            "the source recorded the copy's generation beside its image")

    cfg = dst.ctl("query-config")["return"]
    paths = {x["id"]: x["path"] for x in cfg.get("disks", [])}
    target = os.path.join(ddir, "copied.img")
    t.check(paths.get("shared") == alias and paths.get("copied") == target,
            f"the destination opened the shared disk through its path and the copy in --disk-dir ({paths})")
    dst.wait_line(r"^HB seq=")
    seq = max(dst.heartbeats())
    dst.wait_line(r"^HB seq=", after=seq + 5)
    dst.ctl("shutdown")
    verdict = dst.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS" and "disk=ok" in verdict.group(2),
            f"memory and both disks verify PASS on the destination ({verdict.group(0)})")
    dst.wait_line(r"^DISK final ok")
    dst.wait_line(r"^DISK1 final ok")
    t.check(dst.wait_exit() == 0, "the destination exits 0")
    ok, out = check_disk(shared, 0)
    t.check(ok, f"the shared image holds the guest's pattern ({out})")
    ok, out = check_disk(target, 1)
    t.check(ok, f"the copy holds what the guest wrote, up to its last write ({out})")


def sparse(ctx):
    img = ctx.path("big.img")
    data = os.urandom(4 << 20)
    with open(img, "wb") as f:
        f.truncate(4 << 30)
        for k in range(16):		# 16 x 4 MiB spread over the 4 GiB
            f.seek(k * (256 << 20) + (k * 12288))
            f.write(data[k:] + data[:k])
    ddir = ctx.path("sparse-dst")
    os.mkdir(ddir)
    src = ctx.run_vm(["--kernel", t.GUEST, "--memory", "128M", "--disk", f"{img},id=big,cache=none",
                      "--cmdline", "seconds=0 verify=1 hb=100"], name="src-sparse")
    src.wait_line(r"^HB seq=3\b")
    dst = ctx.recv_vm(["--disk-dir", ddir], name="dst-sparse")
    rc, s, err = ctx.migrate(src, dst.uri, ["--copy-all-disks"])
    t.check(rc == 0, f"the 4 GiB sparse disk moves ({s and s.get('error')}; {err.strip()[-200:]})")
    sent = s["disk_bytes_sent"]
    t.check(abs(sent - (64 << 20)) <= (64 << 20) // 10,
            f"disk_bytes_sent is within 10% of the 64 MiB of data ({sent / 1048576:.1f} MiB)")
    t.check(src.wait_exit() == 0, "the source exits 0")
    copy = os.path.join(ddir, "big.img")
    st = os.stat(copy)
    alloc = st.st_blocks * 512
    t.check(st.st_size == 4 << 30 and alloc <= (64 << 20) * 11 // 10,
            f"the copy is sparse: {st.st_size >> 20} MiB long, {alloc / 1048576:.1f} MiB allocated")
    dst.ctl("quit")
    dst.wait_exit()
    t.check(sha(copy) == sha(img), "the copy equals the source image byte for byte")


def refusals(ctx):
    img = ctx.path("r.img")
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    ddir = ctx.path("taken")
    os.mkdir(ddir)
    taken = os.path.join(ddir, "data.img")
    with open(taken, "wb") as f:
        f.write(b"someone else's image" * 1000)
    before = (sha(taken), os.stat(taken).st_mtime_ns)
    src = ctx.run_vm(["--kernel", t.GUEST, "--memory", "128M", "--disk", f"{img},id=data,cache=none",
                      "--cmdline", f"seconds=0 verify=1 disk=rw disk_mib={MIB} disk_loop=1 hb=100"],
                     name="src-refuse")
    src.wait_line(r"^DISK ok")

    dst = ctx.recv_vm(["--disk-dir", ddir], name="dst-taken")
    rc, s, err = ctx.migrate(src, dst.uri, ["--copy-disk", "data"])
    why = (s or {}).get("error", "")
    t.check(rc == 1 and taken in why and "exists" in why,
            f"an existing target is refused at pre-flight, naming it ({why})")
    t.check(s.get("bytes_sent", 0) < 4096 and not s.get("disk_bytes_sent"),
            f"nothing was copied ({s.get('bytes_sent')} bytes on the wire)")
    t.check(dst.wait_exit() != 0, "that destination exits non-zero")
    t.check((sha(taken), os.stat(taken).st_mtime_ns) == before and os.listdir(ddir) == ["data.img"],
            "the existing file is untouched and nothing else appeared in --disk-dir")
    t.check(not os.path.exists(img + ".vmhop-gen"), "the source recorded no generation")
    t.check(src.ctl("query-status")["return"]["status"] == "running", "the source guest keeps running")

    nodir = ctx.recv_vm([], name="dst-nodir")
    rc, s, err = ctx.migrate(src, nodir.uri, ["--copy-disk", "data"])
    why = (s or {}).get("error", "")
    t.check(rc == 1 and "--disk-dir" in why, f"a destination with nowhere to put the copy says so ({why})")
    nodir.wait_exit()

    rc, out, err = ctx.vmhop(["migrate-send", "--control", src.control, "--to", "tcp:127.0.0.1:9",
                              "--copy-disk", "nosuch"])
    t.check(rc != 0 and "nosuch" in err and len(err.strip().splitlines()) == 1,
            f"an unknown disk id: one line ({err.strip()})")
    rc, out, err = ctx.vmhop(["migrate-send", "--control", src.control, "--to", "tcp:127.0.0.1:9",
                              "--verify-disks"])
    t.check(rc == 2 and "--copy-disk" in err, f"--verify-disks alone is refused ({err.strip()})")
    rc, out, err = ctx.vmhop(["migrate-recv", "--listen", "tcp:127.0.0.1:0", "--disk-dir",
                              ctx.path("nowhere")])
    t.check(rc == 2 and "not a directory" in err, f"--disk-dir must exist ({err.strip()})")

    src.ctl("shutdown")
    verdict = src.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"the source guest verifies PASS ({verdict.group(0)})")
    src.wait_exit()


def test(ctx):
    two_disks(ctx)
    sparse(ctx)
    refusals(ctx)


t.main(test)
