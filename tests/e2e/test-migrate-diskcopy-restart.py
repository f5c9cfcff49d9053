"""A copied disk's change record survives its VM: A -> B copies the disk; B's
VM is stopped and leaves PATH.vmhop-changes (the blocks written since the
arrival and the copy's generation); a VM booted from cold on B's image takes
the record (and removes it) and rewrites its region; B -> A with
--incremental-disks then sends only the blocks written since the arrival,
over both lives, and the digests agree. A record the image no longer matches
(written behind vmhop's back) is dropped with a warning, and the move back is
refused naming the disk instead of sending too little.""" 
import os

import vmhoptest as t
from diskback import REGION, Hosts, boot, host_data, rewrite_region


def test(ctx):
    h = Hosts(ctx)
    a_img, data0, bdir, b_img, a, b, full = h.a_img, h.data0, h.bdir, h.b_img, h.a, h.b, h.full
    b_rec = b_img + ".vmhop-changes"
    t.check(a.wait_exit() == 0, "A's process ends")
    b.wait_line(r"^HB seq=")
    b.ctl("quit")
    t.check(b.wait_exit() == 0 and os.path.exists(b_rec),
            f"B's VM stops and leaves its change record ({sorted(os.listdir(bdir))})")

    b2 = boot(ctx, b_img, "b2")
    t.check(not os.path.exists(b_rec), "a VM booted on B's image takes the record and removes it")
    rewrite_region(b2)

    a2 = ctx.recv_vm(["--disk-map", f"data={a_img}"], name="a2")
    rc, s, err = ctx.migrate(b2, a2.uri, ["--copy-disk", "data", "--incremental-disks", "--verify-disks"])
    d = (s or {}).get("disks", [{}])[0]
    sent, resent = s.get("disk_bytes_sent", 0), d.get("blocks_resent", 0) * 65536
    t.check(rc == 0 and d.get("mode") == "incremental",
            f"the restarted VM moves back incrementally ({d.get('mode')}; {s.get('error')}; "
            f"{err.strip()[-200:]})")
    t.check(REGION <= sent <= REGION + resent + 65536,
            f"only the region written since the arrival went: {sent / 1048576:.2f} MiB "
            f"({resent / 1048576:.2f} MiB of it rewritten during the move), against "
            f"{full / 1048576:.1f} MiB for the full copy")
    t.check(d.get("verified") is True, "the digests of both sides agree")
    t.check(b2.wait_exit() == 0 and not os.path.exists(b_rec),
            "B's process ends as migrated, leaving no change record (the image is the old copy now)")
    t.check(host_data(a_img) == data0, "A's image kept the host data the guest never touched")

    # A2's VM arrived (incrementally): stopped, it leaves a record; the image
    # is then written behind vmhop's back.
    a_rec = a_img + ".vmhop-changes"
    a2.wait_line(r"^HB seq=")
    a2.ctl("quit")
    t.check(a2.wait_exit() == 0 and os.path.exists(a_rec), "A's VM stops and leaves its change record")
    with open(a_img, "r+b") as f:
        f.seek(40 << 20)
        f.write(b"edited by hand")
    a3 = boot(ctx, a_img, "a3")
    t.check(not os.path.exists(a_rec) and "dropped" in a3.stderr() and a_rec in a3.stderr(),
            f"a VM booted on the edited image drops the record with a warning "
            f"({a3.stderr().strip()[-300:]})")
    before = sorted(os.listdir(bdir))
    b3 = ctx.recv_vm(["--disk-dir", bdir], name="b3")
    rc, s, err = ctx.migrate(a3, b3.uri, ["--copy-disk", "data", "--incremental-disks"])
    why = (s or {}).get("error", "")
    t.check(rc == 1 and "disk data" in why and "no incremental copy possible" in why,
            f"without the record the incremental move is refused, naming the disk ({why})")
    # Refused before the source connects: B's receiver still waits.
    b3.kill()
    t.check(sorted(os.listdir(bdir)) == before, f"nothing changed on B ({sorted(os.listdir(bdir))})")
    a3.ctl("shutdown")
    verdict = a3.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS" and "disk=ok" in verdict.group(2),
            f"the guest on A verifies memory and disk PASS ({verdict.group(0)})")
    t.check(a3.wait_exit() == 0, "A's last VM exits 0")


t.main(test)
