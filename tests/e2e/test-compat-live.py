"""Pre-flight checks against a real migrate-recv: the live compat-check
passes for a compatible pair and moves nothing; a receiver at an older
release level fails the release rule, and migrate-send refuses that move
before any memory record is sent; a writable disk without cache=none is
refused unless --unsafe, and then the summary says the move was unsafe; a
CPU model the host cannot supply fails at `vmhop run` naming the missing
features; a `host`-model VM is refused towards a host with another CPUID."""
import os

import vmhoptest as t

HOOKS = {"VMHOP_TEST_HOOKS": "1"}
FIXTURES = os.path.join(t.SRCDIR, "tests", "compat", "fixtures")


def compat(ctx, src, uri, *extra):
    return ctx.vmhop(["compat-check", "--control", src.control, "--to", uri] + list(extra))


def test(ctx):
    src = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--cmdline", "seconds=0 hb=100"],
                     name="src")
    src.wait_line(r"^HB seq=3\b")
    dst = ctx.recv_vm(name="dst")
    rc, out, err = compat(ctx, src, dst.uri)
    t.check(rc == 0 and "verdict: PASS" in out, f"a compatible pair passes (exit {rc})")
    t.check("answered a pre-flight check" in dst.stderr() and dst.running(),
            "the destination answered and keeps listening")
    rc, summary, err = ctx.migrate(src, dst.uri)
    t.check(rc == 0 and summary["status"] == "completed" and summary["preflight"]["verdict"] == "pass",
            "the same destination then takes the migration, with the pre-flight report in the summary")
    t.check(src.wait_exit() == 0, "the source exits 0")
    dst.ctl("quit")
    dst.wait_exit()

    src = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--cmdline",
                      "seconds=0 dirty=8M rate=20M hb=100"], name="src2")
    src.wait_line(r"^HB seq=3\b")
    old = ctx.recv_vm(name="dst-sp2", env={"VMHOP_RELEASE_LEVEL": "SP2"})
    rc, out, err = compat(ctx, src, old.uri, "--json")
    t.check(rc == 2 and '"rule":"release"' in out.replace(" ", "") and "SP3 -> SP2" in out,
            f"compat-check fails the release rule towards SP2 (exit {rc})")
    rc, summary, err = ctx.migrate(src, old.uri)
    t.check(rc == 1 and summary["status"] == "failed" and "release" in summary["error"],
            f"migrate-send refuses the same move: {summary['error']}")
    t.check("RULE" in err and "release" in err, "migrate-send prints the pre-flight table")
    t.check(old.wait_exit() != 0 and "after 0 memory records" in old.stderr(),
            "the receiver saw no memory record")
    t.check(src.ctl("query-status")["return"]["status"] == "running", "the guest keeps running")
    src.ctl("quit")
    src.wait_exit()

    img = ctx.path("wb.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    src = ctx.run_vm(["--kernel", t.GUEST, "--memory", "256M", "--disk", f"{img},id=vda,cache=writeback",
                      "--cmdline", "seconds=0 disk=rw disk_mib=2 hb=100"], name="src3")
    src.wait_line(r"^DISK ok")
    dst = ctx.recv_vm(name="dst-wb")
    rc, summary, err = ctx.migrate(src, dst.uri)
    t.check(rc == 1 and "disk-cache" in summary["error"] and "cache=writeback" in summary["error"]
            and "--unsafe" in summary["error"],
            f"a writeback disk is refused with the cache rule: {summary['error']}")
    t.check(dst.wait_exit() != 0, "that destination exits non-zero")
    dst = ctx.recv_vm(name="dst-wb-unsafe")
    rc, summary, err = ctx.migrate(src, dst.uri, ["--unsafe"])
    t.check(rc == 0 and summary["status"] == "completed" and summary.get("unsafe") is True,
            "with --unsafe it proceeds and the summary says unsafe")
    t.check("unsafe" in err and "WARN" in err, "and the warning is shown")
    src.wait_exit()
    dst.ctl("shutdown")
    verdict = dst.wait_line(r"^VERDICT (PASS|FAIL)(.*)")
    t.check(verdict.group(1) == "PASS", f"the guest verifies PASS on the destination ({verdict.group(0)})")

    rc, out, err = ctx.vmhop(["run", "--kernel", t.GUEST, "--cpu-model", "x86-64-v3",
                              "--serial", "none", "--cmdline", "seconds=1"])
    t.check(rc != 0 and "cannot supply" in err and "avx2" in err,
            f"a CPU model this host cannot supply fails naming the features: {err.strip()}")

    src = ctx.run_vm(["--kernel", t.GUEST, "--memory", "128M", "--cpu-model", "host",
                      "--cmdline", "seconds=0 hb=100"], name="src-host")
    src.wait_line(r"^HB seq=3\b")
    other = ctx.recv_vm(name="dst-other-cpu",
                        env=dict(HOOKS, VMHOP_HOST_PROFILE=os.path.join(FIXTURES, "amd-no-cx16.json")))
    rc, summary, err = ctx.migrate(src, other.uri)
    t.check(rc == 1 and "cpu-model" in summary["error"],
            f"a host-model VM is refused towards a host with another CPUID: {summary['error']}")
    t.check(src.ctl("query-status")["return"]["status"] == "running", "and keeps running")
    src.ctl("quit")


t.main(test)
