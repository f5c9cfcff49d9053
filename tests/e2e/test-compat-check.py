"""Issue 6: the offline pre-flight check. `vmhop host-profile` records this
host (table, --json, --output never clobbering, --vm-config disk views);
`vmhop compat-check` on recorded fixtures (tests/compat/fixtures/) gives one
row per rule and exits 0 (pass), 1 (warnings) or 2 (failure)."""
import json
import os

import vmhoptest as t

FIX = os.path.join(t.SRCDIR, "tests", "compat", "fixtures")


def fx(name):
    return os.path.join(FIX, name)


def check_json(ctx, vm, src, dst, extra=()):
    code, out, err = ctx.vmhop(["compat-check", "--vm-config", vm, "--source-profile", src,
                                "--dest-profile", dst, "--json"] + list(extra))
    rep = json.loads(out)
    t.check(rep["exit_code"] == code, f"--json exit_code {rep['exit_code']} matches the exit status {code}")
    return code, rep


def row(rep, rule, idx=0):
    rows = [r for r in rep["rows"] if r["rule"] == rule]
    return rows[idx] if len(rows) > idx else None


def expect_row(rep, rule, status, needle, idx=0):
    r = row(rep, rule, idx)
    t.check(r is not None and r["status"] == status and needle in r["reason"]
            and (status == "PASS" or r["fix"]),
            f"{rule}: {status} '{needle}' (got {r})")


