"""Shared by the incremental back-migration tests (test-migrate-diskcopy-back,
-restart): the guest that keeps rewriting an 8 MiB disk region, an image
with host data it never touches, and the waits on its progress."""
import hashlib
import os

import vmhoptest as t

MIB = 8
REGION = MIB << 20
RATE = 4 << 20
GUEST = (f"seconds=0 dirty=16M rate=10M verify=1 disk=rw disk_mib={MIB} disk_loop=1 "
         f"disk_rate={RATE} hb=100")


def make_image(path):
    """64 MiB, sparse but for 16 MiB of random host data at 32 MiB."""
    with open(path, "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(os.urandom(16 << 20))


def host_data(path):
    with open(path, "rb") as f:
        f.seek(32 << 20)
        return hashlib.sha256(f.read(16 << 20)).hexdigest()


def rewrite_region(vm):
    """Waits until the guest has rewritten its whole region since now."""
    vm.wait_line(r"^HB seq=")
    seq = max(vm.heartbeats())
    vm.wait_line(r"^HB seq=", after=seq + int(10 * (REGION / RATE) * 1.5) + 5)


def boot(ctx, img, name):
    """The guest on img as disk `data`, once its first pass over the region is done."""
    vm = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--disk", f"{img},id=data,cache=none",
                     "--cmdline", GUEST], name=name)
    vm.wait_line(r"^DISK ok")
    return vm


class Hosts:
    """A's image with host data (.a_img, its digest .data0), B's disk
    directory (.bdir, the copy .b_img), and the first move: the guest booted
    on A and moved to B with a full copy of its disk (.a, .b, .full bytes)."""

    def __init__(self, ctx):
        self.a_img = ctx.path("a.img")
        make_image(self.a_img)
        self.data0 = host_data(self.a_img)
        self.bdir = ctx.path("host-b")
        os.mkdir(self.bdir)
        self.b_img = os.path.join(self.bdir, "data.img")
        self.a = boot(ctx, self.a_img, "a")
        self.b = ctx.recv_vm(["--disk-dir", self.bdir], name="b")
        rc, s, err = ctx.migrate(self.a, self.b.uri, ["--copy-disk", "data"])
        self.full = s and s.get("disk_bytes_sent", 0)
        t.check(rc == 0 and self.full >= (16 << 20) + REGION,
                f"A -> B copies the disk in full ({self.full} bytes; {s and s.get('error')})")
