"""Incremental back-migration of a copied disk. A -> B copies the disk in
full (host data the guest never touches included); the guest then rewrites
its 8 MiB region on B; B -> A with --incremental-disks sends only those
blocks (about 8 MiB, not the whole image) onto the copy A kept, and the guest
verifies PASS on A. When the old copy was modified after the VM left it, the
incremental move is refused at pre-flight naming the disk and nothing
changes; --full-copy-fallback then copies in full, replacing the old copy
only once the destination runs the guest."""
import hashlib
import os
import subprocess
import sys

import vmhoptest as t
from diskback import MIB, REGION, Hosts, host_data, rewrite_region


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test(ctx):
    h = Hosts(ctx)
    a_img, data0, bdir, b_img, a, b, full = h.a_img, h.data0, h.bdir, h.b_img, h.a, h.b, h.full
    t.check(a.wait_exit() == 0 and os.path.exists(a_img + ".vmhop-gen"),
            "A's process ends, leaving a generation record beside its image")
    rewrite_region(b)

    a2 = ctx.recv_vm(["--disk-map", f"data={a_img}"], name="a2")
    rc, s, err = ctx.migrate(b, a2.uri, ["--copy-disk", "data", "--incremental-disks", "--verify-disks"])
    d = (s or {}).get("disks", [{}])[0]
    sent, resent = s.get("disk_bytes_sent", 0), d.get("blocks_resent", 0) * 65536
    t.check(rc == 0 and d.get("mode") == "incremental",
            f"B -> A moves incrementally ({d.get('mode')}; {s.get('error')}; {err.strip()[-200:]})")
    t.check(REGION <= sent <= REGION + resent + 65536,
            f"only the rewritten region went: {sent / 1048576:.2f} MiB ({resent / 1048576:.2f} MiB of "
            f"it blocks rewritten during the move), against {full / 1048576:.1f} MiB for the full copy")
    t.check(d.get("verified") is True, "the digests of both sides agree")
    t.check(b.wait_exit() == 0, "B's process ends")
    t.check(host_data(a_img) == data0, "A's image kept the host data the guest never touched")
    t.check(not os.path.exists(a_img + ".vmhop-gen"),
            "A's old generation record is gone: the image moved on")
    rewrite_region(a2)

    # The copy B kept is modified behind vmhop's back: no incremental move.
    with open(b_img, "r+b") as f:
        f.seek(40 << 20)
        f.write(b"edited by hand")
    edited = (sha(b_img), os.stat(b_img).st_mtime_ns)
    b2 = ctx.recv_vm(["--disk-dir", bdir], name="b2")
    rc, s, err = ctx.migrate(a2, b2.uri, ["--copy-disk", "data", "--incremental-disks"])
    why = (s or {}).get("error", "")
    t.check(rc == 1 and "disk data" in why and "modified" in why,
            f"an incremental move onto a modified copy is refused, naming the disk ({why})")
    t.check(not s.get("disk_bytes_sent") and s.get("bytes_sent", 0) < 4096,
            "refused before anything was copied")
    t.check(b2.wait_exit() != 0, "that destination exits non-zero")
    t.check((sha(b_img), os.stat(b_img).st_mtime_ns) == edited and
            sorted(os.listdir(bdir)) == ["data.img", "data.img.vmhop-gen"],
            f"the modified copy and its record are untouched ({os.listdir(bdir)})")
    t.check(a2.ctl("query-status")["return"]["status"] == "running", "the guest keeps running on A")

    b3 = ctx.recv_vm(["--disk-dir", bdir], name="b3")
    rc, s, err = ctx.migrate(a2, b3.uri, ["--copy-disk", "data", "--incremental-disks",
                                          "--full-copy-fallback", "--verify-disks"])
    d = (s or {}).get("disks", [{}])[0]
    t.check(rc == 0 and d.get("mode") == "copied" and d.get("verified") is True,
            f"--full-copy-fallback copies in full instead ({d}; {s.get('error')})")
    t.check(a2.wait_exit() == 0, "A's process ends")
    t.check(sorted(os.listdir(bdir)) == ["data.img"] and host_data(b_img) == data0,
            f"the new copy took the old one's place ({os.listdir(bdir)})")
    b3.wait_line(r"^HB seq=")
    seq = max(b3.heartbeats())
    b3.wait_line(r"^HB seq=", after=seq + 5)
    b3.ctl("shutdown")
    verdict = b3.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS" and "disk=ok" in verdict.group(2),
            f"after A -> B -> A -> B the guest verifies memory and disk PASS ({verdict.group(0)})")
    t.check(b3.wait_exit() == 0, "the last destination exits 0")
    p = subprocess.run([sys.executable, t.CHECK_DISK, b_img, "--mib", str(MIB)], capture_output=True,
                       text=True)
    t.check(p.returncode == 0, f"the final copy holds the guest's pattern ({p.stdout.strip()}{p.stderr.strip()})")


t.main(test)