def test(ctx):
    # host-profile: table, JSON, --output.
    code, out, err = ctx.vmhop(["host-profile"])
    t.check(code == 0 and "release" in out and "cpu models" in out and "kvm" in out,
            f"host-profile prints a table (exit {code}, {err.strip()})")
    code, out, err = ctx.vmhop(["host-profile", "--json"])
    me = json.loads(out)
    t.check(code == 0 and me["kvm"]["api_version"] == 12 and len(me["cpu"]["vendor"]) == 12
            and me["release"]["level"] == "SP3" and "host" in me["cpu_models"]
            and len(me["kvm"]["supported_cpuid"]) > 0 and "disks" not in me,
            "host-profile --json: KVM API 12, a vendor, SP3, the host model, supported CPUID")
    code, out, err = ctx.vmhop(["host-profile", "--json"], env={"VMHOP_RELEASE_LEVEL": "SP2"})
    t.check(json.loads(out)["release"]["level"] == "SP2", "VMHOP_RELEASE_LEVEL=SP2 shows in the profile")

    disk = ctx.path("vda.img")
    with open(disk, "wb") as f:
        f.write(b"vmhop" * 1000)
        f.truncate(4 << 20)
    vm = ctx.path("vm.json")
    with open(fx("vm-typical.json")) as f:
        cfg = json.load(f)
    cfg["return"]["disks"] = [{"id": "vda", "path": disk, "cache": "none", "readonly": False}]
    cfg["return"]["memory"] = 64 << 20
    with open(vm, "w") as f:
        json.dump(cfg, f)
    src = ctx.path("src.json")
    code, out, err = ctx.vmhop(["host-profile", "--vm-config", vm, "--output", src])
    t.check(code == 0 and out == "" and os.path.getsize(src) > 0, f"--output writes the profile ({err.strip()})")
    with open(src) as f:
        sp = json.load(f)
    t.check(sp["disks"][0]["exists"] and sp["disks"][0]["size"] == 4 << 20
            and len(sp["disks"][0]["head_sha256"]) == 64, "--vm-config records the disk's view")
    before = open(src).read()
    code, out, err = ctx.vmhop(["host-profile", "--output", src])
    t.check(code == 1 and "File exists" in err and open(src).read() == before,
            f"--output never replaces an existing file: {err.strip()}")
    dst = ctx.path("dst.json")
    code, out, err = ctx.vmhop(["host-profile", "--vm-config", vm, "--output", dst])
    t.check(code == 0, "the destination's profile of the same host")

    # This host to itself, disks seen from both sides: everything passes.
    code, rep = check_json(ctx, vm, src, dst)
    t.check(code == 0 and rep["verdict"] == "pass" and rep["fail"] == 0 and rep["warn"] == 0,
            f"this host to itself passes every rule: {[r for r in rep['rows'] if r['status'] != 'PASS']}")
    expect_row(rep, "disk-reach", "PASS", "the same file")
    code, out, err = ctx.vmhop(["compat-check", "--vm-config", vm, "--source-profile", src,
                                "--dest-profile", dst])
    t.check(code == 0 and "verdict: PASS" in out and out.startswith("RULE"), "the table ends with a PASS verdict")

    # A running VM's own query-config output, as `vmhop ctl --json` prints it.
    a = ctx.run_vm(["--kernel", t.GUEST, "--memory", "64M", "--cmdline", "seconds=0",
                    "--disk", disk + ",id=vda"], name="live")
    a.wait_line(r"^HB seq=1\b")
    code, out, err = ctx.vmhop(["ctl", "--json", "--control", a.control, "query-config"])
    a.ctl("quit")
    a.wait_exit()
    live = ctx.path("live.json")
    with open(live, "w") as f:
        f.write(out)
    t.check(code == 0 and '"return"' in out, "query-config of a running VM")
    code, rep = check_json(ctx, live, src, dst)
    t.check(code == 0, f"compat-check reads query-config output as is: {[r for r in rep['rows'] if r['status'] != 'PASS']}")
    expect_row(rep, "disk-reach", "PASS", "disk vda: " + disk)

    # Recorded fixtures.
    code, rep = check_json(ctx, fx("vm-typical.json"), fx("amd-host.json"), fx("sp3-host.json"))
    t.check(code == 1, "no disk view from the destination: warnings only, exit 1")
    expect_row(rep, "disk-reach", "WARN", "not checked")
    code, rep = check_json(ctx, fx("vm-typical.json"), fx("sp3-host.json"), fx("sp2-host.json"))
    t.check(code == 2, "SP3 -> SP2: exit 2")
    expect_row(rep, "release", "FAIL", "release SP3 -> SP2: moving to an older release level is refused")
    expect_row(rep, "stream-format", "FAIL", "stream format 3 (written by SP3) is not readable")
    code, rep = check_json(ctx, fx("vm-typical.json"), fx("sp3-host.json"), fx("sp2-host.json"), ["--unsafe"])
    expect_row(rep, "release", "FAIL", "SP3 -> SP2")
    code, rep = check_json(ctx, fx("vm-typical.json"), fx("sp1-host.json"), fx("sp3-host.json"))
    expect_row(rep, "release", "PASS", "release SP1 -> SP3 allowed")
    code, rep = check_json(ctx, fx("vm-writeback.json"), fx("amd-host.json"), fx("sp3-host.json"))
    t.check(code == 2, "a writeback disk fails")
    expect_row(rep, "disk-cache", "FAIL",
               "disk vda: cache=writeback; writable disks must use cache=none to migrate safely")
    code, rep = check_json(ctx, fx("vm-writeback.json"), fx("amd-host.json"), fx("sp3-host.json"), ["--unsafe"])
    t.check(code == 1, "--unsafe turns it into a warning")
    expect_row(rep, "disk-cache", "WARN", "allowed by --unsafe")
    code, rep = check_json(ctx, fx("vm-typical.json"), fx("intel-host.json"), fx("amd-host.json"))
    expect_row(rep, "cpu-vendor", "FAIL", "source GenuineIntel, destination AuthenticAMD")
    code, rep = check_json(ctx, fx("vm-typical.json"), fx("amd-host.json"), fx("nx-off.json"))
    expect_row(rep, "nx", "FAIL", "NX is enabled on the source and disabled on the destination")
    code, rep = check_json(ctx, fx("vm-typical.json"), fx("amd-host.json"), fx("amd-no-cx16.json"))
    expect_row(rep, "cpu-model", "FAIL", "CPU model baseline needs 1 feature the destination's KVM cannot supply: cx16")
    code, rep = check_json(ctx, fx("vm-v3-hostdev.json"), fx("intel-host.json"), fx("intel-host.json"))
    expect_row(rep, "cpu-model", "PASS", "x86-64-v3")
    expect_row(rep, "host-devices", "FAIL", "host device 0000:3b:00.0")
    expect_row(rep, "memory-backing", "FAIL", "hugetlbfs")

    # Bad input and usage: one line, exit 2.
    bad = ctx.path("bad.json")
    with open(bad, "w") as f:
        f.write(open(fx("amd-host.json")).read().replace('"hostname"', '"evil": 1, "hostname"'))
    for args, needle in (
        (["--vm-config", vm, "--source-profile", bad, "--dest-profile", dst], "unknown member 'evil'"),
        (["--vm-config", vm, "--source-profile", ctx.path("none.json"), "--dest-profile", dst],
         "No such file or directory"),
        (["--vm-config", vm, "--source-profile", src], "are all required"),
        (["--control", ctx.path("vm.sock"), "--to", "tcp:127.0.0.1:4444"], "cannot connect"),
        (["--control", ctx.path("vm.sock"), "--vm-config", vm], "do not mix"),
    ):
        code, out, err = ctx.vmhop(["compat-check"] + args)
        lines = [l for l in err.splitlines() if l.strip()]
        t.check(code == 2 and len(lines) == 1 and needle in lines[0] and out == "",
                f"compat-check {' '.join(a if '/' not in a else os.path.basename(a) for a in args)}: exit {code}, says {lines}")


if __name__ == "__main__":
    t.main(test)
