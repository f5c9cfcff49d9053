"""Acceptance 1 and 2 of `vmhop evacuate`: three namespace hosts with their
agents, four test guests on h1, one of them with a disk on h1's local
storage (unreachable from h2 and h3, so it travels with the guest).
`--dry-run` prints the plan and changes nothing; then `--parallel 2` empties
h1 along the same plan, never more than two moves at once, every guest
verifies PASS on its new host, and the report gives each VM's source,
target, time and downtime."""
import json
import os
import subprocess
import sys

import cluster as C
import vmhoptest as t

DISK_MIB = 4
GUESTS = [
    # name, memory, disk on h1's local storage
    ("vm-a", "128M", False),
    ("vm-b", "96M", False),
    ("vm-c", "64M", False),
    ("vm-d", "64M", True),
]


def overlap_max(intervals):
    """The most intervals that overlap at one moment."""
    events = sorted([(s, 1) for s, e in intervals] + [(e, -1) for s, e in intervals],
                    key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test(c):
    h1, h2, h3 = c.hosts
    for h in c.hosts:
        h.start_agent()
    by_addr = {h.agent_addr: h for h in c.hosts}
    vms = {}
    for name, mem, disk in GUESTS:
        extra, cmd = [], "seconds=0 dirty=4M rate=4M verify=1 hb=100"
        if disk:
            with open(os.path.join(h1.store, f"{name}.img"), "wb") as f:
                f.truncate(16 << 20)
            extra = ["--disk", f"{h1.local(name + '.img')},id=data,cache=none"]
            cmd += f" disk=rw disk_mib={DISK_MIB} disk_loop=1"
        vms[name] = h1.run_vm(name, memory=mem, cmdline=cmd, extra=extra)
    for vm in vms.values():
        vm.wait_line(r"^HB seq=3\b")
    vms["vm-d"].wait_line(r"^DISK ok")
    targets = ["--from", h1.agent_addr, "--to", f"{h2.agent_addr},{h3.agent_addr}"]

    # 2. The dry run: a plan, nothing moves.
    rc, dry, out, err = c.evacuate(h1, targets + ["--parallel", "2", "--dry-run"])
    t.check(rc == 0 and dry and dry["dry_run"],
            f"--dry-run exits 0 with a JSON plan (rc {rc}, {err.strip()[-400:]})")
    planned = {v["name"]: v["target"] for v in dry["vms"]}
    t.check(sorted(planned) == sorted(vms) and all(v["result"] == "planned" for v in dry["vms"]),
            f"the plan places all four guests ({planned})")
    t.check([v["name"] for v in dry["vms"]] == ["vm-a", "vm-b", "vm-c", "vm-d"],
            "largest first: 128M, 96M, then the 64M ones by name")
    t.check({planned[n] for n in planned} == {h2.agent_addr, h3.agent_addr},
            "both targets get guests")
    copy = {v["name"]: v["copy_disks"] for v in dry["vms"]}
    t.check(copy["vm-d"] == ["data"] and not any(copy[n] for n in copy if n != "vm-d"),
            f"the disk on h1's local storage is planned for copying ({copy})")
    t.check("copy disks data" in err, "the printed plan says the disk is copied")
    lst = c.agent_call(h1, "list-vms")["return"]["vms"]
    t.check(len(lst) == 4 and all(v["status"] == "running" for v in lst),
            "after --dry-run h1 still runs the four guests")
    for h in (h2, h3):
        jobs = c.agent_call(h, "list-jobs")["return"]["jobs"]
        t.check(not jobs, f"after --dry-run {h.name}'s agent has no jobs")

    # 1. The evacuation.
    rc, rep, out, err = c.evacuate(h1, targets + ["--parallel", "2"])
    print(err.rstrip(), flush=True)
    t.check(rc == 0 and rep and rep["empty"] and rep["remaining"] == 0,
            f"evacuate exits 0 and h1 is empty (rc {rc}, {err.strip()[-400:]})")
    got = {v["name"]: v["target"] for v in rep["vms"]}
    t.check(got == planned, f"the moves followed the dry run's plan ({got})")
    t.check(all(v["result"] == "moved" and v["source"] == h1.agent_addr for v in rep["vms"]),
            "every guest is reported moved from h1")
    t.check(all(v["total_ms"] > 0 and v["downtime_ms"] > 0 for v in rep["vms"]),
            "the report gives each move's time and downtime (" +
            ", ".join(f"{v['name']} {v['total_ms']:.0f}/{v['downtime_ms']:.0f} ms"
                      for v in rep["vms"]) + ")")
    most = overlap_max([(v["start_ms"], v["end_ms"]) for v in rep["vms"]])
    t.check(most <= 2 and rep["max_running"] <= 2,
            f"at no moment more than two moves ran ({most} overlapping, max_running "
            f"{rep['max_running']})")
    t.check("report:" in err and "TIME_MS" in err and "DOWN_MS" in err,
            "the printed report has the time and downtime columns")
    lst = c.agent_call(h1, "list-vms")["return"]["vms"]
    t.check(not lst, "h1's agent lists no VM")
    # The source agent's jobs ran two at a time at most, by its own clock.
    jobs = c.agent_call(h1, "list-jobs")["return"]["jobs"]
    t.check(len(jobs) == 4 and all(j["state"] == "completed" for j in jobs),
            "h1's agent ran four moves, all completed")
    most = overlap_max([(j["started_ms"], j["ended_ms"]) for j in jobs])
    t.check(most <= 2, f"by h1's agent's clock too, at most two migrate-send ran at once ({most})")

    for name, vm in vms.items():
        dest = by_addr[got[name]]
        vm.moved_to(dest)
        listed = [v["name"] for v in c.agent_call(dest, "list-vms")["return"]["vms"]]
        t.check(name in listed, f"{name} runs on {dest.name} ({listed})")
    disk_copy = os.path.join(by_addr[got["vm-d"]].run_dir, "disks", "vm-d", "data.img")
    t.check(os.path.exists(disk_copy), f"vm-d's disk was copied into {disk_copy}")
    for name, vm in vms.items():
        vm.wait_line(r"^HB seq=", after=3)
        verdict, line = vm.verdict()
        t.check(verdict == "PASS", f"{name} verifies PASS on {vm.host.name} ({line})")
    t.check("disk=ok" in vms["vm-d"].wait_line(r"^VERDICT (PASS|FAIL)(.*)").group(2),
            "vm-d's disk pattern verifies on its new host")
    p = subprocess.run([sys.executable, t.CHECK_DISK, disk_copy, "--mib", str(DISK_MIB)],
                       capture_output=True, text=True)
    t.check(p.returncode == 0, f"the copied image holds a valid pattern ({p.stdout.strip()}"
            f"{p.stderr.strip()})")
    json.dumps(rep)


C.main(3, test)
